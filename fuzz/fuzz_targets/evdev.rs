//! evdev (`power_button`): `struct input_event` records read from
//! `/dev/input/event*`, and the device names the init watches, checked
//! against a plain decoding of the kernel's layout.
#![no_main]

use kios_init::power_button::{any_press, is_event_device, is_power_press, EVENT_SIZE};
use libfuzzer_sys::fuzz_target;

fn press(event: &[u8]) -> bool {
    event.len() == EVENT_SIZE
        && u16::from_ne_bytes([event[16], event[17]]) == 1
        && u16::from_ne_bytes([event[18], event[19]]) == 116
        && i32::from_ne_bytes([event[20], event[21], event[22], event[23]]) == 1
}

fuzz_target!(|data: &[u8]| {
    assert_eq!(any_press(data), data.chunks_exact(EVENT_SIZE).any(press));
    for start in 0..data.len().min(EVENT_SIZE) {
        let event = &data[start..];
        assert_eq!(is_power_press(event), press(event));
    }
    let name = data.strip_prefix(b"event");
    let expected = core::str::from_utf8(data).is_ok()
        && name.is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit));
    assert_eq!(is_event_device(data), expected);
});
