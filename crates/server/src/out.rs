//! A connection's pending output: small reply lines copied into one buffer, large values queued as
//! shared `Bytes` handles (no copy), all written with vectored writes. A multi-get of big values
//! therefore holds references to the items, not copies of them.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Write out pending replies once they pass this size, even mid-batch or mid-get, so a long
/// pipeline of gets or one get naming a big item many times does not pile up output without bound.
pub const FLUSH_AT: usize = 1024 * 1024;

/// Values at least this large are queued by reference instead of copied.
const BY_REFERENCE: usize = 512;
/// A value read under a store lock is copied anyway: into the pending text while that stays under
/// this size (no allocation, one plain write), else into a buffer of its own. Under
/// [`KEEP_TAIL`], so a connection reading values this size keeps its text buffer between writes.
const COPY_INTO_TEXT: usize = 16 * 1024;
/// Buffers handed to one vectored write.
const MAX_SLICES: usize = 64;
/// Bytes of keys [`Output::reference`] notes at most.
const REFERENCED_MAX: usize = 4096;
/// A text buffer that grew past this (a big multi-get of small values) is not kept after a write.
const KEEP_TAIL: usize = 64 * 1024;

#[derive(Default)]
pub struct Output {
    /// Sealed segments, oldest first.
    segments: VecDeque<Bytes>,
    /// Where small writes go; sealed into `segments` when a large value is queued.
    tail: Vec<u8>,
    len: usize,
    /// Pending bytes that [`Output::discard_since_mark`] keeps.
    mark: usize,
    /// A command came since the last mark or write (see [`Output::holds_replies`]).
    held: bool,
    /// Keys of the items that queued replies reference in memcached (see
    /// [`Output::references`]), each after its length byte.
    referenced: Vec<u8>,
    /// Pending bytes, from the front, that [`Output::count_marked`] counted as written.
    counted: usize,
}

impl Output {
    /// The buffer to append small reply text to.
    pub fn text(&mut self) -> &mut Vec<u8> {
        &mut self.tail
    }

    /// Queues a value's bytes followed by `\r\n`.
    pub fn value(&mut self, value: &Bytes) {
        self.value_raw(value);
        self.tail.extend_from_slice(b"\r\n");
    }

    /// Queues a value and its "\r\n" from a borrowed slice (read under a store lock): copied into
    /// the pending text while that stays under [`COPY_INTO_TEXT`], else into a buffer of its own.
    pub fn value_slice(&mut self, value: &[u8]) {
        if value.len() >= BY_REFERENCE && self.tail.len() + value.len() + 2 > COPY_INTO_TEXT {
            self.value(&Bytes::copy_from_slice(value));
        } else {
            self.tail.extend_from_slice(value);
            self.tail.extend_from_slice(b"\r\n");
        }
    }

    /// Queues raw value bytes (the binary protocol has no line ending after a value).
    pub fn value_raw(&mut self, value: &Bytes) {
        if value.len() >= BY_REFERENCE {
            self.seal();
            self.len += value.len();
            self.segments.push_back(value.clone());
        } else {
            self.tail.extend_from_slice(value);
        }
    }

    /// All pending output as one buffer (for small replies rendered apart, like stats).
    pub fn into_text(mut self) -> Vec<u8> {
        self.seal();
        let mut all = Vec::with_capacity(self.len);
        for segment in &self.segments {
            all.extend_from_slice(segment);
        }
        all
    }

    fn seal(&mut self) {
        if !self.tail.is_empty() {
            let tail = std::mem::take(&mut self.tail);
            self.len += tail.len();
            self.segments.push_back(Bytes::from(tail));
        }
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.len + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remembers the pending output as sent-for-good: memcached writes out after every get
    /// command, so a later cull cannot reach it.
    pub fn mark(&mut self) {
        self.mark = self.len();
        self.held = false;
        self.referenced.clear();
    }

    /// The pending bytes before the mark not counted yet: memcached has written those by now
    /// (it writes where the mark is set), so its `bytes_written` includes them. `stats` counts
    /// them; the [`Output::flush`] that sends them leaves them out of the count it returns.
    pub fn count_marked(&mut self) -> usize {
        let uncounted = self.mark - self.counted;
        self.counted = self.mark;
        uncounted
    }

    /// Notes that a queued reply references `key`'s item: memcached keeps the item of an `mg`
    /// hit or a binary get hit until it writes the reply.
    pub fn reference(&mut self, key: &[u8]) {
        // Keys are at most 250 bytes, decoded ones shorter. Past REFERENCED_MAX bytes (a huge
        // -R lets a read hold thousands of replies) keys are no longer noted, so that each
        // incr's look costs at most that.
        if let Ok(len) = u8::try_from(key.len()) {
            if self.referenced.len() + 1 + key.len() <= REFERENCED_MAX {
                self.referenced.push(len);
                self.referenced.extend_from_slice(key);
            }
        }
    }

    /// Does a reply memcached would still hold reference `key`'s item? Then its incr or decr
    /// cannot rewrite the item in place (memcached 1.6.18: `mg n` and `decr n 5` in one write
    /// store the shorter number unpadded, as a new item).
    pub fn references(&self, key: &[u8]) -> bool {
        let mut at = 0;
        while let Some(&len) = self.referenced.get(at) {
            let end = at + 1 + usize::from(len);
            if &self.referenced[at + 1..end] == key {
                return true;
            }
            at = end;
        }
        false
    }

    /// Notes that a command is being answered (with `noreply` too: memcached still queues a
    /// response for it, which it skips when it writes).
    pub fn note_command(&mut self) {
        self.held = true;
    }

    /// Did a command come since the last [`Output::mark`] or write? memcached would still hold
    /// its response, and refuses `watch` and `lru_crawler metadump` behind it.
    pub fn holds_replies(&self) -> bool {
        self.held
    }

    /// Drops pending output queued since the last [`Output::mark`] or write (memcached culls its
    /// unsent responses when a get line holds a key that is too long).
    pub fn discard_since_mark(&mut self) {
        let mut excess = self.len() - self.mark;
        let from_tail = excess.min(self.tail.len());
        self.tail.truncate(self.tail.len() - from_tail);
        excess -= from_tail;
        while excess > 0 {
            let last = self
                .segments
                .back_mut()
                .expect("pending bytes are in segments");
            if last.len() <= excess {
                excess -= last.len();
                self.len -= last.len();
                self.segments.pop_back();
            } else {
                last.truncate(last.len() - excess);
                self.len -= excess;
                excess = 0;
            }
        }
    }

    /// Writes everything out; returns the number of bytes written, less those
    /// [`Output::count_marked`] counted already. The common case, replies that
    /// are all text, is one write straight from the tail buffer, which is kept for the next batch:
    /// no allocation per batch.
    pub async fn flush<W: AsyncWrite + Unpin>(&mut self, writer: &mut W) -> std::io::Result<usize> {
        let total = self.len();
        if self.segments.is_empty() {
            writer.write_all(&self.tail).await?;
            self.tail.clear();
            if self.tail.capacity() > KEEP_TAIL {
                self.tail = Vec::new();
            }
        } else {
            self.seal();
            while !self.segments.is_empty() {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let mut count = 0;
                for (slot, segment) in slices.iter_mut().zip(&self.segments) {
                    *slot = IoSlice::new(segment);
                    count += 1;
                }
                let mut written = writer.write_vectored(&slices[..count]).await?;
                if written == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                self.len -= written;
                while written > 0 {
                    let front = self
                        .segments
                        .front_mut()
                        .expect("written bytes come from queued segments");
                    if written >= front.len() {
                        written -= front.len();
                        self.segments.pop_front();
                    } else {
                        front.advance(written);
                        written = 0;
                    }
                }
            }
        }
        writer.flush().await?;
        // Everything is written: nothing held, nothing a cull could reach.
        self.mark();
        Ok(total - std::mem::take(&mut self.counted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_order_of_text_and_values() {
        let mut out = Output::default();
        out.text().extend_from_slice(b"VALUE a 0 600\r\n");
        out.value(&Bytes::from(vec![b'x'; 600]));
        out.text().extend_from_slice(b"END\r\n");
        assert_eq!(out.len(), 15 + 602 + 5);
        let mut sink = Vec::new();
        let n = out.flush(&mut sink).await.expect("write to vec");
        assert_eq!(n, 622);
        assert!(sink.starts_with(b"VALUE a 0 600\r\nxxx"));
        assert!(sink.ends_with(b"x\r\nEND\r\n"));
        assert!(out.is_empty());
    }

    /// A writer that takes at most `max` bytes per call, as a socket with a full buffer does.
    struct Trickle {
        sink: Vec<u8>,
        max: usize,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.max);
            self.sink.extend_from_slice(&buf[..n]);
            self.calls += 1;
            std::task::Poll::Ready(Ok(n))
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn short_writes_send_everything_in_order_and_the_text_buffer_is_kept() {
        let mut w = Trickle {
            sink: Vec::new(),
            max: 7,
            calls: 0,
        };
        let mut out = Output::default();
        // All text: written from the tail, which keeps its allocation for the next batch.
        out.text()
            .extend_from_slice(b"VALUE k 0 2\r\nab\r\nEND\r\n");
        let capacity = out.tail.capacity();
        assert_eq!(out.flush(&mut w).await.expect("write"), 22);
        assert_eq!(w.sink, b"VALUE k 0 2\r\nab\r\nEND\r\n");
        assert_eq!(w.calls, 4);
        assert!(out.is_empty() && out.tail.capacity() == capacity);
        // Text, a value by reference, text: every byte once, in order.
        w.sink.clear();
        out.text().extend_from_slice(b"VALUE a 0 600\r\n");
        out.value(&Bytes::from(vec![b'x'; 600]));
        out.text().extend_from_slice(b"END\r\n");
        assert_eq!(out.flush(&mut w).await.expect("write"), 622);
        let mut expected = b"VALUE a 0 600\r\n".to_vec();
        expected.extend_from_slice(&[b'x'; 600]);
        expected.extend_from_slice(b"\r\nEND\r\n");
        assert_eq!(w.sink, expected);
        assert!(out.is_empty());
        // A tail that grew past KEEP_TAIL is let go after the write.
        out.text().extend_from_slice(&vec![b'y'; KEEP_TAIL + 1]);
        w.max = usize::MAX;
        out.flush(&mut w).await.expect("write");
        assert_eq!(out.tail.capacity(), 0);
    }

    #[tokio::test]
    async fn values_read_under_a_lock_are_copied_into_the_text_while_it_stays_small() {
        let mut out = Output::default();
        let mut sink = Vec::new();
        // One 1 KB value at a time, as a client that waits for each reply reads them: copied
        // into the text, written with it, and the next one reuses the same buffer.
        out.text().extend_from_slice(b"VALUE a 0 1024\r\n");
        out.value_slice(&[b'a'; 1024]);
        out.text().extend_from_slice(b"END\r\n");
        assert!(out.segments.is_empty(), "no buffer of its own");
        let buffer = out.tail.as_ptr();
        assert_eq!(out.flush(&mut sink).await.expect("write"), 16 + 1026 + 5);
        out.text().extend_from_slice(b"VALUE a 0 1024\r\n");
        out.value_slice(&[b'a'; 1024]);
        assert_eq!(
            out.tail.as_ptr(),
            buffer,
            "the text buffer is kept and reused"
        );
        out.text().extend_from_slice(b"END\r\n");
        out.flush(&mut sink).await.expect("write");
        let mut one = b"VALUE a 0 1024\r\n".to_vec();
        one.extend_from_slice(&[b'a'; 1024]);
        one.extend_from_slice(b"\r\nEND\r\n");
        assert_eq!(sink, [one.clone(), one].concat());
        // A value that would take the text past COPY_INTO_TEXT gets a buffer of its own, after
        // the text before it; small text after it starts a new tail. Order is kept.
        sink.clear();
        out.text().extend_from_slice(b"VALUE b 0 16384\r\n");
        out.value_slice(&[b'b'; COPY_INTO_TEXT]);
        out.text().extend_from_slice(b"END\r\n");
        assert_eq!(out.segments.len(), 2, "the text before, then the value");
        out.flush(&mut sink).await.expect("write");
        let mut expected = b"VALUE b 0 16384\r\n".to_vec();
        expected.extend_from_slice(&[b'b'; COPY_INTO_TEXT]);
        expected.extend_from_slice(b"\r\nEND\r\n");
        assert_eq!(sink, expected);
    }

    #[test]
    fn discards_only_since_the_mark() {
        let mut out = Output::default();
        out.text().extend_from_slice(b"KEEP\r\n");
        out.mark();
        out.text().extend_from_slice(b"VALUE a 0 600\r\n");
        out.value(&Bytes::from(vec![b'x'; 600]));
        out.text().extend_from_slice(b"more");
        out.discard_since_mark();
        assert_eq!(out.len(), 6);
        out.text().extend_from_slice(b"END\r\n");
        assert_eq!(out.len(), 11);
    }

    #[tokio::test]
    async fn bytes_counted_at_the_mark_are_not_counted_again_by_the_write() {
        let mut out = Output::default();
        out.text().extend_from_slice(b"END\r\n");
        assert_eq!(out.count_marked(), 0, "nothing marked yet");
        out.mark();
        out.text().extend_from_slice(b"MN\r\n");
        assert_eq!(out.count_marked(), 5);
        assert_eq!(out.count_marked(), 0, "counted once");
        out.mark();
        assert_eq!(out.count_marked(), 4, "only what the new mark adds");
        out.text().extend_from_slice(b"HD\r\n");
        let mut sink = Vec::new();
        assert_eq!(out.flush(&mut sink).await.expect("write to a vector"), 4);
        assert_eq!(sink.len(), 13, "all of it is sent");
        out.text().extend_from_slice(b"HD\r\n");
        assert_eq!(
            out.flush(&mut sink).await.expect("write"),
            4,
            "the count starts over"
        );
    }

    #[tokio::test]
    async fn references_last_until_a_mark_or_a_write() {
        let mut out = Output::default();
        out.reference(b"ab");
        out.reference(b"c");
        assert!(out.references(b"ab") && out.references(b"c"));
        assert!(!out.references(b"a") && !out.references(b"abc"));
        out.mark();
        assert!(!out.references(b"ab"));
        out.reference(b"k");
        out.text().extend_from_slice(b"HD\r\n");
        out.flush(&mut Vec::new()).await.expect("write to a vector");
        assert!(!out.references(b"k"));
        // Bounded: past REFERENCED_MAX bytes nothing more is noted.
        for i in 0..2000u32 {
            out.reference(&i.to_be_bytes());
        }
        assert!(out.referenced.len() <= REFERENCED_MAX);
        assert!(out.references(&0u32.to_be_bytes()));
        assert!(!out.references(&1999u32.to_be_bytes()));
    }
}
