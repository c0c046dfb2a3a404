//! What the programs are generated from: the label width, the tunnel (ext) and the links.

/// How an ingress packet with a label no link uses is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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

impl ExtKind {
    /// What its packets start with.
    pub fn framing(self) -> Framing {
        match self {
            ExtKind::L3 => Framing::Ip,
            ExtKind::Ethernet { .. } => Framing::Ethernet,
        }
    }
}

/// What a device's packets start with, as the programs on it see them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Framing {
    /// The IP header (a layer-3 device).
    Ip,
    /// An Ethernet header.
    Ethernet,
}

/// The tunnel device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ext {
    pub ifindex: u32,
    pub kind: ExtKind,
    /// ext's MTU: the longest IP packet egress sends on it.
    pub mtu: u32,
}

/// One managed link: a veth pair whose user end (`ifindex`) carries the user's name and whose
/// hidden end (`peer_ifindex`) transmits what ingress demux delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub label: u8,
    pub ifindex: u32,
    pub peer_ifindex: u32,
}

/// The MACs of the links' veth ends: five bytes shared by every link, the sixth the label. The
/// demux writes them from the label alone, so its cost does not depend on the number of links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkMacs {
    /// The first five bytes of every user end's MAC.
    pub user: [u8; 5],
    /// The first five bytes of every hidden end's MAC.
    pub hidden: [u8; 5],
}

impl LinkMacs {
    /// The MAC of the user end of the link with `label`.
    pub fn user_end(&self, label: u8) -> [u8; 6] {
        with_label(self.user, label)
    }

    /// The MAC of the hidden end of the link with `label`.
    pub fn hidden_end(&self, label: u8) -> [u8; 6] {
        with_label(self.hidden, label)
    }
}

fn with_label(prefix: [u8; 5], label: u8) -> [u8; 6] {
    let [a, b, c, d, e] = prefix;
    [a, b, c, d, e, label]
}

/// Everything the programs bake in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Width N of the label in the low bits of DSCP (1 to 6).
    pub label_bits: u8,
    pub ext: Ext,
    pub links: Vec<Link>,
    /// The MACs the links' veth ends were created with.
    pub macs: LinkMacs,
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

impl Config {
    /// A configuration for generating and running programs offline (`l3mp asm`, `l3mp replay`):
    /// interface indexes and MACs are placeholders, which `run` replaces with the real ones.
    /// ext is ifindex 1, MTU 1500 (MAC 02:00:00:00:00:e0, peer 02:00:00:00:00:e1); the link with label L
    /// has ifindex 100+L and MAC 02:00:00:00:00:L, its hidden end 200+L and 02:00:00:00:01:L.
    pub fn offline(
        label_bits: u8,
        framing: Framing,
        links: &[(String, u8)],
        unknown: Unknown,
    ) -> Config {
        let mac = |b: u8| [0x02, 0, 0, 0, 0, b];
        let kind = match framing {
            Framing::Ethernet => ExtKind::Ethernet {
                mac: mac(0xe0),
                peer_mac: mac(0xe1),
            },
            Framing::Ip => ExtKind::L3,
        };
        Config {
            label_bits,
            ext: Ext {
                ifindex: 1,
                kind,
                mtu: 1500,
            },
            links: links
                .iter()
                .map(|(name, label)| Link {
                    name: name.clone(),
                    label: *label,
                    ifindex: 100 + u32::from(*label),
                    peer_ifindex: 200 + u32::from(*label),
                })
                .collect(),
            macs: LinkMacs {
                user: [0x02, 0, 0, 0, 0],
                hidden: [0x02, 0, 0, 0, 0x01],
            },
            unknown,
        }
    }
}
