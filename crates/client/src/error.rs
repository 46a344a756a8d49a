//! What can go wrong talking to memcached servers.

/// Client errors. Server-side refusals that are normal outcomes (a miss, NOT_STORED, EXISTS) are
/// not errors: they are values of the result types.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error talking to {server}: {source}")]
    Io {
        server: String,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out talking to {0}")]
    Timeout(String),
    /// `ERROR`: the server did not know the command.
    #[error("server answered ERROR")]
    UnknownCommand,
    /// `ERROR: shutdown not enabled`: the server refuses `shutdown` (memcached started without
    /// `-A`). The server keeps running.
    #[error("server answered ERROR: shutdown not enabled (start it with -A to allow shutdown)")]
    ShutdownNotEnabled,
    /// `CLIENT_ERROR ...`: the request was malformed (bad key, bad number...).
    #[error("CLIENT_ERROR {0}")]
    Client(String),
    /// `SERVER_ERROR ...`: the server could not do it (too large, out of memory...).
    #[error("SERVER_ERROR {0}")]
    Server(String),
    /// The server sent something this client cannot read.
    #[error("unexpected reply: {0}")]
    Protocol(String),
    /// A key memcached would refuse: empty, over 250 bytes, or with spaces or control characters.
    #[error("invalid key")]
    InvalidKey,
    /// Every server that could hold the key is marked dead.
    #[error("no live server for the key")]
    NoServer,
    /// TLS settings that cannot be used (unreadable CA or certificate file, bad server name).
    #[error("TLS: {0}")]
    Tls(String),
    /// A server address that cannot be read.
    #[error("bad server address {0:?}")]
    BadAddress(String),
}

pub type Result<T> = std::result::Result<T, Error>;
