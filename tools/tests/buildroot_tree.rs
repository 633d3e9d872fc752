//! The Buildroot external tree in `buildroot-overlay/` (`BR2_EXTERNAL`):
//! its metadata, packages, defconfig and board files agree with each other
//! and with this repository. Reads files only; nothing here runs Buildroot.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The kiOS data partition type; the init's `gpt::DATA_PARTITION_TYPE`
/// holds the same GUID as bytes.
use kios_abi::data_partition::TYPE_GUID as DATA_PARTITION_TYPE_GUID;
const ESP_TYPE_GUID: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";

const DEFCONFIG: &str = "configs/kios_aarch64_uefi_defconfig";
const GENIMAGE: &str = "board/kios/aarch64-uefi/genimage.cfg";

/// How the tree's files spell the tree's own path: make, shell with
/// braces, and Kconfig or plain shell.
const TREE_PATH_SPELLINGS: [&str; 3] = [
    "$(BR2_EXTERNAL_KIOS_PATH)",
    "${BR2_EXTERNAL_KIOS_PATH}",
    "$BR2_EXTERNAL_KIOS_PATH",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tools/ is inside the repository")
        .to_path_buf()
}

fn tree() -> PathBuf {
    repo_root().join("buildroot-overlay")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

fn read_toml(path: &Path) -> toml::Table {
    read(path)
        .parse()
        .unwrap_or_else(|error| panic!("parsing {}: {error}", path.display()))
}

/// The package directories, `package/<name>/`, by name.
fn packages() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(tree().join("package"))
        .expect("listing package/")
        .map(|entry| entry.expect("reading package/").path())
        .filter(|path| path.is_dir())
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(!names.is_empty(), "package/ holds no package");
    names
}

/// Buildroot's name for a package in symbols and make variables:
/// `kios-init` is `BR2_PACKAGE_KIOS_INIT` and `KIOS_INIT_...`.
fn variable_prefix(package: &str) -> String {
    package.to_uppercase().replace(['-', '.'], "_")
}

/// `SYMBOL=value` lines of the defconfig, values as written.
fn defconfig() -> BTreeMap<String, String> {
    read(&tree().join(DEFCONFIG))
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(symbol, value)| (symbol.to_string(), value.to_string()))
        .collect()
}

fn unquoted(value: &str) -> &str {
    value.trim_matches('"')
}

/// Matches a file name against a pattern whose only wildcard is `*`.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(rest) = name.strip_prefix(parts.next().unwrap_or_default()) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    let mut rest = rest;
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// The existing paths `pattern` (relative to `base`, `*` within a
/// component, as make's `$(wildcard)` takes it) names.
fn expand(base: &Path, pattern: &str) -> Vec<PathBuf> {
    let mut matches = vec![base.to_path_buf()];
    for component in pattern.split('/').filter(|c| !c.is_empty() && *c != ".") {
        matches = matches
            .into_iter()
            .flat_map(|dir| {
                if component.contains('*') {
                    let mut found: Vec<PathBuf> = fs::read_dir(&dir)
                        .into_iter()
                        .flatten()
                        .flatten()
                        .map(|entry| entry.path())
                        .filter(|path| {
                            wildcard_match(component, &path.file_name().unwrap().to_string_lossy())
                        })
                        .collect();
                    found.sort();
                    found
                } else {
                    let path = dir.join(component);
                    if path.exists() {
                        vec![path]
                    } else {
                        Vec::new()
                    }
                }
            })
            .collect();
    }
    matches
}

/// Every `<tree path>/...` in `text`, as the path after the tree's.
fn tree_references(text: &str) -> Vec<String> {
    let mut references = Vec::new();
    for spelling in TREE_PATH_SPELLINGS {
        for (at, _) in text.match_indices(spelling) {
            let rest = &text[at + spelling.len()..];
            // The bare tree path exists whenever Buildroot sets it.
            if !rest.starts_with('/') {
                continue;
            }
            let end = rest
                .find(|c: char| c.is_whitespace() || "\"'`);,}".contains(c))
                .unwrap_or(rest.len());
            references.push(rest[..end].to_string());
        }
    }
    references
}

/// Every file of the tree with the paths it names through the tree's path.
fn references_by_file() -> BTreeMap<PathBuf, Vec<String>> {
    walkdir::WalkDir::new(tree())
        .into_iter()
        .map(|entry| entry.expect("walking buildroot-overlay/"))
        .filter(|entry| entry.file_type().is_file())
        .map(|entry| {
            let text = String::from_utf8_lossy(&fs::read(entry.path()).unwrap()).into_owned();
            (entry.path().to_path_buf(), tree_references(&text))
        })
        .filter(|(_, references)| !references.is_empty())
        .collect()
}

#[test]
fn external_desc_names_the_tree_kios() {
    let desc = read(&tree().join("external.desc"));
    assert!(
        desc.lines().any(|line| line == "name: KIOS"),
        "external.desc must say `name: KIOS` (the tree's path is BR2_EXTERNAL_KIOS_PATH):\n{desc}"
    );
    assert!(
        desc.lines().any(|line| line
            .strip_prefix("desc: ")
            .is_some_and(|d| !d.trim().is_empty())),
        "external.desc has no `desc:` line:\n{desc}"
    );
}

#[test]
fn every_package_has_its_files_and_is_sourced_and_included() {
    let tree = tree();
    let config_in = read(&tree.join("Config.in"));
    let sourced: BTreeSet<&str> = config_in
        .lines()
        .filter_map(|line| line.trim().strip_prefix("source "))
        .map(unquoted)
        .collect();
    let external_mk = read(&tree.join("external.mk"));
    let included: BTreeSet<PathBuf> = external_mk
        .lines()
        .filter_map(|line| line.trim().strip_prefix("include "))
        .flat_map(tree_references)
        .flat_map(|pattern| expand(&tree, &pattern))
        .collect();

    for package in packages() {
        let dir = tree.join("package").join(&package);
        for file in ["Config.in".to_string(), format!("{package}.mk")] {
            assert!(
                dir.join(&file).is_file(),
                "package/{package}/ has no {file}"
            );
        }
        let source = format!("$BR2_EXTERNAL_KIOS_PATH/package/{package}/Config.in");
        assert!(
            sourced.contains(source.as_str()),
            "Config.in does not `source \"{source}\"`:\n{config_in}"
        );
        assert!(
            included.contains(&dir.join(format!("{package}.mk"))),
            "external.mk does not include package/{package}/{package}.mk:\n{external_mk}"
        );
    }
}

#[test]
fn package_symbols_match_their_makefile_variables() {
    for package in packages() {
        let prefix = variable_prefix(&package);
        let dir = tree().join("package").join(&package);

        let config_in = read(&dir.join("Config.in"));
        let symbols: Vec<&str> = config_in
            .lines()
            .filter_map(|line| line.trim().strip_prefix("config "))
            .collect();
        let package_symbol = format!("BR2_PACKAGE_{prefix}");
        assert_eq!(
            symbols.first().copied(),
            Some(package_symbol.as_str()),
            "package/{package}/Config.in must declare {package_symbol} first"
        );
        for symbol in &symbols {
            assert!(
                symbol.starts_with(&package_symbol),
                "package/{package}/Config.in declares {symbol}, outside {package_symbol}"
            );
        }

        let makefile = read(&dir.join(format!("{package}.mk")));
        let variables: Vec<&str> = makefile
            .lines()
            .filter(|line| !line.starts_with(['#', '\t', ' ']))
            .filter_map(|line| {
                line.strip_prefix("define ")
                    .or_else(|| line.split_once('=').map(|(name, _)| name))
                    .map(|name| name.trim_end_matches([' ', '+', '?', ':']).trim())
            })
            .filter(|name| !name.starts_with('$') && !name.starts_with("if"))
            .collect();
        assert!(
            !variables.is_empty(),
            "package/{package}/{package}.mk sets nothing"
        );
        for variable in variables {
            assert!(
                variable.starts_with(&format!("{prefix}_")),
                "package/{package}/{package}.mk sets {variable}: Buildroot reads {prefix}_* for {package_symbol}"
            );
        }
        assert!(
            makefile
                .lines()
                .any(|line| line.starts_with("$(eval $(") && line.ends_with("-package))")),
            "package/{package}/{package}.mk never evaluates a package infrastructure"
        );
    }
}

#[test]
fn the_defconfig_builds_an_arm64_kios_node() {
    let defconfig = defconfig();
    let required = [
        ("BR2_aarch64", "y"),
        // The init is built for aarch64-unknown-linux-musl.
        ("BR2_TOOLCHAIN_BUILDROOT_MUSL", "y"),
        // The init and containerd's configuration name /bin/..., Buildroot installs in /usr/bin.
        ("BR2_ROOTFS_MERGED_USR", "y"),
        ("BR2_INIT_NONE", "y"),
        ("BR2_SYSTEM_BIN_SH_NONE", "y"),
        ("BR2_PACKAGE_CONTAINERD", "y"),
        // Without it containerd serves no CRI and the kubelet has no runtime.
        ("BR2_PACKAGE_CONTAINERD_CRI", "y"),
        ("BR2_PACKAGE_RUNC", "y"),
        ("BR2_PACKAGE_CNI_PLUGINS", "y"),
        ("BR2_TARGET_ROOTFS_CPIO", "y"),
    ];
    for (symbol, value) in required {
        assert_eq!(
            defconfig.get(symbol).map(String::as_str),
            Some(value),
            "{DEFCONFIG} must set {symbol}={value}"
        );
    }
    for package in packages() {
        let symbol = format!("BR2_PACKAGE_{}", variable_prefix(&package));
        assert_eq!(
            defconfig.get(&symbol).map(String::as_str),
            Some("y"),
            "{DEFCONFIG} does not select the kiOS package {package} ({symbol}=y)"
        );
    }
    let text = read(&tree().join(DEFCONFIG));
    assert!(
        text.lines()
            .any(|line| line == "# BR2_PACKAGE_BUSYBOX is not set"),
        "{DEFCONFIG} must turn busybox off (Buildroot's default): the node has no shell"
    );
}

#[test]
fn the_kernel_is_the_kios_kernel() {
    let defconfig = defconfig();
    let setting = |symbol: &str| {
        unquoted(
            defconfig
                .get(symbol)
                .unwrap_or_else(|| panic!("{DEFCONFIG} does not set {symbol}")),
        )
        .to_string()
    };
    assert_eq!(
        setting("BR2_LINUX_KERNEL_CUSTOM_CONFIG_FILE"),
        "$(BR2_EXTERNAL_KIOS_PATH)/../kernel/arm64.resolved.config",
        "the kernel's base config must be the committed resolution of the kiOS fragments"
    );
    let fragments = setting("BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES");
    for fragment in ["common.config", "arm64.config"] {
        let path = format!("$(BR2_EXTERNAL_KIOS_PATH)/../kernel/{fragment}");
        assert!(
            fragments.split_whitespace().any(|f| f == path),
            "the kernel fragments ({fragments}) leave out {path}"
        );
    }
    let resolved = read(&repo_root().join("kernel/arm64.resolved.config"));
    let resolved_version = resolved
        .lines()
        .find_map(|line| {
            line.strip_prefix("# Linux/arm64 ")?
                .strip_suffix(" Kernel Configuration")
        })
        .expect("kernel/arm64.resolved.config names its kernel version");
    assert_eq!(
        setting("BR2_LINUX_KERNEL_CUSTOM_VERSION_VALUE"),
        resolved_version,
        "{DEFCONFIG} builds another kernel than kernel/arm64.resolved.config was resolved for"
    );
}

#[test]
fn every_path_the_tree_names_exists() {
    let tree = tree();
    let references = references_by_file();
    for file in [DEFCONFIG, "package/kios-init/kios-init.mk", "Config.in"] {
        assert!(
            references.contains_key(&tree.join(file)),
            "found no tree path in {file}: the reference scan is broken"
        );
    }
    let mut missing = Vec::new();
    for (file, paths) in &references {
        for path in paths {
            if expand(&tree, path).is_empty() {
                let file = file.strip_prefix(&tree).unwrap().display();
                missing.push(format!("{file}: $(BR2_EXTERNAL_KIOS_PATH){path}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "paths the tree names that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_scripts_buildroot_runs_are_executable() {
    let defconfig = defconfig();
    let scripts: Vec<String> = [
        "BR2_ROOTFS_POST_BUILD_SCRIPT",
        "BR2_ROOTFS_POST_IMAGE_SCRIPT",
    ]
    .into_iter()
    .filter_map(|symbol| defconfig.get(symbol))
    .flat_map(|value| tree_references(unquoted(value)))
    .collect();
    assert!(
        !scripts.is_empty(),
        "{DEFCONFIG} runs no script of the tree"
    );
    for script in scripts {
        let path = tree().join(script.trim_start_matches('/'));
        let mode = fs::metadata(&path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "{} is not executable", path.display());
    }
}

#[test]
fn the_disk_has_an_esp_and_the_kios_data_partition() {
    let genimage = read(&tree().join(GENIMAGE));
    assert!(
        genimage.contains("partition-table-type = \"gpt\""),
        "{GENIMAGE}: the init finds the data partition in a GPT"
    );
    let types: Vec<String> = genimage
        .lines()
        .filter_map(|line| line.trim().strip_prefix("partition-type-uuid = "))
        .map(|uuid| unquoted(uuid).to_ascii_lowercase())
        .collect();
    for (what, guid) in [
        ("EFI system partition", ESP_TYPE_GUID),
        ("kiOS data partition", DATA_PARTITION_TYPE_GUID),
    ] {
        assert_eq!(
            types.iter().filter(|t| *t == guid).count(),
            1,
            "{GENIMAGE} must hold one {what} (type {guid}); partition types: {types:?}"
        );
    }
}

#[test]
fn kios_init_builds_as_the_workspace_configures_it() {
    let root = repo_root();
    let makefile = read(&tree().join("package/kios-init/kios-init.mk"));

    let cargo_config = read_toml(&root.join(".cargo/config.toml"));
    let linker = cargo_config["target"]["aarch64-unknown-linux-musl"]["linker"]
        .as_str()
        .expect(".cargo/config.toml names the aarch64 musl linker");
    assert!(
        makefile.contains(&format!("_LINKER={linker}")),
        "kios-init.mk must link with {linker}, as .cargo/config.toml does (Buildroot points cargo at gcc)"
    );

    let workspace = read_toml(&root.join("Cargo.toml"));
    let release = workspace["profile"]["release"]
        .as_table()
        .expect("Cargo.toml has a release profile");
    for (key, variable) in [
        ("opt-level", "CARGO_PROFILE_RELEASE_OPT_LEVEL"),
        ("lto", "CARGO_PROFILE_RELEASE_LTO"),
        ("codegen-units", "CARGO_PROFILE_RELEASE_CODEGEN_UNITS"),
    ] {
        let value = match &release[key] {
            toml::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        assert!(
            makefile.contains(&format!("{variable}={value}")),
            "kios-init.mk must restore the workspace's {key} = {value} ({variable}): Buildroot sets its own"
        );
    }

    let init = read_toml(&root.join("init/Cargo.toml"));
    let binary = init["bin"][0]["name"]
        .as_str()
        .expect("init/Cargo.toml names its binary");
    assert!(
        makefile.contains("_SUBDIR = init") && makefile.contains(&format!("--bin {binary}")),
        "kios-init.mk must build binary {binary} of init/"
    );
    assert!(
        makefile.contains(&format!("/{binary} \\")) && makefile.contains("$(TARGET_DIR)/bin/init"),
        "kios-init.mk must install {binary} as /bin/init"
    );
}
