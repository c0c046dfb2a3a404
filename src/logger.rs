//! l3mp's log: one line per message on stderr, written by a thread of its own. Under
//! journald (`JOURNAL_STREAM` names stderr) each line starts with its syslog priority (`<4>`),
//! which journald reads as the level; elsewhere it reads `LEVEL message`, with the Rust module
//! that logged it only at `-v` and more. A stderr that is closed, or a pipe that no one reads (journald stalled), never
//! stops l3mp or ends it: a failed write is let go, a write that waits holds up that thread
//! alone, the lines that do not fit in the queue meanwhile are dropped, and how many is said
//! as soon as lines go out again.

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Metadata, Record};
use nix::sys::signal::{SigSet, SigmaskHow};

/// Lines waiting for stderr at most; more are dropped.
const QUEUE: usize = 4096;

/// How a line is laid out for whoever reads stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// journald: the level as a `<N>` syslog priority prefix.
    Journal,
    /// A terminal or a file: `LEVEL message`, with the module when `modules`.
    Plain { modules: bool },
}

impl Style {
    /// journald's when `JOURNAL_STREAM` (`device:inode`) is stderr; else plain, with modules
    /// when l3mp's own messages go down to debug.
    fn detect(own: LevelFilter) -> Style {
        use std::os::unix::fs::MetadataExt;
        let stderr =
            std::fs::metadata("/proc/self/fd/2").map(|m| format!("{}:{}", m.dev(), m.ino()));
        match (std::env::var("JOURNAL_STREAM"), stderr) {
            (Ok(journal), Ok(stderr)) if journal == stderr => Style::Journal,
            _ => Style::Plain {
                modules: own >= LevelFilter::Debug,
            },
        }
    }

    /// `text` as a line of `level` from `module`, with its newline.
    fn line(self, level: Level, module: &str, text: &str) -> String {
        match self {
            Style::Journal => format!("<{}>{text}\n", priority(level)),
            Style::Plain { modules: true } => format!("{level:<5} [{module}] {text}\n"),
            Style::Plain { modules: false } => format!("{level:<5} {text}\n"),
        }
    }
}

/// The syslog priority of a level (sd-daemon(3)).
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

struct Logger {
    style: Style,
    /// For l3mp's own messages.
    own: LevelFilter,
    /// For the crates'.
    crates: LevelFilter,
    queue: SyncSender<String>,
    /// Lines queued and not yet written (or given up on).
    pending: AtomicUsize,
    /// Lines dropped since the last one written.
    dropped: AtomicU64,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Logs l3mp's messages at `own` and other crates' at `crates`, on stderr.
pub fn init(own: LevelFilter, crates: LevelFilter) {
    let (queue, lines) = sync_channel(QUEUE);
    let logger = LOGGER.get_or_init(|| Logger {
        style: Style::detect(own),
        own,
        crates,
        queue,
        pending: AtomicUsize::new(0),
        dropped: AtomicU64::new(0),
    });
    // The thread starts with every signal blocked: signals are for the threads that wait for
    // them (a SIGTERM taken here would end l3mp before it cleans up).
    let before = SigSet::all().thread_swap_mask(SigmaskHow::SIG_BLOCK);
    // Without the thread the queue fills and the lines are dropped: l3mp runs on.
    let _ = thread::Builder::new()
        .name("log".into())
        .spawn(move || write_lines(logger, lines));
    if let Ok(before) = before {
        let _ = before.thread_set_mask();
    }
    if log::set_logger(logger).is_ok() {
        log::set_max_level(own.max(crates));
    }
}

/// Puts the error `line` (a whole line, without its newline) on stderr after what is queued:
/// as it is on a terminal, with the error priority under journald.
pub fn say_error(line: &str) {
    if let Some(logger) = LOGGER.get() {
        let line = match logger.style {
            Style::Journal => format!("<{}>{line}\n", priority(Level::Error)),
            Style::Plain { .. } => format!("{line}\n"),
        };
        logger.queue(line);
    }
}

/// Waits until every queued line is written, at most `timeout` (stderr may never drain).
pub fn flush(timeout: Duration) {
    let Some(logger) = LOGGER.get() else {
        return;
    };
    let deadline = Instant::now() + timeout;
    while logger.pending.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
}

impl Logger {
    fn level_for(&self, target: &str) -> LevelFilter {
        if target == "l3mp" || target.starts_with("l3mp::") {
            self.own
        } else {
            self.crates
        }
    }

    fn queue(&self, line: String) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.queue.try_send(line).is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level_for(metadata.target())
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let text = record.args().to_string();
            self.queue(self.style.line(record.level(), record.target(), &text));
        }
    }

    fn flush(&self) {}
}

/// Writes the queued lines to stderr, each whole, until the queue is gone; errors (a closed
/// pipe) are let go.
fn write_lines(logger: &Logger, lines: Receiver<String>) {
    let mut stderr = std::io::stderr();
    for line in lines {
        let dropped = logger.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let text = format!("{dropped} log lines were dropped: stderr was not being read");
            let _ = stderr.write_all(logger.style.line(Level::Warn, "l3mp", &text).as_bytes());
        }
        let _ = stderr.write_all(line.as_bytes());
        logger.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journald_reads_the_level_from_the_priority_prefix() {
        let line = |style: Style, level| style.line(level, "l3mp::run::watch", "ext0 is gone");
        assert_eq!(line(Style::Journal, Level::Warn), "<4>ext0 is gone\n");
        assert_eq!(line(Style::Journal, Level::Error), "<3>ext0 is gone\n");
        assert_eq!(line(Style::Journal, Level::Info), "<6>ext0 is gone\n");
        assert_eq!(line(Style::Journal, Level::Debug), "<7>ext0 is gone\n");
        let short = Style::Plain { modules: false };
        assert_eq!(line(short, Level::Info), "INFO  ext0 is gone\n");
        let long = Style::Plain { modules: true };
        assert_eq!(
            line(long, Level::Info),
            "INFO  [l3mp::run::watch] ext0 is gone\n"
        );
    }
}
