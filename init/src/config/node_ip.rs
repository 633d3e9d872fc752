//! `/etc/kubernetes/node-ip`: the node's IP, or an IPv4 and an IPv6 for
//! dual stack (`10.0.0.5,fd00::5`), as `--node-ip` takes it.

/// A validated `--node-ip` value.
pub type NodeIp = heapless::String<96>;

/// Parses the file's first line into the value the kubelet will take.
/// Dual stack needs one address of each family, and a kubelet with dual
/// stack on (`dual_stack`, from 1.21): before it, the kubelet exits on a
/// pair, so only the first address is kept and the second returned, to be
/// logged as dropped.
pub fn parse(raw: &[u8], dual_stack: bool) -> Result<(NodeIp, Option<&str>), &'static str> {
    let line = crate::text::split_bytes(raw, b'\n').next().unwrap_or(&[]);
    let text = core::str::from_utf8(line.trim_ascii()).map_err(|_| "not UTF-8")?;
    if text.is_empty() {
        return Err("empty");
    }
    let mut families = [false; 2];
    let mut count = 0;
    for part in crate::text::split(text, b',') {
        let address = Address::parse(part.trim_ascii().as_bytes())
            .ok_or("not an IP address")?
            .as_go_sees_it();
        address.check_usable()?;
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
    let mut dropped = None;
    for (index, part) in crate::text::split(text, b',').enumerate() {
        let part = part.trim_ascii();
        if index > 0 {
            if !dual_stack {
                dropped = Some(part);
                break;
            }
            value.push(',').map_err(|_| "too long")?;
        }
        value.push_str(part).map_err(|_| "too long")?;
    }
    Ok((value, dropped))
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

    /// Go (and so the kubelet) reads an IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`) as the IPv4 address: same family, same checks.
    fn as_go_sees_it(self) -> Address {
        match self {
            Address::V6([0, 0, 0, 0, 0, 0xffff, high, low]) => {
                let [a, b] = high.to_be_bytes();
                let [c, d] = low.to_be_bytes();
                Address::V4([a, b, c, d])
            }
            address => address,
        }
    }

    /// What the kubelet refuses as a node IP (`validateNodeIP`): it would
    /// never report the node's status.
    fn check_usable(self) -> Result<(), &'static str> {
        if !self.is_unicast() {
            return Err("not a unicast address");
        }
        let (loopback, link_local) = match self {
            Address::V4(octets) => (octets[0] == 127, octets[..2] == [169, 254]),
            Address::V6(groups) => (
                groups == [0, 0, 0, 0, 0, 0, 0, 1],
                groups[0] & 0xffc0 == 0xfe80,
            ),
        };
        if loopback {
            return Err("a loopback address");
        }
        if link_local {
            return Err("a link-local address");
        }
        Ok(())
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
        let value =
            |raw: &'static [u8]| parse(raw, true).map(|(ip, dropped)| (ip.to_string(), dropped));
        assert_eq!(value(b"10.0.2.15\n"), Ok(("10.0.2.15".into(), None)));
        assert_eq!(
            value(b" 10.0.2.15 , fd00::15 "),
            Ok(("10.0.2.15,fd00::15".into(), None))
        );
        assert_eq!(value(b"fd00::15"), Ok(("fd00::15".into(), None)));
    }

    /// Kubelet 1.20 exits with "dual-stack --node-ip ... not supported in
    /// a single-stack cluster": it gets the first address only.
    #[test]
    fn a_single_stack_kubelet_gets_the_first_address() {
        let (ip, dropped) = parse(b"10.0.2.15,fd00::15\n", false).unwrap();
        assert_eq!((ip.as_str(), dropped), ("10.0.2.15", Some("fd00::15")));
        let (ip, dropped) = parse(b"fd00::15", false).unwrap();
        assert_eq!((ip.as_str(), dropped), ("fd00::15", None));
    }

    /// Go reads `::ffff:a.b.c.d` as IPv4: beside an IPv4 address the kubelet
    /// sees two of one family and exits.
    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        assert_eq!(
            parse(b"10.0.2.15,::ffff:10.0.2.16", true),
            Err("two addresses of the same family")
        );
        assert_eq!(parse(b"::ffff:127.0.0.1", true), Err("a loopback address"));
        let (ip, _) = parse(b"::ffff:10.0.2.15,fd00::15", true).unwrap();
        assert_eq!(ip.as_str(), "::ffff:10.0.2.15,fd00::15");
    }

    #[test]
    fn addresses_the_kubelet_refuses_are_refused() {
        for (raw, reason) in [
            (&b"127.0.0.1"[..], "a loopback address"),
            (b"::1", "a loopback address"),
            (b"169.254.1.1", "a link-local address"),
            (b"fe80::1", "a link-local address"),
            (b"febf::1", "a link-local address"),
        ] {
            assert_eq!(parse(raw, true), Err(reason), "{raw:?}");
        }
        assert!(parse(b"fec0::1", true).is_ok());
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
        assert_eq!(parse(b"", true), Err("empty"));
        assert_eq!(parse(b"\xff", true), Err("not UTF-8"));
        assert_eq!(parse(b"10.0.2", true), Err("not an IP address"));
        assert_eq!(
            parse(b"10.0.2.15; rm -rf /", true),
            Err("not an IP address")
        );
        assert_eq!(parse(b"0.0.0.0", true), Err("not a unicast address"));
        assert_eq!(
            parse(b"10.0.0.1,10.0.0.2", true),
            Err("two addresses of the same family")
        );
        assert_eq!(
            parse(b"10.0.0.1,fd00::1,10.0.0.2", false),
            Err("two addresses of the same family")
        );
    }
}
