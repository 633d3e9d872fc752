//! Fetching components through the bill of materials: checksums are
//! enforced and failures name the component. Only `path` sources and a
//! loopback `url` are used, so these run without any network.

use std::path::{Path, PathBuf};
use std::sync::Once;

use kios_tools::components::bom::{fetch_component, Bom};
use kios_tools::host::arch::Arch;
use kios_tools::host::fs::sha256_file;

/// A private cache, so test fixtures never land in the developer's cache.
fn scratch(name: &str) -> PathBuf {
    static CACHE: Once = Once::new();
    let root = std::env::temp_dir().join(format!("kios-components-bom-{}", std::process::id()));
    CACHE.call_once(|| std::env::set_var("KIOS_CACHE", root.join("cache")));
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn bom_with(dir: &Path, entry: &str) -> Bom {
    let text = format!("[components.kubelet]\ndescription = \"test\"\namd64 = {{ {entry} }}\n");
    let file = dir.join("bom.toml");
    std::fs::write(&file, text).unwrap();
    Bom::load(&file).unwrap()
}

#[test]
fn a_path_source_with_the_right_checksum_is_returned() {
    let dir = scratch("right");
    std::fs::write(dir.join("kubelet"), b"a kubelet").unwrap();
    let sha256 = sha256_file(&dir.join("kubelet")).unwrap();
    let bom = bom_with(
        &dir,
        &format!(r#"source = "path", path = "kubelet", sha256 = "{sha256}""#),
    );
    assert_eq!(
        fetch_component(&bom, "kubelet", Arch::Amd64).unwrap(),
        dir.join("kubelet")
    );
}

#[test]
fn a_checksum_mismatch_stops_and_names_the_component() {
    let dir = scratch("mismatch");
    std::fs::write(dir.join("kubelet"), b"not what was pinned").unwrap();
    let pinned = "1111111111111111111111111111111111111111111111111111111111111111";
    let bom = bom_with(
        &dir,
        &format!(r#"source = "path", path = "kubelet", sha256 = "{pinned}""#),
    );
    let error = fetch_component(&bom, "kubelet", Arch::Amd64).unwrap_err();
    let root_cause = error.root_cause().to_string();
    assert!(
        root_cause.contains("checksum mismatch for component `kubelet` (amd64)"),
        "{root_cause}"
    );
    assert!(root_cause.contains(pinned), "{root_cause}");
    assert!(error.to_string().contains("component `kubelet`"), "{error}");
}

#[test]
fn a_path_archive_is_unpacked_once_verified() {
    let dir = scratch("archive");
    let mut layer = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_size(5);
    header.set_mode(0o755);
    layer
        .append_data(&mut header, "bin/kubelet", &b"hello"[..])
        .unwrap();
    let archive = dir.join("kubelet.tar.gz");
    std::fs::write(&archive, layer.into_inner().unwrap().finish().unwrap()).unwrap();
    let sha256 = sha256_file(&archive).unwrap();
    let bom = bom_with(
        &dir,
        &format!(r#"source = "path", path = "kubelet.tar.gz", sha256 = "{sha256}""#),
    );
    let unpacked = fetch_component(&bom, "kubelet", Arch::Amd64).unwrap();
    assert_eq!(
        std::fs::read(unpacked.join("bin/kubelet")).unwrap(),
        b"hello"
    );
    // A second fetch reuses the unpacked tree.
    assert_eq!(
        fetch_component(&bom, "kubelet", Arch::Amd64).unwrap(),
        unpacked
    );
}

#[test]
fn an_unreachable_url_fails_with_a_way_out() {
    let dir = scratch("url");
    // Loopback's discard port: refused at once, and never leaves the machine.
    let bom = bom_with(
        &dir,
        r#"source = "url", url = "http://127.0.0.1:9/kubelet", sha256 = "2222222222222222222222222222222222222222222222222222222222222222""#,
    );
    let error = format!(
        "{:#}",
        fetch_component(&bom, "kubelet", Arch::Amd64).unwrap_err()
    );
    assert!(error.contains("component `kubelet`"), "{error}");
    assert!(error.contains("`path` source"), "{error}");
}

#[test]
fn a_missing_arch_or_component_is_named() {
    let dir = scratch("missing");
    let bom = bom_with(
        &dir,
        r#"source = "path", path = "k", sha256 = "3333333333333333333333333333333333333333333333333333333333333333""#,
    );
    let error = fetch_component(&bom, "kubelet", Arch::Arm64)
        .unwrap_err()
        .to_string();
    assert!(error.contains("`kubelet` has no arm64 entry"), "{error}");
    let error = fetch_component(&bom, "etcd", Arch::Amd64)
        .unwrap_err()
        .to_string();
    assert!(error.contains("no component `etcd`"), "{error}");
}
