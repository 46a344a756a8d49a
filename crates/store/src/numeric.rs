//! The stored value of an `incr`/`decr` target read the way memcached's `safe_strtoull` reads item
//! data: optional leading whitespace and sign, at least one digit, then whitespace, a NUL or the end.
//! A minus sign is only refused when the result has its top bit set (so `-0` is 0 and
//! `-18446744073709551615` is 1, as strtoull negates in unsigned arithmetic).
//!
//! memcached hands `strtoull` the item data followed by its "\r\n" and whatever memory follows, so
//! a value of only whitespace reads past the value: on a fresh memcached 1.6.18 `" "`, `"\t"` and
//! `"  "` are all refused as non-numeric, which is what we do (at least one digit is required).

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

pub fn parse_counter(data: &[u8]) -> Option<u64> {
    // C stops at a NUL: memcached increments "5\0x" to 6.
    let data = match data.iter().position(|&b| b == 0) {
        Some(end) => &data[..end],
        None => data,
    };
    let mut i = data.iter().take_while(|&&b| is_c_space(b)).count();
    if let Some(b'-' | b'+') = data.get(i) {
        i += 1;
    }
    let negative = i > 0 && data[i - 1] == b'-';
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
    }
    // safe_strtoull refuses a result with the top bit set when the string holds a '-' anywhere.
    if (value as i64) < 0 && data.contains(&b'-') {
        return None;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::parse_counter;

    /// Each case checked against memcached 1.6.18 (`set n 0 0 N`, value, `incr n 1`).
    #[test]
    fn reads_like_safe_strtoull() {
        assert_eq!(parse_counter(b"10"), Some(10));
        assert_eq!(parse_counter(b"9 "), Some(9));
        assert_eq!(parse_counter(b" 7"), Some(7));
        assert_eq!(parse_counter(b"+5"), Some(5));
        assert_eq!(parse_counter(b"\t7\n"), Some(7));
        assert_eq!(parse_counter(b"5\r\n6"), Some(5));
        assert_eq!(parse_counter(b"5\0x"), Some(5));
        assert_eq!(parse_counter(b"5 abc"), Some(5));
        assert_eq!(parse_counter(b"5abc"), None);
        assert_eq!(parse_counter(b"0x10"), None);
        assert_eq!(parse_counter(b""), None);
        assert_eq!(parse_counter(b" "), None);
        assert_eq!(parse_counter(b"\t"), None);
        assert_eq!(parse_counter(b" abc"), None);
        assert_eq!(parse_counter(b"+"), None);
        assert_eq!(parse_counter(b"-"), None);
        assert_eq!(parse_counter(b"-5"), None);
        assert_eq!(parse_counter(b" -5"), None);
        assert_eq!(parse_counter(b"-0"), Some(0));
        assert_eq!(parse_counter(b"-9223372036854775807"), None);
        assert_eq!(parse_counter(b"-9223372036854775808"), None);
        assert_eq!(parse_counter(b"-18446744073709551615"), Some(1));
        assert_eq!(parse_counter(b"9223372036854775808"), Some(1 << 63));
        assert_eq!(parse_counter(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_counter(b"18446744073709551616"), None);
    }
}
