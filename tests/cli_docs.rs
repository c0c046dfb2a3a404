//! The shell completions and the manual pages are generated from the clap definitions by
//! `l3mp completions` and `l3mp man`, so none is committed to go stale: these check that they
//! cover every subcommand and option an operator needs.

use std::process::{Command, Output};

fn l3mp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_l3mp"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("l3mp {args:?}: {e}"))
}

fn stdout(args: &[&str]) -> String {
    let out = l3mp(args);
    assert!(out.status.success(), "l3mp {args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn completions_cover_the_subcommands_and_their_options() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout(&["completions", shell]);
        for word in ["run", "status", "completions", "man"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
        for option in ["ext", "json", "if", "label-bits", "ingress", "out-dir"] {
            // fish spells a long option `-l ext`.
            let spelt = match shell {
                "fish" => format!("-l {option}"),
                _ => format!("--{option}"),
            };
            assert!(script.contains(&spelt), "{shell}: no {spelt}");
        }
    }
    let out = l3mp(&["completions", "tcsh"]);
    assert!(!out.status.success());
}

#[test]
fn the_manual_page_describes_every_subcommand() {
    let page = stdout(&["man"]);
    assert!(page.contains(".TH l3mp 1"), "{page}");
    for subcommand in [
        "run",
        "status",
        "completions",
        "man",
        "demo",
        "asm",
        "replay",
    ] {
        assert!(
            page.contains(&format!("l3mp\\-{subcommand}(1)")),
            "no {subcommand} in:\n{page}"
        );
    }
}

#[test]
fn a_directory_gets_one_page_per_subcommand() {
    let dir = std::env::temp_dir().join(format!("l3mp-man-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    stdout(&["man", "--out-dir", dir.to_str().expect("UTF-8 path")]);
    for page in ["l3mp.1", "l3mp-run.1", "l3mp-status.1"] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".SH OPTIONS"), "{page}");
    }
    let status = std::fs::read_to_string(dir.join("l3mp-status.1")).expect("l3mp-status.1");
    assert!(status.contains("\\-\\-json"), "{status}");
    std::fs::remove_dir_all(&dir).expect("clean up");

    let out = l3mp(&["man", "--out-dir", "/nonexistent/l3mp"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("l3mp: --out-dir /nonexistent/l3mp: ") && err.lines().count() == 1,
        "{err}"
    );
}

/// The sections an operator looks for, a synopsis that names the options' values, and a
/// description that says more than the NAME line.
#[test]
fn the_pages_have_the_sections_operators_look_for() {
    let dir = std::env::temp_dir().join(format!("l3mp-man-sections-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    stdout(&["man", "--out-dir", dir.to_str().expect("UTF-8 path")]);
    let read = |page: &str| {
        std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"))
    };
    let (top, run, status) = (read("l3mp.1"), read("l3mp-run.1"), read("l3mp-status.1"));
    std::fs::remove_dir_all(&dir).expect("clean up");
    for (name, page) in [("l3mp.1", &top), ("l3mp-run.1", &run)] {
        for section in ["EXAMPLES", "FILES", "SIGNALS", "EXIT STATUS", "SEE ALSO"] {
            assert!(
                page.contains(&format!(".SH \"{section}\""))
                    || page.contains(&format!(".SH {section}")),
                "{name}: no {section}"
            );
        }
        assert!(
            page.contains("/run/l3mp"),
            "{name}: FILES names no state file"
        );
    }
    for section in ["FILES", "EXIT STATUS"] {
        assert!(
            status.contains(&format!(".SH \"{section}\""))
                || status.contains(&format!(".SH {section}")),
            "l3mp-status.1: no {section}"
        );
    }
    let synopsis = run
        .split(".SH SYNOPSIS")
        .nth(1)
        .and_then(|rest| rest.split(".SH").next())
        .expect("a synopsis");
    assert!(
        synopsis.contains("\\-\\-ext <IF>") && synopsis.contains("\\-\\-if <NAME@LABEL>"),
        "{synopsis}"
    );
    let section = |page: &str, name: &str| {
        page.split(&format!(".SH {name}"))
            .nth(1)
            .and_then(|rest| rest.split(".SH").next())
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    for (name, page) in [("l3mp.1", &top), ("l3mp-run.1", &run)] {
        let (title, description) = (section(page, "NAME"), section(page, "DESCRIPTION"));
        let said = title.split(" \\- ").nth(1).expect("NAME has a summary");
        assert!(
            !description.contains(said),
            "{name}: DESCRIPTION repeats NAME: {said}"
        );
    }
}
