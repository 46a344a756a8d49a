//! The cluster client: servers placed on a ketama ring, a bounded pool of pipelined connections
//! per server, multi-get fan-out, failover, replication and warm-up after the cluster grows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::codec::{self, Reply, ReplyKind, StoreCommand, StoreStatus, Value};
use crate::conn::Connection;
use crate::error::{Error, Result};
use crate::ring::Ring;
use crate::spec::ServerSpec;

/// Keys per `get` line: memcached reads long `get` lines, but a bounded line keeps every server
/// (and proxy) happy, and the chunks are pipelined on one connection anyway.
const KEYS_PER_GET: usize = 100;

/// One answer per server, with its address, for commands sent to every server.
pub type PerServer<T> = Vec<(String, Result<T>)>;

/// `STAT name value` pairs, in the server's order.
pub type Stats = Vec<(String, String)>;

/// What to do with a key whose server is marked dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failover {
    /// Rebuild the ring without the dead server, as libmemcached's `AUTO_EJECT_HOSTS` and
    /// twemproxy's `auto_eject_hosts: true` do: its keys go to the next live points, the other
    /// keys stay where they are.
    Remap,
    /// Keep the ring fixed and answer [`Error::NoServer`] for the dead server's keys (some
    /// operators prefer errors to reads from a server that holds none of the data).
    Fail,
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub servers: Vec<ServerSpec>,
    pub connect_timeout: Duration,
    /// Time allowed for each request's reply; past it the connection is dropped.
    pub request_timeout: Duration,
    /// Connections per server. Each carries many requests at once (pipelining), so a few suffice.
    pub pool_size: usize,
    /// Consecutive failures (I/O errors, timeouts) after which a server is marked dead.
    pub failure_limit: u32,
    /// How long a dead server is left out before it is tried again.
    pub retry_interval: Duration,
    pub failover: Failover,
    /// Copies of each key, on this many distinct servers following the key on the ring. Reads
    /// move to the next copy on an error or a miss, and copy a value found there back.
    pub replicas: usize,
    /// The servers before the cluster grew: on a miss, a key is read from its previous owner and
    /// copied to its new one with `warmup_exptime` (the text protocol does not tell the item's
    /// remaining lifetime).
    pub previous_servers: Option<Vec<ServerSpec>>,
    /// Expiry of the copies written by warm-up and by replica repair (0: never expires).
    pub warmup_exptime: i64,
    /// TLS to every server (`None`: plaintext).
    pub tls: Option<crate::TlsConfig>,
    /// Log every new connection in with memcached's ASCII authentication token (servers started
    /// with `-Y`): a `set` whose data is `<user> <password>`.
    pub auth: Option<Credentials>,
}

/// A user name and password for servers that require a login. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials {{ user: {:?}, password: <hidden> }}",
            self.user
        )
    }
}

impl Credentials {
    /// `user:password`, split at the first `:` (as in memcached's auth files). Neither part may
    /// hold a space or a line break, which the token cannot carry.
    pub fn parse(text: &str) -> Option<Credentials> {
        let (user, password) = text.split_once(':')?;
        let clean = |s: &str| !s.is_empty() && !s.contains([' ', '\r', '\n']);
        (clean(user) && clean(password)).then(|| Credentials {
            user: user.to_string(),
            password: password.to_string(),
        })
    }

    /// The login request: the key, flags and exptime are ignored by the server, nothing is stored.
    fn login_request(&self) -> Vec<u8> {
        let token = format!("{} {}", self.user, self.password);
        format!("set auth 0 0 {}\r\n{token}\r\n", token.len()).into_bytes()
    }
}

impl Config {
    /// Defaults for `servers`: 1 s connect and 2 s request timeouts, 2 connections per server,
    /// dead after 2 failures in a row for 5 s, remapping, no replication, no warm-up.
    pub fn new(servers: Vec<ServerSpec>) -> Config {
        Config {
            servers,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            pool_size: 2,
            failure_limit: 2,
            retry_interval: Duration::from_secs(5),
            failover: Failover::Remap,
            replicas: 1,
            previous_servers: None,
            warmup_exptime: 0,
            tls: None,
            auth: None,
        }
    }
}

/// Client-side counters.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Keys found on their previous owner after growth (and copied to the new one).
    pub warmup_hits: AtomicU64,
    /// Requests routed away from a key's owner because it was marked dead.
    pub failovers: AtomicU64,
    /// Times a server was marked dead.
    pub ejections: AtomicU64,
    /// Connections opened.
    pub connects: AtomicU64,
    /// Pooled connections found closed (by an I/O error, a timeout or a stray reply) and
    /// replaced.
    pub reconnects: AtomicU64,
}

/// One server: its pool and its health.
struct Server {
    address: String,
    /// `pool_size` connection slots, used in turn. A slot's lock is held only to look at the
    /// slot or to connect it, never during a request.
    slots: Vec<tokio::sync::Mutex<Option<Arc<Connection>>>>,
    next_slot: AtomicUsize,
    /// noreply requests written to this server, counted once each is written (so a request
    /// that reads the count is queued behind every request it counts); all go on slot 0.
    noreply_sent: AtomicU64,
    /// The highest `noreply_sent` seen by a request on slot 0 that has since been answered: the
    /// server processes a connection in order, so those noreply requests are done. While
    /// `noreply_sent` is ahead, every request goes on slot 0 too, behind them, so a read that
    /// follows a noreply write sees it (on another connection it could overtake it).
    noreply_done: AtomicU64,
    failures: AtomicU32,
    /// Set when the server failed `failure_limit` times in a row.
    dead_until: parking_lot::Mutex<Option<Instant>>,
}

impl Server {
    fn new(address: String, pool_size: usize) -> Server {
        Server {
            address,
            slots: (0..pool_size.max(1))
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next_slot: AtomicUsize::new(0),
            noreply_sent: AtomicU64::new(0),
            noreply_done: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            dead_until: parking_lot::Mutex::new(None),
        }
    }

    fn dead_at(&self, now: Instant) -> bool {
        matches!(*self.dead_until.lock(), Some(until) if now < until)
    }
}

/// The ring over the servers that are live right now.
struct Routing {
    ring: Ring,
    /// Ring index -> index into `Inner::servers`.
    members: Vec<usize>,
    /// When the next dead server's retry interval ends (the routing is rebuilt then).
    next_revival: Option<Instant>,
}

/// The cluster client. Cheap to clone; clones share connections and server health.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    servers: Vec<Arc<Server>>,
    /// The ring over every configured server, dead or not.
    full_ring: Ring,
    routing: parking_lot::RwLock<Arc<Routing>>,
    /// The ring before growth, over `previous_servers` (sharing `Server`s with the same address).
    previous: Option<(Ring, Vec<Arc<Server>>)>,
    stats: ClientStats,
}

impl Client {
    pub fn new(config: Config) -> Client {
        let servers: Vec<Arc<Server>> = config
            .servers
            .iter()
            .map(|s| Arc::new(Server::new(s.address(), config.pool_size)))
            .collect();
        let full_ring = ring_of(&config.servers);
        let previous = config.previous_servers.as_ref().map(|specs| {
            let members = specs
                .iter()
                .map(|spec| {
                    let address = spec.address();
                    servers
                        .iter()
                        .find(|s| s.address == address)
                        .cloned()
                        .unwrap_or_else(|| Arc::new(Server::new(address, config.pool_size)))
                })
                .collect();
            (ring_of(specs), members)
        });
        let routing = Routing {
            ring: full_ring.clone(),
            members: (0..servers.len()).collect(),
            next_revival: None,
        };
        Client {
            inner: Arc::new(Inner {
                servers,
                full_ring,
                routing: parking_lot::RwLock::new(Arc::new(routing)),
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

    /// The live routing, rebuilt first if a dead server's retry interval is over.
    fn routing(&self) -> Arc<Routing> {
        let current = self.inner.routing.read().clone();
        match current.next_revival {
            Some(at) if Instant::now() >= at => self.rebuild_routing(),
            _ => current,
        }
    }

    /// Rebuilds the ring over the live servers, as libmemcached and twemproxy do on ejection and
    /// when a server's retry time comes: points and weights of the live servers only.
    fn rebuild_routing(&self) -> Arc<Routing> {
        let inner = &self.inner;
        let now = Instant::now();
        let mut next_revival: Option<Instant> = None;
        let mut members = Vec::new();
        for (index, server) in inner.servers.iter().enumerate() {
            let mut dead_until = server.dead_until.lock();
            match *dead_until {
                Some(until) if now < until => {
                    next_revival = Some(next_revival.map_or(until, |at| at.min(until)));
                }
                Some(_) => {
                    // The retry interval is over: back in, with a clean slate.
                    *dead_until = None;
                    server.failures.store(0, Ordering::Relaxed);
                    members.push(index);
                }
                None => members.push(index),
            }
        }
        let specs: Vec<ServerSpec> = members
            .iter()
            .map(|&i| inner.config.servers[i].clone())
            .collect();
        let routing = Arc::new(Routing {
            ring: ring_of(&specs),
            members,
            next_revival,
        });
        *inner.routing.write() = routing.clone();
        routing
    }

    /// The servers for `key`, in the order to use them: up to `copies` distinct servers starting
    /// with the key's owner.
    fn route(&self, key: &[u8], copies: usize) -> Result<Vec<usize>> {
        let inner = &self.inner;
        let routing = self.routing();
        if inner.config.failover == Failover::Fail {
            let now = Instant::now();
            let all = inner.full_ring.servers_for(key, copies);
            let live: Vec<usize> = all
                .into_iter()
                .filter(|&i| !inner.servers[i].dead_at(now))
                .collect();
            return if live.is_empty() {
                Err(Error::NoServer)
            } else {
                Ok(live)
            };
        }
        let route: Vec<usize> = routing
            .ring
            .servers_for(key, copies)
            .into_iter()
            .map(|i| routing.members[i])
            .collect();
        let Some(&first) = route.first() else {
            return Err(Error::NoServer);
        };
        if routing.members.len() < inner.servers.len()
            && inner.full_ring.server_for(key) != Some(first)
        {
            inner.stats.failovers.fetch_add(1, Ordering::Relaxed);
        }
        Ok(route)
    }

    /// A live connection to `server` from its pool slot `slot` (the next one in turn when
    /// `None`), connecting the slot if it is empty or broken.
    async fn connection(&self, server: &Server, slot: Option<usize>) -> Result<Arc<Connection>> {
        let slot = slot.unwrap_or_else(|| {
            server.next_slot.fetch_add(1, Ordering::Relaxed) % server.slots.len()
        });
        let mut slot = server.slots[slot].lock().await;
        match slot.as_ref() {
            Some(conn) if !conn.is_closed() => return Ok(conn.clone()),
            Some(_) => {
                self.inner.stats.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            None => {}
        }
        let conn = self.open_connection(server).await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// A new connection to `server`, logged in when the config has credentials; not pooled.
    async fn open_connection(&self, server: &Server) -> Result<Arc<Connection>> {
        let config = &self.inner.config;
        let conn = Arc::new(
            Connection::connect(
                &server.address,
                config.connect_timeout,
                config.request_timeout,
                config.tls.as_ref(),
            )
            .await?,
        );
        if let Some(credentials) = &config.auth {
            // STORED means logged in; a refusal comes back as CLIENT_ERROR authentication failure.
            match conn
                .call(credentials.login_request(), ReplyKind::Store)
                .await?
            {
                Reply::Store(StoreStatus::Stored) => {}
                other => return Err(Error::Protocol(format!("login answered {other:?}"))),
            }
        }
        self.inner.stats.connects.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    }

    /// Sends one request to `server` and keeps track of its health: an I/O error or a timeout
    /// counts as a failure; any answer, even an error line, clears the count.
    async fn request(&self, server: &Server, request: Vec<u8>, kind: ReplyKind) -> Result<Reply> {
        self.send_request(server, request, Some(kind)).await
    }

    /// [`Client::request`], and for `kind` `None` a noreply request: done once written.
    async fn send_request(
        &self,
        server: &Server,
        request: Vec<u8>,
        kind: Option<ReplyKind>,
    ) -> Result<Reply> {
        // Ordering after noreply requests: see `Server::noreply_sent`.
        let pending = server.noreply_sent.load(Ordering::SeqCst);
        let behind_noreply = kind.is_none() || pending > server.noreply_done.load(Ordering::SeqCst);
        let result = match self.connection(server, behind_noreply.then_some(0)).await {
            Ok(conn) => match kind {
                Some(kind) => {
                    let reply = conn.call(request, kind).await;
                    if behind_noreply && reply.is_ok() {
                        server.noreply_done.fetch_max(pending, Ordering::SeqCst);
                    }
                    reply
                }
                None => {
                    let sent = conn.send_noreply(request).await;
                    server.noreply_sent.fetch_add(1, Ordering::SeqCst);
                    sent.map(|()| Reply::Sent)
                }
            },
            Err(e) => Err(e),
        };
        match &result {
            Err(Error::Io { .. } | Error::Timeout(_)) => self.note_failure(server),
            _ => server.failures.store(0, Ordering::Relaxed),
        }
        result
    }

    fn note_failure(&self, server: &Server) {
        let config = &self.inner.config;
        let failures = server.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= config.failure_limit {
            let now = Instant::now();
            let mut dead_until = server.dead_until.lock();
            let newly_dead = !matches!(*dead_until, Some(until) if now < until);
            *dead_until = Some(now + config.retry_interval);
            drop(dead_until);
            if newly_dead {
                self.inner.stats.ejections.fetch_add(1, Ordering::Relaxed);
                self.rebuild_routing();
            }
        }
    }

    /// Reads one key; `None` on a miss.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        Ok(self.fetch(&[key], false, None).await?.remove(key))
    }

    /// `gets`: the value with its CAS id.
    pub async fn gets(&self, key: &[u8]) -> Result<Option<Value>> {
        Ok(self.fetch(&[key], true, None).await?.remove(key))
    }

    /// `gat`: read and set a new expiry.
    pub async fn gat(&self, key: &[u8], exptime: i64) -> Result<Option<Value>> {
        Ok(self.fetch(&[key], false, Some(exptime)).await?.remove(key))
    }

    /// `gats`: read with the CAS id and set a new expiry.
    pub async fn gats(&self, key: &[u8], exptime: i64) -> Result<Option<Value>> {
        Ok(self.fetch(&[key], true, Some(exptime)).await?.remove(key))
    }

    /// Reads many keys: the keys are grouped by owner and every server is asked at once.
    /// Missing keys are absent from the map.
    pub async fn get_multi(&self, keys: &[&[u8]]) -> Result<HashMap<Vec<u8>, Value>> {
        self.fetch(keys, false, None).await
    }

    /// `gets` for many keys.
    pub async fn gets_multi(&self, keys: &[&[u8]]) -> Result<HashMap<Vec<u8>, Value>> {
        self.fetch(keys, true, None).await
    }

    /// `gat` for many keys: read them and set their expiry.
    pub async fn gat_multi(&self, keys: &[&[u8]], exptime: i64) -> Result<HashMap<Vec<u8>, Value>> {
        self.fetch(keys, false, Some(exptime)).await
    }

    /// `gats` for many keys.
    pub async fn gats_multi(
        &self,
        keys: &[&[u8]],
        exptime: i64,
    ) -> Result<HashMap<Vec<u8>, Value>> {
        self.fetch(keys, true, Some(exptime)).await
    }

    /// Asks `server` for `keys` (in pipelined chunks); the values found.
    async fn fetch_from(
        &self,
        server: &Server,
        keys: &[&[u8]],
        cas: bool,
        touch: Option<i64>,
    ) -> Result<Vec<(Vec<u8>, Value)>> {
        let chunks = keys.chunks(KEYS_PER_GET).map(|chunk| {
            let mut request = Vec::new();
            codec::encode_get(&mut request, chunk, cas, touch);
            self.request(server, request, ReplyKind::Values)
        });
        let mut found = Vec::new();
        for reply in join_all(chunks).await {
            match reply? {
                Reply::Values(values) => found.extend(values),
                other => return Err(unexpected(other)),
            }
        }
        Ok(found)
    }

    async fn fetch(
        &self,
        keys: &[&[u8]],
        cas: bool,
        touch: Option<i64>,
    ) -> Result<HashMap<Vec<u8>, Value>> {
        for key in keys {
            codec::check_key(key)?;
        }
        let replicas = self.inner.config.replicas.max(1);
        // Each key's remaining candidates; the first is asked next.
        let mut routes: HashMap<&[u8], Vec<usize>> = HashMap::new();
        for &key in keys {
            let mut route = self.route(key, replicas)?;
            route.reverse();
            routes.insert(key, route);
        }
        let mut found = HashMap::new();
        let mut missed: Vec<&[u8]> = Vec::new();
        // Replicas that answered "miss" for a key a later replica may still hold (a primary that
        // restarted empty, say): they get the value back once it is found.
        let mut to_repair: HashMap<&[u8], Vec<usize>> = HashMap::new();
        // The servers that failed each key (I/O error or timeout).
        let mut failed_on: HashMap<&[u8], Vec<usize>> = HashMap::new();
        let mut rerouted = false;
        while !routes.is_empty() {
            let mut by_server: HashMap<usize, Vec<&[u8]>> = HashMap::new();
            for (&key, route) in &routes {
                let server = *route.last().expect("routes are never empty");
                by_server.entry(server).or_default().push(key);
            }
            let asks = by_server.into_iter().map(|(server, keys)| async move {
                let result = self
                    .fetch_from(&self.inner.servers[server], &keys, cas, touch)
                    .await;
                (server, keys, result)
            });
            let mut failed = None;
            for (server, asked, result) in join_all(asks).await {
                match result {
                    Ok(values) => {
                        found.extend(values);
                        for &key in &asked {
                            let route = routes.get_mut(key).expect("asked keys are routed");
                            route.pop();
                            if found.contains_key(key) {
                                routes.remove(key);
                            } else if route.is_empty() {
                                routes.remove(key);
                                missed.push(key);
                            } else {
                                // A miss with replicas left: ask the next one.
                                to_repair.entry(key).or_default().push(server);
                            }
                        }
                    }
                    // The server answered with an error: that is the answer.
                    Err(e @ (Error::Client(_) | Error::Server(_) | Error::UnknownCommand)) => {
                        return Err(e)
                    }
                    Err(e) => {
                        for &key in &asked {
                            let route = routes.get_mut(key).expect("asked keys are routed");
                            route.pop();
                            failed_on.entry(key).or_default().push(server);
                        }
                        failed = Some(e);
                    }
                }
            }
            // A key that a replica answered (a miss) before the later ones failed is a miss.
            routes.retain(|&key, route| {
                let answered = route.is_empty() && to_repair.contains_key(key);
                if answered {
                    missed.push(key);
                }
                !answered
            });
            // Keys whose candidates all failed: if that got a server marked dead, its keys are
            // remapped, so route once more; else give up with the error (asking a server that
            // is still on the ring again would only wait for a second timeout).
            let exhausted: Vec<&[u8]> = routes
                .iter()
                .filter(|(_, r)| r.is_empty())
                .map(|(&k, _)| k)
                .collect();
            if !exhausted.is_empty() {
                let error = failed.expect("only failures empty a route");
                let now = Instant::now();
                let remapped = |key: &&[u8]| {
                    failed_on.get(*key).is_some_and(|servers| {
                        servers.iter().any(|&i| self.inner.servers[i].dead_at(now))
                    })
                };
                if rerouted
                    || self.inner.config.failover == Failover::Fail
                    || !exhausted.iter().all(remapped)
                {
                    return Err(error);
                }
                rerouted = true;
                for key in exhausted {
                    let mut route = self.route(key, replicas)?;
                    route.reverse();
                    routes.insert(key, route);
                }
            }
        }
        self.repair_replicas(&found, to_repair, touch).await;
        if self.inner.previous.is_some() && touch.is_none() {
            let warmed = join_all(
                missed
                    .into_iter()
                    .map(|key| async move { (key, self.warm_up(key, cas).await) }),
            )
            .await;
            for (key, value) in warmed {
                if let Some(value) = value {
                    found.insert(key.to_vec(), value);
                }
            }
        }
        Ok(found)
    }

    /// Copies values found on a later replica back to the replicas that missed them, with `add`
    /// (a value written since is never overwritten) and, since the text protocol does not tell
    /// an item's remaining lifetime, the `gat` expiry or `warmup_exptime`. Best effort: a
    /// failure here only means the next read asks the next replica again.
    async fn repair_replicas(
        &self,
        found: &HashMap<Vec<u8>, Value>,
        to_repair: HashMap<&[u8], Vec<usize>>,
        touch: Option<i64>,
    ) {
        let exptime = touch.unwrap_or(self.inner.config.warmup_exptime);
        let copies = to_repair.into_iter().flat_map(|(key, servers)| {
            let value = found.get(key);
            servers.into_iter().filter_map(move |server| {
                let value = value?;
                let mut request = Vec::new();
                codec::encode_store(
                    &mut request,
                    StoreCommand::Add,
                    key,
                    &value.data,
                    value.flags,
                    exptime,
                    false,
                );
                Some(self.request(&self.inner.servers[server], request, ReplyKind::Store))
            })
        });
        join_all(copies).await;
    }

    /// After growth: reads a missed key from its previous owner and copies it to the new one
    /// (with `add`, so a value written since is never overwritten).
    async fn warm_up(&self, key: &[u8], cas: bool) -> Option<Value> {
        let (ring, servers) = self.inner.previous.as_ref()?;
        let old = &servers[ring.server_for(key)?];
        let new_owner = self.route(key, 1).ok()?[0];
        if old.address == self.inner.servers[new_owner].address {
            return None;
        }
        let value = self
            .fetch_from(old, &[key], false, None)
            .await
            .ok()?
            .pop()?
            .1;
        self.inner.stats.warmup_hits.fetch_add(1, Ordering::Relaxed);
        let exptime = self.inner.config.warmup_exptime;
        let _ = self
            .store(StoreCommand::Add, key, &value.data, value.flags, exptime)
            .await;
        if cas {
            // The CAS id must come from the server that now holds the key.
            return self.gets(key).await.ok().flatten();
        }
        Some(value)
    }

    /// Runs one keyed request on every server of the key's route (the owner alone without
    /// replication), all at once. The answer is the first server's, unless it failed and
    /// another answered.
    async fn on_route(&self, key: &[u8], request: Vec<u8>, kind: ReplyKind) -> Result<Reply> {
        self.send_on_route(key, request, Some(kind)).await
    }

    /// [`Client::on_route`], and for `kind` `None` a noreply request: done once written to every
    /// server of the route (or to one, when the others failed).
    async fn send_on_route(
        &self,
        key: &[u8],
        request: Vec<u8>,
        kind: Option<ReplyKind>,
    ) -> Result<Reply> {
        codec::check_key(key)?;
        let route = self.route(key, self.inner.config.replicas.max(1))?;
        let replies = join_all(
            route
                .iter()
                .map(|&i| self.send_request(&self.inner.servers[i], request.clone(), kind)),
        )
        .await;
        let mut first_error = None;
        for reply in replies {
            match reply {
                Ok(reply) => return Ok(reply),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(Error::NoServer))
    }

    /// A storage command; with replication, written to every replica.
    pub async fn store(
        &self,
        command: StoreCommand,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: i64,
    ) -> Result<StoreStatus> {
        codec::check_key(key)?;
        let mut request = Vec::new();
        codec::encode_store(&mut request, command, key, value, flags, exptime, false);
        match self.on_route(key, request, ReplyKind::Store).await? {
            Reply::Store(status) => Ok(status),
            other => Err(unexpected(other)),
        }
    }

    /// A storage command with `noreply`: the server answers nothing, so whether it stored the
    /// value is never known. `Ok` means the request was written to the key's server (every
    /// replica); an error means it could not be (bad key, no live server, I/O error).
    ///
    /// Worth it for fire-and-forget writes (a cache fill whose outcome nobody reads): no reply
    /// to wait for or parse. The request takes no slot among the replies awaited on its
    /// connection, so it can be mixed freely with ordinary requests there.
    pub async fn store_noreply(
        &self,
        command: StoreCommand,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: i64,
    ) -> Result<()> {
        codec::check_key(key)?;
        let mut request = Vec::new();
        codec::encode_store(&mut request, command, key, value, flags, exptime, true);
        self.send_on_route(key, request, None).await.map(|_| ())
    }

    /// `set` with `noreply` (see [`Client::store_noreply`]).
    pub async fn set_noreply(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: i64,
    ) -> Result<()> {
        self.store_noreply(StoreCommand::Set, key, value, flags, exptime)
            .await
    }

    /// `delete` with `noreply`: whether the key existed is never known.
    pub async fn delete_noreply(&self, key: &[u8]) -> Result<()> {
        self.keyed_noreply("delete", key, None).await
    }

    /// `incr` with `noreply`: the new value is never known.
    pub async fn incr_noreply(&self, key: &[u8], by: u64) -> Result<()> {
        self.keyed_noreply("incr", key, Some(by.into())).await
    }

    /// `decr` with `noreply`.
    pub async fn decr_noreply(&self, key: &[u8], by: u64) -> Result<()> {
        self.keyed_noreply("decr", key, Some(by.into())).await
    }

    /// `touch` with `noreply`.
    pub async fn touch_noreply(&self, key: &[u8], exptime: i64) -> Result<()> {
        self.keyed_noreply("touch", key, Some(exptime.into())).await
    }

    async fn keyed_noreply(&self, verb: &str, key: &[u8], argument: Option<i128>) -> Result<()> {
        codec::check_key(key)?;
        let mut request = Vec::new();
        codec::encode_keyed(&mut request, verb, key, argument, true);
        self.send_on_route(key, request, None).await.map(|_| ())
    }

    /// `set`: true when stored.
    pub async fn set(&self, key: &[u8], value: &[u8], flags: u32, exptime: i64) -> Result<bool> {
        let status = self
            .store(StoreCommand::Set, key, value, flags, exptime)
            .await?;
        Ok(status == StoreStatus::Stored)
    }

    async fn keyed(
        &self,
        verb: &str,
        key: &[u8],
        argument: Option<i128>,
        kind: ReplyKind,
    ) -> Result<Reply> {
        codec::check_key(key)?;
        let mut request = Vec::new();
        codec::encode_keyed(&mut request, verb, key, argument, false);
        self.on_route(key, request, kind).await
    }

    /// `delete`: true when the key existed.
    pub async fn delete(&self, key: &[u8]) -> Result<bool> {
        match self.keyed("delete", key, None, ReplyKind::Delete).await? {
            Reply::Found(found) => Ok(found),
            other => Err(unexpected(other)),
        }
    }

    /// `incr`: the new value, `None` when the key does not exist. (With replication each
    /// replica adds on its own copy.)
    pub async fn incr(&self, key: &[u8], by: u64) -> Result<Option<u64>> {
        self.delta("incr", key, by).await
    }

    /// `decr`: the new value (memcached stops at 0), `None` when the key does not exist.
    pub async fn decr(&self, key: &[u8], by: u64) -> Result<Option<u64>> {
        self.delta("decr", key, by).await
    }

    async fn delta(&self, verb: &str, key: &[u8], by: u64) -> Result<Option<u64>> {
        match self
            .keyed(verb, key, Some(by.into()), ReplyKind::Delta)
            .await?
        {
            Reply::Delta(value) => Ok(value),
            other => Err(unexpected(other)),
        }
    }

    /// `touch`: true when the key existed.
    pub async fn touch(&self, key: &[u8], exptime: i64) -> Result<bool> {
        match self
            .keyed("touch", key, Some(exptime.into()), ReplyKind::Touch)
            .await?
        {
            Reply::Found(found) => Ok(found),
            other => Err(unexpected(other)),
        }
    }

    /// Runs one request on every configured server, dead or not, all at once; the answers in
    /// configuration order. `kind` `None`: a noreply request, done once written.
    async fn on_all(&self, request: &[u8], kind: Option<ReplyKind>) -> PerServer<Reply> {
        join_all(self.inner.servers.iter().map(|server| async move {
            let reply = self.send_request(server, request.to_vec(), kind).await;
            (server.address.clone(), reply)
        }))
        .await
    }

    /// `flush_all [delay]` on every server.
    pub async fn flush_all(&self, delay: i64) -> PerServer<()> {
        let mut request = Vec::new();
        codec::encode_flush_all(&mut request, delay, false);
        self.on_all(&request, Some(ReplyKind::Ok))
            .await
            .into_iter()
            .map(|(server, reply)| (server, reply.map(|_| ())))
            .collect()
    }

    /// `flush_all [delay] noreply` on every server: `Ok` once written to it.
    pub async fn flush_all_noreply(&self, delay: i64) -> PerServer<()> {
        let mut request = Vec::new();
        codec::encode_flush_all(&mut request, delay, true);
        self.on_all(&request, None)
            .await
            .into_iter()
            .map(|(server, reply)| (server, reply.map(|_| ())))
            .collect()
    }

    /// `shutdown` on every configured server, each on a connection of its own that is closed
    /// afterwards (never a pooled one: memcached drops the replies still due on the connection
    /// that asks, and the connection is gone anyway).
    ///
    /// `Ok` when the server closed the connection without a reply, which is how memcached
    /// (started with `-A`) and ferrocached shut down; [`Error::ShutdownNotEnabled`] when it
    /// refused (`ERROR: shutdown not enabled`, started without `-A`) and keeps running. `Ok`
    /// means the server is going down, not that its process has exited yet.
    pub async fn shutdown(&self) -> PerServer<()> {
        join_all(self.inner.servers.iter().map(|server| async move {
            let result = async {
                let conn = self.open_connection(server).await?;
                conn.call(b"shutdown\r\n".to_vec(), ReplyKind::Shutdown)
                    .await
            }
            .await;
            let result = match result {
                Ok(Reply::ShutDown) => Ok(()),
                Ok(other) => Err(unexpected(other)),
                Err(e) => Err(e),
            };
            (server.address.clone(), result)
        }))
        .await
    }

    /// Every server's version.
    pub async fn version(&self) -> PerServer<String> {
        self.on_all(b"version\r\n", Some(ReplyKind::Version))
            .await
            .into_iter()
            .map(|(server, reply)| {
                let version = reply.and_then(|r| match r {
                    Reply::Version(v) => Ok(v),
                    other => Err(unexpected(other)),
                });
                (server, version)
            })
            .collect()
    }

    /// `stats [arg]` on every server (`settings`, `items`, `slabs`, `sizes`, `conns`, `reset`).
    pub async fn stats(&self, arg: Option<&str>) -> PerServer<Stats> {
        let request = match arg {
            Some(arg) => format!("stats {arg}\r\n"),
            None => "stats\r\n".to_string(),
        };
        self.on_all(request.as_bytes(), Some(ReplyKind::Stats))
            .await
            .into_iter()
            .map(|(server, reply)| {
                let stats = reply.and_then(|r| match r {
                    Reply::Stats(s) => Ok(s),
                    other => Err(unexpected(other)),
                });
                (server, stats)
            })
            .collect()
    }

    /// `verbosity LEVEL` on every server.
    pub async fn verbosity(&self, level: u32) -> PerServer<()> {
        self.on_all(
            format!("verbosity {level}\r\n").as_bytes(),
            Some(ReplyKind::Ok),
        )
        .await
        .into_iter()
        .map(|(server, reply)| (server, reply.map(|_| ())))
        .collect()
    }

    /// The address of the server that owns `key` right now (after failover).
    pub fn server_for(&self, key: &[u8]) -> Result<String> {
        let route = self.route(key, 1)?;
        Ok(self.inner.servers[route[0]].address.clone())
    }

    /// The addresses of the servers marked dead right now.
    pub fn dead_servers(&self) -> Vec<String> {
        let now = Instant::now();
        self.inner
            .servers
            .iter()
            .filter(|s| s.dead_at(now))
            .map(|s| s.address.clone())
            .collect()
    }
}

fn ring_of(specs: &[ServerSpec]) -> Ring {
    Ring::new(
        &specs
            .iter()
            .map(ServerSpec::ring_server)
            .collect::<Vec<_>>(),
    )
}

fn unexpected(reply: Reply) -> Error {
    Error::Protocol(format!("reply of the wrong kind: {reply:?}"))
}
