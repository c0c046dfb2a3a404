//! The packet corpus: every frame of the capture corpus (tests/captures) and every packet of
//! the fuzz seed corpus (fuzz/seeds).

use std::path::Path;

use l3mp::roundtrip::Case;

/// Packets from the capture corpus and the fuzz seed corpus.
pub fn packets() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut packets = Vec::new();
    for entry in std::fs::read_dir(root.join("tests/captures")).expect("captures") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "pcap") {
            packets.extend(l3mp::replay::frames(&path).expect("capture reads"));
        }
    }
    // The packet targets' seeds, without the configuration bytes in front; a seed too short
    // to hold a case has no packet (the targets skip it too).
    for target in ["egress", "ingress_tc", "ingress_xdp"] {
        let dir = root.join("fuzz/seeds").join(target);
        for file in std::fs::read_dir(&dir).expect("seeds").flatten() {
            let data = std::fs::read(file.path()).expect("seed");
            packets.extend(Case::from_bytes(&data).map(|case| case.packet));
        }
    }
    packets
}
