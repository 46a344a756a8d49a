//! ferrocache-client: a memcached client for many servers. Keys are placed by ketama exactly as
//! libmemcached (`KETAMA_WEIGHTED`) and twemproxy (`hash: md5`, `distribution: ketama`) place
//! them, so a fleet can mix this client with pylibmc and nutcracker. On top: a connection pool
//! per server, multi-get fanned out to the owning servers concurrently, failover (a failing
//! server is skipped for a retry interval and its keys go to the next live points), optional
//! replication, and warm-up from the previous owners after the cluster grows.
//!
//! ```no_run
//! # async fn demo() -> ferrocache_client::Result<()> {
//! use ferrocache_client::{Client, Config, ServerSpec};
//! let servers = vec![ServerSpec::parse("127.0.0.1:11211")?, ServerSpec::parse("127.0.0.1:11212")?];
//! let client = Client::new(Config::new(servers));
//! client.set(b"greeting", b"hello", 0, 300).await?;
//! assert_eq!(client.get(b"greeting").await?.map(|v| v.data), Some(b"hello".to_vec()));
//! # Ok(()) }
//! ```
//! [`blocking::Client`] wraps the same API for synchronous code. [`Config::tls`] turns on TLS
//! ([`TlsConfig`]) for servers started with `-Z`.

pub mod blocking;
mod client;
pub mod codec;
mod conn;
mod error;
pub mod ring;
mod spec;
mod tls;

pub use client::{Client, ClientStats, Config, Credentials, Failover, PerServer, Stats};
pub use codec::{check_key, StoreCommand, StoreStatus, Value};
pub use error::{Error, Result};
pub use spec::{ServerSpec, DEFAULT_PORT};
pub use tls::TlsConfig;
