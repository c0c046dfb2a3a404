//! What the programs are generated from: the label width, the tunnel (ext) and the links.

/// How an ingress packet with a label no link uses is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unknown {
    /// Hand it to ext's own stack untouched (the default).
    Pass,
    /// Drop it.
    Drop,
}

/// The kind of tunnel device, which decides whether packets carry an Ethernet header on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtKind {
    /// A layer-3 device (wg0, tun): packets start at the IP header.
    L3,
    /// An Ethernet device: frames leave with ext's MAC as source and the remote l3mp host's MAC
    /// (`peer_mac`, resolved once from `--peer`) as destination, unicast, multicast alike.
    Ethernet { mac: [u8; 6], peer_mac: [u8; 6] },
}

/// The tunnel device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ext {
    pub ifindex: u32,
    pub kind: ExtKind,
}

/// One managed link: a veth pair whose user end (`ifindex`, `mac`) carries the user's name and
/// whose hidden end (`peer_ifindex`, `peer_mac`) transmits what ingress demux delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub label: u8,
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub peer_ifindex: u32,
    pub peer_mac: [u8; 6],
}

/// Everything the programs bake in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Width N of the label in the low bits of DSCP (1 to 6).
    pub label_bits: u8,
    pub ext: Ext,
    pub links: Vec<Link>,
    pub unknown: Unknown,
}

impl Config {
    /// The mask of the label bits, right-aligned.
    pub fn label_mask(&self) -> u8 {
        (1u8 << self.label_bits) - 1
    }

    /// The largest usable label.
    pub fn max_label(&self) -> u8 {
        self.label_mask()
    }

    /// The link using `label`, if any.
    pub fn link(&self, label: u8) -> Option<&Link> {
        self.links.iter().find(|l| l.label == label)
    }
}
