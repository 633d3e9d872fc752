//! The kubelet's files as the init reads them at every kubelet start
//! (`config::kubelet`): `kubelet-config.yaml`'s `shutdownGracePeriod`,
//! `node-ip` and `node-labels`, each a section of the input. The grace
//! period is within (0, 1 h]; the flags carry exactly what the parsers
//! accept.
#![no_main]

use kios_abi::kubernetes::{CONFIG, KUBECONFIG, NODE_IP, NODE_LABELS};
use kios_fuzz::{sections, FuzzSys};
use kios_init::config::{kubelet, labels, node_ip};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [config, ip, node_labels] = sections::<3>(data);
    let mut sys = FuzzSys::new();
    sys.file(CONFIG, config);
    sys.file(NODE_IP, ip);
    sys.file(NODE_LABELS, node_labels);
    sys.file(KUBECONFIG, b"apiVersion: v1\n");
    if let Some(ms) = kubelet::shutdown_grace_period_ms(&mut sys) {
        assert!(ms > 0 && ms <= 3_600_000, "{ms}");
    }
    let argv = kubelet::kubelet_argv(&mut sys);
    let args: Vec<&str> = argv.iter().collect();
    assert!(!args.is_empty());
    let flag = |name: &str| args.iter().find_map(|arg| arg.strip_prefix(name));
    if ip.len() <= 8192 {
        // Single-stack or dual-stack, as the kubelet's release says.
        let expected =
            [false, true].map(|dual| node_ip::parse(ip, dual).ok().map(|(value, _)| value));
        let got = flag("--node-ip=");
        assert!(expected.iter().any(|e| e.as_deref() == got), "{args:?}");
    }
    if node_labels.len() <= 8192 {
        let list = labels::parse_file(node_labels, |_, _| {});
        let expected = (!list.is_empty()).then_some(list.as_str());
        assert_eq!(flag("--node-labels="), expected, "{args:?}");
    }
});
