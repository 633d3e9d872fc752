//! `/etc/kubernetes/node-ip`: the node's IP, or an IPv4 and an IPv6 for
//! dual stack (`10.0.0.5,fd00::5`), as `--node-ip` takes it.

/// A validated `--node-ip` value.
pub type NodeIp = heapless::String<96>;

/// Parses the file's first line. Dual stack needs one address of each family.
pub fn parse(raw: &[u8]) -> Result<NodeIp, &'static str> {
    let line = crate::text::split_bytes(raw, b'\n').next().unwrap_or(&[]);
    let text = core::str::from_utf8(line.trim_ascii()).map_err(|_| "not UTF-8")?;
    if text.is_empty() {
        return Err("empty");
    }
    let mut families = [false; 2];
    let mut count = 0;
    for part in crate::text::split(text, b',') {
        let address = Address::parse(part.trim_ascii().as_bytes()).ok_or("not an IP address")?;
        if !address.is_unicast() {
            return Err("not a unicast address");
        }
        let family = usize::from(matches!(address, Address::V6(_)));
        if families[family] {
            return Err("two addresses of the same family");
        }
        families[family] = true;
        count += 1;
    }
    if count > 2 {
        return Err("more than two addresses");
    }
    let mut value = NodeIp::new();
    for (index, part) in crate::text::split(text, b',').enumerate() {
        if index > 0 {
            value.push(',').map_err(|_| "too long")?;
        }
        value.push_str(part.trim_ascii()).map_err(|_| "too long")?;
    }
    Ok(value)
}

/// An IP address, parsed by hand: core::net's parser costs the init about
/// 2 KiB, and a node IP needs only the plain textual forms (no zone ids).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Address {
    V4([u8; 4]),
    V6([u16; 8]),
}

impl Address {
    fn parse(text: &[u8]) -> Option<Address> {
        if crate::text::has_byte(text, b':') {
            parse_v6(text).map(Address::V6)
        } else {
            parse_v4(text).map(Address::V4)
        }
    }

    /// Neither unspecified (0.0.0.0, ::) nor multicast (224.0.0.0/4, ff00::/8).
    fn is_unicast(self) -> bool {
        match self {
            Address::V4(octets) => octets != [0; 4] && octets[0] & 0xf0 != 0xe0,
            Address::V6(groups) => groups != [0; 8] && groups[0] & 0xff00 != 0xff00,
        }
    }
}

/// Dotted decimal, four parts of 0-255 without leading zeros (which some
/// parsers read as octal).
fn parse_v4(text: &[u8]) -> Option<[u8; 4]> {
    let mut octets = [0u8; 4];
    let mut parts = crate::text::split_bytes(text, b'.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || (part.len() > 1 && part[0] == b'0') {
            return None;
        }
        let mut value = 0u16;
        for &digit in part {
            if !digit.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u16::from(digit - b'0');
        }
        *octet = u8::try_from(value).ok()?;
    }
    parts.next().is_none().then_some(octets)
}

/// Colon-separated groups of 1-4 hex digits, at most one `::`, and an
/// optional dotted IPv4 tail standing for the last two groups.
fn parse_v6(text: &[u8]) -> Option<[u16; 8]> {
    // A second `::` (or a `:::`) leaves an empty group, which parse_groups refuses.
    let (head, tail) = match text.windows(2).position(|pair| pair == b"::") {
        Some(at) => (text.get(..at)?, Some(text.get(at + 2..)?)),
        None => (text, None),
    };
    let mut groups = [0u16; 8];
    let head_count = parse_groups(head, &mut groups, tail.is_none())?;
    let Some(tail) = tail else {
        return (head_count == 8).then_some(groups);
    };
    let mut tail_groups = [0u16; 8];
    let tail_count = parse_groups(tail, &mut tail_groups, true)?;
    // `::` stands for at least one group of zeros.
    if head_count + tail_count > 7 {
        return None;
    }
    let start = 8 - tail_count;
    groups[start..].copy_from_slice(&tail_groups[..tail_count]);
    Some(groups)
}

/// Parses `a:b:c` into `groups`, returning how many it filled. The last
/// part may be a dotted IPv4 address when `ipv4_tail` allows it.
fn parse_groups(text: &[u8], groups: &mut [u16; 8], ipv4_tail: bool) -> Option<usize> {
    if text.is_empty() {
        return Some(0);
    }
    let mut count = 0;
    let mut parts = text.split(|&b| b == b':').peekable();
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        if last && ipv4_tail && crate::text::has_byte(part, b'.') {
            let [a, b, c, d] = parse_v4(part)?;
            *groups.get_mut(count)? = u16::from_be_bytes([a, b]);
            *groups.get_mut(count + 1)? = u16::from_be_bytes([c, d]);
            return Some(count + 2);
        }
        if part.is_empty() || part.len() > 4 {
            return None;
        }
        let mut value = 0u16;
        for &digit in part {
            value = value * 16 + u16::from(char::from(digit).to_digit(16)? as u8);
        }
        *groups.get_mut(count)? = value;
        count += 1;
    }
    Some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_dual_stack() {
        assert_eq!(parse(b"10.0.2.15\n").unwrap().as_str(), "10.0.2.15");
        assert_eq!(
            parse(b" 10.0.2.15 , fd00::15 ").unwrap().as_str(),
            "10.0.2.15,fd00::15"
        );
        assert_eq!(parse(b"fd00::15").unwrap().as_str(), "fd00::15");
    }

    #[test]
    fn the_hand_parser_agrees_with_core_net() {
        let cases: &[&str] = &[
            "10.0.2.15",
            "255.255.255.255",
            "0.0.0.0",
            "224.0.0.1",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3.04",
            "1..2.3",
            "1.2.3.4.",
            "a.b.c.d",
            "",
            "::",
            "::1",
            "fd00::15",
            "fe80::1:2:3:4",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7",
            "1::2::3",
            ":::",
            "1:::2",
            "::ffff:10.0.2.15",
            "1:2:3:4:5:6:1.2.3.4",
            "1:2:3:4:5:6:7:1.2.3.4",
            "::1.2.3.4",
            "12345::",
            "ff02::1",
            "g::1",
            "1:2:3:4:5:6:7::",
            "::1:2:3:4:5:6:7",
            "1::",
            ":1::",
            "1::2:",
            "::1.2.3",
            "fe80::1%eth0",
        ];
        for case in cases {
            let ours = Address::parse(case.as_bytes());
            let theirs: Option<core::net::IpAddr> = case.parse().ok();
            match (ours, theirs) {
                (None, None) => {}
                (Some(Address::V4(octets)), Some(core::net::IpAddr::V4(v4))) => {
                    assert_eq!(octets, v4.octets(), "{case}");
                    assert_eq!(
                        Address::V4(octets).is_unicast(),
                        !v4.is_unspecified() && !v4.is_multicast(),
                        "{case}"
                    );
                }
                (Some(Address::V6(groups)), Some(core::net::IpAddr::V6(v6))) => {
                    assert_eq!(groups, v6.segments(), "{case}");
                    assert_eq!(
                        Address::V6(groups).is_unicast(),
                        !v6.is_unspecified() && !v6.is_multicast(),
                        "{case}"
                    );
                }
                (ours, theirs) => panic!("{case}: ours {ours:?}, core::net {theirs:?}"),
            }
        }
    }

    #[test]
    fn malformed_values_are_refused() {
        assert_eq!(parse(b""), Err("empty"));
        assert_eq!(parse(b"\xff"), Err("not UTF-8"));
        assert_eq!(parse(b"10.0.2"), Err("not an IP address"));
        assert_eq!(parse(b"10.0.2.15; rm -rf /"), Err("not an IP address"));
        assert_eq!(parse(b"0.0.0.0"), Err("not a unicast address"));
        assert_eq!(
            parse(b"10.0.0.1,10.0.0.2"),
            Err("two addresses of the same family")
        );
        assert_eq!(
            parse(b"10.0.0.1,fd00::1,10.0.0.2"),
            Err("two addresses of the same family")
        );
    }
}
