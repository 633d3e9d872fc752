//! A real Kubernetes 1.20 control plane on host loopback, for the
//! cluster end-to-end tests: etcd (Debian's `etcd-server`), kube-apiserver
//! and kube-controller-manager (built from the kubelet's Debian source),
//! driven with Debian's kubectl. Every process listens on 127.0.0.1 only,
//! on ports picked free at start.
//!
//! The API server issues service-account tokens as kubeadm configures it
//! (issuer, signing key, audiences), so the kubelet can request a pod's
//! projected token (TokenRequest). The controller-manager runs only what
//! a joining node and its ordinary pods need: the CSR approver and signer
//! (the bootstrap-token flow), the service-account and token controllers
//! (so pods pass the ServiceAccount admission plugin and get their
//! token), namespaces, Endpoints, EndpointSlices and DaemonSets (a
//! Service's backends and kube-proxy). There is no scheduler (pods name
//! their node, or a test binds them) and no node lifecycle controller (a
//! node's Ready condition comes from its kubelet).
//!
//! A guest reaches the API server as [`GUEST_SERVER`], through the QEMU
//! forward [`ControlPlane::guest_forward`].
//!
//! The API server speaks to kubelets as kubeadm configures it: with a
//! client certificate of the cluster CA for `kube-apiserver-kubelet-client`
//! in `system:masters`. Started with [`ControlPlane::start_reaching_kubelets`],
//! it also verifies each kubelet's serving certificate against the cluster
//! CA and reaches the kubelets by their names through a hosts file of its
//! own ([`crate::cluster::kubelet_hosts`]).

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cluster::kubelet_hosts::KubeletHosts;
use crate::cluster::pki::{
    bootstrap_rbac_manifest, kubeconfig, BootstrapToken, ClientIdentity, ClusterCa, Credential,
    ServiceAccountKey, NODES_GROUP,
};
use crate::components::bom::{fetch_component, Bom};
use crate::host::arch::Arch;
use crate::host::child::{killed_with_parent, killed_with_parent_in_private_mounts};
use crate::host::command::{output_of, render};
use crate::host::fs::log_tail;
use crate::host::packages::ensure_installed;
use crate::host::progress::with_step;

/// The address a QEMU user-mode guest reaches the API server at.
pub const GUEST_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
pub const GUEST_PORT: u16 = 6443;
/// The API server as the guest sees it: the server of the node's kubeconfigs.
pub const GUEST_SERVER: &str = "https://10.0.2.100:6443";

/// What [`ControlPlane::guest_forward`] runs on the host.
pub const GUEST_FORWARD_PACKAGES: &[&str] = &["socat"];

/// The Service network; it only has to stay clear of QEMU's 10.0.2.0/24.
const SERVICE_CIDR: &str = "10.96.0.0/12";
const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The controllers a node's ordinary pods and the cluster's kube-proxy need:
/// the CSR ones (bootstrap tokens, serving certificates), service accounts
/// and their tokens, namespaces (deleting one empties it), Endpoints and
/// EndpointSlices (a Service's backends; kube-proxy 1.20 reads the slices)
/// and DaemonSets (kube-proxy). No Deployment or ReplicaSet: the tests
/// create pods directly.
const CONTROLLERS: &str = "csrapproving,csrsigning,csrcleaner,serviceaccount,serviceaccount-token,\
                           namespace,endpoint,endpointslice,daemonset";
/// etcd, the API server and the controllers together on 2 busy cores: a
/// few seconds usually, much more when the CPU is shared.
const START_TIMEOUT: Duration = Duration::from_secs(120);
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The running control plane. Dropping it kills and reaps its processes
/// and removes etcd's data; certificates, kubeconfigs and logs stay in
/// the work directory.
pub struct ControlPlane {
    workdir: PathBuf,
    kubectl: PathBuf,
    port: u16,
    ca: ClusterCa,
    admin_kubeconfig: PathBuf,
    etcd_data: PathBuf,
    /// In start order; stopped in reverse.
    processes: Vec<Process>,
}

struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// The host binaries, from the bill of materials.
struct Binaries {
    etcd: PathBuf,
    kube_apiserver: PathBuf,
    kube_controller_manager: PathBuf,
    kubectl: PathBuf,
}

impl Binaries {
    /// Fetches or builds them for the host (the builds are cached).
    fn fetch(bom: &Bom) -> Result<Binaries> {
        let arch = Arch::host()?;
        Ok(Binaries {
            etcd: fetch_component(bom, "etcd", arch)?.join("usr/bin/etcd"),
            kube_apiserver: fetch_component(bom, "kube-apiserver", arch)?,
            kube_controller_manager: fetch_component(bom, "kube-controller-manager", arch)?,
            kubectl: fetch_component(bom, "kubectl", arch)?.join("usr/bin/kubectl"),
        })
    }
}

impl ControlPlane {
    /// Fetches the binaries, writes fresh credentials into `workdir`
    /// (emptied first), starts etcd, the API server and the
    /// controller-manager, and returns once the API server is ready and
    /// the controllers serve the `default` namespace's service account.
    /// Also creates the RBAC bindings `kubeadm init` makes for node
    /// bootstrap tokens.
    ///
    /// The processes get SIGKILL if the thread that started them ends,
    /// so a test killed half-way leaks none: keep the value on that thread.
    pub fn start(bom: &Bom, workdir: &Path) -> Result<ControlPlane> {
        let binaries = Binaries::fetch(bom)?;
        with_step(
            "starting the control plane (etcd, kube-apiserver, kube-controller-manager)",
            || ControlPlane::start_with(&binaries, workdir, None),
        )
    }

    /// As [`ControlPlane::start`], with an API server that reaches each
    /// node's kubelet by the node's name, through `hosts` (bind-mounted over
    /// its `/etc/hosts` in a mount namespace of its own: needs root), and
    /// verifies the kubelet's serving certificate against the cluster CA.
    pub fn start_reaching_kubelets(
        bom: &Bom,
        workdir: &Path,
        hosts: &KubeletHosts,
    ) -> Result<ControlPlane> {
        let binaries = Binaries::fetch(bom)?;
        with_step(
            "starting the control plane (etcd, kube-apiserver reaching the kubelets, \
             kube-controller-manager)",
            || ControlPlane::start_with(&binaries, workdir, Some(hosts.path())),
        )
    }

    fn start_with(
        binaries: &Binaries,
        workdir: &Path,
        kubelet_hosts: Option<&Path>,
    ) -> Result<ControlPlane> {
        if workdir.exists() {
            std::fs::remove_dir_all(workdir)
                .with_context(|| format!("emptying {}", workdir.display()))?;
        }
        std::fs::create_dir_all(workdir)
            .with_context(|| format!("creating {}", workdir.display()))?;
        let [etcd_client_port, etcd_peer_port, port] = free_loopback_ports()?;
        let mut control_plane = ControlPlane {
            workdir: workdir.to_path_buf(),
            kubectl: binaries.kubectl.clone(),
            port,
            ca: ClusterCa::new()?,
            admin_kubeconfig: workdir.join("admin.kubeconfig"),
            etcd_data: new_etcd_data_dir()?,
            processes: Vec::new(),
        };
        let files = control_plane.write_credentials()?;

        let etcd_url = format!("http://127.0.0.1:{etcd_client_port}");
        let etcd_peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let mut etcd = Command::new(&binaries.etcd);
        etcd.arg("--name=kios")
            .arg(format!("--data-dir={}", control_plane.etcd_data.display()))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!("--listen-peer-urls={etcd_peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={etcd_peer_url}"))
            .arg(format!("--initial-cluster=kios={etcd_peer_url}"))
            // etcd 3.4 refuses to start on arm64 without it; amd64 ignores it.
            .env("ETCD_UNSUPPORTED_ARCH", Arch::host()?.debian_name());
        control_plane.spawn("etcd", &mut etcd, Mounts::Host)?;

        let path = |name: &str| workdir.join(name).display().to_string();
        let mut apiserver = Command::new(&binaries.kube_apiserver);
        apiserver
            .arg(format!("--etcd-servers={etcd_url}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={port}"))
            // 1.20 still serves plain HTTP on 127.0.0.1:8080 unless told not to.
            .arg("--insecure-port=0")
            // Endpoints may not hold loopback addresses; nothing in the test needs them.
            .arg("--endpoint-reconciler-type=none")
            .arg(format!("--cert-dir={}", path("apiserver")))
            .arg(format!("--tls-cert-file={}", files.apiserver_cert))
            .arg(format!("--tls-private-key-file={}", files.apiserver_key))
            .arg(format!("--client-ca-file={}", files.ca_cert))
            .arg("--authorization-mode=Node,RBAC")
            .arg("--enable-admission-plugins=NodeRestriction")
            .arg("--enable-bootstrap-token-auth=true")
            // The node's static pods are privileged, and their mirror pods pass through here.
            .arg("--allow-privileged=true")
            .arg(format!("--service-cluster-ip-range={SERVICE_CIDR}"))
            // Required flags since 1.20.
            .arg(format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"))
            .arg(format!(
                "--service-account-signing-key-file={}",
                files.service_account_private
            ))
            .arg(format!(
                "--service-account-key-file={}",
                files.service_account_public
            ))
            // What a token the kubelet requests for a pod (TokenRequest, a
            // projected serviceAccountToken volume) is for when the pod
            // names no audience: the API server itself, as under kubeadm.
            .arg(format!("--api-audiences={SERVICE_ACCOUNT_ISSUER}"))
            // How it authenticates to kubelets (logs, exec, port-forward), as under kubeadm.
            .arg(format!(
                "--kubelet-client-certificate={}",
                files.kubelet_client_cert
            ))
            .arg(format!("--kubelet-client-key={}", files.kubelet_client_key));
        let mounts = match kubelet_hosts {
            Some(hosts) => {
                apiserver
                    // The node's name, which its hosts file maps to the VM's forward.
                    .arg("--kubelet-preferred-address-types=Hostname")
                    // The serving certificate's DNS name is the node's name.
                    .arg(format!("--kubelet-certificate-authority={}", files.ca_cert));
                Mounts::PrivateHosts(hosts.to_path_buf())
            }
            None => Mounts::Host,
        };
        control_plane.spawn("kube-apiserver", &mut apiserver, mounts)?;
        control_plane.wait_until("the API server is ready", |control_plane| {
            Ok(control_plane
                .kubectl(&["get", "--raw", "/readyz"])
                .is_ok_and(|body| body.trim() == "ok"))
        })?;

        let mut controller_manager = Command::new(&binaries.kube_controller_manager);
        controller_manager
            .arg(format!(
                "--kubeconfig={}",
                files.controller_manager_kubeconfig
            ))
            .arg(format!("--controllers={CONTROLLERS}"))
            .arg("--leader-elect=false")
            // No listener at all: 1.20 serves plain HTTP on 0.0.0.0:10252 and
            // HTTPS on 10257 by default, and nothing here reads them.
            .arg("--port=0")
            .arg("--secure-port=0")
            // Each controller acts as its own service account, as under kubeadm:
            // the controller-manager's own role cannot approve or sign CSRs.
            .arg("--use-service-account-credentials=true")
            .arg(format!("--cluster-signing-cert-file={}", files.ca_cert))
            .arg(format!("--cluster-signing-key-file={}", files.ca_key))
            .arg(format!("--root-ca-file={}", files.ca_cert))
            .arg(format!(
                "--service-account-private-key-file={}",
                files.service_account_private
            ));
        control_plane.spawn(
            "kube-controller-manager",
            &mut controller_manager,
            Mounts::Host,
        )?;

        let rbac = workdir.join("bootstrap-rbac.json");
        write_file(&rbac, &bootstrap_rbac_manifest().to_string())?;
        control_plane.kubectl(&["apply", "-f", &rbac.display().to_string()])?;
        // Pods are admitted only once their service account has a token.
        control_plane.wait_until(
            "the controllers make the default service account's token",
            |control_plane| {
                Ok(control_plane
                    .kubectl(&[
                        "get",
                        "serviceaccount",
                        "default",
                        "--namespace=default",
                        "--output=jsonpath={.secrets[0].name}",
                    ])
                    .is_ok_and(|name| !name.trim().is_empty()))
            },
        )?;
        Ok(control_plane)
    }

    /// Writes the CA, the serving and client certificates, the
    /// service-account key and the admin and controller-manager kubeconfigs.
    fn write_credentials(&self) -> Result<CredentialFiles> {
        let file = |name: &str, text: &str| -> Result<String> {
            let path = self.workdir.join(name);
            write_file(&path, text)?;
            Ok(path.display().to_string())
        };
        let apiserver = self.ca.issue_server(
            "kube-apiserver",
            &["localhost"],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V4(GUEST_ADDRESS)],
        )?;
        let service_account = ServiceAccountKey::new()?;
        let admin = self.ca.issue_client(&ClientIdentity {
            user: "kubernetes-admin",
            groups: &["system:masters"],
        })?;
        let controller_manager = self.ca.issue_client(&ClientIdentity {
            user: "system:kube-controller-manager",
            groups: &[],
        })?;
        let kubelet_client = self.ca.issue_client(&ClientIdentity {
            user: "kube-apiserver-kubelet-client",
            groups: &["system:masters"],
        })?;
        let local_kubeconfig = |user: &str, cert| {
            kubeconfig(
                &self.local_server(),
                &self.ca.cert,
                user,
                Credential::ClientCert(cert),
            )
        };
        write_file(
            &self.admin_kubeconfig,
            &local_kubeconfig("kubernetes-admin", &admin),
        )?;
        Ok(CredentialFiles {
            ca_cert: file("ca.crt", &self.ca.cert.cert_pem)?,
            ca_key: file("ca.key", &self.ca.cert.key_pem)?,
            apiserver_cert: file("apiserver.crt", &apiserver.cert_pem)?,
            apiserver_key: file("apiserver.key", &apiserver.key_pem)?,
            service_account_private: file("sa.key", &service_account.private_pem)?,
            service_account_public: file("sa.pub", &service_account.public_pem)?,
            kubelet_client_cert: file("apiserver-kubelet-client.crt", &kubelet_client.cert_pem)?,
            kubelet_client_key: file("apiserver-kubelet-client.key", &kubelet_client.key_pem)?,
            controller_manager_kubeconfig: file(
                "controller-manager.kubeconfig",
                &local_kubeconfig("system:kube-controller-manager", &controller_manager),
            )?,
        })
    }

    /// Starts `command` with its output in `<workdir>/<name>.log`.
    fn spawn(&mut self, name: &'static str, command: &mut Command, mounts: Mounts) -> Result<()> {
        let log = self.workdir.join(format!("{name}.log"));
        let output =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let errors = output
            .try_clone()
            .with_context(|| format!("opening {}", log.display()))?;
        let mut wrapped;
        let command = match mounts {
            Mounts::Host => {
                killed_with_parent(command);
                command
            }
            Mounts::PrivateHosts(hosts) => {
                // In its own mount namespace, the shell binds the hosts
                // file over /etc/hosts, then execs the command (same PID).
                wrapped = Command::new("/bin/sh");
                wrapped
                    .arg("-c")
                    .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
                    .arg(&hosts)
                    .arg(command.get_program())
                    .args(command.get_args());
                killed_with_parent_in_private_mounts(&mut wrapped);
                &mut wrapped
            }
        };
        command.stdin(Stdio::null()).stdout(output).stderr(errors);
        let child = command.spawn().with_context(|| {
            format!(
                "starting `{}` (a private mount namespace needs root)",
                render(command)
            )
        })?;
        self.processes.push(Process { name, child, log });
        Ok(())
    }

    /// Polls `ready` until it says yes; fails at the timeout or as soon as
    /// a process has exited, quoting that process's log.
    fn wait_until(
        &mut self,
        what: &str,
        ready: impl Fn(&ControlPlane) -> Result<bool>,
    ) -> Result<()> {
        let started = Instant::now();
        loop {
            if ready(self)? {
                return Ok(());
            }
            for process in &mut self.processes {
                if let Some(status) = process
                    .child
                    .try_wait()
                    .with_context(|| format!("checking on {}", process.name))?
                {
                    bail!(
                        "{} exited ({status}) before {what}; the end of {}:\n{}",
                        process.name,
                        process.log.display(),
                        log_tail(&process.log, 20)
                    );
                }
            }
            if started.elapsed() > START_TIMEOUT {
                let logs: Vec<String> = self
                    .processes
                    .iter()
                    .map(|process| {
                        format!("{}:\n{}", process.log.display(), log_tail(&process.log, 20))
                    })
                    .collect();
                bail!(
                    "gave up after {} s waiting until {what}; the logs' ends:\n{}",
                    START_TIMEOUT.as_secs(),
                    logs.join("\n")
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The API server as the host reaches it.
    pub fn local_server(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The API server's port on host loopback.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the credentials, kubeconfigs and logs are.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// The cluster CA's certificate (PEM).
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca.cert.cert_pem
    }

    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// Runs kubectl as the cluster admin; returns its stdout.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.kubectl_with(&self.admin_kubeconfig, args)
    }

    /// Runs kubectl with `kubeconfig`'s server and credentials; returns its
    /// stdout, or an error carrying its stderr.
    pub fn kubectl_with(&self, kubeconfig: &Path, args: &[&str]) -> Result<String> {
        output_of(&mut self.kubectl_command_with(kubeconfig, args))
    }

    /// kubectl as the cluster admin, to spawn (a long-running
    /// `port-forward`, say).
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        self.kubectl_command_with(&self.admin_kubeconfig, args)
    }

    fn kubectl_command_with(&self, kubeconfig: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(&self.kubectl);
        command
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            // Not ~/.kube/cache: every run has a new port.
            .arg(format!(
                "--cache-dir={}",
                self.workdir.join("kubectl-cache").display()
            ))
            .args(args);
        command
    }

    /// The kubectl binary the control plane is driven with (Debian's, unpacked).
    pub fn kubectl_path(&self) -> &Path {
        &self.kubectl
    }

    /// A kubeconfig for the node `node_name` with a client certificate for
    /// `system:node:<node_name>` in `system:nodes`, signed by the cluster
    /// CA: what the node's `/etc/kubernetes/kubeconfig` holds. `server` is
    /// usually [`GUEST_SERVER`].
    pub fn node_kubeconfig(&self, server: &str, node_name: &str) -> Result<String> {
        self.kubeconfig_of_node(server, node_name, false)
    }

    /// The same with a certificate that expired at the end of 2020.
    pub fn expired_node_kubeconfig(&self, server: &str, node_name: &str) -> Result<String> {
        self.kubeconfig_of_node(server, node_name, true)
    }

    fn kubeconfig_of_node(&self, server: &str, node_name: &str, expired: bool) -> Result<String> {
        let user = format!("system:node:{node_name}");
        let identity = ClientIdentity {
            user: &user,
            groups: &[NODES_GROUP],
        };
        let cert = if expired {
            self.ca.issue_expired_client(&identity)?
        } else {
            self.ca.issue_client(&identity)?
        };
        Ok(kubeconfig(
            server,
            &self.ca.cert,
            &user,
            Credential::ClientCert(&cert),
        ))
    }

    /// Creates a new bootstrap token through the API (its
    /// `bootstrap-token-<id>` Secret in kube-system).
    pub fn create_bootstrap_token(&self) -> Result<BootstrapToken> {
        let token = BootstrapToken::generate()?;
        let manifest = self
            .workdir
            .join(format!("bootstrap-token-{}.json", token.id));
        write_file(&manifest, &token.secret_manifest().to_string())?;
        self.kubectl(&["create", "-f", &manifest.display().to_string()])
            .context("creating the bootstrap token's Secret")?;
        Ok(token)
    }

    /// A bootstrap kubeconfig for a node, with a bootstrap token made for
    /// it: what the node's `/etc/kubernetes/bootstrap-kubeconfig` holds.
    /// `server` is usually [`GUEST_SERVER`].
    pub fn bootstrap_kubeconfig(&self, server: &str) -> Result<String> {
        let token = self.create_bootstrap_token()?;
        Ok(self.token_kubeconfig(server, &token.to_string()))
    }

    /// A kubeconfig that presents `token` as a bearer token.
    pub fn token_kubeconfig(&self, server: &str, token: &str) -> String {
        kubeconfig(server, &self.ca.cert, "token", Credential::Token(token))
    }

    /// The `guestfwd=` option of QEMU's user-mode `-nic`/`-netdev` that
    /// takes the guest's [`GUEST_SERVER`] to this API server, after making
    /// sure socat is installed: one socat per connection, because the
    /// plain `-tcp:` form carries a single connection and the kubelet
    /// opens several.
    pub fn guest_forward(&self) -> Result<String> {
        ensure_installed(GUEST_FORWARD_PACKAGES)?;
        Ok(format!(
            "guestfwd=tcp:{GUEST_ADDRESS}:{GUEST_PORT}-cmd:socat STDIO TCP:127.0.0.1:{}",
            self.port
        ))
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for process in self.processes.iter_mut().rev() {
            // Best effort: it may have exited already; either way it is reaped.
            let _ = process.child.kill();
            let _ = process.child.wait();
        }
        // Best effort: a leftover data dir in the temp dir harms nothing.
        let _ = std::fs::remove_dir_all(&self.etcd_data);
    }
}

/// Where a process finds its files.
enum Mounts {
    /// The host's mounts.
    Host,
    /// A mount namespace of its own, with this file bound over `/etc/hosts`.
    PrivateHosts(PathBuf),
}

/// Paths the process flags name.
struct CredentialFiles {
    ca_cert: String,
    ca_key: String,
    apiserver_cert: String,
    apiserver_key: String,
    service_account_private: String,
    service_account_public: String,
    kubelet_client_cert: String,
    kubelet_client_key: String,
    controller_manager_kubeconfig: String,
}

/// Ports the kernel says are free on 127.0.0.1, all different: the
/// listeners are held until every port is chosen. Another process could
/// still take one before our process binds it; that start then fails
/// with "address already in use" in the log.
fn free_loopback_ports<const N: usize>() -> Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .context("picking free ports on 127.0.0.1")?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener
            .local_addr()
            .context("reading a picked port")?
            .port();
    }
    Ok(ports)
}

/// etcd's data, in the system temp dir: it is thrown away with the control plane.
fn new_etcd_data_dir() -> Result<PathBuf> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "kios-etcd-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(dir)
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
