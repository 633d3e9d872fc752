//! The node's identity with no configuration: `/etc/machine-id`, made
//! once from what identifies the machine, and the node name derived from
//! it when no hostname is configured.

/// Where a machine ID came from, for the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `/etc/machine-id` was there and valid.
    Kept,
    /// The SMBIOS/DMI product UUID (`/sys/class/dmi/id/product_uuid`).
    ProductUuid,
    /// The device tree's serial number (`/proc/device-tree/serial-number`).
    SerialNumber,
    /// The kernel's random numbers.
    Random,
    /// The kernel's random numbers before its generator was fully seeded.
    RandomUnseeded,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::Kept => "kept from /etc/machine-id",
            Source::ProductUuid => "from the SMBIOS product UUID",
            Source::SerialNumber => "from the device tree's serial number",
            Source::Random => "random",
            Source::RandomUnseeded => "random (the kernel's generator was not fully seeded yet)",
        }
    }
}

/// The DMI product UUID, as sysfs shows it.
pub const PRODUCT_UUID: &str = "/sys/class/dmi/id/product_uuid";
/// The machine's serial number, where a device tree gives one.
pub const SERIAL_NUMBER: &str = "/proc/device-tree/serial-number";

/// A machine ID: 128 bits as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MachineId([u8; 32]);

const HEX: &[u8; 16] = b"0123456789abcdef";

impl MachineId {
    fn from_bytes(bytes: [u8; 16]) -> MachineId {
        let mut hex = [0u8; 32];
        for (i, byte) in bytes.iter().enumerate() {
            hex[2 * i] = HEX[usize::from(byte >> 4)];
            hex[2 * i + 1] = HEX[usize::from(byte & 0xf)];
        }
        MachineId(hex)
    }

    /// An existing `/etc/machine-id`: exactly 32 lowercase hex digits, an
    /// optional newline, not all zeros.
    pub fn parse(raw: &[u8]) -> Option<MachineId> {
        let digits = raw.strip_suffix(b"\n").unwrap_or(raw);
        let hex: [u8; 32] = digits.try_into().ok()?;
        let lower_hex = hex
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
        (lower_hex && !uniform(&hex)).then_some(MachineId(hex))
    }

    /// The SMBIOS product UUID (`4c4c4544-0042-...`, any case), its 32 hex
    /// digits lowercased; None when it is missing, malformed, or one of
    /// the all-zero and all-F placeholders firmware leaves unset.
    pub fn from_product_uuid(raw: &[u8]) -> Option<MachineId> {
        let mut hex = [0u8; 32];
        let mut count = 0;
        for &byte in raw.trim_ascii() {
            if byte == b'-' {
                continue;
            }
            if !byte.is_ascii_hexdigit() || count == hex.len() {
                return None;
            }
            hex[count] = byte.to_ascii_lowercase();
            count += 1;
        }
        (count == hex.len() && !uniform(&hex)).then_some(MachineId(hex))
    }

    /// The device tree's serial number (a NUL-terminated string of any
    /// format): hashed to 128 bits (FNV-1a), so any serial gives a
    /// well-formed ID and the same serial the same ID. None when it is
    /// empty or a placeholder of one repeated character ("0000", "ffff").
    pub fn from_serial_number(raw: &[u8]) -> Option<MachineId> {
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let serial = raw[..end].trim_ascii();
        if serial.is_empty() || uniform(serial) {
            return None;
        }
        Some(MachineId::from_bytes(
            fnv1a_128(b"kios machine-id from serial-number\0", serial).to_be_bytes(),
        ))
    }

    /// 16 random bytes as a version-4 UUID, as systemd makes a random one.
    pub fn from_random(mut bytes: [u8; 16]) -> MachineId {
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        MachineId::from_bytes(bytes)
    }

    pub fn as_str(&self) -> &str {
        // Only lowercase hex digits are ever stored.
        core::str::from_utf8(&self.0).unwrap_or("")
    }

    /// What `/etc/machine-id` holds: the digits and a newline.
    pub fn file_contents(&self) -> [u8; 33] {
        let mut contents = [b'\n'; 33];
        contents[..32].copy_from_slice(&self.0);
        contents
    }

    /// The node name when none is configured: `kios-` and the ID's first
    /// 12 hex digits (48 bits: unique among any fleet's nodes), a valid
    /// DNS-1123 label.
    pub fn node_name(&self) -> NodeName {
        let mut name = *b"kios-000000000000";
        name[5..].copy_from_slice(&self.0[..12]);
        NodeName(name)
    }
}

/// A derived node name, `kios-<12 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NodeName([u8; 17]);

impl NodeName {
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.0).unwrap_or("kios")
    }
}

/// All one character (ignoring ASCII case and dashes): a placeholder.
fn uniform(text: &[u8]) -> bool {
    let mut chars = text
        .iter()
        .filter(|&&b| b != b'-')
        .map(u8::to_ascii_lowercase);
    match chars.next() {
        Some(first) => (first == b'0' || first == b'f') && chars.all(|b| b == first),
        None => true,
    }
}

fn fnv1a_128(domain: &[u8], data: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013b;
    domain.iter().chain(data).fold(OFFSET, |hash, &byte| {
        (hash ^ u128::from(byte)).wrapping_mul(PRIME)
    })
}

/// Whether the kernel command line names the hostname (`kios.hostname=`),
/// which the init prefers over `/etc/hostname`.
pub fn cmdline_names_hostname(cmdline: &[u8]) -> bool {
    cmdline
        .split(|b| b.is_ascii_whitespace())
        .any(|word| word.starts_with(b"kios.hostname=") && word.len() > b"kios.hostname=".len())
}

/// The kernel's limit on a hostname (HOST_NAME_MAX).
pub const HOSTNAME_MAX: usize = 64;

/// The first line of a hostname file, if it is a name the init takes: a
/// DNS-1123 subdomain (dot-separated labels of letters, digits and inner
/// hyphens, at most 63 bytes each) of at most 64 bytes. The init folds
/// uppercase to lowercase, as Kubernetes node names are.
pub fn valid_hostname(raw: &[u8]) -> Result<&str, &'static str> {
    let line = raw
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or(&[])
        .trim_ascii();
    let text = core::str::from_utf8(line).map_err(|_| "not UTF-8")?;
    if text.is_empty() {
        return Err("empty");
    }
    if text.len() > HOSTNAME_MAX {
        return Err("longer than 64 bytes, the kernel's limit");
    }
    for label in text.split('.') {
        let valid_chars = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if label.is_empty() || label.len() > 63 || !valid_chars {
            return Err("not a DNS-1123 name (letters, digits, '-' and '.')");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("not a DNS-1123 name (a label starts or ends with '-')");
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_product_uuid_becomes_the_machine_id_lowercased() {
        let id = MachineId::from_product_uuid(b"4C4C4544-0042-3510-8052-B4C04F4B4E32\n").unwrap();
        assert_eq!(id.as_str(), "4c4c4544004235108052b4c04f4b4e32");
        assert_eq!(&id.file_contents(), b"4c4c4544004235108052b4c04f4b4e32\n");
        assert_eq!(id.node_name().as_str(), "kios-4c4c45440042");
    }

    #[test]
    fn placeholder_and_malformed_product_uuids_are_not_identities() {
        for raw in [
            &b"00000000-0000-0000-0000-000000000000\n"[..],
            b"FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
            b"ffffffff-ffff-ffff-ffff-ffffffffffff",
            b"",
            b"4c4c4544-0042-3510-8052",
            b"4c4c4544-0042-3510-8052-b4c04f4b4e32aa",
            b"4c4c4544-0042-3510-8052-b4c04f4b4eZZ",
        ] {
            assert_eq!(MachineId::from_product_uuid(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn a_serial_number_is_hashed_stably_and_placeholders_refused() {
        let a = MachineId::from_serial_number(b"10000000abcdef01\0").unwrap();
        assert_eq!(
            a,
            MachineId::from_serial_number(b"10000000abcdef01").unwrap()
        );
        assert_ne!(
            a,
            MachineId::from_serial_number(b"10000000abcdef02").unwrap()
        );
        assert!(MachineId::parse(&a.file_contents()).is_some());
        for raw in [&b"\0"[..], b"0000000000000000\0", b"FFFFFFFF", b"  \0junk"] {
            assert_eq!(MachineId::from_serial_number(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn random_ids_are_version_4_uuids() {
        let id = MachineId::from_random([0xff; 16]);
        assert_eq!(id.as_str(), "ffffffffffff4fffbfffffffffffffff");
        let id = MachineId::from_random([0; 16]);
        assert_eq!(id.as_str(), "00000000000040008000000000000000");
        assert!(MachineId::parse(&id.file_contents()).is_some());
    }

    #[test]
    fn an_existing_machine_id_must_be_32_lowercase_hex_digits() {
        assert!(MachineId::parse(b"0123456789abcdef0123456789abcdef\n").is_some());
        assert!(MachineId::parse(b"0123456789abcdef0123456789abcdef").is_some());
        for raw in [
            &b""[..],
            b"uninitialized\n",
            b"0123456789ABCDEF0123456789ABCDEF\n",
            b"0123456789abcdef0123456789abcde\n",
            b"00000000000000000000000000000000\n",
            b"0123456789abcdef0123456789abcdef\n\n",
        ] {
            assert_eq!(MachineId::parse(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn the_command_line_names_the_hostname_only_with_a_value() {
        assert!(cmdline_names_hostname(
            b"console=ttyS0 kios.hostname=node-1 quiet\n"
        ));
        assert!(!cmdline_names_hostname(
            b"console=ttyS0 kios.hostname= quiet"
        ));
        assert!(!cmdline_names_hostname(b"console=ttyS0 xkios.hostname=a"));
        assert!(!cmdline_names_hostname(b""));
    }

    #[test]
    fn hostnames_follow_the_inits_rule() {
        assert_eq!(
            valid_hostname(b"worker-7.example.com\n"),
            Ok("worker-7.example.com")
        );
        assert_eq!(valid_hostname(b"Worker-7\nignored"), Ok("Worker-7"));
        assert_eq!(valid_hostname(b"\n"), Err("empty"));
        assert!(valid_hostname(b"under_score").is_err());
        assert!(valid_hostname(b"-lead").is_err());
        assert!(valid_hostname(b"a..b").is_err());
        assert!(valid_hostname(b"\xff").is_err());
        assert!(valid_hostname(&[b'a'; 65]).is_err());
        let derived = MachineId::from_random([0x5a; 16]).node_name();
        assert_eq!(
            valid_hostname(derived.as_str().as_bytes()),
            Ok(derived.as_str())
        );
    }
}
