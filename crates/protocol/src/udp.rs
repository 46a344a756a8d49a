//! memcached's UDP framing (`doc/protocol.txt`, "UDP protocol"). Every datagram starts with an
//! 8-byte frame header of four big-endian 16-bit fields: the request id (chosen by the client and
//! echoed in each datagram of the response), the sequence number of this datagram in its message,
//! the number of datagrams in the message, and a reserved field (0 in what a server sends).
//!
//! A request must fit in one datagram. A response message is cut into datagrams of at most
//! [`MAX_DATAGRAM`] bytes, header included, as memcached cuts it: the 3,025-byte reply to a get of
//! a 3,000-byte value goes out as datagrams of 1,400, 1,400 and 249 bytes, numbered 0, 1, 2 of 3.

/// Bytes of the frame header.
pub const HEADER: usize = 8;
/// The largest datagram a server sends, header included (memcached's `UDP_MAX_PAYLOAD_SIZE`).
pub const MAX_DATAGRAM: usize = 1400;
/// Reply bytes per datagram.
pub const DATA_PER_DATAGRAM: usize = MAX_DATAGRAM - HEADER;
/// The most datagrams one message can number (the count is 16 bits).
pub const MAX_DATAGRAMS: usize = u16::MAX as usize;

/// A datagram's frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub request_id: u16,
    pub sequence: u16,
    pub total: u16,
}

/// Splits a request datagram into its frame header and payload. None when it is shorter than
/// a header (memcached drops it without a reply).
pub fn parse(datagram: &[u8]) -> Option<(Frame, &[u8])> {
    let (header, payload) = datagram.split_at_checked(HEADER)?;
    let field = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    let frame = Frame {
        request_id: field(0),
        sequence: field(2),
        total: field(4),
    };
    Some((frame, payload))
}

/// Cuts `reply` into the datagrams of one response message to request `request_id`, appended to
/// `out` (which is cleared first; its buffers are reused). An empty reply makes no datagram. A
/// reply longer than [`MAX_DATAGRAMS`] datagrams is cut at that many (the caller keeps replies
/// far below it).
pub fn frames(request_id: u16, reply: &[u8], out: &mut Vec<Vec<u8>>) {
    let total = reply.len().div_ceil(DATA_PER_DATAGRAM).min(MAX_DATAGRAMS);
    out.resize_with(total, Vec::new);
    for (sequence, (chunk, datagram)) in reply
        .chunks(DATA_PER_DATAGRAM)
        .zip(out.iter_mut())
        .enumerate()
    {
        datagram.clear();
        for field in [request_id, sequence as u16, total as u16, 0] {
            datagram.extend_from_slice(&field.to_be_bytes());
        }
        datagram.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_is_four_big_endian_fields() {
        let (frame, payload) = parse(b"\x01\x02\x00\x03\x00\x01\x00\x00get a\r\n").unwrap();
        assert_eq!(
            frame,
            Frame {
                request_id: 0x0102,
                sequence: 3,
                total: 1
            }
        );
        assert_eq!(payload, b"get a\r\n");
        assert_eq!(parse(b"\x00\x01\x00\x00\x00\x01\x00").map(|(f, _)| f), None);
        assert!(parse(b"\x00\x01\x00\x00\x00\x01\x00\x00")
            .unwrap()
            .1
            .is_empty());
    }

    #[test]
    fn a_reply_is_cut_into_numbered_datagrams_of_at_most_1400_bytes() {
        let mut out = Vec::new();
        frames(7, b"STORED\r\n", &mut out);
        assert_eq!(
            out,
            vec![b"\x00\x07\x00\x00\x00\x01\x00\x00STORED\r\n".to_vec()]
        );

        // The reply to `get big` for a 3,000-byte value: 3,025 bytes.
        let reply = [b'x'; 3025];
        frames(0xABCD, &reply, &mut out);
        let lens: Vec<usize> = out.iter().map(Vec::len).collect();
        assert_eq!(lens, [1400, 1400, 249], "as memcached cuts it");
        for (i, datagram) in out.iter().enumerate() {
            assert_eq!(&datagram[..HEADER], &[0xAB, 0xCD, 0, i as u8, 0, 3, 0, 0]);
        }
        let joined: Vec<u8> = out.iter().flat_map(|d| d[HEADER..].to_vec()).collect();
        assert_eq!(joined, reply);

        // Exactly one datagram's worth, then nothing: the buffers are reused, none left over.
        frames(1, &[b'y'; DATA_PER_DATAGRAM], &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), MAX_DATAGRAM);
        frames(1, b"", &mut out);
        assert!(out.is_empty());
    }
}
