//! The client against several real ferrocached on loopback: fan-out, failover with a server
//! killed mid-run, replication, and warm-up when a fourth server joins three.

use std::time::Duration;

use ferrocache_client::{
    blocking, Client, Config, Error, Failover, ServerSpec, StoreCommand, StoreStatus,
};
use ferrocache_testkit::Server;

fn spec(server: &Server) -> ServerSpec {
    ServerSpec::parse(&format!("127.0.0.1:{}", server.port())).expect("address")
}

fn servers(n: usize) -> Vec<Server> {
    (0..n).map(|_| Server::ferrocached(&[])).collect()
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

fn curr_items(server: &Server) -> u64 {
    let stats = server.connect().request("stats\r\n", "END\r\n");
    stats
        .lines()
        .find_map(|l| l.strip_prefix("STAT curr_items "))
        .and_then(|v| v.trim().parse().ok())
        .expect("curr_items")
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
    assert!(
        c.stats_counters()
            .failovers
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );

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
