//! TEST SUPPORT: an NTP server for a VM in a [`LoopbackNamespace`]: the
//! BOM's chronyd (the time-sync image's own), run from its unpacked
//! packages with their loader and libraries (installing chrony on the
//! host would start a service that talks to public servers), serving the
//! host's clock on the namespace's 127.0.0.1:123 as a stratum-8 local
//! reference. It never sets the host's clock (`-x`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::components::bom::{fetch_component, Bom};
use crate::components::chrony::{CHRONYD_PATH, CHRONY_COMPONENT, LIBRARIES};
use crate::components::elf_deps::Sysroot;
use crate::host::arch::Arch;
use crate::host::child::killed_with_parent;
use crate::host::command::render;
use crate::host::fs::log_tail;
use crate::testing::netns::LoopbackNamespace;

/// The running server; dropping it kills and reaps it. Its log stays in
/// the work directory.
pub struct NtpServer {
    child: Child,
    log: PathBuf,
}

/// chronyd and how to run it from the unpacked packages.
struct UnpackedChronyd {
    loader: PathBuf,
    library_path: String,
    chronyd: PathBuf,
}

impl UnpackedChronyd {
    fn fetch(bom: &Bom) -> Result<UnpackedChronyd> {
        let arch = Arch::host()?;
        let trees = LIBRARIES
            .iter()
            .map(|name| fetch_component(bom, name, arch))
            .collect::<Result<Vec<PathBuf>>>()?;
        let (interpreter, triplet) = match arch {
            Arch::Amd64 => ("/lib64/ld-linux-x86-64.so.2", "x86_64-linux-gnu"),
            Arch::Arm64 => ("/lib/ld-linux-aarch64.so.1", "aarch64-linux-gnu"),
        };
        let library_path = trees
            .iter()
            .flat_map(|tree| {
                [
                    tree.join("lib").join(triplet),
                    tree.join("usr/lib").join(triplet),
                ]
            })
            .map(|dir| dir.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let (_, loader) = Sysroot::new(trees)
            .resolve(Path::new(interpreter))?
            .with_context(|| format!("the pinned libc6 has no {interpreter}"))?;
        let chronyd = fetch_component(bom, CHRONY_COMPONENT, arch)?
            .join(CHRONYD_PATH.trim_start_matches('/'));
        Ok(UnpackedChronyd {
            loader,
            library_path,
            chronyd,
        })
    }

    /// chronyd with `args`, inside `namespace`.
    fn command(&self, namespace: &LoopbackNamespace, args: &[&str]) -> Command {
        let mut command = namespace.command(&self.loader);
        command
            .arg("--library-path")
            .arg(&self.library_path)
            .arg(&self.chronyd)
            .args(args);
        command
    }
}

impl NtpServer {
    /// Starts the server in `namespace` with its pid file and log in
    /// `workdir` (emptied first), and returns once a chronyd client in the
    /// namespace got an answer from it.
    pub fn start(bom: &Bom, namespace: &LoopbackNamespace, workdir: &Path) -> Result<NtpServer> {
        if workdir.exists() {
            std::fs::remove_dir_all(workdir)
                .with_context(|| format!("emptying {}", workdir.display()))?;
        }
        std::fs::create_dir_all(workdir)
            .with_context(|| format!("creating {}", workdir.display()))?;
        let chronyd = UnpackedChronyd::fetch(bom)?;
        let pidfile = format!("pidfile {}", workdir.join("chronyd.pid").display());
        let log = workdir.join("chronyd.log");
        let output =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        // Directives on the command line replace chrony.conf.
        let mut command = chronyd.command(
            namespace,
            &[
                "-d",
                "-x",
                "-u",
                "root",
                "bindaddress 127.0.0.1",
                "allow 127.0.0.0/8",
                "local stratum 8",
                "cmdport 0",
                "bindcmdaddress /",
                &pidfile,
            ],
        );
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(output);
        killed_with_parent(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("starting `{}`", render(&command)))?;
        let mut server = NtpServer { child, log };
        server.check_it_answers(&chronyd, namespace, workdir)?;
        Ok(server)
    }

    /// One query from a client in the namespace (`chronyd -Q`: it prints
    /// the offset and sets nothing), which waits for the server to serve.
    fn check_it_answers(
        &mut self,
        chronyd: &UnpackedChronyd,
        namespace: &LoopbackNamespace,
        workdir: &Path,
    ) -> Result<()> {
        let client_log = workdir.join("client.log");
        let output = std::fs::File::create(&client_log)
            .with_context(|| format!("creating {}", client_log.display()))?;
        let mut command = chronyd.command(
            namespace,
            &["-Q", "-t", "30", "-u", "root", "server 127.0.0.1 iburst"],
        );
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(output);
        killed_with_parent(&mut command);
        let status = command
            .status()
            .with_context(|| format!("running `{}`", render(&command)))?;
        if let Some(status) = self.child.try_wait().context("checking on chronyd")? {
            bail!(
                "the NTP server exited ({status}); the end of {}:\n{}",
                self.log.display(),
                log_tail(&self.log, 20)
            );
        }
        if !status.success() {
            bail!(
                "the NTP server did not answer a client in its namespace ({status}); {}:\n{}\n{}:\n{}",
                client_log.display(),
                log_tail(&client_log, 20),
                self.log.display(),
                log_tail(&self.log, 20)
            );
        }
        Ok(())
    }

    pub fn log(&self) -> &Path {
        &self.log
    }
}

impl Drop for NtpServer {
    fn drop(&mut self) {
        // Best effort: it may have exited already; either way it is reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
