//! `memcachedc`: the command-line memcached client.
//!
//! ```text
//! echo "key value" | memcachedc -s localhost -p 11211 set
//! memcachedc -s localhost -p 11211 get key
//! memcachedc -s a:11211,b:11212 stats
//! ```
//! Exit status: 0 hit/stored/done, 1 miss/not stored/not found, 2 error.

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::process::ExitCode;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use clap::{Parser, Subcommand};
use ferrocache_client::{blocking::Client, Config, ServerSpec, StoreCommand, StoreStatus, Value};
use serde_json::{json, Map};

#[derive(Parser, Debug)]
#[command(
    name = "memcachedc",
    version,
    about = "Talk to memcached-protocol servers (ferrocached, memcached, nutcracker) from the shell.",
    after_help = "Examples:
  echo \"key value\" | memcachedc -s localhost -p 11211 set     store each stdin line
  memcachedc -s localhost -p 11211 get key                    print a value
  memcachedc --expire 300 --flags 7 set session:1 \"some value\"
  memcachedc --file photo.jpg set photo                       binary value from a file
  memcachedc set photo < photo.jpg                            ... or from stdin
  memcachedc -s a:11211,b:11212,c:11213 --json get k1 k2      many servers, JSON out
  memcachedc -s localhost -p 11211 stats settings
  memcachedc --noreply set counter 0                          no reply awaited (exit 0 once sent)
  memcachedc -s localhost -p 11211 shutdown                   stop a server started with -A
  memcachedc --tls-ca ca.pem -s localhost:11211 get key       over TLS (server run with -Z)
  memcachedc --tls-ca ca.pem --tls-cert me.pem --tls-key me.key get key   mutual TLS

With several servers, keys are placed by ketama exactly as libmemcached (pylibmc) and nutcracker
(hash: md5, distribution: ketama) place them, so they all find the same keys.

Exit status: 0 hit / stored / done, 1 miss / not stored / not found, 2 error (bad input,
unreachable server, server error)."
)]
struct Cli {
    /// Servers: host, host:port or host:port:weight, comma separated.
    #[arg(
        short = 's',
        long = "servers",
        default_value = "localhost",
        value_delimiter = ',',
        global = true
    )]
    servers: Vec<String>,
    /// Port for servers given without one.
    #[arg(short = 'p', long = "port", default_value_t = 11211, global = true)]
    port: u16,
    /// Expiry for storage commands: seconds (up to 30 days), else a unix time; 0 never expires.
    #[arg(
        short = 'e',
        long = "expire",
        default_value_t = 0,
        allow_negative_numbers = true,
        global = true
    )]
    expire: i64,
    /// Client flags stored with the value (32 bits, opaque to the server).
    #[arg(short = 'f', long = "flags", default_value_t = 0, global = true)]
    flags: u32,
    /// Read the value from this file (binary safe) instead of the command line.
    #[arg(long = "file", global = true)]
    file: Option<std::path::PathBuf>,
    /// Print results as one JSON object. A value that is not UTF-8 is given as "value_base64"
    /// instead of "value".
    #[arg(long = "json", global = true)]
    json: bool,
    /// Log in to servers started with -Y: the file's first line is `user:password` (a file, so the
    /// password stays out of the process list).
    #[arg(long = "auth-file", global = true)]
    auth_file: Option<std::path::PathBuf>,
    /// Send storage commands, delete, incr, decr, touch and flush_all with `noreply`: the server
    /// answers nothing, so nothing is printed and the exit status is 0 once the request is sent
    /// (whether it was stored, found or valid is not known).
    #[arg(long = "noreply", global = true)]
    noreply: bool,
    /// Connect and request timeout in milliseconds.
    #[arg(long = "timeout", default_value_t = 2000, global = true)]
    timeout_ms: u64,
    /// Connect with TLS (servers started with -Z). Trusts the system's CAs unless --tls-ca.
    #[arg(long = "tls", global = true)]
    tls: bool,
    /// CA certificate file (PEM) to check the servers against; implies --tls.
    #[arg(long = "tls-ca", value_name = "FILE", global = true)]
    tls_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for servers that require one (mutual TLS); needs --tls-key.
    #[arg(
        long = "tls-cert",
        value_name = "FILE",
        global = true,
        requires = "tls_key"
    )]
    tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(
        long = "tls-key",
        value_name = "FILE",
        global = true,
        requires = "tls_cert"
    )]
    tls_key: Option<std::path::PathBuf>,
    /// Name to check the servers' certificates against (default: each server's host).
    #[arg(long = "tls-server-name", value_name = "NAME", global = true)]
    tls_server_name: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

/// A key and, optionally, its value (else stdin or --file).
#[derive(clap::Args, Debug)]
struct StoreArgs {
    /// The key. Without it, every stdin line "key value..." is stored.
    key: Option<String>,
    /// The value. Without it, the value is all of stdin (or --file), byte for byte.
    value: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print the values of keys (exit 1 if any is missing).
    ///
    /// One key prints its value alone; several print "key value" lines.
    Get {
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Like get, with each value's CAS id ("key cas value").
    Gets {
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Get keys and set their expiry.
    Gat {
        /// New expiry (same rules as --expire).
        #[arg(allow_negative_numbers = true)]
        exptime: i64,
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Like gat, with each value's CAS id.
    Gats {
        /// New expiry (same rules as --expire).
        #[arg(allow_negative_numbers = true)]
        exptime: i64,
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Store a value.
    ///
    /// Without KEY, each stdin line "key value..." is stored (the value is the rest of the
    /// line). With KEY but no VALUE, the value is stdin (or --file), byte for byte.
    Set(StoreArgs),
    /// Store only if the key is absent (exit 1 if it exists).
    Add(StoreArgs),
    /// Store only if the key exists (exit 1 if it does not).
    Replace(StoreArgs),
    /// Add to the end of an existing value.
    Append(StoreArgs),
    /// Add to the start of an existing value.
    Prepend(StoreArgs),
    /// Store only if the value is unchanged since `gets` gave CAS (exit 1 if it changed).
    Cas {
        key: String,
        /// The CAS id printed by `gets`.
        cas: u64,
        /// The value (else stdin or --file).
        value: Option<String>,
    },
    /// Delete keys (exit 1 if any did not exist).
    Delete {
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Add to a decimal number stored under KEY and print the result.
    Incr {
        key: String,
        #[arg(default_value_t = 1)]
        delta: u64,
    },
    /// Subtract from a decimal number (memcached stops at 0) and print the result.
    Decr {
        key: String,
        #[arg(default_value_t = 1)]
        delta: u64,
    },
    /// Set a key's expiry without reading it.
    Touch {
        key: String,
        /// New expiry (same rules as --expire).
        #[arg(allow_negative_numbers = true)]
        exptime: i64,
    },
    /// Invalidate every item on every server, now or in DELAY seconds.
    #[command(name = "flush_all", alias = "flush-all")]
    FlushAll {
        #[arg(default_value_t = 0)]
        delay: i64,
    },
    /// Print each server's version.
    Version,
    /// Print each server's statistics.
    Stats {
        /// A stats group: settings, items, slabs, sizes, conns, or reset.
        arg: Option<String>,
    },
    /// Set each server's logging verbosity.
    Verbosity { level: u32 },
    /// Ask each server to shut down (memcached and ferrocached allow it only when started with
    /// -A; otherwise they answer "ERROR: shutdown not enabled" and exit status is 2).
    Shutdown,
}

/// How a command ended, for the exit status.
enum Outcome {
    Ok,
    Miss,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Miss) => ExitCode::from(1),
        Err(e) => {
            eprintln!("memcachedc: {}", error_message(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, each said once: the client's errors already name their cause (an
/// I/O error's text is in the message), which `{:#}` would print a second time.
fn error_message(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
    }
    message
}

fn server_specs(cli: &Cli) -> anyhow::Result<Vec<ServerSpec>> {
    cli.servers
        .iter()
        .map(|s| {
            let with_port = if s.contains(':') && !s.starts_with('[') || s.contains("]:") {
                s.clone()
            } else {
                format!("{s}:{}", cli.port)
            };
            Ok(ServerSpec::parse(&with_port)?)
        })
        .collect()
}

/// The TLS settings from --tls and the --tls-* options; any of them turns TLS on.
fn tls_config(cli: &Cli) -> anyhow::Result<Option<ferrocache_client::TlsConfig>> {
    let wanted =
        cli.tls || cli.tls_ca.is_some() || cli.tls_cert.is_some() || cli.tls_server_name.is_some();
    if !wanted {
        return Ok(None);
    }
    let client_cert = cli.tls_cert.as_deref().zip(cli.tls_key.as_deref());
    let mut tls = ferrocache_client::TlsConfig::from_files(cli.tls_ca.as_deref(), client_cert)?;
    if let Some(name) = &cli.tls_server_name {
        tls = tls.with_server_name(name)?;
    }
    Ok(Some(tls))
}

fn run(cli: &Cli) -> anyhow::Result<Outcome> {
    let mut config = Config::new(server_specs(cli)?);
    config.request_timeout = std::time::Duration::from_millis(cli.timeout_ms);
    config.connect_timeout = config.request_timeout;
    config.tls = tls_config(cli)?;
    if let Some(path) = &cli.auth_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let line = text.lines().next().unwrap_or("");
        config.auth = Some(ferrocache_client::Credentials::parse(line).ok_or_else(|| {
            anyhow::anyhow!("{}: the first line must be user:password", path.display())
        })?);
    }
    // A command-line call should report a dead server, not route around it.
    config.failover = ferrocache_client::Failover::Fail;
    config.failure_limit = u32::MAX;
    let client = Client::new(config)?;
    if cli.noreply {
        return run_noreply(cli, &client);
    }
    let mut out = std::io::stdout().lock();
    match &cli.command {
        Cmd::Get { keys } => print_values(cli, &mut out, keys, false, |k| client.get_multi(k)),
        Cmd::Gets { keys } => print_values(cli, &mut out, keys, true, |k| client.gets_multi(k)),
        Cmd::Gat { exptime, keys } => print_values(cli, &mut out, keys, false, |k| {
            client.gat_multi(k, *exptime)
        }),
        Cmd::Gats { exptime, keys } => print_values(cli, &mut out, keys, true, |k| {
            client.gats_multi(k, *exptime)
        }),
        Cmd::Set(args) => store(cli, &client, StoreCommand::Set, args),
        Cmd::Add(args) => store(cli, &client, StoreCommand::Add, args),
        Cmd::Replace(args) => store(cli, &client, StoreCommand::Replace, args),
        Cmd::Append(args) => store(cli, &client, StoreCommand::Append, args),
        Cmd::Prepend(args) => store(cli, &client, StoreCommand::Prepend, args),
        Cmd::Cas { key, cas, value } => {
            let args = StoreArgs {
                key: Some(key.clone()),
                value: value.clone(),
            };
            store(cli, &client, StoreCommand::Cas(*cas), &args)
        }
        Cmd::Delete { keys } => {
            let mut all = true;
            let mut results = Map::new();
            for key in keys {
                let deleted = client.delete(key.as_bytes())?;
                all &= deleted;
                results.insert(key.clone(), json!(deleted));
                if !cli.json {
                    writeln!(out, "{}", if deleted { "DELETED" } else { "NOT_FOUND" })?;
                }
            }
            if cli.json {
                writeln!(out, "{}", serde_json::Value::Object(results))?;
            }
            Ok(if all { Outcome::Ok } else { Outcome::Miss })
        }
        Cmd::Incr { key, delta } => {
            number(cli, &mut out, key, client.incr(key.as_bytes(), *delta)?)
        }
        Cmd::Decr { key, delta } => {
            number(cli, &mut out, key, client.decr(key.as_bytes(), *delta)?)
        }
        Cmd::Touch { key, exptime } => {
            let touched = client.touch(key.as_bytes(), *exptime)?;
            if cli.json {
                writeln!(out, "{}", json!({ key: touched }))?;
            } else {
                writeln!(out, "{}", if touched { "TOUCHED" } else { "NOT_FOUND" })?;
            }
            Ok(if touched { Outcome::Ok } else { Outcome::Miss })
        }
        Cmd::FlushAll { delay } => {
            per_server(cli, &mut out, client.flush_all(*delay), |()| json!("OK"))
        }
        Cmd::Version => per_server(cli, &mut out, client.version(), |v| json!(v)),
        Cmd::Verbosity { level } => {
            per_server(cli, &mut out, client.verbosity(*level), |()| json!("OK"))
        }
        Cmd::Shutdown => per_server(cli, &mut out, client.shutdown(), |()| json!("SHUTDOWN")),
        Cmd::Stats { arg } => {
            let results = client.stats(arg.as_deref());
            if cli.json {
                let mut all = Map::new();
                for (server, stats) in results {
                    let stats = stats?;
                    let fields: Map<String, serde_json::Value> =
                        stats.into_iter().map(|(k, v)| (k, json!(v))).collect();
                    all.insert(server, serde_json::Value::Object(fields));
                }
                writeln!(out, "{}", serde_json::Value::Object(all))?;
            } else {
                for (server, stats) in results {
                    writeln!(out, "Server: {server}")?;
                    for (name, value) in stats? {
                        writeln!(out, "\t{name}: {value}")?;
                    }
                }
            }
            Ok(Outcome::Ok)
        }
    }
}

/// The commands that take `noreply`, sent that way: nothing is printed, and a request that was
/// written is a success. Other commands refuse the flag rather than ignore it.
fn run_noreply(cli: &Cli, client: &Client) -> anyhow::Result<Outcome> {
    let store = |command, args: &StoreArgs| -> anyhow::Result<Outcome> {
        for (key, value) in store_items(cli, args)? {
            client.store_noreply(command, &key, &value, cli.flags, cli.expire)?;
        }
        Ok(Outcome::Ok)
    };
    match &cli.command {
        Cmd::Set(args) => store(StoreCommand::Set, args),
        Cmd::Add(args) => store(StoreCommand::Add, args),
        Cmd::Replace(args) => store(StoreCommand::Replace, args),
        Cmd::Append(args) => store(StoreCommand::Append, args),
        Cmd::Prepend(args) => store(StoreCommand::Prepend, args),
        Cmd::Cas { key, cas, value } => {
            let args = StoreArgs {
                key: Some(key.clone()),
                value: value.clone(),
            };
            store(StoreCommand::Cas(*cas), &args)
        }
        Cmd::Delete { keys } => {
            for key in keys {
                client.delete_noreply(key.as_bytes())?;
            }
            Ok(Outcome::Ok)
        }
        Cmd::Incr { key, delta } => {
            client.incr_noreply(key.as_bytes(), *delta)?;
            Ok(Outcome::Ok)
        }
        Cmd::Decr { key, delta } => {
            client.decr_noreply(key.as_bytes(), *delta)?;
            Ok(Outcome::Ok)
        }
        Cmd::Touch { key, exptime } => {
            client.touch_noreply(key.as_bytes(), *exptime)?;
            Ok(Outcome::Ok)
        }
        Cmd::FlushAll { delay } => {
            for (_, result) in client.flush_all_noreply(*delay) {
                result?;
            }
            Ok(Outcome::Ok)
        }
        other => anyhow::bail!(
            "--noreply works with set add replace append prepend cas delete incr decr touch \
             flush_all, not {}",
            command_name(other)
        ),
    }
}

fn command_name(command: &Cmd) -> &'static str {
    match command {
        Cmd::Get { .. } => "get",
        Cmd::Gets { .. } => "gets",
        Cmd::Gat { .. } => "gat",
        Cmd::Gats { .. } => "gats",
        Cmd::Version => "version",
        Cmd::Stats { .. } => "stats",
        Cmd::Verbosity { .. } => "verbosity",
        Cmd::Shutdown => "shutdown",
        _ => "this command",
    }
}

/// Prints what a get-like command found; in the order of `keys`.
fn print_values(
    cli: &Cli,
    out: &mut impl Write,
    keys: &[String],
    with_cas: bool,
    fetch: impl Fn(&[&[u8]]) -> ferrocache_client::Result<HashMap<Vec<u8>, Value>>,
) -> anyhow::Result<Outcome> {
    let wanted: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let found = fetch(&wanted)?;
    let mut all = true;
    let mut results = Map::new();
    for key in keys {
        let value = found.get(key.as_bytes());
        all &= value.is_some();
        if cli.json {
            let entry = match value {
                Some(v) => {
                    let mut entry = json!({ "flags": v.flags, "cas": v.cas });
                    // JSON strings are text: a value that is not UTF-8 goes as base64 rather than
                    // as a lossy string a script would take for the value.
                    let (field, data) = match std::str::from_utf8(&v.data) {
                        Ok(text) => ("value", json!(text)),
                        Err(_) => ("value_base64", json!(BASE64.encode(&v.data))),
                    };
                    entry[field] = data;
                    entry
                }
                None => serde_json::Value::Null,
            };
            results.insert(key.clone(), entry);
            continue;
        }
        match value {
            Some(v) => {
                if keys.len() > 1 {
                    write!(out, "{key} ")?;
                }
                if let (true, Some(cas)) = (with_cas, v.cas) {
                    write!(out, "{cas} ")?;
                }
                out.write_all(&v.data)?;
                writeln!(out)?;
            }
            None => eprintln!("{key}: not found"),
        }
    }
    if cli.json {
        writeln!(out, "{}", serde_json::Value::Object(results))?;
    }
    Ok(if all { Outcome::Ok } else { Outcome::Miss })
}

fn store(
    cli: &Cli,
    client: &Client,
    command: StoreCommand,
    args: &StoreArgs,
) -> anyhow::Result<Outcome> {
    let items = store_items(cli, args)?;
    let mut all = true;
    let mut results = Map::new();
    let mut out = std::io::stdout().lock();
    for (key, value) in items {
        let status = client.store(command, &key, &value, cli.flags, cli.expire)?;
        all &= status == StoreStatus::Stored;
        let text = status.as_str();
        if cli.json {
            results.insert(String::from_utf8_lossy(&key).into_owned(), json!(text));
        } else {
            writeln!(out, "{text}")?;
        }
    }
    if cli.json {
        writeln!(out, "{}", serde_json::Value::Object(results))?;
    }
    Ok(if all { Outcome::Ok } else { Outcome::Miss })
}

/// The keys and values a storage command stores: from the command line, stdin or --file.
fn store_items(cli: &Cli, args: &StoreArgs) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut items: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    match (&args.key, &args.value) {
        (Some(key), Some(value)) => {
            items.push((key.clone().into_bytes(), value.clone().into_bytes()))
        }
        (Some(key), None) => {
            let mut data = Vec::new();
            match &cli.file {
                Some(path) => data = std::fs::read(path)?,
                None => {
                    std::io::stdin().lock().read_to_end(&mut data)?;
                }
            }
            items.push((key.clone().into_bytes(), data));
        }
        (None, _) => {
            for line in std::io::stdin().lock().lines() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let (key, value) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                items.push((key.as_bytes().to_vec(), value.as_bytes().to_vec()));
            }
            anyhow::ensure!(!items.is_empty(), "no \"key value\" lines on stdin");
        }
    }
    Ok(items)
}

fn number(
    cli: &Cli,
    out: &mut impl Write,
    key: &str,
    value: Option<u64>,
) -> anyhow::Result<Outcome> {
    if cli.json {
        writeln!(out, "{}", json!({ key: value }))?;
    } else {
        match value {
            Some(v) => writeln!(out, "{v}")?,
            None => writeln!(out, "NOT_FOUND")?,
        }
    }
    Ok(if value.is_some() {
        Outcome::Ok
    } else {
        Outcome::Miss
    })
}

fn per_server<T>(
    cli: &Cli,
    out: &mut impl Write,
    results: ferrocache_client::PerServer<T>,
    to_json: impl Fn(T) -> serde_json::Value,
) -> anyhow::Result<Outcome> {
    let mut all = Map::new();
    for (server, result) in results {
        let value = to_json(result?);
        if cli.json {
            all.insert(server, value);
        } else {
            match value {
                serde_json::Value::String(s) => writeln!(out, "{server}: {s}")?,
                other => writeln!(out, "{server}: {other}")?,
            }
        }
    }
    if cli.json {
        writeln!(out, "{}", serde_json::Value::Object(all))?;
    }
    Ok(Outcome::Ok)
}
