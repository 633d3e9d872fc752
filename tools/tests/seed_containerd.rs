//! Seeds containerd's image store with the kiOS images, then starts the
//! node's own containerd configuration on a copy of the seed and checks the
//! images are there. `cargo kios test` runs these with `--ignored`, as root.

use std::path::{Path, PathBuf};
use std::process::Command;

use kios_tools::components::bom::{fetch_component, Bom, BOM_FILE};
use kios_tools::components::build_images;
use kios_tools::components::chrony::CHRONY_IMAGE;
use kios_tools::components::image_seed::{seed_containerd_store, ContainerdSandbox};
use kios_tools::components::node::BUSYBOX_COMPONENT;
use kios_tools::components::oci::{BUSYBOX_IMAGE, KIOSCTL_IMAGE, PAUSE_IMAGE};
use kios_tools::host::arch::Arch;
use kios_tools::host::workspace::Workspace;

fn fresh_dir(path: PathBuf) -> anyhow::Result<PathBuf> {
    if path.exists() {
        std::fs::remove_dir_all(&path)?;
    }
    std::fs::create_dir_all(&path)?;
    Ok(path)
}

fn names_in(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = std::fs::read_dir(dir)?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}

/// The node's containerd config with every host path it would write moved under `dir`.
fn node_config_in(workspace: &Workspace, dir: &Path) -> anyhow::Result<toml::Table> {
    let file = workspace
        .root
        .join("buildroot-overlay/etc/containerd/config.toml");
    let mut config: toml::Table = toml::from_str(&std::fs::read_to_string(file)?)?;
    let plugins = config["plugins"]
        .as_table_mut()
        .ok_or_else(|| anyhow::anyhow!("no [plugins]"))?;
    let path = |name: &str| toml::Value::String(dir.join(name).display().to_string());
    plugins["io.containerd.snapshotter.v1.overlayfs"]["root_path"] = path("snapshots");
    plugins["io.containerd.grpc.v1.cri"]["cni"]["conf_dir"] = path("cni");
    Ok(config)
}

#[test]
#[ignore = "runs containerd on the host: run by cargo kios test"]
fn seeded_store_serves_the_images_to_the_node_config_and_is_cached() -> anyhow::Result<()> {
    let workspace = Workspace::locate()?;
    let bom = Bom::load(&workspace.root.join(BOM_FILE))?;
    let dir = fresh_dir(workspace.output_dir()?.join("seed-containerd-test"))?;
    let archives: Vec<PathBuf> = build_images(
        &workspace,
        Arch::Amd64,
        &fetch_component(&bom, BUSYBOX_COMPONENT, Arch::Amd64)?,
        &dir.join("images"),
    )?
    .into_iter()
    .map(|archive| archive.path)
    .collect();

    let seed = seed_containerd_store(&bom, Arch::Amd64, &archives, &dir.join("seed"))?;
    eprintln!("seed: {seed:?}");
    assert_eq!(
        seed.images,
        [BUSYBOX_IMAGE, CHRONY_IMAGE, KIOSCTL_IMAGE, PAUSE_IMAGE]
    );
    assert_eq!(
        names_in(&seed.dir)?,
        [
            "io.containerd.content.v1.content",
            "io.containerd.metadata.v1.bolt"
        ]
    );
    assert_eq!(
        names_in(&seed.dir.join("io.containerd.metadata.v1.bolt"))?,
        ["meta.db"]
    );

    let again = seed_containerd_store(&bom, Arch::Amd64, &archives, &dir.join("seed-again"))?;
    assert!(
        again.cached,
        "the second seed of the same archives was not cached"
    );
    assert_eq!((again.images, again.bytes), (seed.images, seed.bytes));

    // The node's containerd on a copy, as it sees the seed through the overlay.
    let root = dir.join("node-root");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&seed.dir)
        .arg(&root)
        .status()?;
    assert!(copied.success());
    let node_paths = fresh_dir(dir.join("node-paths"))?;
    std::fs::create_dir(node_paths.join("cni"))?;
    let containerd = ContainerdSandbox::start_with_config(
        &bom,
        &root,
        node_config_in(&workspace, &node_paths)?,
    )?;
    let plugins = containerd.ctr(&["plugins", "ls"])?;
    let images = containerd.ctr(&["images", "ls", "-q"])?;
    containerd.stop()?;

    for plugin in ["overlayfs", "cri"] {
        let loaded = plugins.lines().any(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            columns.get(1) == Some(&plugin) && columns.last() == Some(&"ok")
        });
        assert!(loaded, "the node config did not load {plugin}:\n{plugins}");
    }
    let listed: Vec<&str> = images.lines().collect();
    for image in [PAUSE_IMAGE, BUSYBOX_IMAGE, KIOSCTL_IMAGE, CHRONY_IMAGE] {
        assert!(listed.contains(&image), "{image} missing from {listed:?}");
    }
    eprintln!(
        "containerd added to the seed at start: {:?}",
        names_in(&root)?
    );
    Ok(())
}

/// The build host is amd64: the import must still take the arm64 content.
#[test]
#[ignore = "runs containerd on the host: run by cargo kios test"]
fn arm64_images_are_seeded_on_an_amd64_host() -> anyhow::Result<()> {
    let workspace = Workspace::locate()?;
    let bom = Bom::load(&workspace.root.join(BOM_FILE))?;
    let dir = fresh_dir(workspace.output_dir()?.join("seed-containerd-arm64-test"))?;
    let archives: Vec<PathBuf> = build_images(
        &workspace,
        Arch::Arm64,
        &fetch_component(&bom, BUSYBOX_COMPONENT, Arch::Arm64)?,
        &dir.join("images"),
    )?
    .into_iter()
    .map(|archive| archive.path)
    .collect();
    let seed = seed_containerd_store(&bom, Arch::Arm64, &archives, &dir.join("seed"))?;
    assert_eq!(
        seed.images,
        [BUSYBOX_IMAGE, CHRONY_IMAGE, KIOSCTL_IMAGE, PAUSE_IMAGE]
    );
    Ok(())
}
