//! `/etc/kubernetes/node-ip` (`config::node_ip::parse`, a hand-written
//! address parser): what it accepts parses again to itself, and each
//! address is one the standard library's parser reads and that the kubelet
//! takes (unicast, not loopback, not link-local; `::ffff:a.b.c.d` counted
//! as IPv4, as Go reads it); a single address std reads and the kubelet
//! would take is accepted.
#![no_main]

use std::net::IpAddr;

use kios_init::config::node_ip;
use libfuzzer_sys::fuzz_target;

fn usable(address: IpAddr) -> bool {
    match address.to_canonical() {
        IpAddr::V4(v4) => {
            !v4.is_unspecified() && !v4.is_multicast() && !v4.is_loopback() && !v4.is_link_local()
        }
        IpAddr::V6(v6) => {
            !v6.is_unspecified()
                && !v6.is_multicast()
                && !v6.is_loopback()
                && v6.segments()[0] & 0xffc0 != 0xfe80
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&dual, raw)) = data.split_first() else {
        return;
    };
    let dual_stack = dual & 1 == 1;
    let parsed = node_ip::parse(raw, dual_stack);
    if let Ok((value, dropped)) = &parsed {
        assert_eq!(
            node_ip::parse(value.as_bytes(), dual_stack),
            Ok((value.clone(), None))
        );
        let addresses: Vec<IpAddr> = value
            .split(',')
            .map(|part| {
                part.parse()
                    .unwrap_or_else(|_| panic!("{part:?} accepted, std refuses it"))
            })
            .collect();
        assert!(addresses.len() <= if dual_stack { 2 } else { 1 });
        assert!(addresses.iter().all(|a| usable(*a)), "{value:?}");
        if let Some(dropped) = dropped {
            assert!(!dual_stack);
            let address: IpAddr = dropped.parse().expect("the dropped address parses");
            assert!(usable(address));
        }
    }
    // One address on its own line: accepted exactly when std reads it as usable.
    let line = raw
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if let Ok(text) = core::str::from_utf8(line) {
        if !text.contains(',') && !text.is_empty() && text.len() <= 96 {
            let std_ok = text.parse::<IpAddr>().is_ok_and(usable);
            assert_eq!(parsed.is_ok(), std_ok, "{text:?}: init {parsed:?}");
        }
    }
});
