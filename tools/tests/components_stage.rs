//! Stages the real amd64 components (fetching Debian packages and building
//! the kubelet through the cache) and checks they run from the staged root.
//! `cargo kios test` runs these with `--ignored`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use kios_tools::cluster::registry::OciLayout;
use kios_tools::components::bom::{fetch_component, Bom, BOM_FILE};
use kios_tools::components::ca_bundle::{
    ca_bundle, certificate_count, CA_BUNDLE_PATH, CA_CERTIFICATES_COMPONENT,
};
use kios_tools::components::chrony::{chrony_archive_bytes, CHRONYD_PATH, CHRONY_IMAGE};
use kios_tools::components::elf_deps::{closure, Sysroot};
use kios_tools::components::node::{NodeComponents, BUSYBOX_COMPONENT};
use kios_tools::components::oci::{BUSYBOX_IMAGE, KIOSCTL_IMAGE, PAUSE_IMAGE};
use kios_tools::components::{build_images, stage_components, OciRuntime, StagedFile};
use kios_tools::host::arch::Arch;
use kios_tools::host::workspace::Workspace;
use kios_tools::kernel::KernelChoice;

fn staging_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = Workspace::locate()?
        .output_dir()?
        .join("components-test")
        .join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn bom() -> anyhow::Result<Bom> {
    Bom::load(&Workspace::locate()?.root.join(BOM_FILE))
}

/// Runs a staged dynamic binary with the staged loader and libraries only.
fn run_staged(root: &Path, binary: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(root.join("lib64/ld-linux-x86-64.so.2"))
        .arg("--inhibit-cache")
        .arg("--library-path")
        .arg(format!(
            "{}:{}",
            root.join("lib/x86_64-linux-gnu").display(),
            root.join("usr/lib/x86_64-linux-gnu").display()
        ))
        .arg(root.join(binary))
        .args(args)
        .output()?;
    anyhow::ensure!(output.status.success(), "{binary} {args:?}: {output:?}");
    Ok(String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr))
}

fn report(staged: &[StagedFile]) {
    for file in staged {
        eprintln!(
            "{:>12}  {:<16} {}",
            file.bytes,
            file.component,
            file.path.display()
        );
    }
    eprintln!(
        "{:>12}  total",
        staged.iter().map(|file| file.bytes).sum::<u64>()
    );
}

#[test]
#[ignore = "builds the kubelet: run by cargo kios test"]
fn amd64_components_stage_and_run_from_the_staged_root() -> anyhow::Result<()> {
    let components = NodeComponents::resolve(
        &Workspace::locate()?,
        Arch::Amd64,
        OciRuntime::Runc,
        KernelChoice::Debian,
    )?;
    let root = staging_dir("amd64-runc")?;
    let staged = stage_components(&components, &root)?;
    report(&staged);

    let in_bin: BTreeSet<String> = std::fs::read_dir(root.join("bin"))?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    assert_eq!(
        in_bin,
        BTreeSet::from(
            [
                "containerd",
                "containerd-shim-runc-v2",
                "kubelet",
                "mount",
                "runc",
                "umount"
            ]
            .map(String::from)
        )
    );
    // Only what the node's own network runs: no portmap, which needs iptables.
    let cni: BTreeSet<String> = std::fs::read_dir(root.join("opt/cni/bin"))?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    assert_eq!(
        cni,
        BTreeSet::from(["bridge", "host-local", "loopback"].map(String::from))
    );

    // Static, so it runs as it is.
    let kubelet = Command::new(root.join("bin/kubelet"))
        .arg("--version")
        .output()?;
    let version = String::from_utf8_lossy(&kubelet.stdout);
    assert!(
        version.contains("Kubernetes v1.20.2"),
        "{version} {kubelet:?}"
    );
    assert_eq!(
        closure(&root.join("bin/kubelet"), &Sysroot::new(Vec::new()))?,
        []
    );

    // containerd's libraries resolve inside the staged root alone, and it runs from them.
    let staged_root = Sysroot::new(vec![root.clone()]);
    let needed = closure(&root.join("bin/containerd"), &staged_root)?;
    let names: Vec<String> = needed
        .iter()
        .map(|n| n.image_path.display().to_string())
        .collect();
    assert!(
        names.contains(&"/lib64/ld-linux-x86-64.so.2".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"/lib/x86_64-linux-gnu/libc.so.6".to_string()),
        "{names:?}"
    );
    assert!(run_staged(&root, "bin/containerd", &["--version"])?.contains("1.6.20"));
    assert!(run_staged(&root, "bin/runc", &["--version"])?.contains("1.1.5"));
    for binary in ["bin/containerd-shim-runc-v2", "opt/cni/bin/bridge"] {
        closure(&root.join(binary), &staged_root)?;
    }
    // No shell or other tools slipped in with the libraries and the CA bundle.
    assert!(staged.iter().all(|file| file.path.starts_with("/bin")
        || file.path.starts_with("/opt/cni/bin")
        || file.path.to_string_lossy().contains(".so")
        || file.path == Path::new(CA_BUNDLE_PATH)));

    // The CA bundle image pulls trust, where Go looks for it, made from
    // the pinned package's certificates alone.
    let bundle = staged
        .iter()
        .find(|file| file.path == Path::new(CA_BUNDLE_PATH))
        .expect("the CA bundle is staged");
    assert_eq!(bundle.component, CA_CERTIFICATES_COMPONENT);
    let written = std::fs::read(root.join(CA_BUNDLE_PATH.trim_start_matches('/')))?;
    assert_eq!(written.len() as u64, bundle.bytes);
    assert_eq!(
        written,
        ca_bundle(components.fetched(CA_CERTIFICATES_COMPONENT)?)?
    );
    eprintln!(
        "{CA_BUNDLE_PATH}: {} certificates, {} bytes",
        certificate_count(&written),
        written.len()
    );
    assert!(certificate_count(&written) > 100, "{}", written.len());
    Ok(())
}

#[test]
#[ignore = "builds the kubelet: run by cargo kios test"]
fn crun_brings_its_libraries_and_runs() -> anyhow::Result<()> {
    let components = NodeComponents::resolve(
        &Workspace::locate()?,
        Arch::Amd64,
        OciRuntime::Crun,
        KernelChoice::Debian,
    )?;
    let root = staging_dir("amd64-crun")?;
    let staged = stage_components(&components, &root)?;
    report(&staged);
    assert!(!root.join("bin/runc").exists());
    let version = run_staged(&root, "bin/crun", &["--version"])?;
    assert!(version.contains("crun version 1.8.1"), "{version}");
    Ok(())
}

#[test]
#[ignore = "builds the pause binary and fetches busybox: run by cargo kios test"]
fn images_rebuild_byte_identical() -> anyhow::Result<()> {
    let bom = bom()?;
    let workspace = Workspace::locate()?;
    for arch in Arch::ALL {
        let first = staging_dir(&format!("images-{arch}-1"))?;
        let second = staging_dir(&format!("images-{arch}-2"))?;
        let busybox = fetch_component(&bom, BUSYBOX_COMPONENT, arch)?;
        let written = build_images(&workspace, arch, &busybox, &first)?;
        build_images(&workspace, arch, &busybox, &second)?;
        let references: Vec<&str> = written
            .iter()
            .map(|image| image.reference.as_str())
            .collect();
        assert_eq!(
            references,
            [PAUSE_IMAGE, BUSYBOX_IMAGE, KIOSCTL_IMAGE, CHRONY_IMAGE]
        );
        for file in &written {
            eprintln!("{:>12}  {} {arch}", file.bytes, file.reference);
            let name = file.path.file_name().unwrap_or_default();
            assert_eq!(
                std::fs::read(&file.path)?,
                std::fs::read(second.join(name))?,
                "{name:?}"
            );
        }
        // Both copies of the chrony image come from its cache: rebuilt, it
        // must give the cached bytes.
        let chrony = written
            .iter()
            .find(|file| file.reference == CHRONY_IMAGE)
            .expect("the chrony image");
        assert!(
            chrony_archive_bytes(&bom, arch)? == std::fs::read(&chrony.path)?,
            "the {arch} chrony image rebuilt differs from the cached one"
        );
    }
    Ok(())
}

/// The image's only layer, unpacked into a fresh directory.
fn unpack_layer(archive: &Path, into: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let layout = OciLayout::read(archive)?;
    let descriptor = &layout.manifest_descriptors()?[0];
    let manifest: serde_json::Value =
        serde_json::from_slice(layout.blob(descriptor["digest"].as_str().context("no digest")?)?)?;
    let layers = manifest["layers"].as_array().context("no layers")?;
    anyhow::ensure!(layers.len() == 1, "{} layers", layers.len());
    anyhow::ensure!(
        layers[0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd",
        "the seeded layer is not zstd: {}",
        layers[0]["mediaType"]
    );
    let layer = layout.blob(layers[0]["digest"].as_str().context("no digest")?)?;
    let mut tar = tar::Archive::new(zstd::Decoder::new(layer)?);
    tar.set_preserve_permissions(true);
    tar.unpack(into)?;
    Ok(())
}

/// chronyd runs chrooted in the time-sync image's own layer: its loader,
/// its libraries and its root user (chronyd looks it up by name even to
/// stay root). Without a server and with `port 0` it only starts, logs
/// and exits after a second (`-t 1`), never touching the clock (`-x`).
#[test]
#[ignore = "fetches Debian packages and chroots (root): run by cargo kios test"]
fn chronyd_runs_from_the_time_sync_images_own_layer() -> anyhow::Result<()> {
    let workspace = Workspace::locate()?;
    let bom = bom()?;
    let images = staging_dir("chrony-image")?;
    let busybox = fetch_component(&bom, BUSYBOX_COMPONENT, Arch::Amd64)?;
    let archive = build_images(&workspace, Arch::Amd64, &busybox, &images)?
        .into_iter()
        .find(|image| image.reference == CHRONY_IMAGE)
        .expect("the chrony image");
    eprintln!("{:>12}  {}", archive.bytes, archive.reference);
    let root = staging_dir("chrony-layer")?;
    unpack_layer(&archive.path, &root)?;
    let output = Command::new("chroot")
        .arg(&root)
        .arg(CHRONYD_PATH)
        .args(["-d", "-x", "-u", "root", "-t", "1"])
        .args([
            "port 0",
            "cmdport 0",
            "bindcmdaddress /",
            "pidfile /chronyd.pid",
        ])
        .output()?;
    let log = String::from_utf8_lossy(&output.stderr);
    eprintln!("{log}");
    // Exit status 1 after the timeout: the clock is not synchronised.
    for line in [
        "chronyd version 4.3 starting",
        "Running with root privileges",
        "Timeout reached",
        "chronyd exiting",
    ] {
        anyhow::ensure!(log.contains(line), "no `{line}` ({output:?}):\n{log}");
    }
    Ok(())
}

#[test]
#[ignore = "fetches Debian's cloud kernel: run by cargo kios test"]
fn module_load_order_puts_dependencies_first_and_skips_builtins() {
    use kios_tools::image::modules::ModuleTree;

    let workspace = kios_tools::host::workspace::Workspace::locate().expect("workspace");
    let bom =
        kios_tools::components::bom::Bom::load(&workspace.root.join("bom.toml")).expect("bom");
    let kernel = kios_tools::components::bom::fetch_component(
        &bom,
        "kernel",
        kios_tools::host::arch::Arch::Amd64,
    )
    .expect("kernel");
    let release = std::fs::read_dir(kernel.join("lib/modules"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let tree = ModuleTree::open(&release).expect("module tree");
    let order: Vec<String> = tree
        .load_order(&["virtio_net", "bridge", "ext4"])
        .expect("load order")
        .iter()
        .map(|path| path.file_stem().unwrap().to_str().unwrap().to_string())
        .collect();
    let at = |name: &str| {
        order
            .iter()
            .position(|m| m == name)
            .unwrap_or_else(|| panic!("{name} not in {order:?}"))
    };
    assert!(
        at("failover") < at("net_failover") && at("net_failover") < at("virtio_net"),
        "{order:?}"
    );
    assert!(
        at("llc") < at("stp") && at("stp") < at("bridge"),
        "{order:?}"
    );
    assert!(
        !order.iter().any(|m| m == "ext4"),
        "ext4 is built in: {order:?}"
    );
    assert_eq!(
        order.len(),
        order
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        "duplicates: {order:?}"
    );
    assert!(tree.load_order(&["no_such_module"]).is_err());
}

/// Every module a node loads exists in both Debian cloud kernels (the
/// image build would stop otherwise), the late list carries what
/// kube-proxy, CNI add-ons and ip6tables need, each after its
/// dependencies, and the bytes each list adds are printed per arch.
#[test]
#[ignore = "fetches Debian's cloud kernels: run by cargo kios test"]
fn node_modules_resolve_in_both_debian_kernels() -> anyhow::Result<()> {
    use kios_tools::image::node_image::{ModuleLists, NETWORK_MODULES};

    let bom = bom()?;
    for arch in Arch::ALL {
        let kernel = fetch_component(&bom, "kernel", arch)?;
        let lists = ModuleLists::resolve(&kernel)?;
        let stems = |modules: &[PathBuf]| -> Vec<String> {
            modules
                .iter()
                .map(|path| {
                    path.file_stem()
                        .unwrap()
                        .to_string_lossy()
                        .replace('-', "_")
                })
                .collect()
        };
        let late = stems(&lists.late);
        for wanted in NETWORK_MODULES {
            assert!(
                late.iter().any(|name| name == wanted),
                "{arch}: {wanted} is not in the late list {late:?}"
            );
        }
        let at = |name: &str| late.iter().position(|m| m == name).unwrap();
        for (dependency, module) in [
            ("nf_conntrack", "nf_nat"),
            ("x_tables", "ip_tables"),
            ("ip_tables", "iptable_nat"),
            ("nf_tables", "nft_compat"),
            ("ip_set", "xt_set"),
            ("nf_conntrack", "ip_vs"),
            ("ip_vs", "ip_vs_rr"),
        ] {
            assert!(at(dependency) < at(module), "{arch}: {late:?}");
        }
        assert_eq!(
            late.len(),
            late.iter().collect::<BTreeSet<_>>().len(),
            "{arch}: duplicates in {late:?}"
        );
        for (name, modules) in [
            ("early", &lists.early),
            ("late", &lists.late),
            ("firstboot", &lists.firstboot),
        ] {
            eprintln!(
                "{arch} {name}: {} module(s), {} bytes",
                modules.len(),
                lists.bytes(modules)?
            );
        }
        for module in &lists.late {
            eprintln!(
                "{arch}   {:>8}  {}",
                lists.bytes(std::slice::from_ref(module))?,
                module.display()
            );
        }
    }
    Ok(())
}

/// The CA bundle from the pinned `ca-certificates` is the same bytes for
/// both arches (one Architecture: all package), built twice; it is what
/// `update-ca-certificates` makes: the package's certificates, sorted by
/// path, concatenated.
#[test]
#[ignore = "fetches Debian's ca-certificates: run by cargo kios test"]
fn the_ca_bundle_is_built_deterministically_from_the_pinned_package() -> anyhow::Result<()> {
    let bom = bom()?;
    let amd64 = fetch_component(&bom, CA_CERTIFICATES_COMPONENT, Arch::Amd64)?;
    let arm64 = fetch_component(&bom, CA_CERTIFICATES_COMPONENT, Arch::Arm64)?;
    let bundle = ca_bundle(&amd64)?;
    assert_eq!(ca_bundle(&amd64)?, bundle);
    assert_eq!(ca_bundle(&arm64)?, bundle);

    let certificates = amd64.join("usr/share/ca-certificates");
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(certificates.join("mozilla"))? {
        files.push(entry?.path());
    }
    files.sort();
    let mut expected = Vec::new();
    for file in &files {
        expected.extend(std::fs::read(file)?);
    }
    assert_eq!(bundle, expected, "the mozilla/*.crt files, in order");
    assert_eq!(certificate_count(&bundle), files.len());
    eprintln!(
        "{CA_BUNDLE_PATH}: {} certificates, {} bytes",
        files.len(),
        bundle.len()
    );
    Ok(())
}
