//! A local cluster to try kiOS with (`kios cluster`): the loopback control
//! plane and registry, the cluster's kube-proxy, and N kiOS nodes booted at
//! once in QEMU, each with its own data disk (so its own machine ID and
//! name, `kios-<12 hex>`, made on its first boot), joining with a
//! bootstrap token. The host approves each kubelet's serving-certificate
//! CSR, as an operator's approver would, and reaches the kubelets through
//! per-node loopback forwards ([`crate::cluster::kubelet_hosts`]).
//!
//! [`run`] hands the running cluster to a closure (print it and wait,
//! or [`RunningCluster::run_checks`]) and tears everything down after it:
//! the VMs are killed, then the registry and the control plane.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use uuid::Uuid;

use crate::cluster::api::{node_ready, ready_condition, Api};
use crate::cluster::control_plane::{ControlPlane, GUEST_SERVER};
use crate::cluster::kubelet_hosts::{KubeletHosts, KUBELET_PORT};
use crate::cluster::registry::{self, PushedImage, Registry, GUEST_REGISTRY};
use crate::cluster::timing::{ready_timing, ReadyTiming};
use crate::cluster::workloads::{
    client_pod, kube_proxy_manifests, volume_sources, volumes_pod, web_log_line, web_objects,
    KUBE_PROXY_LABEL, KUBE_PROXY_TIMEOUT, TICK_POD, TICK_POD_PATH, WEB_BODY, WEB_FILE, WEB_PORT,
};
use crate::components::bom::{Bom, BOM_FILE};
use crate::components::kube_proxy;
use crate::components::node::NodeComponents;
use crate::components::OciRuntime;
use crate::host::arch::Arch;
use crate::host::packages::{ensure_installed, DISK_IMAGE_PACKAGES};
use crate::host::progress::with_step;
use crate::host::workspace::Workspace;
use crate::image::disk::{derived_uuid, make_ext4, parse_guid, write_gpt_disk};
use crate::image::disk::{PartitionContents, PartitionSpec};
use crate::image::node_image::{build_node_image, vm_config, ImageOptions, NodeImage};
use crate::kernel::KernelChoice;
use crate::vm::console::{Console, ConsoleLine};
use crate::vm::qemu::{run_vm, HostForward, LineVerdict, RunOptions};

/// From QEMU's start until every node is Ready: two TCG guests and the
/// control plane share the host's cores.
const READY_TIMEOUT: Duration = Duration::from_secs(600);
const POD_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the kubelet's API may take to answer once its node is Ready:
/// its serving certificate is asked for, approved and signed first.
const KUBELET_API_TIMEOUT: Duration = Duration::from_secs(180);
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long the kubelet's registration line may take to reach the host's
/// console reader after the node is Ready.
const CONSOLE_LAG: Duration = Duration::from_secs(120);
/// Each node's data partition (a sparse file).
const DATA_BYTES: u64 = 1 << 30;
/// What QEMU's DHCP server leases to every node (each VM has its own network).
pub const NODE_IP: &str = "10.0.2.15";
/// How the init names the host on the console.
const HOSTNAME_LINE: &str = "kios: hostname ";

/// What to start.
#[derive(Clone, Debug)]
pub struct LocalClusterOptions {
    pub nodes: usize,
    /// Emptied first; the control plane, the registry, the image, each
    /// node's disk and console log go under it.
    pub out: PathBuf,
    /// QEMU is killed after this long, whatever happens.
    pub vm_timeout: Duration,
}

impl LocalClusterOptions {
    /// `nodes` nodes under `<target>/kios/cluster`.
    pub fn new(nodes: usize) -> Result<LocalClusterOptions> {
        Ok(LocalClusterOptions {
            nodes,
            out: Workspace::locate()?.output_dir()?.join("cluster"),
            vm_timeout: Duration::from_secs(24 * 3600),
        })
    }
}

/// A node as the host sees it.
#[derive(Clone, Debug, Serialize)]
pub struct NodeReport {
    pub name: String,
    pub ready: bool,
    /// PID 1 to the Ready condition, guest clock (not instruction-counted).
    pub seconds_to_ready: Option<f64>,
    /// PID 1 to the kubelet's registration line, guest clock.
    pub seconds_to_registered: Option<f64>,
    /// QEMU's start until kubectl saw the node Ready, host clock.
    pub ready_seen_after_seconds: Option<f64>,
    /// Where the API server reaches its kubelet (the VM's forward).
    pub kubelet_address: String,
    /// The VM's SMBIOS product UUID, which the node's machine ID and name
    /// come from.
    pub machine_uuid: Option<Uuid>,
    pub console_log: PathBuf,
    pub data_disk: PathBuf,
}

/// What the tool measured; every field is true only if the check passed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Checks {
    /// kube-proxy's DaemonSet pod Ready on every node.
    pub kube_proxy_running: bool,
    /// A pod on every node reached a ClusterIP Service in front of a web pod.
    pub service_reachable: bool,
    /// `kubectl logs` returned every web pod's known line.
    pub logs: bool,
    /// `kubectl exec` read every web pod's file.
    pub exec: bool,
    /// `kubectl port-forward` to every web pod, then a request on host loopback, got its page.
    pub port_forward: bool,
    /// Every node pulled kube-proxy's image from the loopback registry.
    pub image_pulled: bool,
    /// A pod with the default service account's token (and a projected
    /// token, a Secret, a ConfigMap) ran and checked them on every node.
    pub token_volume: bool,
}

/// The checks, what each saw, and the pull times.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckReport {
    pub checks: Checks,
    /// Per check, what it saw (or why it failed), one line per node.
    pub details: BTreeMap<&'static str, Vec<String>>,
    /// Node -> seconds the kubelet took to pull kube-proxy's image.
    pub image_pull_seconds: BTreeMap<String, f64>,
}

impl CheckReport {
    pub fn all_passed(&self) -> bool {
        let checks = &self.checks;
        checks.kube_proxy_running
            && checks.service_reachable
            && checks.logs
            && checks.exec
            && checks.port_forward
            && checks.image_pulled
            && checks.token_volume
    }
}

/// Each node's console as it arrives, and its name once the init says it.
#[derive(Default)]
struct NodeConsole {
    console: Console,
    hostname: Option<String>,
    /// Set when QEMU has exited.
    exited: Option<String>,
}

/// The cluster while it runs.
pub struct RunningCluster<'a> {
    pub control_plane: &'a ControlPlane,
    pub registry: &'a Registry,
    pub kube_proxy_image: &'a PushedImage,
    pub nodes: Vec<NodeReport>,
    /// Serving-certificate CSRs the host approved.
    pub approved_csrs: Mutex<Vec<String>>,
    api: Api<'a>,
}

/// Starts the cluster, waits until every node is Ready, calls `with_cluster`,
/// then tears everything down (also when anything failed).
pub fn run<T>(
    options: &LocalClusterOptions,
    with_cluster: impl FnOnce(&RunningCluster) -> Result<T>,
) -> Result<T> {
    if options.nodes == 0 {
        bail!("a cluster needs at least one node");
    }
    let workspace = Workspace::locate()?;
    let bom = Bom::load(&workspace.root.join(BOM_FILE))?;
    let out = &options.out;
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("emptying {}", out.display()))?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let manifests = out.join("manifests");
    std::fs::create_dir_all(&manifests)
        .with_context(|| format!("creating {}", manifests.display()))?;

    let kubelet_addresses = free_kubelet_addresses(options.nodes)?;
    let hosts = KubeletHosts::create(&out.join("kubelet-hosts"))?;
    let control_plane =
        ControlPlane::start_reaching_kubelets(&bom, &out.join("control-plane"), &hosts)?;
    let (registry, kube_proxy_image) = deploy_kube_proxy(&bom, &control_plane, out)?;
    let token = control_plane.create_bootstrap_token()?;
    let bootstrap = control_plane.token_kubeconfig(GUEST_SERVER, &token.to_string());
    let files = vec![
        (
            "/etc/kubernetes/bootstrap-kubeconfig".to_string(),
            bootstrap,
        ),
        (
            "/etc/kubernetes/pki/ca.crt".to_string(),
            control_plane.ca_cert_pem().to_string(),
        ),
        registry_hosts_file(),
        // QEMU's DHCP leases every node this address and, on a restricted
        // network, no default route: without the file the kubelet finds no
        // address to report, and asks for no serving certificate.
        (
            "/etc/kubernetes/node-ip".to_string(),
            format!("{NODE_IP}\n"),
        ),
        (TICK_POD_PATH.to_string(), TICK_POD.to_string()),
    ];
    // The kiOS kernel: netfilter built in, for kube-proxy.
    let image = node_image(&workspace, KernelChoice::Kios, files, &out.join("image"))?;
    ensure_installed(DISK_IMAGE_PACKAGES)?;
    let guest_forwards = vec![control_plane.guest_forward()?, registry.guest_forward()?];
    let mut vms = Vec::new();
    for (index, address) in kubelet_addresses.iter().enumerate() {
        let dir = out.join(format!("node-{}", index + 1));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let disk = with_step(format!("making node {}'s data disk", index + 1), || {
            data_disk(&dir)
        })?;
        let config = crate::vm::qemu::VmConfig {
            extra_disks: vec![disk.clone()],
            guest_forwards: guest_forwards.clone(),
            host_forwards: vec![HostForward::loopback(*address, KUBELET_PORT, KUBELET_PORT)?],
            // Each machine's own product UUID, as real ones have: the first
            // boot names the node kios-<its first 12 hex digits>.
            smbios_uuid: Some(Uuid::new_v4()),
            // Guest time is the host's: no timing is asserted, and two
            // counted guests on a busy host would drift from the API's clock.
            ..vm_config(&image, false)
        };
        vms.push((config, dir.join("console.log"), disk));
    }

    let consoles: Vec<Mutex<NodeConsole>> = (0..options.nodes).map(|_| Mutex::default()).collect();
    let stop = AtomicBool::new(false);
    let vm_exited = AtomicBool::new(false);
    let api = Api {
        control_plane: &control_plane,
        dir: &manifests,
        vm_exited: &vm_exited,
    };
    eprintln!(
        "booting {} node(s) (consoles in {}/node-*/console.log)",
        options.nodes,
        out.display()
    );
    std::thread::scope(|scope| {
        let started = Instant::now();
        let (consoles, stop, vm_exited, hosts) = (&consoles, &stop, &vm_exited, &hosts);
        let mut threads = Vec::new();
        for (index, (config, log, _)) in vms.iter().enumerate() {
            let address = kubelet_addresses[index];
            let timeout = options.vm_timeout;
            threads.push(scope.spawn(move || {
                let result = boot_node(config, log, timeout, &consoles[index], stop, |name| {
                    hosts.add(name, address)
                });
                if let Ok(mut console) = consoles[index].lock() {
                    console.exited = Some(match &result {
                        Ok(status) => status.clone(),
                        Err(error) => format!("{error:#}"),
                    });
                }
                vm_exited.store(true, Ordering::Relaxed);
                result
            }));
        }
        let result = (|| {
            let (nodes, approved) =
                wait_until_ready(&api, consoles, started, &vms, &kubelet_addresses)?;
            let cluster = RunningCluster {
                control_plane: &control_plane,
                registry: &registry,
                kube_proxy_image: &kube_proxy_image,
                nodes,
                approved_csrs: Mutex::new(approved),
                api,
            };
            with_cluster(&cluster)
        })();
        stop.store(true, Ordering::Relaxed);
        let stopped = Instant::now();
        for thread in threads {
            // A VM that failed to boot is already in `result`'s error.
            let _ = thread.join();
        }
        eprintln!(
            "stopped the node VMs in {:.1} s; stopping the registry and the control plane",
            stopped.elapsed().as_secs_f64()
        );
        result
    })
}

/// Starts the loopback registry, pushes the kube-proxy image (built once,
/// then cached) and creates kube-proxy's service account, RBAC, ConfigMap
/// and DaemonSet, as kubeadm does; nodes booted after this reach the
/// registry through QEMU's forward ([`Registry::guest_forward`]).
pub fn deploy_kube_proxy(
    bom: &Bom,
    control_plane: &ControlPlane,
    out: &Path,
) -> Result<(Registry, PushedImage)> {
    let registry = Registry::start(bom, &out.join("registry"))?;
    let archive = kube_proxy::archive(bom, Arch::Amd64)?;
    let tag = kube_proxy::tag(bom)?;
    let started = Instant::now();
    let pushed = registry.push_archives(&[archive], kube_proxy::REPOSITORY, &tag)?;
    eprintln!(
        "pushed {} ({}) to the registry on {} in {:.1} s",
        pushed.guest_reference(),
        pushed.digest,
        registry.local_address(),
        started.elapsed().as_secs_f64()
    );
    let path = out.join("kube-proxy.json");
    std::fs::write(
        &path,
        kube_proxy_manifests(&pushed.guest_reference()).to_string(),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    control_plane
        .kubectl(&["create", "-f", &path.display().to_string()])
        .context("creating kube-proxy's objects")?;
    Ok((registry, pushed))
}

/// containerd's hosts.toml for the loopback registry (plain HTTP), as
/// (path, contents) for a node image.
pub fn registry_hosts_file() -> (String, String) {
    (
        format!("/etc/containerd/certs.d/{GUEST_REGISTRY}/hosts.toml"),
        registry::containerd_hosts_toml(GUEST_REGISTRY),
    )
}

/// The amd64 node image with `kernel` and `files` (path, contents) over
/// its `/etc`, written to `out`.
pub fn node_image(
    workspace: &Workspace,
    kernel: KernelChoice,
    files: Vec<(String, String)>,
    out: &Path,
) -> Result<NodeImage> {
    let components = NodeComponents::resolve(workspace, Arch::Amd64, OciRuntime::Runc, kernel)?;
    build_node_image(
        workspace,
        &components,
        &ImageOptions {
            extra_files: files
                .into_iter()
                .map(|(path, text)| (path, text.into_bytes()))
                .collect(),
            ..ImageOptions::default()
        },
        out,
    )
}

/// A GPT disk in `dir` with one empty ext4 partition of the kiOS data type,
/// its identifiers new for each disk.
fn data_disk(dir: &Path) -> Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| since.as_nanos())
        .unwrap_or_default();
    let seed = format!("{}:{}:{nanos}", dir.display(), std::process::id());
    let ext4 = dir.join(".data.ext4");
    make_ext4(
        &ext4,
        DATA_BYTES,
        kios_abi::data_partition::NAME,
        derived_uuid(seed.as_bytes(), "data filesystem"),
    )?;
    let disk = dir.join("data.img");
    write_gpt_disk(
        &disk,
        derived_uuid(seed.as_bytes(), "disk"),
        &[PartitionSpec {
            name: kios_abi::data_partition::NAME.into(),
            type_guid: parse_guid(kios_abi::data_partition::TYPE_GUID)?,
            guid: derived_uuid(seed.as_bytes(), "data partition"),
            bytes: DATA_BYTES,
            contents: PartitionContents::Image(ext4.clone()),
        }],
    )?;
    std::fs::remove_file(&ext4).with_context(|| format!("removing {}", ext4.display()))?;
    Ok(disk)
}

/// `count` loopback addresses (127.0.0.2 on) where nothing listens on the
/// kubelet's port: one per node's forward.
fn free_kubelet_addresses(count: usize) -> Result<Vec<Ipv4Addr>> {
    let addresses: Vec<Ipv4Addr> = (2..=254)
        .map(|last| Ipv4Addr::new(127, 0, 0, last))
        .filter(|address| TcpListener::bind((*address, KUBELET_PORT)).is_ok())
        .take(count)
        .collect();
    if addresses.len() < count {
        bail!("fewer than {count} addresses in 127.0.0.0/24 have port {KUBELET_PORT} free");
    }
    Ok(addresses)
}

/// Boots one node, keeping its console in `state` and `log`; calls
/// `named` with the node's name when the init says it. Returns QEMU's exit.
fn boot_node(
    config: &crate::vm::qemu::VmConfig,
    log: &Path,
    timeout: Duration,
    state: &Mutex<NodeConsole>,
    stop: &AtomicBool,
    named: impl Fn(&str) -> Result<()>,
) -> Result<String> {
    let mut file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut naming_error = None;
    let run = run_vm(
        config,
        RunOptions {
            timeout,
            echo: false,
        },
        |line: &ConsoleLine| {
            // Best effort: the log file is for reading along.
            let _ = writeln!(file, "{}", line.text);
            if let Ok(mut state) = state.lock() {
                if state.hostname.is_none() {
                    if let Some((_, name)) = line.text.split_once(HOSTNAME_LINE) {
                        let name = name.trim().to_string();
                        if let Err(error) = named(&name) {
                            naming_error = Some(error);
                        }
                        state.hostname = Some(name);
                    }
                }
                state.console.lines.push(line.clone());
            }
            if stop.load(Ordering::Relaxed) || naming_error.is_some() {
                LineVerdict::Stop
            } else {
                LineVerdict::Continue
            }
        },
    )?;
    if let Some(error) = naming_error {
        return Err(error.context("mapping the node's name to its kubelet's forward"));
    }
    Ok(if run.stopped_early {
        "stopped".to_string()
    } else {
        format!(
            "QEMU exited ({}); stderr: {}",
            run.status,
            run.qemu_stderr.trim()
        )
    })
}

/// Waits until every VM's node is registered and Ready, approving the
/// kubelets' serving CSRs as they come; each node's report, and the CSRs
/// approved.
fn wait_until_ready(
    api: &Api,
    consoles: &[Mutex<NodeConsole>],
    started: Instant,
    vms: &[(crate::vm::qemu::VmConfig, PathBuf, PathBuf)],
    addresses: &[Ipv4Addr],
) -> Result<(Vec<NodeReport>, Vec<String>)> {
    let count = consoles.len();
    let mut seen_ready: Vec<Option<(Duration, String)>> = vec![None; count];
    let mut approved = Vec::new();
    let deadline = started + READY_TIMEOUT;
    let names = with_step(
        format!("waiting until {count} node(s) are Ready"),
        || loop {
            let names = node_names(consoles)?;
            let known: Vec<String> = names.iter().flatten().cloned().collect();
            approved.extend(api.approve_serving_csrs(&known)?);
            let nodes = api.json(&["get", "nodes", "--output=json"])?;
            for (index, name) in names.iter().enumerate() {
                let Some(name) = name else { continue };
                if seen_ready[index].is_some() {
                    continue;
                }
                let node = nodes["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|node| node["metadata"]["name"] == name.as_str());
                if let Some(node) = node.filter(|node| node_ready(node)) {
                    let transition = ready_condition(node)
                        .and_then(|ready| ready["lastTransitionTime"].as_str())
                        .unwrap_or_default()
                        .to_string();
                    seen_ready[index] = Some((started.elapsed(), transition));
                }
            }
            if seen_ready.iter().all(Option::is_some) {
                return Ok(names.into_iter().flatten().collect::<Vec<_>>());
            }
            for (index, console) in consoles.iter().enumerate() {
                let state = console
                    .lock()
                    .map_err(|_| anyhow!("a console's lock is poisoned"))?;
                if let Some(exit) = &state.exited {
                    bail!(
                        "node {}'s VM ended before it was Ready: {exit}; its console's end:\n{}",
                        index + 1,
                        state.console.tail(30)
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "gave up after {} s waiting until every node is Ready (names: {names:?}, \
                 Ready: {:?}); the consoles are in {}",
                    READY_TIMEOUT.as_secs(),
                    seen_ready.iter().map(Option::is_some).collect::<Vec<_>>(),
                    vms[0]
                        .1
                        .parent()
                        .and_then(Path::parent)
                        .unwrap_or(Path::new("."))
                        .display()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        },
    )?;
    if !approved.is_empty() {
        eprintln!(
            "approved the kubelets' serving-certificate CSRs (signer kubernetes.io/kubelet-serving, \
             asked by the node itself), as an operator's approver would: {}",
            approved.join(", ")
        );
    }
    // The serial console lags behind the guest (every kubelet line goes
    // through it): the registration line may reach the host after kubectl
    // saw the node Ready.
    let console_deadline = Instant::now() + CONSOLE_LAG;
    let mut reports = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let (seen, transition) = seen_ready[index].clone().unwrap_or_default();
        let timing = loop {
            let timing = consoles[index]
                .lock()
                .map_err(|_| anyhow!("a console's lock is poisoned"))
                .and_then(|state| ready_timing(&state.console, name, &transition));
            match timing {
                Ok(timing) => break Some(timing),
                Err(error) if Instant::now() > console_deadline => {
                    eprintln!("{name}: no PID 1 to Ready time: {error:#}");
                    break None;
                }
                Err(_) => std::thread::sleep(POLL_INTERVAL),
            }
        };
        reports.push(NodeReport {
            name: name.clone(),
            ready: true,
            seconds_to_ready: timing.as_ref().map(ReadyTiming::pid1_to_ready),
            seconds_to_registered: timing.as_ref().map(ReadyTiming::pid1_to_registered),
            ready_seen_after_seconds: Some(seen.as_secs_f64()),
            kubelet_address: format!("{}:{KUBELET_PORT}", addresses[index]),
            machine_uuid: vms[index].0.smbios_uuid,
            console_log: vms[index].1.clone(),
            data_disk: vms[index].2.clone(),
        });
    }
    Ok((reports, approved))
}

/// Each node's name, once its init has said it.
fn node_names(consoles: &[Mutex<NodeConsole>]) -> Result<Vec<Option<String>>> {
    consoles
        .iter()
        .map(|console| {
            Ok(console
                .lock()
                .map_err(|_| anyhow!("a console's lock is poisoned"))?
                .hostname
                .clone())
        })
        .collect()
}

impl RunningCluster<'_> {
    pub fn api(&self) -> &Api<'_> {
        &self.api
    }

    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.name.clone()).collect()
    }

    /// Approves the pending serving CSRs of the cluster's nodes; returns them.
    pub fn approve_serving_csrs(&self) -> Result<Vec<String>> {
        let approved = self.api.approve_serving_csrs(&self.names())?;
        if let Ok(mut all) = self.approved_csrs.lock() {
            all.extend(approved.iter().cloned());
        }
        Ok(approved)
    }

    /// Binds kube-proxy's DaemonSet pods to their nodes (there is no
    /// scheduler) and waits until they are Ready; what it saw, per node.
    pub fn start_kube_proxy(&self) -> Result<(bool, Vec<String>, BTreeMap<String, String>)> {
        let api = &self.api;
        let names = self.names();
        with_step("kube-proxy Ready on every node", || {
            let pods = api.bind_daemon_pods(KUBE_PROXY_LABEL, names.len(), POD_TIMEOUT)?;
            let mut lines = Vec::new();
            let mut all = true;
            for node in &names {
                let Some(pod) = pods.get(node) else {
                    all = false;
                    lines.push(format!("{node}: no kube-proxy pod"));
                    continue;
                };
                match api.wait_ready("kube-system", pod, KUBE_PROXY_TIMEOUT) {
                    Ok(_) => lines.push(format!("{node}: {pod} Ready")),
                    Err(error) => {
                        all = false;
                        lines.push(format!("{node}: {pod}: {error:#}"));
                    }
                }
            }
            Ok((all, lines, pods))
        })
    }

    /// `kubectl get ARGS --output=wide` as the admin, as text.
    pub fn table(&self, what: &[&str]) -> Result<String> {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.push("--output=wide");
        self.control_plane.kubectl(&args)
    }

    /// Runs every check on every node, each measured for real; a failing
    /// check is false with what it saw, the others still run.
    pub fn run_checks(&self) -> Result<CheckReport> {
        let api = &self.api;
        let names = self.names();
        let mut report = CheckReport::default();
        with_step("creating the check pods on every node", || {
            api.create("volume-sources", &volume_sources())?;
            for (index, node) in names.iter().enumerate() {
                let n = index + 1;
                api.create(
                    &format!("volumes-{n}"),
                    &volumes_pod(&format!("kios-volumes-{n}"), node),
                )?;
                api.create(
                    &format!("web-{n}"),
                    &web_objects(&format!("kios-web-{n}"), node),
                )?;
            }
            Ok(())
        })?;

        // kube-proxy and its image.
        let kube_proxy = self.start_kube_proxy()?;
        let (running, lines, kube_proxy_pods) = kube_proxy;
        report.checks.kube_proxy_running = running;
        report.details.insert("kube_proxy_running", lines);

        let mut pulled_all = true;
        let mut lines = Vec::new();
        for node in &names {
            let Some(pod) = kube_proxy_pods.get(node) else {
                pulled_all = false;
                continue;
            };
            // The kubelet posts its events in the background: they may come after Ready.
            let pulled = api.wait_for("the kubelet's Pulled event", POD_TIMEOUT, || {
                let events = api.image_events("kube-system", pod)?;
                Ok(events.into_iter().find(|event| event.reason == "Pulled"))
            });
            match pulled {
                Ok(event) if event.message.contains(GUEST_REGISTRY) => {
                    if let Some(seconds) = event.pull_seconds() {
                        report.image_pull_seconds.insert(node.clone(), seconds);
                    }
                    lines.push(format!("{node}: {} ({})", event.message, event.time));
                }
                Ok(event) => {
                    pulled_all = false;
                    lines.push(format!(
                        "{node}: not from {GUEST_REGISTRY}: {}",
                        event.message
                    ));
                }
                Err(error) => {
                    pulled_all = false;
                    lines.push(format!("{node}: {error:#}"));
                }
            }
        }
        report.checks.image_pulled = pulled_all && !names.is_empty();
        report.details.insert("image_pulled", lines);

        // The token volume pods.
        let (passed, lines) = per_node(&names, |n, _| {
            api.wait_succeeded("default", &format!("kios-volumes-{n}"), POD_TIMEOUT)
        });
        report.checks.token_volume = passed;
        report.details.insert("token_volume", lines);

        // A pod on each node reaches its node's web pod through a ClusterIP Service.
        let (passed, lines) = per_node(&names, |n, node| {
            let web = format!("kios-web-{n}");
            let pod = api.wait_ready("default", &web, POD_TIMEOUT)?;
            let web_ip = pod["status"]["podIP"].as_str().unwrap_or_default();
            let cluster_ip = self.control_plane.kubectl(&[
                "get",
                "service",
                &web,
                "--namespace=default",
                "--output=jsonpath={.spec.clusterIP}",
            ])?;
            let cluster_ip = cluster_ip.trim();
            let client = format!("kios-client-{n}");
            api.create(&client, &client_pod(&client, node, cluster_ip, web_ip))?;
            let verdict = api.wait_succeeded("default", &client, POD_TIMEOUT)?;
            Ok(format!("{cluster_ip}:80 -> {web}: {verdict}"))
        });
        report.checks.service_reachable = passed;
        report.details.insert("service_reachable", lines);

        // The kubelet's API, through the API server: logs first (it waits
        // for the serving certificate), then exec and port-forward.
        let (passed, lines) = per_node(&names, |n, _| {
            let web = format!("kios-web-{n}");
            let wanted = web_log_line(&web);
            let mut last = String::new();
            let found = api.wait_for(
                &format!("`kubectl logs {web}` shows its line"),
                KUBELET_API_TIMEOUT,
                || {
                    self.approve_serving_csrs()?;
                    match self
                        .control_plane
                        .kubectl(&["logs", &web, "--namespace=default"])
                    {
                        Ok(text) if text.contains(&wanted) => Ok(Some(text)),
                        Ok(text) => {
                            last = text;
                            Ok(None)
                        }
                        Err(error) => {
                            last = format!("{error:#}");
                            Ok(None)
                        }
                    }
                },
            );
            found
                .map(|text| format!("{web}: {}", text.trim()))
                .with_context(|| format!("the last answer: {last}"))
        });
        report.checks.logs = passed;
        report.details.insert("logs", lines);

        let (passed, lines) = per_node(&names, |n, _| {
            let web = format!("kios-web-{n}");
            let text = self.control_plane.kubectl(&[
                "exec",
                &web,
                "--namespace=default",
                "--",
                "/bin/busybox",
                "cat",
                WEB_FILE,
            ])?;
            if text.trim() != WEB_BODY {
                bail!("`cat {WEB_FILE}` in {web} gave {text:?}, not {WEB_BODY}");
            }
            Ok(format!("{web}: cat {WEB_FILE} -> {}", text.trim()))
        });
        report.checks.exec = passed;
        report.details.insert("exec", lines);

        let (passed, lines) = per_node(&names, |n, _| {
            self.port_forward_answer(&format!("kios-web-{n}"))
        });
        report.checks.port_forward = passed;
        report.details.insert("port_forward", lines);
        Ok(report)
    }

    /// `kubectl port-forward` from a free port on 127.0.0.1 to the web pod's
    /// port, then one HTTP request through it; what it answered.
    fn port_forward_answer(&self, web: &str) -> Result<String> {
        let mut child = ForwardProcess(
            self.control_plane
                .kubectl_command(&[
                    "port-forward",
                    "--namespace=default",
                    "--address=127.0.0.1",
                    &format!("pod/{web}"),
                    &format!(":{WEB_PORT}"),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting kubectl port-forward")?,
        );
        let stdout = child.0.stdout.take().context("kubectl's stdout")?;
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    return;
                }
            }
        });
        // `Forwarding from 127.0.0.1:40123 -> 8080`
        let port = loop {
            let line = lines_rx
                .recv_timeout(Duration::from_secs(60))
                .map_err(|_| {
                    let mut errors = String::new();
                    if let Some(mut stderr) = child.0.stderr.take() {
                        let _ = child.0.kill();
                        let _ = stderr.read_to_string(&mut errors);
                    }
                    anyhow!("kubectl port-forward said no port: {}", errors.trim())
                })?;
            if let Some(port) = line
                .strip_prefix("Forwarding from 127.0.0.1:")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|port| port.parse::<u16>().ok())
            {
                break port;
            }
        };
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .context("reading the answer through the forward")?;
        if !answer.contains(WEB_BODY) {
            bail!("127.0.0.1:{port} -> {web}:{WEB_PORT} answered {answer:?}");
        }
        let status = answer.lines().next().unwrap_or_default();
        Ok(format!(
            "127.0.0.1:{port} -> {web}:{WEB_PORT}: {status}, body {WEB_BODY}"
        ))
    }
}

/// kubectl port-forward, killed when dropped.
struct ForwardProcess(Child);

impl Drop for ForwardProcess {
    fn drop(&mut self) {
        // Best effort: it may have exited already; either way it is reaped.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `check` for each node (1-based index, name): passed on every node,
/// and one line per node.
fn per_node(
    names: &[String],
    check: impl Fn(usize, &str) -> Result<String>,
) -> (bool, Vec<String>) {
    let mut passed = !names.is_empty();
    let mut lines = Vec::new();
    for (index, node) in names.iter().enumerate() {
        match check(index + 1, node) {
            Ok(line) => lines.push(format!("{node}: {line}")),
            Err(error) => {
                passed = false;
                lines.push(format!("{node}: FAILED: {error:#}"));
            }
        }
    }
    (passed, lines)
}

/// The node and pod tables as text, for people.
pub fn describe(cluster: &RunningCluster) -> Result<String> {
    let nodes = cluster.table(&["nodes"])?;
    let pods = cluster.table(&["pods", "--all-namespaces"])?;
    Ok(format!("{nodes}\n{pods}"))
}
