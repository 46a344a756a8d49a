//! Server addresses as people write them: `host`, `host:port`, `host:port:weight`, and
//! twemproxy's `host:port:weight name`.

use crate::error::{Error, Result};
use crate::ring::RingServer;

/// memcached's default port; on it the ketama name is the host alone.
pub const DEFAULT_PORT: u16 = 11211;

/// A server address with its ketama weight and, optionally, the name hashed onto the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub host: String,
    pub port: u16,
    pub weight: u32,
    /// twemproxy's optional server name: when set, the ring hashes it instead of `host[:port]`,
    /// so servers can move to new addresses without moving their keys.
    pub name: Option<String>,
}

impl ServerSpec {
    /// Reads `host`, `host:port`, `host:port:weight` or `host:port:weight name` (`[v6]:port`
    /// too); the port defaults to 11211 and the weight to 1.
    pub fn parse(text: &str) -> Result<ServerSpec> {
        let bad = || Error::BadAddress(text.to_string());
        let (address, name) = match text.trim().split_once(' ') {
            Some((address, name)) if !name.trim().is_empty() => {
                (address, Some(name.trim().to_string()))
            }
            _ => (text.trim(), None),
        };
        let (host, rest) = if let Some(v6) = address.strip_prefix('[') {
            let (host, rest) = v6.split_once(']').ok_or_else(bad)?;
            (host, rest.strip_prefix(':').unwrap_or(rest))
        } else {
            match address.split_once(':') {
                Some((host, rest)) => (host, rest),
                None => (address, ""),
            }
        };
        let mut parts = rest.split(':');
        let port = match parts.next() {
            None | Some("") => DEFAULT_PORT,
            Some(p) => p.parse().map_err(|_| bad())?,
        };
        let weight = match parts.next() {
            None => 1,
            Some(w) => w.parse().map_err(|_| bad())?,
        };
        if host.is_empty() || weight == 0 || parts.next().is_some() {
            return Err(bad());
        }
        Ok(ServerSpec {
            host: host.to_string(),
            port,
            weight,
            name,
        })
    }

    /// `host:port`, for connecting and for reports.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The server as the ring sees it: its name (or libmemcached's `host[:port]`) and weight.
    pub fn ring_server(&self) -> RingServer {
        RingServer {
            name: self
                .name
                .clone()
                .unwrap_or_else(|| RingServer::name_for(&self.host, self.port)),
            weight: self.weight,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_shapes() {
        let s = ServerSpec::parse("cache1").expect("host");
        assert_eq!((s.host.as_str(), s.port, s.weight), ("cache1", 11211, 1));
        assert_eq!(s.ring_server().name, "cache1");
        let s = ServerSpec::parse("10.0.0.1:11212:3").expect("weight");
        assert_eq!((s.port, s.weight), (11212, 3));
        assert_eq!(s.ring_server().name, "10.0.0.1:11212");
        let s = ServerSpec::parse("10.0.0.1:11212:1 server1").expect("name");
        assert_eq!(s.ring_server().name, "server1");
        assert_eq!(s.address(), "10.0.0.1:11212");
        let s = ServerSpec::parse("[::1]:11300").expect("v6");
        assert_eq!((s.host.as_str(), s.port), ("::1", 11300));
        assert_eq!(s.address(), "[::1]:11300");
        for bad in ["", ":11211", "h:port", "h:1:0", "h:1:2:3", "[::1"] {
            assert!(ServerSpec::parse(bad).is_err(), "{bad:?}");
        }
    }
}
