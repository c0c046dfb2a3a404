//! The manual pages: what clap_mangen makes of the command-line definitions (name, synopsis,
//! description, options, subcommands), plus the sections an operator looks for that clap does
//! not know of: EXAMPLES, FILES, SIGNALS, EXIT STATUS and SEE ALSO.

use std::path::Path;

use clap::Command;
use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;

/// One section of extra text: its heading and its paragraphs (a paragraph starting with two
/// spaces is shown as a literal example).
type Section = (&'static str, &'static [&'static str]);

const EXAMPLES: Section = (
    "EXAMPLES",
    &[
        "Two links over WireGuard; the same command on the neighbour:",
        "  l3mp run --ext wg0 --if bgp1@1 --if bgp2@2",
        "Over an Ethernet segment, to the l3mp host at 192.0.2.2:",
        "  l3mp run --ext eth1 --peer 192.0.2.2 --if a@1 --if b@2",
        "As a service, one instance per tunnel, its configuration in /etc/l3mp/wg0.toml:",
        "  systemctl enable --now l3mp@wg0",
        "After editing /etc/l3mp/wg0.toml, apply only the difference:",
        "  systemctl reload l3mp@wg0",
        "The counters for node_exporter's textfile collector:",
        "  l3mp status --prometheus > /var/lib/prometheus/node-exporter/l3mp.prom",
        "What runs, its traffic per link, and whether each link's far end uses the same label \
         and label bits:",
        "  l3mp status --ext wg0",
    ],
);

const FILES: Section = (
    "FILES",
    &[
        "/run/l3mp/ID.json: the state file of each running instance, which l3mp status reads.",
        "/sys/fs/bpf/l3mp/ID/counters: its counters map, pinned in the BPF filesystem.",
        "/sys/fs/bpf/l3mp/ID/probes: the far ends' probes as its demux recorded them, by label \
         (what l3mp status judges each link's far end from).",
        "/run/l3mp/ID.lock and /run/l3mp/ext/: the locks an instance holds for life on its id \
         and its ext (flock; the kernel releases them when it dies): how l3mp tells a live \
         instance from a dead one's leftovers.",
        "/etc/systemd/system/l3mp@.service: the unit, one instance per tunnel (l3mp@wg0).",
        "/etc/l3mp/EXT.toml: the unit's configuration for ext EXT (l3mp run --config): ext, \
         label_bits, ingress, unknown, peer, host_id, probe, and a [[link]] table (name, \
         label) per link.",
    ],
);

const SIGNALS: Section = (
    "SIGNALS",
    &[
        "SIGTERM, SIGINT: l3mp run detaches every program, deletes every link it created, \
         removes its state file and pins, and exits 0.",
        "SIGHUP: l3mp run reads its --config file again and applies only the difference (links \
         added, removed or relabelled; unknown; probe); the other links are not disturbed. A file \
         that cannot be read, or a change that cannot be applied (ext, label_bits, ingress, \
         peer), changes nothing and is one error line. Started with flags, it ignores SIGHUP.",
        "SIGUSR2: l3mp run hands over, for an upgrade: it detaches every program, removes its \
         state file and pins, leaves its links as they are, and exits 75; the next l3mp run on \
         the same ext adopts them.",
        "SIGKILL (or a crash) leaves the links; the next l3mp run on the same ext adopts those its \
         configuration has (the same name and label: same ifindex, addresses, routes and MACs), \
         removes the others, and says so.",
    ],
);

const RUN_EXIT: Section = (
    "EXIT STATUS",
    &[
        "0: stopped by a signal, everything it created removed.",
        "75: handed over (SIGUSR2): the links are left for the next start to adopt.",
        "1: it could not start or went wrong; one line on standard error names the flag, the \
         interface or the file, and nothing is left behind.",
        "2: the command line is wrong (clap's usage error).",
    ],
);

const STATUS_EXIT: Section = (
    "EXIT STATUS",
    &[
        "0: every instance shown has its programs on its ext (or none runs and no --ext was \
         given); with --prometheus, whatever they are (l3mp_ext_attached says it).",
        "1: the instances could not be read, or --ext names an interface no instance runs on.",
        "3: at least one instance shown is not attached to its ext (ext gone, or just back and \
         not yet attached, or its state could not be read).",
    ],
);

const SEE_ALSO: Section = (
    "SEE ALSO",
    &["ip-link(8), tc-bpf(8), wg(8), bpftool-link(8), systemd.service(5)"],
);

/// The extra sections of the page of `command` (`l3mp`, `l3mp-run`, ...).
fn extra_sections(command: &str) -> Vec<Section> {
    match command {
        "l3mp" => vec![EXAMPLES, FILES, SIGNALS, RUN_EXIT, SEE_ALSO],
        "l3mp-run" => vec![EXAMPLES, FILES, SIGNALS, RUN_EXIT, SEE_ALSO],
        "l3mp-status" => vec![FILES, STATUS_EXIT, SEE_ALSO],
        _ => vec![SEE_ALSO],
    }
}

/// The page of `cmd`, named `name`.
pub fn page(cmd: &Command, name: &str) -> std::io::Result<Vec<u8>> {
    let mut cmd = cmd
        .clone()
        .display_name(name.to_string())
        .bin_name(name.replace('-', " "));
    cmd.build();
    let man = Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    let mut roff = Roff::new();
    // clap's own usage line reads better than clap_mangen's synopsis for required options.
    let usage = cmd.render_usage().to_string();
    let usage = usage.trim_start_matches("Usage: ");
    roff.control("SH", ["SYNOPSIS"]).text([bold(usage)]);
    roff.to_writer(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut out)?;
    }
    let mut roff = Roff::new();
    for (heading, paragraphs) in extra_sections(name) {
        roff.control("SH", [heading]);
        for paragraph in paragraphs {
            match paragraph.strip_prefix("  ") {
                Some(example) => roff
                    .control("RS", ["4"])
                    .text([italic(example)])
                    .control("RE", []),
                None => roff.control("PP", []).text([roman(*paragraph)]),
            };
        }
    }
    roff.to_writer(&mut out)?;
    if cmd.get_version().is_some() {
        man.render_version_section(&mut out)?;
    }
    Ok(out)
}

/// Writes `l3mp.1` and `l3mp-SUBCOMMAND.1` for every subcommand into `dir`.
pub fn write_all(cmd: &Command, dir: &Path) -> std::io::Result<()> {
    let mut cmd = cmd.clone().disable_help_subcommand(true);
    cmd.build();
    let name = cmd.get_name().to_string();
    std::fs::write(dir.join(format!("{name}.1")), page(&cmd, &name)?)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub_name = format!("{name}-{}", sub.get_name());
        std::fs::write(dir.join(format!("{sub_name}.1")), page(sub, &sub_name)?)?;
    }
    Ok(())
}
