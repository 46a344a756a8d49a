//! A third-party Rust client (the `memcache` crate) against ferrocached: it speaks the text
//! protocol through its own code, so this checks our replies the way real applications parse them.

use ferrocache_testkit::Server;

#[test]
fn memcache_crate_round_trips() {
    let server = Server::ferrocached(&[]);
    let url = format!(
        "memcache://127.0.0.1:{}?timeout=10&protocol=ascii",
        server.port()
    );
    let client = memcache::Client::connect(url).expect("connect");

    client.set("greeting", "hello", 0).expect("set");
    let value: Option<String> = client.get("greeting").expect("get");
    assert_eq!(value.as_deref(), Some("hello"));

    client.set("n", 41u64, 300).expect("set number");
    assert_eq!(client.increment("n", 1).expect("incr"), 42);
    assert_eq!(client.decrement("n", 50).expect("decr"), 0);

    // The crate reports NOT_STORED as Ok or Err depending on version; the value must not change.
    let _ = client.add("greeting", "again", 0);
    client.append("greeting", ", world").expect("append");
    client.prepend("greeting", "oh ").expect("prepend");
    let value: Option<String> = client.get("greeting").expect("get");
    assert_eq!(value.as_deref(), Some("oh hello, world"));

    client.set("a", "1", 0).expect("set a");
    client.set("b", "2", 0).expect("set b");
    let many: std::collections::HashMap<String, String> =
        client.gets(&["a", "b", "missing"]).expect("multi-get");
    assert_eq!(many.len(), 2);
    assert_eq!(many["b"], "2");

    assert!(client.touch("a", 100).expect("touch"));
    assert!(!client.touch("missing", 100).expect("touch miss"));
    assert!(client.delete("a").expect("delete"));
    assert!(!client.delete("a").expect("delete again"));

    // The crate's text-protocol stats parser returns no fields even against memcached itself, so
    // only the round trip is checked here.
    assert_eq!(client.stats().expect("stats").len(), 1);

    client.flush().expect("flush_all");
    let gone: Option<String> = client.get("b").expect("get after flush");
    assert_eq!(gone, None);
    assert!(client.version().expect("version")[0].1.starts_with("1.6"));
}
