//! ferrobench end to end: two ferrocached started by the tool, short bounded runs of each mode,
//! and the table's ratio column. (Against memcached it runs the same way; that needs the Debian
//! package, so this test uses our own server twice.)

use std::process::Command;

fn ferrobench(args: &[&str]) -> String {
    let server = ferrocache_testkit::ferrocached_bin();
    let server = server.to_str().expect("utf-8 path");
    let out = Command::new(env!("CARGO_BIN_EXE_ferrobench"))
        .args([
            "--server",
            &format!("a={server}"),
            "--server",
            &format!("b={server}"),
        ])
        .args(args)
        .output()
        .expect("run ferrobench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn row<'t>(table: &'t str, metric: &str) -> Vec<&'t str> {
    table
        .lines()
        .find(|l| l.starts_with(metric))
        .unwrap_or_else(|| panic!("no {metric} row in\n{table}"))[metric.len()..]
        .split_whitespace()
        .collect()
}

/// A hitratio trace small enough for a test.
const SMALL_TRACE: [&str; 5] = [
    "hitratio",
    "--working-set",
    "200000",
    "--requests",
    "400000",
];

/// ferrobench without a server (in process, or the optimum alone).
fn run_alone(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferrobench"))
        .args(args)
        .output()
        .expect("run ferrobench")
}

/// The table of a run that must succeed.
fn table_of(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first number of a table's row.
fn first(table: &str, metric: &str) -> f64 {
    row(table, metric)[0].parse().expect("number")
}

#[test]
fn throughput_fill_and_hitratio_runs() {
    let table = ferrobench(&[
        "--server-args",
        "-m 8 -t 1",
        "throughput",
        "--connections",
        "4",
        "--duration",
        "1",
        "--keys",
        "1000",
    ]);
    assert!(table.contains("b/a"), "{table}");
    let rps = row(&table, "requests/s");
    assert!(rps[0].parse::<f64>().expect("number") > 100.0, "{table}");
    assert_eq!(row(&table, "hit ratio")[..2], ["1.0000", "1.0000"]);

    let table = ferrobench(&["--server-args", "-m 2 -t 1", "fill"]);
    let items: Vec<f64> = row(&table, "items at first eviction")[..2]
        .iter()
        .map(|v| v.parse().expect("number"))
        .collect();
    assert!(items[0] > 5000.0, "{table}");
    let ratio = items[1] / items[0];
    assert!(
        (0.9..1.1).contains(&ratio),
        "the same server fills alike: {table}"
    );

    // Both servers and the store in process replay one trace; the three miss ratios.
    let replay = |extra: &[&str]| -> (Vec<f64>, String) {
        let args = [
            "--in-process",
            "store",
            "--server-args",
            "-m 2 -t 1",
            "hitratio",
            "--working-set",
            "20000",
            "--requests",
            "60000",
        ];
        let table = ferrobench(&[&args[..], extra].concat());
        let miss = row(&table, "miss ratio")[..3]
            .iter()
            .map(|v| v.parse().expect("number"))
            .collect();
        (miss, table)
    };
    let (miss, table) = replay(&[]);
    assert!(miss[0] > 0.0 && miss[0] < 1.0, "{table}");
    assert!(
        (miss[0] - miss[1]).abs() < 0.05,
        "same server, same trace: {table}"
    );
    assert!(table.contains("store/a"), "{table}");
    assert!(
        (miss[0] - miss[2]).abs() < 0.01,
        "the store in process misses as the server does: {table}"
    );

    // Gets that read back each key just set are not counted, over the wire either: the same
    // misses as the replay in process (counted, every miss would bring a hit).
    let (read_back, table) = replay(&["--read-after-set"]);
    for m in &read_back {
        assert!((m - miss[2]).abs() < 0.02, "{table}");
    }
}

/// `nullcached`, the do-nothing server that measures the floor, runs beside ferrocached although it
/// reports no `curr_items`: its column shows `-` there, and so does the ratio.
#[test]
fn throughput_with_a_server_that_stores_nothing() {
    let server = ferrocache_testkit::ferrocached_bin();
    let out = Command::new(env!("CARGO_BIN_EXE_ferrobench"))
        .arg("--server")
        .arg(format!("null={}", env!("CARGO_BIN_EXE_nullcached")))
        .arg("--server")
        .arg(format!("fc={}", server.to_str().expect("utf-8 path")))
        .args([
            "--server-args",
            "-m 8 -t 1",
            "throughput",
            "--connections",
            "2",
        ])
        .args(["--duration", "1", "--keys", "100"])
        .output()
        .expect("run ferrobench");
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}{table}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(row(&table, "hit ratio")[..2], ["1.0000", "1.0000"]);
    let held = row(&table, "items held at end");
    assert_eq!((held[0], held[1], held[2]), ("-", "100", "-"), "{table}");
}

/// The in-process replay alone: no server needed, more memory misses less, and it refuses what
/// it cannot replay.
#[test]
fn hitratio_in_process() {
    let run = run_alone;
    let trace = SMALL_TRACE;
    let miss_with = |megabytes: &str, extra: &[&str]| -> f64 {
        let in_process = ["--in-process", "s", "--server-args", megabytes];
        let table = table_of(run(&[&in_process[..], &trace, extra].concat()));
        first(&table, "miss ratio")
    };
    let miss = |megabytes: &str| miss_with(megabytes, &[]);
    let (small, large) = (miss("-m 1"), miss("-m 4"));
    assert!(
        0.0 < large && large < small && small < 1.0,
        "{small} {large}"
    );
    // Reading back each key just set: those gets are not counted (where everything fits, the
    // same misses: first requests), and they are not taken for reuse (in a small cache, about
    // the same misses; counted as reuse, every new key would go to main: 0.41 against 0.37).
    let everything = miss("-m 64");
    assert_eq!(miss_with("-m 64", &["--read-after-set"]), everything);
    let read_back = miss_with("-m 1", &["--read-after-set"]);
    assert!((read_back - small).abs() < 0.02, "{read_back} {small}");

    let out = run(&["--in-process", "s", "fill"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("hitratio traces only"));
    let out = run(&[&["--in-process", "s"][..], &trace, &["--exptime", "2"]].concat());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --rate"));
}

/// The optimum's row: it misses no more than a real cache holding as many items, with room for
/// everything only first requests miss (as in the store with everything fitting), and with room
/// for nothing every request misses.
#[test]
fn hitratio_with_the_optimum() {
    let trace = [
        &SMALL_TRACE[..],
        &["--scan-every", "1000", "--scan-length", "100"],
    ]
    .concat();
    let in_process = ["--in-process", "s", "--server-args", "-m 1"];
    let optima = ["--belady", "0", "--belady", "1000000"];
    let table = table_of(run_alone(&[&in_process[..], &optima, &trace].concat()));
    let miss: Vec<f64> = row(&table, "miss ratio")[..3]
        .iter()
        .map(|v| v.parse().expect("number"))
        .collect();
    let (store, none, all) = (miss[0], miss[1], miss[2]);
    assert_eq!(none, 1.0, "{table}");
    assert!(0.0 < all && all < store && store < 1.0, "{table}");
    // The store holds fewer items than this: the optimum of that many items misses less still.
    let held = first(&table, "items held at end").to_string();
    let as_large = table_of(run_alone(
        &[&["--belady", held.as_str()][..], &trace].concat(),
    ));
    let optimum = first(&as_large, "miss ratio");
    assert!(all <= optimum && optimum < store, "{table}\n{as_large}");
    let most = first(&as_large, "items held at most");
    assert!(most <= held.parse().expect("number"), "{as_large}");

    let out = run_alone(&["--belady", "10", "fill"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("hitratio traces only"));
}

/// A restart in the middle of an in-process replay: items that come back with their standing
/// miss about as often as with no restart; items that come back new miss more.
#[test]
fn hitratio_across_a_restart() {
    let replay = [
        "--in-process",
        "s",
        "--server-args",
        "-m 1",
        "hitratio",
        "--working-set",
        "200000",
        "--requests",
        "600000",
    ];
    let miss = |extra: &[&str]| {
        first(
            &table_of(run_alone(&[&replay[..], extra].concat())),
            "miss ratio",
        )
    };
    let none = miss(&[]);
    let kept = miss(&["--restart-at", "0.2"]);
    let forgotten = miss(&["--restart-at", "0.2", "--restart-forgets"]);
    assert!((kept - none).abs() < 0.003, "{none} {kept}");
    assert!(forgotten > none + 0.006, "{none} {forgotten}");

    assert!(
        !run_alone(&[&replay[..], &["--restart-at", "1.5"]].concat())
            .status
            .success()
    );
    let out = run_alone(&[
        "--target",
        "x=127.0.0.1:1",
        "hitratio",
        "--restart-at",
        "0.5",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--in-process only"));
}
