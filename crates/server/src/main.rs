//! `ferrocached`: parse memcached's flags, set up logging, run the server.

use std::process::ExitCode;

use ferrocache_server::{parse_args, Command, HELP};

fn main() -> ExitCode {
    let config = match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!(
                "ferrocached {} (memcached {} compatible)",
                env!("CARGO_PKG_VERSION"),
                ferrocache_server::config::MEMCACHED_VERSION
            );
            return ExitCode::SUCCESS;
        }
        Ok(Command::License) => {
            println!(
                "ferrocached {} is distributed under the {} license.",
                env!("CARGO_PKG_VERSION"),
                env!("CARGO_PKG_LICENSE")
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}");
            // 1 or 64 (EX_USAGE), as memcached exits for the same flag.
            return ExitCode::from(ferrocache_server::config::exit_status(&e));
        }
    };
    let level = match config.verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "ferrocache_server={level},ferrocached={level}"
        )))
        .with_target(false)
        .init();
    for warning in &config.warnings {
        eprintln!("ferrocached: {warning}");
    }
    match ferrocache_server::run(*config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrocached: {e:#}");
            ExitCode::from(71) // EX_OSERR
        }
    }
}
