//! Command-line flags, spelled like memcached's, parsed into [`ServerConfig`].
//!
//! Flags memcached has and we accept without implementing are listed in [`ServerConfig::warnings`]
//! and announced on stderr at start, so an operator who copies a memcached command line sees what
//! differs instead of being silently ignored.

use anyhow::{bail, Context};
use clap::{ArgAction, Parser};
use ferrocache_store::StoreConfig;

/// The memcached release whose behaviour (and `version` reply) we reproduce.
pub const MEMCACHED_VERSION: &str = "1.6.18";

#[derive(Parser, Debug)]
#[command(
    name = "ferrocached",
    disable_help_flag = true,
    disable_version_flag = true,
    allow_negative_numbers = true,
    // getopt: a flag given twice takes its last value (`-p 11211 ... -p 11212`), as wrappers that
    // append to a base command line expect. -l, -o and -v still accumulate, as memcached's do.
    args_override_self = true
)]
struct Flags {
    #[arg(short = 'p', long = "port", default_value = "11211")]
    port: String,
    #[arg(short = 'U', long = "udp-port", default_value = "0")]
    udp_port: String,
    #[arg(short = 's', long = "unix-socket")]
    unix_socket: Option<String>,
    #[arg(short = 'a', long = "unix-mask", default_value = "700")]
    unix_mask: String,
    #[arg(short = 'A', long = "enable-shutdown")]
    enable_shutdown: bool,
    #[arg(short = 'l', long = "listen")]
    listen: Vec<String>,
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
    #[arg(short = 'r', long = "enable-coredumps")]
    coredumps: bool,
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    #[arg(short = 'm', long = "memory-limit", default_value = "64")]
    memory_limit: String,
    #[arg(short = 'M', long = "disable-evictions")]
    disable_evictions: bool,
    #[arg(short = 'c', long = "conn-limit", default_value = "1024")]
    conn_limit: String,
    #[arg(short = 'k', long = "lock-memory")]
    lock_memory: bool,
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    verbose: u8,
    #[arg(short = 'h', long = "help")]
    help: bool,
    #[arg(short = 'i', long = "license")]
    license: bool,
    #[arg(short = 'V', long = "version")]
    version: bool,
    #[arg(short = 'P', long = "pidfile")]
    pidfile: Option<String>,
    #[arg(short = 'f', long = "slab-growth-factor")]
    growth_factor: Option<String>,
    #[arg(short = 'n', long = "slab-min-size")]
    slab_min_size: Option<String>,
    #[arg(short = 'L', long = "enable-largepages")]
    large_pages: bool,
    #[arg(short = 'D')]
    delimiter: Option<String>,
    #[arg(short = 't', long = "threads", default_value = "4")]
    threads: String,
    #[arg(short = 'R', long = "max-reqs-per-event", default_value = "20")]
    reqs_per_event: String,
    #[arg(short = 'C', long = "disable-cas")]
    disable_cas: bool,
    #[arg(short = 'b', long = "listen-backlog", default_value = "1024")]
    backlog: String,
    #[arg(short = 'B', long = "protocol", default_value = "auto")]
    protocol: String,
    #[arg(short = 'I', long = "max-item-size", default_value = "1m")]
    max_item_size: String,
    #[arg(short = 'S', long = "enable-sasl")]
    sasl: bool,
    #[arg(short = 'F', long = "disable-flush-all")]
    disable_flush_all: bool,
    #[arg(short = 'X', long = "disable-dumping")]
    disable_dumping: bool,
    #[arg(short = 'W', long = "disable-watch")]
    disable_watch: bool,
    #[arg(short = 'Y', long = "auth-file")]
    auth_file: Option<String>,
    #[arg(short = 'e', long = "memory-file")]
    memory_file: Option<String>,
    #[arg(short = 'Z', long = "enable-ssl")]
    ssl: bool,
    #[arg(short = 'o', long = "extended")]
    extended: Vec<String>,
}

/// UDP sockets to serve (`-U`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpListen {
    /// The `-l` interfaces, as TCP gets them.
    pub interfaces: Vec<String>,
    /// 0: one the kernel picks (`-U -1`).
    pub port: u16,
}

/// Where to listen.
#[derive(Debug, Clone)]
pub enum Listen {
    /// TCP on these interface names (each resolved at bind time) and this port. Port `None` means the
    /// kernel picks one (`-p -1`, as memcached's test suite uses).
    Tcp {
        interfaces: Vec<String>,
        port: Option<u16>,
    },
    /// A unix socket (`-s`), with its permission mask (`-a`).
    Unix { path: String, mask: u32 },
    /// `-p 0` without `-s`: memcached then listens on nothing.
    Nothing,
}

/// Everything the server needs, from the flags.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Listen,
    pub store: StoreConfig,
    pub max_connections: usize,
    pub threads: usize,
    pub verbosity: u8,
    pub enable_shutdown: bool,
    pub flush_enabled: bool,
    /// `-X` not given: `lru_crawler metadump` allowed.
    pub dump_enabled: bool,
    /// The LRU crawler's state at start (`-o lru_crawler`, the default, or `-o no_lru_crawler`):
    /// `lru_crawler crawl` and `metadump` are refused while it is off.
    pub lru_crawler: bool,
    /// `-o lru_crawler_sleep` and `lru_crawler_tocrawl`: shown in `stats settings`, no effect.
    pub lru_crawler_sleep: u32,
    pub lru_crawler_tocrawl: u32,
    pub reqs_per_event: usize,
    pub backlog: u32,
    pub idle_timeout: u32,
    /// `-S` and `-Y`.
    pub auth: crate::auth::AuthConfig,
    /// `-B` as given (`auto`, `ascii` or `binary`), or as `-S`/`-Y` force it.
    pub protocol: String,
    /// Accepted memcached flags that do nothing here, said on stderr at start.
    pub warnings: Vec<String>,
    /// `-U`: None with `-U 0` (the default) or `-s`.
    pub udp: Option<UdpListen>,
    /// `stats settings` needs the original `-p`/`-U` numbers.
    pub tcp_port_setting: i64,
    pub udp_port_setting: i64,
    pub interface_setting: Option<String>,
    pub unix_mask_setting: String,
    /// `-Z` and the `-o ssl_*` options (see `tls.rs`).
    pub tls: crate::tls::TlsSettings,
    /// `-e`: where the cache is saved on a graceful stop and found at start (`restart.rs`).
    pub memory_file: Option<std::path::PathBuf>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<ServerConfig>),
    Help,
    Version,
    /// `-i`: memcached prints its license and exits.
    License,
}

/// A refused flag that memcached 1.6.18 answers with exit status 1 (`EXIT_FAILURE`); every other
/// refusal exits with 64 (`EX_USAGE`), as memcached's do (see [`exit_status`]).
#[derive(Debug)]
pub struct Failure(pub String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

/// A refusal that exits with status 1 (see [`Failure`]).
pub(crate) fn failure(message: impl Into<String>) -> anyhow::Error {
    Failure(message.into()).into()
}

/// memcached's slab page, which `-o slab_chunk_max` must divide.
const SLAB_PAGE_SIZE: i32 = 1024 * 1024;

/// memcached 1.6.18's checks of `-o slab_chunk_max` against `-I`, with its words (exit 64). So
/// `-I` below 512k needs `-o slab_chunk_max=` no larger than it, as with memcached. Where
/// memcached crashes (a chunk of 0: a division by zero), this refuses.
fn check_slab_chunk_max(chunk: i32, item_size_max: u64) -> anyhow::Result<()> {
    let (chunk, item) = (i64::from(chunk), item_size_max as i64);
    if chunk > item {
        bail!("slab_chunk_max (bytes: {chunk}) cannot be larger than -I (item_size_max {item})");
    }
    if chunk == 0 || item % chunk != 0 {
        bail!("-I (item_size_max: {item}) must be evenly divisible by slab_chunk_max (bytes: {chunk})");
    }
    if i64::from(SLAB_PAGE_SIZE) % chunk != 0 {
        bail!("slab_chunk_max (bytes: {chunk}) must divide evenly into {SLAB_PAGE_SIZE} (slab_page_size)");
    }
    Ok(())
}

/// The exit status for a refused command line, as memcached 1.6.18 exits: 1 for getopt's errors,
/// `-c`, `-t`, `-R`, `-f`, `-n`, an unknown `-o` suboption, `-S` or `-Y` that cannot start, and a
/// bad `ssl_verify_mode`, `ssl_min_version` or `ssl_wbuf_size`; 64 (`EX_USAGE`) for the rest
/// (ports, `-m`, `-I`, `-B`, the protocol and UDP checks of `-S`/`-Y`, TLS certificates).
pub fn exit_status(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<Failure>().is_some() {
        1
    } else {
        64
    }
}

/// Parses `args` (without the program name) like memcached's `getopt` would.
pub fn parse_args<I, T>(args: I) -> anyhow::Result<Command>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let flags = Flags::try_parse_from(
        std::iter::once(std::ffi::OsString::from("ferrocached"))
            .chain(args.into_iter().map(Into::into)),
    )
    .map_err(|e| failure(e.render().to_string().trim_end()))?;
    if flags.help {
        return Ok(Command::Help);
    }
    if flags.version {
        return Ok(Command::Version);
    }
    if flags.license {
        return Ok(Command::License);
    }
    config_from(flags).map(|c| Command::Run(Box::new(c)))
}

fn number(text: &str) -> Option<i64> {
    text.trim().parse::<i64>().ok()
}

/// C's `atoi`, which memcached uses for `-m` and the digits of `-I`: leading blanks, a sign, the
/// digits up to the first other character (`-m 64m` and `-m 64k` are both 64 MB in memcached
/// 1.6.18, `-I 1.5m` is 1 MB); no digits at all is 0.
fn atoi(text: &str) -> i64 {
    let text = text.trim_start();
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let value = digits
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0i64, |n, d| {
            n.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
    if negative {
        -value
    } else {
        value
    }
}

/// memcached's `-I` units: a number of bytes, or with a `k`/`m` suffix (we also take `g`); the
/// number read like `atoi`, as memcached does (`1.5m` is 1 MB). `None`: not a positive size.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 1024),
        (i, 'm' | 'M') => (&text[..i], 1024 * 1024),
        (i, 'g' | 'G') => (&text[..i], 1024 * 1024 * 1024),
        _ => (text, 1),
    };
    u64::try_from(atoi(digits)).ok()?.checked_mul(unit)
}

fn config_from(flags: Flags) -> anyhow::Result<ServerConfig> {
    let mut warnings = Vec::new();
    let mut not_implemented = |on: bool, what: &str| {
        if on {
            warnings.push(format!("{what} is accepted but not implemented; ignored"));
        }
    };
    not_implemented(flags.daemon, "-d (daemon)");
    not_implemented(flags.coredumps, "-r (enable-coredumps)");
    not_implemented(flags.lock_memory, "-k (lock-memory)");
    not_implemented(flags.large_pages, "-L (enable-largepages)");
    not_implemented(flags.pidfile.is_some(), "-P (pidfile)");
    not_implemented(
        flags.growth_factor.is_some(),
        "-f (slab-growth-factor: no slabs here)",
    );
    not_implemented(
        flags.slab_min_size.is_some(),
        "-n (slab-min-size: no slabs here)",
    );
    not_implemented(flags.delimiter.is_some(), "-D (per-prefix stats)");
    not_implemented(
        flags.disable_watch,
        "-W (disable-watch: no watch command here)",
    );
    not_implemented(
        flags.user.is_some(),
        "-u (user: the process keeps its identity)",
    );

    // Ignored (no slabs here), but refused as memcached refuses them: -f with atof, -n with atoi.
    if let Some(factor) = &flags.growth_factor {
        if factor.trim().parse::<f64>().unwrap_or(0.0) <= 1.0 {
            return Err(failure("Factor must be greater than 1"));
        }
    }
    if let Some(size) = &flags.slab_min_size {
        if atoi(size) == 0 {
            return Err(failure("Chunk size must be greater than 0"));
        }
    }
    let port = number(&flags.port)
        .filter(|p| (-1..=65535).contains(p))
        .with_context(|| format!("ERROR: Invalid port number {}.", flags.port))?;
    let udp_port = number(&flags.udp_port)
        .filter(|p| (-1..=65535).contains(p))
        .with_context(|| format!("ERROR: Invalid port number {}.", flags.udp_port))?;
    let megabytes = Some(atoi(&flags.memory_limit)).filter(|&m| m > 0);
    let Some(megabytes) = megabytes else {
        bail!(
            "Invalid value for -m: {} (must be a number of megabytes above 0)",
            flags.memory_limit
        );
    };
    let max_bytes = usize::try_from(megabytes)
        .ok()
        .and_then(|m| m.checked_mul(1024 * 1024))
        .context("-m is too large")?;
    let max_connections = number(&flags.conn_limit)
        .filter(|&c| c > 0)
        .ok_or_else(|| failure("Maximum connections must be greater than 0"))?
        as usize;
    let threads = number(&flags.threads)
        .filter(|&t| t > 0)
        .ok_or_else(|| failure("Number of threads must be greater than 0"))?
        as usize;
    if threads > 64 {
        // memcached's words; it starts anyway, and so do we.
        warnings.push(
            "WARNING: Setting a high number of workerthreads is not recommended. \
             Set this value to the number of cores in your machine or less."
                .to_string(),
        );
    }
    let reqs_per_event = number(&flags.reqs_per_event)
        .filter(|&r| r > 0)
        .ok_or_else(|| failure("Number of requests per event must be greater than 0"))?
        as usize;
    let backlog = number(&flags.backlog)
        .filter(|&b| (0..=i64::from(i32::MAX)).contains(&b))
        .context("Invalid value for -b (listen-backlog)")? as u32;
    let item_size_max = parse_size(&flags.max_item_size)
        .with_context(|| format!("Invalid value for -I: {}", flags.max_item_size))?;
    if item_size_max < 1024 {
        bail!("Item max size cannot be less than 1024 bytes.");
    }
    if item_size_max > 1024 * 1024 * 1024 {
        bail!("Cannot set item size limit higher than 1 gigabyte.");
    }
    if item_size_max as usize > max_bytes / 2 {
        bail!("Cannot set item size limit higher than 1/2 of memory max.");
    }
    match flags.protocol.as_str() {
        "auto" | "ascii" | "binary" => {}
        other => bail!(
            "Invalid value for binding protocol: {other}\n -- should be one of auto, binary, or ascii"
        ),
    }
    let auth = crate::auth::AuthConfig::from_flags(
        flags.sasl,
        flags.auth_file.as_deref(),
        std::env::var_os(crate::auth::SASL_PWDB_ENV),
        &flags.protocol,
        udp_port,
    )?;
    let protocol = auth
        .forced_protocol()
        .map_or_else(|| flags.protocol.clone(), str::to_string);
    let mut idle_timeout = 0;
    let mut lru_crawler = true;
    // memcached's default: half its 1 MB slab page.
    let mut slab_chunk_max: i32 = SLAB_PAGE_SIZE / 2;
    let mut lru_crawler_sleep = 100;
    let mut lru_crawler_tocrawl = 0;
    let mut tls = crate::tls::TlsSettings {
        enabled: flags.ssl,
        key_format: 1,
        min_version: 2,
        wbuf_size_kb: 16,
        ..Default::default()
    };
    for option in flags.extended.iter().flat_map(|o| o.split(',')) {
        let (key, value) = option.split_once('=').unwrap_or((option, ""));
        // The value of an option that needs one, `key=` included (memcached tells them apart).
        let required = || {
            option
                .contains('=')
                .then_some(value)
                .ok_or_else(|| failure(format!("Missing {key} value")))
        };
        if tls.take_option(key, value, &mut warnings)? {
            continue;
        }
        match key {
            "idle_timeout" => {
                idle_timeout = value
                    .parse()
                    .with_context(|| format!("Invalid value for idle_timeout: {value}"))?;
            }
            // memcached's safe_strtol, in bytes; checked against -I below. Nothing is sliced
            // into chunks here, so the value is not used past the checks.
            "slab_chunk_max" => {
                if !option.contains('=') {
                    bail!("Missing slab_chunk_max argument");
                }
                slab_chunk_max = value
                    .parse::<i32>()
                    .context("could not parse argument to slab_chunk_max")?;
                warnings.push(format!(
                    "-o {key} is accepted but not implemented (no slab allocator here); ignored"
                ));
            }
            "lru_crawler" => lru_crawler = true,
            "no_lru_crawler" => lru_crawler = false,
            // memcached's checks: a missing value, then atoi and its bound, or safe_strtoul.
            "lru_crawler_sleep" => {
                lru_crawler_sleep = u32::try_from(atoi(required()?))
                    .ok()
                    .filter(|&micros| micros <= 1_000_000)
                    .ok_or_else(|| failure("LRU crawler sleep must be between 0 and 1 second"))?;
            }
            "lru_crawler_tocrawl" => {
                lru_crawler_tocrawl =
                    ferrocache_protocol::text::parse_u32_like_strtoul(required()?.as_bytes())
                        .ok_or_else(|| {
                            failure("lru_crawler_tocrawl takes a numeric 32bit value")
                        })?;
            }
            "maxconns_fast"
            | "no_maxconns_fast"
            | "hashpower"
            | "tail_repair_time"
            | "hash_algorithm"
            | "read_buf_mem_limit"
            | "no_lru_maintainer"
            | "lru_maintainer"
            | "hot_lru_pct"
            | "warm_lru_pct"
            | "hot_max_factor"
            | "warm_max_factor"
            | "temporary_ttl"
            | "slab_reassign"
            | "slab_automove"
            | "modern"
            | "no_modern"
            | "track_sizes"
            | "watcher_logbuf_size"
            | "worker_logbuf_size"
            | "lru_segmented"
            | "no_lru_segmented" => {
                warnings.push(format!(
                    "-o {key} is accepted but not implemented (no slab allocator here); ignored"
                ));
            }
            _ => return Err(failure(format!("Illegal suboption \"{option}\""))),
        }
    }
    check_slab_chunk_max(slab_chunk_max, item_size_max)?;
    let interfaces: Vec<String> = if flags.listen.is_empty() {
        vec!["127.0.0.1".to_string()]
    } else {
        flags
            .listen
            .iter()
            .flat_map(|l| l.split([',', ';']))
            .map(str::to_string)
            .collect()
    };
    // memcached serves UDP beside TCP, or alone with `-p 0`; `-s` turns off both.
    let udp = match (&flags.unix_socket, udp_port) {
        (Some(_), _) | (None, 0) => None,
        (None, port) => Some(UdpListen {
            interfaces: interfaces.clone(),
            port: u16::try_from(port).unwrap_or(0),
        }),
    };
    let listen = match (&flags.unix_socket, port) {
        (Some(path), _) => Listen::Unix {
            path: path.clone(),
            mask: u32::from_str_radix(&flags.unix_mask, 8)
                .with_context(|| format!("Invalid value for -a: {}", flags.unix_mask))?,
        },
        (None, 0) => Listen::Nothing,
        (None, port) => Listen::Tcp {
            interfaces,
            port: u16::try_from(port).ok(),
        },
    };
    tls.validate(matches!(listen, Listen::Tcp { .. }))?;
    Ok(ServerConfig {
        listen,
        store: StoreConfig {
            max_bytes,
            item_size_max: item_size_max as usize,
            evictions: !flags.disable_evictions,
            use_cas: !flags.disable_cas,
        },
        max_connections,
        threads,
        verbosity: flags.verbose,
        enable_shutdown: flags.enable_shutdown,
        flush_enabled: !flags.disable_flush_all,
        dump_enabled: !flags.disable_dumping,
        lru_crawler,
        lru_crawler_sleep,
        lru_crawler_tocrawl,
        reqs_per_event,
        backlog,
        idle_timeout,
        auth,
        protocol,
        warnings,
        tcp_port_setting: port,
        udp,
        udp_port_setting: udp_port,
        interface_setting: flags.listen.first().cloned(),
        unix_mask_setting: flags.unix_mask,
        tls,
        memory_file: flags.memory_file.map(std::path::PathBuf::from),
    })
}

/// `-h`: memcached's help layout, listing only what ferrocached does.
pub const HELP: &str = "ferrocached (memcached 1.6.18 compatible)
-p, --port=<num>          TCP port to listen on (default: 11211; -1: any free port)
-U, --udp-port=<num>      UDP port to listen on (default: 0, off; -1: any free port)
-s, --unix-socket=<file>  UNIX socket to listen on (disables network support)
-a, --unix-mask=<mask>    access mask for UNIX socket, in octal (default: 700)
-A, --enable-shutdown     enable ascii \"shutdown\" command
-l, --listen=<addr>       interface to listen on (default: 127.0.0.1; memcached's
                          default is all interfaces, ours is loopback only)
                          may be given several times or comma separated
-m, --memory-limit=<num>  item memory in megabytes, index included (default: 64)
-M, --disable-evictions   return error on memory exhausted instead of evicting
-c, --conn-limit=<num>    max simultaneous connections (default: 1024)
-v, --verbose             verbose (print errors/warnings)
-vv                       very verbose (also print client commands/responses)
-vvv                      extremely verbose (internal state transitions)
-h, --help                print this help and exit
-V, --version             print version and exit
-i, --license             print license info and exit
-t, --threads=<num>       number of threads to use (default: 4)
-R, --max-reqs-per-event  maximum number of requests per event, limits the
                          requests processed per connection to prevent
                          starvation (default: 20)
-C, --disable-cas         disable use of CAS
-b, --listen-backlog=<num> set the backlog queue limit (default: 1024)
-B, --protocol=<name>     protocol - one of ascii, binary, or auto (default:
                          auto-negotiate on each connection's first byte)
-I, --max-item-size=<num> adjusts max item size
                          (default: 1m, min: 1k, max: 1024m)
-F, --disable-flush-all   disable flush_all command
-e, --memory-file=<file>  restartable cache: on a graceful stop (SIGUSR1, or
                          'shutdown graceful') save the items to <file>; the
                          next start with the same -e loads them back
-X, --disable-dumping     disable lru_crawler metadump
-Z, --enable-ssl          enable TLS/SSL on the TCP listeners; 'notls' prefix
                          keeps one plaintext (-l notls:<ip>:<port>)
-S, --enable-sasl         turn on SASL authentication (binary protocol only,
                          mechanism PLAIN, users from the file named by
                          MEMCACHED_SASL_PWDB: lines user:password)
-Y, --auth-file=<file>    enable ASCII protocol authentication (text protocol
                          only). format: user:password lines; a client logs in
                          with \"set <any> 0 0 <len>\\r\\n<user> <pass>\\r\\n\".
                          The file is reloaded on SIGHUP.
-o, --extended            comma separated list of extended options
   - idle_timeout:        timeout for idle connections. (default: 0, no timeout)
   - no_lru_crawler:      start with the LRU crawler off (lru_crawler crawl and
                          metadump refused until \"lru_crawler enable\")
   - lru_crawler_sleep, lru_crawler_tocrawl: checked as memcached checks them and
                          shown in stats settings; no effect (no crawler thread)
   - ssl_chain_cert:      certificate chain file in PEM format
   - ssl_key:             private key, if not part of the -ssl_chain_cert
   - ssl_keyformat:       private key format (1: PEM, 2: DER) (default: PEM)
   - ssl_verify_mode:     peer certificate verification mode, default is 0(None).
                          valid values are 0(None), 1(Request), 2(Require)
                          or 3(Once); 1-3 need ssl_ca_cert
   - ssl_ca_cert:         PEM format file of acceptable client CA's
   - ssl_session_cache:   enable server-side SSL session cache, to support session
                          resumption
   - ssl_min_version:     minimum protocol version to accept (default: tlsv1.2)
                          valid values are 0-2 (tlsv1.2: rustls has no older), or 3(tlsv1.3).
   - ssl_ciphers, ssl_wbuf_size, ssl_kernel_tls: accepted and ignored (rustls)
SIGHUP or the refresh_certs command reloads the TLS certificates.

Accepted for compatibility and ignored, with a notice at start:
-d -r -k -L -P -f -n -D -W -u, and memcached's slab/LRU -o options.
Environment: MEMCACHED_PORT_FILENAME=<file> writes the listening ports to <file>;
MEMCACHED_SASL_PWDB=<file> names the SASL password file (-S).
";

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> anyhow::Result<ServerConfig> {
        match parse_args(args.iter().copied())? {
            Command::Run(config) => Ok(*config),
            other => panic!("expected a config, got {other:?}"),
        }
    }

    #[test]
    fn defaults_match_memcached_but_loopback() {
        let c = run(&[]).expect("defaults");
        assert_eq!(c.store.max_bytes, 64 * 1024 * 1024);
        assert_eq!(c.store.item_size_max, 1024 * 1024);
        assert_eq!(c.max_connections, 1024);
        assert_eq!(c.threads, 4);
        match c.listen {
            Listen::Tcp { interfaces, port } => {
                assert_eq!(interfaces, vec!["127.0.0.1"]);
                assert_eq!(port, Some(11211));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn udp_listens_beside_tcp_on_the_same_interfaces_but_not_with_a_unix_socket() {
        assert_eq!(run(&[]).expect("valid").udp, None, "-U 0 by default");
        let c = run(&["-U", "5000", "-l", "127.0.0.1,::1"]).expect("valid");
        let udp = c.udp.expect("UDP");
        assert_eq!(
            (udp.interfaces, udp.port),
            (vec!["127.0.0.1".into(), "::1".into()], 5000)
        );
        assert_eq!(
            run(&["-U", "-1"]).expect("valid").udp.map(|u| u.port),
            Some(0)
        );
        assert_eq!(
            run(&["-p", "0", "-U", "7"])
                .expect("valid")
                .udp
                .map(|u| u.port),
            Some(7)
        );
        assert_eq!(
            run(&["-s", "/tmp/x.sock", "-U", "7"]).expect("valid").udp,
            None
        );
    }

    #[test]
    fn rejects_bad_values_like_memcached() {
        for bad in [
            &["-c", "0"][..],
            &["-t", "0"],
            &["-I", "1000"],
            &["-m", "64", "-I", "40m"],
            &["-B", "foo"],
            &["-p", "70000"],
            &["-m", "abc"],
            &["-o", "foo=1"],
            &["-Z"],
            &["-o", "ssl_verify_mode=9"],
        ] {
            assert!(run(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn long_forms_and_units() {
        let c = run(&[
            "--port=-1",
            "--memory-limit",
            "128",
            "--max-item-size=2m",
            "-vv",
            "-M",
            "-C",
        ])
        .expect("valid");
        assert_eq!(c.store.item_size_max, 2 * 1024 * 1024);
        assert_eq!(c.store.max_bytes, 128 * 1024 * 1024);
        assert_eq!(c.verbosity, 2);
        assert!(!c.store.evictions);
        assert!(!c.store.use_cas);
        assert!(matches!(c.listen, Listen::Tcp { port: None, .. }));
    }

    #[test]
    fn values_read_like_memcached_atoi_and_getopt() {
        // memcached 1.6.18 reads -m with atoi: "64m" and "64k" are 64 MB; -I's digits too.
        let c = run(&["-m", "64m", "-I", "1.5m"]).expect("valid");
        assert_eq!(c.store.max_bytes, 64 * 1024 * 1024);
        assert_eq!(c.store.item_size_max, 1024 * 1024);
        assert_eq!(
            run(&["-m", "1024M"]).expect("valid").store.max_bytes,
            1 << 30
        );
        // A flag given twice takes its last value; -l, -o and -v accumulate.
        let c = run(&["-c", "5", "-c", "7", "-p", "0", "-p", "-1", "-v", "-v"]).expect("valid");
        assert_eq!(c.max_connections, 7);
        assert_eq!(c.verbosity, 2);
        assert!(matches!(c.listen, Listen::Tcp { port: None, .. }));
        let c = run(&[
            "-l",
            "127.0.0.1",
            "-l",
            "::1",
            "-o",
            "idle_timeout=5",
            "-o",
            "hashpower=20",
        ])
        .expect("valid");
        match c.listen {
            Listen::Tcp { interfaces, .. } => assert_eq!(interfaces, vec!["127.0.0.1", "::1"]),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.idle_timeout, 5);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        // More than 64 threads: memcached warns and starts.
        let c = run(&["-t", "100"]).expect("valid");
        assert_eq!(c.threads, 100);
        assert!(c.warnings[0].contains("high number of workerthreads"));
        assert_eq!(run(&["-b", "0"]).expect("valid").backlog, 0);
    }

    #[test]
    fn license_flag_is_not_ignored() {
        assert!(matches!(parse_args(["-i"]), Ok(Command::License)));
    }

    #[test]
    fn accepted_but_unimplemented_flags_warn() {
        let c = run(&["-d", "-u", "nobody", "-o", "hashpower=20"]).expect("valid");
        assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
    }
}
