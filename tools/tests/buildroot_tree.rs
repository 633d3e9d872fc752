//! The Buildroot external tree in `buildroot-overlay/` (`BR2_EXTERNAL`):
//! its metadata, packages, defconfigs and board files agree with each
//! other and with this repository. Reads files only; nothing here runs
//! Buildroot.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The kiOS data partition's type and name; the init's
/// `gpt::DATA_PARTITION_TYPE` holds the same GUID as bytes.
use kios_abi::data_partition::{
    NAME as DATA_PARTITION_NAME, TYPE_GUID as DATA_PARTITION_TYPE_GUID,
};
const ESP_TYPE_GUID: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";

/// A defconfig of the tree and the board directory holding its files.
struct Board {
    defconfig: &'static str,
    dir: &'static str,
    /// genimage's `partition-table-type`: both carry a GPT, where the init
    /// finds the data partition.
    table: &'static str,
    /// The image genimage writes to `output/images/`.
    disk: &'static str,
}

const UEFI: Board = Board {
    defconfig: "kios_aarch64_uefi_defconfig",
    dir: "board/kios/aarch64-uefi",
    table: "gpt",
    disk: "disk.img",
};

/// The Raspberry Pi 4 Model B: its firmware reads MBRs, hence the hybrid
/// table.
const RPI4: Board = Board {
    defconfig: "kios_rpi4_defconfig",
    dir: "board/kios/rpi4",
    table: "hybrid",
    disk: "sdcard.img",
};

const BOARDS: [&Board; 2] = [&UEFI, &RPI4];

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

/// A defconfig: its `SYMBOL=value` lines, values as written, and the
/// symbols it turns off (`# SYMBOL is not set`).
struct Defconfig {
    name: &'static str,
    values: BTreeMap<String, String>,
    off: BTreeSet<String>,
}

impl Defconfig {
    fn of(board: &Board) -> Self {
        let text = read(&tree().join("configs").join(board.defconfig));
        let values = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once('='))
            .map(|(symbol, value)| (symbol.to_string(), value.to_string()))
            .collect();
        let off = text
            .lines()
            .filter_map(|line| line.strip_prefix("# ")?.strip_suffix(" is not set"))
            .map(str::to_string)
            .collect();
        Defconfig {
            name: board.defconfig,
            values,
            off,
        }
    }

    /// A symbol's value without its quotes, if the defconfig sets it.
    fn get(&self, symbol: &str) -> Option<&str> {
        self.values.get(symbol).map(|value| unquoted(value))
    }

    fn setting(&self, symbol: &str) -> &str {
        self.get(symbol)
            .unwrap_or_else(|| panic!("{} does not set {symbol}", self.name))
    }

    fn is_y(&self, symbol: &str) -> bool {
        self.get(symbol) == Some("y")
    }

    /// The files a script option runs or names, as paths in the tree.
    fn tree_files(&self, symbol: &str) -> Vec<String> {
        self.get(symbol).map(tree_references).unwrap_or_default()
    }
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

/// A genimage section (`image NAME { ... }`, `vfat { ... }`,
/// `partition NAME { ... }`): its options in order and its sections.
#[derive(Debug, Default)]
struct Section {
    kind: String,
    title: Option<String>,
    options: Vec<(String, Vec<String>)>,
    sections: Vec<Section>,
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Open,
    Close,
    Equals,
    Comma,
}

/// genimage's configuration syntax (libconfuse): words or quoted strings,
/// braces, `=`, `,`, and `#`, `//` or `/* */` comments.
fn genimage_tokens(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '#' => while chars.next_if(|&c| c != '\n').is_some() {},
            '/' if chars.peek() == Some(&'/') => while chars.next_if(|&c| c != '\n').is_some() {},
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut previous = ' ';
                for c in chars.by_ref() {
                    if previous == '*' && c == '/' {
                        break;
                    }
                    previous = c;
                }
            }
            '{' => tokens.push(Token::Open),
            '}' => tokens.push(Token::Close),
            '=' => tokens.push(Token::Equals),
            ',' => tokens.push(Token::Comma),
            '"' => {
                let mut word = String::new();
                loop {
                    match chars
                        .next()
                        .expect("unterminated string in a genimage config")
                    {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
                tokens.push(Token::Word(word));
            }
            c => {
                let mut word = c.to_string();
                while let Some(c) = chars.next_if(|c| !c.is_whitespace() && !"{}=,\"#".contains(*c))
                {
                    word.push(c);
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    tokens
}

fn next_word(tokens: &mut std::vec::IntoIter<Token>, after: &str) -> String {
    match tokens.next() {
        Some(Token::Word(word)) => word,
        other => panic!("genimage config: expected a value after {after}, found {other:?}"),
    }
}

/// The options and sections up to the closing brace (or the end, for the
/// top level).
fn parse_section(tokens: &mut std::vec::IntoIter<Token>, mut section: Section) -> Section {
    let top = section.kind.is_empty();
    loop {
        let key = match tokens.next() {
            None if top => return section,
            Some(Token::Close) if !top => return section,
            Some(Token::Word(key)) => key,
            other => panic!("genimage config: unexpected {other:?} in {}", section.kind),
        };
        match tokens.next() {
            Some(Token::Equals) => {
                let values = if tokens.as_slice().first() == Some(&Token::Open) {
                    tokens.next();
                    let mut values = Vec::new();
                    loop {
                        match tokens.next() {
                            Some(Token::Close) => break,
                            Some(Token::Comma) => {}
                            Some(Token::Word(value)) => values.push(value),
                            other => panic!("genimage config: unexpected {other:?} in list {key}"),
                        }
                    }
                    values
                } else {
                    vec![next_word(tokens, &key)]
                };
                section.options.push((key, values));
            }
            Some(Token::Open) => {
                let child = parse_section(
                    tokens,
                    Section {
                        kind: key,
                        ..Section::default()
                    },
                );
                section.sections.push(child);
            }
            Some(Token::Word(title)) => {
                assert_eq!(
                    tokens.next(),
                    Some(Token::Open),
                    "genimage config: {key} {title} has no body"
                );
                let child = Section {
                    kind: key,
                    title: Some(title),
                    ..Section::default()
                };
                section.sections.push(parse_section(tokens, child));
            }
            other => panic!("genimage config: unexpected {other:?} after {key}"),
        }
    }
}

impl Section {
    /// An option's single value; an option given twice is a mistake here.
    fn option(&self, key: &str) -> Option<&str> {
        let mut values = self.options.iter().filter(|(k, _)| k == key);
        let (_, value) = values.next()?;
        assert!(
            values.next().is_none() && value.len() == 1,
            "{} {:?}: {key} must be set once, to one value",
            self.kind,
            self.title
        );
        Some(&value[0])
    }

    fn sections(&self, kind: &str) -> Vec<&Section> {
        self.sections.iter().filter(|s| s.kind == kind).collect()
    }

    /// The one section of a kind.
    fn section(&self, kind: &str) -> &Section {
        let mut found = self.sections(kind).into_iter();
        let section = found
            .next()
            .unwrap_or_else(|| panic!("{} {:?} has no {kind} section", self.kind, self.title));
        assert!(
            found.next().is_none(),
            "{} {:?} has two {kind} sections",
            self.kind,
            self.title
        );
        section
    }

    fn titled(&self, kind: &str, title: &str) -> &Section {
        self.sections(kind)
            .into_iter()
            .find(|s| s.title.as_deref() == Some(title))
            .unwrap_or_else(|| panic!("no {kind} {title} in the genimage config"))
    }

    fn flag(&self, key: &str) -> bool {
        self.option(key).is_some_and(genimage_bool)
    }
}

/// A board's genimage.cfg, its top level.
fn genimage(board: &Board) -> Section {
    let text = read(&tree().join(board.dir).join("genimage.cfg"));
    parse_section(&mut genimage_tokens(&text).into_iter(), Section::default())
}

/// A boolean as libconfuse reads it.
fn genimage_bool(value: &str) -> bool {
    match value {
        "true" | "yes" | "on" | "1" => true,
        "false" | "no" | "off" | "0" => false,
        other => panic!("not a genimage boolean: {other}"),
    }
}

/// A genimage size (`1M`, `256M`, `2048s`) in bytes.
fn size_bytes(text: &str) -> u64 {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let number: u64 = digits
        .parse()
        .unwrap_or_else(|_| panic!("not a genimage size: {text}"));
    let unit = match &text[digits.len()..] {
        "" => 1,
        "s" => 512,
        "k" | "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        other => panic!("unknown size unit {other} in {text}"),
    };
    number * unit
}

/// A partition's GPT type GUID, genimage's shortcuts resolved; genimage
/// gives a partition without one the Linux filesystem type.
fn gpt_type(partition: &Section) -> String {
    match partition.option("partition-type-uuid").unwrap_or("L") {
        "U" | "esp" | "uefi" => ESP_TYPE_GUID.to_string(),
        "L" | "linux" | "linux-generic" => "0fc63daf-8483-4772-8e79-3d69d8477de4".to_string(),
        "F" | "fat32" => "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7".to_string(),
        guid => guid.to_ascii_lowercase(),
    }
}

/// A partition's MBR type (`partition-type`), if it has an MBR entry.
fn mbr_type(partition: &Section) -> Option<u8> {
    let text = partition.option("partition-type")?;
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u8::from_str_radix(hex, 16),
        None => text.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("not an MBR partition type: {text}")))
}

/// The board's disk image, the one with the partition table.
fn disk_image<'a>(genimage: &'a Section, board: &Board) -> &'a Section {
    genimage.titled("image", board.disk)
}

/// The files of a vfat image: name in the filesystem, input file.
fn vfat_files(image: &Section) -> BTreeMap<String, String> {
    let vfat = image.section("vfat");
    let mut files = BTreeMap::new();
    for file in vfat.sections("file") {
        let name = file.title.clone().expect("a vfat file has a name");
        let input = file
            .option("image")
            .expect("a vfat file names its input image");
        assert!(
            files.insert(name.clone(), input.to_string()).is_none(),
            "vfat file {name} is listed twice"
        );
    }
    for (key, values) in &vfat.options {
        if key == "files" {
            for input in values {
                let name = input.rsplit('/').next().unwrap().to_string();
                assert!(
                    files.insert(name.clone(), input.clone()).is_none(),
                    "vfat file {name} is listed twice"
                );
            }
        }
    }
    files
}

/// The `install ... SOURCE DEST` commands of a shell script (continued
/// lines joined, quotes dropped).
fn installs(script: &str) -> Vec<(String, String)> {
    script
        .replace("\\\n", " ")
        .lines()
        .filter_map(|line| line.trim().strip_prefix("install "))
        .filter_map(|arguments| {
            let words: Vec<&str> = arguments
                .split_whitespace()
                .map(|word| word.trim_matches(['"', '\'']))
                .collect();
            match words[..] {
                [.., source, dest] => Some((source.to_string(), dest.to_string())),
                _ => None,
            }
        })
        .collect()
}

/// A path after the tree's path, in any of its spellings.
fn in_tree(path: &str) -> Option<&str> {
    TREE_PATH_SPELLINGS
        .iter()
        .find_map(|spelling| path.strip_prefix(spelling))
}

/// A path in the images directory, the first argument of a post-image
/// script.
fn in_images(path: &str) -> Option<&str> {
    ["$1/", "${1}/", "$BINARIES_DIR/", "${BINARIES_DIR}/"]
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix))
}

/// The Pi firmware's config.txt: its `key=value` settings and the
/// `initramfs FILE ...` line's file.
struct FirmwareConfig {
    settings: BTreeMap<String, String>,
    initramfs: Option<String>,
}

fn firmware_config() -> FirmwareConfig {
    let text = read(&tree().join(RPI4.dir).join("config.txt"));
    let lines = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with('['));
    let mut settings = BTreeMap::new();
    let mut initramfs = None;
    for line in lines {
        if let Some((key, value)) = line.split_once('=') {
            settings.insert(key.trim().to_string(), value.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("initramfs ") {
            initramfs = rest.split_whitespace().next().map(str::to_string);
        }
    }
    FirmwareConfig {
        settings,
        initramfs,
    }
}

/// What Buildroot's rpi-firmware package installs into
/// `images/rpi-firmware/` per option (package/rpi-firmware/rpi-firmware.mk).
const RPI_FIRMWARE_FILES: [(&str, &[&str]); 9] = [
    ("BR2_PACKAGE_RPI_FIRMWARE_BOOTCODE_BIN", &["bootcode.bin"]),
    (
        "BR2_PACKAGE_RPI_FIRMWARE_VARIANT_PI",
        &["start.elf", "fixup.dat"],
    ),
    (
        "BR2_PACKAGE_RPI_FIRMWARE_VARIANT_PI_X",
        &["start_x.elf", "fixup_x.dat"],
    ),
    (
        "BR2_PACKAGE_RPI_FIRMWARE_VARIANT_PI_CD",
        &["start_cd.elf", "fixup_cd.dat"],
    ),
    (
        "BR2_PACKAGE_RPI_FIRMWARE_VARIANT_PI_DB",
        &["start_db.elf", "fixup_db.dat"],
    ),
    (
        "BR2_PACKAGE_RPI_FIRMWARE_VARIANT_PI4",
        &["start4.elf", "fixup4.dat"],
    ),
    (
        "BR2_PACKAGE_RPI_FIRMWARE_VARIANT_PI4_X",
        &["start4x.elf", "fixup4x.dat"],
    ),
    (
        "BR2_PACKAGE_RPI_FIRMWARE_VARIANT_PI4_CD",
        &["start4cd.elf", "fixup4cd.dat"],
    ),
    (
        "BR2_PACKAGE_RPI_FIRMWARE_VARIANT_PI4_DB",
        &["start4db.elf", "fixup4db.dat"],
    ),
];

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
fn every_defconfig_is_checked() {
    let mut found: Vec<String> = fs::read_dir(tree().join("configs"))
        .expect("listing configs/")
        .map(|entry| {
            entry
                .expect("reading configs/")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    found.sort();
    let mut checked: Vec<String> = BOARDS.iter().map(|b| b.defconfig.to_string()).collect();
    checked.sort();
    assert_eq!(found, checked, "configs/ and this test's BOARDS differ");
}

#[test]
fn every_defconfig_builds_an_arm64_kios_node() {
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
        // The root as an uncompressed initramfs, which the kernel unpacks soonest.
        ("BR2_TARGET_ROOTFS_CPIO", "y"),
        ("BR2_TARGET_ROOTFS_CPIO_NONE", "y"),
    ];
    for board in BOARDS {
        let defconfig = Defconfig::of(board);
        for (symbol, value) in required {
            assert_eq!(
                defconfig.get(symbol),
                Some(value),
                "{} must set {symbol}={value}",
                board.defconfig
            );
        }
        for package in packages() {
            let symbol = format!("BR2_PACKAGE_{}", variable_prefix(&package));
            assert!(
                defconfig.is_y(&symbol),
                "{} does not select the kiOS package {package} ({symbol}=y)",
                board.defconfig
            );
        }
        assert!(
            defconfig.off.contains("BR2_PACKAGE_BUSYBOX"),
            "{} must turn busybox off (Buildroot's default): the node has no shell",
            board.defconfig
        );
    }
}

#[test]
fn every_defconfig_builds_the_kios_kernel() {
    let resolved = read(&repo_root().join("kernel/arm64.resolved.config"));
    let resolved_version = resolved
        .lines()
        .find_map(|line| {
            line.strip_prefix("# Linux/arm64 ")?
                .strip_suffix(" Kernel Configuration")
        })
        .expect("kernel/arm64.resolved.config names its kernel version");
    for board in BOARDS {
        let defconfig = Defconfig::of(board);
        let name = board.defconfig;
        assert_eq!(
            defconfig.setting("BR2_LINUX_KERNEL_CUSTOM_CONFIG_FILE"),
            "$(BR2_EXTERNAL_KIOS_PATH)/../kernel/arm64.resolved.config",
            "{name}: the kernel's base config must be the committed resolution of the kiOS fragments"
        );
        let fragments = defconfig.setting("BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES");
        for fragment in ["common.config", "arm64.config"] {
            let path = format!("$(BR2_EXTERNAL_KIOS_PATH)/../kernel/{fragment}");
            assert!(
                fragments.split_whitespace().any(|f| f == path),
                "{name}: the kernel fragments ({fragments}) leave out {path}"
            );
        }
        assert_eq!(
            defconfig.setting("BR2_LINUX_KERNEL_CUSTOM_VERSION_VALUE"),
            resolved_version,
            "{name} builds another kernel than kernel/arm64.resolved.config was resolved for"
        );
    }
}

#[test]
fn the_rpi4_kernel_is_configured_as_the_uefi_one() {
    let kernel_settings = |board: &Board| -> BTreeMap<String, String> {
        Defconfig::of(board)
            .values
            .into_iter()
            .filter(|(symbol, _)| symbol.starts_with("BR2_LINUX_KERNEL"))
            .collect()
    };
    let uefi = kernel_settings(&UEFI);
    let mut rpi4 = kernel_settings(&RPI4);
    // The device tree is all the board adds.
    for symbol in [
        "BR2_LINUX_KERNEL_DTS_SUPPORT",
        "BR2_LINUX_KERNEL_INTREE_DTS_NAME",
    ] {
        rpi4.remove(symbol);
    }
    assert!(
        uefi.contains_key("BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES"),
        "read no kernel settings from {}: {uefi:?}",
        UEFI.defconfig
    );
    assert_eq!(
        rpi4, uefi,
        "{} must build the kernel of {} (same version, config and fragments), plus its device tree",
        RPI4.defconfig, UEFI.defconfig
    );
}

#[test]
fn every_path_the_tree_names_exists() {
    let tree = tree();
    let references = references_by_file();
    let defconfigs = BOARDS.map(|board| format!("configs/{}", board.defconfig));
    let files = defconfigs
        .iter()
        .map(String::as_str)
        .chain(["package/kios-init/kios-init.mk", "Config.in"]);
    for file in files {
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
fn every_defconfig_runs_its_boards_files() {
    for board in BOARDS {
        let defconfig = Defconfig::of(board);
        let name = board.defconfig;
        let post_image = defconfig.tree_files("BR2_ROOTFS_POST_IMAGE_SCRIPT");
        assert_eq!(
            post_image,
            [format!("/{}/post-image.sh", board.dir)],
            "{name} must run its board's post-image script"
        );
        assert!(
            defconfig
                .setting("BR2_ROOTFS_POST_IMAGE_SCRIPT")
                .ends_with(" support/scripts/genimage.sh"),
            "{name} must run Buildroot's genimage script after its own"
        );
        assert_eq!(
            defconfig.setting("BR2_ROOTFS_POST_SCRIPT_ARGS"),
            format!("-c $(BR2_EXTERNAL_KIOS_PATH)/{}/genimage.cfg", board.dir),
            "{name} must hand genimage its board's genimage.cfg"
        );
        // One post-build script for every board: etc/ and the kubelet do
        // not depend on the board.
        assert_eq!(
            defconfig.tree_files("BR2_ROOTFS_POST_BUILD_SCRIPT"),
            [format!("/{}/post-build.sh", UEFI.dir)],
            "{name} must run the shared post-build script"
        );
        if board.dir != UEFI.dir {
            assert!(
                !tree().join(board.dir).join("post-build.sh").exists(),
                "{}/post-build.sh is a copy of the shared one",
                board.dir
            );
        }
    }
}

#[test]
fn the_scripts_buildroot_runs_are_executable() {
    for board in BOARDS {
        let defconfig = Defconfig::of(board);
        let scripts: Vec<String> = [
            "BR2_ROOTFS_POST_BUILD_SCRIPT",
            "BR2_ROOTFS_POST_IMAGE_SCRIPT",
        ]
        .into_iter()
        .flat_map(|symbol| defconfig.tree_files(symbol))
        .collect();
        assert!(
            !scripts.is_empty(),
            "{} runs no script of the tree",
            board.defconfig
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
}

#[test]
fn every_disk_has_a_boot_partition_and_the_kios_data_partition() {
    for board in BOARDS {
        let genimage = genimage(board);
        let where_ = format!("{}/genimage.cfg", board.dir);
        let disk = disk_image(&genimage, board);
        assert_eq!(
            disk.section("hdimage").option("partition-table-type"),
            Some(board.table),
            "{where_}: {} must have a {} partition table",
            board.disk,
            board.table
        );
        let partitions = disk.sections("partition");

        let boot: Vec<&&Section> = partitions
            .iter()
            .filter(|p| gpt_type(p) == ESP_TYPE_GUID)
            .collect();
        assert_eq!(
            boot.len(),
            1,
            "{where_} must hold one partition of the EFI system type"
        );
        let boot = boot[0];
        assert!(
            std::ptr::eq(*boot, partitions[0]),
            "{where_}: the boot partition must come first"
        );
        assert_eq!(
            boot.option("offset").map(size_bytes),
            Some(1 << 20),
            "{where_}: the boot partition starts at 1 MiB"
        );
        assert!(
            boot.flag("bootable"),
            "{where_}: the boot partition must be bootable"
        );
        let boot_image = genimage.titled(
            "image",
            boot.option("image")
                .expect("the boot partition has an image"),
        );
        assert!(
            !vfat_files(boot_image).is_empty(),
            "{where_}: the boot partition's FAT filesystem is empty"
        );

        let data: Vec<&&Section> = partitions
            .iter()
            .filter(|p| gpt_type(p) == DATA_PARTITION_TYPE_GUID)
            .collect();
        assert_eq!(
            data.len(),
            1,
            "{where_} must hold one kiOS data partition (type {DATA_PARTITION_TYPE_GUID})"
        );
        let data = data[0];
        assert_eq!(
            data.title.as_deref(),
            Some(DATA_PARTITION_NAME),
            "{where_}: the data partition's GPT name"
        );
        let data_image = genimage.titled(
            "image",
            data.option("image")
                .expect("the data partition has an image"),
        );
        assert_eq!(
            data_image.section("ext4").option("label"),
            Some(DATA_PARTITION_NAME),
            "{where_}: the data partition's filesystem label"
        );
        // Formatted and empty: the init never formats a disk.
        assert!(
            data_image.flag("empty"),
            "{where_}: the data partition starts empty"
        );
    }
}

#[test]
fn the_readme_builds_every_defconfig() {
    let readme = read(&tree().join("README.md"));
    for board in BOARDS {
        for text in [
            format!("{} && make", board.defconfig),
            format!("output/images/{}", board.disk),
        ] {
            assert!(
                readme.contains(&text),
                "buildroot-overlay/README.md never says `{text}`"
            );
        }
    }
}

#[test]
fn the_rpi4_defconfig_builds_the_boards_device_tree() {
    let defconfig = Defconfig::of(&RPI4);
    assert!(
        defconfig.is_y("BR2_LINUX_KERNEL_DTS_SUPPORT"),
        "{} builds no device tree",
        RPI4.defconfig
    );
    let names = defconfig.setting("BR2_LINUX_KERNEL_INTREE_DTS_NAME");
    assert!(
        names
            .split_whitespace()
            .any(|n| n == "broadcom/bcm2711-rpi-4-b"),
        "{} must build the Pi 4's device tree broadcom/bcm2711-rpi-4-b, builds {names:?}",
        RPI4.defconfig
    );
    // The device tree describes the SoC the kernel must drive.
    let resolved = read(&repo_root().join("kernel/arm64.resolved.config"));
    assert!(
        resolved.lines().any(|line| line == "CONFIG_ARCH_BCM2835=y"),
        "kernel/arm64.resolved.config lacks the BCM2711's platform (CONFIG_ARCH_BCM2835)"
    );
}

#[test]
fn the_rpi4_card_has_a_hybrid_mbr_whose_first_entry_is_the_fat_boot_partition() {
    let genimage = genimage(&RPI4);
    let disk = disk_image(&genimage, &RPI4);
    let partitions = disk.sections("partition");
    let in_mbr: Vec<(&Section, u8)> = partitions
        .iter()
        .filter_map(|p| Some((*p, mbr_type(p)?)))
        .collect();
    // The boot ROM and firmware read the MBR's entries only.
    let [(first, kind)] = in_mbr[..] else {
        panic!("the hybrid MBR must hold the boot partition alone, holds {in_mbr:?}");
    };
    assert_eq!(
        gpt_type(first),
        ESP_TYPE_GUID,
        "the MBR's entry must be the boot partition"
    );
    assert_eq!(
        kind, 0x0c,
        "the boot partition's MBR type must be FAT32 LBA (0x0c)"
    );
    assert!(
        first.flag("bootable"),
        "the boot partition's MBR entry must be active"
    );

    let boot = genimage.titled("image", first.option("image").unwrap());
    assert_eq!(
        boot.option("size").map(size_bytes),
        Some(256 << 20),
        "the boot partition is 256 MiB, as `cargo kios build --board rpi4` makes it"
    );
    let mkdosfs = boot.section("vfat").option("extraargs").unwrap_or("");
    assert!(
        mkdosfs.split_whitespace().collect::<Vec<_>>().windows(2).any(|w| w == ["-F", "32"]),
        "the boot filesystem must be FAT32 (extraargs -F 32), as its MBR type says; extraargs: {mkdosfs:?}"
    );
}

#[test]
fn the_rpi4_boot_partition_holds_the_firmware_and_what_config_txt_names() {
    let defconfig = Defconfig::of(&RPI4);
    let config = firmware_config();
    let genimage = genimage(&RPI4);
    let disk = disk_image(&genimage, &RPI4);
    let boot_partition = disk
        .sections("partition")
        .into_iter()
        .find(|p| gpt_type(p) == ESP_TYPE_GUID)
        .expect("the card has a boot partition");
    let files = vfat_files(genimage.titled("image", boot_partition.option("image").unwrap()));

    assert_eq!(
        config.settings.get("arm_64bit").map(String::as_str),
        Some("1"),
        "config.txt must start the cores in 64-bit mode for the arm64 kernel"
    );
    let named = |key: &str| {
        config
            .settings
            .get(key)
            .unwrap_or_else(|| panic!("config.txt does not set {key}="))
            .clone()
    };
    let dtb = defconfig
        .setting("BR2_LINUX_KERNEL_INTREE_DTS_NAME")
        .split_whitespace()
        .map(|name| format!("{}.dtb", name.rsplit('/').next().unwrap()))
        .find(|name| *name == named("device_tree"))
        .unwrap_or_else(|| {
            panic!(
                "config.txt's device tree {} is not one the kernel builds",
                named("device_tree")
            )
        });
    let initramfs = config
        .initramfs
        .clone()
        .expect("config.txt has no initramfs line");
    // What Buildroot writes to output/images/: the arm64 Image, each device
    // tree under its own name, the uncompressed cpio.
    let mut expected = BTreeMap::from([
        (named("kernel"), "Image".to_string()),
        (named("device_tree"), dtb),
        (initramfs, "rootfs.cpio".to_string()),
    ]);

    let installed: BTreeSet<&str> = RPI_FIRMWARE_FILES
        .iter()
        .filter(|(symbol, _)| defconfig.is_y(symbol))
        .flat_map(|(_, files)| files.iter().copied())
        .collect();
    let mut needed = vec!["start4.elf", "fixup4.dat"];
    // The firmware loads the cut-down pair instead when gpu_mem is 16.
    if config.settings.get("gpu_mem").map(String::as_str) == Some("16") {
        needed.extend(["start4cd.elf", "fixup4cd.dat"]);
    }
    for file in &needed {
        assert!(
            installed.contains(file),
            "{} does not install the firmware file {file} (rpi-firmware variants); installs {installed:?}",
            RPI4.defconfig
        );
    }
    for file in installed {
        expected.insert(file.to_string(), format!("rpi-firmware/{file}"));
    }
    for file in ["config.txt", "cmdline.txt"] {
        let input = files
            .get(file)
            .unwrap_or_else(|| panic!("the boot partition has no {file}"));
        expected.insert(file.to_string(), input.clone());
    }
    assert_eq!(
        files, expected,
        "the boot partition must hold the firmware, config.txt, cmdline.txt and what config.txt names, from Buildroot's outputs"
    );
}

#[test]
fn the_rpi4_card_takes_config_txt_and_cmdline_txt_from_the_tree() {
    let defconfig = Defconfig::of(&RPI4);
    // The rpi-firmware package would install its own copies in the same
    // place: no config file (its default), no command line file (its
    // default is Buildroot's own, so it must be emptied), nothing extra.
    for symbol in [
        "BR2_PACKAGE_RPI_FIRMWARE_CONFIG_FILE",
        "BR2_PACKAGE_RPI_FIRMWARE_EXTRA_FILES",
    ] {
        assert!(
            defconfig.get(symbol).is_none_or(str::is_empty),
            "{} must leave {symbol} empty: the card's file comes from {}/",
            RPI4.defconfig,
            RPI4.dir
        );
    }
    assert_eq!(
        defconfig.get("BR2_PACKAGE_RPI_FIRMWARE_CMDLINE_FILE"),
        Some(""),
        "{} must set BR2_PACKAGE_RPI_FIRMWARE_CMDLINE_FILE=\"\" (it defaults to Buildroot's)",
        RPI4.defconfig
    );
    assert!(
        defconfig
            .off
            .contains("BR2_PACKAGE_RPI_FIRMWARE_INSTALL_DTB_OVERLAYS"),
        "{} must turn the firmware's overlays off: config.txt loads none",
        RPI4.defconfig
    );

    let genimage = genimage(&RPI4);
    let files: BTreeMap<String, String> = genimage
        .sections("image")
        .into_iter()
        .filter(|image| !image.sections("vfat").is_empty())
        .flat_map(vfat_files)
        .collect();
    let script_path = tree().join(RPI4.dir).join("post-image.sh");
    let script = read(&script_path);
    let installs = installs(&script);
    for file in ["config.txt", "cmdline.txt"] {
        let input = files
            .get(file)
            .unwrap_or_else(|| panic!("the card has no {file}"));
        let sources: Vec<&str> = installs
            .iter()
            .filter(|(_, dest)| in_images(dest) == Some(input.as_str()))
            .map(|(source, _)| source.as_str())
            .collect();
        assert_eq!(
            sources.iter().map(|s| in_tree(s)).collect::<Vec<_>>(),
            [Some(format!("/{}/{file}", RPI4.dir).as_str())],
            "{}: the card's {file} ({input} in the images directory) must be installed from the tree's {}/{file}, once",
            script_path.display(),
            RPI4.dir
        );
        assert_eq!(
            script.matches(input.as_str()).count(),
            1,
            "{} writes {input} other than by the install",
            script_path.display()
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
