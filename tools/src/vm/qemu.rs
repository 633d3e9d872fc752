//! Booting a node in QEMU and reading its serial console: a kernel and
//! initramfs loaded by QEMU, or a disk image booted by UEFI firmware.
//!
//! TCG by default: nested KVM hangs on the machines the timings were
//! measured on, and only TCG can count instructions (`-icount`); KVM is
//! an option ([`Accel`]). The guest's network is user-mode with
//! `restrict=on`, so it can reach nothing but the host's loopback
//! forwards a test sets up in [`VmConfig::guest_forwards`] (or, unrestricted,
//! only a loopback-only network namespace: [`GuestNetwork`]); the host
//! reaches a guest port only through a [`HostForward`] on a loopback address.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kios_abi::image::INIT;
use serde::Serialize;
use uuid::Uuid;

use crate::host::arch::Arch;
use crate::host::child::killed_with_parent;
use crate::image::board::{Board, BoardCard};
use crate::vm::console::{Console, ConsoleLine};

/// Where the VM's kernel comes from.
#[derive(Clone, Debug)]
pub enum BootSource {
    /// QEMU loads the kernel and the initramfs and passes the kernel
    /// command line itself (`-kernel`, `-initrd`, `-append`).
    Kernel { kernel: PathBuf, initrd: PathBuf },
    /// UEFI firmware boots the disk image (the first virtio-blk drive)
    /// from its EFI system partition, whose unified kernel image carries
    /// the kernel, the initramfs and the command line.
    Firmware { disk: PathBuf },
    /// QEMU loads a slot release's kernel with the command line of its
    /// UKI (no initramfs) and attaches the A/B disk as the first drive:
    /// the kernel verifies and mounts slot A's root as a firmware boot
    /// does, without the firmware's time (the bench's verified-root
    /// timeline under `-icount`).
    Slot {
        kernel: PathBuf,
        cmdline: String,
        disk: PathBuf,
    },
    /// A board's QEMU model booted as the board's firmware boots it: the
    /// kernel, the board's device tree and the initramfs loaded into
    /// memory with the card's command line, and the SD card image in the
    /// card slot.
    Board {
        board: Board,
        kernel: PathBuf,
        device_tree: PathBuf,
        initrd: PathBuf,
        cmdline: String,
        sd_card: PathBuf,
    },
}

/// How QEMU runs the guest's CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Emulated (`-cpu max`): any arch on any host, and instruction
    /// counting, so timelines repeat.
    #[default]
    Tcg,
    /// The host's CPU through /dev/kvm (`-cpu host`): fast, the host's arch
    /// only, never instruction-counted.
    Kvm,
}

/// What a KVM guest's timestamps measure, for reports.
pub const KVM_CLOCK: &str = "guest clock, KVM (not instruction-counted)";

/// The device KVM is reached through.
const KVM_DEVICE: &str = "/dev/kvm";

impl Accel {
    /// Fails early, with the reason, when this accelerator cannot run `arch`.
    pub fn check(self, arch: Arch) -> Result<()> {
        if self == Accel::Tcg {
            return Ok(());
        }
        let host = Arch::host()?;
        if arch != host {
            bail!("--accel kvm runs the host's arch ({host}) only, not {arch}: use --accel tcg");
        }
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(KVM_DEVICE)
            .map(drop)
            .with_context(|| {
                format!(
                    "--accel kvm: cannot open {KVM_DEVICE} (no KVM on this host, or this \
                     user is not in the kvm group); use --accel tcg"
                )
            })
    }
}

#[derive(Clone, Debug)]
pub struct VmConfig {
    pub arch: Arch,
    pub boot: BootSource,
    pub memory_mib: u32,
    pub accel: Accel,
    /// `-icount shift=0`: guest time follows executed instructions, so
    /// boot timelines repeat on a noisy host. See `icount_mode`. TCG only.
    pub icount: bool,
    /// What the console of a `-kernel` boot shows: everything unless told
    /// otherwise, because tests read the node's services on the console;
    /// `kios boot` and the bench boot quiet, as a node does. A disk's
    /// command line is in its UKI.
    pub console: ConsoleVerbosity,
    /// Raw disk images attached as virtio-blk drives, in this order, after
    /// the boot disk if there is one.
    pub extra_disks: Vec<PathBuf>,
    /// Leave the disk files as they were: QEMU keeps the guest's writes
    /// in temporary overlays (`-snapshot`), so a shipped disk stays pristine.
    pub snapshot: bool,
    /// Appended to the kernel command line of a `-kernel` boot (tests
    /// use it for `kios.*` options); a disk's command line is in its UKI.
    pub extra_kernel_arguments: String,
    /// Whole `guestfwd=...` options appended to the user-mode `-nic`, such
    /// as `ControlPlane::guest_forward`'s: the only addresses the
    /// restricted guest can reach.
    pub guest_forwards: Vec<String>,
    /// TCP ports of the guest the host reaches on its loopback
    /// (`hostfwd=` options of the user-mode `-nic`).
    pub host_forwards: Vec<HostForward>,
    /// QEMU's human monitor on a Unix socket here, for [`press_power_button`];
    /// None: no monitor.
    pub monitor_socket: Option<PathBuf>,
    /// The machine's SMBIOS product UUID (`-uuid`), from which a node's
    /// first boot derives /etc/machine-id and its name, as on a real
    /// machine. None: QEMU's all-zero UUID, which the first boot ignores
    /// (a random machine ID). amd64 only: arm64's `virt` has SMBIOS only
    /// under UEFI firmware.
    pub smbios_uuid: Option<Uuid>,
    /// Let the guest reboot (the firmware boots the disk again) instead
    /// of QEMU exiting when it does (`-no-reboot`): boot counting and
    /// slot fallback take several boots in one run.
    pub reboots: bool,
    /// A firmware boot under UEFI Secure Boot: OVMF's Secure Boot build
    /// (q35 with SMM; amd64 only) from a copy of this variable store, the
    /// one with the keys enrolled ([`crate::image::secure_boot::enrolled_variables`]).
    pub secure_boot_variables: Option<PathBuf>,
    /// What the guest's user-mode network reaches.
    pub guest_network: GuestNetwork,
    /// Where the guest's real-time clock starts (`-rtc base=`, e.g.
    /// `2001-01-01`); None: the host's time.
    pub rtc_base: Option<String>,
}

/// What the guest's user-mode network reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestNetwork {
    /// `restrict=on`: nothing but [`VmConfig::guest_forwards`] (TCP), and
    /// DHCP from QEMU itself. libslirp drops every other packet from the
    /// guest, UDP included.
    Restricted,
    /// `restrict=off`, with QEMU run inside the named network namespace
    /// (`ip netns exec`), which must have no interface but its loopback
    /// (see `crate::testing::netns`): the guest reaches what listens on
    /// the namespace's loopback as 10.0.2.2, over TCP and UDP alike, and
    /// nothing else, since the namespace has no other interface or route.
    LoopbackNamespace(String),
}

/// A guest TCP port reachable at `address:host_port` on the host: QEMU
/// listens there and forwards each connection to the guest's `guest_port`.
/// The address must be a loopback one (127.0.0.0/8), so nothing outside the
/// host reaches the guest; every VM can have its own (127.0.0.2, 127.0.0.3, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostForward {
    address: Ipv4Addr,
    host_port: u16,
    guest_port: u16,
}

impl HostForward {
    /// Fails for an address outside loopback.
    pub fn loopback(address: Ipv4Addr, host_port: u16, guest_port: u16) -> Result<HostForward> {
        if !address.is_loopback() {
            bail!("a host forward listens on loopback only, not {address}");
        }
        Ok(HostForward {
            address,
            host_port,
            guest_port,
        })
    }

    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// The `hostfwd=` option of the user-mode `-nic`.
    fn option(&self) -> String {
        format!(
            "hostfwd=tcp:{}:{}-:{}",
            self.address, self.host_port, self.guest_port
        )
    }
}

/// Presses the VM's power button (ACPI on q35 and on virt with UEFI, the
/// GPIO power key on virt booted with `-kernel`) through its monitor.
pub fn press_power_button(monitor_socket: &Path) -> Result<()> {
    monitor_command(monitor_socket, "system_powerdown")
}

/// Sends one command line to the VM's human monitor (`drive_del
/// extra-disk0` pulls a data disk's backend away under the guest).
pub fn monitor_command(monitor_socket: &Path, command: &str) -> Result<()> {
    let mut monitor =
        std::os::unix::net::UnixStream::connect(monitor_socket).with_context(|| {
            format!(
                "connecting to QEMU's monitor at {}",
                monitor_socket.display()
            )
        })?;
    std::io::Write::write_all(&mut monitor, format!("{command}\n").as_bytes())
        .with_context(|| format!("sending `{command}` to QEMU's monitor"))
}

/// Debian's UEFI firmware for QEMU: OVMF for q35, AAVMF for virt.
#[derive(Clone, Copy, Debug)]
pub struct Firmware {
    /// The firmware's code, mapped read-only.
    pub code: &'static str,
    /// The pristine variable store each boot starts from a copy of.
    pub variables: &'static str,
    pub package: &'static str,
}

impl Firmware {
    pub fn for_arch(arch: Arch) -> Firmware {
        match arch {
            Arch::Amd64 => Firmware {
                code: "/usr/share/OVMF/OVMF_CODE_4M.fd",
                variables: "/usr/share/OVMF/OVMF_VARS_4M.fd",
                package: "ovmf",
            },
            Arch::Arm64 => Firmware {
                code: "/usr/share/AAVMF/AAVMF_CODE.fd",
                variables: "/usr/share/AAVMF/AAVMF_VARS.fd",
                package: "qemu-efi-aarch64",
            },
        }
    }
}

/// What the node's serial console shows (`kios_abi::console`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleVerbosity {
    /// The init's lines and the timeline; child output stays in kmsg and
    /// the services' log files. What a node boots with.
    #[default]
    Quiet,
    /// Every line of containerd, the kubelet and the pods' runtimes too,
    /// for debugging (each printed synchronously, so the boot is slower).
    All,
}

impl ConsoleVerbosity {
    fn loglevel(self) -> u8 {
        match self {
            ConsoleVerbosity::Quiet => kios_abi::console::QUIET_LOGLEVEL,
            ConsoleVerbosity::All => kios_abi::console::ALL_LOGLEVEL,
        }
    }
}

/// The kernel command line of every node boot: QEMU passes it with
/// `-append`, and the disk image's unified kernel image carries it.
pub fn kernel_command_line(arch: Arch, console: ConsoleVerbosity) -> String {
    let device = console_device(arch);
    // panic=-1 reboots at once on a panic and -no-reboot turns that into
    // QEMU exiting, so a broken boot ends the run instead of hanging.
    // rootfstype=ramfs: an erofs root image is mounted from a file in the
    // initramfs, which needs a page-cache file (ramfs) rather than tmpfs's.
    format!(
        "console={device} rdinit={INIT} rootfstype=ramfs printk.devkmsg=on panic=-1 loglevel={}",
        console.loglevel()
    )
}

/// The kernel command line of a disk slot's unified kernel image: no
/// initramfs; `root_arguments` make the kernel mount the slot's verified
/// root itself, and it starts the init from there. A panic reboots at
/// once, which costs the slot one of its tries.
pub fn slot_kernel_command_line(
    arch: Arch,
    console: ConsoleVerbosity,
    root_arguments: &str,
) -> String {
    format!(
        "console={} init={INIT} {root_arguments} printk.devkmsg=on panic=-1 loglevel={}",
        console_device(arch),
        console.loglevel()
    )
}

fn console_device(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "ttyS0",
        Arch::Arm64 => "ttyAMA0",
    }
}

impl VmConfig {
    /// A VM that QEMU boots from `kernel` and `initrd`.
    pub fn new(arch: Arch, kernel: PathBuf, initrd: PathBuf) -> VmConfig {
        VmConfig::booting(arch, BootSource::Kernel { kernel, initrd })
    }

    /// A VM whose UEFI firmware boots the disk image `disk`.
    pub fn firmware_boot(arch: Arch, disk: PathBuf) -> VmConfig {
        VmConfig::booting(arch, BootSource::Firmware { disk })
    }

    /// A VM that boots a slot release's `kernel` with its `cmdline`, the
    /// A/B disk `disk` attached ([`BootSource::Slot`]).
    pub fn slot_boot(arch: Arch, kernel: PathBuf, cmdline: String, disk: PathBuf) -> VmConfig {
        VmConfig::booting(
            arch,
            BootSource::Slot {
                kernel,
                cmdline,
                disk,
            },
        )
    }

    /// A board model booting `card`'s kernel, device tree, initramfs and
    /// command line with the card image attached ([`BootSource::Board`]).
    pub fn board_boot(board: Board, card: &BoardCard) -> VmConfig {
        VmConfig {
            memory_mib: board.memory_mib(),
            ..VmConfig::booting(
                board.arch(),
                BootSource::Board {
                    board,
                    kernel: card.kernel.clone(),
                    device_tree: card.device_tree.clone(),
                    initrd: card.initramfs.clone(),
                    cmdline: format!("{} {}", card.command_line, board.qemu_console()),
                    sd_card: card.image.clone(),
                },
            )
        }
    }

    fn booting(arch: Arch, boot: BootSource) -> VmConfig {
        VmConfig {
            arch,
            boot,
            memory_mib: 1024,
            accel: Accel::Tcg,
            icount: true,
            console: ConsoleVerbosity::All,
            extra_disks: Vec::new(),
            snapshot: false,
            extra_kernel_arguments: String::new(),
            guest_forwards: Vec::new(),
            host_forwards: Vec::new(),
            monitor_socket: None,
            smbios_uuid: None,
            reboots: false,
            secure_boot_variables: None,
            guest_network: GuestNetwork::Restricted,
            rtc_base: None,
        }
    }

    fn qemu_binary(&self) -> &'static str {
        match self.arch {
            Arch::Amd64 => "qemu-system-x86_64",
            Arch::Arm64 => "qemu-system-aarch64",
        }
    }

    fn qemu_package(&self) -> &'static str {
        match self.arch {
            Arch::Amd64 => "qemu-system-x86",
            Arch::Arm64 => "qemu-system-arm",
        }
    }

    pub fn kernel_command_line(&self) -> String {
        self.with_extra_arguments(&kernel_command_line(self.arch, self.console))
    }

    /// `cmdline` followed by [`VmConfig::extra_kernel_arguments`], if any.
    fn with_extra_arguments(&self, cmdline: &str) -> String {
        match self.extra_kernel_arguments.trim() {
            "" => cmdline.to_string(),
            extra => format!("{cmdline} {extra}"),
        }
    }

    fn secure_boot(&self) -> bool {
        self.secure_boot_variables.is_some()
    }

    /// The firmware of a firmware boot: OVMF's Secure Boot build when
    /// Secure Boot is on (amd64's: a firmware boot refuses it on arm64).
    fn firmware(&self) -> Firmware {
        if self.secure_boot() {
            Firmware {
                code: crate::image::secure_boot::SECURE_BOOT_FIRMWARE_CODE,
                variables: crate::image::secure_boot::SECURE_BOOT_FIRMWARE_VARIABLES,
                package: "ovmf",
            }
        } else {
            Firmware::for_arch(self.arch)
        }
    }

    /// The writable copy of the firmware's variable store a firmware boot
    /// uses, beside its disk; `run_vm` renews it before every boot.
    fn firmware_variables(disk: &Path) -> PathBuf {
        let mut name = disk.file_name().unwrap_or_default().to_os_string();
        name.push(".efivars");
        disk.with_file_name(name)
    }

    pub fn command(&self) -> Command {
        let board = match &self.boot {
            BootSource::Board { board, .. } => Some(*board),
            _ => None,
        };
        let machine = match (self.arch, self.secure_boot(), board) {
            (_, _, Some(board)) => board.qemu_machine(),
            // SMM: only the firmware's SMM code writes its authenticated variables.
            (Arch::Amd64, true, None) => "q35,smm=on",
            (Arch::Amd64, false, None) => "q35",
            (Arch::Arm64, _, None) => "virt",
        };
        let (accel, cpu) = match self.accel {
            Accel::Tcg => ("tcg", "max"),
            Accel::Kvm => ("kvm", "host"),
        };
        let mut command = match &self.guest_network {
            GuestNetwork::Restricted => Command::new(self.qemu_binary()),
            GuestNetwork::LoopbackNamespace(namespace) => {
                let mut in_namespace = Command::new("ip");
                in_namespace.args(["netns", "exec", namespace, self.qemu_binary()]);
                in_namespace
            }
        };
        command.args(["-machine", machine, "-accel", accel]);
        // A board model has its SoC's CPU, and all of its cores.
        if board.is_none() {
            command.args(["-cpu", cpu]);
        }
        let cpus = board.map_or(1, Board::cpus);
        command
            .args([
                "-m",
                &self.memory_mib.to_string(),
                "-smp",
                &cpus.to_string(),
            ])
            .args(
                self.smbios_uuid
                    .iter()
                    .flat_map(|uuid| ["-uuid".to_string(), uuid.to_string()]),
            )
            .args(["-nographic", "-serial", "stdio"])
            .args(if self.reboots {
                &[][..]
            } else {
                &["-no-reboot"][..]
            })
            .arg("-monitor")
            .arg(match &self.monitor_socket {
                Some(socket) => format!("unix:{},server=on,wait=off", socket.display()),
                None => "none".to_string(),
            })
            .arg("-nic")
            .arg(match board {
                // The board models have no network device QEMU can back.
                Some(_) => "none".to_string(),
                None => self.nic_option(),
            });
        match &self.boot {
            BootSource::Kernel { kernel, initrd } => {
                command
                    .arg("-kernel")
                    .arg(kernel)
                    .arg("-initrd")
                    .arg(initrd)
                    .args(["-append", &self.kernel_command_line()]);
            }
            BootSource::Firmware { disk } => {
                let firmware = self.firmware();
                let variables = VmConfig::firmware_variables(disk);
                if self.secure_boot() {
                    command.args(["-global", "driver=cfi.pflash01,property=secure,value=on"]);
                }
                command
                    .arg("-drive")
                    .arg(drive_option(
                        "if=pflash,format=raw,unit=0,readonly=on",
                        Path::new(firmware.code),
                    ))
                    .arg("-drive")
                    .arg(drive_option("if=pflash,format=raw,unit=1", &variables))
                    .arg("-drive")
                    .arg(drive_option("if=none,format=raw,id=boot-disk", disk))
                    // bootindex: the firmware tries the disk first, not a network boot.
                    .args(["-device", "virtio-blk-pci,drive=boot-disk,bootindex=0"]);
            }
            BootSource::Slot {
                kernel,
                cmdline,
                disk,
            } => {
                let cmdline = self.with_extra_arguments(cmdline);
                command
                    .arg("-kernel")
                    .arg(kernel)
                    .args(["-append", &cmdline])
                    .arg("-drive")
                    .arg(drive_option("if=none,format=raw,id=boot-disk", disk))
                    .args(["-device", "virtio-blk-pci,drive=boot-disk"]);
            }
            BootSource::Board {
                board,
                kernel,
                device_tree,
                initrd,
                cmdline,
                sd_card,
            } => {
                let cmdline = self.with_extra_arguments(cmdline);
                command
                    .arg("-kernel")
                    .arg(kernel)
                    .arg("-dtb")
                    .arg(device_tree)
                    .arg("-initrd")
                    .arg(initrd)
                    .args(["-append", &cmdline])
                    .arg("-drive")
                    .arg(drive_option("if=none,format=raw,id=sd-card", sd_card))
                    .arg("-device")
                    .arg(format!(
                        "sd-card,drive=sd-card,bus={}",
                        board.qemu_card_bus()
                    ));
            }
        }
        for (index, disk) in self.extra_disks.iter().enumerate() {
            command
                .arg("-drive")
                .arg(drive_option(
                    &format!("if=none,format=raw,id=extra-disk{index}"),
                    disk,
                ))
                .arg("-device")
                .arg(format!("virtio-blk-pci,drive=extra-disk{index}"));
        }
        if self.snapshot {
            command.arg("-snapshot");
        }
        if let Some(base) = &self.rtc_base {
            command.arg("-rtc").arg(format!("base={base}"));
        }
        if self.counts_instructions() {
            command.args(["-icount", self.icount_mode()]);
        }
        command
    }

    /// Whether guest time follows executed instructions: asked for, and
    /// possible (KVM runs the guest natively, uncounted).
    pub fn counts_instructions(&self) -> bool {
        self.icount && self.accel == Accel::Tcg
    }

    /// What the guest's timestamps measure, for reports.
    pub fn clock(&self) -> String {
        if self.counts_instructions() {
            format!("guest clock, -icount {}", self.icount_mode())
        } else if self.accel == Accel::Kvm {
            KVM_CLOCK.to_string()
        } else {
            "guest clock".to_string()
        }
    }

    /// The user-mode network: restricted (or not, inside a loopback-only
    /// namespace), plus the guest and host forwards.
    fn nic_option(&self) -> String {
        let restrict = match self.guest_network {
            GuestNetwork::Restricted => "on",
            GuestNetwork::LoopbackNamespace(_) => "off",
        };
        let mut option = format!("user,model=virtio-net-pci,restrict={restrict}");
        for forward in &self.guest_forwards {
            option.push(',');
            option.push_str(forward);
        }
        for forward in &self.host_forwards {
            option.push(',');
            option.push_str(&forward.option());
        }
        option
    }

    /// `sleep=off` lets an idle guest's clock jump to its next timer at
    /// once: fast, and exact for CPU work and timer waits. But a disk read
    /// leaves the guest idle until the host completes it, and the jump then
    /// charges it up to the next timer (measured: an ext4 mount took 6.2 s
    /// of guest time, an unmount 48 s). With disks the idle guest sleeps
    /// in real time instead (`sleep=on`), so a read costs what it costs.
    pub fn icount_mode(&self) -> &'static str {
        let has_disk =
            !matches!(self.boot, BootSource::Kernel { .. }) || !self.extra_disks.is_empty();
        if has_disk {
            "shift=0,sleep=on"
        } else {
            "shift=0,sleep=off"
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// The whole run, boot to power-off; QEMU is killed past it.
    pub timeout: Duration,
    /// Print each console line to stdout as it arrives.
    pub echo: bool,
}

/// What the per-line callback wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineVerdict {
    Continue,
    /// Kill QEMU now; the run returns normally with `stopped_early` set.
    Stop,
}

#[derive(Debug)]
pub struct VmRun {
    pub console: Console,
    pub status: ExitStatus,
    pub wall_time: Duration,
    pub stopped_early: bool,
    pub qemu_stderr: String,
}

/// QEMU outlived the timeout; carries the console read so far.
#[derive(Debug)]
pub struct VmTimedOut {
    pub timeout: Duration,
    pub console: Console,
    pub qemu_stderr: String,
}

impl fmt::Display for VmTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "QEMU did not exit within {} s (killed); last console lines:\n{}",
            self.timeout.as_secs(),
            self.console.tail(40)
        )?;
        if !self.qemu_stderr.trim().is_empty() {
            write!(f, "\nQEMU stderr:\n{}", self.qemu_stderr.trim_end())?;
        }
        Ok(())
    }
}

impl std::error::Error for VmTimedOut {}

/// Kills QEMU if we leave early (error or panic), so no VM outlives us.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            // Best effort: the process may exit between the check and the kill.
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `-drive` options with a file name, its commas doubled as QEMU wants.
fn drive_option(options: &str, file: &Path) -> String {
    format!(
        "{options},file={}",
        file.display().to_string().replace(',', ",,")
    )
}

/// Gives a firmware boot a fresh copy of the firmware's variable store,
/// so every boot starts from the same firmware state.
fn prepare_firmware(config: &VmConfig) -> Result<()> {
    let BootSource::Firmware { disk } = &config.boot else {
        return Ok(());
    };
    if config.secure_boot() && config.arch != Arch::Amd64 {
        bail!("Secure Boot VMs are amd64 only (OVMF's Secure Boot build)");
    }
    let firmware = config.firmware();
    for file in [firmware.code, firmware.variables] {
        if !Path::new(file).exists() {
            bail!(
                "no UEFI firmware at {file} (package {}: `cargo kios test` installs it)",
                firmware.package
            );
        }
    }
    let variables = VmConfig::firmware_variables(disk);
    let pristine = match &config.secure_boot_variables {
        Some(enrolled) => enrolled.as_path(),
        None => Path::new(firmware.variables),
    };
    std::fs::copy(pristine, &variables).with_context(|| {
        format!(
            "copying the firmware variables {} to {}",
            pristine.display(),
            variables.display()
        )
    })?;
    Ok(())
}

/// Boots the VM and reads its console until QEMU exits, `on_line` says
/// stop, or the timeout passes (then the error is a [`VmTimedOut`]).
pub fn run_vm(
    config: &VmConfig,
    options: RunOptions,
    mut on_line: impl FnMut(&ConsoleLine) -> LineVerdict,
) -> Result<VmRun> {
    config.accel.check(config.arch)?;
    prepare_firmware(config)?;
    let started = Instant::now();
    let mut command = config.command();
    // Killed with this thread too: a tool killed by a signal runs no destructor.
    killed_with_parent(&mut command);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(KillOnDrop)
        .with_context(|| {
            format!(
                "starting {} (package {}: `cargo kios test` installs it)",
                config.qemu_binary(),
                config.qemu_package()
            )
        })?;
    let stdout = child
        .0
        .stdout
        .take()
        .context("QEMU's stdout was not piped")?;
    let stderr = child
        .0
        .stderr
        .take()
        .context("QEMU's stderr was not piped")?;
    let (lines_tx, lines_rx) = mpsc::channel();
    // Timestamped in the reader thread, as close to arrival as possible.
    let reader = thread::spawn(move || read_console(stdout, started, lines_tx));
    let stderr_reader = thread::spawn(move || {
        let mut text = String::new();
        // A read error only loses diagnostics.
        let _ = BufReader::new(stderr).read_to_string(&mut text);
        text
    });

    let deadline = started + options.timeout;
    let mut console = Console::default();
    let mut stopped_early = false;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match lines_rx.recv_timeout(remaining) {
            Ok(line) => {
                if options.echo {
                    println!("{}", line.text);
                }
                let verdict = on_line(&line);
                console.lines.push(line);
                if verdict == LineVerdict::Stop {
                    stopped_early = true;
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                drop(child);
                return Err(VmTimedOut {
                    timeout: options.timeout,
                    console,
                    qemu_stderr: join_text(stderr_reader),
                }
                .into());
            }
            // QEMU closed its console: it is exiting.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if stopped_early {
        child.0.kill().context("killing QEMU")?;
    }
    let status = wait_until(&mut child.0, deadline)?;
    let Some(status) = status else {
        drop(child);
        return Err(VmTimedOut {
            timeout: options.timeout,
            console,
            qemu_stderr: join_text(stderr_reader),
        }
        .into());
    };
    // The reader ends at EOF, which follows QEMU's exit.
    let _ = reader.join();
    Ok(VmRun {
        console,
        status,
        wall_time: started.elapsed(),
        stopped_early,
        qemu_stderr: join_text(stderr_reader),
    })
}

fn read_console(stdout: impl Read, started: Instant, lines: mpsc::Sender<ConsoleLine>) {
    let mut reader = BufReader::new(stdout);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        match reader.read_until(b'\n', &mut raw) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&raw).replace(['\r', '\n'], "");
                let line = ConsoleLine {
                    at: started.elapsed(),
                    text,
                };
                if lines.send(line).is_err() {
                    return;
                }
            }
        }
    }
}

fn wait_until(child: &mut Child, deadline: Instant) -> Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait().context("waiting for QEMU")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn join_text(reader: thread::JoinHandle<String>) -> String {
    reader.join().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_follows_the_contract() {
        let config = VmConfig::new(Arch::Amd64, "/k".into(), "/i".into());
        let command = config.command();
        let args: Vec<String> = command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        assert_eq!(command.get_program(), "qemu-system-x86_64");
        assert!(joined.contains("-machine q35 -accel tcg -cpu max -m 1024 -smp 1"));
        assert!(joined.contains("-no-reboot"));
        assert!(joined.contains("-kernel /k -initrd /i"));
        assert!(joined.contains("user,model=virtio-net-pci,restrict=on"));
        assert!(joined.ends_with("-icount shift=0,sleep=off"));
        assert!(args.contains(
            &"console=ttyS0 rdinit=/bin/init rootfstype=ramfs printk.devkmsg=on panic=-1 loglevel=8"
                .to_string()
        ));

        assert_eq!(config.clock(), "guest clock, -icount shift=0,sleep=off");

        let without_icount = VmConfig {
            icount: false,
            ..config.clone()
        };
        assert!(!without_icount
            .command()
            .get_args()
            .any(|arg| arg == "-icount"));
        assert_eq!(without_icount.clock(), "guest clock");
    }

    #[test]
    fn a_board_boots_its_model_with_the_card_in_its_slot_and_the_cards_command_line() {
        let card = BoardCard {
            board: Board::Rpi4,
            image: "/out/sdcard.img".into(),
            bytes: 2 << 30,
            allocated_bytes: 0,
            partitions: Vec::new(),
            boot_files: Vec::new(),
            kernel: "/out/rpi4-boot/Image".into(),
            device_tree: "/out/rpi4-boot/bcm2711-rpi-4-b.dtb".into(),
            initramfs: "/out/rpi4-boot/initramfs".into(),
            command_line: "console=ttyS1,115200 rdinit=/bin/init".into(),
        };
        let config = VmConfig {
            extra_kernel_arguments: "kios.test=1".into(),
            ..VmConfig::board_boot(Board::Rpi4, &card)
        };
        let joined = args_of(&config);
        assert!(
            joined.starts_with("-machine raspi4b -accel tcg -m 2048 -smp 4 "),
            "{joined}"
        );
        assert!(!joined.contains("-cpu"), "{joined}");
        assert!(joined.contains("-nographic -serial stdio"), "{joined}");
        assert!(joined.contains("-nic none"), "{joined}");
        assert!(joined.contains(
            "-kernel /out/rpi4-boot/Image -dtb /out/rpi4-boot/bcm2711-rpi-4-b.dtb \
             -initrd /out/rpi4-boot/initramfs \
             -append console=ttyS1,115200 rdinit=/bin/init console=ttyAMA0,115200 kios.test=1"
        ));
        assert!(joined.contains(
            "-drive if=none,format=raw,id=sd-card,file=/out/sdcard.img \
             -device sd-card,drive=sd-card,bus=/generic-sdhci/sd-bus"
        ));
        assert!(joined.ends_with("-icount shift=0,sleep=on"), "{joined}");
    }

    #[test]
    fn kvm_runs_the_host_cpu_uncounted() {
        let config = VmConfig {
            accel: Accel::Kvm,
            ..VmConfig::new(Arch::Amd64, "/k".into(), "/i".into())
        };
        let joined = args_of(&config);
        assert!(
            joined.contains("-machine q35 -accel kvm -cpu host "),
            "{joined}"
        );
        assert!(!joined.contains("-icount"));
        assert!(!config.counts_instructions());
        assert!(config.clock().contains("not instruction-counted"));
    }

    #[test]
    fn kvm_refuses_a_foreign_arch() {
        let foreign = match Arch::host().unwrap() {
            Arch::Amd64 => Arch::Arm64,
            Arch::Arm64 => Arch::Amd64,
        };
        let error = Accel::Kvm.check(foreign).unwrap_err().to_string();
        assert!(error.contains("host's arch"), "{error}");
        assert!(Accel::Tcg.check(foreign).is_ok());
    }

    fn args_of(config: &VmConfig) -> String {
        config
            .command()
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn a_firmware_boot_maps_the_firmware_and_boots_the_disk_first() {
        let config = VmConfig::firmware_boot(Arch::Arm64, "/out/disk,1.img".into());
        let joined = args_of(&config);
        assert!(joined.contains("-machine virt"), "{joined}");
        assert!(joined.contains(
            "-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd"
        ));
        assert!(joined.contains("-drive if=pflash,format=raw,unit=1,file=/out/disk,,1.img.efivars"));
        assert!(joined.contains("-drive if=none,format=raw,id=boot-disk,file=/out/disk,,1.img"));
        assert!(joined.contains("-device virtio-blk-pci,drive=boot-disk,bootindex=0"));
        assert!(!joined.contains("-kernel"));
        assert!(!joined.contains("-append"));
        assert!(joined.contains("-smp 1"));
        assert!(joined.contains("-icount shift=0,"));
        assert!(!joined.contains("-snapshot"));
        let pristine = VmConfig {
            snapshot: true,
            ..config
        };
        assert!(args_of(&pristine).contains(" -snapshot "));
    }

    #[test]
    fn a_secure_boot_vm_runs_ovmfs_secure_boot_build_with_smm() {
        let plain = VmConfig::firmware_boot(Arch::Amd64, "/out/disk.img".into());
        let joined = args_of(&plain);
        assert!(joined.contains("-machine q35 "), "{joined}");
        assert!(joined.contains("file=/usr/share/OVMF/OVMF_CODE_4M.fd"));
        assert!(!joined.contains("secure"));
        let secure = VmConfig {
            secure_boot_variables: Some("/out/enrolled.fd".into()),
            ..plain
        };
        let joined = args_of(&secure);
        assert!(joined.contains("-machine q35,smm=on "), "{joined}");
        assert!(joined.contains("-global driver=cfi.pflash01,property=secure,value=on"));
        assert!(joined.contains(
            "-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
        ));
        // The enrolled store is copied to the usual writable place before each boot.
        assert!(joined.contains("-drive if=pflash,format=raw,unit=1,file=/out/disk.img.efivars"));
    }

    #[test]
    fn extra_disks_follow_the_boot_in_order() {
        let config = VmConfig {
            extra_disks: vec!["/a.img".into(), "/b.img".into()],
            ..VmConfig::new(Arch::Amd64, "/k".into(), "/i".into())
        };
        let joined = args_of(&config);
        assert!(joined.contains("-kernel /k -initrd /i"));
        let first = joined
            .find("-drive if=none,format=raw,id=extra-disk0,file=/a.img -device virtio-blk-pci,drive=extra-disk0")
            .expect("first extra disk");
        let second = joined
            .find("-drive if=none,format=raw,id=extra-disk1,file=/b.img -device virtio-blk-pci,drive=extra-disk1")
            .expect("second extra disk");
        assert!(first < second);
        assert!(!joined.contains("pflash"));
    }

    #[test]
    fn guest_forwards_follow_the_restricted_network() {
        let config = VmConfig {
            guest_forwards: vec![
                "guestfwd=tcp:10.0.2.100:6443-cmd:socat STDIO TCP:127.0.0.1:41000".into(),
                "guestfwd=tcp:10.0.2.101:80-tcp:127.0.0.1:8080".into(),
            ],
            ..VmConfig::new(Arch::Amd64, "/k".into(), "/i".into())
        };
        let args: Vec<String> = config
            .command()
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        assert!(args.contains(
            &"user,model=virtio-net-pci,restrict=on,\
              guestfwd=tcp:10.0.2.100:6443-cmd:socat STDIO TCP:127.0.0.1:41000,\
              guestfwd=tcp:10.0.2.101:80-tcp:127.0.0.1:8080"
                .to_string()
        ));
    }

    #[test]
    fn an_unrestricted_network_runs_qemu_inside_its_namespace() {
        let restricted = VmConfig::new(Arch::Amd64, "/k".into(), "/i".into());
        assert_eq!(restricted.command().get_program(), "qemu-system-x86_64");
        assert!(args_of(&restricted).contains("user,model=virtio-net-pci,restrict=on "));
        let inside = VmConfig {
            guest_network: GuestNetwork::LoopbackNamespace("kios-test".into()),
            ..restricted
        };
        let command = inside.command();
        assert_eq!(command.get_program(), "ip");
        let joined = args_of(&inside);
        assert!(
            joined.starts_with("netns exec kios-test qemu-system-x86_64 -machine q35 "),
            "{joined}"
        );
        assert!(joined.contains("-nic user,model=virtio-net-pci,restrict=off "));
        assert!(!joined.contains("restrict=on"));
    }

    #[test]
    fn the_real_time_clock_starts_where_asked() {
        let config = VmConfig::new(Arch::Amd64, "/k".into(), "/i".into());
        assert!(!args_of(&config).contains("-rtc"));
        let past = VmConfig {
            rtc_base: Some("2001-01-01".into()),
            ..config
        };
        assert!(args_of(&past).contains(" -rtc base=2001-01-01"));
    }

    #[test]
    fn a_machine_uuid_is_passed_only_when_set() {
        let plain = VmConfig::new(Arch::Amd64, "/k".into(), "/i".into());
        assert!(!args_of(&plain).contains("-uuid"));
        let uuid = Uuid::parse_str("4c4c4544-0042-3510-8052-b4c04f4b4e32").unwrap();
        let config = VmConfig {
            smbios_uuid: Some(uuid),
            ..VmConfig::new(Arch::Amd64, "/k".into(), "/i".into())
        };
        assert!(args_of(&config).contains("-uuid 4c4c4544-0042-3510-8052-b4c04f4b4e32"));
    }

    #[test]
    fn host_forwards_listen_on_loopback_only() {
        let forward = HostForward::loopback(Ipv4Addr::new(127, 0, 0, 2), 10250, 10250).unwrap();
        let config = VmConfig {
            host_forwards: vec![forward],
            ..VmConfig::new(Arch::Amd64, "/k".into(), "/i".into())
        };
        assert!(args_of(&config)
            .contains("user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.2:10250-:10250"));
        let error = HostForward::loopback(Ipv4Addr::new(10, 0, 0, 2), 10250, 10250)
            .unwrap_err()
            .to_string();
        assert!(error.contains("loopback only"), "{error}");
    }

    #[test]
    fn the_command_line_is_the_same_for_every_boot() {
        let config = VmConfig {
            console: ConsoleVerbosity::Quiet,
            ..VmConfig::new(Arch::Arm64, "/k".into(), "/i".into())
        };
        let quiet = kernel_command_line(Arch::Arm64, ConsoleVerbosity::Quiet);
        assert_eq!(config.kernel_command_line(), quiet);
        assert!(quiet.starts_with("console=ttyAMA0 rdinit=/bin/init rootfstype=ramfs"));
    }

    #[test]
    fn a_quiet_console_skips_child_output_and_all_shows_it() {
        // Child output is logged at debug (7); the console prints levels below loglevel.
        assert!(kernel_command_line(Arch::Amd64, ConsoleVerbosity::Quiet).ends_with(" loglevel=7"));
        assert!(kernel_command_line(Arch::Amd64, ConsoleVerbosity::All).ends_with(" loglevel=8"));
    }

    #[test]
    fn console_lines_lose_carriage_returns() {
        let (tx, rx) = mpsc::channel();
        read_console(&b"one\r\ntwo\r\r\npartial"[..], Instant::now(), tx);
        let texts: Vec<String> = rx.iter().map(|line| line.text).collect();
        assert_eq!(texts, ["one", "two", "partial"]);
    }
}
