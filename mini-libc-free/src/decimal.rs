//! Decimal digits without core::fmt (whose machinery costs kilobytes in a
//! freestanding binary): shared by kmsg lines and the node's small tools.

/// The digits of `value`, written at the end of `buf`.
pub fn digits(mut value: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buf[start..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::digits;

    #[test]
    fn zero_one_and_the_largest() {
        let mut buf = [0; 20];
        assert_eq!(digits(0, &mut buf), b"0");
        assert_eq!(digits(1, &mut buf), b"1");
        assert_eq!(digits(u64::MAX, &mut buf), b"18446744073709551615");
    }
}
