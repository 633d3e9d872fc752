//! The node's hostname: an RFC 1123 name the kernel and Kubernetes accept.

/// The kernel's limit (HOST_NAME_MAX).
pub const HOSTNAME_MAX: usize = 64;

/// A validated, lowercased hostname.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Hostname(heapless::String<HOSTNAME_MAX>);

impl Hostname {
    /// Parses the first line of `/etc/hostname` (or a command-line value):
    /// dot-separated labels of letters, digits and inner hyphens, at most 64
    /// bytes. Uppercase is folded to lowercase, as Kubernetes node names are.
    pub fn parse(raw: &[u8]) -> Result<Hostname, &'static str> {
        let line = crate::text::split_bytes(raw, b'\n').next().unwrap_or(&[]);
        let text = core::str::from_utf8(line.trim_ascii()).map_err(|_| "not UTF-8")?;
        if text.is_empty() {
            return Err("empty");
        }
        if text.len() > HOSTNAME_MAX {
            return Err("longer than 64 bytes");
        }
        for label in crate::text::split(text, b'.') {
            let valid_chars = label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if label.is_empty() || label.len() > 63 || !valid_chars {
                return Err("not an RFC 1123 name");
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err("a label starts or ends with '-'");
            }
        }
        let mut name = heapless::String::new();
        name.push_str(text).map_err(|_| "longer than 64 bytes")?;
        name.make_ascii_lowercase();
        Ok(Hostname(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_are_lowercased() {
        assert_eq!(
            Hostname::parse(b"Worker-7.Example.com\n").unwrap().as_str(),
            "worker-7.example.com"
        );
    }

    #[test]
    fn bad_names_are_rejected_with_a_reason() {
        assert_eq!(Hostname::parse(b""), Err("empty"));
        assert_eq!(Hostname::parse(b"  \n"), Err("empty"));
        assert_eq!(Hostname::parse(b"\xff\xfe"), Err("not UTF-8"));
        assert_eq!(Hostname::parse(b"a b"), Err("not an RFC 1123 name"));
        assert_eq!(Hostname::parse(b"node..one"), Err("not an RFC 1123 name"));
        assert_eq!(
            Hostname::parse(b"-node"),
            Err("a label starts or ends with '-'")
        );
        assert_eq!(Hostname::parse(&[b'a'; 65]), Err("longer than 64 bytes"));
    }

    #[test]
    fn only_the_first_line_counts() {
        assert_eq!(
            Hostname::parse(b"node\ngarbage here\n").unwrap().as_str(),
            "node"
        );
    }
}
