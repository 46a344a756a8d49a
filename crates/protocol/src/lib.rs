//! ferrocache-protocol: memcached's wire protocols without I/O.
//!
//! Bytes go in, typed requests come out ([`text::parse`]); replies are encoded by the functions in
//! [`text::reply`]. Nothing here reads a socket, touches the cache or allocates per request: requests
//! borrow keys and values from the caller's buffer. The parser reproduces memcached 1.6's text
//! protocol quirks exactly (tokenising on spaces only, `strtoul`-style numbers, the 2048-byte line
//! rule), because byte-for-byte compatibility with memcached is the product.

pub mod auth;
pub mod binary;
pub mod text;
pub mod udp;
