//! Assembles the node image from resolved components
//! ([`NodeComponents`]): the init (kiOS's, or one the caller supplies),
//! containerd, the OCI runtime and the kubelet with the libraries they
//! need, the files of `buildroot-overlay/`, a seeded containerd store (so
//! the first boot pulls nothing), the kernel modules the node needs and
//! the caller's extra files, as one initramfs. It knows nothing of tests
//! or benchmarks: their fixtures come in as options.
//!
//! The init turns the initramfs into a read-only, `pivot_root`-able root
//! by bind-mounting it onto itself, so nothing is copied at boot.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kios_abi::image::{
    CONTAINERD_SEED, CONTAINERD_SNAPSHOTS, FIRSTBOOT_MODULE_LIST, INIT, LATE_MODULE_LIST,
    MODULE_LIST,
};
use serde::Serialize;
use walkdir::WalkDir;

use crate::components::image_seed::seed_containerd_store;
use crate::components::node::{NodeComponents, NodeKernel, BUSYBOX_COMPONENT};
use crate::components::{build_images, stage_components, stage_workspace_binaries, OciRuntime};
use crate::host::arch::Arch;
use crate::host::fs::{file_size, tree_bytes};
use crate::host::workspace::Workspace;
use crate::image::initramfs::{write_atomically, Compression, Initramfs};
use crate::image::modules::ModuleTree;
use crate::vm::qemu::VmConfig;

const SNAPSHOTTER_DEFAULT_DIR: &str = "io.containerd.snapshotter.v1.overlayfs";
/// What the node needs that Debian's cloud kernel has as modules, by
/// module name; dependencies are added and ordered at build time.
/// Before the runtime starts: the virtio PCI transport and block driver, for
/// the data partition that becomes /var (ext4 is built in), and overlay,
/// for /etc and containerd's store and snapshots.
pub const RUNTIME_MODULES: &[&str] = &["virtio_pci", "virtio_blk", "overlay"];
/// After the kubelet starts (off the boot's critical path): the node's NIC,
/// the CNI plugins' devices, and what kube-proxy (iptables and IPVS modes),
/// CNI add-ons and ip6tables program. The netfilter part mirrors the kiOS
/// kernel's `kernel/common.config`, option by option (the option each
/// module comes from is named beside it); Kconfig booleans such as
/// `NF_CONNTRACK_MARK`, `NF_TABLES_INET`/`_IPV4`/`_IPV6`, `IP_VS_IPV6`,
/// `IP_VS_PROTO_TCP`/`_UDP` and `IP_VS_NFCT` are built into Debian's
/// modules below (both cloud kernels set them `=y`). Nothing here needs
/// modprobe: the node has none, so a module a rule would autoload must be
/// loaded already. Every name must exist in both Debian cloud kernels
/// (amd64, arm64): `ModuleTree::load_order` fails the build otherwise.
pub const NETWORK_MODULES: &[&str] = &[
    // The node's NIC (VIRTIO_NET), on the transport loaded early.
    "virtio_net",
    // The CNI bridge plugin: pods hang off a bridge (BRIDGE) by veth pairs
    // (VETH); the kubelet asks for bridged traffic to pass iptables
    // (BRIDGE_NETFILTER).
    "bridge",
    "br_netfilter",
    "veth",
    // VXLAN: the overlay flannel-style CNI add-ons run between nodes.
    "vxlan",
    // DUMMY: kube-proxy's IPVS mode binds Service addresses to kube-ipvs0.
    "dummy",
    // Connection tracking (NF_CONNTRACK; NF_CONNTRACK_MARK is part of it),
    // over netlink for `conntrack -D` (NF_CT_NETLINK), and NAT (NF_NAT,
    // masquerading included).
    "nf_conntrack",
    "nf_conntrack_netlink",
    "nf_nat",
    // nf_tables, which Debian's iptables-nft programs (NF_TABLES with its
    // inet, ipv4 and ipv6 families); xtables matches inside it (NFT_COMPAT);
    // NAT expressions and the nat chain type (NFT_NAT: nft_nat and
    // nft_chain_nat); NFT_MASQ; NFT_CT; NFT_REJECT with its per-family
    // variants (NFT_REJECT_INET/_IPV4/_IPV6, which default to it).
    "nf_tables",
    "nft_compat",
    "nft_nat",
    "nft_chain_nat",
    "nft_masq",
    "nft_ct",
    "nft_reject",
    "nft_reject_inet",
    "nft_reject_ipv4",
    "nft_reject_ipv6",
    // The xtables core (NETFILTER_XTABLES: x_tables, and xt_tcpudp for
    // `-p tcp --dport` in legacy tables, built with it) and its matches
    // and targets (NETFILTER_XT_MATCH_COMMENT, _CONNTRACK, _ADDRTYPE,
    // _MULTIPORT, _STATISTIC, _RECENT, _PHYSDEV, _LIMIT, _IPVS;
    // NETFILTER_XT_MARK, _CONNMARK, _NAT, _TARGET_MASQUERADE,
    // _TARGET_REDIRECT, _SET).
    "x_tables",
    "xt_tcpudp",
    "xt_comment",
    "xt_conntrack",
    "xt_addrtype",
    "xt_multiport",
    "xt_statistic",
    "xt_recent",
    "xt_physdev",
    "xt_limit",
    "xt_ipvs",
    "xt_mark",
    "xt_connmark",
    "xt_nat",
    "xt_MASQUERADE",
    "xt_REDIRECT",
    "xt_set",
    // ipset, for the IPVS mode's sets (IP_SET, IP_SET_HASH_IP, _IPPORT,
    // _IPPORTIP, _IPPORTNET, _NET, IP_SET_BITMAP_PORT).
    "ip_set",
    "ip_set_hash_ip",
    "ip_set_hash_ipport",
    "ip_set_hash_ipportip",
    "ip_set_hash_ipportnet",
    "ip_set_hash_net",
    "ip_set_bitmap_port",
    // iptables-legacy, IPv4 (IP_NF_IPTABLES, IP_NF_FILTER, _NAT, _MANGLE,
    // _RAW, IP_NF_TARGET_REJECT) and IPv6 (IP6_NF_IPTABLES, IP6_NF_FILTER,
    // _NAT, _MANGLE, _RAW, IP6_NF_TARGET_REJECT).
    "ip_tables",
    "iptable_filter",
    "iptable_nat",
    "iptable_mangle",
    "iptable_raw",
    "ipt_REJECT",
    "ip6_tables",
    "ip6table_filter",
    "ip6table_nat",
    "ip6table_mangle",
    "ip6table_raw",
    "ip6t_REJECT",
    // IPVS, kube-proxy's IPVS mode (IP_VS with IPv6, TCP, UDP and conntrack
    // built in), and its schedulers: round robin, the default (IP_VS_RR),
    // weighted (IP_VS_WRR), source hashing (IP_VS_SH).
    "ip_vs",
    "ip_vs_rr",
    "ip_vs_wrr",
    "ip_vs_sh",
];
/// Also late: the ACPI power button's driver and evdev, through which the
/// init reads the button (built into the arm64 cloud kernel and into the
/// kiOS kernel).
pub const INPUT_MODULES: &[&str] = &["evdev", "button"];
/// Loaded by the first-boot step only, before it mounts the EFI system
/// partition: FAT and the code page and character set it mounts with by
/// default (Debian's `FAT_DEFAULT_CODEPAGE` 437, `_IOCHARSET` ascii).
pub const FIRSTBOOT_MODULES: &[&str] = &["vfat", "nls_cp437", "nls_ascii"];
/// kubeadm's names for the kubeconfigs (link, target), which the init
/// reads under kiOS's names: dangling until a kubeconfig is configured.
pub const KUBEADM_LINKS: &[(&str, &str)] = &[
    (kios_firstboot::policy::KUBEADM_KUBECONFIG, "kubeconfig"),
    (
        kios_firstboot::policy::KUBEADM_BOOTSTRAP_KUBECONFIG,
        "bootstrap-kubeconfig",
    ),
];

/// What goes into an image besides the node itself.
#[derive(Clone, Debug)]
pub struct ImageOptions {
    /// The init at /bin/init.
    pub init: InitChoice,
    /// Files added last, replacing any of the same path (a site's own
    /// config or static pods; tests add the probe pod or break the
    /// kubelet's config).
    pub extra_files: Vec<(String, Vec<u8>)>,
    /// How the initramfs is stored.
    pub compression: Compression,
    /// Also write the whole root as an erofs image, for a disk slot
    /// ([`crate::image::slots`]).
    pub root_image: bool,
}

/// Which init an image boots.
#[derive(Clone, Debug, Default)]
pub enum InitChoice {
    /// The kiOS init, built from `init/`.
    #[default]
    Kios,
    /// An init the caller supplies instead (the benchmark's shell-script
    /// baseline, a fixture never in a kiOS image): its files, /bin/init
    /// among them, and the name its bytes are reported under.
    Replacement { part: String, files: Initramfs },
}

impl Default for ImageOptions {
    fn default() -> ImageOptions {
        ImageOptions {
            init: InitChoice::Kios,
            extra_files: Vec::new(),
            compression: Compression::default(),
            root_image: false,
        }
    }
}

/// containerd's config names the OCI runtime's binary; the overlay ships runc's.
const CONTAINERD_CONFIG: &str = "etc/containerd/config.toml";
const RUNC_BINARY_LINE: &str = "BinaryName = \"/bin/runc\"";

/// One part of the image, for size reports.
#[derive(Clone, Debug, Serialize)]
pub struct ImagePart {
    pub component: String,
    pub bytes: u64,
}

/// A built image: what QEMU boots and what is in it.
#[derive(Clone, Debug, Serialize)]
pub struct NodeImage {
    pub arch: Arch,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The root as an erofs image, when [`ImageOptions::root_image`] asked for it.
    pub root_image: Option<PathBuf>,
    pub init_bytes: u64,
    pub parts: Vec<ImagePart>,
}

/// Memory for a node VM: the unpacked initramfs (189 MB) plus
/// containerd, the kubelet and a pod.
pub const NODE_MEMORY_MIB: u32 = 2048;

/// The VM that boots `image`; `icount` makes guest time follow executed
/// instructions (repeatable timelines).
pub fn vm_config(image: &NodeImage, icount: bool) -> VmConfig {
    VmConfig {
        memory_mib: NODE_MEMORY_MIB,
        icount,
        ..VmConfig::new(image.arch, image.kernel.clone(), image.initrd.clone())
    }
}

/// Builds the node image from `components` into `out_dir`.
pub fn build_node_image(
    workspace: &Workspace,
    components: &NodeComponents,
    options: &ImageOptions,
    out_dir: &Path,
) -> Result<NodeImage> {
    let arch = components.arch;
    if options.compression == Compression::Erofs {
        if let NodeKernel::Debian { .. } = components.kernel {
            bail!(
                "an erofs root needs a kernel that mounts erofs from a file: the kiOS \
                 kernel has it built in; Debian's 6.1 kernel has neither that nor \
                 erofs before its modules load (use --kernel kios or another --compression)"
            );
        }
    }
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut image = Initramfs::new();
    let mut parts = Vec::new();

    for dir in [
        "/dev", "/proc", "/sys", "/run", "/tmp", "/var", "/etc", "/bin",
    ] {
        image.directory(dir, 0o755);
    }
    // The kernel opens the console for the init before any mount.
    image
        .char_device("/dev/console", 0o600, 5, 1)
        .keep_for_boot("/dev/console")?;

    let init_bytes = match &options.init {
        InitChoice::Kios => {
            let init = workspace.build_musl_binary("kios-init", arch)?;
            image
                .file_from_host(INIT, 0o755, &init)?
                .keep_for_boot(INIT)?;
            file_size(&init)?
        }
        InitChoice::Replacement { files, .. } => {
            image.merge(files);
            for path in files.paths() {
                image.keep_for_boot(&path)?;
            }
            files.content_bytes()
        }
    };
    let init_part = match &options.init {
        InitChoice::Kios => "init",
        InitChoice::Replacement { part, .. } => part,
    };
    parts.push(ImagePart {
        component: init_part.into(),
        bytes: init_bytes,
    });

    let staging = out_dir.join(format!("staging-{arch}"));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("clearing {}", staging.display()))?;
    }
    let mut staged = stage_components(components, &staging)?;
    staged.extend(stage_workspace_binaries(workspace, arch, &staging)?);
    add_tree(&mut image, &staging, "/")?;
    for file in &staged {
        add_part(&mut parts, &file.component, file.bytes);
    }

    let overlay = workspace.root.join("buildroot-overlay");
    add_tree(&mut image, &overlay.join("etc"), "/etc")?;
    add_part(
        &mut parts,
        "buildroot-overlay",
        tree_bytes(&overlay.join("etc"))?,
    );
    for (link, target) in KUBEADM_LINKS {
        image.symlink(link, target);
    }
    if components.oci_runtime != OciRuntime::Runc {
        point_containerd_at(&mut image, &overlay, components.oci_runtime)?;
    }

    let archives = build_images(
        workspace,
        arch,
        components.fetched(BUSYBOX_COMPONENT)?,
        &out_dir.join(format!("images-{arch}")),
    )?;
    let archive_paths: Vec<PathBuf> = archives
        .iter()
        .map(|archive| archive.path.clone())
        .collect();
    let seed = seed_containerd_store(
        &components.bom,
        arch,
        &archive_paths,
        &out_dir.join(format!("seed-{arch}")),
    )?;
    add_tree(&mut image, &seed.dir, CONTAINERD_SEED)?;
    // containerd keeps snapshots at `root_path` (see its config) but reports
    // the image filesystem to the kubelet at its default place: point that
    // place at the real one so the kubelet's image-fs stats are right.
    image.symlink(
        &format!("{CONTAINERD_SEED}/{SNAPSHOTTER_DEFAULT_DIR}"),
        CONTAINERD_SNAPSHOTS,
    );
    add_part(&mut parts, "images (containerd seed)", seed.bytes);

    // A kiOS kernel has what the node needs built in: no modules.
    if let NodeKernel::Debian { tree, .. } = &components.kernel {
        let modules = add_modules(&mut image, tree)?;
        add_part(&mut parts, "kernel modules", modules);
    }
    let kernel = components.kernel.image().to_path_buf();
    parts.push(ImagePart {
        component: "kernel".into(),
        bytes: file_size(&kernel)?,
    });

    for (path, contents) in &options.extra_files {
        image.parents(path);
        image.file(path, 0o644, contents.clone());
    }

    let initrd = out_dir.join(format!("kios-{arch}.{}", options.compression.suffix()));
    image.write_stored(&initrd, options.compression)?;
    let root_image = if options.root_image {
        let path = out_dir.join(format!("root-{arch}.erofs"));
        write_atomically(&path, &image.erofs_image()?)?;
        Some(path)
    } else {
        None
    };
    Ok(NodeImage {
        arch,
        kernel,
        initrd,
        root_image,
        init_bytes,
        parts,
    })
}

/// Rewrites the shipped containerd config to run containers with `runtime`.
fn point_containerd_at(image: &mut Initramfs, overlay: &Path, runtime: OciRuntime) -> Result<()> {
    let config_path = overlay.join(CONTAINERD_CONFIG);
    let config = std::fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    if !config.contains(RUNC_BINARY_LINE) {
        bail!(
            "{} has no `{RUNC_BINARY_LINE}` line to point at {}",
            config_path.display(),
            runtime.name()
        );
    }
    let binary_line = format!("BinaryName = \"/bin/{}\"", runtime.name());
    image.file(
        &format!("/{CONTAINERD_CONFIG}"),
        0o644,
        config.replace(RUNC_BINARY_LINE, &binary_line),
    );
    Ok(())
}

fn add_part(parts: &mut Vec<ImagePart>, component: &str, bytes: u64) {
    match parts.iter_mut().find(|part| part.component == component) {
        Some(part) => part.bytes += bytes,
        None => parts.push(ImagePart {
            component: component.to_string(),
            bytes,
        }),
    }
}

/// Adds the tree under `host_root` at `image_root`: directories, regular
/// files (keeping their execute bits) and symlinks as they are.
fn add_tree(image: &mut Initramfs, host_root: &Path, image_root: &str) -> Result<()> {
    for entry in WalkDir::new(host_root).sort_by_file_name() {
        let entry = entry.with_context(|| format!("walking {}", host_root.display()))?;
        let relative = entry
            .path()
            .strip_prefix(host_root)
            .context("walkdir left its root")?;
        let path = Path::new(image_root).join(relative);
        let path = path.to_str().context("non-UTF-8 path in the image")?;
        let file_type = entry.file_type();
        image.parents(path);
        if file_type.is_dir() {
            image.directory(path, 0o755);
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(entry.path())
                .with_context(|| format!("reading the link {}", entry.path().display()))?;
            image.symlink(path, target.to_str().context("non-UTF-8 link target")?);
        } else {
            let mode = entry
                .metadata()
                .with_context(|| format!("reading {}", entry.path().display()))?;
            let executable =
                std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o111 != 0;
            image.file_from_host(path, if executable { 0o755 } else { 0o644 }, entry.path())?;
        }
    }
    Ok(())
}

/// The modules an image built on one Debian kernel tree carries, by the
/// list the init loads them from, each list in load order (paths relative
/// to the release directory).
#[derive(Clone, Debug)]
pub struct ModuleLists {
    /// `lib/modules/<release>` in the kernel package's tree.
    pub release_dir: PathBuf,
    /// The release's name, e.g. `6.1.0-56-cloud-amd64`.
    pub release: String,
    /// Before the runtime ([`RUNTIME_MODULES`]).
    pub early: Vec<PathBuf>,
    /// After the kubelet starts ([`NETWORK_MODULES`], [`INPUT_MODULES`]),
    /// without what `early` loaded.
    pub late: Vec<PathBuf>,
    /// The first-boot step's ([`FIRSTBOOT_MODULES`]), without `early`'s.
    pub firstboot: Vec<PathBuf>,
}

impl ModuleLists {
    /// Resolves the lists, with their dependencies, in the kernel package
    /// tree `kernel_tree`; fails naming any module the kernel lacks.
    pub fn resolve(kernel_tree: &Path) -> Result<ModuleLists> {
        let modules_root = kernel_tree.join("lib/modules");
        let release_dir = std::fs::read_dir(&modules_root)
            .with_context(|| format!("listing {}", modules_root.display()))?
            .next()
            .context("the kernel package has no lib/modules/<release>")??
            .path();
        let tree = ModuleTree::open(&release_dir)?;
        let release = release_dir
            .file_name()
            .and_then(|name| name.to_str())
            .context("non-UTF-8 kernel release")?
            .to_string();
        let early = tree.load_order(RUNTIME_MODULES)?;
        let mut all = RUNTIME_MODULES.to_vec();
        all.extend_from_slice(NETWORK_MODULES);
        all.extend_from_slice(INPUT_MODULES);
        let late: Vec<PathBuf> = tree
            .load_order(&all)?
            .into_iter()
            .filter(|module| !early.contains(module))
            .collect();
        let firstboot: Vec<PathBuf> = tree
            .load_order(FIRSTBOOT_MODULES)?
            .into_iter()
            .filter(|module| !early.contains(module))
            .collect();
        Ok(ModuleLists {
            release_dir,
            release,
            early,
            late,
            firstboot,
        })
    }

    /// The bytes of `modules`' files.
    pub fn bytes(&self, modules: &[PathBuf]) -> Result<u64> {
        modules
            .iter()
            .map(|module| file_size(&self.release_dir.join(module)))
            .sum()
    }
}

/// Copies the needed modules into the image and writes the three load
/// orders: before the runtime, after the kubelet starts, and the first-boot
/// step's.
pub fn add_modules(image: &mut Initramfs, kernel_tree: &Path) -> Result<u64> {
    let lists = ModuleLists::resolve(kernel_tree)?;
    let mut bytes = 0;
    for (list_path, modules) in [
        (MODULE_LIST, &lists.early),
        (LATE_MODULE_LIST, &lists.late),
        (FIRSTBOOT_MODULE_LIST, &lists.firstboot),
    ] {
        let mut list = String::from(
            "# Load order, computed at image build time from each module's depends=.\n",
        );
        for module in modules {
            let host = lists.release_dir.join(module);
            let in_image = format!("/lib/modules/{}/{}", lists.release, module.display());
            image.parents(&in_image);
            image.file_from_host(&in_image, 0o644, &host)?;
            bytes += file_size(&host)?;
            list.push_str(&in_image);
            list.push('\n');
        }
        image.parents(list_path);
        image.file(list_path, 0o644, list);
    }
    Ok(bytes)
}
