//! A real container registry on host loopback for the cluster tests:
//! Debian's `docker-registry` (the Docker/OCI distribution registry),
//! unpacked from its .deb rather than installed (the package would start
//! a registry service), serving plain HTTP on 127.0.0.1 on a port picked
//! free at start, with a generated config and its storage in a temporary
//! directory.
//!
//! Images are pushed over the registry's HTTP API (distribution spec v2)
//! by a small blocking client on `ureq`: each blob with a POST and a PUT
//! (skipped when a HEAD finds it), then each manifest by digest, then a
//! tag. The maintained Rust registry clients (`oci-client`, formerly
//! `oci-distribution`, and `dkregistry`) are async on tokio and reqwest;
//! the tools are synchronous and already use `ureq`, and the few calls
//! needed fit in this file. Every request goes to 127.0.0.1: the client
//! ignores proxy variables, follows no redirect and refuses an upload
//! location elsewhere.
//!
//! A guest reaches the registry as [`GUEST_REGISTRY`], through the QEMU
//! forward [`Registry::guest_forward`]; containerd needs
//! [`containerd_hosts_toml`] to pull from it over plain HTTP.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use ureq::http::Response;
use ureq::{Agent, Body};

use crate::cluster::control_plane::{GUEST_ADDRESS, GUEST_FORWARD_PACKAGES};
use crate::components::bom::{fetch_component, Bom};
use crate::host::arch::Arch;
use crate::host::child::killed_with_parent;
use crate::host::command::render;
use crate::host::fs::log_tail;
use crate::host::packages::ensure_installed;
use crate::host::progress::with_step;

/// The port the guest reaches the registry on, at the API server's address.
pub const GUEST_PORT: u16 = 5000;
/// The registry as a guest sees it: the host part of the references a node pulls.
pub const GUEST_REGISTRY: &str = "10.0.2.100:5000";

/// OCI's media types for what is pushed here.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// What a manifest GET accepts: OCI's types and Docker's schema 2.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

const START_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// The running registry. Dropping it kills and reaps the process and
/// removes the storage; the config and the log stay in the work directory.
pub struct Registry {
    workdir: PathBuf,
    port: u16,
    child: Child,
    log: PathBuf,
    agent: Agent,
    /// Removed when dropped.
    _storage: tempfile::TempDir,
}

/// An image pushed under a tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedImage {
    pub repository: String,
    pub tag: String,
    /// The digest of what the tag points at (an index or a manifest).
    pub digest: String,
    pub media_type: String,
    /// Each platform's manifest: (architecture, manifest digest).
    pub manifests: Vec<(String, String)>,
}

impl PushedImage {
    /// `<registry>/<repository>:<tag>`, e.g. with [`GUEST_REGISTRY`].
    pub fn reference(&self, registry: &str) -> String {
        format!("{registry}/{}:{}", self.repository, self.tag)
    }

    /// The reference a node pulls: `10.0.2.100:5000/<repository>:<tag>`.
    pub fn guest_reference(&self) -> String {
        self.reference(GUEST_REGISTRY)
    }
}

/// A manifest or index as the registry serves it.
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    /// The registry's `Docker-Content-Digest` header.
    pub digest: String,
}

impl Registry {
    /// Fetches Debian's registry for the host, writes its config into
    /// `workdir` (emptied first) and starts it on a free loopback port;
    /// returns once it answers `GET /v2/`.
    ///
    /// The process gets SIGKILL if the thread that started it ends, so a
    /// test killed half-way leaks none: keep the value on that thread.
    pub fn start(bom: &Bom, workdir: &Path) -> Result<Registry> {
        let package = fetch_component(bom, "docker-registry", Arch::host()?)?;
        let binary = package.join("usr/bin/docker-registry");
        with_step("starting the registry (Debian's docker-registry)", || {
            Registry::start_with(&binary, workdir)
        })
    }

    fn start_with(binary: &Path, workdir: &Path) -> Result<Registry> {
        if workdir.exists() {
            std::fs::remove_dir_all(workdir)
                .with_context(|| format!("emptying {}", workdir.display()))?;
        }
        std::fs::create_dir_all(workdir)
            .with_context(|| format!("creating {}", workdir.display()))?;
        let storage = tempfile::Builder::new()
            .prefix("kios-registry-")
            .tempdir()
            .context("creating the registry's storage directory")?;
        let port = free_loopback_port()?;
        let config = workdir.join("config.yml");
        std::fs::write(&config, registry_config(storage.path(), port)?)
            .with_context(|| format!("writing {}", config.display()))?;

        let log = workdir.join("registry.log");
        let output =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let errors = output
            .try_clone()
            .with_context(|| format!("opening {}", log.display()))?;
        let mut command = Command::new(binary);
        command.arg("serve").arg(&config);
        // REGISTRY_* variables override the config file: only ours counts.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("REGISTRY_") {
                command.env_remove(name);
            }
        }
        command.stdin(Stdio::null()).stdout(output).stderr(errors);
        killed_with_parent(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("starting `{}`", render(&command)))?;
        let mut registry = Registry {
            workdir: workdir.to_path_buf(),
            port,
            child,
            log,
            agent: loopback_agent(),
            _storage: storage,
        };
        registry.wait_until_ready()?;
        Ok(registry)
    }

    fn wait_until_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Ok(response) = self.agent.get(self.url("/v2/")).call() {
                if response.status() == 200 {
                    return Ok(());
                }
            }
            if let Some(status) = self.child.try_wait().context("checking on the registry")? {
                bail!(
                    "the registry exited ({status}) before it answered; the end of {}:\n{}",
                    self.log.display(),
                    log_tail(&self.log, 20)
                );
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "the registry did not answer GET /v2/ within {} s; the end of {}:\n{}",
                    START_TIMEOUT.as_secs(),
                    self.log.display(),
                    log_tail(&self.log, 20)
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The registry's port on host loopback.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`: the registry as the host reaches it.
    pub fn local_address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where the config and the log are.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The `guestfwd=` option of QEMU's user-mode network that takes the
    /// guest's [`GUEST_REGISTRY`] to this registry (one socat per
    /// connection, as for the API server), after making sure socat is installed.
    pub fn guest_forward(&self) -> Result<String> {
        ensure_installed(GUEST_FORWARD_PACKAGES)?;
        Ok(format!(
            "guestfwd=tcp:{GUEST_ADDRESS}:{GUEST_PORT}-cmd:socat STDIO TCP:127.0.0.1:{}",
            self.port
        ))
    }

    /// Pushes the images of one or more OCI image-layout archives (as
    /// [`crate::components::oci`] writes them, one platform each) as
    /// `repository:tag`: with one manifest the tag names it, with several
    /// it names an image index of them all.
    pub fn push_archives(
        &self,
        archives: &[PathBuf],
        repository: &str,
        tag: &str,
    ) -> Result<PushedImage> {
        check_repository(repository)?;
        let mut descriptors: Vec<Value> = Vec::new();
        for archive in archives {
            let layout = OciLayout::read(archive)?;
            for descriptor in layout.manifest_descriptors()? {
                self.push_manifest_and_blobs(&layout, repository, &descriptor)
                    .with_context(|| format!("pushing {}", archive.display()))?;
                descriptors.push(descriptor);
            }
        }
        let manifests = descriptors
            .iter()
            .map(|descriptor| {
                (
                    descriptor["platform"]["architecture"]
                        .as_str()
                        .unwrap_or("unknown")
                        .to_string(),
                    descriptor["digest"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect();
        let (bytes, media_type) = match descriptors.as_slice() {
            [] => bail!("the archives hold no image"),
            [single] => {
                let digest = single["digest"].as_str().unwrap_or_default();
                let manifest = self.manifest(repository, digest)?;
                (manifest.bytes, manifest.media_type)
            }
            several => {
                let index = json!({
                    "schemaVersion": 2,
                    "mediaType": OCI_INDEX,
                    "manifests": several
                        .iter()
                        .map(|descriptor| json!({
                            "mediaType": descriptor["mediaType"],
                            "digest": descriptor["digest"],
                            "size": descriptor["size"],
                            "platform": descriptor["platform"],
                        }))
                        .collect::<Vec<_>>(),
                });
                // serde_json's maps are sorted: the same images give the same index.
                let bytes = serde_json::to_vec(&index).context("encoding the image index")?;
                (bytes, OCI_INDEX.to_string())
            }
        };
        let digest = self.put_manifest(repository, tag, &bytes, &media_type)?;
        Ok(PushedImage {
            repository: repository.to_string(),
            tag: tag.to_string(),
            digest,
            media_type,
            manifests,
        })
    }

    /// The manifest's blobs (config and layers), then the manifest by digest.
    fn push_manifest_and_blobs(
        &self,
        layout: &OciLayout,
        repository: &str,
        descriptor: &Value,
    ) -> Result<()> {
        let digest = descriptor["digest"]
            .as_str()
            .context("an index.json entry has no digest")?;
        let media_type = descriptor["mediaType"].as_str().unwrap_or(OCI_MANIFEST);
        let manifest_bytes = layout.blob(digest)?;
        let manifest: Value = serde_json::from_slice(manifest_bytes)
            .with_context(|| format!("parsing the manifest {digest}"))?;
        let blobs = std::iter::once(&manifest["config"]).chain(
            manifest["layers"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default(),
        );
        for blob in blobs {
            let blob_digest = blob["digest"]
                .as_str()
                .with_context(|| format!("the manifest {digest} names a blob without a digest"))?;
            self.push_blob(repository, blob_digest, layout.blob(blob_digest)?)?;
        }
        let pushed = self.put_manifest(repository, digest, manifest_bytes, media_type)?;
        if pushed != digest {
            bail!("the registry stored the manifest {digest} as {pushed}");
        }
        Ok(())
    }

    /// Uploads one blob unless the registry has it: POST to open an
    /// upload, PUT the bytes with their digest to close it.
    pub fn push_blob(&self, repository: &str, digest: &str, bytes: &[u8]) -> Result<()> {
        let blob_url = self.url(&format!("/v2/{repository}/blobs/{digest}"));
        let head = self
            .agent
            .head(&blob_url)
            .call()
            .with_context(|| format!("HEAD {blob_url}"))?;
        if head.status() == 200 {
            return Ok(());
        }
        let uploads = self.url(&format!("/v2/{repository}/blobs/uploads/"));
        let mut opened = self
            .agent
            .post(&uploads)
            .send_empty()
            .with_context(|| format!("POST {uploads}"))?;
        expect_status(&mut opened, 202, &format!("POST {uploads}"))?;
        let location = header(&opened, "Location")?;
        let upload = self.upload_url(&location)?;
        let separator = if upload.contains('?') { '&' } else { '?' };
        let put_url = format!("{upload}{separator}digest={digest}");
        let mut closed = self
            .agent
            .put(&put_url)
            .header("Content-Type", "application/octet-stream")
            .send(bytes)
            .with_context(|| format!("PUT {put_url}"))?;
        expect_status(
            &mut closed,
            201,
            &format!("PUT of blob {digest} ({} bytes)", bytes.len()),
        )
    }

    /// An upload `Location` as a URL on this registry: a relative one is
    /// resolved against it, one pointing anywhere else is refused.
    fn upload_url(&self, location: &str) -> Result<String> {
        if location.starts_with('/') {
            return Ok(self.url(location));
        }
        let base = self.url("/");
        if location.starts_with(&base) {
            return Ok(location.to_string());
        }
        bail!(
            "the registry sent an upload location outside 127.0.0.1:{}: {location}",
            self.port
        )
    }

    /// PUTs a manifest or index under `reference` (a tag or its digest);
    /// returns the digest the registry stored it under, checked against the bytes.
    pub fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String> {
        let url = self.url(&format!("/v2/{repository}/manifests/{reference}"));
        let mut response = self
            .agent
            .put(&url)
            .header("Content-Type", media_type)
            .send(bytes)
            .with_context(|| format!("PUT {url}"))?;
        expect_status(&mut response, 201, &format!("PUT {url}"))?;
        let stored = header(&response, "Docker-Content-Digest")?;
        let computed = sha256_digest(bytes);
        if stored != computed {
            bail!("the registry stored the manifest as {stored}, but its bytes are {computed}");
        }
        Ok(stored)
    }

    /// GETs a manifest or index by tag or digest.
    pub fn manifest(&self, repository: &str, reference: &str) -> Result<FetchedManifest> {
        let url = self.url(&format!("/v2/{repository}/manifests/{reference}"));
        let mut response = self
            .agent
            .get(&url)
            .header("Accept", MANIFEST_ACCEPT)
            .call()
            .with_context(|| format!("GET {url}"))?;
        let bytes = read_body(&mut response, 200, &format!("GET {url}"))?;
        Ok(FetchedManifest {
            media_type: header(&response, "Content-Type")?,
            digest: header(&response, "Docker-Content-Digest")?,
            bytes,
        })
    }

    /// GETs a blob; fails unless its bytes have `digest`.
    pub fn blob(&self, repository: &str, digest: &str) -> Result<Vec<u8>> {
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"));
        let mut response = self
            .agent
            .get(&url)
            .call()
            .with_context(|| format!("GET {url}"))?;
        let bytes = read_body(&mut response, 200, &format!("GET {url}"))?;
        let computed = sha256_digest(&bytes);
        if computed != digest {
            bail!("the registry served blob {digest} with the digest {computed}");
        }
        Ok(bytes)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Best effort: it may have exited already; either way it is reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What containerd's `/etc/containerd/certs.d/<registry>/hosts.toml` holds
/// for a node to pull from `registry` (e.g. [`GUEST_REGISTRY`]) over plain
/// HTTP; containerd reads it when the CRI plugin's `registry.config_path`
/// is `/etc/containerd/certs.d`.
pub fn containerd_hosts_toml(registry: &str) -> String {
    format!(
        "# The test registry on the host's loopback, reached through QEMU's forward: plain HTTP.\n\
         server = \"http://{registry}\"\n\n\
         [host.\"http://{registry}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    )
}

/// The registry's config: storage on disk, HTTP on 127.0.0.1 only, no
/// authentication, no notifications, no debug listener.
fn registry_config(storage: &Path, port: u16) -> Result<String> {
    // A JSON string is a YAML string, with every character escaped as YAML wants.
    let storage = serde_json::to_string(&storage.display().to_string())
        .context("quoting the storage path")?;
    Ok(format!(
        "version: 0.1\n\
         log:\n  level: info\n  fields:\n    service: registry\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
         \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: 127.0.0.1:{port}\n  headers:\n    X-Content-Type-Options: [nosniff]\n\
         health:\n  storagedriver:\n    enabled: false\n"
    ))
}

/// A client that talks to loopback only: no proxy from the environment,
/// no redirects, and non-2xx statuses returned rather than turned into errors.
fn loopback_agent() -> Agent {
    Agent::config_builder()
        .proxy(None)
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .build()
        .new_agent()
}

fn expect_status(response: &mut Response<Body>, wanted: u16, what: &str) -> Result<()> {
    read_body(response, wanted, what).map(drop)
}

/// The body, if the status is `wanted`; else an error with the registry's answer.
fn read_body(response: &mut Response<Body>, wanted: u16, what: &str) -> Result<Vec<u8>> {
    let status = response.status().as_u16();
    let mut bytes = Vec::new();
    response
        .body_mut()
        .as_reader()
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading the answer to {what}"))?;
    if status != wanted {
        bail!(
            "{what}: the registry answered {status} (expected {wanted}): {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(2000)])
        );
    }
    Ok(bytes)
}

fn header(response: &Response<Body>, name: &str) -> Result<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
        .with_context(|| format!("the registry's answer has no {name} header"))
}

/// Repository names as the distribution spec allows them (lowercase path components).
fn check_repository(repository: &str) -> Result<()> {
    let valid = !repository.is_empty()
        && repository.split('/').all(|component| {
            !component.is_empty()
                && component.bytes().all(|byte| {
                    byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"._-".contains(&byte)
                })
        });
    if !valid {
        bail!("`{repository}` is not a repository name");
    }
    Ok(())
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// A free port on 127.0.0.1 (see the control plane's note on the race).
fn free_loopback_port() -> Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("picking a free port on 127.0.0.1")?;
    Ok(listener
        .local_addr()
        .context("reading a picked port")?
        .port())
}

/// An OCI image-layout archive read into memory: its files by name.
pub struct OciLayout {
    files: BTreeMap<String, Vec<u8>>,
}

impl OciLayout {
    pub fn read(archive: &Path) -> Result<OciLayout> {
        let file = std::fs::File::open(archive)
            .with_context(|| format!("opening {}", archive.display()))?;
        let mut files = BTreeMap::new();
        let mut tar = tar::Archive::new(std::io::BufReader::new(file));
        for entry in tar
            .entries()
            .with_context(|| format!("reading {}", archive.display()))?
        {
            let mut entry = entry.with_context(|| format!("reading {}", archive.display()))?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let name = entry
                .path()
                .with_context(|| format!("reading {}", archive.display()))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .with_context(|| format!("reading {name} in {}", archive.display()))?;
            files.insert(name, bytes);
        }
        if !files.contains_key("oci-layout") {
            bail!(
                "{} is not an OCI image layout (no oci-layout file)",
                archive.display()
            );
        }
        Ok(OciLayout { files })
    }

    /// `index.json`'s manifest descriptors, each with a platform (from
    /// the image config when the index gives none).
    pub fn manifest_descriptors(&self) -> Result<Vec<Value>> {
        let index: Value = serde_json::from_slice(
            self.files
                .get("index.json")
                .context("the image layout has no index.json")?,
        )
        .context("parsing index.json")?;
        let mut descriptors = Vec::new();
        for descriptor in index["manifests"].as_array().cloned().unwrap_or_default() {
            let mut descriptor = descriptor;
            if descriptor.get("platform").is_none() {
                let digest = descriptor["digest"].as_str().unwrap_or_default();
                let manifest: Value = serde_json::from_slice(self.blob(digest)?)?;
                let config_digest = manifest["config"]["digest"].as_str().unwrap_or_default();
                let config: Value = serde_json::from_slice(self.blob(config_digest)?)?;
                descriptor["platform"] = json!({
                    "architecture": config["architecture"],
                    "os": config["os"],
                });
            }
            if let Some(annotations) = descriptor.as_object_mut() {
                // The archive's own names, meaningless in a registry.
                annotations.remove("annotations");
            }
            descriptors.push(descriptor);
        }
        Ok(descriptors)
    }

    /// A blob by digest, checked against it.
    pub fn blob(&self, digest: &str) -> Result<&[u8]> {
        let hex = digest
            .strip_prefix("sha256:")
            .with_context(|| format!("`{digest}` is not a sha256 digest"))?;
        let bytes = self
            .files
            .get(&format!("blobs/sha256/{hex}"))
            .with_context(|| format!("the image layout has no blob {digest}"))?;
        if sha256_digest(bytes) != digest {
            bail!("the image layout's blob {digest} does not have that digest");
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_listens_on_loopback_only() {
        let config = registry_config(Path::new("/tmp/kios registry"), 41234).unwrap();
        assert!(config.contains("addr: 127.0.0.1:41234\n"), "{config}");
        assert!(
            config.contains("rootdirectory: \"/tmp/kios registry\"\n"),
            "{config}"
        );
        assert!(!config.contains("auth:"));
        assert!(!config.contains("debug:"));
    }

    #[test]
    fn repository_names_follow_the_distribution_spec() {
        check_repository("kube-proxy").unwrap();
        check_repository("kios/kube-proxy").unwrap();
        assert!(check_repository("Kube-Proxy").is_err());
        assert!(check_repository("kube-proxy:v1").is_err());
        assert!(check_repository("a//b").is_err());
    }

    #[test]
    fn the_node_pulls_through_the_guest_address() {
        let pushed = PushedImage {
            repository: "kube-proxy".into(),
            tag: "v1.20.2".into(),
            digest: sha256_digest(b""),
            media_type: OCI_INDEX.into(),
            manifests: Vec::new(),
        };
        assert_eq!(
            pushed.guest_reference(),
            "10.0.2.100:5000/kube-proxy:v1.20.2"
        );
        assert_eq!(
            GUEST_REGISTRY,
            format!("{GUEST_ADDRESS}:{GUEST_PORT}"),
            "the guest's registry address"
        );
        let hosts = containerd_hosts_toml(GUEST_REGISTRY);
        assert!(
            hosts.contains("server = \"http://10.0.2.100:5000\""),
            "{hosts}"
        );
        assert!(
            hosts.contains("[host.\"http://10.0.2.100:5000\"]"),
            "{hosts}"
        );
        let parsed: toml::Value = toml::from_str(&hosts).unwrap();
        assert_eq!(parsed["server"].as_str(), Some("http://10.0.2.100:5000"));
    }
}
