//! How much pipelining buys: N gets one after another (one round trip each) against N gets in
//! flight at once on one connection.
//!
//! ```text
//! cargo run --release -p ferrocache-client --example pipeline -- 127.0.0.1:11211 [N]
//! ```

use std::time::Instant;

use ferrocache_client::{Client, Config, ServerSpec};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let server = args.next().ok_or("usage: pipeline HOST:PORT [N]")?;
    let n: usize = args.next().map_or(Ok(20_000), |n| n.parse())?;
    let mut config = Config::new(vec![ServerSpec::parse(&server)?]);
    config.pool_size = 1;
    let client = Client::new(config);
    let keys: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("pipeline:{i}").into_bytes())
        .collect();
    for key in keys.iter().take(1000) {
        client.set(key, b"value", 0, 60).await?;
    }

    let started = Instant::now();
    for key in &keys {
        client.get(key).await?;
    }
    let sequential = started.elapsed();

    let started = Instant::now();
    let gets = keys.iter().map(|key| client.get(key));
    for got in futures::future::join_all(gets).await {
        got?;
    }
    let pipelined = started.elapsed();

    let rate = |d: std::time::Duration| n as f64 / d.as_secs_f64();
    println!(
        "{n} gets on one connection: one at a time {:.0}/s, pipelined {:.0}/s ({:.1}x)",
        rate(sequential),
        rate(pipelined),
        sequential.as_secs_f64() / pipelined.as_secs_f64()
    );
    Ok(())
}
