//! `ferrobench`: drives memcached-protocol servers with the same workload, one after the other,
//! and prints one table with a ratio column against the first (baseline) target.
//!
//! ```text
//! ferrobench --server memcached=/usr/bin/memcached --server ferrocached=target/release/ferrocached \
//!     --server-args "-m 64 -t 2" throughput --connections 50 --pipeline 16 --duration 5
//! ferrobench --server ... --server-args "-m 64" fill
//! ferrobench --server ... --server-args "-m 16" hitratio --zipf 0.9 --working-set 2000000
//! ferrobench --in-process store --server-args "-m 8" hitratio --requests 30000000
//! ```

mod belady;
mod modes;
mod plot;
mod servers;
mod wire;

use clap::{Parser, Subcommand};

use servers::Target;

#[derive(Parser, Debug)]
#[command(
    name = "ferrobench",
    version,
    about = "Side-by-side load and memory benchmarks for memcached-protocol servers."
)]
pub struct Cli {
    /// A server binary to start: NAME=PATH. Repeat to compare; the first is the baseline.
    #[arg(long = "server")]
    servers: Vec<String>,
    /// Flags given to every started server (besides -p -1 -U 0 -l 127.0.0.1).
    #[arg(
        long = "server-args",
        default_value = "-m 64 -t 2",
        allow_hyphen_values = true
    )]
    server_args: String,
    /// A server already running: NAME=HOST:PORT. Repeatable.
    #[arg(long = "target")]
    targets: Vec<String>,
    /// hitratio only: also replay the trace on ferrocached's store in this process, made with the
    /// -m, -M and -C of --server-args, as a row named NAME (no server, no sockets: quick, for
    /// eviction work).
    #[arg(long = "in-process", value_name = "NAME")]
    in_process: Option<String>,
    /// hitratio only: also replay the trace on Belady's offline optimum holding at most ITEMS
    /// keys, as a row named belady(ITEMS): the fewest misses any cache of that many items could
    /// have. Repeatable.
    #[arg(long = "belady", value_name = "ITEMS")]
    belady: Vec<usize>,
    /// Print the results as JSON too.
    #[arg(long)]
    json: bool,
    /// Write a plot of the results (SVG).
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
pub enum Mode {
    /// Requests per second, latency percentiles and server CPU per request.
    Throughput(modes::ThroughputArgs),
    /// Set distinct keys until the first eviction: items held per MB of -m, and RSS.
    Fill(modes::FillArgs),
    /// Replay a Zipf key trace (get, set on miss) and report the miss ratio.
    Hitratio(modes::HitRatioArgs),
}

/// A server to measure, not started yet.
enum Spec {
    Start { name: String, bin: String },
    Existing { name: String, addr: String },
}

/// Splits `NAME=VALUE`, saying which flag wanted what when it is not.
fn name_value(spec: &str, flag: &str, wants: &str) -> anyhow::Result<(String, String)> {
    let (name, value) = spec
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("{flag} wants NAME={wants}, got {spec}"))?;
    Ok((name.to_string(), value.to_string()))
}

fn specs(cli: &Cli) -> anyhow::Result<Vec<Spec>> {
    let mut out = Vec::new();
    for spec in &cli.servers {
        let (name, bin) = name_value(spec, "--server", "PATH")?;
        out.push(Spec::Start { name, bin });
    }
    for spec in &cli.targets {
        let (name, addr) = name_value(spec, "--target", "HOST:PORT")?;
        out.push(Spec::Existing { name, addr });
    }
    anyhow::ensure!(
        !out.is_empty() || cli.in_process.is_some() || !cli.belady.is_empty(),
        "give at least one --server, --target, --in-process or --belady"
    );
    Ok(out)
}

/// Starts (or names) the target of `spec`. Servers run one at a time: each is started just
/// before its run and stopped after it, so an idle server holds no CPU or memory meanwhile.
fn start(spec: &Spec, server_args: &str) -> anyhow::Result<Target> {
    let args: Vec<String> = server_args.split_whitespace().map(str::to_string).collect();
    match spec {
        Spec::Start { name, bin } => Target::start(name, bin, &args),
        Spec::Existing { name, addr } => Ok(Target::existing(name, addr)),
    }
}

/// The bytes of `-m` (`--memory-limit`) in a server command line (memcached's default: 64 MB).
fn memory_limit(server_args: &str) -> anyhow::Result<usize> {
    let mut args = server_args.split_whitespace();
    let mut megabytes = 64;
    while let Some(arg) = args.next() {
        let value = if arg == "-m" || arg == "--memory-limit" {
            args.next()
        } else if let Some(glued) = arg
            .strip_prefix("--memory-limit=")
            .or_else(|| arg.strip_prefix("-m"))
        {
            Some(glued)
        } else {
            continue;
        };
        megabytes = value.and_then(|v| v.parse::<usize>().ok()).ok_or_else(|| {
            anyhow::anyhow!("-m wants megabytes in --server-args {server_args:?}")
        })?;
    }
    megabytes
        .checked_mul(1 << 20)
        .ok_or_else(|| anyhow::anyhow!("-m {megabytes} is more bytes than this machine has"))
}

/// The store a server started with `server_args` would make: `-m`, and `-M` (no evictions) and
/// `-C` (no CAS ids) when given. `-I` is left at its default: the replay's items are small.
fn store_config(server_args: &str) -> anyhow::Result<ferrocache_store::StoreConfig> {
    let has = |flag: &str| server_args.split_whitespace().any(|a| a == flag);
    Ok(ferrocache_store::StoreConfig {
        max_bytes: memory_limit(server_args)?,
        item_size_max: 1024 * 1024,
        evictions: !has("-M") && !has("--disable-evictions"),
        use_cas: !has("-C") && !has("--disable-cas"),
    })
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let specs = specs(&cli)?;
    anyhow::ensure!(
        (cli.in_process.is_none() && cli.belady.is_empty())
            || matches!(cli.mode, Mode::Hitratio(_)),
        "--in-process and --belady replay hitratio traces only"
    );
    if let Mode::Hitratio(args) = &cli.mode {
        anyhow::ensure!(
            args.restart_at.is_none() || (cli.servers.is_empty() && cli.targets.is_empty()),
            "--restart-at replays on --in-process only (a server is not restarted mid-trace)"
        );
        anyhow::ensure!(
            args.restart_at.is_none_or(|at| (0.0..=1.0).contains(&at)),
            "--restart-at wants a fraction of the trace, from 0 to 1"
        );
    }
    let report = runtime.block_on(async {
        let mut rows = Vec::new();
        for spec in &specs {
            let target = start(spec, &cli.server_args)?;
            rows.push(match &cli.mode {
                Mode::Throughput(args) => modes::throughput(&target, args).await?,
                Mode::Fill(args) => modes::fill(&target, args).await?,
                Mode::Hitratio(args) => modes::hit_ratio(&target, args).await?,
            });
        }
        if let (Some(name), Mode::Hitratio(args)) = (&cli.in_process, &cli.mode) {
            rows.push(modes::hit_ratio_in_process(
                name,
                store_config(&cli.server_args)?,
                args,
            )?);
        }
        if let Mode::Hitratio(args) = &cli.mode {
            for &items in &cli.belady {
                rows.push(modes::hit_ratio_belady(items, args)?);
            }
        }
        anyhow::Ok(modes::Report::from_rows(rows))
    })?;
    print!("{}", report.table());
    if cli.json {
        println!("{}", report.json());
    }
    if let Some(path) = &cli.plot {
        plot::write(path, &report)?;
        println!("plot written to {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{memory_limit, store_config};

    #[test]
    fn memory_limit_reads_m_as_memcached_does() {
        assert_eq!(memory_limit("-m 8 -t 2").unwrap(), 8 << 20);
        assert_eq!(memory_limit("-t 2 -m16").unwrap(), 16 << 20);
        assert_eq!(memory_limit("-t 2").unwrap(), 64 << 20);
        assert_eq!(memory_limit("--memory-limit=32 -t 2").unwrap(), 32 << 20);
        assert_eq!(memory_limit("--memory-limit 4").unwrap(), 4 << 20);
        assert!(memory_limit("-m lots").is_err());
        assert!(memory_limit("-m").is_err());
        assert!(memory_limit(&format!("-m {}", usize::MAX)).is_err());
    }

    #[test]
    fn store_config_follows_the_server_flags() {
        let plain = store_config("-m 8 -t 2").unwrap();
        assert_eq!(plain.max_bytes, 8 << 20);
        assert!(plain.evictions && plain.use_cas);
        let strict = store_config("-m 8 -M -C").unwrap();
        assert!(!strict.evictions && !strict.use_cas);
    }
}
