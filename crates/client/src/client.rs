//! The cluster client: servers placed on a ketama ring, a small pool of connections per server,
//! multi-get fan-out, failover, replication and warm-up after the cluster grows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::conn::{Connection, StoreCommand, StoreStatus, Value};
use crate::error::{Error, Result};
use crate::ring::{Ring, RingServer};

/// A server address with its ketama weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub host: String,
    pub port: u16,
    pub weight: u32,
}

impl ServerSpec {
    /// Reads `host`, `host:port` or `host:port:weight` (`[v6]:port` too); the port defaults to
    /// 11211 and the weight to 1.
    pub fn parse(text: &str) -> Result<ServerSpec> {
        let bad = || Error::BadAddress(text.to_string());
        let (host, rest) = if let Some(v6) = text.strip_prefix('[') {
            let (host, rest) = v6.split_once(']').ok_or_else(bad)?;
            (host, rest.strip_prefix(':').unwrap_or(rest))
        } else {
            match text.split_once(':') {
                Some((host, rest)) => (host, rest),
                None => (text, ""),
            }
        };
        let mut parts = rest.split(':').filter(|p| !p.is_empty());
        let port = parts
            .next()
            .map_or(Ok(11211), |p| p.parse())
            .map_err(|_| bad())?;
        let weight = parts
            .next()
            .map_or(Ok(1), |w| w.parse())
            .map_err(|_| bad())?;
        if host.is_empty() || parts.next().is_some() {
            return Err(bad());
        }
        Ok(ServerSpec {
            host: host.to_string(),
            port,
            weight,
        })
    }

    fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn ring_server(&self) -> RingServer {
        RingServer {
            name: RingServer::name_for(&self.host, self.port),
            weight: self.weight,
        }
    }
}

/// One answer per server, with its address, for commands sent to every server.
pub type PerServer<T> = Vec<(String, Result<T>)>;

/// `STAT name value` pairs, in the server's order.
pub type Stats = Vec<(String, String)>;

/// What to do with a key whose server is marked dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failover {
    /// Send it to the next live server on the ring (libmemcached's auto-eject, twemproxy's
    /// `auto_eject_hosts`).
    Remap,
    /// Keep the ring fixed and return [`Error::NoServer`].
    Fail,
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub servers: Vec<ServerSpec>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Idle connections kept per server.
    pub pool_size: usize,
    /// Consecutive failures after which a server is marked dead.
    pub failure_limit: u32,
    /// How long a dead server is skipped before it is tried again.
    pub retry_interval: Duration,
    pub failover: Failover,
    /// Copies of each key, on this many distinct servers following the key on the ring.
    pub replicas: usize,
    /// The servers before the cluster grew: on a miss, a key is read from its previous owner and
    /// copied to its new one (with `warmup_exptime`).
    pub previous_servers: Option<Vec<ServerSpec>>,
    pub warmup_exptime: i64,
}

impl Config {
    /// Defaults for `servers`: 1 s connect, 2 s request timeouts, 4 idle connections per server,
    /// dead after 2 failures for 5 s, remapping, no replication, no warm-up.
    pub fn new(servers: Vec<ServerSpec>) -> Config {
        Config {
            servers,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            pool_size: 4,
            failure_limit: 2,
            retry_interval: Duration::from_secs(5),
            failover: Failover::Remap,
            replicas: 1,
            previous_servers: None,
            warmup_exptime: 0,
        }
    }
}

struct Server {
    address: String,
    idle: Mutex<Vec<Connection>>,
    failures: AtomicU32,
    /// Set when the server failed `failure_limit` times in a row; skipped until then.
    dead_until: parking_lot::Mutex<Option<Instant>>,
}

/// Counters a caller can read (warm-up effect, failovers).
#[derive(Debug, Default)]
pub struct ClientStats {
    pub warmup_hits: AtomicU32,
    pub failovers: AtomicU32,
}

/// The cluster client. Cheap to clone; clones share connections and server health.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    servers: Vec<Server>,
    ring: Ring,
    /// Ring of `previous_servers`, with indices into `previous`.
    previous: Option<(Ring, Vec<Server>)>,
    stats: ClientStats,
}

fn servers_of(specs: &[ServerSpec]) -> Vec<Server> {
    specs
        .iter()
        .map(|s| Server {
            address: s.address(),
            idle: Mutex::new(Vec::new()),
            failures: AtomicU32::new(0),
            dead_until: Default::default(),
        })
        .collect()
}

fn ring_of(specs: &[ServerSpec]) -> Ring {
    Ring::new(
        &specs
            .iter()
            .map(ServerSpec::ring_server)
            .collect::<Vec<_>>(),
    )
}

impl Client {
    pub fn new(config: Config) -> Client {
        let previous = config
            .previous_servers
            .as_ref()
            .map(|specs| (ring_of(specs), servers_of(specs)));
        Client {
            inner: Arc::new(Inner {
                servers: servers_of(&config.servers),
                ring: ring_of(&config.servers),
                previous,
                config,
                stats: ClientStats::default(),
            }),
        }
    }

    /// Client-side counters.
    pub fn stats_counters(&self) -> &ClientStats {
        &self.inner.stats
    }

    fn is_live(&self, server: &Server) -> bool {
        let dead_until = *server.dead_until.lock();
        match dead_until {
            Some(until) if Instant::now() < until => false,
            Some(_) => {
                // The retry interval is over: give it another chance.
                *server.dead_until.lock() = None;
                server.failures.store(0, Ordering::Relaxed);
                true
            }
            None => true,
        }
    }

    /// The servers for `key`, in the order to use them: the live replicas (or the owner and,
    /// with remapping, the next live servers on the ring).
    fn route(&self, key: &[u8], copies: usize) -> Result<Vec<usize>> {
        let inner = &self.inner;
        let all = inner.ring.servers_for(key, inner.servers.len());
        let Some(&owner) = all.first() else {
            return Err(Error::NoServer);
        };
        if inner.config.failover == Failover::Fail {
            return if self.is_live(&inner.servers[owner]) {
                Ok(all.into_iter().take(copies).collect())
            } else {
                Err(Error::NoServer)
            };
        }
        let live: Vec<usize> = all
            .into_iter()
            .filter(|&i| self.is_live(&inner.servers[i]))
            .take(copies)
            .collect();
        if live.is_empty() {
            return Err(Error::NoServer);
        }
        if live[0] != owner {
            inner.stats.failovers.fetch_add(1, Ordering::Relaxed);
        }
        Ok(live)
    }

    /// Runs `op` on a pooled connection to `server`, keeping track of its health.
    async fn with_conn<T>(
        &self,
        server: &Server,
        op: impl AsyncFnOnce(&mut Connection) -> Result<T>,
    ) -> Result<T> {
        let config = &self.inner.config;
        let pooled = server.idle.lock().await.pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => match Connection::connect(&server.address, config.connect_timeout).await {
                Ok(conn) => conn,
                Err(e) => {
                    self.note_failure(server);
                    return Err(e);
                }
            },
        };
        match op(&mut conn).await {
            Ok(value) => {
                server.failures.store(0, Ordering::Relaxed);
                let mut idle = server.idle.lock().await;
                if idle.len() < config.pool_size {
                    idle.push(conn);
                }
                Ok(value)
            }
            // The server answered: the connection is fine and so is the server.
            Err(e @ (Error::Client(_) | Error::Server(_) | Error::UnknownCommand)) => {
                server.idle.lock().await.push(conn);
                Err(e)
            }
            Err(e) => {
                if matches!(e, Error::Io { .. } | Error::Timeout(_)) {
                    self.note_failure(server);
                }
                Err(e)
            }
        }
    }

    fn note_failure(&self, server: &Server) {
        let config = &self.inner.config;
        let failures = server.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= config.failure_limit {
            *server.dead_until.lock() = Some(Instant::now() + config.retry_interval);
        }
    }

    /// Reads one key; `None` on a miss.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        Ok(self.get_multi(&[key]).await?.remove(key))
    }

    /// `gets`: the value with its CAS id.
    pub async fn gets(&self, key: &[u8]) -> Result<Option<Value>> {
        Ok(self.fetch(&[key], true, None).await?.remove(key))
    }

    /// `gat`: read and set a new expiry.
    pub async fn gat(&self, key: &[u8], exptime: i64) -> Result<Option<Value>> {
        Ok(self.fetch(&[key], false, Some(exptime)).await?.remove(key))
    }

    /// Reads many keys: one request per server that owns some of them, all in flight at once.
    pub async fn get_multi(&self, keys: &[&[u8]]) -> Result<HashMap<Vec<u8>, Value>> {
        self.fetch(keys, false, None).await
    }

    async fn fetch(
        &self,
        keys: &[&[u8]],
        cas: bool,
        touch: Option<i64>,
    ) -> Result<HashMap<Vec<u8>, Value>> {
        let replicas = self.inner.config.replicas.max(1);
        let mut by_server: HashMap<usize, Vec<&[u8]>> = HashMap::new();
        let mut routes: HashMap<&[u8], Vec<usize>> = HashMap::new();
        for &key in keys {
            let route = self.route(key, replicas)?;
            by_server.entry(route[0]).or_default().push(key);
            routes.insert(key, route);
        }
        let requests = by_server.into_iter().map(|(server, keys)| async move {
            let result = self
                .with_conn(&self.inner.servers[server], async |c: &mut Connection| {
                    c.get_multi(&keys, cas, touch).await
                })
                .await;
            (server, keys, result)
        });
        let mut found = HashMap::new();
        let mut retry: Vec<&[u8]> = Vec::new();
        let mut missed: Vec<&[u8]> = Vec::new();
        for (_server, keys, result) in futures::future::join_all(requests).await {
            match result {
                Ok(values) => {
                    for &key in &keys {
                        if !values.contains_key(key) {
                            missed.push(key);
                        }
                    }
                    found.extend(values);
                }
                Err(e @ (Error::Io { .. } | Error::Timeout(_))) => {
                    // Replicas (or the remapped ring) may still have these keys.
                    if replicas > 1 || self.inner.config.failover == Failover::Remap {
                        retry.extend(keys);
                    } else {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        for key in retry {
            for &server in routes[key].iter().skip(1) {
                let got = self
                    .with_conn(&self.inner.servers[server], async |c: &mut Connection| {
                        c.get_multi(&[key], cas, touch).await
                    })
                    .await;
                if let Ok(values) = got {
                    found.extend(values);
                    break;
                }
            }
        }
        if self.inner.previous.is_some() && !cas && touch.is_none() {
            for key in missed {
                if let Some(value) = self.warm_up(key).await {
                    found.insert(key.to_vec(), value);
                }
            }
        }
        Ok(found)
    }

    /// After growth: read a missed key from its previous owner and copy it to the new one.
    async fn warm_up(&self, key: &[u8]) -> Option<Value> {
        let (ring, servers) = self.inner.previous.as_ref()?;
        let old = &servers[ring.server_for(key)?];
        let new_owner = self.route(key, 1).ok()?[0];
        if old.address == self.inner.servers[new_owner].address {
            return None;
        }
        let mut values = self
            .with_conn(old, async |c: &mut Connection| {
                c.get_multi(&[key], false, None).await
            })
            .await
            .ok()?;
        let value = values.remove(key)?;
        self.inner.stats.warmup_hits.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .store(
                StoreCommand::Add,
                key,
                &value.data,
                value.flags,
                self.inner.config.warmup_exptime,
            )
            .await;
        Some(value)
    }

    /// A storage command; with replication, written to every replica (the first answer counts).
    pub async fn store(
        &self,
        command: StoreCommand,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: i64,
    ) -> Result<StoreStatus> {
        let route = self.route(key, self.inner.config.replicas.max(1))?;
        let mut first: Option<Result<StoreStatus>> = None;
        for server in route {
            let result = self
                .with_conn(&self.inner.servers[server], async |c: &mut Connection| {
                    c.store(command, key, value, flags, exptime).await
                })
                .await;
            match (&first, &result) {
                (None, _) | (Some(Err(_)), Ok(_)) => first = Some(result),
                _ => {}
            }
        }
        first.unwrap_or(Err(Error::NoServer))
    }

    pub async fn set(&self, key: &[u8], value: &[u8], flags: u32, exptime: i64) -> Result<bool> {
        Ok(self
            .store(StoreCommand::Set, key, value, flags, exptime)
            .await?
            == StoreStatus::Stored)
    }

    /// Runs a keyed command on every replica; the first success answers.
    async fn on_replicas<T>(
        &self,
        key: &[u8],
        op: impl AsyncFn(&mut Connection) -> Result<T>,
    ) -> Result<T> {
        let route = self.route(key, self.inner.config.replicas.max(1))?;
        let mut first: Option<Result<T>> = None;
        for server in route {
            let result = self.with_conn(&self.inner.servers[server], &op).await;
            match (&first, &result) {
                (None, _) | (Some(Err(_)), Ok(_)) => first = Some(result),
                _ => {}
            }
        }
        first.unwrap_or(Err(Error::NoServer))
    }

    pub async fn delete(&self, key: &[u8]) -> Result<bool> {
        self.on_replicas(key, async |c: &mut Connection| c.delete(key).await)
            .await
    }

    pub async fn incr(&self, key: &[u8], by: u64) -> Result<Option<u64>> {
        self.on_replicas(key, async |c: &mut Connection| c.delta(key, true, by).await)
            .await
    }

    pub async fn decr(&self, key: &[u8], by: u64) -> Result<Option<u64>> {
        self.on_replicas(key, async |c: &mut Connection| {
            c.delta(key, false, by).await
        })
        .await
    }

    pub async fn touch(&self, key: &[u8], exptime: i64) -> Result<bool> {
        self.on_replicas(key, async |c: &mut Connection| c.touch(key, exptime).await)
            .await
    }

    /// Runs `op` on every server (flush_all, stats, version), in configuration order.
    async fn on_all<T>(&self, op: impl AsyncFn(&mut Connection) -> Result<T>) -> PerServer<T> {
        let mut out = Vec::new();
        for server in &self.inner.servers {
            out.push((server.address.clone(), self.with_conn(server, &op).await));
        }
        out
    }

    pub async fn flush_all(&self, delay: i64) -> PerServer<()> {
        self.on_all(async |c: &mut Connection| c.flush_all(delay).await)
            .await
    }

    pub async fn version(&self) -> PerServer<String> {
        self.on_all(async |c: &mut Connection| c.version().await)
            .await
    }

    pub async fn stats(&self, arg: Option<&str>) -> PerServer<Stats> {
        self.on_all(async |c: &mut Connection| c.stats(arg).await)
            .await
    }

    pub async fn verbosity(&self, level: u32) -> PerServer<()> {
        self.on_all(async |c: &mut Connection| c.verbosity(level).await)
            .await
    }

    /// The address of the server that owns `key` right now (after failover).
    pub fn server_for(&self, key: &[u8]) -> Result<String> {
        let route = self.route(key, 1)?;
        Ok(self.inner.servers[route[0]].address.clone())
    }
}
