//! memcached's `tokenize_command`: split on single spaces only (tabs and control characters are part
//! of tokens), at most 23 tokens per pass; what is left after the 23rd is handed back as the rest of
//! the line. `ntokens` counts the terminal pseudo-token like memcached does, so the argument-count
//! checks (`WANT_TOKENS`) can be written with memcached's numbers.

/// Tokens of one pass.
pub const MAX_TOKENS: usize = 24;

/// The tokens of a command line.
#[derive(Debug, Clone, Copy)]
pub struct Tokens<'a> {
    line: &'a [u8],
    tokens: [&'a [u8]; MAX_TOKENS - 1],
    starts: [usize; MAX_TOKENS - 1],
    len: usize,
    rest: Option<&'a [u8]>,
}

impl<'a> Tokens<'a> {
    /// Tokenises `line` (already cut at the first NUL and without its line ending).
    pub fn new(line: &'a [u8]) -> Tokens<'a> {
        let mut tokens: [&'a [u8]; MAX_TOKENS - 1] = [&[]; MAX_TOKENS - 1];
        let mut starts = [0; MAX_TOKENS - 1];
        let mut len = 0;
        let mut start = 0;
        let mut i = 0;
        let mut rest = None;
        while i < line.len() {
            if line[i] == b' ' {
                if start != i {
                    tokens[len] = &line[start..i];
                    starts[len] = start;
                    len += 1;
                    if len == MAX_TOKENS - 1 {
                        i += 1;
                        if i < line.len() {
                            rest = Some(&line[i..]);
                        }
                        return Tokens {
                            line,
                            tokens,
                            starts,
                            len,
                            rest,
                        };
                    }
                }
                start = i + 1;
            }
            i += 1;
        }
        if start < line.len() {
            tokens[len] = &line[start..];
            starts[len] = start;
            len += 1;
        }
        Tokens {
            line,
            tokens,
            starts,
            len,
            rest,
        }
    }

    /// memcached's `ntokens`: real tokens plus the terminal one.
    pub fn ntokens(&self) -> usize {
        self.len + 1
    }

    /// Token `i`, or an empty slice past the end (memcached's terminal token).
    pub fn get(&self, i: usize) -> &'a [u8] {
        if i < self.len {
            self.tokens[i]
        } else {
            &[]
        }
    }

    /// The real tokens of this pass.
    pub fn as_slice(&self) -> &[&'a [u8]] {
        &self.tokens[..self.len]
    }

    /// What follows the 23rd token, when the line had more.
    pub fn rest(&self) -> Option<&'a [u8]> {
        self.rest
    }

    /// The line from token `i` to its end (past the 23-token pass), or empty when there is no
    /// token `i`. Multi-key gets read their keys from here.
    pub fn line_from(&self, i: usize) -> &'a [u8] {
        if i < self.len {
            &self.line[self.starts[i]..]
        } else {
            &[]
        }
    }

    /// memcached's `set_noreply_maybe`: is the last token `noreply`?
    pub fn last_is_noreply(&self) -> bool {
        self.len > 0 && self.tokens[self.len - 1] == b"noreply"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_spaces_only() {
        let t = Tokens::new(b"  get a\tb  c ");
        assert_eq!(t.as_slice(), &[&b"get"[..], b"a\tb", b"c"]);
        assert_eq!(t.ntokens(), 4);
        assert!(t.rest().is_none());
    }

    #[test]
    fn keeps_rest_after_23_tokens() {
        let line: Vec<u8> = (0..30)
            .map(|i| format!("k{i}"))
            .collect::<Vec<_>>()
            .join(" ")
            .into_bytes();
        let t = Tokens::new(&line);
        assert_eq!(t.ntokens(), 24);
        assert_eq!(t.get(22), b"k22");
        assert_eq!(t.rest(), Some(&b"k23 k24 k25 k26 k27 k28 k29"[..]));
    }
}
