//! The generator's annotated listings for three configurations, committed under
//! `tests/listings/`: every change to a generated program shows in review as a diff of
//! instructions. After an intended change, bless the new listings with
//! `L3MP_BLESS=1 cargo test --test listings` and commit them. The immediates are those a
//! little-endian host generates (the programs compare native-endian loads).

mod common;

use std::path::PathBuf;

use common::{config, ext_kinds};
use l3mp::programs::{self, ExtKind, Unknown};

/// The configurations: a file name, the label width, the ext kind, the labels, the policy.
/// The tests' configurations are `l3mp asm`'s, so each file is exactly what it prints, e.g.
/// `l3mp asm --label-bits 4 --ext-kind ether --if l1@1 --if l8@8 --if l15@15`.
fn configurations() -> Vec<(&'static str, u8, ExtKind, Vec<u8>, Unknown)> {
    let [l3, ethernet] = ext_kinds();
    vec![
        ("n1-l3-pass", 1, l3, vec![1], Unknown::Pass),
        (
            "n4-ethernet-pass",
            4,
            ethernet,
            vec![1, 8, 15],
            Unknown::Pass,
        ),
        ("n6-l3-drop", 6, l3, vec![1, 32, 63], Unknown::Drop),
    ]
}

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/listings")
        .join(format!("{name}.txt"))
}

/// A line diff of `old` and `new` (longest common subsequence), `-`/`+` marked, with `context`
/// unchanged lines around each change.
fn diff(old: &str, new: &str, context: usize) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let near_change = |k: usize| {
        let lo = k.saturating_sub(context);
        let hi = (k + context + 1).min(ops.len());
        ops[lo..hi].iter().any(|(op, _)| *op != ' ')
    };
    let mut out = String::new();
    let mut skipped = false;
    for (k, (op, line)) in ops.iter().enumerate() {
        if near_change(k) {
            if skipped {
                out.push_str("   ...\n");
                skipped = false;
            }
            out.push_str(&format!("{op}  {line}\n"));
        } else {
            skipped = true;
        }
    }
    if skipped && !out.is_empty() {
        out.push_str("   ...\n");
    }
    out
}

#[test]
fn generated_listings_match_the_committed_ones() {
    let bless = std::env::var_os("L3MP_BLESS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (name, bits, kind, labels, unknown) in configurations() {
        let bundle = programs::build(&config(bits, kind, &labels, unknown)).expect("builds");
        let listing = bundle.listing().expect("listing");
        let path = golden_path(name);
        if bless {
            std::fs::write(&path, &listing).expect("write the listing");
            eprintln!("blessed {}", path.display());
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != listing {
            stale.push(format!(
                "{} differs from the generator's listing (- committed, + generated):\n{}",
                path.display(),
                diff(&committed, &listing, 3)
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "{}\nIf the change is intended, regenerate the listings with\n    \
         L3MP_BLESS=1 cargo test --test listings\nand commit them.",
        stale.join("\n")
    );
}

#[test]
fn the_diff_shows_what_changed_with_context() {
    let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
    let new = "a\nb\nc\nd\nE\nf\ng\nh\n";
    assert_eq!(
        diff(old, new, 1),
        "   ...\n   d\n-  e\n+  E\n   f\n   ...\n"
    );
    assert_eq!(diff(old, old, 3), "");
}
