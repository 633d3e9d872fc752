//! The read-only seed of containerd's image store.
//!
//! A kiOS node boots offline with no `ctr`, so every image its pods use
//! must already be in containerd's store when containerd starts. That
//! store (content blobs plus a bolt metadata database) can only be written
//! by containerd itself, so at build time the BOM's containerd runs on the
//! build host, sandboxed, and imports the OCI archives. What is left of
//! its root directory (content store and `meta.db`) goes into the image at
//! `/usr/lib/kios/containerd`, the lower layer of the overlay the init
//! mounts on `/var/lib/containerd`.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rustix::process::{kill_process, Pid, Signal};
use serde::Serialize;
use tempfile::TempDir;

use crate::components::bom::{fetch_component, Bom};
use crate::host::arch::Arch;
use crate::host::cache::cache_subdir;
use crate::host::child::killed_with_parent_in_private_mounts;
use crate::host::fs::{
    log_tail, persist_dir, read_dir_sorted, remove_dir_if_present, scratch_dir_for, sha256_file,
    sha256_hex, tree_bytes,
};
use crate::host::progress::with_step;

/// The containerd namespace of the CRI plugin: the kubelet sees only images there.
const CRI_NAMESPACE: &str = "k8s.io";
/// What containerd needs to list and run the images; everything else in
/// its root is recreated at start.
const CONTENT_DIR: &str = "io.containerd.content.v1.content";
const METADATA_DIR: &str = "io.containerd.metadata.v1.bolt";
const METADATA_DB: &str = "meta.db";
/// Part of the cache key: bump it when the way a seed is made changes.
const SEED_RECIPE_VERSION: u32 = 1;

/// Bounds on containerd's start and stop (it starts in well under a second here).
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A seeded store, ready to be copied into the image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SeedReport {
    /// The seed directory (`out`).
    pub dir: PathBuf,
    /// The image references in the store, sorted.
    pub images: Vec<String>,
    /// Bytes of the regular files in `dir`.
    pub bytes: u64,
    /// Whether the seed came from the cache rather than a containerd run.
    pub cached: bool,
}

/// Imports `image_archives` (OCI archives for `arch`) into a fresh
/// containerd store and writes its content store and metadata database to
/// `out`, replacing what was there.
///
/// Seeds are cached by the archives' contents, the containerd pin and
/// `arch`. The bolt database is not byte-reproducible (it records import
/// times), so a seed is reused rather than rebuilt, which also keeps image
/// builds reproducible once the seed exists.
pub fn seed_containerd_store(
    bom: &Bom,
    arch: Arch,
    image_archives: &[PathBuf],
    out: &Path,
) -> Result<SeedReport> {
    let mut images = Vec::new();
    for archive in image_archives {
        images.extend(archive_image_names(archive)?);
    }
    images.sort();
    let cache = cache_subdir("containerd-seed")?;
    let seed = cache.join(seed_cache_key(bom, arch, image_archives)?);
    let cached = seed.is_dir();
    if !cached {
        // Made beside its final place and renamed, so an interrupted run
        // leaves no seed behind.
        let scratch = scratch_dir_for(&seed)?;
        with_step(
            format!(
                "seeding containerd's image store for {arch} ({})",
                images.join(", ")
            ),
            || import_images(bom, arch, image_archives, &images, scratch.path()),
        )?;
        keep_only_the_store(scratch.path())?;
        persist_dir(scratch, &seed)?;
    }
    remove_dir_if_present(out)?;
    copy_tree(&seed, out)?;
    Ok(SeedReport {
        dir: out.to_path_buf(),
        images,
        bytes: tree_bytes(out)?,
        cached,
    })
}

fn seed_cache_key(bom: &Bom, arch: Arch, image_archives: &[PathBuf]) -> Result<String> {
    let mut archive_digests = image_archives
        .iter()
        .map(|archive| sha256_file(archive))
        .collect::<Result<Vec<_>>>()?;
    // The import order does not change the store.
    archive_digests.sort();
    let containerd_pin = bom.source("containerd", Arch::host()?)?.sha256();
    let mut recipe = format!(
        "kios containerd seed {SEED_RECIPE_VERSION}\narch {arch}\ncontainerd {containerd_pin}\n"
    );
    for digest in archive_digests {
        recipe.push_str(&format!("archive {digest}\n"));
    }
    Ok(sha256_hex(recipe))
}

fn import_images(
    bom: &Bom,
    arch: Arch,
    image_archives: &[PathBuf],
    expected: &[String],
    root: &Path,
) -> Result<()> {
    let sandbox = ContainerdSandbox::start(bom, root)?;
    // The image's platform, not the host's: for arm64 they differ.
    let platform = format!("linux/{}", arch.debian_name());
    for archive in image_archives {
        let archive = archive
            .to_str()
            .with_context(|| format!("{} is not a UTF-8 path", archive.display()))?;
        // --no-unpack: the node's overlayfs snapshotter unpacks at first use,
        // so the seed holds only compressed layers and no snapshots.
        sandbox.ctr(&[
            "images",
            "import",
            "--no-unpack",
            "--platform",
            &platform,
            archive,
        ])?;
    }
    let listing = sandbox.ctr(&["images", "ls"])?;
    for image in expected {
        check_listed(&listing, image, &platform)?;
    }
    sandbox.stop()
}

/// `ctr images ls` lists each image with the platforms its content holds:
/// a row for `image` showing `platform` means the import is complete and
/// of the right architecture.
fn check_listed(listing: &str, image: &str, platform: &str) -> Result<()> {
    let row = listing
        .lines()
        .find(|line| line.split_whitespace().next() == Some(image))
        .with_context(|| format!("containerd did not list {image} after the import:\n{listing}"))?;
    let has_platform = row
        .split_whitespace()
        .flat_map(|column| column.split(','))
        .any(|listed| listed == platform || listed.starts_with(&format!("{platform}/")));
    ensure!(
        has_platform,
        "containerd lists {image} without {platform} content:\n{row}"
    );
    Ok(())
}

/// The names containerd gives the images of an OCI archive, from its `index.json`.
fn archive_image_names(archive: &Path) -> Result<Vec<String>> {
    let file =
        std::fs::File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let mut tar = tar::Archive::new(file);
    let entries = tar
        .entries()
        .with_context(|| format!("reading {}", archive.display()))?;
    for entry in entries {
        let mut entry = entry.with_context(|| format!("reading {}", archive.display()))?;
        let is_index = entry
            .path()
            .with_context(|| format!("reading {}", archive.display()))?
            .as_ref()
            == Path::new("index.json");
        if is_index {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .with_context(|| format!("reading index.json in {}", archive.display()))?;
            return image_names_in_index(&text)
                .with_context(|| format!("reading index.json in {}", archive.display()));
        }
    }
    bail!(
        "{} is not an OCI archive: it has no index.json",
        archive.display()
    )
}

fn image_names_in_index(index_json: &str) -> Result<Vec<String>> {
    let index: serde_json::Value = serde_json::from_str(index_json)?;
    let manifests = index["manifests"]
        .as_array()
        .context("no `manifests` list")?;
    manifests
        .iter()
        .map(|manifest| {
            let annotations = &manifest["annotations"];
            // containerd's own annotation wins over the OCI one, as in its import.
            annotations["io.containerd.image.name"]
                .as_str()
                .or_else(|| annotations["org.opencontainers.image.ref.name"].as_str())
                .map(str::to_string)
                .context("a manifest has no image name annotation")
        })
        .collect()
}

/// Removes from a containerd root everything but the content blobs and
/// the metadata database: plugin directories, `tmpmounts` and the empty
/// ingest directory are recreated by containerd at start. No snapshotter
/// directory is kept: `--no-unpack` records no snapshot in the metadata,
/// so the node's overlayfs snapshotter starts empty wherever its
/// `root_path` is.
fn keep_only_the_store(root: &Path) -> Result<()> {
    for entry in read_dir_sorted(root)? {
        let path = entry.path();
        let name = entry.file_name();
        if name == CONTENT_DIR {
            remove_dir_if_present(&path.join("ingest"))?;
        } else if name == METADATA_DIR {
            for inner in read_dir_sorted(&path)? {
                if inner.file_name() != METADATA_DB {
                    remove_path(&inner.path())?;
                }
            }
        } else {
            remove_path(&path)?;
        }
    }
    for kept in [
        root.join(CONTENT_DIR).join("blobs"),
        root.join(METADATA_DIR).join(METADATA_DB),
    ] {
        ensure!(
            kept.exists(),
            "containerd left no {} after the import",
            kept.display()
        );
    }
    Ok(())
}

/// The BOM's containerd for the build host's architecture, running as root
/// on a given root directory with its state, sockets and temporary files
/// in a private directory, in its own mount namespace (so no mount it
/// makes is seen by, or outlives it on, the host). It is killed if the
/// thread that started it exits.
pub struct ContainerdSandbox {
    child: Child,
    ctr: PathBuf,
    /// State, sockets, temporary files and the log; removed on drop.
    private_dir: TempDir,
    socket: PathBuf,
}

impl ContainerdSandbox {
    /// Starts containerd with only what an image import needs: content,
    /// metadata, images, leases, namespaces and the native snapshotter
    /// (the metadata plugin needs one snapshotter; it makes no mounts).
    pub fn start(bom: &Bom, root: &Path) -> Result<ContainerdSandbox> {
        ContainerdSandbox::start_with_config(bom, root, import_only_config())
    }

    /// Starts containerd with `config`, whose `root`, `state`, `temp` and
    /// socket addresses are replaced by the sandbox's.
    pub fn start_with_config(
        bom: &Bom,
        root: &Path,
        mut config: toml::Table,
    ) -> Result<ContainerdSandbox> {
        if !rustix::process::geteuid().is_root() {
            bail!(
                "seeding containerd's image store runs containerd, which needs root: \
                 run the command again as root, e.g. `sudo -E env \"PATH=$PATH\" cargo kios build`"
            );
        }
        let package = fetch_component(bom, "containerd", Arch::host()?)?;
        let containerd = package.join("usr/bin/containerd");
        let ctr = package.join("usr/bin/ctr");
        // Under the system temporary directory (0700): socket paths must
        // stay under 108 bytes, which the cache's paths may not.
        let private_dir = tempfile::Builder::new()
            .prefix("kios-containerd-")
            .tempdir()
            .context("creating containerd's private directory")?;
        let socket = private_dir.path().join("containerd.sock");
        let path_value = |path: &Path| toml::Value::String(path.display().to_string());
        let socket_table = |path: &Path| {
            toml::Value::Table(toml::Table::from_iter([(
                "address".to_string(),
                path_value(path),
            )]))
        };
        config.insert("root".into(), path_value(root));
        config.insert(
            "state".into(),
            path_value(&private_dir.path().join("state")),
        );
        config.insert("temp".into(), path_value(&private_dir.path().join("tmp")));
        config.insert("grpc".into(), socket_table(&socket));
        config.insert(
            "ttrpc".into(),
            socket_table(&private_dir.path().join("containerd.sock.ttrpc")),
        );
        config.insert(
            "debug".into(),
            socket_table(&private_dir.path().join("debug.sock")),
        );
        std::fs::create_dir(private_dir.path().join("tmp"))
            .with_context(|| format!("creating {}", private_dir.path().join("tmp").display()))?;
        let config_file = private_dir.path().join("config.toml");
        std::fs::write(&config_file, toml::to_string(&config)?)
            .with_context(|| format!("writing {}", config_file.display()))?;
        let log_file = private_dir.path().join("containerd.log");
        let log = std::fs::File::create(&log_file)
            .with_context(|| format!("creating {}", log_file.display()))?;
        let log_for_stderr = log
            .try_clone()
            .with_context(|| format!("opening {}", log_file.display()))?;

        let mut command = Command::new(&containerd);
        command
            .arg("--config")
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr);
        killed_with_parent_in_private_mounts(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", containerd.display()))?;
        let mut sandbox = ContainerdSandbox {
            child,
            ctr,
            private_dir,
            socket,
        };
        sandbox.wait_for_socket()?;
        Ok(sandbox)
    }

    fn wait_for_socket(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for containerd")? {
                bail!(
                    "containerd exited ({status}) before serving its socket:\n{}",
                    self.log_tail()
                );
            }
            if UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "containerd did not serve {} within {} s:\n{}",
                    self.socket.display(),
                    START_TIMEOUT.as_secs(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `ctr --address <socket> -n k8s.io <args>` and returns its stdout.
    pub fn ctr(&self, args: &[&str]) -> Result<String> {
        let output = Command::new(&self.ctr)
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", CRI_NAMESPACE])
            .args(args)
            // ctr reads these and they would override nothing we pass, but keep the host's out.
            .env_remove("CONTAINERD_ADDRESS")
            .env_remove("CONTAINERD_NAMESPACE")
            .env_remove("CONTAINERD_SNAPSHOTTER")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.ctr.display()))?;
        if !output.status.success() {
            bail!(
                "`ctr -n {CRI_NAMESPACE} {}` failed ({}): {}\ncontainerd's log:\n{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim_end(),
                self.log_tail()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// SIGTERM, a bounded wait, then SIGKILL. Its mount namespace dies with
    /// it, taking any mount it made.
    pub fn stop(mut self) -> Result<()> {
        kill_process(Pid::from_child(&self.child), Signal::TERM)
            .context("sending SIGTERM to containerd")?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self
            .child
            .try_wait()
            .context("waiting for containerd")?
            .is_none()
        {
            if Instant::now() > deadline {
                self.child.kill().context("killing containerd")?;
                self.child.wait().context("waiting for containerd")?;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        log_tail(&self.private_dir.path().join("containerd.log"), 20)
    }
}

impl Drop for ContainerdSandbox {
    fn drop(&mut self) {
        // After stop() this finds it reaped; on an early error it ends containerd.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every plugin an `images import --no-unpack` does not use is disabled,
/// so containerd starts fast and touches nothing outside its directories:
/// no CRI, no runtimes or cgroup monitor, no snapshotter but native, no
/// differ. The ones the import needs are required, so a missing one stops
/// containerd with its name instead of failing the import later.
fn import_only_config() -> toml::Table {
    let strings = |names: &[&str]| {
        toml::Value::Array(
            names
                .iter()
                .map(|name| toml::Value::String(name.to_string()))
                .collect(),
        )
    };
    toml::Table::from_iter([
        ("version".to_string(), toml::Value::Integer(2)),
        (
            "disabled_plugins".to_string(),
            strings(&[
                "io.containerd.grpc.v1.cri",
                "io.containerd.snapshotter.v1.aufs",
                "io.containerd.snapshotter.v1.btrfs",
                "io.containerd.snapshotter.v1.devmapper",
                "io.containerd.snapshotter.v1.overlayfs",
                "io.containerd.snapshotter.v1.zfs",
                "io.containerd.differ.v1.walking",
                "io.containerd.runtime.v1.linux",
                "io.containerd.runtime.v2.task",
                "io.containerd.monitor.v1.cgroups",
                "io.containerd.internal.v1.restart",
                "io.containerd.internal.v1.opt",
                "io.containerd.service.v1.tasks-service",
                "io.containerd.service.v1.containers-service",
                "io.containerd.service.v1.diff-service",
                "io.containerd.service.v1.snapshots-service",
                "io.containerd.grpc.v1.tasks",
                "io.containerd.grpc.v1.containers",
                "io.containerd.grpc.v1.diff",
                "io.containerd.grpc.v1.snapshots",
            ]),
        ),
        (
            "required_plugins".to_string(),
            strings(&[
                "io.containerd.grpc.v1.content",
                "io.containerd.grpc.v1.images",
                "io.containerd.grpc.v1.leases",
                "io.containerd.grpc.v1.namespaces",
            ]),
        ),
    ])
}

/// Copies a tree of directories and regular files, keeping permission bits.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let permissions = std::fs::metadata(from)
        .with_context(|| format!("reading {}", from.display()))?
        .permissions();
    std::fs::set_permissions(to, permissions)
        .with_context(|| format!("setting the mode of {}", to.display()))?;
    for entry in read_dir_sorted(from)? {
        let source = entry.path();
        let target = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {}", source.display()))?;
        if kind.is_dir() {
            copy_tree(&source, &target)?;
        } else if kind.is_file() {
            std::fs::copy(&source, &target)
                .with_context(|| format!("copying {} to {}", source.display(), target.display()))?;
        } else {
            bail!("{} is neither a file nor a directory", source.display());
        }
    }
    Ok(())
}

fn remove_path(path: &Path) -> Result<()> {
    let is_dir = std::fs::symlink_metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .is_dir();
    let removed = if is_dir {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    removed.with_context(|| format!("removing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_prefer_containerds_annotation() {
        let index = r#"{"schemaVersion":2,"manifests":[
            {"annotations":{"io.containerd.image.name":"kios.local/pause:1",
                            "org.opencontainers.image.ref.name":"1"}},
            {"annotations":{"org.opencontainers.image.ref.name":"kios.local/busybox:1"}}]}"#;
        assert_eq!(
            image_names_in_index(index).unwrap(),
            ["kios.local/pause:1", "kios.local/busybox:1"]
        );
        assert!(image_names_in_index(r#"{"manifests":[{}]}"#).is_err());
    }

    #[test]
    fn a_listed_image_must_show_the_images_platform() {
        let listing = "REF TYPE DIGEST SIZE PLATFORMS LABELS\n\
            kios.local/pause:1 application/vnd.oci.image.manifest.v1+json sha256:ab 300.0 KiB linux/arm64 -\n";
        check_listed(listing, "kios.local/pause:1", "linux/arm64").unwrap();
        assert!(check_listed(listing, "kios.local/pause:1", "linux/amd64").is_err());
        assert!(check_listed(listing, "kios.local/busybox:1", "linux/arm64").is_err());
    }
}
