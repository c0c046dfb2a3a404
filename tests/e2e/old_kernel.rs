//! Debian 12's stock kernel (6.1: no tcx, so TC programs hang off a clsact qdisc as cls_bpf
//! filters, and an older verifier), booted by virtme-ng under qemu with TCG (nested KVM hangs
//! at boot) over this machine's own root filesystem. Inside it, this binary runs again with
//! what differs between kernels: every program variant through the verifier, a refusal for
//! each missing kernel feature, SIGTERM and SIGKILL leaving nothing, another's filters left
//! alone; then `l3mp demo` sends traffic both ways over every link on a TUN ext (TC) and a
//! veth ext (TC, then native XDP).

use std::path::{Path, PathBuf};
use std::process::Command;

use l3mp::lab::{ExtKind, Side, EXT};
use l3mp::run::TC_ATTACH_ENV;

use super::daemon::SLOW_ENV;
use super::{common, lab, privileged, refused, Setup};

/// Set inside the guest; the guest-only tests run only where it is.
const GUEST_ENV: &str = "L3MP_IN_GUEST";
/// The kernel image to boot, instead of the newest `/boot/vmlinuz-6.1.*-amd64`.
const KERNEL_ENV: &str = "L3MP_OLD_KERNEL";
/// How much slower than here things are in the emulated guest, at most.
const SLOWER: u32 = 20;
/// The tests of this binary the guest runs.
const IN_GUEST: [&str; 8] = [
    "old_kernel::guest_verifier_accepts_every_variant",
    "old_kernel::guest_refuses_what_the_kernel_lacks",
    "sigterm_removes_everything::tun_tc",
    "sigterm_removes_everything::veth_tc",
    "sigterm_removes_everything::veth_xdp",
    "tc_attach::foreign_tc_is_left_alone",
    "tc_attach::dropped_outside_its_namespace",
    "vlan::a_vlan_subinterface_serves_as_ext",
];
/// The demos the guest runs: `l3mp demo` arguments.
const DEMOS: [&str; 3] = ["", "--ethernet", "--ethernet --ingress xdp"];

/// The kernel image to boot, or why there is none.
fn old_kernel() -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var(KERNEL_ENV) {
        return Ok(PathBuf::from(path));
    }
    let mut images: Vec<PathBuf> = std::fs::read_dir("/boot")
        .map_err(|e| format!("/boot: {e}"))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            // The stock flavour: not -rt-amd64 or -cloud-amd64.
            name.starts_with("vmlinuz-6.1.")
                && name.ends_with("-amd64")
                && name.matches('-').count() == 3
        })
        .collect();
    images.sort_by_key(|path| version_key(path));
    images.pop().ok_or_else(|| {
        "no /boot/vmlinuz-6.1.*-amd64 (apt-get install linux-image-amd64 on Debian 12)".into()
    })
}

/// `vmlinuz-6.1.0-57-amd64` sorts by (0, 57).
fn version_key(path: &Path) -> Vec<u32> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name.split(['.', '-'])
        .filter_map(|part| part.parse().ok())
        .collect()
}

/// Whether `program` is on the PATH.
fn found(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// The shell script the guest runs.
fn guest_script() -> String {
    let this = std::env::current_exe().expect("this test binary");
    let l3mp = env!("CARGO_BIN_EXE_l3mp");
    let mut script = format!(
        "set -e\n\
         echo \"guest kernel $(uname -r) ($(cut -d' ' -f1 /proc/uptime) s up)\"\n\
         export {GUEST_ENV}=1 {SLOW_ENV}={SLOWER} RUST_BACKTRACE=1\n\
         unset {TC_ATTACH_ENV}\n\
         modprobe -a tun veth 8021q\n\
         {} --include-ignored --exact --test-threads=1 {}\n",
        this.display(),
        IN_GUEST.join(" ")
    );
    for demo in DEMOS {
        script.push_str(&format!(
            "echo \"== l3mp demo {demo} ($(cut -d' ' -f1 /proc/uptime) s up)\"\n{l3mp} demo {demo}\n"
        ));
    }
    script.push_str("echo \"the guest is done ($(cut -d' ' -f1 /proc/uptime) s up)\"\n");
    script
}

/// Boots the 6.1 kernel and runs [`IN_GUEST`] and [`DEMOS`] inside it; all must pass.
#[test]
fn debian_12_kernel() {
    let test = "debian_12_kernel";
    if std::env::var_os(GUEST_ENV).is_some() {
        return;
    }
    if std::env::var_os(TC_ATTACH_ENV).is_some() {
        eprintln!("skipped {test}: it runs in the pass without {TC_ATTACH_ENV}");
        return;
    }
    if !privileged(test, ExtKind::Veth) {
        return;
    }
    let kernel = match old_kernel() {
        Ok(kernel) => kernel,
        Err(why) => {
            eprintln!("skipped {test}: {why}");
            return;
        }
    };
    for (program, package) in [
        ("vng", "pip install virtme-ng"),
        ("qemu-system-x86_64", "apt-get install qemu-system-x86"),
        ("busybox", "apt-get install busybox-static"),
    ] {
        if !found(program) {
            eprintln!("skipped {test}: no {program} ({package})");
            return;
        }
    }
    let script = std::env::temp_dir().join(format!("l3mp-old-kernel-{}.sh", std::process::id()));
    std::fs::write(&script, guest_script()).expect("write the guest's script");
    let out = Command::new("vng")
        .args(["--disable-kvm", "--cpus", "2", "--memory", "2G", "-r"])
        .arg(&kernel)
        .arg("--exec")
        .arg(format!("sh {}", script.display()))
        .output()
        .expect("run vng");
    let _ = std::fs::remove_file(&script);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{said}");
    let booted = kernel.to_string_lossy().replace("/boot/vmlinuz-", "");
    assert!(
        said.contains(&format!("guest kernel {booted} (")),
        "{} did not boot",
        kernel.display()
    );
    let passed = format!("test result: ok. {} passed", IN_GUEST.len());
    assert!(said.contains(&passed), "in the guest: not {passed:?}");
    let crossed = said
        .lines()
        .filter(|l| l.starts_with("all ") && l.ends_with(" packets crossed where they should"))
        .count();
    assert_eq!(crossed, DEMOS.len(), "demos whose traffic all crossed");
    assert!(
        said.contains("the guest is done"),
        "the guest stopped early"
    );
    assert!(out.status.success(), "vng: {}", out.status);
}

/// Whether this runs inside the guest.
pub fn is_guest() -> bool {
    std::env::var_os(GUEST_ENV).is_some()
}

/// Whether this is the guest; says why the test does nothing when not.
fn in_guest(test: &str) -> bool {
    if is_guest() {
        return true;
    }
    eprintln!("skipped {test}: runs inside the old-kernel guest only (debian_12_kernel)");
    false
}

/// The 6.1 verifier accepts every program variant.
#[test]
#[ignore = "runs inside the old-kernel guest (old_kernel::debian_12_kernel)"]
fn guest_verifier_accepts_every_variant() {
    if in_guest("guest_verifier_accepts_every_variant") {
        common::kernel_accepts_every_variant();
    }
}

/// With module loading off, `l3mp run` refuses in one line naming what the kernel lacks:
/// first the clsact qdisc, then (sch_ingress loaded by hand) the cls_bpf classifier; it leaves
/// nothing behind either time.
#[test]
#[ignore = "runs inside the old-kernel guest (old_kernel::debian_12_kernel)"]
fn guest_refuses_what_the_kernel_lacks() {
    if !in_guest("guest_refuses_what_the_kernel_lacks") {
        return;
    }
    let setup = Setup::TunTc;
    if !privileged("guest_refuses_what_the_kernel_lacks", setup.kind()) {
        return;
    }
    for module in ["sch_ingress", "cls_bpf"] {
        let loaded = Path::new("/sys/module").join(module).exists();
        assert!(!loaded, "{module} is loaded already: nothing to show");
    }
    let helper = "/proc/sys/kernel/modprobe";
    let saved = std::fs::read_to_string(helper).expect("the modprobe helper");
    std::fs::write(helper, "/bin/false").expect("turn module loading off");
    let lab = lab(setup);
    let host = lab.host(Side::A);
    let args = ["run", "--ext", EXT, "--if", "a@1"];
    refused(host, &args, "this kernel has no clsact qdisc");
    let modprobe = |module: &str| {
        let status = Command::new(saved.trim()).arg(module).status();
        assert!(status.is_ok_and(|s| s.success()), "modprobe {module}");
    };
    modprobe("sch_ingress");
    refused(host, &args, "this kernel has no cls_bpf classifier");
    modprobe("cls_bpf");
    std::fs::write(helper, saved).expect("turn module loading back on");
}
