//! Booting a kernel and initramfs in QEMU and reading its serial console.
//!
//! TCG only: nested KVM hangs on these machines. The guest's network is
//! user-mode with `restrict=on`, so it can reach nothing but the host's
//! loopback forwards we set up (none yet).

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::arch::Arch;
use crate::console::{Console, ConsoleLine};

#[derive(Clone, Debug)]
pub struct VmConfig {
    pub arch: Arch,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub memory_mib: u32,
    /// `-icount shift=0,sleep=off`: guest time follows executed
    /// instructions, so boot timelines repeat on a noisy host.
    pub icount: bool,
}

impl VmConfig {
    pub fn new(arch: Arch, kernel: PathBuf, initrd: PathBuf) -> VmConfig {
        VmConfig {
            arch,
            kernel,
            initrd,
            memory_mib: 1024,
            icount: true,
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
        let console = match self.arch {
            Arch::Amd64 => "ttyS0",
            Arch::Arm64 => "ttyAMA0",
        };
        // panic=-1 reboots at once on a panic and -no-reboot turns that into
        // QEMU exiting, so a broken boot ends the run instead of hanging.
        format!("console={console} rdinit=/bin/init printk.devkmsg=on panic=-1 loglevel=7")
    }

    pub fn command(&self) -> Command {
        let machine = match self.arch {
            Arch::Amd64 => "q35",
            Arch::Arm64 => "virt",
        };
        let mut command = Command::new(self.qemu_binary());
        command
            .args(["-machine", machine, "-accel", "tcg", "-cpu", "max"])
            .args(["-m", &self.memory_mib.to_string(), "-smp", "1"])
            .args([
                "-nographic",
                "-no-reboot",
                "-serial",
                "stdio",
                "-monitor",
                "none",
            ])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            .args(["-append", &self.kernel_command_line()])
            .args(["-nic", "user,model=virtio-net-pci,restrict=on"]);
        if self.icount {
            command.args(["-icount", "shift=0,sleep=off"]);
        }
        command
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

/// Boots the VM and reads its console until QEMU exits, `on_line` says
/// stop, or the timeout passes (then the error is a [`VmTimedOut`]).
pub fn run_vm(
    config: &VmConfig,
    options: RunOptions,
    mut on_line: impl FnMut(&ConsoleLine) -> LineVerdict,
) -> Result<VmRun> {
    let started = Instant::now();
    let mut child = config
        .command()
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
            &"console=ttyS0 rdinit=/bin/init printk.devkmsg=on panic=-1 loglevel=7".to_string()
        ));

        let without_icount = VmConfig {
            icount: false,
            ..config
        };
        assert!(!without_icount
            .command()
            .get_args()
            .any(|arg| arg == "-icount"));
    }

    #[test]
    fn console_lines_lose_carriage_returns() {
        let (tx, rx) = mpsc::channel();
        read_console(&b"one\r\ntwo\r\r\npartial"[..], Instant::now(), tx);
        let texts: Vec<String> = rx.iter().map(|line| line.text).collect();
        assert_eq!(texts, ["one", "two", "partial"]);
    }
}
