//! Number parsing with the exact acceptance rules of memcached's `safe_strtoul`, `safe_strtol` and
//! `safe_strtoull` (util.c), which wrap libc's `strto*`: leading whitespace and a sign are allowed,
//! at least one digit is required, and the number must end the token or be followed by whitespace.
//! Out-of-range 64-bit values are rejected; 32-bit results are then truncated the way the C casts
//! truncate them (e.g. flags `4294967296` is stored as 0, exptime `2147483648` becomes negative).

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Parses like `strtoull`/`strtoll` would: returns (negative, magnitude, ok) where ok says the
/// syntax and the trailing-character rule pass. The magnitude is `None` on u64 overflow.
fn scan(token: &[u8]) -> Option<(bool, Option<u64>)> {
    let mut i = 0;
    while i < token.len() && is_c_space(token[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < token.len() && (token[i] == b'+' || token[i] == b'-') {
        negative = token[i] == b'-';
        i += 1;
    }
    let digits_start = i;
    let mut value: Option<u64> = Some(0);
    while i < token.len() && token[i].is_ascii_digit() {
        value = value
            .and_then(|v| v.checked_mul(10))
            .and_then(|v| v.checked_add(u64::from(token[i] - b'0')));
        i += 1;
    }
    if i == digits_start {
        return None;
    }
    if i < token.len() && !is_c_space(token[i]) {
        return None;
    }
    Some((negative, value))
}

/// memcached's `safe_strtoull`: a 64-bit unsigned number. `-N` is accepted by `strtoull` (it
/// negates), and memcached only rejects it when the result has the top bit set.
pub fn parse_u64_like_strtoull(token: &[u8]) -> Option<u64> {
    let (negative, magnitude) = scan(token)?;
    let magnitude = magnitude?;
    let value = if negative {
        magnitude.wrapping_neg()
    } else {
        magnitude
    };
    if (value as i64) < 0 && negative {
        return None;
    }
    Some(value)
}

/// memcached's `safe_strtoul` on a 64-bit platform, stored into a `uint32_t`.
pub fn parse_u32_like_strtoul(token: &[u8]) -> Option<u32> {
    parse_u64_like_strtoull(token).map(|v| v as u32)
}

/// memcached's `safe_strtol` on a 64-bit platform (a `long` is 64 bits), stored into an `int32_t`.
pub fn parse_i32_like_strtol(token: &[u8]) -> Option<i32> {
    let (negative, magnitude) = scan(token)?;
    let magnitude = magnitude?;
    let value: i64 = if negative {
        if magnitude > (i64::MAX as u64) + 1 {
            return None;
        }
        (magnitude as i64).wrapping_neg()
    } else {
        i64::try_from(magnitude).ok()?
    };
    Some(value as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtoul_rules() {
        assert_eq!(parse_u32_like_strtoul(b"0"), Some(0));
        assert_eq!(parse_u32_like_strtoul(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32_like_strtoul(b"4294967296"), Some(0));
        assert_eq!(parse_u32_like_strtoul(b"-1"), None);
        assert_eq!(parse_u32_like_strtoul(b"-0"), Some(0));
        assert_eq!(parse_u32_like_strtoul(b"+7"), Some(7));
        assert_eq!(parse_u32_like_strtoul(b"\t7"), Some(7));
        assert_eq!(parse_u32_like_strtoul(b"7\r"), Some(7));
        assert_eq!(parse_u32_like_strtoul(b"7x"), None);
        assert_eq!(parse_u32_like_strtoul(b""), None);
        assert_eq!(parse_u32_like_strtoul(b"-"), None);
        assert_eq!(parse_u32_like_strtoul(b"99999999999999999999"), None);
    }

    #[test]
    fn strtoull_rules() {
        assert_eq!(
            parse_u64_like_strtoull(b"18446744073709551615"),
            Some(u64::MAX)
        );
        assert_eq!(parse_u64_like_strtoull(b"18446744073709551616"), None);
        assert_eq!(parse_u64_like_strtoull(b"-5"), None);
        assert_eq!(parse_u64_like_strtoull(b"12 "), Some(12));
    }

    #[test]
    fn strtol_rules() {
        assert_eq!(parse_i32_like_strtol(b"-1"), Some(-1));
        assert_eq!(parse_i32_like_strtol(b"2147483648"), Some(i32::MIN));
        assert_eq!(parse_i32_like_strtol(b"-2147483649"), Some(i32::MAX));
        assert_eq!(parse_i32_like_strtol(b"9223372036854775808"), None);
        assert_eq!(parse_i32_like_strtol(b"-9223372036854775808"), Some(0));
        assert_eq!(parse_i32_like_strtol(b"abc"), None);
    }
}
