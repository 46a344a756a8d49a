//! `slabs` and `lru`: memcached's commands that tune its slab mover and its LRU. Here there are no
//! slab classes (every item is in class 1, see `stats slabs`) and no LRU (eviction is S3-FIFO
//! over segments), so a command memcached accepts is answered as memcached answers it and changes
//! nothing, as `-o slab_automove` or `-o hot_lru_pct` at start do; every check, and its reply,
//! is memcached 1.6.18's (`process_slabs_command`, `process_lru_command`). The replies depend on
//! nothing but the line, so the parser gives them.

use super::numbers::{parse_i32_like_strtol, parse_u32_like_strtoul};
use super::parse::{error as answer, Request};
use super::reply;
use super::tokens::Tokens;

/// The one slab class `stats slabs` shows; 0 is memcached's global page pool.
const LAST_CLASS: i32 = 1;

/// `slabs reassign <src> <dst>` and `slabs automove <0|1|2>` / `slabs automove ratio <r>`.
pub(super) fn slabs(tokens: &Tokens<'_>) -> Request<'static> {
    let ntokens = tokens.ntokens();
    match tokens.get(1) {
        // Exactly two numbers; no noreply (memcached does not look for one here).
        b"reassign" if ntokens == 5 => {
            let (Some(src), Some(dst)) = (
                parse_i32_like_strtol(tokens.get(2)),
                parse_i32_like_strtol(tokens.get(3)),
            ) else {
                return answer(reply::CLIENT_ERROR_BAD_FORMAT, false);
            };
            let valid = |class| (0..=LAST_CLASS).contains(&class);
            let text = if src == dst {
                "SAME src and dst class are identical"
            } else if !valid(src) || !valid(dst) {
                // -1 asks memcached to pick a source other than dst with pages to spare: with one
                // class there is none, and memcached answers BADCLASS then too.
                "BADCLASS invalid src or dst class id"
            } else {
                // Between class 1 and the global pool: segments are not slab pages, none moves.
                "NOSPARE source class has no spare pages"
            };
            answer(text, false)
        }
        b"automove" if ntokens >= 4 => {
            let noreply = tokens.last_is_noreply();
            if tokens.get(2) == b"ratio" {
                let ok = ntokens >= 5 && parse_f64_like_strtod(tokens.get(3)).is_some();
                return answer(if ok { reply::OK } else { reply::ERROR }, noreply);
            }
            match parse_u32_like_strtoul(tokens.get(2)) {
                None => answer(reply::CLIENT_ERROR_BAD_FORMAT, noreply),
                Some(0..=2) => answer(reply::OK, noreply),
                Some(_) => answer(reply::ERROR, noreply),
            }
        }
        _ => answer(reply::ERROR, false),
    }
}

/// `lru tune <hot pct> <warm pct> <hot factor> <warm factor>`, `lru mode <flat|segmented>`,
/// `lru temp_ttl <ttl>`.
pub(super) fn lru(tokens: &Tokens<'_>) -> Request<'static> {
    let ntokens = tokens.ntokens();
    if ntokens < 3 {
        return answer(reply::ERROR, false);
    }
    // memcached looks for noreply before the subcommand: even `lru noreply` answers nothing.
    let noreply = tokens.last_is_noreply();
    let text = match tokens.get(1) {
        b"tune" if ntokens >= 7 => {
            let numbers = (
                parse_u32_like_strtoul(tokens.get(2)),
                parse_u32_like_strtoul(tokens.get(3)),
                parse_f64_like_strtod(tokens.get(4)),
                parse_f64_like_strtod(tokens.get(5)),
            );
            match numbers {
                (Some(hot), Some(warm), Some(hot_factor), Some(warm_factor)) => {
                    if hot.wrapping_add(warm) > 80 {
                        "ERROR hot and warm pcts must not exceed 80"
                    } else if warm_factor <= 0.0 || hot_factor <= 0.0 {
                        "ERROR hot/warm age factors must be greater than 0"
                    } else {
                        reply::OK
                    }
                }
                _ => reply::ERROR,
            }
        }
        b"mode" if ntokens >= 4 => match tokens.get(2) {
            b"flat" | b"segmented" => reply::OK,
            _ => reply::ERROR,
        },
        b"temp_ttl" if ntokens >= 4 => match parse_i32_like_strtol(tokens.get(2)) {
            Some(_) => reply::OK,
            None => reply::ERROR,
        },
        _ => reply::ERROR,
    };
    answer(text, noreply)
}

/// memcached's `safe_strtod` on a whole token: a decimal number, `inf`, `nan`, or, as C's
/// `strtod` reads them, a hexadecimal one (`0x1.8p3`).
fn parse_f64_like_strtod(token: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(token).ok()?;
    let (sign, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (-1.0, &text[1..]),
        Some(b'+') => (1.0, &text[1..]),
        _ => (1.0, text),
    };
    match unsigned.get(..2) {
        Some("0x" | "0X") => parse_hex_float(&unsigned[2..]).map(|v| sign * v),
        _ => text.parse().ok(),
    }
}

/// The digits of a hexadecimal float after `0x`: hex digits with an optional point, at least
/// one digit, then an optional binary exponent (`p` and a decimal number).
fn parse_hex_float(text: &str) -> Option<f64> {
    let (digits, exponent) = match text.find(['p', 'P']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let mut value = 0.0f64;
    for c in whole.chars().chain(fraction.chars()) {
        value = value * 16.0 + f64::from(c.to_digit(16)?);
    }
    let scale = exponent.saturating_sub(4 * i32::try_from(fraction.len()).ok()?);
    Some(value * 2f64.powi(scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply_to(line: &str) -> (&'static str, bool) {
        let tokens = Tokens::new(line.as_bytes());
        let request = match tokens.get(0) {
            b"slabs" => slabs(&tokens),
            _ => lru(&tokens),
        };
        match request {
            Request::Error { reply, noreply } => (reply, noreply),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn slabs_answers_as_memcached_with_one_class() {
        for (line, want) in [
            ("slabs automove 0", "OK"),
            ("slabs automove 2", "OK"),
            ("slabs automove 3", "ERROR"),
            ("slabs automove x", "CLIENT_ERROR bad command line format"),
            ("slabs automove -1", "CLIENT_ERROR bad command line format"),
            ("slabs automove ratio 0.5", "OK"),
            ("slabs automove ratio", "ERROR"),
            ("slabs automove ratio x", "ERROR"),
            ("slabs automove", "ERROR"),
            ("slabs reassign 1 1", "SAME src and dst class are identical"),
            (
                "slabs reassign -1 -1",
                "SAME src and dst class are identical",
            ),
            (
                "slabs reassign 1 0",
                "NOSPARE source class has no spare pages",
            ),
            (
                "slabs reassign 0 1",
                "NOSPARE source class has no spare pages",
            ),
            (
                "slabs reassign -1 1",
                "BADCLASS invalid src or dst class id",
            ),
            ("slabs reassign 1 2", "BADCLASS invalid src or dst class id"),
            ("slabs reassign 1 x", "CLIENT_ERROR bad command line format"),
            ("slabs reassign 1 1 noreply", "ERROR"),
            ("slabs reassign 1", "ERROR"),
            ("slabs", "ERROR"),
        ] {
            assert_eq!(reply_to(line).0, want, "{line}");
        }
        assert_eq!(reply_to("slabs automove 1 noreply"), ("OK", true));
        assert_eq!(reply_to("slabs automove 9 noreply"), ("ERROR", true));
    }

    #[test]
    fn strtod_reads_decimal_and_hexadecimal_floats() {
        for (token, want) in [
            ("0.1", Some(0.1)),
            ("+.5e-1", Some(0.05)),
            ("1.", Some(1.0)),
            ("-2", Some(-2.0)),
            ("0x10", Some(16.0)),
            ("0X1.8p1", Some(3.0)),
            ("-0x.8", Some(-0.5)),
            ("0x1p-2", Some(0.25)),
            ("0x", None),
            ("0x.", None),
            ("0x1p", None),
            ("0x1q", None),
            ("1e", None),
            ("", None),
        ] {
            assert_eq!(parse_f64_like_strtod(token.as_bytes()), want, "{token}");
        }
        assert!(parse_f64_like_strtod(b"inf").is_some_and(f64::is_infinite));
        assert!(parse_f64_like_strtod(b"nan").is_some_and(f64::is_nan));
    }

    #[test]
    fn lru_answers_as_memcached() {
        for (line, want) in [
            ("lru tune 10 25 0.1 2", "OK"),
            ("lru tune 10 25 0.1", "ERROR"),
            (
                "lru tune 50 31 0.1 2",
                "ERROR hot and warm pcts must not exceed 80",
            ),
            ("lru tune 4294967295 2 0.1 2", "OK"),
            (
                "lru tune 10 25 0 2",
                "ERROR hot/warm age factors must be greater than 0",
            ),
            (
                "lru tune 10 25 0.1 -1",
                "ERROR hot/warm age factors must be greater than 0",
            ),
            ("lru tune 10 25 x 2", "ERROR"),
            ("lru tune 10 25 inf 2", "OK"),
            ("lru tune 10 25 0x10 2", "OK"),
            ("lru tune 10 25 0x 2", "ERROR"),
            ("lru tune 10 25 0x1g 2", "ERROR"),
            (
                "lru tune 10 25 -0x1.8p1 2",
                "ERROR hot/warm age factors must be greater than 0",
            ),
            ("lru mode flat", "OK"),
            ("lru mode segmented", "OK"),
            ("lru mode lru", "ERROR"),
            ("lru mode", "ERROR"),
            ("lru temp_ttl -1", "OK"),
            ("lru temp_ttl 60", "OK"),
            ("lru temp_ttl x", "ERROR"),
            ("lru foo", "ERROR"),
            ("lru", "ERROR"),
        ] {
            assert_eq!(reply_to(line).0, want, "{line}");
        }
        assert_eq!(reply_to("lru mode flat noreply"), ("OK", true));
        assert_eq!(reply_to("lru noreply"), ("ERROR", true));
    }
}
