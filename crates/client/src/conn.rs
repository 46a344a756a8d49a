//! One connection to one server, speaking the text protocol. Requests are written whole and the
//! replies read with a buffered reader; this module knows nothing of rings or pools.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// A value as read from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub data: Vec<u8>,
    pub flags: u32,
    /// Present when read with `gets`/`gats`.
    pub cas: Option<u64>,
}

/// The storage commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreCommand {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    /// Compare-and-swap against this CAS id.
    Cas(u64),
}

impl StoreCommand {
    fn verb(self) -> &'static str {
        match self {
            StoreCommand::Set => "set",
            StoreCommand::Add => "add",
            StoreCommand::Replace => "replace",
            StoreCommand::Append => "append",
            StoreCommand::Prepend => "prepend",
            StoreCommand::Cas(_) => "cas",
        }
    }
}

/// The outcome of a storage command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreStatus {
    Stored,
    NotStored,
    /// `cas`: the item changed since it was read.
    Exists,
    /// `cas`: there is no such item.
    NotFound,
}

/// Refuses keys the server would refuse, before sending anything.
pub fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() || key.len() > 250 || key.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(Error::InvalidKey);
    }
    Ok(())
}

pub struct Connection {
    stream: BufReader<TcpStream>,
    server: String,
    timeout: Duration,
}

impl Connection {
    pub async fn connect(server: &str, timeout: Duration) -> Result<Connection> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(server))
            .await
            .map_err(|_| Error::Timeout(server.to_string()))?
            .map_err(|source| Error::Io {
                server: server.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        Ok(Connection {
            stream: BufReader::new(stream),
            server: server.to_string(),
            timeout,
        })
    }

    fn io(&self, source: std::io::Error) -> Error {
        Error::Io {
            server: self.server.clone(),
            source,
        }
    }

    /// Sends `request` and runs `read` on the replies, all under the request timeout.
    async fn call<T>(
        &mut self,
        request: &[u8],
        read: impl AsyncFnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let timeout = self.timeout;
        let server = self.server.clone();
        tokio::time::timeout(timeout, async {
            self.stream
                .get_mut()
                .write_all(request)
                .await
                .map_err(|e| self.io(e))?;
            read(self).await
        })
        .await
        .map_err(|_| Error::Timeout(server))?
    }

    async fn line(&mut self) -> Result<String> {
        let mut line = Vec::new();
        let n = self
            .stream
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| self.io(e))?;
        if n == 0 || !line.ends_with(b"\r\n") {
            return Err(self.io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line).map_err(|e| Error::Protocol(format!("{e}")))
    }

    /// Reads one line and turns the protocol's error lines into errors.
    async fn reply(&mut self) -> Result<String> {
        let line = self.line().await?;
        if line == "ERROR" {
            return Err(Error::UnknownCommand);
        }
        if let Some(msg) = line.strip_prefix("CLIENT_ERROR ") {
            return Err(Error::Client(msg.to_string()));
        }
        if let Some(msg) = line.strip_prefix("SERVER_ERROR ") {
            return Err(Error::Server(msg.to_string()));
        }
        Ok(line)
    }

    /// `get`/`gets` (with `cas`), or `gat`/`gats` with `touch = Some(exptime)`.
    pub async fn get_multi(
        &mut self,
        keys: &[&[u8]],
        cas: bool,
        touch: Option<i64>,
    ) -> Result<HashMap<Vec<u8>, Value>> {
        for key in keys {
            check_key(key)?;
        }
        let mut request = Vec::new();
        request.extend_from_slice(match (cas, touch) {
            (false, None) => b"get".as_slice(),
            (true, None) => b"gets",
            (false, Some(_)) => b"gat",
            (true, Some(_)) => b"gats",
        });
        if let Some(exptime) = touch {
            request.extend_from_slice(format!(" {exptime}").as_bytes());
        }
        for key in keys {
            request.push(b' ');
            request.extend_from_slice(key);
        }
        request.extend_from_slice(b"\r\n");
        self.call(&request, async |c: &mut Self| {
            let mut found = HashMap::new();
            loop {
                let line = c.reply().await?;
                if line == "END" {
                    return Ok(found);
                }
                let fields: Vec<&str> = line.split(' ').collect();
                let bad = || Error::Protocol(line.clone());
                if fields.len() < 4 || fields[0] != "VALUE" {
                    return Err(bad());
                }
                let flags = fields[2].parse().map_err(|_| bad())?;
                let len: usize = fields[3].parse().map_err(|_| bad())?;
                let cas = match fields.get(4) {
                    Some(c) => Some(c.parse().map_err(|_| bad())?),
                    None => None,
                };
                let mut data = vec![0; len + 2];
                c.stream.read_exact(&mut data).await.map_err(|e| c.io(e))?;
                if !data.ends_with(b"\r\n") {
                    return Err(bad());
                }
                data.truncate(len);
                found.insert(fields[1].as_bytes().to_vec(), Value { data, flags, cas });
            }
        })
        .await
    }

    pub async fn store(
        &mut self,
        command: StoreCommand,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: i64,
    ) -> Result<StoreStatus> {
        check_key(key)?;
        let mut request = Vec::with_capacity(value.len() + key.len() + 64);
        request.extend_from_slice(command.verb().as_bytes());
        request.push(b' ');
        request.extend_from_slice(key);
        request.extend_from_slice(format!(" {flags} {exptime} {}", value.len()).as_bytes());
        if let StoreCommand::Cas(id) = command {
            request.extend_from_slice(format!(" {id}").as_bytes());
        }
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
        self.call(&request, async |c: &mut Self| {
            let line = c.reply().await?;
            match line.as_str() {
                "STORED" => Ok(StoreStatus::Stored),
                "NOT_STORED" => Ok(StoreStatus::NotStored),
                "EXISTS" => Ok(StoreStatus::Exists),
                "NOT_FOUND" => Ok(StoreStatus::NotFound),
                _ => Err(Error::Protocol(line)),
            }
        })
        .await
    }

    /// Sends a one-line command whose reply is one line.
    async fn simple(&mut self, request: Vec<u8>) -> Result<String> {
        self.call(&request, async |c: &mut Self| c.reply().await)
            .await
    }

    fn keyed(verb: &str, key: &[u8], rest: &str) -> Result<Vec<u8>> {
        check_key(key)?;
        let mut request = format!("{verb} ").into_bytes();
        request.extend_from_slice(key);
        request.extend_from_slice(rest.as_bytes());
        request.extend_from_slice(b"\r\n");
        Ok(request)
    }

    /// `delete`: true when the key existed.
    pub async fn delete(&mut self, key: &[u8]) -> Result<bool> {
        let line = self.simple(Self::keyed("delete", key, "")?).await?;
        match line.as_str() {
            "DELETED" => Ok(true),
            "NOT_FOUND" => Ok(false),
            _ => Err(Error::Protocol(line)),
        }
    }

    /// `incr`/`decr`: the new value, or `None` when the key does not exist.
    pub async fn delta(&mut self, key: &[u8], incr: bool, by: u64) -> Result<Option<u64>> {
        let verb = if incr { "incr" } else { "decr" };
        let line = self
            .simple(Self::keyed(verb, key, &format!(" {by}"))?)
            .await?;
        if line == "NOT_FOUND" {
            return Ok(None);
        }
        line.trim_end()
            .parse()
            .map(Some)
            .map_err(|_| Error::Protocol(line))
    }

    /// `touch`: true when the key existed.
    pub async fn touch(&mut self, key: &[u8], exptime: i64) -> Result<bool> {
        let line = self
            .simple(Self::keyed("touch", key, &format!(" {exptime}"))?)
            .await?;
        match line.as_str() {
            "TOUCHED" => Ok(true),
            "NOT_FOUND" => Ok(false),
            _ => Err(Error::Protocol(line)),
        }
    }

    pub async fn flush_all(&mut self, delay: i64) -> Result<()> {
        let line = self
            .simple(format!("flush_all {delay}\r\n").into_bytes())
            .await?;
        if line == "OK" {
            Ok(())
        } else {
            Err(Error::Protocol(line))
        }
    }

    pub async fn version(&mut self) -> Result<String> {
        let line = self.simple(b"version\r\n".to_vec()).await?;
        line.strip_prefix("VERSION ")
            .map(str::to_string)
            .ok_or(Error::Protocol(line))
    }

    pub async fn verbosity(&mut self, level: u32) -> Result<()> {
        let line = self
            .simple(format!("verbosity {level}\r\n").into_bytes())
            .await?;
        if line == "OK" {
            Ok(())
        } else {
            Err(Error::Protocol(line))
        }
    }

    /// `stats [arg]`: the `STAT name value` pairs in order.
    pub async fn stats(&mut self, arg: Option<&str>) -> Result<Vec<(String, String)>> {
        let request = match arg {
            Some(arg) => format!("stats {arg}\r\n"),
            None => "stats\r\n".to_string(),
        };
        self.call(request.as_bytes(), async |c: &mut Self| {
            let mut stats = Vec::new();
            loop {
                let line = c.reply().await?;
                if line == "END" || line == "RESET" || line == "OK" {
                    return Ok(stats);
                }
                let rest = line
                    .strip_prefix("STAT ")
                    .ok_or_else(|| Error::Protocol(line.clone()))?;
                let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
                stats.push((name.to_string(), value.to_string()));
            }
        })
        .await
    }
}
