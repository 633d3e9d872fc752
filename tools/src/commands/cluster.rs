//! `kios cluster`: try kiOS as a cluster. Starts the loopback control
//! plane and registry, boots N kiOS nodes in QEMU (each with its own name
//! and data disk), waits until all are Ready, prints the nodes, the pods,
//! the admin kubeconfig and each node's PID 1 to Ready time, then waits
//! for Enter (or Ctrl-C); with `--checks` or `--json` it measures the
//! checks instead and exits. Everything is torn down on the way out.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::cluster::local::{
    describe, run, CheckReport, Checks, LocalClusterOptions, NodeReport, RunningCluster,
};
use crate::host::arch::Arch;
use crate::host::packages::{ensure_installed, qemu_packages};

#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// How many nodes to boot (all at once; each takes one emulated CPU and 2 GiB).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=32))]
    nodes: u16,
    /// Run the checks (kube-proxy, a Service, logs, exec, port-forward, the
    /// image pull, a token volume) and exit instead of waiting.
    #[arg(long)]
    checks: bool,
    /// Run the checks and print one JSON object: `nodes` (name, ready,
    /// seconds_to_ready) and `checks` (booleans); progress goes to stderr.
    #[arg(long)]
    json: bool,
    /// Where the control plane, the image, the disks and the consoles go
    /// (emptied first); default `target/kios/cluster`.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Serialize)]
struct ClusterReport {
    nodes: Vec<NodeReport>,
    checks: Checks,
    check_details: std::collections::BTreeMap<&'static str, Vec<String>>,
    /// Node -> seconds its kubelet took to pull kube-proxy from the loopback registry.
    image_pull_seconds: std::collections::BTreeMap<String, f64>,
    /// Serving-certificate CSRs the tool approved.
    approved_csrs: Vec<String>,
    kubeconfig: PathBuf,
    /// What PID 1 to Ready is measured on.
    clock: &'static str,
    /// From the command's start until every node was Ready.
    seconds_until_all_ready: f64,
    wall_seconds: f64,
}

const CLOCK: &str = "guest clock (kernel timestamps; TCG, not instruction-counted)";

pub fn run_command(args: &ClusterArgs) -> Result<()> {
    ensure_installed(qemu_packages(Arch::Amd64))?;
    let started = Instant::now();
    let mut options = LocalClusterOptions::new(usize::from(args.nodes))?;
    if let Some(out) = &args.out {
        options.out = out.clone();
    }
    let checks = args.checks || args.json;
    if !checks {
        // A cluster to use lives until Enter (or Ctrl-C), not a fixed time.
        options.vm_timeout = Duration::from_secs(30 * 24 * 3600);
    } else {
        options.vm_timeout = Duration::from_secs(3600);
    }
    let report = run(&options, |cluster| {
        let all_ready = started.elapsed().as_secs_f64();
        if !checks {
            let (running, lines, _) = cluster.start_kube_proxy()?;
            if !running {
                eprintln!(
                    "kube-proxy is not running everywhere:\n  {}",
                    lines.join("\n  ")
                );
            }
        }
        if !args.json {
            print_cluster(cluster)?;
        }
        if !checks {
            println!("\nPress Enter to stop the cluster (or Ctrl-C).");
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading stdin")?;
            return Ok(None);
        }
        let checked = cluster.run_checks()?;
        let report = ClusterReport {
            nodes: cluster.nodes.clone(),
            checks: checked.checks.clone(),
            check_details: checked.details.clone(),
            image_pull_seconds: checked.image_pull_seconds.clone(),
            approved_csrs: cluster
                .approved_csrs
                .lock()
                .map(|csrs| csrs.clone())
                .unwrap_or_default(),
            kubeconfig: cluster.control_plane.admin_kubeconfig().to_path_buf(),
            clock: CLOCK,
            seconds_until_all_ready: all_ready,
            wall_seconds: 0.0,
        };
        if !args.json {
            print_checks(&checked);
            println!("\n{}", describe(cluster)?);
        }
        Ok(Some((report, checked.all_passed())))
    })?;
    let Some((mut report, passed)) = report else {
        return Ok(());
    };
    report.wall_seconds = started.elapsed().as_secs_f64();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("wall time: {:.1} s", report.wall_seconds);
    }
    if !passed {
        bail!("not every check passed (see check_details)");
    }
    Ok(())
}

fn print_cluster(cluster: &RunningCluster) -> Result<()> {
    println!("\n{}", describe(cluster)?);
    let width = cluster
        .nodes
        .iter()
        .map(|node| node.name.len())
        .max()
        .unwrap_or(4);
    println!(
        "{:width$}  PID 1 -> registered  PID 1 -> Ready  Ready seen (host)  kubelet via",
        "node"
    );
    for node in &cluster.nodes {
        let seconds = |value: Option<f64>| {
            value.map_or_else(|| "?".to_string(), |seconds| format!("{seconds:.1} s"))
        };
        println!(
            "{:width$}  {:>19}  {:>14}  {:>17}  {}",
            node.name,
            seconds(node.seconds_to_registered),
            seconds(node.seconds_to_ready),
            seconds(node.ready_seen_after_seconds),
            node.kubelet_address
        );
    }
    println!("(PID 1 times: {CLOCK}; Ready seen: host clock from QEMU's start)");
    let kubeconfig = cluster.control_plane.admin_kubeconfig();
    println!(
        "\nadmin kubeconfig: {}\n  {} --kubeconfig={} get pods -A",
        kubeconfig.display(),
        cluster.control_plane.kubectl_path().display(),
        kubeconfig.display()
    );
    println!(
        "no scheduler: a pod names its node (spec.nodeName); the tool bound kube-proxy's.\n\
         consoles: {}",
        cluster
            .nodes
            .iter()
            .map(|node| node.console_log.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

fn print_checks(report: &CheckReport) {
    let checks = serde_json::to_value(&report.checks).unwrap_or_default();
    println!("\nchecks:");
    for (name, passed) in checks.as_object().into_iter().flatten() {
        let verdict = if passed.as_bool() == Some(true) {
            "ok"
        } else {
            "FAILED"
        };
        println!("  {verdict:6} {name}");
        for line in report.details.get(name.as_str()).into_iter().flatten() {
            println!("         {line}");
        }
    }
    for (node, seconds) in &report.image_pull_seconds {
        println!("  kube-proxy pulled by {node} in {seconds:.1} s");
    }
}
