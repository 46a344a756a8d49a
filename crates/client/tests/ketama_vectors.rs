//! The ring against placements recorded from pylibmc (libmemcached, ketama_weighted) and from
//! nutcracker (hash md5, distribution ketama): 1 to 25 servers, unequal weights, servers on the
//! default port 11211 (whose ketama name drops the port), twemproxy server names, keys with high
//! bytes (0x80 and up), and keys past the last point of the ring. Regenerate with
//! `tests/data/generate_vectors.py`.

use ferrocache_client::ring::{key_hash, Ring};
use ferrocache_client::ServerSpec;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A recorded scenario: its name, the servers, and each key with the index of its owner.
struct Scenario {
    name: String,
    servers: Vec<ServerSpec>,
    keys: Vec<(Vec<u8>, usize)>,
    /// Servers the recording tool had ejected (dead) when the keys were placed.
    ejected: Vec<usize>,
}

fn scenarios() -> Vec<Scenario> {
    let text = include_str!("data/ketama_vectors.txt");
    let mut scenarios: Vec<Scenario> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        match fields[..] {
            ["#", "scenario", name] => scenarios.push(Scenario {
                name: name.to_string(),
                servers: Vec::new(),
                keys: Vec::new(),
                ejected: Vec::new(),
            }),
            ["server", _, ..] => {
                // "host:port:weight [name]", read the way users write it.
                let spec = ServerSpec::parse(&fields[2..].join(" ")).expect("server spec");
                scenarios.last_mut().expect("scenario").servers.push(spec);
            }
            ["ejected", index] => scenarios
                .last_mut()
                .expect("scenario")
                .ejected
                .push(index.parse().expect("index")),
            ["key", key, owner] => scenarios
                .last_mut()
                .expect("scenario")
                .keys
                .push((hex(key), owner.parse().expect("index"))),
            _ => {}
        }
    }
    scenarios
}

#[test]
fn placement_matches_libmemcached_and_nutcracker() {
    let scenarios = scenarios();
    let names: Vec<&str> = scenarios.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "pylibmc-ketama_weighted-25",
        "pylibmc-ketama_weighted-weights-1-2-3-5",
        "pylibmc-ketama_weighted-default-port",
        "nutcracker-md5-ketama-1-2-3-5",
        "nutcracker-md5-ketama-25",
        "nutcracker-md5-ketama-default-port-and-names",
        "nutcracker-md5-ketama-eject-1-2-3-5-without-1",
    ] {
        assert!(names.contains(&expected), "missing scenario {expected}");
    }
    for scenario in &scenarios {
        // With servers ejected, the ring is rebuilt over the live ones (as the client does).
        let live: Vec<usize> = (0..scenario.servers.len())
            .filter(|i| !scenario.ejected.contains(i))
            .collect();
        let ring_servers: Vec<_> = live
            .iter()
            .map(|&i| scenario.servers[i].ring_server())
            .collect();
        let ring = Ring::new(&ring_servers);
        let last_point = ring.points().last().expect("points").0;
        assert!(scenario.keys.len() >= 300, "{}", scenario.name);
        assert!(
            scenario.keys.iter().any(|(k, _)| key_hash(k) > last_point),
            "{}: no key past the last point",
            scenario.name
        );
        assert!(
            scenario
                .keys
                .iter()
                .any(|(k, _)| k.iter().any(|&b| b >= 0x80)),
            "{}: no key with high bytes",
            scenario.name
        );
        for (key, owner) in &scenario.keys {
            assert_eq!(
                ring.server_for(key).map(|i| live[i]),
                Some(*owner),
                "{}: key {:?}",
                scenario.name,
                String::from_utf8_lossy(key)
            );
        }
    }
}

#[test]
fn the_vectors_would_catch_a_wrong_name() {
    // The same placements with the port kept on 11211 (a common mistake) disagree.
    let scenario = scenarios()
        .into_iter()
        .find(|s| s.name == "pylibmc-ketama_weighted-default-port")
        .expect("scenario");
    let wrong: Vec<_> = scenario
        .servers
        .iter()
        .map(|s| {
            let mut named = s.clone();
            named.name = Some(format!("{}:{}", s.host, s.port));
            named.ring_server()
        })
        .collect();
    let ring = Ring::new(&wrong);
    let disagree = scenario
        .keys
        .iter()
        .filter(|(k, owner)| ring.server_for(k) != Some(*owner))
        .count();
    assert!(disagree > 30, "only {disagree} keys moved");
}

#[test]
fn ejection_rebuilds_the_ring_rather_than_skipping_points() {
    // nutcracker re-weights the live servers when one is ejected. Merely walking past the dead
    // server's points on the full ring (the obvious shortcut) puts some keys elsewhere.
    let scenario = scenarios()
        .into_iter()
        .find(|s| !s.ejected.is_empty())
        .expect("an ejection scenario");
    let full: Vec<_> = scenario
        .servers
        .iter()
        .map(ServerSpec::ring_server)
        .collect();
    let full = Ring::new(&full);
    let skipping = |key: &[u8]| {
        full.servers_for(key, scenario.servers.len())
            .into_iter()
            .find(|i| !scenario.ejected.contains(i))
    };
    let disagree = scenario
        .keys
        .iter()
        .filter(|(k, owner)| skipping(k) != Some(*owner))
        .count();
    assert!(disagree > 0, "the scenario cannot tell the two apart");
}
