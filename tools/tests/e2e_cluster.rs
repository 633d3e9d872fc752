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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use kios_tools::cluster::control_plane::{ControlPlane, GUEST_ADDRESS, GUEST_PORT, GUEST_SERVER};
use kios_tools::cluster::pki::{
    self, BootstrapToken, ClientIdentity, ClusterCa, Credential, NODES_GROUP,
};
use kios_tools::cluster::registry::{self, PushedImage, Registry, GUEST_REGISTRY};
use kios_tools::components::bom::{Bom, BOM_FILE};
use kios_tools::components::kube_proxy;
use kios_tools::components::node::NodeComponents;
use kios_tools::components::OciRuntime;
use kios_tools::host::arch::Arch;
use kios_tools::host::workspace::Workspace;
use kios_tools::image::node_image::{build_node_image, vm_config, ImageOptions};
use kios_tools::kernel::KernelChoice;
use kios_tools::vm::console::Console;
use kios_tools::vm::qemu::{run_vm, LineVerdict, RunOptions, VmConfig, VmRun};
use kios_tools::vm::timeline::{kmsg_micros, Phase, Timeline};
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
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The DHCP static pod's lease line: from then on the API server is reachable.
const LEASE_LINE: &str = "kios-dhcp: bound eth0 10.0.2.15/24";
/// How the init marks the kubelet's output on the console.
const KUBELET_LINE: &str = "kubelet: ";
const TICK_LINE: &str = "kios-tick: ";

const TICK_POD_PATH: &str = "/etc/kubernetes/manifests/kios-tick.yaml";
/// TEST FIXTURE: a static pod that writes a numbered line to the console
/// every 5 s of guest time: static pods keep running whatever the API
/// server says, and the console never goes quiet for long, so the host
/// can stop the VM at the next line.
const TICK_POD: &str = r#"# TEST FIXTURE: ticks on the console every 5 s.
apiVersion: v1
kind: Pod
metadata:
  name: kios-tick
  namespace: kube-system
spec:
  hostNetwork: true
  restartPolicy: Always
  containers:
    - name: tick
      image: kios.local/busybox:1
      imagePullPolicy: Never
      # /dev/kmsg is outside an unprivileged container's device allowlist.
      securityContext:
        privileged: true
      command:
        - /bin/busybox
        - sh
        - -c
        - |
          # PID 1 of its container: without a trap SIGTERM would be ignored.
          trap 'exit 0' TERM
          tick=0
          while true; do
            tick=$((tick + 1))
            echo "kios-tick: $tick" > /dev/kmsg
            /bin/busybox sleep 5 &
            wait $!
          done
      volumeMounts:
        - name: kmsg
          mountPath: /dev/kmsg
  volumes:
    - name: kmsg
      hostPath:
        path: /dev/kmsg
        type: CharDevice
"#;

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

/// The pod network of the node's CNI config (buildroot-overlay/etc/cni/net.d).
const POD_CIDR: &str = "10.88.0.0/16";
const KUBE_PROXY_LABEL: &str = "kube-proxy";
const KUBE_PROXY_TIMEOUT: Duration = Duration::from_secs(300);

/// kube-proxy as kubeadm deploys it: a service account bound to
/// `system:node-proxier`, a ConfigMap with its config and a kubeconfig
/// that speaks as that service account (its token and the cluster CA from
/// the token volume) to the API server's address, and a privileged
/// host-network DaemonSet sharing the host's `/run/xtables.lock`. Not
/// `system-node-critical` as under kubeadm: the kubelet's graceful shutdown
/// then stops it with the regular pods, and the critical share of the
/// shutdown grace period stays the static pods' alone.
/// No `/lib/modules`: the kiOS kernel has netfilter built in.
/// `masqueradeAll` lets a pod reach a Service whose backend sits on the
/// same bridge without relying on bridge netfilter; conntrack limits are
/// left as the kernel has them.
fn kube_proxy_manifests(image: &str) -> Value {
    // JSON, which both kube-proxy's config loader and client-go's kubeconfig loader read as YAML.
    let config = json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": { "kubeconfig": "/var/lib/kube-proxy/kubeconfig.conf" },
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "iptables": { "masqueradeAll": true },
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    })
    .to_string();
    let account = "/var/run/secrets/kubernetes.io/serviceaccount";
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "default",
            "cluster": { "certificate-authority": format!("{account}/ca.crt"), "server": GUEST_SERVER },
        }],
        "contexts": [{
            "name": "default",
            "context": { "cluster": "default", "namespace": "default", "user": "default" },
        }],
        "current-context": "default",
        "users": [{ "name": "default", "user": { "tokenFile": format!("{account}/token") } }],
    })
    .to_string();
    json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": { "name": "kube-proxy", "namespace": "kube-system" },
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": { "name": "kios:node-proxier" },
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:node-proxier",
                },
                "subjects": [{
                    "kind": "ServiceAccount",
                    "name": "kube-proxy",
                    "namespace": "kube-system",
                }],
            },
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": { "name": "kube-proxy", "namespace": "kube-system" },
                "data": { "config.conf": config, "kubeconfig.conf": kubeconfig },
            },
            {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": { "name": "kube-proxy", "namespace": "kube-system" },
                "spec": {
                    "selector": { "matchLabels": { "k8s-app": KUBE_PROXY_LABEL } },
                    "template": {
                        "metadata": { "labels": { "k8s-app": KUBE_PROXY_LABEL } },
                        "spec": {
                            "serviceAccountName": "kube-proxy",
                            "hostNetwork": true,
                            "nodeSelector": { "kubernetes.io/os": "linux" },
                            "tolerations": [{ "operator": "Exists" }],
                            "containers": [{
                                "name": "kube-proxy",
                                "image": image,
                                "imagePullPolicy": "IfNotPresent",
                                "command": [
                                    kube_proxy::KUBE_PROXY_PATH,
                                    "--config=/var/lib/kube-proxy/config.conf",
                                    "--hostname-override=$(NODE_NAME)",
                                ],
                                "env": [{
                                    "name": "NODE_NAME",
                                    "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } },
                                }],
                                "securityContext": { "privileged": true },
                                // Ready once it serves its health check (port 10256).
                                "readinessProbe": {
                                    "httpGet": { "path": "/healthz", "port": 10256 },
                                    "periodSeconds": 2,
                                },
                                "volumeMounts": [
                                    { "name": "kube-proxy", "mountPath": "/var/lib/kube-proxy" },
                                    { "name": "xtables-lock", "mountPath": "/run/xtables.lock" },
                                ],
                            }],
                            "volumes": [
                                { "name": "kube-proxy", "configMap": { "name": "kube-proxy" } },
                                {
                                    "name": "xtables-lock",
                                    "hostPath": { "path": "/run/xtables.lock", "type": "FileOrCreate" },
                                },
                            ],
                        },
                    },
                },
            },
        ],
    })
}

const VOLUMES_POD: &str = "kios-volumes";
const SECRET_VALUE: &str = "kios-secret-7f3a";
const CONFIG_VALUE: &str = "kios-config-91c2";
/// The checks of [`volumes_pod`], in busybox sh: the default service
/// account's token (a Secret volume on 1.20), a projected token the
/// kubelet requested (TokenRequest), a Secret and a ConfigMap, each
/// volume a tmpfs (the kubelet's `mount`) except the ConfigMap's. The
/// verdict goes to the termination message, which the API shows.
const VOLUMES_SCRIPT: &str = r#"bb=/bin/busybox
report() { echo "$*" > /dev/termination-log; }
fail() { report "FAIL: $*"; exit 1; }
sa=/var/run/secrets/kubernetes.io/serviceaccount
token=$($bb cat $sa/token) || fail "no $sa/token"
[ -n "$token" ] || fail "empty $sa/token"
[ -s $sa/ca.crt ] || fail "no $sa/ca.crt"
[ "$($bb cat $sa/namespace)" = default ] || fail "$sa/namespace is not default"
projected=$($bb cat /projected/token) || fail "no /projected/token"
case "$projected" in *.*.*) ;; *) fail "/projected/token is not a JWT";; esac
[ "$($bb cat /secret/greeting)" = SECRET ] || fail "/secret/greeting: $($bb cat /secret/greeting)"
[ "$($bb cat /config/greeting)" = CONFIG ] || fail "/config/greeting: $($bb cat /config/greeting)"
for dir in $sa /projected /secret; do
  $bb grep -q " $dir tmpfs " /proc/mounts || fail "$dir is not a tmpfs: $($bb grep " $dir " /proc/mounts)"
done
report "ok: token ${#token} bytes, projected token ${#projected} bytes, secret and configmap read, token, projected and secret volumes on tmpfs"
"#;

/// A Secret, a ConfigMap and a pod that runs with the default service
/// account (no opt-out: it gets the token volume every pod gets) and
/// checks what its volumes hold, then exits.
fn volumes_objects(node: &str) -> Value {
    let script = VOLUMES_SCRIPT
        .replace("SECRET", SECRET_VALUE)
        .replace("CONFIG", CONFIG_VALUE);
    json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": { "name": "kios-secret", "namespace": "default" },
                "stringData": { "greeting": SECRET_VALUE },
            },
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": { "name": "kios-config", "namespace": "default" },
                "data": { "greeting": CONFIG_VALUE },
            },
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": { "name": VOLUMES_POD, "namespace": "default" },
                "spec": {
                    "nodeName": node,
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "check",
                        "image": "kios.local/busybox:1",
                        "imagePullPolicy": "Never",
                        "command": ["/bin/busybox", "sh", "-c", script],
                        "volumeMounts": [
                            { "name": "projected-token", "mountPath": "/projected" },
                            { "name": "secret", "mountPath": "/secret" },
                            { "name": "config", "mountPath": "/config" },
                        ],
                    }],
                    "volumes": [
                        {
                            "name": "projected-token",
                            "projected": { "sources": [{ "serviceAccountToken": {
                                "path": "token",
                                "audience": "kios-test",
                                "expirationSeconds": 3600,
                            } }] },
                        },
                        { "name": "secret", "secret": { "secretName": "kios-secret" } },
                        { "name": "config", "configMap": { "name": "kios-config" } },
                    ],
                },
            },
        ],
    })
}

const WEB_POD: &str = "kios-web";
const WEB_BODY: &str = "kios-service-answer";
const CLIENT_POD: &str = "kios-client";

/// A web server pod on the pod network (busybox httpd on 8080) and a
/// ClusterIP Service in front of it on port 80.
fn web_objects(node: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": { "name": WEB_POD, "namespace": "default", "labels": { "app": WEB_POD } },
                "spec": {
                    "nodeName": node,
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": "web",
                        "image": "kios.local/busybox:1",
                        "imagePullPolicy": "Never",
                        "command": [
                            "/bin/busybox", "sh", "-c",
                            format!(
                                "trap 'exit 0' TERM; /bin/busybox mkdir -p /www; \
                                 echo {WEB_BODY} > /www/index.html; \
                                 /bin/busybox httpd -f -p 8080 -h /www & wait $!"
                            ),
                        ],
                        "ports": [{ "containerPort": 8080 }],
                    }],
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": { "name": WEB_POD, "namespace": "default" },
                "spec": {
                    "type": "ClusterIP",
                    "selector": { "app": WEB_POD },
                    "ports": [{ "port": 80, "targetPort": 8080, "protocol": "TCP" }],
                },
            },
        ],
    })
}

/// A pod on the pod network that asks the Service at `cluster_ip` for the
/// web pod's page, retrying for up to about 3 minutes while kube-proxy
/// writes its rules; the verdict goes to the termination message.
fn client_pod(node: &str, cluster_ip: &str, web_ip: &str) -> Value {
    let script = r#"bb=/bin/busybox
# HTTP/1.0 by hand: the static busybox's wget crashes (glibc's resolver in a static binary).
get() { printf 'GET / HTTP/1.0\r\n\r\n' | $bb nc -w 2 "$1" "$2" 2>&1; }
i=0
while [ $i -lt 60 ]; do
  i=$((i + 1))
  out=$(get IP 80)
  case "$out" in
    *BODY*)
      echo "ok: http://IP/ answered BODY after $i tries" > /dev/termination-log
      exit 0;;
  esac
  $bb sleep 1
done
# What failed: the backend without the Service, and kube-proxy's own log.
direct=$(get WEB 8080)
log=$($bb cat /var/log/pods/kube-system_kube-proxy-*/kube-proxy/*.log 2>&1 | $bb tail -c 2500)
echo "FAIL: http://IP/ after $i tries: $out; http://WEB:8080/ directly: $direct; kube-proxy's warnings and errors: $log" > /dev/termination-log
exit 1
"#
    .replace("IP", cluster_ip)
    .replace("WEB", web_ip)
    .replace("BODY", WEB_BODY);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": CLIENT_POD, "namespace": "default" },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "containers": [{
                "name": "client",
                "image": "kios.local/busybox:1",
                "imagePullPolicy": "Never",
                "command": ["/bin/busybox", "sh", "-c", script],
                // Read only when the request fails, to say why.
                "volumeMounts": [{ "name": "pod-logs", "mountPath": "/var/log/pods", "readOnly": true }],
            }],
            "volumes": [{
                "name": "pod-logs",
                "hostPath": { "path": "/var/log/pods", "type": "Directory" },
            }],
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

    /// Starts the loopback registry, pushes the kube-proxy image (built
    /// once, then cached) and creates kube-proxy's service account, RBAC,
    /// ConfigMap and DaemonSet, as kubeadm does; nodes booted after this
    /// reach the registry through QEMU's forward.
    fn add_kube_proxy(&mut self) -> Result<()> {
        let registry = Registry::start(&self.bom, &self.out.join("registry"))?;
        let archive = kube_proxy::archive(&self.bom, Arch::Amd64)?;
        let tag = kube_proxy::tag(&self.bom)?;
        let started = Instant::now();
        let pushed = registry.push_archives(&[archive], kube_proxy::REPOSITORY, &tag)?;
        println!(
            "pushed {} ({}) to the registry on {} in {:.1} s",
            pushed.guest_reference(),
            pushed.digest,
            registry.local_address(),
            started.elapsed().as_secs_f64()
        );
        let path = self.out.join("kube-proxy.json");
        std::fs::write(
            &path,
            kube_proxy_manifests(&pushed.guest_reference()).to_string(),
        )
        .with_context(|| format!("writing {}", path.display()))?;
        self.control_plane
            .kubectl(&["create", "-f", &path.display().to_string()])
            .context("creating kube-proxy's objects")?;
        self.registry = Some((registry, pushed));
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
            files.push((
                format!("/etc/containerd/certs.d/{GUEST_REGISTRY}/hosts.toml"),
                registry::containerd_hosts_toml(GUEST_REGISTRY),
            ));
            guest_forwards.push(registry.guest_forward()?);
        }
        let components =
            NodeComponents::resolve(&self.workspace, Arch::Amd64, OciRuntime::Runc, kernel)?;
        let image = build_node_image(
            &self.workspace,
            &components,
            &ImageOptions {
                extra_files: files
                    .into_iter()
                    .map(|(path, text)| (path, text.into_bytes()))
                    .collect(),
                ..ImageOptions::default()
            },
            &self.out.join("image"),
        )?;
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
            control_plane: &self.control_plane,
            node,
            dir: &self.out,
            vm_exited: &vm_exited,
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
    control_plane: &'a ControlPlane,
    node: &'a str,
    /// Where manifests are written for kubectl.
    dir: &'a Path,
    vm_exited: &'a AtomicBool,
}

impl HostSide<'_> {
    fn join(
        &self,
        started: Instant,
        once_ready: impl FnOnce(&HostSide) -> Result<()>,
    ) -> Result<Joined> {
        let node = self.wait_for("the node is Ready", READY_TIMEOUT, || {
            Ok(self.node_object()?.filter(|node| {
                ready_condition(node).is_some_and(|ready| ready["status"] == "True")
            }))
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

    /// Polls until `poll` gives a value; fails at `timeout` or when the VM is gone.
    fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut poll: impl FnMut() -> Result<Option<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        loop {
            if let Some(value) = poll()? {
                return Ok(value);
            }
            ensure!(
                !self.vm_exited.load(Ordering::Relaxed),
                "the VM exited before {what}"
            );
            ensure!(
                started.elapsed() < timeout,
                "gave up after {} s waiting until {what}",
                timeout.as_secs()
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn json(&self, args: &[&str]) -> Result<Value> {
        let text = self.control_plane.kubectl(args)?;
        serde_json::from_str(&text)
            .with_context(|| format!("reading the JSON of `kubectl {}`", args.join(" ")))
    }

    /// The node's object, or None while it is not registered.
    fn node_object(&self) -> Result<Option<Value>> {
        let text = self.control_plane.kubectl(&[
            "get",
            "node",
            self.node,
            "--ignore-not-found",
            "--output=json",
        ])?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        Ok(Some(
            serde_json::from_str(&text).context("reading the node's JSON")?,
        ))
    }

    /// Creates `manifest` through the API server (written to `<dir>/<name>.json`).
    fn create(&self, name: &str, manifest: &Value) -> Result<()> {
        let path = self.dir.join(format!("{name}.json"));
        std::fs::write(&path, manifest.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
        self.control_plane
            .kubectl(&["create", "-f", &path.display().to_string()])
            .with_context(|| format!("creating {name}"))?;
        Ok(())
    }
}

impl HostSide<'_> {
    fn pod(&self, namespace: &str, name: &str) -> Result<Value> {
        self.json(&[
            "get",
            "pod",
            name,
            &format!("--namespace={namespace}"),
            "--output=json",
        ])
    }

    /// Waits until the pod has ended; its termination message if it
    /// succeeded, else an error with it.
    fn wait_succeeded(&self, namespace: &str, name: &str, timeout: Duration) -> Result<String> {
        let pod = self.wait_for(&format!("pod {name} has ended"), timeout, || {
            let pod = self.pod(namespace, name)?;
            let phase = pod["status"]["phase"].as_str().unwrap_or_default();
            Ok(matches!(phase, "Succeeded" | "Failed").then_some(pod))
        })?;
        let terminated = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
        let message = terminated["message"].as_str().unwrap_or_default().trim();
        ensure!(
            pod["status"]["phase"] == "Succeeded" && terminated["exitCode"] == 0,
            "pod {name} failed (exit code {}): {message}",
            terminated["exitCode"]
        );
        Ok(message.to_string())
    }

    /// The DaemonSet pod labelled `k8s-app=<label>` in kube-system, bound
    /// to the node by the test: the control plane has no scheduler, and
    /// the DaemonSet controller leaves binding to one.
    fn bind_daemon_pod(&self, label: &str) -> Result<String> {
        let pod = self.wait_for(
            &format!("the DaemonSet controller makes a {label} pod"),
            POD_TIMEOUT,
            || {
                let pods = self.json(&[
                    "get",
                    "pods",
                    "--namespace=kube-system",
                    &format!("--selector=k8s-app={label}"),
                    "--output=json",
                ])?;
                Ok(pods["items"]
                    .as_array()
                    .and_then(|items| items.first())
                    .cloned())
            },
        )?;
        let name = pod["metadata"]["name"]
            .as_str()
            .context("a pod without a name")?
            .to_string();
        if pod["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
        {
            let binding = json!({
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": { "name": name, "namespace": "kube-system" },
                "target": { "apiVersion": "v1", "kind": "Node", "name": self.node },
            });
            let path = self.dir.join(format!("binding-{name}.json"));
            std::fs::write(&path, binding.to_string())
                .with_context(|| format!("writing {}", path.display()))?;
            self.control_plane
                .kubectl(&[
                    "create",
                    &format!("--raw=/api/v1/namespaces/kube-system/pods/{name}/binding"),
                    "-f",
                    &path.display().to_string(),
                ])
                .with_context(|| format!("binding {name} to {}", self.node))?;
        }
        Ok(name)
    }

    /// The kubelet's image events of a pod: (reason, message, time).
    fn image_events(&self, namespace: &str, pod: &str) -> Result<Vec<(String, String, String)>> {
        let events = self.json(&[
            "get",
            "events",
            &format!("--namespace={namespace}"),
            &format!("--field-selector=involvedObject.name={pod}"),
            "--output=json",
        ])?;
        Ok(events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|event| matches!(event["reason"].as_str(), Some("Pulling" | "Pulled")))
            .map(|event| {
                let text = |key: &str| event[key].as_str().unwrap_or_default().to_string();
                (text("reason"), text("message"), text("firstTimestamp"))
            })
            .collect())
    }
}

fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|condition| condition["type"] == "Ready" && condition["status"] == "True")
}

fn ready_condition(node: &Value) -> Option<&Value> {
    node["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|condition| condition["type"] == "Ready")
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

/// The time of day, in seconds, of a kubelet line's klog header
/// (`I1122 05:33:27.123456    412 file.go:74] ...`), on the node's clock.
fn klog_time_of_day(line: &str) -> Option<f64> {
    let header = &line[line.find(KUBELET_LINE)? + KUBELET_LINE.len()..];
    time_of_day(header.split_whitespace().nth(1)?)
}

/// `HH:MM:SS[.fraction]` in seconds.
fn time_of_day(text: &str) -> Option<f64> {
    let mut parts = text.splitn(3, ':');
    let hours: f64 = parts.next()?.parse().ok()?;
    let minutes: f64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    Some(hours * 3600.0 + minutes * 60.0 + seconds)
}

/// What a joined boot must show on the console, and the figures: PID 1 to
/// registration and to Ready in guest time, and the wall times.
///
/// Registration is the kernel's timestamp on the kubelet's "Successfully
/// registered node" line. The kubelet logs nothing when the node becomes
/// Ready, so Ready is the condition's lastTransitionTime (the node's wall
/// clock, whole seconds) placed on the kernel's clock through that same
/// line, whose klog header carries the node's wall clock too. Nothing
/// steps that clock in between: the time-sync pod reaches no server here.
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

    let timeline = Timeline::from_console(console);
    print!("{}", timeline.table());
    let pid1 = *timeline
        .phases
        .get(&Phase::Pid1)
        .context("no pid1 timeline line")?;
    let registered_needle = format!("Successfully registered node {node}");
    let registered_at = console
        .lines
        .iter()
        .find(|line| line.text.contains(&registered_needle))
        .with_context(|| format!("no `{registered_needle}` line"))?;
    let registered = kmsg_micros(&registered_at.text).context("no kernel time on the line")?;
    let registered_clock =
        klog_time_of_day(&registered_at.text).context("no klog time on the line")?;
    let ready_clock = joined
        .ready_transition
        .split_once('T')
        .and_then(|(_, time)| time_of_day(time.trim_end_matches('Z')))
        .with_context(|| format!("unreadable lastTransitionTime {}", joined.ready_transition))?;
    let mut ready_after_registered = ready_clock - registered_clock;
    // Across midnight on the node's clock.
    if ready_after_registered < -43_200.0 {
        ready_after_registered += 86_400.0;
    }
    // Whole seconds: Ready in the same second as the registration reads as before it.
    let ready_after_registered = ready_after_registered.max(0.0);
    let ready = registered as f64 / 1e6 + ready_after_registered;

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
        pid1 as f64 / 1e6,
        (registered - pid1) as f64 / 1e6,
        joined.ready_transition,
        ready_after_registered,
        ready - pid1 as f64 / 1e6,
        released - requested,
        shutdown,
        registered_at.at.as_secs_f64(),
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
        host.create("volumes", &volumes_objects(NODE))?;
        host.create("web", &web_objects(NODE))?;
        let kube_proxy_pod = host.bind_daemon_pod(KUBE_PROXY_LABEL)?;
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

        let proxy = host.wait_for("kube-proxy is Ready", KUBE_PROXY_TIMEOUT, || {
            let pod = host.pod("kube-system", &kube_proxy_pod)?;
            Ok(pod_ready(&pod).then_some(pod))
        })?;
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
                .any(|(reason, _, _)| reason == "Pulled")
                .then_some(events))
        })?;
        for (reason, message, time) in &events {
            println!("  {time} {reason}: {message}");
        }

        let web = host.wait_for("the web pod is Ready", POD_TIMEOUT, || {
            let pod = host.pod("default", WEB_POD)?;
            Ok(pod_ready(&pod).then_some(pod))
        })?;
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
        host.create("client-pod", &client_pod(NODE, cluster_ip, web_ip))?;
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

#[test]
fn klog_and_api_times_read_as_seconds_of_the_day() {
    let line = "[   41.123456] kubelet: I1122 05:33:27.250000     412 kubelet_node_status.go:74] \
                Successfully registered node kios-cert-node";
    assert_eq!(
        klog_time_of_day(line),
        Some(5.0 * 3600.0 + 33.0 * 60.0 + 27.25)
    );
    assert_eq!(time_of_day("23:59:59"), Some(86_399.0));
    assert_eq!(time_of_day("23:59"), None);
    assert_eq!(klog_time_of_day("kios: timeline pid1 us=1"), None);
}
