//! The `l3mp` command.

mod cli;
mod logger;
mod manual;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use sd_notify::NotifyState;

use cli::{
    AsmArgs, BenchArgs, Cli, Command, EngineArg, ExtKindArg, Ingress, LabelArgs, ProbeSwitch,
    ReplayArgs, RunArgs, UnknownLabel,
};
use l3mp::programs::{self, Config, Framing, Unknown};
use l3mp::run::{parse_link, IngressChoice, Instance, LinkArg, Probe, RunOptions, Started};

/// A failure of any layer, said as one line after "l3mp: ".
type Error = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => log::LevelFilter::Warn,
        (false, 0) => log::LevelFilter::Info,
        (false, 1) => log::LevelFilter::Debug,
        (false, _) => log::LevelFilter::Trace,
    };
    // l3mp's own messages at the chosen level; the crates' only when something is wrong (the
    // netlink crate warns about every attribute newer than itself), or everything at -vv.
    let crates = if cli.verbose > 1 {
        level
    } else {
        log::LevelFilter::Error
    };
    logger::init(level, crates);
    let result = match cli.command {
        Command::Run(args) => match run(&args) {
            // The links are left for the next start to adopt: an exit status the unit restarts
            // on (RestartForceExitStatus).
            Ok(Stopped::HandedOver) => {
                logger::flush(LOG_FLUSH);
                return ExitCode::from(HANDED_OVER);
            }
            other => other.map(|_| ()),
        },
        Command::Status(args) => match status(&args) {
            // Shown, but not every instance is on its ext: for scripts and monitoring.
            Ok(false) => return ExitCode::from(NOT_ATTACHED),
            other => other.map(|_| ()),
        },
        Command::Completions(args) => completions(&args),
        Command::Man(args) => man(&args),
        Command::Demo(args) => with_signals_held(|| {
            Ok(l3mp::demo::demo(
                args.ethernet,
                ingress_choice(args.ingress),
            )?)
        }),
        Command::Asm(args) => asm(&args),
        Command::Replay(args) => replay(&args),
        Command::Bench(args) if args.offline => bench(&args),
        Command::Bench(args) => with_signals_held(|| bench(&args)),
    };
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            logger::say_error(&format!("l3mp: {e}"));
            ExitCode::FAILURE
        }
    };
    // What was said goes out before the exit, unless stderr is not being read.
    logger::flush(LOG_FLUSH);
    code
}

/// How long the log may take to go out at exit.
const LOG_FLUSH: Duration = Duration::from_secs(1);

fn ingress_choice(ingress: Ingress) -> IngressChoice {
    match ingress {
        Ingress::Auto => IngressChoice::Auto,
        Ingress::Xdp => IngressChoice::Xdp,
        Ingress::Tc => IngressChoice::Tc,
    }
}

fn unknown(u: UnknownLabel) -> Unknown {
    match u {
        UnknownLabel::Pass => Unknown::Pass,
        UnknownLabel::Drop => Unknown::Drop,
    }
}

fn probe(p: ProbeSwitch) -> Probe {
    match p {
        ProbeSwitch::On => Probe::On,
        ProbeSwitch::Off => Probe::Off,
    }
}

fn links(labels: &LabelArgs) -> Result<Vec<LinkArg>, l3mp::run::Error> {
    labels.links.iter().map(|l| parse_link(l)).collect()
}

/// SIGINT, SIGTERM and SIGHUP, which end l3mp (`run` reloads on SIGHUP instead).
fn stop_signals() -> SigSet {
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    signals
}

/// Runs `f` with the stop signals held back, so that everything it creates is removed before a
/// Ctrl-C takes effect; a signal that arrived meanwhile is then reported as an error.
fn with_signals_held(f: impl FnOnce() -> Result<(), Error>) -> Result<(), Error> {
    stop_signals()
        .thread_block()
        .map_err(|e| Error::from(format!("blocking signals: {e}")))?;
    let result = f();
    let mut pending = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigpending fills the set it is given.
    let interrupted = unsafe {
        libc::sigpending(pending.as_mut_ptr()) == 0
            && [libc::SIGINT, libc::SIGTERM, libc::SIGHUP]
                .iter()
                .any(|&s| libc::sigismember(pending.as_ptr(), s) == 1)
    };
    result?;
    if interrupted {
        return Err(Error::from("interrupted; everything created was removed"));
    }
    Ok(())
}

/// `l3mp bench`: the table, or the JSON document with `--json`.
fn bench(args: &BenchArgs) -> Result<(), Error> {
    let settings = if args.quick {
        l3mp::bench::Settings::QUICK
    } else {
        l3mp::bench::Settings::FULL
    };
    let report = if args.offline {
        l3mp::bench::offline(&settings)?
    } else if args.start_up {
        l3mp::bench::start_up(&settings)?
    } else if args.programs {
        l3mp::bench::programs(&settings)?
    } else {
        l3mp::bench::bench(&settings)?
    };
    if args.json {
        print!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// `l3mp run`'s exit status after a hand-over (SIGUSR2): EX_TEMPFAIL, "try again".
const HANDED_OVER: u8 = 75;

/// How `l3mp run` ended.
enum Stopped {
    /// Everything it created removed (SIGINT, SIGTERM).
    Removed,
    /// The links left for the next start to adopt (SIGUSR2).
    HandedOver,
}

/// `l3mp run`: check everything, wait for ext if it is not there yet, start, follow ext and
/// reload on SIGHUP until SIGINT/SIGTERM (stop and remove everything) or SIGUSR2 (stop and
/// leave the links for the next start, for an upgrade).
fn run(args: &RunArgs) -> Result<Stopped, Error> {
    let mut opts = run_options(args)?;
    l3mp::run::check_privileges()?;
    // Blocked before any thread starts, so that only the waits below receive them.
    let mut signals = stop_signals();
    signals.add(Signal::SIGUSR2);
    signals
        .thread_block()
        .map_err(|e| Error::from(format!("blocking signals: {e}")))?;
    let mut instance = loop {
        match Instance::start_or_wait(&opts, Some(&signals))? {
            Started::Running(instance) => break instance,
            // Nothing runs yet: the file read again applies as it is.
            Started::Signalled(Signal::SIGHUP) => {
                if let Some(file) = &args.config {
                    match reread(file, &opts) {
                        Ok(new) => opts = new,
                        Err(e) => log::error!("{e}"),
                    }
                }
            }
            Started::Signalled(signal) => {
                log::info!(
                    "{signal} while waiting for {}: nothing was created",
                    opts.ext
                );
                return Ok(Stopped::Removed);
            }
        }
    };
    if let Some(file) = &args.config {
        instance.loaded_from(file);
    }
    for link in instance.links() {
        log::info!(
            "{} label {} <-> {} ({} ingress)",
            link.user.name,
            link.label,
            instance.ext().name,
            instance.mode()
        );
    }
    // Every link exists and is attached: what a unit ordered after l3mp@EXT waits for.
    tell_systemd(&[NotifyState::Ready, NotifyState::Status(&summary(&instance))]);
    let signal = loop {
        match l3mp::run::serve(&mut instance, &signals)? {
            Signal::SIGHUP => reload(&mut instance, args.config.as_deref()),
            signal => break signal,
        }
    };
    tell_systemd(&[NotifyState::Stopping]);
    if signal == Signal::SIGUSR2 {
        log::info!(
            "{signal}: handing over: detaching, and leaving the links for the next l3mp run on {} \
             to adopt",
            instance.ext().name
        );
        instance.hand_over();
        return Ok(Stopped::HandedOver);
    }
    log::info!("{signal}: detaching and deleting the links");
    drop(instance);
    Ok(Stopped::Removed)
}

/// "2 links on wg0 (TC ingress)", for systemd's STATUS=.
fn summary(instance: &Instance) -> String {
    format!(
        "{} links on {} ({} ingress)",
        instance.links().len(),
        instance.ext().name,
        instance.mode()
    )
}

/// SIGHUP: reads `file` again and applies the difference to `instance`; a file that cannot
/// be read or a change that cannot be applied changes nothing and is one error line.
fn reload(instance: &mut Instance, file: Option<&Path>) {
    let Some(file) = file else {
        log::warn!("SIGHUP: started with flags, not --config: nothing to read again");
        return;
    };
    tell_systemd(&[NotifyState::Reloading]);
    match l3mp::run::config_file::load(file).and_then(|new| instance.reload(&new, file)) {
        Ok(said) => log::info!("{}: reloaded: {said}", file.display()),
        Err(e) => log::error!("{e}; nothing changed"),
    }
    tell_systemd(&[NotifyState::Ready, NotifyState::Status(&summary(instance))]);
}

/// The options `file` gives now, for an instance waiting for the ext of `current`: an error
/// naming the file if it cannot be read or names another ext.
fn reread(file: &Path, current: &RunOptions) -> Result<RunOptions, Error> {
    let new = l3mp::run::config_file::load(file)?;
    if new.ext != current.ext {
        return Err(Error::from(format!(
            "{}: ext cannot change on a reload ({} to {}): stop this instance and start one \
             for {}",
            file.display(),
            current.ext,
            new.ext,
            new.ext
        )));
    }
    Ok(new)
}

/// The options of `l3mp run`: those of the `--config` file, or of the flags; checked.
fn run_options(args: &RunArgs) -> Result<RunOptions, Error> {
    if let Some(file) = &args.config {
        return Ok(l3mp::run::config_file::load(file)?);
    }
    let opts = RunOptions {
        // clap requires --ext without --config.
        ext: args.ext.clone().unwrap_or_default(),
        links: links(&args.labels)?,
        label_bits: args.labels.label_bits,
        ingress: ingress_choice(args.ingress),
        peer: args.peer,
        unknown: unknown(args.labels.unknown),
        host_id: args.host_id.clone(),
        probe: probe(args.probe),
    };
    opts.check()?;
    Ok(opts)
}

/// Tells the service manager `states` when it asked to be told (`NOTIFY_SOCKET`, as under a
/// `Type=notify` unit); otherwise does nothing.
fn tell_systemd(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        log::warn!("telling systemd {states:?}: {e}");
    }
}

/// `l3mp status`'s exit status when an instance it shows is not attached to its ext.
const NOT_ATTACHED: u8 = 3;

/// `l3mp status`: every running instance, as a table or as JSON; an error when `--ext` names
/// an interface no instance runs on. Whether every instance shown has its programs on its ext.
fn status(args: &cli::StatusArgs) -> Result<bool, Error> {
    l3mp::status::check_privileges()?;
    let registry = l3mp::run::Registry::system();
    let instances = l3mp::status::collect(&registry, args.ext.as_deref())?;
    let readable = |e: &&l3mp::status::Entry| matches!(e, l3mp::status::Entry::Instance(_));
    if let (Some(ext), 0) = (&args.ext, instances.iter().filter(readable).count()) {
        return Err(Error::from(format!(
            "--ext {ext}: no l3mp instance runs on it"
        )));
    }
    if args.json {
        print!("{}", l3mp::status::json(&instances));
    } else if args.prometheus {
        // The metrics say which instance is attached (l3mp_ext_attached): a textfile
        // collector's `&& mv` must not lose them when one is not.
        print!("{}", l3mp::status::prometheus(&instances));
        return Ok(true);
    } else {
        print!("{}", l3mp::status::table(&instances));
    }
    // An instance that cannot be read cannot be said to be attached.
    Ok(instances.iter().all(|entry| match entry {
        l3mp::status::Entry::Instance(i) => i.ext.attached == Some(true),
        l3mp::status::Entry::Unreadable(_) => false,
    }))
}

/// `l3mp completions <shell>`: the completion script, generated from the clap definitions.
fn completions(args: &cli::CompletionsArgs) -> Result<(), Error> {
    let mut command = <Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "l3mp", &mut script);
    print_generated(&script, "the completion script")
}

/// `l3mp man`: the manual page of `l3mp` on stdout, or (with `--out-dir`) one file per
/// command.
fn man(args: &cli::ManArgs) -> Result<(), Error> {
    let command = <Cli as clap::CommandFactory>::command();
    if let Some(dir) = &args.out_dir {
        return manual::write_all(&command, dir)
            .map_err(|e| Error::from(format!("--out-dir {}: {e}", dir.display())));
    }
    let page = manual::page(&command, "l3mp")
        .map_err(|e| Error::from(format!("rendering the manual page: {e}")))?;
    print_generated(&page, "the manual page")
}

/// Writes `bytes` (`what`) to stdout; a reader that stops early (`| head`) is no error.
fn print_generated(bytes: &[u8], what: &str) -> Result<(), Error> {
    use std::io::Write;
    match std::io::stdout().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::from(format!("writing {what}: {e}")))
        }
        _ => Ok(()),
    }
}

/// `l3mp asm`: the listing for a configuration, with placeholder interface indexes and MACs
/// (the real ones are baked in at `run`).
fn asm(args: &AsmArgs) -> Result<(), Error> {
    if args.labels.links.is_empty() {
        return Err(Error::from(
            "no --if given: name at least one link, e.g. --if a@1",
        ));
    }
    let links: Vec<(String, u8)> = links(&args.labels)?
        .into_iter()
        .map(|l| (l.name, l.label))
        .collect();
    let cfg = Config::offline(
        args.labels.label_bits,
        match args.ext_kind {
            ExtKindArg::Ether => Framing::Ethernet,
            ExtKindArg::L3 => Framing::Ip,
        },
        &links,
        unknown(args.labels.unknown),
    );
    let listing = programs::build(&cfg)
        .and_then(|b| b.listing())
        .map_err(|e| Error::from(e.to_string()))?;
    print!("{listing}");
    Ok(())
}

/// `l3mp replay`: the report on stdout; an error when any packet violates the wire format.
fn replay(args: &ReplayArgs) -> Result<(), Error> {
    use l3mp::replay::Show;
    let opts = l3mp::replay::ReplayOptions {
        label: args.label,
        label_bits: args.label_bits,
        ethernet: args.ext_kind == ExtKindArg::Ether,
        engine: match args.engine {
            EngineArg::Interp => l3mp::vm::Engine::Interp,
            EngineArg::Jit => l3mp::vm::Engine::Jit,
        },
        show: if args.summary {
            Show::Summary
        } else if args.violations {
            Show::Violations
        } else {
            Show::Packets
        },
        json: args.json,
        progress: true,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let totals = l3mp::replay::replay_to(&args.file, &opts, &mut out)?;
    match totals.violations {
        0 => Ok(()),
        n => Err(Error::from(format!(
            "{}: {n} packets violate the wire format",
            args.file.display()
        ))),
    }
}
