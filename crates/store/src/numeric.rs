//! The stored value of an `incr`/`decr` target read the way memcached's `safe_strtoull` reads item
//! data: optional leading whitespace and sign, at least one digit, then whitespace or the end.
//! A minus sign is only refused when the negated result has its top bit set (so `-0` is 0).

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

pub fn parse_counter(data: &[u8]) -> Option<u64> {
    let mut i = data.iter().take_while(|&&b| is_c_space(b)).count();
    let negative = match data.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = data[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    if let Some(&next) = data.get(i + digits) {
        if !is_c_space(next) {
            return None;
        }
    }
    let mut value: u64 = 0;
    for &d in &data[i..i + digits] {
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        value = value.wrapping_neg();
        if (value as i64) < 0 {
            return None;
        }
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::parse_counter;

    #[test]
    fn reads_like_safe_strtoull() {
        assert_eq!(parse_counter(b"10"), Some(10));
        assert_eq!(parse_counter(b"9 "), Some(9));
        assert_eq!(parse_counter(b" 7"), Some(7));
        assert_eq!(parse_counter(b"5 abc"), Some(5));
        assert_eq!(parse_counter(b"5abc"), None);
        assert_eq!(parse_counter(b""), None);
        assert_eq!(parse_counter(b"-5"), None);
        assert_eq!(parse_counter(b"-0"), Some(0));
        assert_eq!(parse_counter(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_counter(b"18446744073709551616"), None);
    }
}
