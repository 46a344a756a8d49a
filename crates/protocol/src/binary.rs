//! memcached's binary protocol: 24-byte headers, requests parsed from a buffer without I/O and
//! responses encoded into one. Only framing lives here; what each opcode does is the server's.

/// Request magic byte: a connection whose first byte is this speaks the binary protocol.
pub const REQUEST_MAGIC: u8 = 0x80;
const RESPONSE_MAGIC: u8 = 0x81;
const HEADER: usize = 24;

/// Opcodes memcached 1.6 implements (the quiet variants carry a `Q`).
pub mod opcode {
    pub const GET: u8 = 0x00;
    pub const SET: u8 = 0x01;
    pub const ADD: u8 = 0x02;
    pub const REPLACE: u8 = 0x03;
    pub const DELETE: u8 = 0x04;
    pub const INCREMENT: u8 = 0x05;
    pub const DECREMENT: u8 = 0x06;
    pub const QUIT: u8 = 0x07;
    pub const FLUSH: u8 = 0x08;
    pub const GETQ: u8 = 0x09;
    pub const NOOP: u8 = 0x0a;
    pub const VERSION: u8 = 0x0b;
    pub const GETK: u8 = 0x0c;
    pub const GETKQ: u8 = 0x0d;
    pub const APPEND: u8 = 0x0e;
    pub const PREPEND: u8 = 0x0f;
    pub const STAT: u8 = 0x10;
    pub const SETQ: u8 = 0x11;
    pub const ADDQ: u8 = 0x12;
    pub const REPLACEQ: u8 = 0x13;
    pub const DELETEQ: u8 = 0x14;
    pub const INCREMENTQ: u8 = 0x15;
    pub const DECREMENTQ: u8 = 0x16;
    pub const QUITQ: u8 = 0x17;
    pub const FLUSHQ: u8 = 0x18;
    pub const APPENDQ: u8 = 0x19;
    pub const PREPENDQ: u8 = 0x1a;
    pub const VERBOSITY: u8 = 0x1b;
    pub const TOUCH: u8 = 0x1c;
    pub const GAT: u8 = 0x1d;
    pub const GATQ: u8 = 0x1e;
    pub const SASL_LIST_MECHS: u8 = 0x20;
    pub const SASL_AUTH: u8 = 0x21;
    pub const SASL_STEP: u8 = 0x22;
    pub const GATK: u8 = 0x23;
    pub const GATKQ: u8 = 0x24;
}

/// Response statuses, with the text memcached puts in the body of an error.
pub mod status {
    pub const OK: u16 = 0x0000;
    pub const KEY_NOT_FOUND: u16 = 0x0001;
    pub const KEY_EXISTS: u16 = 0x0002;
    pub const TOO_LARGE: u16 = 0x0003;
    pub const INVALID_ARGUMENTS: u16 = 0x0004;
    pub const NOT_STORED: u16 = 0x0005;
    pub const NON_NUMERIC: u16 = 0x0006;
    /// Not authenticated, or a failed SASL exchange (body "Auth failure.").
    pub const AUTH_ERROR: u16 = 0x0020;
    /// A SASL exchange wants another `SASL_STEP`.
    pub const AUTH_CONTINUE: u16 = 0x0021;
    pub const UNKNOWN_COMMAND: u16 = 0x0081;
    pub const OUT_OF_MEMORY: u16 = 0x0082;

    /// memcached's error body for `status`.
    pub fn text(status: u16) -> &'static str {
        match status {
            KEY_NOT_FOUND => "Not found",
            KEY_EXISTS => "Data exists for key.",
            TOO_LARGE => "Too large.",
            INVALID_ARGUMENTS => "Invalid arguments",
            NOT_STORED => "Not stored.",
            NON_NUMERIC => "Non-numeric server-side value for incr or decr",
            OUT_OF_MEMORY => "Out of memory",
            AUTH_ERROR => "Auth failure.",
            _ => "Unknown command",
        }
    }
}

/// One binary request, borrowing from the input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinaryRequest<'a> {
    pub opcode: u8,
    pub opaque: u32,
    pub cas: u64,
    pub extras: &'a [u8],
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl BinaryRequest<'_> {
    /// Big-endian u32 at `at` in the extras, if present.
    pub fn extra_u32(&self, at: usize) -> Option<u32> {
        let b = self.extras.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Big-endian u64 at `at` in the extras, if present.
    pub fn extra_u64(&self, at: usize) -> Option<u64> {
        let b = self.extras.get(at..at + 8)?;
        let mut raw = [0u8; 8];
        raw.copy_from_slice(b);
        Some(u64::from_be_bytes(raw))
    }
}

/// What [`parse`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryParse<'a> {
    /// A request and the bytes it used.
    Done(BinaryRequest<'a>, usize),
    /// Not enough bytes yet; the total the request needs when the header is known.
    Incomplete(Option<usize>),
    /// A request whose body is larger than anything we store: answer "Too large." for this
    /// opcode and opaque after the header (24 bytes) is consumed, then discard `body` bytes.
    TooLarge {
        opcode: u8,
        opaque: u32,
        body: usize,
    },
    /// Not a binary request (bad magic) or lengths that do not add up: close the connection.
    Invalid,
}

/// Parses one request at the start of `buf`. `max_body` bounds the body length we are willing to
/// buffer; a larger one is `Invalid` (memcached also closes on absurd lengths).
pub fn parse(buf: &[u8], max_body: usize) -> BinaryParse<'_> {
    if buf.len() < HEADER {
        return BinaryParse::Incomplete(None);
    }
    if buf[0] != REQUEST_MAGIC {
        return BinaryParse::Invalid;
    }
    let key_len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let extras_len = usize::from(buf[4]);
    let body = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
    if key_len + extras_len > body {
        return BinaryParse::Invalid;
    }
    let opaque = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]);
    if body > max_body {
        return BinaryParse::TooLarge {
            opcode: buf[1],
            opaque,
            body,
        };
    }
    let total = HEADER + body;
    if buf.len() < total {
        return BinaryParse::Incomplete(Some(total));
    }
    let mut cas = [0u8; 8];
    cas.copy_from_slice(&buf[16..24]);
    let extras = &buf[HEADER..HEADER + extras_len];
    let key = &buf[HEADER + extras_len..HEADER + extras_len + key_len];
    let value = &buf[HEADER + extras_len + key_len..total];
    BinaryParse::Done(
        BinaryRequest {
            opcode: buf[1],
            opaque,
            cas: u64::from_be_bytes(cas),
            extras,
            key,
            value,
        },
        total,
    )
}

/// The fields of a response header that vary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub opcode: u8,
    pub status: u16,
    pub opaque: u32,
    pub cas: u64,
}

/// Appends a response header followed by extras and key; the caller appends `value_len` bytes
/// of value.
pub fn response(out: &mut Vec<u8>, header: Header, extras: &[u8], key: &[u8], value_len: usize) {
    let Header {
        opcode,
        status,
        opaque,
        cas,
    } = header;
    let body = extras.len() + key.len() + value_len;
    out.push(RESPONSE_MAGIC);
    out.push(opcode);
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.push(extras.len() as u8);
    out.push(0);
    out.extend_from_slice(&status.to_be_bytes());
    out.extend_from_slice(&(body as u32).to_be_bytes());
    out.extend_from_slice(&opaque.to_be_bytes());
    out.extend_from_slice(&cas.to_be_bytes());
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(opcode: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = vec![REQUEST_MAGIC, opcode];
        out.extend_from_slice(&(key.len() as u16).to_be_bytes());
        out.push(extras.len() as u8);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
        out.extend_from_slice(&7u32.to_be_bytes());
        out.extend_from_slice(&0u64.to_be_bytes());
        out.extend_from_slice(extras);
        out.extend_from_slice(key);
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn parses_a_set() {
        let extras = [0, 0, 0, 5, 0, 0, 0, 0];
        let buf = request(opcode::SET, &extras, b"k", b"value");
        match parse(&buf, 1 << 20) {
            BinaryParse::Done(r, used) => {
                assert_eq!(used, buf.len());
                assert_eq!(
                    (r.opcode, r.opaque, r.key, r.value),
                    (opcode::SET, 7, &b"k"[..], &b"value"[..])
                );
                assert_eq!(r.extra_u32(0), Some(5));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(&buf[..30], 1 << 20),
            BinaryParse::Incomplete(Some(buf.len()))
        );
        assert_eq!(parse(&buf[..10], 1 << 20), BinaryParse::Incomplete(None));
    }

    #[test]
    fn refuses_inconsistent_lengths() {
        let mut buf = request(opcode::GET, &[], b"key", b"");
        buf[11] = 1; // body shorter than the key
        assert_eq!(parse(&buf, 1 << 20), BinaryParse::Invalid);
        let buf = request(opcode::SET, &[0; 8], b"k", &[0; 100]);
        assert_eq!(
            parse(&buf, 50),
            BinaryParse::TooLarge {
                opcode: opcode::SET,
                opaque: 7,
                body: 109
            }
        );
    }

    #[test]
    fn encodes_a_response() {
        let mut out = Vec::new();
        let header = Header {
            opcode: opcode::GET,
            status: status::OK,
            opaque: 9,
            cas: 3,
        };
        response(&mut out, header, &[0, 0, 0, 1], b"", 2);
        assert_eq!(out.len(), 28);
        assert_eq!(&out[..2], &[0x81, 0x00]);
        assert_eq!(&out[8..12], &6u32.to_be_bytes());
        assert_eq!(&out[12..16], &9u32.to_be_bytes());
    }
}
