//! The client against several real servers on loopback: every command, pipelining, fan-out,
//! failover with a server killed or stalled mid-run, replication, and warm-up when a fourth server
//! joins three.
//!
//! The servers are Debian's memcached, the reference; `CLIENT_TEST_SERVER=ferrocached` runs the
//! same tests against ours.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ferrocache_client::{
    blocking, Client, Config, Error, Failover, ServerSpec, StoreCommand, StoreStatus,
};
use ferrocache_testkit::{Flavor, Server};

fn flavor() -> Flavor {
    match std::env::var("CLIENT_TEST_SERVER").as_deref() {
        Err(_) | Ok("memcached") => Flavor::Memcached,
        Ok("ferrocached") => Flavor::Ferrocached,
        Ok(other) => panic!("CLIENT_TEST_SERVER must be memcached or ferrocached, not {other}"),
    }
}

fn spec(server: &Server) -> ServerSpec {
    ServerSpec::parse(&format!("127.0.0.1:{}", server.port())).expect("address")
}

fn servers(n: usize) -> Vec<Server> {
    (0..n).map(|_| Server::start(flavor(), &[])).collect()
}

fn stat(server: &Server, name: &str) -> u64 {
    let stats = server.connect().request("stats\r\n", "END\r\n");
    let prefix = format!("STAT {name} ");
    stats
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no stat {name}"))
}

fn config(servers: &[Server]) -> Config {
    let mut config = Config::new(servers.iter().map(spec).collect());
    config.retry_interval = Duration::from_secs(60);
    config.failure_limit = 1;
    config
}

fn keys(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("key:{i}").into_bytes()).collect()
}

/// Sets every key to itself, all requests in flight at once.
async fn set_all_at_once(c: &Client, keys: &[Vec<u8>]) {
    let sets = keys.iter().map(|k| {
        let c = c.clone();
        async move { c.set(k, k, 0, 0).await }
    });
    for stored in futures::future::join_all(sets).await {
        assert!(stored.expect("set"));
    }
}

fn curr_items(server: &Server) -> u64 {
    stat(server, "curr_items")
}

#[test]
fn every_command_round_trips() {
    let s = servers(1);
    let c = blocking::Client::new(config(&s)).expect("runtime");
    assert!(c.set(b"k", b"v", 5, 0).expect("set"));
    let v = c.get(b"k").expect("get").expect("hit");
    assert_eq!((v.data.as_slice(), v.flags, v.cas), (&b"v"[..], 5, None));
    let cas = c
        .gets(b"k")
        .expect("gets")
        .expect("hit")
        .cas
        .expect("cas id");
    assert_eq!(
        c.store(StoreCommand::Cas(cas + 1), b"k", b"x", 0, 0)
            .expect("cas"),
        StoreStatus::Exists
    );
    assert_eq!(
        c.store(StoreCommand::Cas(cas), b"k", b"x", 0, 0)
            .expect("cas"),
        StoreStatus::Stored
    );
    assert_eq!(
        c.store(StoreCommand::Add, b"k", b"y", 0, 0).expect("add"),
        StoreStatus::NotStored
    );
    assert_eq!(
        c.store(StoreCommand::Append, b"k", b"z", 0, 0)
            .expect("append"),
        StoreStatus::Stored
    );
    assert_eq!(c.get(b"k").expect("get").expect("hit").data, b"xz");
    assert_eq!(c.incr(b"n", 1).expect("incr"), None);
    c.set(b"n", b"10", 0, 0).expect("set");
    assert_eq!(c.incr(b"n", 5).expect("incr"), Some(15));
    assert_eq!(c.decr(b"n", 20).expect("decr"), Some(0));
    assert!(c.touch(b"n", 100).expect("touch"));
    assert!(c.gat(b"n", 100).expect("gat").is_some());
    assert!(c.delete(b"n").expect("delete"));
    assert!(!c.delete(b"n").expect("delete again"));
    assert!(matches!(
        c.set(b"bad key", b"v", 0, 0),
        Err(Error::InvalidKey)
    ));
    let big = vec![0u8; 2 * 1024 * 1024];
    assert!(matches!(c.set(b"big", &big, 0, 0), Err(Error::Server(_))));
    assert!(c
        .set(b"after", b"ok", 0, 0)
        .expect("the connection survives errors"));
    assert!(c.version()[0]
        .1
        .as_ref()
        .expect("version")
        .starts_with("1.6"));
    let stats = c.stats(None);
    assert!(stats[0]
        .1
        .as_ref()
        .expect("stats")
        .iter()
        .any(|(k, _)| k == "cmd_get"));
    assert!(c.flush_all(0)[0].1.is_ok());
    assert!(c.get(b"after").expect("get").is_none());
}

#[tokio::test]
async fn multi_get_fans_out_to_the_owners() {
    let s = servers(3);
    let c = Client::new(config(&s));
    let keys = keys(300);
    for k in &keys {
        assert!(c.set(k, k, 0, 0).await.expect("set"));
    }
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let got = c.get_multi(&refs).await.expect("multi-get");
    assert_eq!(got.len(), 300);
    assert!(keys.iter().all(|k| got[k].data == *k));
    let held: Vec<u64> = s.iter().map(curr_items).collect();
    assert_eq!(held.iter().sum::<u64>(), 300);
    assert!(
        held.iter().all(|&n| n > 50),
        "ketama spreads keys: {held:?}"
    );
}

#[tokio::test]
async fn a_killed_server_is_skipped_and_its_keys_remapped() {
    let mut s = servers(3);
    let c = Client::new(config(&s));
    let keys = keys(200);
    for k in &keys {
        c.set(k, b"v", 0, 0).await.expect("set");
    }
    let victim = format!("127.0.0.1:{}", s[2].port());
    let lost: Vec<&Vec<u8>> = keys
        .iter()
        .filter(|k| c.server_for(k).expect("owner") == victim)
        .collect();
    assert!(!lost.is_empty());
    drop(s.remove(2));
    // The first request to the dead server fails and marks it dead ...
    let first = c.get(lost[0]).await;
    assert!(first.is_ok() || matches!(first, Err(Error::Io { .. }) | Err(Error::Timeout(_))));
    // ... then its keys go to the next live servers, and writes and reads work again.
    for k in &lost {
        assert_ne!(c.server_for(k).expect("owner"), victim);
        assert!(c.set(k, b"again", 0, 0).await.expect("set after failover"));
        assert_eq!(c.get(k).await.expect("get").expect("hit").data, b"again");
    }
    assert!(c.stats_counters().failovers.load(Ordering::Relaxed) > 0);

    // With a fixed ring the same situation is an error.
    let mut fixed = config(&s);
    fixed
        .servers
        .push(ServerSpec::parse(&victim).expect("address"));
    fixed.failover = Failover::Fail;
    let c = Client::new(fixed);
    let mut errors = 0;
    for k in &keys {
        if c.get(k).await.is_err() {
            errors += 1;
        }
    }
    assert!(errors > 0, "keys of the dead server fail with a fixed ring");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_under_load_costs_a_few_errors_then_none() {
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::Arc;
    let mut s = servers(3);
    let mut cfg = config(&s);
    cfg.failure_limit = 2;
    let c = Client::new(cfg);
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let after_kill = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (c, stop, killed, after_kill) =
                (c.clone(), stop.clone(), killed.clone(), after_kill.clone());
            tokio::spawn(async move {
                let mut errors = Vec::new();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("load:{w}:{}", i % 50).into_bytes();
                    i += 1;
                    let result = match c.set(&key, &key, 0, 0).await {
                        Ok(_) => c.get(&key).await.map(|v| v.map(|v| v.data)),
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(Some(data)) => assert_eq!(data, key),
                        // The set went to the server killed before the get: the get goes to
                        // the key's new owner, which has not seen it.
                        Ok(None) => {
                            assert!(killed.load(Ordering::Relaxed), "a miss before the kill")
                        }
                        Err(e) => errors.push(e),
                    }
                    if killed.load(Ordering::Relaxed) {
                        after_kill.fetch_add(1, Ordering::Relaxed);
                    }
                }
                errors
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let victim = format!("127.0.0.1:{}", s[2].port());
    killed.store(true, Ordering::Relaxed);
    drop(s.remove(2));
    let deadline = Instant::now() + Duration::from_secs(10);
    while after_kill.load(Ordering::Relaxed) < 2000 {
        assert!(Instant::now() < deadline, "the load stalled after the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for worker in workers {
        let finished = tokio::time::timeout(Duration::from_secs(10), worker).await;
        errors.extend(finished.expect("no request hangs").expect("worker"));
    }
    // Only the requests in flight on the dead server, and those that reached it before the
    // second failure ejected it, fail; all as I/O errors.
    assert!(
        errors.iter().all(|e| matches!(e, Error::Io { .. })),
        "{errors:?}"
    );
    assert!(errors.len() <= 16, "{} errors: {errors:?}", errors.len());
    assert_eq!(c.dead_servers(), vec![victim]);
    assert_eq!(c.stats_counters().ejections.load(Ordering::Relaxed), 1);
    // Then none: every key of the load is written and read on the live servers.
    for w in 0..8 {
        for i in 0..50 {
            let key = format!("load:{w}:{i}").into_bytes();
            assert!(c
                .set(&key, b"after", 0, 0)
                .await
                .expect("set after the ejection"));
            let got = c.get(&key).await.expect("get after the ejection");
            assert_eq!(got.expect("hit").data, b"after");
        }
    }
}

#[tokio::test]
async fn replicas_survive_a_dead_primary() {
    let mut s = servers(3);
    let mut cfg = config(&s);
    cfg.replicas = 2;
    let c = Client::new(cfg);
    let keys = keys(100);
    for k in &keys {
        c.set(k, k, 0, 0).await.expect("set");
    }
    assert_eq!(
        s.iter().map(curr_items).sum::<u64>(),
        200,
        "two copies of each key"
    );
    drop(s.remove(0));
    for k in &keys {
        let v = c.get(k).await.expect("get").expect("a replica answers");
        assert_eq!(&v.data, k);
    }
}

#[tokio::test]
async fn replicas_survive_a_primary_that_comes_back_empty() {
    let s = servers(3);
    let mut cfg = config(&s);
    cfg.replicas = 2;
    let c = Client::new(cfg);
    let keys = keys(100);
    for k in &keys {
        c.set(k, k, 0, 0).await.expect("set");
    }
    // A primary that restarts comes back empty (memcached keeps nothing on disk): flush it.
    let primary = format!("127.0.0.1:{}", s[0].port());
    let on_primary: Vec<&Vec<u8>> = keys
        .iter()
        .filter(|k| c.server_for(k).expect("owner") == primary)
        .collect();
    assert!(!on_primary.is_empty());
    assert_eq!(s[0].connect().line("flush_all\r\n"), "OK\r\n");
    // Its keys are still read, from the next replica ...
    let refs: Vec<&[u8]> = on_primary.iter().map(|k| k.as_slice()).collect();
    let got = c.get_multi(&refs).await.expect("multi-get");
    assert_eq!(got.len(), on_primary.len(), "every key read from a replica");
    for k in &on_primary {
        assert_eq!(&c.get(k).await.expect("get").expect("hit").data, *k);
    }
    // ... and copied back to the primary, so the key has its two copies again.
    let mut conn = s[0].connect();
    for k in &on_primary {
        let mut request = b"get ".to_vec();
        request.extend_from_slice(k);
        request.extend_from_slice(b"\r\n");
        let reply = conn.request(&request, "END\r\n");
        assert!(reply.starts_with("VALUE"), "not repaired: {reply:?}");
    }
    // A key that is nowhere is still a miss.
    assert!(c.get(b"never-set").await.expect("get").is_none());
}

#[tokio::test]
async fn a_miss_stays_a_miss_while_a_later_replica_is_down() {
    let mut s = servers(3);
    let mut cfg = config(&s);
    cfg.replicas = 2;
    // Not ejected during the test: every read of a key whose second replica is the dead server
    // gets the primary's miss, then an error from the dead one.
    cfg.failure_limit = 1000;
    let c = Client::new(cfg);
    let dead = format!("127.0.0.1:{}", s[2].port());
    drop(s.remove(2));
    let absent: Vec<Vec<u8>> = keys(60)
        .into_iter()
        .filter(|k| c.server_for(k).expect("owner") != dead)
        .collect();
    for k in &absent {
        let got = c.get(k).await;
        assert!(
            matches!(got, Ok(None)),
            "{:?}: {got:?}",
            String::from_utf8_lossy(k)
        );
    }
    let refs: Vec<&[u8]> = absent.iter().map(Vec::as_slice).collect();
    assert!(c.get_multi(&refs).await.expect("multi-get").is_empty());
}

#[tokio::test]
async fn warm_up_keeps_the_hit_ratio_when_a_node_joins() {
    let s = servers(4);
    let three: Vec<ServerSpec> = s[..3].iter().map(spec).collect();
    let four: Vec<ServerSpec> = s.iter().map(spec).collect();
    let old = Client::new(Config::new(three.clone()));
    let keys = keys(1000);
    for k in &keys {
        old.set(k, k, 0, 0).await.expect("set");
    }
    async fn hit_ratio(c: &Client, keys: &[Vec<u8>]) -> f64 {
        let mut hits = 0;
        for k in keys {
            if c.get(k).await.expect("get").is_some() {
                hits += 1;
            }
        }
        hits as f64 / keys.len() as f64
    }
    let before = hit_ratio(&old, &keys).await;
    let cold = hit_ratio(&Client::new(Config::new(four.clone())), &keys).await;
    let mut warm_config = Config::new(four.clone());
    warm_config.previous_servers = Some(three);
    let warm = Client::new(warm_config);
    let during = hit_ratio(&warm, &keys).await;
    let after = hit_ratio(&Client::new(Config::new(four)), &keys).await;
    println!("hit ratio before {before:.3}, cold after growth {cold:.3}, warm-up {during:.3}, after warm-up {after:.3}");
    assert_eq!(before, 1.0);
    assert!(
        cold < 0.85,
        "without warm-up about a quarter of the keys move: {cold}"
    );
    assert_eq!(
        during, 1.0,
        "warm-up serves moved keys from their old owner"
    );
    assert_eq!(after, 1.0, "moved keys now live on the new node");
    assert!(curr_items(&s[3]) > 150);
}

#[tokio::test]
async fn concurrent_requests_share_one_pipelined_connection() {
    let s = servers(1);
    let mut cfg = config(&s);
    cfg.pool_size = 1;
    let c = Client::new(cfg);
    let before = stat(&s[0], "total_connections");
    let keys = keys(2000);
    set_all_at_once(&c, &keys).await;
    let gets = keys.iter().map(|k| {
        let c = c.clone();
        async move { (k, c.get(k).await) }
    });
    for (k, got) in futures::future::join_all(gets).await {
        assert_eq!(
            &got.expect("get").expect("hit").data,
            k,
            "replies matched to requests"
        );
    }
    // 4000 requests in flight at once went over a single connection.
    assert_eq!(c.stats_counters().connects.load(Ordering::Relaxed), 1);
    // (+1: the connection that asks for the stats.)
    assert_eq!(stat(&s[0], "total_connections") - before, 2);
}

/// Many tasks on a multi-threaded runtime, each waiting for its set before its get: replies
/// often arrive before the reader task has taken their requests' announcements from the writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_matched_on_a_multi_threaded_runtime() {
    let s = servers(3);
    let c = Client::new(config(&s));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let c = c.clone();
            tokio::spawn(async move {
                for i in 0..500 {
                    let key = format!("mt:{w}:{}", i % 50).into_bytes();
                    assert!(c.set(&key, &key, 0, 0).await.expect("set"));
                    let got = c.get(&key).await.expect("get");
                    assert_eq!(got.expect("hit right after the set").data, key);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    assert!(c.dead_servers().is_empty());
}

#[tokio::test]
async fn the_pool_spreads_concurrent_requests_over_its_connections() {
    let s = servers(1);
    let mut cfg = config(&s);
    cfg.pool_size = 3;
    let c = Client::new(cfg);
    let before = stat(&s[0], "total_connections");
    let keys = keys(300);
    set_all_at_once(&c, &keys).await;
    // Every slot of the pool was used, and no more connections than that were opened.
    assert_eq!(c.stats_counters().connects.load(Ordering::Relaxed), 3);
    assert_eq!(stat(&s[0], "total_connections") - before, 3 + 1);
}

#[tokio::test]
async fn the_connect_timeout_bounds_a_connect_that_hangs() {
    // A listener whose accept queue is full: the kernel drops further SYNs, so a connect neither
    // succeeds nor fails until TCP gives up (minutes).
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let _queued = std::net::TcpStream::connect(addr).expect("fills the accept queue");
    let mut cfg = Config::new(vec![ServerSpec::parse(&addr.to_string()).expect("spec")]);
    cfg.connect_timeout = Duration::from_millis(200);
    cfg.request_timeout = Duration::from_secs(30);
    let c = Client::new(cfg);
    let started = Instant::now();
    let got = tokio::time::timeout(Duration::from_secs(5), c.get(b"k"))
        .await
        .expect("the connect timeout ends the wait");
    assert!(matches!(got, Err(Error::Timeout(_))), "{got:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_stalled_server_times_out_is_ejected_and_comes_back() {
    let s = servers(3);
    // Two failures eject: the first timeout is the caller's error (and costs one timeout, not
    // a second attempt at the same server).
    let mut strict = config(&s);
    strict.failure_limit = 2;
    strict.request_timeout = Duration::from_millis(300);
    let strict = Client::new(strict);
    let mut cfg = config(&s);
    cfg.request_timeout = Duration::from_millis(300);
    cfg.retry_interval = Duration::from_millis(500);
    let c = Client::new(cfg);
    let victim = format!("127.0.0.1:{}", s[1].port());
    let key = keys(500)
        .into_iter()
        .find(|k| c.server_for(k).expect("owner") == victim)
        .expect("a key of the victim");
    assert!(c.set(&key, b"v", 0, 0).await.expect("set"));

    s[1].signal("STOP");
    let first = strict.get(&key).await;
    assert!(matches!(first, Err(Error::Timeout(_))), "{first:?}");
    assert!(
        strict.dead_servers().is_empty(),
        "one failure of two is not yet dead"
    );
    // The second failure in a row marks it dead, and the read goes to the key's next server.
    let second = strict.get(&key).await;
    assert!(matches!(second, Ok(None)), "{second:?}");
    assert_eq!(strict.dead_servers(), vec![victim.clone()], "two in a row");
    let started = Instant::now();
    // The request times out, the server is ejected (failure limit 1) and the read goes to the
    // key's next server, which has never seen it: a miss, not an error.
    let stalled = c.get(&key).await;
    assert!(matches!(stalled, Ok(None)), "{stalled:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "waited for the timeout: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(2),
        "the timeout bounds the wait: {waited:?}"
    );
    assert_eq!(c.dead_servers(), vec![victim.clone()]);
    assert_ne!(
        c.server_for(&key).expect("owner"),
        victim,
        "remapped while dead"
    );
    assert!(c
        .set(&key, b"elsewhere", 0, 0)
        .await
        .expect("set on the next server"));

    s[1].signal("CONT");
    // After the retry interval the server is tried again and takes its keys back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.server_for(&key).expect("owner") != victim {
        assert!(Instant::now() < deadline, "the server never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(c.dead_servers().is_empty());
    assert_eq!(c.get(&key).await.expect("get").expect("hit").data, b"v");
    assert_eq!(c.stats_counters().ejections.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn multi_get_of_many_keys_on_one_server_is_chunked_and_complete() {
    let s = servers(1);
    let c = Client::new(config(&s));
    let keys: Vec<Vec<u8>> = (0..1000)
        .map(|i| format!("{i:0>240}").into_bytes())
        .collect();
    for k in keys.iter().step_by(2) {
        c.set(k, b"x", 0, 0).await.expect("set");
    }
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let got = c.gets_multi(&refs).await.expect("gets_multi");
    assert_eq!(got.len(), 500);
    assert!(got.values().all(|v| v.cas.is_some()));
}

#[test]
fn a_client_outlives_the_runtime_that_opened_its_connections() {
    let s = servers(1);
    let mut cfg = config(&s);
    cfg.pool_size = 1;
    let c = Client::new(cfg);
    let first = tokio::runtime::Runtime::new().expect("runtime");
    assert!(first.block_on(c.set(b"k", b"v", 0, 0)).expect("set"));
    // The connection's tasks die with this runtime; the pool must notice and reconnect.
    drop(first);
    let second = tokio::runtime::Runtime::new().expect("runtime");
    let got = second
        .block_on(c.get(b"k"))
        .expect("get on a new connection");
    assert_eq!(got.expect("hit").data, b"v");
    assert_eq!(c.stats_counters().connects.load(Ordering::Relaxed), 2);
    assert_eq!(c.stats_counters().reconnects.load(Ordering::Relaxed), 1);
}
