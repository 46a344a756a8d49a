//! Just enough of the text protocol to drive load: pipelined sets and (multi-)gets on a raw
//! socket, counting hits. Our own code so the bench measures servers, not a client library.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A connection with reusable buffers.
pub struct Wire {
    stream: TcpStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
}

/// What a batch of requests got back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replies {
    pub hits: u64,
    pub misses: u64,
    pub stored: u64,
    pub errors: u64,
}

/// One request in a batch.
pub enum Op<'a> {
    Get(&'a [&'a [u8]]),
    Set(&'a [u8], &'a [u8]),
    /// A set with this exptime.
    SetExpiring(&'a [u8], &'a [u8], u32),
}

impl Wire {
    pub async fn connect(addr: &str) -> anyhow::Result<Wire> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Wire {
            stream,
            rbuf: Vec::with_capacity(64 * 1024),
            wbuf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Sends all `ops` in one write and reads every reply.
    pub async fn batch(&mut self, ops: &[Op<'_>]) -> anyhow::Result<Replies> {
        self.batch_detailed(ops, None).await
    }

    /// Like [`Wire::batch`], also pushing the number of hits of each op into `per_op`.
    pub async fn batch_detailed(
        &mut self,
        ops: &[Op<'_>],
        mut per_op: Option<&mut Vec<usize>>,
    ) -> anyhow::Result<Replies> {
        self.wbuf.clear();
        for op in ops {
            match op {
                Op::Get(keys) => {
                    encode_get(&mut self.wbuf, keys);
                }
                Op::Set(key, value) => encode_set(&mut self.wbuf, key, value, 0),
                Op::SetExpiring(key, value, exptime) => {
                    encode_set(&mut self.wbuf, key, value, *exptime)
                }
            }
        }
        self.stream.write_all(&self.wbuf).await?;
        let mut replies = Replies::default();
        let mut pending = ops.iter().map(|op| match op {
            Op::Get(keys) => keys.len(),
            Op::Set(..) | Op::SetExpiring(..) => 0,
        });
        let mut current = pending.next();
        let mut pos = 0;
        self.rbuf.clear();
        while let Some(expected) = current {
            match parse_reply(&self.rbuf[pos..], expected > 0) {
                Some((used, reply)) => {
                    pos += used;
                    match reply {
                        Parsed::Values(found) => {
                            if let Some(per_op) = per_op.as_deref_mut() {
                                per_op.push(found);
                            }
                            replies.hits += found as u64;
                            replies.misses += (expected - found) as u64;
                        }
                        Parsed::Stored => {
                            if let Some(per_op) = per_op.as_deref_mut() {
                                per_op.push(0);
                            }
                            replies.stored += 1;
                        }
                        Parsed::Error => {
                            if let Some(per_op) = per_op.as_deref_mut() {
                                per_op.push(0);
                            }
                            replies.errors += 1;
                        }
                    }
                    current = pending.next();
                }
                None => {
                    if pos > 0 {
                        self.rbuf.drain(..pos);
                        pos = 0;
                    }
                    let mut chunk = [0u8; 65536];
                    let n = self.stream.read(&mut chunk).await?;
                    anyhow::ensure!(n > 0, "server closed the connection");
                    self.rbuf.extend_from_slice(&chunk[..n]);
                }
            }
        }
        Ok(replies)
    }

    /// `stats`: the named fields.
    pub async fn stats(&mut self) -> anyhow::Result<Vec<(String, String)>> {
        self.stream.write_all(b"stats\r\n").await?;
        let mut out = Vec::new();
        loop {
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "server closed the connection");
            out.extend_from_slice(&chunk[..n]);
            if out.ends_with(b"END\r\n") {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| l.strip_prefix("STAT "))
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }
}

pub fn encode_get(out: &mut Vec<u8>, keys: &[&[u8]]) {
    out.extend_from_slice(b"get");
    for key in keys {
        out.push(b' ');
        out.extend_from_slice(key);
    }
    out.extend_from_slice(b"\r\n");
}

pub fn encode_set(out: &mut Vec<u8>, key: &[u8], value: &[u8], exptime: u32) {
    out.extend_from_slice(b"set ");
    out.extend_from_slice(key);
    out.extend_from_slice(format!(" 0 {exptime} {}\r\n", value.len()).as_bytes());
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// A get reply with this many values.
    Values(usize),
    Stored,
    Error,
}

/// One complete reply at the start of `buf`: a get reply (VALUE blocks then END) or one line.
fn parse_reply(buf: &[u8], is_get: bool) -> Option<(usize, Parsed)> {
    let mut pos = 0;
    let mut values = 0;
    loop {
        let nl = buf[pos..].iter().position(|&b| b == b'\n')? + pos;
        let line = &buf[pos..nl + 1];
        if is_get && line.starts_with(b"VALUE ") {
            let len: usize = std::str::from_utf8(line)
                .ok()?
                .split(' ')
                .nth(3)?
                .trim()
                .parse()
                .ok()?;
            let end = nl + 1 + len + 2;
            if buf.len() < end {
                return None;
            }
            pos = end;
            values += 1;
            continue;
        }
        let parsed = if line == b"END\r\n" && is_get {
            Parsed::Values(values)
        } else if line == b"STORED\r\n" {
            Parsed::Stored
        } else {
            Parsed::Error
        };
        return Some((nl + 1, parsed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_get_replies_across_values() {
        let buf = b"VALUE a 0 3\r\nabc\r\nVALUE b 0 1\r\nx\r\nEND\r\nSTORED\r\n";
        assert_eq!(parse_reply(buf, true), Some((39, Parsed::Values(2))));
        assert_eq!(parse_reply(&buf[39..], false), Some((8, Parsed::Stored)));
        assert_eq!(parse_reply(b"VALUE a 0 3\r\nab", true), None);
        assert_eq!(
            parse_reply(b"SERVER_ERROR out of memory\r\n", false),
            Some((28, Parsed::Error))
        );
    }
}
