//! The command line, defined once with clap (the man page and completions come from here too).

use std::net::IpAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Many layer-3 links through one layer-3 tunnel, labelled in the DSCP bits: zero bytes of
/// overhead, nothing copied to userspace, the MTU unchanged.
#[derive(Parser, Debug)]
#[command(
    name = "l3mp",
    version,
    about,
    long_about = "l3mp creates independent layer-3 links (one per BGP session, VRF, customer or \
routing protocol) as real interfaces, and carries them all through one tunnel to a neighbour \
that runs l3mp too. Every packet leaving a link gets the link's label in the low bits of its \
DSCP field and goes out of the tunnel; every labelled packet arriving on the tunnel has the \
label cleared and appears as received on the link of that label. The work is done by eBPF \
programs on the links and on the tunnel: nothing is added to a packet and none is copied to \
userspace. l3mp run sets it up and keeps it running; l3mp status shows what runs."
)]
pub struct Cli {
    /// More output (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the links on a tunnel and run the datapath until SIGINT, SIGTERM or SIGUSR2.
    #[command(
        override_usage = "l3mp run --ext <IF> --if <NAME@LABEL>... [OPTIONS]\n       \
                          l3mp run --config <FILE> [-v|-q]",
        long_about = "Checks every option against the system, creates each --if link \
(a veth pair: the named end for the operator, a hidden end that receives what the tunnel \
delivers), attaches the programs, and runs in the foreground, following ext as it goes and \
comes back, until SIGINT or SIGTERM (then it detaches the programs and deletes the links) or \
SIGUSR2 (it detaches them and leaves the links for the next start to adopt). An ext that does \
not exist yet is waited for. With --config, SIGHUP reads the file again and applies \
only the difference. Run the same command, with the same labels, on the neighbour."
    )]
    Run(RunArgs),
    /// Show every running instance: ext, ingress mode, label bits, each link's state and
    /// traffic, and the counters that belong to no link.
    Status(StatusArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the manual page (roff), or write one per subcommand into a directory.
    Man(ManArgs),
    /// Build two hosts in network namespaces joined by an emulated tunnel, run l3mp on both,
    /// send traffic over every link, print what crossed where, and remove everything.
    Demo(DemoArgs),
    /// Print the annotated listing of every program generated for a configuration.
    Asm(AsmArgs),
    /// Run every packet of a capture through mark and demux in the offline VM and check each
    /// against the wire format; exits non-zero on any violation.
    Replay(ReplayArgs),
    /// Measure the datapath (as root): each program against a redirect-only floor, TCP and
    /// UDP between namespaces against the plain link and VXLAN, and the cost of more links.
    Bench(BenchArgs),
}

/// Which flavour of ingress demux runs on ext.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingress {
    /// TC, except native XDP on a physical NIC whose driver supports it.
    Auto,
    /// Native XDP (refused where the driver has none).
    Xdp,
    /// TC ingress.
    Tc,
}

/// What to do with a packet carrying a label no link uses.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownLabel {
    /// Hand it to ext's own stack untouched.
    Pass,
    /// Drop it.
    Drop,
}

/// Whether to send and check the far-end probe.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeSwitch {
    /// Send a probe on every link once a second and check the far end's.
    On,
    /// Send nothing and check nothing.
    Off,
}

/// The label options shared by `run` and `asm`.
#[derive(Args, Debug)]
pub struct LabelArgs {
    /// A managed link: its interface name and its label (1 to 2^N-1). Repeat for each link.
    #[arg(long = "if", value_name = "NAME@LABEL")]
    pub links: Vec<String>,
    /// Label width N in the low bits of DSCP (1 to 6). With N <= 4, DSCP CS6 survives.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub label_bits: u8,
    /// Packets arriving with a label no link uses.
    #[arg(long, value_enum, default_value_t = UnknownLabel::Pass)]
    pub unknown: UnknownLabel,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Read the options from this TOML file instead of the flags (its keys mirror them:
    /// ext, label_bits, ingress, unknown, peer, and a [[link]] table with name and label per
    /// link, host_id, probe); SIGHUP reads it again and applies the difference.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["ext", "links", "label_bits", "unknown", "ingress", "peer", "host_id", "probe"])]
    pub config: Option<std::path::PathBuf>,
    /// The tunnel interface (e.g. wg0), or an Ethernet interface towards the remote l3mp host.
    #[arg(long, value_name = "IF", required_unless_present = "config")]
    pub ext: Option<String>,
    #[command(flatten)]
    pub labels: LabelArgs,
    /// Where ingress demux runs.
    #[arg(long, value_enum, default_value_t = Ingress::Auto)]
    pub ingress: Ingress,
    /// For an Ethernet ext: the remote l3mp host's address on that segment.
    #[arg(long, value_name = "ADDR")]
    pub peer: Option<IpAddr>,
    /// Derive the links' MACs, and so their IPv6 link-local addresses, from this string (and
    /// ext's name) instead of the machine id and the network namespace's name.
    #[arg(long, value_name = "STRING")]
    pub host_id: Option<String>,
    /// The far-end check: a small probe on every link once a second, which the far end's
    /// l3mp records and drops, so that each end sees whether the other uses the same label
    /// and label bits (in l3mp status, the log and the metrics).
    #[arg(long, value_enum, default_value_t = ProbeSwitch::On)]
    pub probe: ProbeSwitch,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Only the instance on this interface.
    #[arg(long, value_name = "IF")]
    pub ext: Option<String>,
    /// Print a JSON array (one object per instance) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Print the counters in the Prometheus text format (for node_exporter's textfile
    /// collector) instead of a table.
    #[arg(long, conflicts_with = "json")]
    pub prometheus: bool,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write l3mp.1 and l3mp-<subcommand>.1 into this directory instead of printing l3mp.1.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<std::path::PathBuf>,
}

/// The kind of ext a listing is generated for.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtKindArg {
    /// A layer-3 tunnel (wg0, tun).
    L3,
    /// An Ethernet interface.
    Ether,
}

#[derive(Args, Debug)]
pub struct AsmArgs {
    #[command(flatten)]
    pub labels: LabelArgs,
    /// The kind of ext.
    #[arg(long, value_enum, default_value_t = ExtKindArg::L3)]
    pub ext_kind: ExtKindArg,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Join the two hosts with an Ethernet ext (veth) instead of a TUN pair and relay.
    #[arg(long)]
    pub ethernet: bool,
    /// Ingress demux flavour on both hosts (as for run; auto picks TC on the demo's virtual
    /// devices).
    #[arg(long, value_enum, default_value_t = Ingress::Auto)]
    pub ingress: Ingress,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// A pcap or pcapng capture (Ethernet, raw IP or Linux cooked).
    pub file: std::path::PathBuf,
    /// The label to mark the packets with.
    #[arg(long, default_value_t = 1)]
    pub label: u8,
    /// Label width N.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub label_bits: u8,
    /// The kind of ext the packets cross.
    #[arg(long, value_enum, default_value_t = ExtKindArg::L3)]
    pub ext_kind: ExtKindArg,
    /// The engine that runs the programs.
    #[arg(long, value_enum, default_value_t = EngineArg::Interp)]
    pub engine: EngineArg,
    /// Print only every violation and the totals.
    #[arg(long, conflicts_with = "violations")]
    pub summary: bool,
    /// Print only the violations (nothing when there is none).
    #[arg(long)]
    pub violations: bool,
    /// Print one JSON document (the options, the packets shown, the totals) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The engine `l3mp replay` runs the programs on.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineArg {
    /// rbpf's interpreter: checks every memory access, so a program reaching outside the
    /// packet is reported as a violation. The reference.
    Interp,
    /// rbpf's JIT (x86_64): several times faster, but checks no memory access; for captures
    /// whose programs already passed with the interpreter.
    Jit,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Short durations and few rounds: checks that everything runs; the figures are rough.
    #[arg(long)]
    pub quick: bool,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only the offline part, without root: `l3mp replay` on a generated capture (200,000
    /// frames; 20,000 with --quick) on each engine against `tcpdump -nr` on the same file.
    #[arg(long)]
    pub offline: bool,
    /// Only the start-up part: 1 link against 63, started in turns in a namespace.
    #[arg(long, conflicts_with = "offline")]
    pub start_up: bool,
    /// Only the per-program part: each hot-path program under BPF_PROG_TEST_RUN against the
    /// floor of its hook (repeat, primed and single runs).
    #[arg(long, conflicts_with_all = ["offline", "start_up"])]
    pub programs: bool,
}
