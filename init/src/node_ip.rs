//! `/etc/kubernetes/node-ip`: the node's IP, or an IPv4 and an IPv6 for
//! dual stack (`10.0.0.5,fd00::5`), as `--node-ip` takes it.

use core::net::IpAddr;

/// A validated `--node-ip` value.
pub type NodeIp = heapless::String<96>;

/// Parses the file's first line. Dual stack needs one address of each family.
pub fn parse(raw: &[u8]) -> Result<NodeIp, &'static str> {
    let line = raw.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let text = core::str::from_utf8(line.trim_ascii()).map_err(|_| "not UTF-8")?;
    if text.is_empty() {
        return Err("empty");
    }
    let mut families = [false; 2];
    let mut count = 0;
    for part in text.split(',') {
        let address: IpAddr = part.trim_ascii().parse().map_err(|_| "not an IP address")?;
        if address.is_unspecified() || address.is_multicast() {
            return Err("not a unicast address");
        }
        let family = usize::from(address.is_ipv6());
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
    for (index, part) in text.split(',').enumerate() {
        if index > 0 {
            value.push(',').map_err(|_| "too long")?;
        }
        value.push_str(part.trim_ascii()).map_err(|_| "too long")?;
    }
    Ok(value)
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
