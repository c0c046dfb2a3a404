//! Buffers a thread reuses from one check to the next. Checking a frame computes several
//! packets' worth of expected bytes and records each program's output; allocating them afresh
//! for every frame was a third of a replay's time (most are too big for the allocator's
//! per-thread cache).

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use super::Step;

/// At most this many of each kind of buffer are kept per thread.
const KEPT: usize = 64;

#[derive(Default)]
struct Pool {
    bytes: Vec<Vec<u8>>,
    steps: Vec<Step>,
    lists: Vec<Vec<Step>>,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// Puts `item` back into the pool kind `kind` picks, unless that is full (or the thread is
/// ending).
fn give<T>(item: T, kind: impl FnOnce(&mut Pool) -> &mut Vec<T>) {
    let _ = POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        let kept = kind(&mut p);
        if kept.len() < KEPT {
            kept.push(item);
        }
    });
}

fn take<T: Default>(kind: impl FnOnce(&mut Pool) -> &mut Vec<T>) -> T {
    POOL.try_with(|p| kind(&mut p.borrow_mut()).pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// An empty byte buffer, given back to the pool when dropped.
pub struct Buf(Vec<u8>);

impl Buf {
    pub fn new() -> Buf {
        Buf(take(|p| &mut p.bytes))
    }
}

impl Deref for Buf {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.0);
        bytes.clear();
        give(bytes, |p| &mut p.bytes);
    }
}

/// A step whose buffers (program name, output packet, counters) may hold another frame's
/// contents, to be overwritten.
pub fn step() -> Step {
    take(|p| &mut p.steps)
}

/// An empty list of steps.
pub fn steps() -> Vec<Step> {
    take(|p| &mut p.lists)
}

/// Gives a trip's steps, and the list holding them, back to the pool (the steps in one move).
pub fn recycle(mut steps: Vec<Step>) {
    let _ = POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        let room = KEPT.saturating_sub(p.steps.len());
        if steps.len() > room {
            steps.truncate(room);
        }
        p.steps.append(&mut steps);
    });
    give(steps, |p| &mut p.lists);
}
