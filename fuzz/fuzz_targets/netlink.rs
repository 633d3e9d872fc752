//! rtnetlink (`netlink`): the acknowledgement parser on any reply, and the
//! link-up request for any interface name (its lengths agree with its
//! header and netlink's 4-byte alignment).
#![no_main]

use kios_init::errno::Errno;
use kios_init::netlink;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match netlink::parse_ack(data) {
        Ok(()) => {
            assert!(data.len() >= 20 && data[4..6] == 2u16.to_ne_bytes());
            assert_eq!(data[16..20], [0; 4]);
        }
        Err(Errno(errno)) => assert!(errno > 0, "errno {errno}"),
    }
    let (sequence, name) = data.split_at(data.len().min(4));
    let sequence = u32::from_le_bytes([0, 1, 2, 3].map(|i| sequence.get(i).copied().unwrap_or(0)));
    let Ok(name) = core::str::from_utf8(name) else {
        return;
    };
    match netlink::link_up_request(name, sequence) {
        Ok(request) => {
            assert!(!name.is_empty() && name.len() <= netlink::IFNAME_MAX);
            let total = u32::from_ne_bytes(request[..4].try_into().unwrap()) as usize;
            assert_eq!(total, request.len());
            assert_eq!(total % 4, 0);
            assert_eq!(request[8..12], sequence.to_ne_bytes());
            let attribute_len = u16::from_ne_bytes([request[32], request[33]]) as usize;
            assert_eq!(attribute_len, 4 + name.len() + 1);
            assert_eq!(&request[36..36 + name.len()], name.as_bytes());
            assert_eq!(request[36 + name.len()], 0);
        }
        Err(errno) => {
            assert_eq!(errno, Errno::INVAL);
            assert!(name.is_empty() || name.len() > netlink::IFNAME_MAX);
        }
    }
});
