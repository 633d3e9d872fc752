//! The stand-in image: the real init with a TEST FIXTURE (`kios-standin`)
//! in place of containerd and the kubelet, and node files that exercise
//! the init's flag computation (valid and invalid labels, no kubeconfig).
//!
//! Never part of a real kiOS image: it exists so QEMU tests can check
//! the init's boot, supervision and shutdown without the real runtime.

use std::path::{Path, PathBuf};

use anyhow::Result;
use kios_abi::image::{HOSTNAME_FILE, INIT, KUBELET, MODULE_LIST, RUNTIME};
use kios_abi::kubernetes;

use crate::components::bom::Bom;
use crate::components::node::pinned_kernel;
use crate::host::arch::Arch;
use crate::host::progress::with_step;
use crate::host::workspace::Workspace;
use crate::image::initramfs::{Compression, Initramfs};
use crate::vm::qemu::{run_vm, LineVerdict, RunOptions, VmConfig, VmRun};

pub const INIT_PACKAGE: &str = "kios-init";
pub const STANDIN_PACKAGE: &str = "kios-standin";

/// The node IP the stand-in image declares (QEMU user networking's guest address).
pub const NODE_IP: &str = "10.0.2.15";

const NODE_LABELS: &str = "\
kios.dev/role=standin
# a comment
tier=node
bad label=x
-bad=x
";

const KUBELET_CONFIG: &str = "\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: /etc/kubernetes/manifests
featureGates:
  GracefulNodeShutdown: true
shutdownGracePeriod: 3s
";

// Only a bootstrap kubeconfig (no kubeconfig): the kubelet's first-boot path.
const BOOTSTRAP_KUBECONFIG: &str = "\
apiVersion: v1
kind: Config
clusters:
- name: standin
  cluster:
    server: https://10.0.2.100:6443
contexts:
- name: standin
  context:
    cluster: standin
    user: kubelet-bootstrap
current-context: standin
users:
- name: kubelet-bootstrap
  user:
    token: standin.0123456789abcdef
";

/// The image's contents, from a built init and stand-in binary.
pub fn standin_initramfs(init: &Path, standin: &Path) -> Result<Initramfs> {
    let mut image = Initramfs::new();
    for dir in [
        "/bin",
        "/dev",
        "/etc",
        kubernetes::DIR,
        kubernetes::STATIC_PODS,
        "/proc",
        "/sys",
        "/run",
        "/var",
    ] {
        image.directory(dir, 0o755);
    }
    image.directory("/tmp", 0o1777);
    // The kernel opens /dev/console for PID 1 before devtmpfs is mounted.
    image.char_device("/dev/console", 0o600, 5, 1);
    image.file_from_host(INIT, 0o755, init)?;
    // One fixture binary that acts as either program depending on argv[0].
    image.file_from_host(RUNTIME, 0o755, standin)?;
    image.file_from_host(KUBELET, 0o755, standin)?;
    image
        .file(HOSTNAME_FILE, 0o644, "kios-standin\n")
        .file(kubernetes::NODE_LABELS, 0o644, NODE_LABELS)
        .file(kubernetes::NODE_IP, 0o644, format!("{NODE_IP}\n"))
        .file(kubernetes::CONFIG, 0o644, KUBELET_CONFIG)
        .file(
            kubernetes::BOOTSTRAP_KUBECONFIG,
            0o600,
            BOOTSTRAP_KUBECONFIG,
        );
    // A hostile /etc, as a root pod can leave it in the persistent overlay:
    // the module list is a terminal, which a read would wait on forever.
    // The init must refuse it and boot on (issue 17, defect 1). The early
    // list: tests that build on this image set their own late one.
    image
        .directory("/etc/kios", 0o755)
        .symlink(MODULE_LIST, "/dev/console");
    Ok(image)
}

/// Builds the init and the stand-in fixture for `arch` and writes the
/// gzip initramfs under the target dir; returns its path.
pub fn build_standin_image(workspace: &Workspace, arch: Arch) -> Result<PathBuf> {
    let init = workspace.build_musl_binary(INIT_PACKAGE, arch)?;
    let standin = workspace.build_musl_binary(STANDIN_PACKAGE, arch)?;
    let path = workspace
        .output_dir()?
        .join(format!("standin-{arch}.cpio.gz"));
    with_step(
        format!("writing the stand-in test image {}", path.display()),
        || standin_initramfs(&init, &standin)?.write_stored(&path, Compression::Gzip),
    )?;
    Ok(path)
}

/// Builds the stand-in image and boots it on the BOM's Debian cloud kernel.
pub fn boot_standin_image(
    workspace: &Workspace,
    arch: Arch,
    icount: bool,
    options: RunOptions,
) -> Result<VmRun> {
    let initrd = build_standin_image(workspace, arch)?;
    let (kernel, _) = pinned_kernel(&Bom::of(workspace)?, arch)?;
    let config = VmConfig {
        icount,
        ..VmConfig::new(arch, kernel, initrd)
    };
    eprintln!(
        "booting the stand-in test image: {}",
        config.kernel_command_line()
    );
    run_vm(&config, options, |_| LineVerdict::Continue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::initramfs::tests::list;

    #[test]
    fn image_has_the_fixture_layout() {
        let dir = std::env::temp_dir().join(format!("kios-standin-image-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let init = dir.join("init");
        let standin = dir.join("standin");
        std::fs::write(&init, b"init-binary").unwrap();
        std::fs::write(&standin, b"standin-binary").unwrap();

        let cpio = standin_initramfs(&init, &standin)
            .unwrap()
            .to_cpio()
            .unwrap();
        let listed = list(&cpio);
        let find = |name: &str| {
            listed
                .iter()
                .find(|entry| entry.0 == name)
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        assert_eq!(find("bin/init").6, b"init-binary");
        assert_eq!(find("bin/init").1, 0o100755);
        assert_eq!(find("bin/containerd").6, b"standin-binary");
        assert_eq!(find("bin/kubelet").6, b"standin-binary");
        assert_eq!(find("dev/console").1, 0o020600);
        assert_eq!(find("etc/kubernetes/node-ip").6, b"10.0.2.15\n");
        assert_eq!(find("etc/hostname").6, b"kios-standin\n");
        assert_eq!(find("etc/kios/modules").6, b"/dev/console");
        assert!(find("etc/kubernetes/manifests").1 & 0o040000 != 0);
        let labels = String::from_utf8(find("etc/kubernetes/node-labels").6.clone()).unwrap();
        assert!(labels.lines().any(|line| line == "bad label=x"));
        assert!(!listed
            .iter()
            .any(|entry| entry.0 == "etc/kubernetes/kubeconfig"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
