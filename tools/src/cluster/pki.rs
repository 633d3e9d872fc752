//! The test control plane's credentials, made fresh for each run: a
//! cluster CA, certificates it signs, the service-account signing key,
//! bootstrap tokens, and the kubeconfigs that carry them.
//!
//! Every key is ECDSA P-256, which etcd, the Kubernetes 1.20 components
//! and the kubelet all accept. Certificates are valid from 1975 to 4096
//! (rcgen's defaults): a test cluster never outlives its run.

use std::fmt;
use std::io::Read;
use std::net::IpAddr;

use anyhow::{Context, Result};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::json;

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Who a client certificate speaks for: Kubernetes reads the user from
/// the common name and the groups from the organizations.
pub struct ClientIdentity<'a> {
    pub user: &'a str,
    pub groups: &'a [&'a str],
}

/// The cluster's root of trust: signs the API server's serving
/// certificate and every client certificate, and is the CA the
/// controller-manager signs approved node CSRs with.
pub struct ClusterCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert: IssuedCert,
}

impl ClusterCa {
    pub fn new() -> Result<ClusterCa> {
        let key = KeyPair::generate().context("generating the cluster CA key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name("kios-test-cluster-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .context("signing the cluster CA certificate")?;
        let issued = IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(ClusterCa {
            issuer: Issuer::new(params, key),
            cert: issued,
        })
    }

    /// A serving certificate for `dns_names` and `addresses`.
    pub fn issue_server(
        &self,
        common: &str,
        dns_names: &[&str],
        addresses: &[IpAddr],
    ) -> Result<IssuedCert> {
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(common);
        for name in dns_names {
            let name = (*name)
                .try_into()
                .with_context(|| format!("`{name}` is not a DNS name"))?;
            params.subject_alt_names.push(SanType::DnsName(name));
        }
        params
            .subject_alt_names
            .extend(addresses.iter().copied().map(SanType::IpAddress));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
            .with_context(|| format!("issuing the serving certificate for {common}"))
    }

    /// A client certificate for `identity`.
    pub fn issue_client(&self, identity: &ClientIdentity) -> Result<IssuedCert> {
        self.issue_client_params(identity, CertificateParams::default())
    }

    /// A client certificate for `identity` that expired at the end of 2020.
    pub fn issue_expired_client(&self, identity: &ClientIdentity) -> Result<IssuedCert> {
        let mut params = CertificateParams::default();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        self.issue_client_params(identity, params)
    }

    fn issue_client_params(
        &self,
        identity: &ClientIdentity,
        mut params: CertificateParams,
    ) -> Result<IssuedCert> {
        params.distinguished_name = common_name(identity.user);
        for group in identity.groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
            .with_context(|| format!("issuing the client certificate for {}", identity.user))
    }

    fn issue(&self, mut params: CertificateParams) -> Result<IssuedCert> {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn common_name(name: &str) -> DistinguishedName {
    let mut distinguished_name = DistinguishedName::new();
    distinguished_name.push(DnType::CommonName, name);
    distinguished_name
}

/// The key pair service-account tokens are signed (controller-manager,
/// API server) and verified (API server) with.
pub struct ServiceAccountKey {
    pub private_pem: String,
    pub public_pem: String,
}

impl ServiceAccountKey {
    pub fn new() -> Result<ServiceAccountKey> {
        let key = KeyPair::generate().context("generating the service-account key")?;
        Ok(ServiceAccountKey {
            private_pem: key.serialize_pem(),
            public_pem: key.public_key_pem(),
        })
    }
}

/// A bootstrap token, `<id>.<secret>`: the id names its Secret
/// (`bootstrap-token-<id>` in kube-system), the secret proves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapToken {
    pub id: String,
    pub secret: String,
}

impl BootstrapToken {
    /// A random token in the form the API server accepts: 6 and 16
    /// characters from `[a-z0-9]`.
    pub fn generate() -> Result<BootstrapToken> {
        Ok(BootstrapToken {
            id: random_token_chars(6)?,
            secret: random_token_chars(16)?,
        })
    }

    /// The Secret `kubeadm token create` makes in 1.20, with its default
    /// usages and group and without an expiry (the test cluster lives
    /// minutes).
    pub fn secret_manifest(&self) -> serde_json::Value {
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": format!("bootstrap-token-{}", self.id),
                "namespace": "kube-system",
            },
            "type": "bootstrap.kubernetes.io/token",
            "stringData": {
                "description": "kiOS test cluster node bootstrap token",
                "token-id": self.id,
                "token-secret": self.secret,
                "usage-bootstrap-authentication": "true",
                "usage-bootstrap-signing": "true",
                "auth-extra-groups": BOOTSTRAPPERS_GROUP,
            },
        })
    }
}

impl fmt::Display for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

fn random_token_chars(count: usize) -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; count];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    // 256 is not a multiple of 36: the slight bias does not matter for a test token.
    Ok(bytes
        .iter()
        .map(|byte| char::from(ALPHABET[usize::from(*byte) % ALPHABET.len()]))
        .collect())
}

/// The group kubeadm puts its node bootstrap tokens in (`auth-extra-groups`).
pub const BOOTSTRAPPERS_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// The group every node's client certificate carries.
pub const NODES_GROUP: &str = "system:nodes";

/// The ClusterRoleBindings `kubeadm init` makes for node bootstrap tokens
/// in 1.20 (cmd/kubeadm/app/phases/bootstraptoken/node/tlsbootstrap.go):
/// bootstrappers may post CSRs, the controller-manager's csrapproving
/// controller approves their node-client CSRs, and nodes' own renewals.
pub fn bootstrap_rbac_manifest() -> serde_json::Value {
    let binding = |name: &str, cluster_role: &str, group: &str| {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": { "name": name },
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": cluster_role,
            },
            "subjects": [{
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Group",
                "name": group,
            }],
        })
    };
    json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            binding(
                "kubeadm:kubelet-bootstrap",
                "system:node-bootstrapper",
                BOOTSTRAPPERS_GROUP,
            ),
            binding(
                "kubeadm:node-autoapprove-bootstrap",
                "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
                BOOTSTRAPPERS_GROUP,
            ),
            binding(
                "kubeadm:node-autoapprove-certificate-rotation",
                "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
                NODES_GROUP,
            ),
        ],
    })
}

/// How a kubeconfig's user proves who it is.
pub enum Credential<'a> {
    ClientCert(&'a IssuedCert),
    Token(&'a str),
}

/// A kubeconfig (JSON, which every YAML reader takes) for `server`,
/// trusting only `ca`, with everything embedded so it can be copied
/// into a node image as one file.
pub fn kubeconfig(server: &str, ca: &IssuedCert, user: &str, credential: Credential) -> String {
    let base64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let user_entry = match credential {
        Credential::ClientCert(cert) => json!({
            "client-certificate-data": base64(&cert.cert_pem),
            "client-key-data": base64(&cert.key_pem),
        }),
        Credential::Token(token) => json!({ "token": token }),
    };
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "kios",
            "cluster": {
                "server": server,
                "certificate-authority-data": base64(&ca.cert_pem),
            },
        }],
        "users": [{ "name": user, "user": user_entry }],
        "contexts": [{ "name": "kios", "context": { "cluster": "kios", "user": user } }],
        "current-context": "kios",
    });
    // A json! value always serializes.
    serde_json::to_string_pretty(&config).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_tokens_have_the_shape_the_api_server_accepts() {
        let token = BootstrapToken::generate().unwrap();
        let shape = |text: &str, len: usize| {
            text.len() == len
                && text
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
        };
        assert!(shape(&token.id, 6), "{token}");
        assert!(shape(&token.secret, 16), "{token}");
        assert_eq!(token.to_string(), format!("{}.{}", token.id, token.secret));
        let secret = token.secret_manifest();
        assert_eq!(
            secret["metadata"]["name"],
            format!("bootstrap-token-{}", token.id)
        );
        assert_eq!(secret["stringData"]["token-secret"], token.secret);
    }

    #[test]
    fn kubeconfigs_embed_the_ca_and_the_credential() {
        let ca = ClusterCa::new().unwrap();
        let node = ca
            .issue_client(&ClientIdentity {
                user: "system:node:n1",
                groups: &[NODES_GROUP],
            })
            .unwrap();
        let text = kubeconfig(
            "https://10.0.2.100:6443",
            &ca.cert,
            "system:node:n1",
            Credential::ClientCert(&node),
        );
        let config: serde_json::Value = serde_json::from_str(&text).unwrap();
        let decode = |value: &serde_json::Value| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value.as_str().unwrap())
                .unwrap();
            String::from_utf8(bytes).unwrap()
        };
        assert_eq!(
            config["clusters"][0]["cluster"]["server"],
            "https://10.0.2.100:6443"
        );
        assert_eq!(
            decode(&config["clusters"][0]["cluster"]["certificate-authority-data"]),
            ca.cert.cert_pem
        );
        assert_eq!(
            decode(&config["users"][0]["user"]["client-key-data"]),
            node.key_pem
        );
        let token = kubeconfig("https://h:1", &ca.cert, "b", Credential::Token("a.b"));
        assert!(token.contains("\"token\": \"a.b\""), "{token}");
    }
}
