//! The power button (ACPI on x86 and arm64 UEFI machines, GPIO keys on
//! arm64 boards): the kernel reports it as a key on an evdev device, and
//! nothing but the init is there to read it.

/// Where devtmpfs puts the evdev devices.
pub const INPUT_DIR: &str = "/dev/input";
/// `struct input_event` on 64-bit kernels: a `timeval` (two 64-bit
/// words), then `u16 type`, `u16 code`, `i32 value`.
pub const EVENT_SIZE: usize = 24;
/// From `linux/input-event-codes.h`.
const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;
/// A key event's value when the key goes down (0 up, 2 repeat).
const PRESSED: i32 = 1;

/// Whether one `struct input_event` is the power key going down.
pub fn is_power_press(event: &[u8]) -> bool {
    let [_, _, _, _, _, _, _, _, _, _, _, _, _, _, _, _, t0, t1, c0, c1, v0, v1, v2, v3] = event
    else {
        return false;
    };
    u16::from_ne_bytes([*t0, *t1]) == EV_KEY
        && u16::from_ne_bytes([*c0, *c1]) == KEY_POWER
        && i32::from_ne_bytes([*v0, *v1, *v2, *v3]) == PRESSED
}

/// Whether a read of whole `struct input_event`s holds a power key press.
pub fn any_press(events: &[u8]) -> bool {
    events.chunks_exact(EVENT_SIZE).any(is_power_press)
}

/// Bytes of a device's key bitmap (`EVIOCGBIT(EV_KEY)`) that hold KEY_POWER.
pub const KEY_BITS_NEEDED: usize = KEY_POWER as usize / 8 + 1;

/// Whether a device's key bitmap has KEY_POWER: only such devices are
/// watched, so keyboards, mice and sensors cannot crowd the button out.
pub fn has_power_key(key_bits: &[u8]) -> bool {
    key_bits
        .get(usize::from(KEY_POWER / 8))
        .is_some_and(|byte| byte & (1 << (KEY_POWER % 8)) != 0)
}

/// `event0`, `event12`: the evdev nodes (not `mice`, `mouse0`, `js0`),
/// the devices the init watches.
pub fn is_event_device(name: &[u8]) -> bool {
    // Matched as text: the UTF-8 check is in the binary anyway, and a
    // byte-slice prefix match cost the init 48 bytes more.
    core::str::from_utf8(name).is_ok_and(|name| {
        name.strip_prefix("event")
            .is_some_and(|number| !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u16, code: u16, value: i32) -> [u8; EVENT_SIZE] {
        let mut bytes = [0u8; EVENT_SIZE];
        bytes[..8].copy_from_slice(&1_700_000_000i64.to_ne_bytes());
        bytes[16..18].copy_from_slice(&kind.to_ne_bytes());
        bytes[18..20].copy_from_slice(&code.to_ne_bytes());
        bytes[20..24].copy_from_slice(&value.to_ne_bytes());
        bytes
    }

    #[test]
    fn only_the_power_key_going_down_counts() {
        assert!(is_power_press(&event(EV_KEY, KEY_POWER, 1)));
        // Released, auto-repeat, another key, a sync event.
        assert!(!is_power_press(&event(EV_KEY, KEY_POWER, 0)));
        assert!(!is_power_press(&event(EV_KEY, KEY_POWER, 2)));
        assert!(!is_power_press(&event(EV_KEY, 28, 1)));
        assert!(!is_power_press(&event(0, 0, 0)));
        // A short read is no event.
        assert!(!is_power_press(&event(EV_KEY, KEY_POWER, 1)[..20]));
    }

    #[test]
    fn a_press_anywhere_in_a_read_counts() {
        let sync = event(0, 0, 0);
        let press = event(EV_KEY, KEY_POWER, 1);
        assert!(any_press(&[sync, press, sync].concat()));
        assert!(!any_press(&[sync, event(EV_KEY, KEY_POWER, 0)].concat()));
        // A partial event at the end is no press.
        assert!(!any_press(&[&sync[..], &press[..EVENT_SIZE - 1]].concat()));
    }

    #[test]
    fn only_devices_with_the_power_key_are_watched() {
        let mut bits = [0u8; KEY_BITS_NEEDED];
        assert!(!has_power_key(&bits));
        bits[14] = 1 << 4;
        assert!(has_power_key(&bits));
        // A bitmap cut short before the key (a device with few keys).
        assert!(!has_power_key(&bits[..14]));
        // Every other key: a keyboard without the power key.
        let mut others = [0xffu8; KEY_BITS_NEEDED];
        others[14] = !(1 << 4);
        assert!(!has_power_key(&others));
    }

    #[test]
    fn only_evdev_nodes_are_watched() {
        for name in ["event0", "event12"] {
            assert!(is_event_device(name.as_bytes()), "{name}");
        }
        for name in ["event", "mice", "mouse0", "js0", "eventx", "by-path"] {
            assert!(!is_event_device(name.as_bytes()), "{name}");
        }
    }
}
