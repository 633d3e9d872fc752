//! TEST SUPPORT: a network namespace whose only interface is its loopback
//! (as root, `ip netns`), for a VM whose user-mode network is not
//! restricted ([`crate::vm::qemu::GuestNetwork::LoopbackNamespace`]) and
//! the servers it is to reach: inside it, QEMU's guest reaches what
//! listens on the namespace's 127.0.0.1, as 10.0.2.2, and nothing else,
//! since there is no other interface or route.

use std::ffi::OsStr;
use std::process::Command;

use anyhow::{ensure, Context, Result};

use crate::host::command::output_of;

/// The namespace; dropping it deletes it (processes still in it keep
/// their own reference until they exit).
pub struct LoopbackNamespace {
    name: String,
}

impl LoopbackNamespace {
    /// Creates `name` (replacing one a killed run left behind), brings its
    /// loopback up and checks that it has no other link.
    pub fn create(name: &str) -> Result<LoopbackNamespace> {
        // A leftover from a run killed before its drop: gone or not there.
        let _ = output_of(Command::new("ip").args(["netns", "delete", name]));
        output_of(Command::new("ip").args(["netns", "add", name]))
            .context("creating a network namespace (as root, with iproute2's ip)")?;
        let namespace = LoopbackNamespace {
            name: name.to_string(),
        };
        output_of(Command::new("ip").args(["-n", name, "link", "set", "lo", "up"]))?;
        let links = output_of(Command::new("ip").args(["-n", name, "-o", "link", "show"]))?;
        let names = link_names(&links);
        ensure!(
            names == ["lo"],
            "network namespace {name} has links {names:?}, not just its loopback"
        );
        Ok(namespace)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `program` run inside the namespace (`ip netns exec`, which execs it).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.name])
            .arg(program.as_ref());
        command
    }
}

impl Drop for LoopbackNamespace {
    fn drop(&mut self) {
        // Best effort: a namespace left behind is replaced by the next run.
        let _ = output_of(Command::new("ip").args(["netns", "delete", &self.name]));
    }
}

/// The link names in `ip -o link show`'s output (`1: lo: <LOOPBACK,...`).
fn link_names(listing: &str) -> Vec<&str> {
    listing
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_come_from_ip_o_link_show() {
        let listing = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n\
                       2: veth0@if5: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN\\    link/ether 12:34:56:78:9a:bc\n";
        assert_eq!(link_names(listing), ["lo", "veth0"]);
        assert_eq!(link_names(""), Vec::<&str>::new());
    }
}
