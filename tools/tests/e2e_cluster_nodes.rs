//! `kios cluster --nodes 2 --json` end to end: the loopback control plane,
//! two kiOS nodes booted at once in QEMU (each with its own data disk,
//! hence its own machine ID and name), kube-proxy as a DaemonSet on both,
//! and every check the command measures: kube-proxy running, a ClusterIP
//! Service reached from a pod, `kubectl logs`, `exec` and `port-forward`
//! through the API server to each node's kubelet, the image pulled from
//! the loopback registry, a pod with the default service-account token.
//!
//! It runs the `kios` binary itself and reads its JSON. Ignored by default
//! (a control plane and two VMs): `cargo kios test` runs it.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use kios_tools::host::workspace::Workspace;
use serde_json::Value;

const CHECKS: [&str; 7] = [
    "kube_proxy_running",
    "service_reachable",
    "logs",
    "exec",
    "port_forward",
    "image_pulled",
    "token_volume",
];

#[test]
#[ignore = "runs a control plane and boots two nodes in QEMU: run by cargo kios test"]
fn two_nodes_join_run_kube_proxy_and_serve_logs_exec_and_port_forward() -> Result<()> {
    let started = Instant::now();
    let out = Workspace::locate()?.output_dir()?.join("e2e-cluster-nodes");
    let output = Command::new(env!("CARGO_BIN_EXE_kios"))
        .args(["cluster", "--nodes", "2", "--json", "--out"])
        .arg(&out)
        .output()
        .context("running kios cluster")?;
    // Its progress, for the log.
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    let report: Value = serde_json::from_str(&stdout)
        .with_context(|| format!("kios cluster printed no JSON ({})", output.status))?;

    let nodes = report["nodes"].as_array().context("no nodes")?;
    ensure!(nodes.len() == 2, "{} nodes, not 2", nodes.len());
    let names: BTreeSet<&str> = nodes
        .iter()
        .filter_map(|node| node["name"].as_str())
        .collect();
    ensure!(
        names.len() == 2,
        "the nodes' names are not distinct: {names:?}"
    );
    for node in nodes {
        let name = node["name"].as_str().unwrap_or_default();
        // The first boot's name comes from the machine's SMBIOS UUID (the
        // kiOS kernel reads it through DMI), not a random machine ID.
        let uuid: String = node["machine_uuid"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .filter(|c| *c != '-')
            .collect();
        ensure!(
            uuid.len() == 32 && name == format!("kios-{}", &uuid[..12]),
            "{name} is not kios-<the first 12 hex digits of the machine's UUID {uuid}>"
        );
        ensure!(node["ready"] == true, "{name} is not Ready");
        let seconds = node["seconds_to_ready"].as_f64();
        ensure!(
            seconds.is_some_and(|seconds| seconds > 0.0),
            "{name}: no PID 1 to Ready time"
        );
        println!(
            "{name}: PID 1 -> Ready {:.1} s (guest clock), kubelet via {}",
            seconds.unwrap_or_default(),
            node["kubelet_address"]
        );
    }
    let failed: Vec<&str> = CHECKS
        .iter()
        .copied()
        .filter(|check| report["checks"][check] != true)
        .collect();
    ensure!(
        failed.is_empty(),
        "checks failed: {failed:?}; details: {:#}",
        report["check_details"]
    );
    for (node, seconds) in report["image_pull_seconds"]
        .as_object()
        .into_iter()
        .flatten()
    {
        println!("kube-proxy pulled by {node} in {seconds} s");
    }
    ensure!(
        output.status.success(),
        "kios cluster exited {}",
        output.status
    );
    println!("test wall time: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
