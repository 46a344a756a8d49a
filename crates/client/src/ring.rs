//! The ketama continuum, point for point as libmemcached's `MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED`
//! and twemproxy's `distribution: ketama` with `hash: md5` build it, so that this client,
//! pylibmc/libmemcached and nutcracker send every key to the same server.
//!
//! - A server's name is `host` when its port is 11211, else `host:port` (or an explicit name).
//! - Points per server: `floor(f32(weight)/f32(total) * 160 / 4 * f32(servers)) * 4`, in 32-bit
//!   floats like the C code (so 25 equal servers get 156 points each, not 160).
//! - For `i` in `0..points/4`, MD5(`name-i`) gives four little-endian u32 points.
//! - A key hashes to the first four bytes of its MD5, little-endian, and belongs to the first
//!   point at or after that hash, wrapping to the first point.

use md5::{Digest, Md5};

/// Points per server before weighting (libmemcached's `MEMCACHED_POINTS_PER_SERVER_KETAMA`).
const POINTS_PER_SERVER: f32 = 160.0;

/// One server as the ring sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingServer {
    /// The text hashed into points (see [`RingServer::name_for`]).
    pub name: String,
    pub weight: u32,
}

impl RingServer {
    /// libmemcached's naming: the host alone on the default port, else `host:port`.
    pub fn name_for(host: &str, port: u16) -> String {
        if port == 11211 {
            host.to_string()
        } else {
            format!("{host}:{port}")
        }
    }
}

/// A built continuum: sorted points, each naming a server index.
#[derive(Debug, Clone)]
pub struct Ring {
    points: Vec<(u32, usize)>,
}

/// libmemcached's ketama key hash: the first four bytes of MD5(key), little-endian.
pub fn key_hash(key: &[u8]) -> u32 {
    let digest = Md5::digest(key);
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// How many points a server of `weight` gets among `count` servers weighing `total`.
pub fn points_for(weight: u32, total: u32, count: usize) -> u32 {
    let pct = weight as f32 / total as f32;
    let per = pct * POINTS_PER_SERVER / 4.0 * count as f32;
    // The C code adds 1e-10 in double precision before flooring; kept for identical rounding.
    let per = (f64::from(per) + 0.000_000_000_1) as f32;
    (per.floor() as u32) * 4
}

impl Ring {
    /// Builds the continuum over `servers` (indices into this slice are what lookups return).
    pub fn new(servers: &[RingServer]) -> Ring {
        let total: u32 = servers.iter().map(|s| s.weight).sum();
        let mut points = Vec::new();
        if total == 0 {
            return Ring { points };
        }
        for (index, server) in servers.iter().enumerate() {
            let count = points_for(server.weight, total, servers.len());
            for i in 0..count / 4 {
                let digest = Md5::digest(format!("{}-{i}", server.name).as_bytes());
                for chunk in digest.chunks_exact(4) {
                    let point = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                    points.push((point, index));
                }
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    /// The server index owning `key`, or `None` for an empty ring.
    pub fn server_for(&self, key: &[u8]) -> Option<usize> {
        self.server_for_hash(key_hash(key))
    }

    /// The server index owning a key hash.
    pub fn server_for_hash(&self, hash: u32) -> Option<usize> {
        let at = self.points.partition_point(|&(point, _)| point < hash);
        self.points
            .get(at)
            .or_else(|| self.points.first())
            .map(|&(_, server)| server)
    }

    /// Up to `n` distinct servers for `key`, walking the ring from its point: the owner first,
    /// then the next distinct servers (for replication and failover).
    pub fn servers_for(&self, key: &[u8], n: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(n);
        if self.points.is_empty() {
            return out;
        }
        let start = self
            .points
            .partition_point(|&(point, _)| point < key_hash(key));
        for step in 0..self.points.len() {
            let (_, server) = self.points[(start + step) % self.points.len()];
            if !out.contains(&server) {
                out.push(server);
                if out.len() == n {
                    break;
                }
            }
        }
        out
    }

    /// The sorted points with the server index each names (for tests and diagnostics).
    pub fn points(&self) -> impl Iterator<Item = (u32, usize)> + '_ {
        self.points.iter().copied()
    }

    /// Number of points (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_rounding_matches_libmemcached() {
        // With equal weights the f32 arithmetic loses one group of four for these counts.
        for n in [25usize, 47, 50, 55, 61, 71, 94, 100] {
            assert_eq!(points_for(1, n as u32, n), 156, "{n} servers");
        }
        for n in [1usize, 2, 3, 4, 5, 10] {
            assert_eq!(points_for(1, n as u32, n), 160, "{n} servers");
        }
    }

    #[test]
    fn names_drop_the_default_port() {
        assert_eq!(RingServer::name_for("cache1", 11211), "cache1");
        assert_eq!(RingServer::name_for("10.0.0.1", 11212), "10.0.0.1:11212");
    }

    fn ring(n: usize) -> Ring {
        let servers: Vec<RingServer> = (0..n)
            .map(|i| RingServer {
                name: format!("10.0.0.{i}:11211"),
                weight: 1,
            })
            .collect();
        Ring::new(&servers)
    }

    #[test]
    fn replicas_are_distinct_and_start_with_the_owner() {
        let r = ring(5);
        for k in 0..100 {
            let key = format!("k{k}");
            let replicas = r.servers_for(key.as_bytes(), 3);
            assert_eq!(replicas.len(), 3);
            assert_eq!(Some(replicas[0]), r.server_for(key.as_bytes()));
            assert!(
                replicas[0] != replicas[1]
                    && replicas[1] != replicas[2]
                    && replicas[0] != replicas[2]
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]
        #[test]
        fn adding_a_server_moves_about_one_nth(n in 2usize..12) {
            let before = ring(n);
            let after = ring(n + 1);
            let keys = 4000;
            let mut moved = 0;
            for k in 0..keys {
                let key = format!("key-{k}");
                let (a, b) = (before.server_for(key.as_bytes()), after.server_for(key.as_bytes()));
                if a != b {
                    // Keys only move to the new server.
                    proptest::prop_assert_eq!(b, Some(n));
                    moved += 1;
                }
            }
            let share = moved as f64 / keys as f64;
            let expected = 1.0 / (n as f64 + 1.0);
            proptest::prop_assert!((share - expected).abs() < expected * 0.5 + 0.02, "moved {} expected {}", share, expected);
        }
    }
}
