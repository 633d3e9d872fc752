//! What the host does through the API server, as the cluster admin with
//! kubectl: create objects, poll until something holds, bind DaemonSet
//! pods (the test control plane has no scheduler), read events, approve
//! kubelet serving certificates.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};

use crate::cluster::control_plane::ControlPlane;

const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The signer of a kubelet's serving certificate (`serverTLSBootstrap`).
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

/// kubectl against `control_plane`, with manifests written to `dir`.
/// Every wait fails early once `vm_exited` is set: what it waits for
/// will not come.
#[derive(Clone, Copy)]
pub struct Api<'a> {
    pub control_plane: &'a ControlPlane,
    pub dir: &'a Path,
    pub vm_exited: &'a AtomicBool,
}

/// A kubelet's image event of a pod.
#[derive(Clone, Debug)]
pub struct ImageEvent {
    /// `Pulling` or `Pulled`.
    pub reason: String,
    pub message: String,
    pub time: String,
}

impl ImageEvent {
    /// The pull's duration a 1.20 kubelet's `Pulled` message gives
    /// (`Successfully pulled image "x" in 1.234567s`).
    pub fn pull_seconds(&self) -> Option<f64> {
        let (_, tail) = self.message.rsplit_once(" in ")?;
        parse_go_duration(tail.trim())
    }
}

impl Api<'_> {
    /// Polls until `poll` gives a value; fails at `timeout` or when the VM is gone.
    pub fn wait_for<T>(
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

    /// `kubectl ARGS`'s output read as JSON.
    pub fn json(&self, args: &[&str]) -> Result<Value> {
        let text = self.control_plane.kubectl(args)?;
        serde_json::from_str(&text)
            .with_context(|| format!("reading the JSON of `kubectl {}`", args.join(" ")))
    }

    /// Creates `manifest` through the API server (written to `<dir>/<name>.json`).
    pub fn create(&self, name: &str, manifest: &Value) -> Result<()> {
        let path = self.dir.join(format!("{name}.json"));
        std::fs::write(&path, manifest.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
        self.control_plane
            .kubectl(&["create", "-f", &path.display().to_string()])
            .with_context(|| format!("creating {name}"))?;
        Ok(())
    }

    /// The node's object, or None while it is not registered.
    pub fn node(&self, name: &str) -> Result<Option<Value>> {
        let text = self.control_plane.kubectl(&[
            "get",
            "node",
            name,
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

    pub fn pod(&self, namespace: &str, name: &str) -> Result<Value> {
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
    pub fn wait_succeeded(&self, namespace: &str, name: &str, timeout: Duration) -> Result<String> {
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

    /// Waits until the pod is Ready; its object.
    pub fn wait_ready(&self, namespace: &str, name: &str, timeout: Duration) -> Result<Value> {
        self.wait_for(&format!("pod {name} is Ready"), timeout, || {
            let pod = self.pod(namespace, name)?;
            Ok(pod_ready(&pod).then_some(pod))
        })
    }

    /// The `nodes` DaemonSet pods labelled `k8s-app=<label>` in
    /// kube-system, each bound to the node it was made for: the control
    /// plane has no scheduler, and the DaemonSet controller leaves binding
    /// to one (its pods name their node in a required node affinity).
    /// Returns node name -> pod name.
    pub fn bind_daemon_pods(
        &self,
        label: &str,
        nodes: usize,
        timeout: Duration,
    ) -> Result<BTreeMap<String, String>> {
        let pods = self.wait_for(
            &format!("the DaemonSet controller makes {nodes} {label} pod(s)"),
            timeout,
            || {
                let pods = self.json(&[
                    "get",
                    "pods",
                    "--namespace=kube-system",
                    &format!("--selector=k8s-app={label}"),
                    "--output=json",
                ])?;
                let items = pods["items"].as_array().cloned().unwrap_or_default();
                Ok((items.len() >= nodes).then_some(items))
            },
        )?;
        let mut bound = BTreeMap::new();
        for pod in pods {
            let name = pod["metadata"]["name"]
                .as_str()
                .context("a pod without a name")?
                .to_string();
            let node = match pod["spec"]["nodeName"].as_str().unwrap_or_default() {
                "" => {
                    let node = daemon_pod_node(&pod)
                        .with_context(|| format!("pod {name} names no node: {pod}"))?;
                    self.bind("kube-system", &name, &node)?;
                    node
                }
                node => node.to_string(),
            };
            bound.insert(node, name);
        }
        Ok(bound)
    }

    /// Binds the pod to `node`, as a scheduler would.
    pub fn bind(&self, namespace: &str, pod: &str, node: &str) -> Result<()> {
        let binding = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": { "name": pod, "namespace": namespace },
            "target": { "apiVersion": "v1", "kind": "Node", "name": node },
        });
        let path = self.dir.join(format!("binding-{pod}.json"));
        std::fs::write(&path, binding.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
        self.control_plane
            .kubectl(&[
                "create",
                &format!("--raw=/api/v1/namespaces/{namespace}/pods/{pod}/binding"),
                "-f",
                &path.display().to_string(),
            ])
            .with_context(|| format!("binding {pod} to {node}"))?;
        Ok(())
    }

    /// The kubelet's image events of a pod.
    pub fn image_events(&self, namespace: &str, pod: &str) -> Result<Vec<ImageEvent>> {
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
                ImageEvent {
                    reason: text("reason"),
                    message: text("message"),
                    time: text("firstTimestamp"),
                }
            })
            .collect())
    }

    /// Approves the pending kubelet serving CSRs (signer
    /// [`KUBELET_SERVING_SIGNER`]) that a node of `nodes` asked for as
    /// itself (`system:node:<name>` in `system:nodes`), as an operator's
    /// approver would; the controller-manager then signs them. Returns the
    /// approved CSRs' names.
    pub fn approve_serving_csrs(&self, nodes: &[String]) -> Result<Vec<String>> {
        let csrs = self.json(&["get", "csr", "--output=json"])?;
        let mut approved = Vec::new();
        for csr in csrs["items"].as_array().into_iter().flatten() {
            if !serving_csr_to_approve(csr, nodes) {
                continue;
            }
            let name = csr["metadata"]["name"].as_str().unwrap_or_default();
            self.control_plane
                .kubectl(&["certificate", "approve", name])
                .with_context(|| format!("approving CSR {name}"))?;
            approved.push(name.to_string());
        }
        Ok(approved)
    }
}

/// A kubelet-serving CSR of one of `nodes`, asked by that node itself,
/// neither approved nor denied yet.
fn serving_csr_to_approve(csr: &Value, nodes: &[String]) -> bool {
    let spec = &csr["spec"];
    let decided = csr["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| !conditions.is_empty());
    let requester = spec["username"].as_str().unwrap_or_default();
    let from_a_node = requester
        .strip_prefix("system:node:")
        .is_some_and(|node| nodes.iter().any(|known| known == node));
    let in_nodes_group = spec["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|group| group == crate::cluster::pki::NODES_GROUP);
    spec["signerName"] == KUBELET_SERVING_SIGNER && !decided && from_a_node && in_nodes_group
}

/// The node a DaemonSet pod is for: its required node affinity's
/// `metadata.name` field.
fn daemon_pod_node(pod: &Value) -> Option<String> {
    let terms = pod["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        .as_array()?;
    terms.iter().find_map(|term| {
        term["matchFields"]
            .as_array()?
            .iter()
            .find(|field| field["key"] == "metadata.name" && field["operator"] == "In")?["values"]
            [0]
        .as_str()
        .map(str::to_string)
    })
}

/// Go's `time.Duration` text as the kubelet prints it: `1.5s`, `850ms`, `1m2.5s`.
fn parse_go_duration(text: &str) -> Option<f64> {
    let mut seconds = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "µs" | "us" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        seconds += value * scale;
        rest = &rest[unit_end..];
    }
    Some(seconds)
}

pub fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|condition| condition["type"] == "Ready" && condition["status"] == "True")
}

/// A node's Ready condition.
pub fn ready_condition(node: &Value) -> Option<&Value> {
    node["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|condition| condition["type"] == "Ready")
}

/// Whether the node's Ready condition is True.
pub fn node_ready(node: &Value) -> bool {
    ready_condition(node).is_some_and(|ready| ready["status"] == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_times_read_from_the_kubelets_event() {
        let event = |message: &str| ImageEvent {
            reason: "Pulled".into(),
            message: message.into(),
            time: String::new(),
        };
        let pulled = event(
            "Successfully pulled image \"10.0.2.100:5000/kube-proxy:v1.20.2\" in 12.345678901s",
        );
        assert!((pulled.pull_seconds().unwrap() - 12.345678901).abs() < 1e-9);
        assert!((event("x in 1m2.5s").pull_seconds().unwrap() - 62.5).abs() < 1e-9);
        assert!((event("x in 850ms").pull_seconds().unwrap() - 0.85).abs() < 1e-9);
        assert_eq!(
            event("Container image already present").pull_seconds(),
            None
        );
    }

    #[test]
    fn daemon_pods_name_their_node_in_their_affinity() {
        let pod = json!({ "spec": { "affinity": { "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [{
                "matchFields": [{ "key": "metadata.name", "operator": "In", "values": ["kios-a"] }],
            }] },
        } } } });
        assert_eq!(daemon_pod_node(&pod).as_deref(), Some("kios-a"));
        assert_eq!(daemon_pod_node(&json!({ "spec": {} })), None);
    }

    #[test]
    fn only_a_nodes_own_pending_serving_csrs_are_approved() {
        let nodes = vec!["kios-a".to_string()];
        let csr = |signer: &str, user: &str, conditions: Value| {
            json!({
                "spec": { "signerName": signer, "username": user, "groups": ["system:nodes", "system:authenticated"] },
                "status": { "conditions": conditions },
            })
        };
        assert!(serving_csr_to_approve(
            &csr(KUBELET_SERVING_SIGNER, "system:node:kios-a", json!([])),
            &nodes
        ));
        assert!(!serving_csr_to_approve(
            &csr(KUBELET_SERVING_SIGNER, "system:node:kios-b", json!([])),
            &nodes
        ));
        assert!(!serving_csr_to_approve(
            &csr(
                "kubernetes.io/kube-apiserver-client-kubelet",
                "system:node:kios-a",
                json!([])
            ),
            &nodes
        ));
        assert!(!serving_csr_to_approve(
            &csr(
                KUBELET_SERVING_SIGNER,
                "system:node:kios-a",
                json!([{ "type": "Approved" }])
            ),
            &nodes
        ));
    }
}
