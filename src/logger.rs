//! l3mp's log: one line per message on stderr (`LEVEL [module] message`), written by a thread
//! of its own. A stderr that is closed, or a pipe that no one reads (journald stalled), never
//! stops l3mp or ends it: a failed write is let go, a write that waits holds up that thread
//! alone, the lines that do not fit in the queue meanwhile are dropped, and how many is said
//! as soon as lines go out again.

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use log::{LevelFilter, Log, Metadata, Record};
use nix::sys::signal::{SigSet, SigmaskHow};

/// Lines waiting for stderr at most; more are dropped.
const QUEUE: usize = 4096;

struct Logger {
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

/// Puts `line` (a whole line, without its newline) on stderr after what is queued.
pub fn say(line: &str) {
    if let Some(logger) = LOGGER.get() {
        logger.queue(format!("{line}\n"));
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
            self.queue(format!(
                "{:<5} [{}] {}\n",
                record.level(),
                record.target(),
                record.args()
            ));
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
            let _ = writeln!(
                stderr,
                "WARN  [l3mp] {dropped} log lines were dropped: stderr was not being read"
            );
        }
        let _ = stderr.write_all(line.as_bytes());
        logger.pending.fetch_sub(1, Ordering::AcqRel);
    }
}
