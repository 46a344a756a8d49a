//! memcached's text ("ASCII") protocol.

mod admin;
pub mod crawler;
mod meta;
mod numbers;
mod parse;
pub mod reply;
mod tokens;
pub mod watch;

pub use meta::{MetaCommand, MetaFlags};
pub use numbers::{parse_i32_like_strtol, parse_u32_like_strtoul, parse_u64_like_strtoull};
pub use parse::{parse, GetKeys, KeyTooLong, Parse, ParseConfig, Request, StoreCommand};
pub use tokens::Tokens;

/// Longest key memcached accepts.
pub const KEY_MAX_LENGTH: usize = 250;

/// A line without a newline longer than this closes the connection unless it is a `get`/`gets`
/// (memcached's `try_read_command_ascii`).
pub const MAX_LINE_WITHOUT_NEWLINE: usize = 2048;

/// Our own bound on a multi-get line still waiting for its newline. memcached grows its buffer
/// without limit for such lines; we cap it so one client cannot take the server's memory.
pub const MAX_GET_LINE: usize = 4 * 1024 * 1024;
