//! How the test API server reaches each node's kubelet (logs, exec,
//! port-forward): every node is a QEMU VM on its own user-mode network,
//! and every one has the address 10.0.2.15 there, so the node's InternalIP
//! leads nowhere from the host. Instead each VM forwards its kubelet port
//! (10250) from a loopback address of its own (127.0.0.2, 127.0.0.3, ...;
//! [`crate::vm::qemu::HostForward`]), the API server prefers the node's
//! Hostname address (`--kubelet-preferred-address-types=Hostname`), and it
//! runs in a mount namespace of its own where this hosts file is
//! bind-mounted over `/etc/hosts`, mapping each node's name to its
//! loopback address. The node names itself on its first boot (`kios-<12
//! hex>`), so the file is filled in as the names appear on the consoles:
//! rewritten in place (the same inode, which the bind mount shows), and
//! read again by the API server's resolver within seconds. The host's own
//! `/etc/hosts` is never touched.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

/// The kubelet's port, the same on every node.
pub const KUBELET_PORT: u16 = 10250;

/// The hosts file the API server sees as `/etc/hosts`.
#[derive(Debug)]
pub struct KubeletHosts {
    path: PathBuf,
    entries: Mutex<BTreeMap<String, Ipv4Addr>>,
}

impl KubeletHosts {
    /// Writes the file with `localhost` only.
    pub fn create(path: &Path) -> Result<KubeletHosts> {
        let hosts = KubeletHosts {
            path: path.to_path_buf(),
            entries: Mutex::new(BTreeMap::new()),
        };
        hosts.write(&BTreeMap::new())?;
        Ok(hosts)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Maps `name` to `address` (a loopback one) and rewrites the file in place.
    pub fn add(&self, name: &str, address: Ipv4Addr) -> Result<()> {
        check_host_name(name)?;
        if !address.is_loopback() {
            bail!("{name}: the kubelet's forward must be on loopback, not {address}");
        }
        let mut entries = self
            .entries
            .lock()
            .map_err(|_| anyhow::anyhow!("the hosts table's lock is poisoned"))?;
        entries.insert(name.to_string(), address);
        self.write(&entries)
    }

    /// The address `name` maps to, if any.
    pub fn address_of(&self, name: &str) -> Option<Ipv4Addr> {
        self.entries.lock().ok()?.get(name).copied()
    }

    fn write(&self, entries: &BTreeMap<String, Ipv4Addr>) -> Result<()> {
        let text = hosts_text(entries);
        // Truncated and written, never replaced: the bind mount shows this inode.
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        file.write_all(text.as_bytes())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

fn hosts_text(entries: &BTreeMap<String, Ipv4Addr>) -> String {
    let mut text = String::from(
        "# The test API server's /etc/hosts: each node's name -> its kubelet's loopback forward.\n\
         127.0.0.1 localhost\n",
    );
    for (name, address) in entries {
        text.push_str(&format!("{address} {name}\n"));
    }
    text
}

/// A DNS label sequence, as a node name is: nothing that could add a line or a field.
fn check_host_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        });
    if !valid {
        bail!("`{name}` is not a host name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn entries_are_added_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        let hosts = KubeletHosts::create(&path).unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();
        hosts
            .add("kios-0123456789ab", Ipv4Addr::new(127, 0, 0, 2))
            .unwrap();
        hosts
            .add("kios-ba9876543210", Ipv4Addr::new(127, 0, 0, 3))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\n127.0.0.1 localhost\n"), "{text}");
        assert!(text.contains("\n127.0.0.2 kios-0123456789ab\n"), "{text}");
        assert!(text.ends_with("127.0.0.3 kios-ba9876543210\n"), "{text}");
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
        assert_eq!(
            hosts.address_of("kios-ba9876543210"),
            Some(Ipv4Addr::new(127, 0, 0, 3))
        );
    }

    #[test]
    fn only_host_names_and_loopback_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = KubeletHosts::create(&dir.path().join("hosts")).unwrap();
        for name in ["", "a b", "a\n1.2.3.4 b", "-a", "A"] {
            assert!(
                hosts.add(name, Ipv4Addr::new(127, 0, 0, 2)).is_err(),
                "{name:?}"
            );
        }
        assert!(hosts.add("node", Ipv4Addr::new(10, 0, 2, 15)).is_err());
    }
}
