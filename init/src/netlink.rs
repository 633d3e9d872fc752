//! The one rtnetlink message the init sends: set an interface up, by name.
//! Built and parsed here so the byte layout is tested on the host.

use crate::errno::Errno;

const RTM_NEWLINK: u16 = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const IFF_UP: u32 = 0x1;
const IFLA_IFNAME: u16 = 3;
const NLMSG_HEADER_LEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;

/// The longest interface name (IFNAMSIZ less the NUL).
pub const IFNAME_MAX: usize = 15;

/// An RTM_NEWLINK request with IFF_UP for the interface `name`.
pub type LinkUpRequest = heapless::Vec<u8, 52>;

/// Builds the request: nlmsghdr, ifinfomsg (index 0: look up by name) and
/// an IFLA_IFNAME attribute, each padded to 4 bytes as netlink requires.
pub fn link_up_request(name: &str, sequence: u32) -> Result<LinkUpRequest, Errno> {
    if name.is_empty() || name.len() > IFNAME_MAX {
        return Err(Errno::INVAL);
    }
    let attribute_len = 4 + name.len() + 1;
    let padded_attribute_len = (attribute_len + 3) & !3;
    let total = NLMSG_HEADER_LEN + IFINFOMSG_LEN + padded_attribute_len;
    let mut message = LinkUpRequest::new();
    let mut put = |bytes: &[u8]| message.extend_from_slice(bytes).map_err(|_| Errno::INVAL);
    put(&(total as u32).to_ne_bytes())?;
    put(&RTM_NEWLINK.to_ne_bytes())?;
    put(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes())?;
    put(&sequence.to_ne_bytes())?;
    put(&0u32.to_ne_bytes())?; // port id: the kernel fills it in
    put(&[0, 0])?; // family AF_UNSPEC, padding
    put(&0u16.to_ne_bytes())?; // device type
    put(&0i32.to_ne_bytes())?; // index 0: resolve by IFLA_IFNAME
    put(&IFF_UP.to_ne_bytes())?; // flags
    put(&IFF_UP.to_ne_bytes())?; // change mask: only IFF_UP
    put(&(attribute_len as u16).to_ne_bytes())?;
    put(&IFLA_IFNAME.to_ne_bytes())?;
    put(name.as_bytes())?;
    put(&[0; 4][..padded_attribute_len - attribute_len + 1])?;
    Ok(message)
}

/// Reads the kernel's acknowledgement: an NLMSG_ERROR carrying 0 or -errno.
pub fn parse_ack(reply: &[u8]) -> Result<(), Errno> {
    if reply.len() < NLMSG_HEADER_LEN + 4 {
        return Err(Errno::IO);
    }
    let message_type = u16::from_ne_bytes([reply[4], reply[5]]);
    if message_type != NLMSG_ERROR {
        return Err(Errno::IO);
    }
    let error = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
    match error {
        0 => Ok(()),
        negative if negative < 0 => Err(Errno(negative.saturating_neg())),
        _ => Err(Errno::IO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout_matches_rtnetlink() {
        let message = link_up_request("lo", 7).unwrap();
        assert_eq!(message.len(), 40);
        assert_eq!(u32::from_ne_bytes(message[0..4].try_into().unwrap()), 40);
        assert_eq!(
            u16::from_ne_bytes(message[4..6].try_into().unwrap()),
            RTM_NEWLINK
        );
        assert_eq!(
            u16::from_ne_bytes(message[6..8].try_into().unwrap()),
            NLM_F_REQUEST | NLM_F_ACK
        );
        assert_eq!(u32::from_ne_bytes(message[8..12].try_into().unwrap()), 7);
        assert_eq!(
            u32::from_ne_bytes(message[24..28].try_into().unwrap()),
            IFF_UP
        );
        assert_eq!(u16::from_ne_bytes(message[32..34].try_into().unwrap()), 7);
        assert_eq!(&message[36..40], b"lo\0\0");
    }

    #[test]
    fn names_are_bounded() {
        assert_eq!(link_up_request("", 1), Err(Errno::INVAL));
        assert_eq!(link_up_request("sixteen-chars-xx", 1), Err(Errno::INVAL));
        assert_eq!(link_up_request("fifteen-chars-x", 1).unwrap().len(), 52);
    }

    #[test]
    fn acks_and_errors() {
        let mut reply = [0u8; 36];
        reply[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(parse_ack(&reply), Ok(()));
        reply[16..20].copy_from_slice(&(-19i32).to_ne_bytes());
        assert_eq!(parse_ack(&reply), Err(Errno::NODEV));
        assert_eq!(parse_ack(&reply[..10]), Err(Errno::IO));
        reply[4..6].copy_from_slice(&16u16.to_ne_bytes());
        assert_eq!(parse_ack(&reply), Err(Errno::IO));
    }
}
