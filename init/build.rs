//! Gives the init the kubelet release the image ships (`release` in
//! bom.toml's `[components.kubelet]`), so its kubelet flags are the ones
//! that release takes (config/kubelet.rs).

use std::path::PathBuf;

fn main() {
    let bom = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("../bom.toml");
    println!("cargo:rerun-if-changed={}", bom.display());
    let text = std::fs::read_to_string(&bom)
        .unwrap_or_else(|error| panic!("reading {}: {error}", bom.display()));
    let release = kubelet_release(&text).unwrap_or_else(|| {
        panic!(
            "{}: [components.kubelet] has no `release = \"1.N.P\"` line",
            bom.display()
        )
    });
    println!("cargo:rustc-env=KIOS_KUBELET_RELEASE={release}");
}

/// The quoted value of `release` in the `[components.kubelet]` table. Read
/// line by line rather than with a TOML crate: the init's build takes no
/// dependencies, and the BOM's tables are flat `key = value` lines
/// (tools/src/components/bom.rs parses the whole file).
fn kubelet_release(bom: &str) -> Option<&str> {
    let mut in_kubelet = false;
    for line in bom.lines().map(str::trim) {
        if line.starts_with('[') {
            in_kubelet = line == "[components.kubelet]";
        } else if in_kubelet {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            if key.trim() == "release" {
                return value.trim().strip_prefix('"')?.split('"').next();
            }
        }
    }
    None
}
