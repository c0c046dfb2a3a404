//! How l3mp's lines look to whoever reads its stderr: under journald (`JOURNAL_STREAM` names
//! stderr) with the syslog priority journald reads as the level; elsewhere as plain lines.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

/// `l3mp run` with a label out of range (an ext that does not exist is waited for, not an
/// error), with stderr a pipe that JOURNAL_STREAM names (`journal`) or not: what it writes
/// there.
fn stderr_of_a_failed_run(journal: bool) -> String {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("a pipe");
    let stat = nix::sys::stat::fstat(read.as_raw_fd()).expect("fstat");
    let mut command = Command::new(env!("CARGO_BIN_EXE_l3mp"));
    command
        .args(["run", "--ext", "nosuch-l3mp0", "--if", "a@0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(write))
        .env_remove("JOURNAL_STREAM");
    if journal {
        command.env("JOURNAL_STREAM", format!("{}:{}", stat.st_dev, stat.st_ino));
    }
    let status = command.status().expect("l3mp runs");
    assert!(!status.success());
    // The command holds the pipe's write end until it goes: then the read ends at l3mp's exit.
    drop(command);
    let mut text = String::new();
    std::fs::File::from(read)
        .read_to_string(&mut text)
        .expect("read");
    text
}

#[test]
fn under_journald_the_error_carries_its_priority() {
    let text = stderr_of_a_failed_run(true);
    let last = text.lines().last().expect("a line");
    assert!(last.starts_with("<3>l3mp: "), "{text}");
    assert!(text.lines().all(|l| l.starts_with('<')), "{text}");
}

#[test]
fn elsewhere_the_error_is_a_plain_line() {
    let text = stderr_of_a_failed_run(false);
    let last = text.lines().last().expect("a line");
    assert!(last.starts_with("l3mp: "), "{text}");
    assert!(
        !text.contains("[l3mp::"),
        "module paths only with -v: {text}"
    );
}
