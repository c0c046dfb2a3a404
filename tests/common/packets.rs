//! Test packets, built and checked with etherparse (an independent parser).
