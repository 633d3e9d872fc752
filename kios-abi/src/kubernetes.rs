//! The files in `/etc/kubernetes` the init turns into kubelet flags, and
//! the paths the kubelet's flags name.

pub const DIR: &str = "/etc/kubernetes";
/// `--config`.
pub const CONFIG: &str = "/etc/kubernetes/kubelet-config.yaml";
/// `--kubeconfig`, when the node has its credentials.
pub const KUBECONFIG: &str = "/etc/kubernetes/kubeconfig";
/// `--bootstrap-kubeconfig`, when it joins with a token.
pub const BOOTSTRAP_KUBECONFIG: &str = "/etc/kubernetes/bootstrap-kubeconfig";
/// Where the kubelet writes the kubeconfig a bootstrap earned.
pub const BOOTSTRAPPED_KUBECONFIG: &str = "/var/lib/kubelet/kubeconfig";
/// `--node-labels`: one `key=value` per line.
pub const NODE_LABELS: &str = "/etc/kubernetes/node-labels";
/// `--node-ip`: one address, or IPv4,IPv6.
pub const NODE_IP: &str = "/etc/kubernetes/node-ip";
/// The cluster's CA where kubeadm puts it: on a joined node, the kubelet
/// takes it as `--client-ca-file` to authenticate the API server's calls
/// (logs, exec, port-forward).
pub const CLUSTER_CA: &str = "/etc/kubernetes/pki/ca.crt";
/// `--image-credential-provider-config`.
pub const CREDENTIAL_PROVIDERS: &str = "/etc/kubernetes/credential-providers.yaml";
/// `--image-credential-provider-bin-dir`.
pub const CREDENTIAL_PROVIDER_BIN_DIR: &str = "/usr/libexec/kubernetes/credential-providers";
/// Expands to [`STATIC_PODS`], for `concat!` (the init's message about
/// the kubelet's defaults names it at compile time).
#[macro_export]
macro_rules! static_pods {
    () => {
        "/etc/kubernetes/manifests"
    };
}

/// Static pods (`staticPodPath` in the shipped config).
pub const STATIC_PODS: &str = static_pods!();
