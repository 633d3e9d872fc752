//! What the node is told to be: the kernel command line, the hostname,
//! and the runtime's and the kubelet's command lines computed from
//! `/etc/kubernetes`.

pub mod argv;
pub mod cmdline;
pub mod hostname;
pub mod kubelet;
pub mod labels;
pub mod node_ip;
