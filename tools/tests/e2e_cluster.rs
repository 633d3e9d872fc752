//! A kiOS node joins a real Kubernetes 1.20 control plane on host loopback
//! (etcd, kube-apiserver, kube-controller-manager: tools/src/control_plane.rs).
//! The VM's user-mode network is restricted: its only way out is the API
//! server's forward, 10.0.2.100:6443 to 127.0.0.1. The node's address comes
//! from its DHCP static pod; its identity from the files the image puts in
//! /etc/kubernetes (a kubeconfig or a bootstrap kubeconfig, node-labels,
//! node-ip) and /etc/hostname.
//!
//! - A client-certificate kubeconfig: the node registers and goes Ready
//!   with its labels and address, runs a pod created through the API server,
//!   then powers off when a second pod asks the init to (kiosctl on the
//!   system socket): the unmodified kubelet's graceful node shutdown, told
//!   through the init's logind, stops the pod (it records its SIGTERM on the
//!   console and takes 2 s to clean up) before the init stops anything.
//!   In the same boot (the kiOS kernel, netfilter built in):
//!   a pod with the default service-account token, a projected token, a
//!   Secret and a ConfigMap checks its volumes and succeeds; the cluster's
//!   kube-proxy, pushed to the loopback registry and pulled by the node
//!   through QEMU's forward, runs as a DaemonSet and goes Ready; a pod
//!   reaches a ClusterIP Service in front of another pod on the node.
//! - A bootstrap kubeconfig: the same join through a CSR that the
//!   controller-manager approves and signs.
//! - Bad input, one short boot each, ended as soon as the console shows
//!   the evidence: a kubeconfig whose server nothing answers, a kubeconfig
//!   whose client certificate a CA the server does not trust signed, one
//!   whose certificate expired, and a bootstrap token the server does not
//!   know. The kubelet retries with the
//!   cause in its log, and the static pods keep running.
//!
//! One boot per case: the kubelet reads its credentials once, at start, and
//! never falls back from a valid kubeconfig to the bootstrap one, so two
//! bad credentials cannot be shown in one boot without swapping files and
//! restarting the kubelet on the node.
//!
//! Ignored by default (a control plane and a VM per test): `cargo kios
//! test` runs them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use kios_tools::cluster::api::{node_ready, ready_condition, Api};
use kios_tools::cluster::control_plane::{ControlPlane, GUEST_ADDRESS, GUEST_PORT, GUEST_SERVER};
use kios_tools::cluster::local::{deploy_kube_proxy, node_image, registry_hosts_file};
use kios_tools::cluster::pki::{
    self, BootstrapToken, ClientIdentity, ClusterCa, Credential, NODES_GROUP,
};
use kios_tools::cluster::registry::{PushedImage, Registry, GUEST_REGISTRY};
use kios_tools::cluster::timing::{ready_timing, KUBELET_LINE};
use kios_tools::cluster::workloads::{
    client_pod, volume_sources, volumes_pod, web_objects, CLIENT_POD, KUBE_PROXY_LABEL,
    KUBE_PROXY_TIMEOUT, TICK_LINE, TICK_POD, TICK_POD_PATH, VOLUMES_POD, WEB_POD,
};
use kios_tools::components::bom::{Bom, BOM_FILE};
use kios_tools::host::workspace::Workspace;
use kios_tools::image::node_image::vm_config;
use kios_tools::kernel::KernelChoice;
use kios_tools::vm::console::Console;
use kios_tools::vm::qemu::{run_vm, LineVerdict, RunOptions, VmConfig, VmRun};
use kios_tools::vm::timeline::{kmsg_micros, Timeline};
use serde_json::{json, Value};

/// The node's labels, as its node-labels file lists them.
const NODE_LABELS: [(&str, &str); 2] = [
    ("kios.dev/role", "edge"),
    ("topology.kubernetes.io/zone", "lab-1"),
];
/// What QEMU's DHCP server leases to the first guest, and the node-ip file.
const NODE_IP: &str = "10.0.2.15";

/// From QEMU's start to the node Ready, on a slow TCG guest.
const READY_TIMEOUT: Duration = Duration::from_secs(300);
const POD_TIMEOUT: Duration = Duration::from_secs(180);
/// The whole boot, power-off included.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);

/// The DHCP static pod's lease line: from then on the API server is reachable.
const LEASE_LINE: &str = "kios-dhcp: bound eth0 10.0.2.15/24";
/// The pod the cluster gives the node, and the lines it writes: at start,
/// when its SIGTERM comes, and when it has finished its 2 s of cleanup.
const HELLO_POD: &str = "kios-hello";
const HELLO_LINE: &str = "kios-cluster-pod: hello from pod kios-hello";
const HELLO_SIGTERM_LINE: &str = "kios-cluster-pod: kios-hello got SIGTERM";
const HELLO_DONE_LINE: &str = "kios-cluster-pod: kios-hello cleaned up, exiting";
/// The pod's own grace period; the kubelet's for regular pods is 10 s.
const HELLO_GRACE_SECONDS: u64 = 8;

/// A pod for `node` that writes to the node's console when it starts and
/// when it gets SIGTERM, then takes 2 s to clean up, as a real service
/// would. Privileged only for /dev/kmsg; on the pod network (the CNI bridge).
fn hello_pod(node: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": HELLO_POD, "namespace": "default" },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": HELLO_GRACE_SECONDS,
            "containers": [{
                "name": "hello",
                "image": "kios.local/busybox:1",
                "imagePullPolicy": "Never",
                "securityContext": { "privileged": true },
                "command": [
                    "/bin/busybox", "sh", "-c",
                    // The shell is PID 1 of its container: it exits on SIGTERM only with a trap.
                    format!(
                        "echo '{HELLO_LINE}' > /dev/kmsg; \
                         trap 'echo {HELLO_SIGTERM_LINE} > /dev/kmsg; /bin/busybox sleep 2; \
                         echo {HELLO_DONE_LINE} > /dev/kmsg; exit 0' TERM; \
                         /bin/busybox sleep 3600 & wait $!"
                    ),
                ],
                "volumeMounts": [{ "name": "kmsg", "mountPath": "/dev/kmsg" }],
            }],
            "volumes": [{
                "name": "kmsg",
                "hostPath": { "path": "/dev/kmsg", "type": "CharDevice" },
            }],
        },
    })
}

/// A pod for `node` that asks the init to shut the node down through the
/// system socket (kiosctl), as an operator would.
fn shutdown_pod(node: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "kios-shutdown", "namespace": "kube-system" },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "containers": [{
                "name": "shutdown",
                "image": "kios.local/kiosctl:1",
                "imagePullPolicy": "Never",
                "args": ["shutdown"],
                "securityContext": { "privileged": true },
                "volumeMounts": [
                    { "name": "kmsg", "mountPath": "/dev/kmsg" },
                    { "name": "system-socket", "mountPath": "/run/system.sock" },
                ],
            }],
            "volumes": [
                { "name": "kmsg", "hostPath": { "path": "/dev/kmsg", "type": "CharDevice" } },
                {
                    "name": "system-socket",
                    "hostPath": { "path": "/run/system.sock", "type": "Socket" },
                },
            ],
        },
    })
}

/// A test's control plane, with its own work directory for images and manifests.
struct Cluster {
    workspace: Workspace,
    bom: Bom,
    out: PathBuf,
    control_plane: ControlPlane,
    /// The registry and the kube-proxy image pushed to it, for a node
    /// that runs the cluster's kube-proxy.
    registry: Option<(Registry, PushedImage)>,
}

impl Cluster {
    fn start(case: &str) -> Result<Cluster> {
        let workspace = Workspace::locate()?;
        let bom = Bom::load(&workspace.root.join(BOM_FILE))?;
        let out = workspace.output_dir()?.join(format!("e2e-cluster-{case}"));
        let control_plane = ControlPlane::start(&bom, &out.join("control-plane"))?;
        Ok(Cluster {
            workspace,
            bom,
            out,
            control_plane,
            registry: None,
        })
    }

    /// The loopback registry with the kube-proxy image, and kube-proxy's
    /// objects ([`deploy_kube_proxy`]); nodes booted after this reach the
    /// registry through QEMU's forward.
    fn add_kube_proxy(&mut self) -> Result<()> {
        self.registry = Some(deploy_kube_proxy(
            &self.bom,
            &self.control_plane,
            &self.out,
        )?);
        Ok(())
    }

    /// The amd64 node image named `node`, with `credential` (a path in
    /// /etc/kubernetes and its contents), the labels and the node IP, and
    /// the tick pod; its VM reaches the API server through the guest forward.
    fn node_vm(&self, node: &str, credential: (&str, String)) -> Result<VmConfig> {
        self.node_vm_with(node, credential, KernelChoice::Debian, true)
    }

    /// The same with `kernel`, and `icount` as [`vm_config`] takes it;
    /// with the registry's forward and containerd's hosts.toml for it
    /// once [`Cluster::add_kube_proxy`] has run.
    fn node_vm_with(
        &self,
        node: &str,
        credential: (&str, String),
        kernel: KernelChoice,
        icount: bool,
    ) -> Result<VmConfig> {
        let labels: String = NODE_LABELS
            .iter()
            .map(|(key, value)| format!("{key}={value}\n"))
            .collect();
        let (credential_path, credential_text) = credential;
        let mut files = vec![
            (credential_path.to_string(), credential_text),
            ("/etc/kubernetes/node-labels".to_string(), labels),
            (
                "/etc/kubernetes/node-ip".to_string(),
                format!("{NODE_IP}\n"),
            ),
            ("/etc/hostname".to_string(), format!("{node}\n")),
            (TICK_POD_PATH.to_string(), TICK_POD.to_string()),
        ];
        let mut guest_forwards = vec![self.control_plane.guest_forward()?];
        if let Some((registry, _)) = &self.registry {
            files.push(registry_hosts_file());
            guest_forwards.push(registry.guest_forward()?);
        }
        let image = node_image(&self.workspace, kernel, files, &self.out.join("image"))?;
        Ok(VmConfig {
            guest_forwards,
            ..vm_config(&image, icount)
        })
    }

    /// Boots `config` while the host waits, with kubectl, for `node` to be
    /// Ready with its labels and address, runs `once_ready`, then creates
    /// the shutdown pod; returns when the VM has powered off.
    fn boot_and_join(
        &self,
        config: &VmConfig,
        node: &str,
        once_ready: impl FnOnce(&HostSide) -> Result<()> + Send,
    ) -> Result<(VmRun, Joined)> {
        let stop_vm = AtomicBool::new(false);
        let vm_exited = AtomicBool::new(false);
        let host = HostSide {
            api: Api {
                control_plane: &self.control_plane,
                dir: &self.out,
                vm_exited: &vm_exited,
            },
            node,
        };
        // References, for the host side's `move` closure to copy.
        let (host, stop_vm, vm_exited) = (&host, &stop_vm, &vm_exited);
        std::thread::scope(|scope| {
            let started = Instant::now();
            let host_side = scope.spawn(move || {
                let joined = host.join(started, once_ready);
                // A failed check need not wait for the power-off that will never come.
                if joined.is_err() {
                    stop_vm.store(true, Ordering::Relaxed);
                }
                joined
            });
            let options = RunOptions {
                timeout: RUN_TIMEOUT,
                echo: true,
            };
            let run = run_vm(config, options, |_| {
                if stop_vm.load(Ordering::Relaxed) {
                    LineVerdict::Stop
                } else {
                    LineVerdict::Continue
                }
            });
            vm_exited.store(true, Ordering::Relaxed);
            let joined = host_side
                .join()
                .map_err(|_| anyhow!("the host side panicked"))?
                .with_context(|| {
                    format!(
                        "joining node {node} (the control plane's logs: {})",
                        self.control_plane.workdir().display()
                    )
                })?;
            Ok((run?, joined))
        })
    }
}

/// What the host saw of a node that joined.
struct Joined {
    /// From QEMU's start until kubectl first saw the node Ready.
    ready_seen_after: Duration,
    /// The Ready condition's lastTransitionTime: the node's clock, in
    /// whole seconds.
    ready_transition: String,
}

/// The host's side of a boot: kubectl as the cluster admin.
struct HostSide<'a> {
    api: Api<'a>,
    node: &'a str,
}

impl<'a> std::ops::Deref for HostSide<'a> {
    type Target = Api<'a>;

    fn deref(&self) -> &Api<'a> {
        &self.api
    }
}

impl HostSide<'_> {
    fn join(
        &self,
        started: Instant,
        once_ready: impl FnOnce(&HostSide) -> Result<()>,
    ) -> Result<Joined> {
        let node = self.wait_for("the node is Ready", READY_TIMEOUT, || {
            Ok(self.api.node(self.node)?.filter(node_ready))
        })?;
        let ready_seen_after = started.elapsed();
        println!(
            "node {} Ready, seen by kubectl {:.1} s after QEMU started",
            self.node,
            ready_seen_after.as_secs_f64()
        );
        check_node(&node)?;
        let ready_transition = ready_condition(&node)
            .and_then(|ready| ready["lastTransitionTime"].as_str())
            .context("the Ready condition has no lastTransitionTime")?
            .to_string();
        once_ready(self)?;
        self.create("shutdown-pod", &shutdown_pod(self.node))?;
        Ok(Joined {
            ready_seen_after,
            ready_transition,
        })
    }

    /// The node's kube-proxy pod, bound to it by the test (no scheduler).
    fn bind_kube_proxy(&self) -> Result<String> {
        let mut pods = self.bind_daemon_pods(KUBE_PROXY_LABEL, 1, POD_TIMEOUT)?;
        pods.remove(self.node)
            .with_context(|| format!("no kube-proxy pod for {}: {pods:?}", self.node))
    }
}

/// The labels of the node-labels file and the address of the node-ip file.
fn check_node(node: &Value) -> Result<()> {
    let labels = &node["metadata"]["labels"];
    for (key, value) in NODE_LABELS {
        ensure!(
            labels[key] == value,
            "label {key}={value} missing; the node's labels: {labels}"
        );
    }
    let addresses = &node["status"]["addresses"];
    let internal_ip = addresses
        .as_array()
        .into_iter()
        .flatten()
        .find(|address| address["type"] == "InternalIP");
    ensure!(
        internal_ip.is_some_and(|address| address["address"] == NODE_IP),
        "InternalIP is not {NODE_IP}; the node's addresses: {addresses}"
    );
    Ok(())
}

/// The console line containing `needle`, or an error quoting the console's end.
fn console_line<'a>(console: &'a Console, needle: &str) -> Result<&'a str> {
    console
        .texts()
        .find(|text| text.contains(needle))
        .with_context(|| {
            format!(
                "no `{needle}` line; the console's end:\n{}",
                console.tail(40)
            )
        })
}

/// What a joined boot must show on the console, and the figures: PID 1 to
/// registration and to Ready in guest time ([`ready_timing`]), and the
/// wall times.
fn check_joined_run(run: &VmRun, joined: &Joined, node: &str) -> Result<()> {
    let console = &run.console;
    for needle in [
        "kiosctl: shutdown: sent to /run/system.sock",
        "kios: shutdown requested by system socket",
        "kios: power off",
        "reboot: Power down",
    ] {
        console_line(console, needle)?;
    }
    ensure!(run.status.success(), "QEMU exited with {}", run.status);
    // Only the cluster's kube-proxy comes from a registry; everything else is seeded.
    let pulls: Vec<&str> = console
        .texts()
        .filter(|text| text.contains("PullImage \""))
        .collect();
    ensure!(
        pulls.iter().all(|text| text.contains(GUEST_REGISTRY)),
        "an image was pulled from elsewhere than the test registry: {pulls:?}"
    );

    print!("{}", Timeline::from_console(console).table());
    let timing = ready_timing(console, node, &joined.ready_transition)?;

    let guest_seconds = |needle: &str| -> Result<f64> {
        let line = console_line(console, needle)?;
        let micros = kmsg_micros(line).with_context(|| format!("no kernel time on `{line}`"))?;
        Ok(micros as f64 / 1e6)
    };
    let requested = guest_seconds("kios: shutdown requested by system socket")?;
    let shutdown = guest_seconds("kios: power off")? - requested;
    check_graceful_shutdown(console)?;
    let released = guest_seconds("kios: bus: a shutdown inhibitor was released (0 left)")?;
    println!(
        "node {node}: guest time (kernel clock), PID 1 at {:.2} s\n  \
         PID 1 -> registered (kubelet's \"Successfully registered node\" line): {:.2} s\n  \
         PID 1 -> Ready (lastTransitionTime {}, {:.0} s after that line on the node's clock; \
         whole seconds, so up to 1 s later): {:.2} s\n  \
         shutdown requested -> the kubelet released its inhibitor (pods stopped): {:.2} s\n  \
         shutdown requested -> power off: {:.2} s (grace periods: 20 s in all, 10 s for regular pods, \
         10 s for critical ones)\n\
         wall time from QEMU's start: registered line read {:.1} s, Ready seen by kubectl {:.1} s, \
         powered off {:.1} s",
        timing.pid1,
        timing.pid1_to_registered(),
        joined.ready_transition,
        timing.ready_after_registered,
        timing.pid1_to_ready(),
        released - requested,
        shutdown,
        timing.registered_line_read.as_secs_f64(),
        joined.ready_seen_after.as_secs_f64(),
        run.wall_time.as_secs_f64(),
    );
    Ok(())
}

/// The init's logind told the unmodified kubelet, and the kubelet, not the
/// init's SIGTERM, stopped the pods: the inhibitor was released before the
/// grace period ended, and only then did the init terminate what was left.
fn check_graceful_shutdown(console: &Console) -> Result<()> {
    let steps = [
        "kios: bus: :1.",
        "kios: shutdown requested by system socket",
        "kios: shutdown: waiting up to 20000 ms for 1 client(s) and 1 inhibitor(s)",
        "kios: bus: a shutdown inhibitor was released (0 left)",
        "kios: shutdown: clients and inhibitors done after",
        "kios: shutdown: sending SIGTERM to all processes",
        "kios: power off",
    ];
    let mut last = 0;
    for step in steps {
        let at = console.position(step).with_context(|| {
            format!("no `{step}` line; the console's end:\n{}", console.tail(40))
        })?;
        ensure!(at >= last, "`{step}` came before the step it follows");
        last = at;
    }
    ensure!(
        !console.contains("grace period over"),
        "the kubelet did not release its inhibitor within the grace period"
    );
    Ok(())
}

#[test]
#[ignore = "runs a control plane and boots the node in QEMU: run by cargo kios test"]
fn a_node_with_a_client_certificate_joins_runs_a_pod_and_powers_off() -> Result<()> {
    const NODE: &str = "kios-cert-node";
    let test_started = Instant::now();
    let mut cluster = Cluster::start("client-cert")?;
    cluster.add_kube_proxy()?;
    let kubeconfig = cluster.control_plane.node_kubeconfig(GUEST_SERVER, NODE)?;
    // The kiOS kernel: netfilter built in, for kube-proxy. With -icount, as
    // every boot here: without it, on a loaded host, the kubelet's graceful
    // shutdown of this many pods overran the init's 20 s window.
    let config = cluster.node_vm_with(
        NODE,
        ("/etc/kubernetes/kubeconfig", kubeconfig),
        KernelChoice::Kios,
        true,
    )?;
    let (run, joined) = cluster.boot_and_join(&config, NODE, |host| {
        let started = Instant::now();
        host.create("hello-pod", &hello_pod(NODE))?;
        host.create("volume-sources", &volume_sources())?;
        host.create("volumes", &volumes_pod(VOLUMES_POD, NODE))?;
        host.create("web", &web_objects(WEB_POD, NODE))?;
        let kube_proxy_pod = host.bind_kube_proxy()?;
        let pod = host.wait_for("the pod is Running", POD_TIMEOUT, || {
            let pod = host.json(&[
                "get",
                "pod",
                HELLO_POD,
                "--namespace=default",
                "--output=json",
            ])?;
            Ok((pod["status"]["phase"] == "Running").then_some(pod))
        })?;
        println!(
            "pod {HELLO_POD} Running {:.1} s after it was created, on {} at {}",
            started.elapsed().as_secs_f64(),
            pod["spec"]["nodeName"],
            pod["status"]["podIP"]
        );
        let verdict = host.wait_succeeded("default", VOLUMES_POD, POD_TIMEOUT)?;
        println!(
            "pod {VOLUMES_POD} (default service account, projected token, Secret, ConfigMap) \
             succeeded {:.1} s after it was created: {verdict}",
            started.elapsed().as_secs_f64()
        );

        let proxy = host.wait_ready("kube-system", &kube_proxy_pod, KUBE_PROXY_TIMEOUT)?;
        println!(
            "pod {kube_proxy_pod} (kube-proxy, pulled from {GUEST_REGISTRY}) Ready {:.1} s \
             after it was bound, image {}",
            started.elapsed().as_secs_f64(),
            proxy["status"]["containerStatuses"][0]["imageID"]
        );
        // The kubelet posts its events in the background: they may come after Ready.
        let events = host.wait_for("the kubelet's Pulled event", POD_TIMEOUT, || {
            let events = host.image_events("kube-system", &kube_proxy_pod)?;
            Ok(events
                .iter()
                .any(|event| event.reason == "Pulled")
                .then_some(events))
        })?;
        for event in &events {
            println!("  {} {}: {}", event.time, event.reason, event.message);
        }

        let web = host.wait_ready("default", WEB_POD, POD_TIMEOUT)?;
        let web_ip = web["status"]["podIP"].as_str().unwrap_or_default();
        let cluster_ip = host.control_plane.kubectl(&[
            "get",
            "service",
            WEB_POD,
            "--namespace=default",
            "--output=jsonpath={.spec.clusterIP}",
        ])?;
        let cluster_ip = cluster_ip.trim();
        let asked = Instant::now();
        host.create(
            "client-pod",
            &client_pod(CLIENT_POD, NODE, cluster_ip, web_ip),
        )?;
        let verdict = host
            .wait_succeeded("default", CLIENT_POD, POD_TIMEOUT)
            .with_context(|| {
                let slices = host.control_plane.kubectl(&[
                    "get",
                    "endpointslices,endpoints",
                    "--namespace=default",
                    "--output=wide",
                ]);
                format!("the Service's backends: {slices:?}")
            })?;
        println!(
            "pod {CLIENT_POD} reached Service {WEB_POD} ({cluster_ip}:80 -> {WEB_POD}:8080) \
             through kube-proxy's rules in {:.1} s: {verdict}",
            asked.elapsed().as_secs_f64()
        );
        Ok(())
    })?;
    check_joined_run(&run, &joined, NODE)?;
    // The pod got its SIGTERM from the kubelet's graceful shutdown and had
    // its 2 s of cleanup before the init stopped anything.
    let console = &run.console;
    let position = |needle: &str| {
        console
            .position(needle)
            .with_context(|| format!("no `{needle}` line"))
    };
    let order = [
        position(HELLO_LINE)?,
        position("kios: shutdown requested by system socket")?,
        position(HELLO_SIGTERM_LINE)?,
        position(HELLO_DONE_LINE)?,
        position("kios: bus: a shutdown inhibitor was released (0 left)")?,
        position("kios: shutdown: sending SIGTERM to all processes")?,
    ];
    ensure!(
        order.windows(2).all(|pair| pair[0] < pair[1]),
        "the pod's SIGTERM and cleanup are not between the request and the init's SIGTERM: {order:?}"
    );
    let seconds = |needle: &str| -> Result<f64> {
        let line = console_line(console, needle)?;
        Ok(kmsg_micros(line).context("no kernel time")? as f64 / 1e6)
    };
    let requested = seconds("kios: shutdown requested by system socket")?;
    println!(
        "pod {HELLO_POD} (grace {HELLO_GRACE_SECONDS} s): SIGTERM {:.2} s after the request, \
         cleaned up {:.2} s after it",
        seconds(HELLO_SIGTERM_LINE)? - requested,
        seconds(HELLO_DONE_LINE)? - requested,
    );
    println!(
        "test wall time (control plane, registry, image, boot, checks): {:.1} s",
        test_started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[test]
#[ignore = "runs a control plane and boots the node in QEMU: run by cargo kios test"]
fn a_node_with_a_bootstrap_token_joins_and_powers_off() -> Result<()> {
    const NODE: &str = "kios-bootstrap-node";
    let cluster = Cluster::start("bootstrap")?;
    let token = cluster.control_plane.create_bootstrap_token()?;
    let bootstrap = cluster
        .control_plane
        .token_kubeconfig(GUEST_SERVER, &token.to_string());
    let config = cluster.node_vm(NODE, ("/etc/kubernetes/bootstrap-kubeconfig", bootstrap))?;
    let (run, joined) = cluster.boot_and_join(&config, NODE, |host| {
        // The node's client certificate came from a CSR the token made.
        let csrs = host.json(&["get", "csr", "--output=json"])?;
        let requester = format!("system:bootstrap:{}", token.id);
        let issued = csrs["items"].as_array().into_iter().flatten().any(|csr| {
            csr["spec"]["username"] == requester.as_str()
                && csr["status"]["certificate"]
                    .as_str()
                    .is_some_and(|certificate| !certificate.is_empty())
        });
        ensure!(issued, "no CSR of {requester} was signed: {csrs}");
        Ok(())
    })?;
    check_joined_run(&run, &joined, NODE)
}

/// Boots `config` until the console shows, after the DHCP lease, two
/// kubelet lines containing every piece of `cause` and then two ticks of
/// the tick pod; checks the node never registered.
fn boot_until_the_kubelet_retries(
    cluster: &Cluster,
    config: &VmConfig,
    node: &str,
    cause: &[&str],
) -> Result<()> {
    let mut leased = false;
    let mut failures = Vec::new();
    let mut ticks_after_retry = 0;
    let options = RunOptions {
        timeout: RUN_TIMEOUT,
        echo: true,
    };
    let run = run_vm(config, options, |line| {
        let text = line.text.as_str();
        if text.contains(LEASE_LINE) {
            leased = true;
        } else if leased
            && text.contains(KUBELET_LINE)
            && cause.iter().all(|piece| text.contains(piece))
        {
            failures.push(text.to_string());
        } else if failures.len() >= 2 && text.contains(TICK_LINE) {
            ticks_after_retry += 1;
        }
        if ticks_after_retry >= 2 {
            LineVerdict::Stop
        } else {
            LineVerdict::Continue
        }
    })?;
    let console = &run.console;
    if !run.stopped_early {
        bail!(
            "the VM ended ({}) before the console showed the lease, two kubelet lines with \
             {cause:?} and two ticks after them (lease: {leased}, failures: {}, ticks: \
             {ticks_after_retry}); the console's end:\n{}",
            run.status,
            failures.len(),
            console.tail(40)
        );
    }
    ensure!(
        !console.contains(&format!("Successfully registered node {node}")),
        "the kubelet registered the node"
    );
    let registered = cluster.control_plane.kubectl(&[
        "get",
        "node",
        node,
        "--ignore-not-found",
        "--output=name",
    ])?;
    ensure!(
        registered.trim().is_empty(),
        "the API server knows the node: {registered}"
    );
    let restarts = console.messages("kios: kubelet exited").count();
    println!(
        "{} kubelet lines with {cause:?} after the lease; the first:\n  {}\n\
         static pods kept running (the tick pod's last line: {}); the init restarted \
         the kubelet {restarts} times; {:.1} s of wall time",
        failures.len(),
        failures[0],
        console.messages(TICK_LINE).last().unwrap_or("no tick line"),
        run.wall_time.as_secs_f64()
    );
    Ok(())
}

#[test]
#[ignore = "runs a control plane and boots the node in QEMU: run by cargo kios test"]
fn an_unreachable_api_server_leaves_the_node_running_its_static_pods() -> Result<()> {
    const NODE: &str = "kios-unreachable-node";
    let cluster = Cluster::start("unreachable")?;
    // The forward's address, a port nothing forwards.
    let unreachable = format!("{GUEST_ADDRESS}:{}", GUEST_PORT + 1);
    let kubeconfig = cluster
        .control_plane
        .node_kubeconfig(&format!("https://{unreachable}"), NODE)?;
    let config = cluster.node_vm(NODE, ("/etc/kubernetes/kubeconfig", kubeconfig))?;
    boot_until_the_kubelet_retries(
        &cluster,
        &config,
        NODE,
        &[
            "Unable to register node",
            &format!("dial tcp {unreachable}"),
        ],
    )
}

#[test]
#[ignore = "runs a control plane and boots the node in QEMU: run by cargo kios test"]
fn a_client_certificate_from_another_ca_leaves_the_node_running_its_static_pods() -> Result<()> {
    const NODE: &str = "kios-foreign-cert-node";
    let cluster = Cluster::start("foreign-cert")?;
    // The node's own kubeconfig (right server, right cluster CA to trust),
    // its user swapped for the same identity signed by a throwaway CA: the
    // TLS handshake succeeds, the API server's authenticator rejects the
    // certificate. The kubelet finds nothing wrong with it locally (it is
    // in its validity period), so it keeps it and retries.
    let user = format!("system:node:{NODE}");
    let foreign_ca = ClusterCa::new()?;
    let foreign_cert = foreign_ca.issue_client(&ClientIdentity {
        user: &user,
        groups: &[NODES_GROUP],
    })?;
    let foreign: Value = serde_json::from_str(&pki::kubeconfig(
        GUEST_SERVER,
        &foreign_ca.cert,
        &user,
        Credential::ClientCert(&foreign_cert),
    ))?;
    let mut kubeconfig: Value =
        serde_json::from_str(&cluster.control_plane.node_kubeconfig(GUEST_SERVER, NODE)?)?;
    kubeconfig["users"] = foreign["users"].clone();
    let config = cluster.node_vm(
        NODE,
        (
            "/etc/kubernetes/kubeconfig",
            serde_json::to_string_pretty(&kubeconfig)?,
        ),
    )?;
    boot_until_the_kubelet_retries(
        &cluster,
        &config,
        NODE,
        &[
            &format!("Unable to register node \"{NODE}\""),
            "Unauthorized",
        ],
    )?;
    // The kubelet only hears 401; the API server's log names the cause.
    let log_path = cluster.control_plane.workdir().join("kube-apiserver.log");
    let log = std::fs::read_to_string(&log_path)
        .with_context(|| format!("reading {}", log_path.display()))?;
    let cause = log
        .lines()
        .find(|line| line.contains("x509: certificate signed by unknown authority"))
        .with_context(|| {
            format!(
                "{} does not say why it refused the certificate",
                log_path.display()
            )
        })?;
    println!("the API server's log:\n  {cause}");
    Ok(())
}

#[test]
#[ignore = "runs a control plane and boots the node in QEMU: run by cargo kios test"]
fn an_expired_client_certificate_leaves_the_node_running_its_static_pods() -> Result<()> {
    const NODE: &str = "kios-expired-cert-node";
    let cluster = Cluster::start("expired-cert")?;
    // The node's identity, signed by the cluster's own CA, but expired: the
    // kubelet's certificate manager will not present it, so the kubelet
    // speaks as nobody, the API server sees system:anonymous and refuses,
    // and the kubelet retries with that cause in its log.
    let kubeconfig = cluster
        .control_plane
        .expired_node_kubeconfig(GUEST_SERVER, NODE)?;
    let config = cluster.node_vm(NODE, ("/etc/kubernetes/kubeconfig", kubeconfig))?;
    boot_until_the_kubelet_retries(
        &cluster,
        &config,
        NODE,
        &[
            &format!("Unable to register node \"{NODE}\""),
            "User \"system:anonymous\"",
        ],
    )
}

#[test]
#[ignore = "runs a control plane and boots the node in QEMU: run by cargo kios test"]
fn a_rejected_bootstrap_token_leaves_the_node_running_its_static_pods() -> Result<()> {
    const NODE: &str = "kios-rejected-node";
    let cluster = Cluster::start("rejected-token")?;
    // Well formed, but its Secret was never created.
    let unknown_token = BootstrapToken::generate()?;
    let bootstrap = cluster
        .control_plane
        .token_kubeconfig(GUEST_SERVER, &unknown_token.to_string());
    let config = cluster.node_vm(NODE, ("/etc/kubernetes/bootstrap-kubeconfig", bootstrap))?;
    boot_until_the_kubelet_retries(
        &cluster,
        &config,
        NODE,
        &["cannot create certificate signing request", "Unauthorized"],
    )
}
