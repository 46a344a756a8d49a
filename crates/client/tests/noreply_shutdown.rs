//! `noreply` requests and `shutdown` against real servers on loopback: Debian's memcached (the
//! reference) by default, ferrocached with `CLIENT_TEST_SERVER=ferrocached`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ferrocache_client::{blocking, Client, Config, Error, ServerSpec, StoreCommand};
use ferrocache_testkit::{Flavor, Server};
use futures::future::join_all;

fn flavor() -> Flavor {
    match std::env::var("CLIENT_TEST_SERVER").as_deref() {
        Err(_) | Ok("memcached") => Flavor::Memcached,
        Ok("ferrocached") => Flavor::Ferrocached,
        Ok(other) => panic!("CLIENT_TEST_SERVER must be memcached or ferrocached, not {other}"),
    }
}

fn config(servers: &[&Server]) -> Config {
    Config::new(
        servers
            .iter()
            .map(|s| ServerSpec::parse(&format!("127.0.0.1:{}", s.port())).expect("address"))
            .collect(),
    )
}

#[test]
fn noreply_writes_are_seen_by_later_reads() {
    let servers: Vec<Server> = (0..3).map(|_| Server::start(flavor(), &[])).collect();
    let c = blocking::Client::new(config(&servers.iter().collect::<Vec<_>>())).expect("runtime");
    let keys: Vec<String> = (0..60).map(|i| format!("nr:{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        c.set_noreply(key.as_bytes(), format!("v{i}").as_bytes(), i as u32, 0)
            .expect("set noreply");
    }
    let wanted: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let found = c.get_multi(&wanted).expect("get_multi");
    assert_eq!(found.len(), keys.len(), "every noreply set is stored");
    for (i, key) in keys.iter().enumerate() {
        let value = &found[key.as_bytes()];
        assert_eq!(value.data, format!("v{i}").as_bytes());
        assert_eq!(value.flags, i as u32);
    }

    // Every other command with noreply, each followed by a read that sees its effect.
    c.store_noreply(StoreCommand::Add, b"nr:0", b"no", 0, 0)
        .expect("add");
    c.store_noreply(StoreCommand::Append, b"nr:0", b"-end", 0, 0)
        .expect("append");
    c.store_noreply(StoreCommand::Prepend, b"nr:0", b"start-", 0, 0)
        .expect("prepend");
    assert_eq!(
        c.get(b"nr:0").expect("get").expect("hit").data,
        b"start-v0-end"
    );
    c.store_noreply(StoreCommand::Replace, b"nr:0", b"replaced", 0, 0)
        .expect("replace");
    let cas = c
        .gets(b"nr:0")
        .expect("gets")
        .expect("hit")
        .cas
        .expect("id");
    c.store_noreply(StoreCommand::Cas(cas), b"nr:0", b"swapped", 0, 0)
        .expect("cas");
    assert_eq!(c.get(b"nr:0").expect("get").expect("hit").data, b"swapped");
    c.set(b"n", b"10", 0, 0).expect("set");
    c.incr_noreply(b"n", 5).expect("incr");
    c.decr_noreply(b"n", 3).expect("decr");
    assert_eq!(c.get(b"n").expect("get").expect("hit").data, b"12");
    c.touch_noreply(b"n", -1).expect("touch");
    assert!(c.get(b"n").expect("get").is_none(), "touched to expire");
    c.delete_noreply(b"nr:1").expect("delete");
    assert!(c.get(b"nr:1").expect("get").is_none());
    // Outcomes that memcached would answer with NOT_STORED, NOT_FOUND or CLIENT_ERROR stay
    // silent, and the connection carries on in step.
    c.store_noreply(StoreCommand::Add, b"nr:2", b"x", 0, 0)
        .expect("add of an existing key");
    c.incr_noreply(b"nr:2", 1).expect("incr of a non-number");
    c.delete_noreply(b"absent")
        .expect("delete of an absent key");
    assert_eq!(c.get(b"nr:2").expect("get").expect("hit").data, b"v2");
    assert!(matches!(
        c.set_noreply(b"bad key", b"v", 0, 0),
        Err(Error::InvalidKey)
    ));

    for (server, result) in c.flush_all_noreply(0) {
        result.unwrap_or_else(|e| panic!("flush_all noreply on {server}: {e}"));
    }
    assert!(c.get_multi(&wanted).expect("get_multi").is_empty());
    let stats = c.stats_counters();
    assert_eq!(
        stats.reconnects.load(Ordering::Relaxed),
        0,
        "no connection was dropped (a stray reply closes one)"
    );
    assert!(stats.connects.load(Ordering::Relaxed) >= 3);
}

/// With several connections per server, a read right after a noreply write must not overtake it
/// on another connection (the server answers each connection in order, not the pool).
#[test]
fn a_read_after_a_noreply_write_sees_it_whatever_the_pool_size() {
    let server = Server::start(flavor(), &[]);
    let mut config = config(&[&server]);
    config.pool_size = 4;
    let c = blocking::Client::new(config).expect("runtime");
    c.set(b"ctr", b"0", 0, 0).expect("set");
    for i in 1..=300u64 {
        c.incr_noreply(b"ctr", 1).expect("incr noreply");
        let value = c.get(b"ctr").expect("get").expect("hit").data;
        assert_eq!(
            value,
            i.to_string().as_bytes(),
            "read {i} overtook its incr"
        );
        c.set_noreply(b"last", i.to_string().as_bytes(), 0, 0)
            .expect("set noreply");
        let found = c.get_multi(&[b"last", b"ctr"]).expect("get_multi");
        assert_eq!(found[b"last".as_slice()].data, i.to_string().as_bytes());
    }
}

/// Many tasks share one pipelined connection; every third request is noreply. Each replying
/// request has an answer only it can get (`incr` of its own counter), so a noreply request that
/// took a reply slot, or a reply read for the wrong request, fails the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noreply_requests_mixed_into_a_pipeline_keep_replies_matched() {
    let server = Server::start(flavor(), &[]);
    let mut config = config(&[&server]);
    config.pool_size = 1;
    let client = Client::new(config);
    const N: u64 = 600;
    for i in 0..N {
        client
            .set(
                format!("ctr:{i}").as_bytes(),
                (i * 10).to_string().as_bytes(),
                0,
                0,
            )
            .await
            .expect("set");
    }
    for round in 1..=3u64 {
        let requests = (0..N).map(|i| {
            let client = client.clone();
            async move {
                let key = format!("ctr:{i}");
                match i % 3 {
                    0 => {
                        client
                            .incr_noreply(key.as_bytes(), 1)
                            .await
                            .expect("incr noreply");
                    }
                    1 => {
                        let got = client.incr(key.as_bytes(), 1).await.expect("incr");
                        assert_eq!(got, Some(i * 10 + round), "reply of {key}");
                    }
                    _ => {
                        client
                            .set_noreply(format!("side:{i}").as_bytes(), b"x", 0, 0)
                            .await
                            .expect("set noreply");
                        let got = client.get(key.as_bytes()).await.expect("get");
                        let expected = (i * 10 + round - 1).to_string();
                        assert_eq!(got.expect("hit").data, expected.as_bytes(), "{key}");
                        client
                            .incr_noreply(key.as_bytes(), 1)
                            .await
                            .expect("incr noreply");
                    }
                }
            }
        });
        join_all(requests.map(tokio::spawn))
            .await
            .into_iter()
            .for_each(|r| r.expect("task"));
    }
    let keys: Vec<String> = (0..N).map(|i| format!("ctr:{i}")).collect();
    let wanted: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let found = client.get_multi(&wanted).await.expect("get_multi");
    for (i, key) in keys.iter().enumerate() {
        let expected = (i as u64 * 10 + 3).to_string();
        assert_eq!(found[key.as_bytes()].data, expected.as_bytes(), "{key}");
    }
    assert_eq!(
        client.stats_counters().connects.load(Ordering::Relaxed),
        1,
        "everything went over the one connection"
    );
}

#[test]
fn shutdown_without_dash_a_is_refused_with_a_typed_error() {
    let mut server = Server::start(flavor(), &[]);
    let c = blocking::Client::new(config(&[&server])).expect("runtime");
    c.set(b"k", b"v", 0, 0).expect("set");
    let results = c.shutdown();
    assert_eq!(results.len(), 1);
    assert!(
        matches!(results[0].1, Err(Error::ShutdownNotEnabled)),
        "{:?}",
        results[0].1
    );
    assert_eq!(
        server.wait_exit(Duration::from_millis(300)),
        None,
        "still up"
    );
    assert_eq!(c.get(b"k").expect("get").expect("hit").data, b"v");
}

#[test]
fn shutdown_with_dash_a_stops_every_server() {
    let mut servers: Vec<Server> = (0..2).map(|_| Server::start(flavor(), &["-A"])).collect();
    let c = blocking::Client::new(config(&servers.iter().collect::<Vec<_>>())).expect("runtime");
    // A pooled connection in use before: shutdown must not take it, nor leave it usable.
    c.set(b"k", b"v", 0, 0).expect("set");
    for (server, result) in c.shutdown() {
        result.unwrap_or_else(|e| panic!("shutdown of {server}: {e}"));
    }
    for server in &mut servers {
        assert!(
            server.wait_exit(Duration::from_secs(10)).is_some(),
            "the server process exited"
        );
    }
    assert!(c.get(b"k").is_err(), "nothing answers any more");
}
