//! The test control plane on host loopback: it starts and gets ready,
//! bootstrap tokens made through the API authenticate as node
//! bootstrappers whose node-client CSRs the controller-manager approves
//! and signs, a node's client certificate is accepted as that node,
//! and a token the server does not know is rejected.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use kios_tools::cluster::control_plane::ControlPlane;
use kios_tools::cluster::pki::BOOTSTRAPPERS_GROUP;
use kios_tools::components::bom::{Bom, BOM_FILE};
use kios_tools::host::workspace::Workspace;

fn write(path: PathBuf, text: &str) -> anyhow::Result<PathBuf> {
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// `kubectl auth can-i`, which exits 0 for yes and 1 for no.
fn can_i(control_plane: &ControlPlane, kubeconfig: &Path, verb: &str, resource: &str) -> bool {
    control_plane
        .kubectl_with(kubeconfig, &["auth", "can-i", "--quiet", verb, resource])
        .is_ok()
}

/// Posts, with `kubeconfig`'s credentials, the CSR a kubelet makes for
/// its client certificate; returns the CSR object's name.
fn post_node_client_csr(
    control_plane: &ControlPlane,
    kubeconfig: &Path,
    node_name: &str,
) -> anyhow::Result<String> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("system:node:{node_name}"),
    );
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    let request = params.serialize_request(&key)?.pem()?;
    let name = format!("node-csr-{node_name}");
    let manifest = write(
        control_plane.workdir().join("node-csr.json"),
        &serde_json::json!({
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": { "name": name },
            "spec": {
                "request": base64::engine::general_purpose::STANDARD.encode(request),
                "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                "usages": ["digital signature", "key encipherment", "client auth"],
            },
        })
        .to_string(),
    )?;
    control_plane.kubectl_with(
        kubeconfig,
        &["create", "-f", &manifest.display().to_string()],
    )?;
    Ok(name)
}

#[test]
#[ignore = "builds kube-apiserver and kube-controller-manager once (cached), runs a control plane: run by cargo kios test"]
fn control_plane_serves_admin_bootstrap_tokens_and_node_certificates() -> anyhow::Result<()> {
    let workspace = Workspace::locate()?;
    let bom = Bom::load(&workspace.root.join(BOM_FILE))?;
    let workdir = workspace.output_dir()?.join("control-plane-test");

    let started = Instant::now();
    let control_plane = ControlPlane::start(&bom, &workdir)?;
    eprintln!(
        "control plane on {} (started in {:.1} s, binaries included)",
        control_plane.local_server(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        control_plane.kubectl(&["get", "--raw", "/readyz"])?.trim(),
        "ok"
    );
    assert!(control_plane.guest_forward()?.ends_with(&format!(
        "-cmd:socat STDIO TCP:127.0.0.1:{}",
        control_plane.port()
    )));

    let token = control_plane.create_bootstrap_token()?;
    let bootstrap = write(
        workdir.join("bootstrap.kubeconfig"),
        &control_plane.token_kubeconfig(&control_plane.local_server(), &token.to_string()),
    )?;
    let review = write(
        workdir.join("token-review.json"),
        &serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": { "token": token.to_string() },
        })
        .to_string(),
    )?;
    let reviewed: serde_json::Value = serde_json::from_str(&control_plane.kubectl(&[
        "create",
        "-f",
        &review.display().to_string(),
        "--output=json",
    ])?)?;
    let user = &reviewed["status"]["user"];
    assert_eq!(
        user["username"],
        format!("system:bootstrap:{}", token.id),
        "{reviewed}"
    );
    let groups = user["groups"].as_array().context("no groups")?;
    assert!(groups.contains(&BOOTSTRAPPERS_GROUP.into()), "{reviewed}");
    assert!(can_i(
        &control_plane,
        &bootstrap,
        "create",
        "certificatesigningrequests"
    ));
    assert!(!can_i(&control_plane, &bootstrap, "list", "secrets"));

    // What a kubelet does with its bootstrap kubeconfig: ask for a node
    // client certificate, which the controller-manager approves and signs.
    let csr_name = post_node_client_csr(&control_plane, &bootstrap, "kios-bootstrapped-node")?;
    let started = Instant::now();
    let issued = loop {
        let issued = control_plane.kubectl(&[
            "get",
            "csr",
            &csr_name,
            "--output=jsonpath={.status.certificate}",
        ])?;
        if !issued.trim().is_empty() || started.elapsed() > Duration::from_secs(60) {
            break issued;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        !issued.trim().is_empty(),
        "the bootstrapper's CSR was not approved and signed within 60 s: {}",
        control_plane.kubectl(&["get", "csr", &csr_name, "--output=yaml"])?
    );
    eprintln!(
        "the bootstrapper's CSR was approved and signed in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let node = write(
        workdir.join("node.kubeconfig"),
        &control_plane.node_kubeconfig(&control_plane.local_server(), "kios-test-node")?,
    )?;
    assert!(can_i(&control_plane, &node, "get", "nodes"));
    let node_object = write(
        workdir.join("node.json"),
        r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"kios-test-node"}}"#,
    )?;
    control_plane.kubectl_with(&node, &["create", "-f", &node_object.display().to_string()])?;
    assert_eq!(
        control_plane
            .kubectl(&["get", "node", "kios-test-node", "--output=name"])?
            .trim(),
        "node/kios-test-node"
    );

    let unknown = write(
        workdir.join("unknown-token.kubeconfig"),
        &control_plane.token_kubeconfig(&control_plane.local_server(), "abcdef.0123456789abcdef"),
    )?;
    let refused = control_plane
        .kubectl_with(&unknown, &["get", "--raw", "/readyz"])
        .expect_err("an unknown bootstrap token must be refused");
    assert!(
        format!("{refused:#}").contains("Unauthorized"),
        "{refused:#}"
    );
    Ok(())
}
