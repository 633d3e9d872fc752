//! `/etc/kubernetes/node-labels`: one `key=value` label per line, checked
//! against Kubernetes' label syntax and the kubelet's `--node-labels`
//! rules, so an invalid label is dropped here instead of stopping the kubelet.

/// Why a label was dropped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LabelError {
    NoEquals,
    BadPrefix,
    BadName,
    BadValue,
    /// The kubelet refuses `kubernetes.io`/`k8s.io` labels outside its allowed set.
    ReservedNamespace,
    NotUtf8,
}

impl LabelError {
    pub fn reason(self) -> &'static str {
        match self {
            LabelError::NoEquals => "expected key=value",
            LabelError::BadPrefix => "key prefix is not a DNS subdomain of at most 253 characters",
            LabelError::BadName => "key name is not 1-63 alphanumerics, '-', '_' or '.'",
            LabelError::BadValue => "value is not at most 63 alphanumerics, '-', '_' or '.'",
            LabelError::ReservedNamespace => {
                "kubernetes.io and k8s.io labels the kubelet may not set"
            }
            LabelError::NotUtf8 => "not UTF-8",
        }
    }
}

/// Labels under these namespaces the kubelet may set on its own node.
const ALLOWED_NAMESPACES: [&str; 2] = ["kubelet.kubernetes.io", "node.kubernetes.io"];

/// Single labels in reserved namespaces the kubelet may set.
const ALLOWED_RESERVED_KEYS: [&str; 11] = [
    "kubernetes.io/hostname",
    "kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/instance-type",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
];

/// Checks one `key=value` label.
pub fn validate(label: &str) -> Result<(), LabelError> {
    let (key, value) = crate::text::split_once(label, b'=').ok_or(LabelError::NoEquals)?;
    let name = match crate::text::split_once(key, b'/') {
        Some((prefix, name)) => {
            if prefix.len() > 253 || !is_dns_subdomain(prefix) {
                return Err(LabelError::BadPrefix);
            }
            name
        }
        None => key,
    };
    if name.is_empty() || !is_qualified_name(name) {
        return Err(LabelError::BadName);
    }
    if !value.is_empty() && !is_qualified_name(value) {
        return Err(LabelError::BadValue);
    }
    if is_reserved(key) {
        return Err(LabelError::ReservedNamespace);
    }
    Ok(())
}

/// At most 63 characters, alphanumerics at both ends, `-_.` inside.
fn is_qualified_name(text: &str) -> bool {
    let bytes = text.as_bytes();
    let inner_ok = bytes
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let ends_ok = bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
    bytes.len() <= 63 && inner_ok && ends_ok
}

/// Lowercase RFC 1123 labels joined by dots.
fn is_dns_subdomain(text: &str) -> bool {
    crate::text::split(text, b'.').all(|label| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= 63
            && bytes
                .iter()
                .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-'
    })
}

fn is_reserved(key: &str) -> bool {
    let Some((prefix, _)) = crate::text::split_once(key, b'/') else {
        return false;
    };
    let in_namespace = |namespace: &str| {
        prefix == namespace
            || prefix
                .strip_suffix(namespace)
                .is_some_and(|head| head.ends_with('.'))
    };
    let reserved = in_namespace("kubernetes.io") || in_namespace("k8s.io");
    let allowed = ALLOWED_NAMESPACES.iter().any(|ns| in_namespace(ns))
        || ALLOWED_RESERVED_KEYS.contains(&key);
    reserved && !allowed
}

/// The labels of a node-labels file, joined with commas for `--node-labels`.
pub type LabelList = heapless::String<4096>;

/// Reads a node-labels file: blank lines and `#` comments are skipped;
/// each invalid label is dropped and reported through `on_dropped`. A
/// label that would overflow the list is reported as too long.
pub fn parse_file<'a>(
    content: &'a [u8],
    mut on_dropped: impl FnMut(&'a [u8], &'static str),
) -> LabelList {
    let mut list = LabelList::new();
    for raw_line in crate::text::split_bytes(content, b'\n') {
        let raw_line = raw_line.trim_ascii();
        if raw_line.is_empty() || raw_line.starts_with(b"#") {
            continue;
        }
        let label = match core::str::from_utf8(raw_line) {
            Ok(label) => label,
            Err(_) => {
                on_dropped(raw_line, LabelError::NotUtf8.reason());
                continue;
            }
        };
        if let Err(error) = validate(label) {
            on_dropped(raw_line, error.reason());
            continue;
        }
        let separator = if list.is_empty() { "" } else { "," };
        if list.len() + separator.len() + label.len() > list.capacity() {
            on_dropped(raw_line, "the label list is longer than 4096 bytes");
            continue;
        }
        // Capacity was checked just above.
        let _ = list.push_str(separator);
        let _ = list.push_str(label);
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_labels() {
        for label in [
            "tier=node",
            "kios.dev/role=standin",
            "example.com/empty=",
            "a=b",
            "node.kubernetes.io/pool=edge",
            "x.node.kubernetes.io/y=z",
            "topology.kubernetes.io/zone=eu-1",
            "A_b.c-D=E_f.g-H",
        ] {
            assert_eq!(validate(label), Ok(()), "{label}");
        }
    }

    #[test]
    fn invalid_labels_name_their_fault() {
        assert_eq!(validate("novalue"), Err(LabelError::NoEquals));
        assert_eq!(validate("bad label=x"), Err(LabelError::BadName));
        assert_eq!(validate("-bad=x"), Err(LabelError::BadName));
        assert_eq!(validate("=x"), Err(LabelError::BadName));
        assert_eq!(validate("Example.com/a=b"), Err(LabelError::BadPrefix));
        assert_eq!(validate("/a=b"), Err(LabelError::BadPrefix));
        assert_eq!(validate("a/b/c=d"), Err(LabelError::BadName));
        assert_eq!(validate("a=-x"), Err(LabelError::BadValue));
        assert_eq!(
            validate(&format!("a={}", "v".repeat(64))),
            Err(LabelError::BadValue)
        );
        assert_eq!(
            validate(&format!("{}=v", "k".repeat(64))),
            Err(LabelError::BadName)
        );
        assert_eq!(
            validate("node-role.kubernetes.io/master=x"),
            Err(LabelError::ReservedNamespace)
        );
        assert_eq!(validate("k8s.io/x=y"), Err(LabelError::ReservedNamespace));
    }

    #[test]
    fn file_keeps_valid_labels_and_reports_dropped_ones() {
        let content =
            b"kios.dev/role=standin\n# a comment\n\n  tier=node  \nbad label=x\n-bad=x\n\xff=1\n";
        let mut dropped = Vec::new();
        let list = parse_file(content, |label, reason| {
            dropped.push((label.to_vec(), reason))
        });
        assert_eq!(list.as_str(), "kios.dev/role=standin,tier=node");
        let dropped_labels: Vec<&[u8]> =
            dropped.iter().map(|(label, _)| label.as_slice()).collect();
        assert_eq!(dropped_labels, [&b"bad label=x"[..], b"-bad=x", b"\xff=1"]);
    }

    #[test]
    fn huge_files_stop_at_the_list_limit_without_panicking() {
        let content = "abcdefghij=0123456789\n".repeat(1000);
        let mut dropped = 0;
        let list = parse_file(content.as_bytes(), |_, _| dropped += 1);
        assert!(list.len() <= 4096);
        assert!(dropped > 0);
    }

    #[test]
    fn binary_garbage_never_panics() {
        let garbage: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let list = parse_file(&garbage, |_, _| {});
        assert!(list
            .split(',')
            .all(|label| label.is_empty() || validate(label).is_ok()));
    }
}
