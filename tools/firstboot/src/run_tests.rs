use std::collections::{BTreeMap, BTreeSet};

use super::*;

/// A node in memory: files by absolute path (directories implied by
/// them), the ESP's files by path on the partition, and the log.
#[derive(Default)]
struct FakeNode {
    files: BTreeMap<String, (Vec<u8>, u32)>,
    dirs: BTreeSet<String>,
    links: BTreeMap<String, String>,
    esp: BTreeMap<String, Vec<u8>>,
    /// The sysfs block devices: name, uevent.
    block: Vec<(&'static str, &'static str)>,
    mounted: Option<String>,
    modules: Vec<String>,
    random: Option<[u8; 16]>,
    read_only_etc: bool,
    syncs: u32,
    logs: Vec<(Level, String)>,
}

const DISK: &[(&str, &str)] = &[
    (
        "vda",
        "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\nDISKSEQ=1\n",
    ),
    (
        "vda1",
        "MAJOR=254\nMINOR=1\nDEVNAME=vda1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=esp\n",
    ),
    (
        "vda2",
        "MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=kios-data\n",
    ),
];

impl FakeNode {
    fn with_disk() -> FakeNode {
        FakeNode {
            block: DISK.to_vec(),
            random: Some([0x42; 16]),
            ..FakeNode::default()
        }
    }

    fn esp_file(mut self, path: &str, contents: &[u8]) -> FakeNode {
        self.esp
            .insert(format!("kios/config/{path}"), contents.to_vec());
        self
    }

    fn file(mut self, path: &str, contents: &[u8]) -> FakeNode {
        self.files.insert(path.into(), (contents.to_vec(), 0o644));
        self
    }

    fn lines(&self) -> Vec<&str> {
        self.logs.iter().map(|(_, line)| line.as_str()).collect()
    }

    fn logged(&self, needle: &str) -> bool {
        self.logs.iter().any(|(_, line)| line.contains(needle))
    }

    fn contents(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(|(bytes, _)| bytes.as_slice())
    }

    fn block_file(&self, path: &str) -> Option<&'static str> {
        let name = path
            .strip_prefix("/sys/class/block/")?
            .strip_suffix("/uevent")?;
        self.block
            .iter()
            .find(|(block, _)| *block == name)
            .map(|(_, uevent)| *uevent)
    }
}

impl Node for FakeNode {
    fn read(&mut self, path: &str, buf: &mut [u8]) -> Result<Read, Errno> {
        let contents = match self.block_file(path) {
            Some(uevent) => uevent.as_bytes().to_vec(),
            None if self.dirs.contains(path) => return Err(Errno::ISDIR),
            None => self.files.get(path).ok_or(Errno::NOENT)?.0.clone(),
        };
        let len = contents.len().min(buf.len());
        buf[..len].copy_from_slice(&contents[..len]);
        Ok(Read {
            len,
            truncated: contents.len() > buf.len(),
        })
    }

    fn write(&mut self, path: &str, contents: &[u8], mode: u32) -> Result<(), Errno> {
        if self.read_only_etc && path.starts_with("/etc/") {
            return Err(Errno::ROFS);
        }
        let parent = path.rsplit_once('/').map_or("", |(parent, _)| parent);
        // /etc and /run exist on every node before this step runs.
        if parent != "/etc" && parent != "/run" && !self.dirs.contains(parent) {
            return Err(Errno::NOENT);
        }
        self.files.insert(path.into(), (contents.to_vec(), mode));
        Ok(())
    }

    fn mkdir(&mut self, path: &str, _mode: u32) -> Result<(), Errno> {
        if self.read_only_etc && path.starts_with("/etc/") {
            return Err(Errno::ROFS);
        }
        if self.dirs.insert(path.into()) {
            Ok(())
        } else {
            Err(Errno::EXIST)
        }
    }

    fn symlink(&mut self, target: &str, link: &str) -> Result<(), Errno> {
        self.links.insert(link.into(), target.into());
        Ok(())
    }

    fn exists(&mut self, path: &str) -> bool {
        let prefix = format!("{path}/");
        self.files.contains_key(path)
            || self.dirs.contains(path)
            || self.files.keys().any(|file| file.starts_with(&prefix))
    }

    fn list(&mut self, dir: &str, names: &mut Names) -> Result<(), Errno> {
        if dir == "/sys/class/block" {
            for (name, _) in &self.block {
                names.push(name.as_bytes(), Kind::Other);
            }
            return Ok(());
        }
        let prefix = format!("{dir}/");
        let mut children = BTreeMap::new();
        for path in self.files.keys() {
            if let Some(rest) = path.strip_prefix(&prefix) {
                match rest.split_once('/') {
                    Some((child, _)) => children.insert(child.to_string(), Kind::Dir),
                    None => children.insert(rest.to_string(), Kind::File),
                };
            }
        }
        if children.is_empty() {
            return Err(Errno::NOENT);
        }
        // Reverse order: the flow must sort.
        for (name, kind) in children.iter().rev() {
            names.push(name.as_bytes(), *kind);
        }
        Ok(())
    }

    fn mount_esp(&mut self, device: &str, target: &str) -> Result<(), Errno> {
        assert_eq!(device, "/dev/vda1");
        assert!(self.mounted.is_none());
        for (path, contents) in &self.esp {
            self.files
                .insert(format!("{target}/{path}"), (contents.clone(), 0o755));
        }
        self.mounted = Some(target.into());
        Ok(())
    }

    fn unmount(&mut self, target: &str) -> Result<(), Errno> {
        assert_eq!(self.mounted.as_deref(), Some(target));
        let prefix = format!("{target}/");
        self.files.retain(|path, _| !path.starts_with(&prefix));
        self.mounted = None;
        Ok(())
    }

    fn load_module(&mut self, path: &str) -> Result<(), Errno> {
        self.modules.push(path.into());
        Ok(())
    }

    fn random(&mut self, bytes: &mut [u8; 16]) -> Result<bool, Errno> {
        *bytes = self.random.ok_or(Errno(38))?;
        Ok(true)
    }

    fn sync(&mut self) {
        self.syncs += 1;
    }

    fn log(&mut self, level: Level, line: &str) {
        assert!(!line.contains('\n'));
        self.logs.push((level, line.to_string()));
    }
}

const KUBECONFIG: &[u8] =
    b"apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://10.0.2.2:6443\n  name: c\n";
const CERT: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const RANDOM_ID: &str = "42424242424242428242424242424242";

#[test]
fn a_first_boot_takes_good_files_refuses_bad_ones_one_line_each() {
    let big = vec![b'a'; MAX_FILE_BYTES + 1];
    let mut node = FakeNode::with_disk()
        .file(
            FIRSTBOOT_MODULE_LIST,
            b"# order\n/lib/modules/x/fat.ko\n/lib/modules/x/vfat.ko\n",
        )
        .esp_file("kubernetes/bootstrap-kubelet.conf", KUBECONFIG)
        .esp_file("kubernetes/pki/ca.crt", b"not a certificate")
        .esp_file("kubernetes/node-labels", b"zone=a\n")
        .esp_file("kubernetes/manifests/web.yaml", b"kind: Pod\n")
        .esp_file("kubernetes/manifests/huge.yaml", &big)
        .esp_file("hostname", b"bad_name\n")
        .esp_file("notes.txt", b"hello")
        .esp_file("systemd/x.service", b"[Unit]\n");
    assert_eq!(first_boot(&mut node), firstboot_exit::DONE);
    assert_eq!(
        node.modules,
        ["/lib/modules/x/fat.ko", "/lib/modules/x/vfat.ko"]
    );
    assert_eq!(
        node.contents(kios_abi::kubernetes::BOOTSTRAP_KUBECONFIG),
        Some(KUBECONFIG)
    );
    assert_eq!(
        node.files[kios_abi::kubernetes::BOOTSTRAP_KUBECONFIG].1,
        0o600
    );
    assert_eq!(
        node.links["/etc/kubernetes/bootstrap-kubelet.conf"],
        "bootstrap-kubeconfig"
    );
    assert_eq!(
        node.contents("/etc/kubernetes/node-labels"),
        Some(&b"zone=a\n"[..])
    );
    assert_eq!(
        node.contents("/etc/kubernetes/manifests/web.yaml"),
        Some(&b"kind: Pod\n"[..])
    );
    assert_eq!(node.contents("/etc/kubernetes/pki/ca.crt"), None);
    assert_eq!(node.contents("/etc/kubernetes/manifests/huge.yaml"), None);
    assert_eq!(node.mounted, None, "the ESP was left mounted");

    let expected = [
        format!("machine-id {RANDOM_ID} created random, in /etc/machine-id"),
        "refused hostname: not a DNS-1123 name (letters, digits, '-' and '.'); the node name comes from kios.hostname= or the machine-id".into(),
        "took kubernetes/bootstrap-kubelet.conf as /etc/kubernetes/bootstrap-kubeconfig (/etc/kubernetes/bootstrap-kubelet.conf links to it)".into(),
        "refused kubernetes/manifests/huge.yaml: larger than 65536 bytes; no such static pod".into(),
        "took kubernetes/manifests/web.yaml as /etc/kubernetes/manifests/web.yaml".into(),
        "took kubernetes/node-labels as /etc/kubernetes/node-labels".into(),
        "refused kubernetes/pki/ca.crt: not a PEM certificate (no -----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----); the image's file (if any) stays".into(),
        "refused notes.txt: not a file kiOS takes (see docs/configuration.md); ignored".into(),
        "refused systemd/: not a directory kiOS takes; nothing in it taken".into(),
        "first-boot configuration from /dev/vda1 /kios/config: 3 file(s) taken, 5 refused; later boots skip it (/etc/kios/first-boot-done)".into(),
        "hostname kios-424242424242 derived from the machine-id, in /etc/hostname".into(),
    ];
    assert_eq!(node.lines(), expected);
    assert_eq!(
        node.contents(HOSTNAME_FILE),
        Some(&b"kios-424242424242\n"[..])
    );
    assert_eq!(
        node.contents(MACHINE_ID),
        Some(format!("{RANDOM_ID}\n").as_bytes())
    );
    assert_eq!(
        node.contents(FIRSTBOOT_DONE),
        Some(&b"taken 3, refused 5\n"[..])
    );
    assert!(node.syncs >= 2);

    // The second boot: nothing copied again, the same identity.
    node.logs.clear();
    node.random = Some([0x17; 16]);
    node.esp.insert(
        "kios/config/kubernetes/node-ip".into(),
        b"10.0.2.15\n".to_vec(),
    );
    assert_eq!(first_boot(&mut node), firstboot_exit::DONE);
    assert_eq!(
        node.lines(),
        [
            format!("machine-id {RANDOM_ID} kept from /etc/machine-id"),
            "first-boot configuration: taken on an earlier boot (/etc/kios/first-boot-done), the EFI system partition is not read again".to_string(),
        ]
    );
    assert_eq!(node.contents("/etc/kubernetes/node-ip"), None);
}

#[test]
fn identity_prefers_the_product_uuid_then_the_serial_number_then_random() {
    let mut node = FakeNode::with_disk().file(
        identity::PRODUCT_UUID,
        b"4C4C4544-0042-3510-8052-B4C04F4B4E32\n",
    );
    first_boot(&mut node);
    assert_eq!(
        node.contents(MACHINE_ID),
        Some(&b"4c4c4544004235108052b4c04f4b4e32\n"[..])
    );
    assert_eq!(node.files[MACHINE_ID].1, 0o444);
    assert_eq!(
        node.contents(HOSTNAME_FILE),
        Some(&b"kios-4c4c45440042\n"[..])
    );
    assert!(node.logged("created from the SMBIOS product UUID"));

    let mut node = FakeNode::with_disk()
        .file(
            identity::PRODUCT_UUID,
            b"00000000-0000-0000-0000-000000000000\n",
        )
        .file(identity::SERIAL_NUMBER, b"10000000abcdef01\0");
    first_boot(&mut node);
    let expected = MachineId::from_serial_number(b"10000000abcdef01").unwrap();
    assert_eq!(
        node.contents(MACHINE_ID),
        Some(&expected.file_contents()[..])
    );
    assert!(node.logged("created from the device tree's serial number"));

    let mut node = FakeNode::with_disk().file(MACHINE_ID, b"uninitialized\n");
    first_boot(&mut node);
    assert!(node.logged("/etc/machine-id: not 32 lowercase hex digits, making a new one"));
    assert_eq!(
        node.contents(MACHINE_ID),
        Some(format!("{RANDOM_ID}\n").as_bytes())
    );

    let mut node = FakeNode::with_disk();
    node.random = None;
    assert_eq!(first_boot(&mut node), firstboot_exit::INCOMPLETE);
    assert!(node.logged("no machine identity and no random numbers"));
    assert_eq!(node.contents(HOSTNAME_FILE), None);
}

#[test]
fn a_configured_hostname_is_never_replaced() {
    let mut on_cmdline =
        FakeNode::with_disk().file("/proc/cmdline", b"console=ttyS0 kios.hostname=edge-7\n");
    first_boot(&mut on_cmdline);
    assert_eq!(on_cmdline.contents(HOSTNAME_FILE), None);

    let mut in_file = FakeNode::with_disk().file(HOSTNAME_FILE, b"edge-8\n");
    first_boot(&mut in_file);
    assert_eq!(in_file.contents(HOSTNAME_FILE), Some(&b"edge-8\n"[..]));
    assert!(!in_file.logged("derived"));

    let mut from_esp = FakeNode::with_disk().esp_file("HOSTNAME", b"Edge-9\n");
    first_boot(&mut from_esp);
    assert_eq!(from_esp.contents(HOSTNAME_FILE), Some(&b"Edge-9\n"[..]));
    assert!(from_esp.logged("took HOSTNAME as /etc/hostname"));

    let mut empty = FakeNode::with_disk().file(HOSTNAME_FILE, b"\n");
    first_boot(&mut empty);
    assert_eq!(
        empty.contents(HOSTNAME_FILE),
        Some(&b"kios-424242424242\n"[..])
    );
}

#[test]
fn kios_and_kubeadm_names_for_one_file_take_the_first_only() {
    let mut node = FakeNode::with_disk()
        .esp_file("kubernetes/kubeconfig", KUBECONFIG)
        .esp_file("kubernetes/kubelet.conf", b"apiVersion: v1\nclusters: []\n")
        .esp_file("kubernetes/pki/ca.crt", CERT)
        .esp_file(
            "containerd/certs.d/registry.example.com/hosts.toml",
            b"server = \"https://registry.example.com\"\n",
        );
    first_boot(&mut node);
    assert_eq!(
        node.contents("/etc/kubernetes/kubeconfig"),
        Some(KUBECONFIG)
    );
    assert!(node
        .logged("refused kubernetes/kubelet.conf: /etc/kubernetes/kubeconfig was already taken"));
    assert_eq!(node.contents("/etc/kubernetes/pki/ca.crt"), Some(CERT));
    assert!(node
        .contents("/etc/containerd/certs.d/registry.example.com/hosts.toml")
        .is_some());
    assert!(node.logged("3 file(s) taken, 1 refused"));
}

#[test]
fn no_esp_or_no_config_dir_still_marks_the_first_boot_done() {
    let mut no_esp = FakeNode {
        block: vec![DISK[0], DISK[2]],
        random: Some([1; 16]),
        ..FakeNode::default()
    };
    assert_eq!(first_boot(&mut no_esp), firstboot_exit::DONE);
    assert!(no_esp.logged("first-boot configuration: no partition named esp, nothing to take"));
    assert!(no_esp.contents(FIRSTBOOT_DONE).is_some());
    assert!(no_esp.contents(kios_abi::image::FIRSTBOOT_RAN).is_some());

    let mut empty_esp = FakeNode::with_disk();
    assert_eq!(first_boot(&mut empty_esp), firstboot_exit::DONE);
    assert!(empty_esp.logged("/dev/vda1 /kios/config: not there, nothing to take"));
    assert!(empty_esp.contents(FIRSTBOOT_DONE).is_some());
    assert_eq!(empty_esp.mounted, None);
}

#[test]
fn a_read_only_etc_is_reported_and_the_boot_goes_on() {
    let mut node = FakeNode::with_disk().esp_file("kubernetes/node-ip", b"10.0.2.15\n");
    node.read_only_etc = true;
    assert_eq!(first_boot(&mut node), firstboot_exit::INCOMPLETE);
    assert!(node.logged("writing /etc/machine-id failed: EROFS (30)"));
    assert!(node
        .logged("refused kubernetes/node-ip: writing /etc/kubernetes/node-ip failed: EROFS (30)"));
    assert!(node.logged("writing /etc/kios/first-boot-done failed"));
}

#[test]
fn a_flood_of_files_is_cut_at_the_limit_with_one_line() {
    let mut node = FakeNode::with_disk();
    for i in 0..(MAX_FILES + 20) {
        node = node.esp_file(
            &format!("kubernetes/manifests/pod-{i:03}.yaml"),
            b"kind: Pod\n",
        );
    }
    first_boot(&mut node);
    let took = node
        .logs
        .iter()
        .filter(|(_, line)| line.starts_with("took "))
        .count();
    assert_eq!(took, MAX_FILES);
    assert!(node.logged("more than 64 files; the rest is not read"));
    assert!(node.logs.len() < MAX_FILES + 6, "{}", node.logs.len());
}

#[test]
fn uevents_give_the_device_and_partition_names() {
    assert_eq!(
        parse_uevent(DISK[1].1.as_bytes()),
        Uevent {
            devname: Some(b"vda1"),
            partname: Some(b"esp")
        }
    );
    assert_eq!(parse_uevent(DISK[0].1.as_bytes()).partname, None);
}
