//! The workloads the cluster tests and `kios cluster` give nodes: a
//! static pod that keeps the console talking, the cluster's kube-proxy as
//! kubeadm deploys it, a pod checking its token, Secret and ConfigMap
//! volumes, and a web server behind a ClusterIP Service with a client.
//! Every pod names its node: the test control plane has no scheduler.

use std::time::Duration;

use serde_json::{json, Value};

use crate::cluster::control_plane::GUEST_SERVER;
use crate::components::kube_proxy;

pub const TICK_LINE: &str = "kios-tick: ";

pub const TICK_POD_PATH: &str = "/etc/kubernetes/manifests/kios-tick.yaml";
/// TEST FIXTURE: a static pod that writes a numbered line to the console
/// every 5 s of guest time: static pods keep running whatever the API
/// server says, and the console never goes quiet for long, so the host
/// can stop the VM at the next line.
pub const TICK_POD: &str = r#"# TEST FIXTURE: ticks on the console every 5 s.
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

/// The pod network of the node's CNI config (buildroot-overlay/etc/cni/net.d).
pub const POD_CIDR: &str = "10.88.0.0/16";
pub const KUBE_PROXY_LABEL: &str = "kube-proxy";
pub const KUBE_PROXY_TIMEOUT: Duration = Duration::from_secs(300);

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
pub fn kube_proxy_manifests(image: &str) -> Value {
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

pub const VOLUMES_POD: &str = "kios-volumes";
const SECRET_VALUE: &str = "kios-secret-7f3a";
const CONFIG_VALUE: &str = "kios-config-91c2";
const SECRET_NAME: &str = "kios-secret";
const CONFIG_NAME: &str = "kios-config";
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

/// The Secret and the ConfigMap [`volumes_pod`] mounts, in `default`.
pub fn volume_sources() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": { "name": SECRET_NAME, "namespace": "default" },
                "stringData": { "greeting": SECRET_VALUE },
            },
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": { "name": CONFIG_NAME, "namespace": "default" },
                "data": { "greeting": CONFIG_VALUE },
            },
        ],
    })
}

/// A pod `name` on `node` that runs with the default service account (no
/// opt-out: it gets the token volume every pod gets) and checks what its
/// volumes hold ([`volume_sources`]'s Secret and ConfigMap, a projected
/// token), then exits; its verdict is its termination message.
pub fn volumes_pod(name: &str, node: &str) -> Value {
    let script = VOLUMES_SCRIPT
        .replace("SECRET", SECRET_VALUE)
        .replace("CONFIG", CONFIG_VALUE);
    busybox_script_pod(
        name,
        node,
        "check",
        &script,
        json!([
            { "name": "projected-token", "mountPath": "/projected" },
            { "name": "secret", "mountPath": "/secret" },
            { "name": "config", "mountPath": "/config" },
        ]),
        json!([
            {
                "name": "projected-token",
                "projected": { "sources": [{ "serviceAccountToken": {
                    "path": "token",
                    "audience": "kios-test",
                    "expirationSeconds": 3600,
                } }] },
            },
            { "name": "secret", "secret": { "secretName": SECRET_NAME } },
            { "name": "config", "configMap": { "name": CONFIG_NAME } },
        ]),
    )
}

pub const WEB_POD: &str = "kios-web";
/// What the web pod serves, and what its file holds.
pub const WEB_BODY: &str = "kios-service-answer";
/// The file the web pod serves.
pub const WEB_FILE: &str = "/www/index.html";
pub const WEB_PORT: u16 = 8080;
pub const CLIENT_POD: &str = "kios-client";

/// What the web pod `name` writes to its stdout when it starts (its log).
pub fn web_log_line(name: &str) -> String {
    format!("{name}: serving {WEB_FILE} on port {WEB_PORT}")
}

/// A web server pod `name` on the pod network of `node` (busybox httpd on
/// 8080, saying so on its stdout) and a ClusterIP Service `name` in front
/// of it on port 80.
pub fn web_objects(name: &str, node: &str) -> Value {
    let log_line = web_log_line(name);
    json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": { "name": name, "namespace": "default", "labels": { "app": name } },
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
                                 echo {WEB_BODY} > {WEB_FILE}; echo '{log_line}'; \
                                 /bin/busybox httpd -f -p {WEB_PORT} -h /www & wait $!"
                            ),
                        ],
                        "ports": [{ "containerPort": WEB_PORT }],
                    }],
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": { "name": name, "namespace": "default" },
                "spec": {
                    "type": "ClusterIP",
                    "selector": { "app": name },
                    "ports": [{ "port": 80, "targetPort": WEB_PORT, "protocol": "TCP" }],
                },
            },
        ],
    })
}

/// A pod `name` on the pod network of `node` that asks the Service at
/// `cluster_ip` for the web pod's page, retrying for up to about 3 minutes
/// while kube-proxy writes its rules; the verdict goes to the termination
/// message.
pub fn client_pod(name: &str, node: &str, cluster_ip: &str, web_ip: &str) -> Value {
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
    busybox_script_pod(
        name,
        node,
        "client",
        &script,
        // Read only when the request fails, to say why.
        json!([{ "name": "pod-logs", "mountPath": "/var/log/pods", "readOnly": true }]),
        json!([{
            "name": "pod-logs",
            "hostPath": { "path": "/var/log/pods", "type": "Directory" },
        }]),
    )
}

/// A pod `name` on `node` in `default` that runs `script` once in busybox
/// (seeded in the image, never pulled), with these mounts and volumes.
fn busybox_script_pod(
    name: &str,
    node: &str,
    container: &str,
    script: &str,
    mounts: Value,
    volumes: Value,
) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "containers": [{
                "name": container,
                "image": "kios.local/busybox:1",
                "imagePullPolicy": "Never",
                "command": ["/bin/busybox", "sh", "-c", script],
                "volumeMounts": mounts,
            }],
            "volumes": volumes,
        },
    })
}
