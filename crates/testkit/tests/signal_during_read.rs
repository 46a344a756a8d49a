//! A signal that arrives while a test waits for the server must not fail the test.
//!
//! Linux does not restart a socket read that has a timeout (`SO_RCVTIMEO`) after a signal
//! handler ran, whatever `SA_RESTART` says (signal(7)). A test binary has handlers once any test
//! used tokio's process or signal support, and gets SIGCHLD whenever another test's child exits;
//! `Conn` must then read on instead of reporting `Interrupted` (this failed a CI run once).
//!
//! Without the libtest harness, the reads below run on the main thread, which is the thread
//! Linux hands a process-wide signal to while it waits; so each read is interrupted for sure.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use ferrocache_testkit::Conn;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Installs the handler and keeps it installed for the life of the process.
    let _usr1 = runtime.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
            .expect("SIGUSR1 handler")
    });

    // Waits 600 ms, answers, interrupted every 100 ms meanwhile.
    let (peer, interrupter, addr) = late_peer(b"late\r\n", Duration::from_millis(600));
    let mut conn = Conn::connect(addr);
    assert_eq!(conn.read_until(b"\r\n"), b"late\r\n");
    join(peer, interrupter);

    // The answer comes within the quiet period, after reads were interrupted; the connection
    // stays open past it. (A signal that came late would only make this pass without testing
    // anything: the quiet period is longer than the wait, so it never fails for timing.)
    let (peer, interrupter, addr) = late_peer(b"trickle", Duration::from_millis(1500));
    let mut conn = Conn::connect(addr);
    let (got, closed) = conn.drain(Duration::from_millis(1000));
    assert_eq!((got.as_slice(), closed), (&b"trickle"[..], false));
    join(peer, interrupter);

    println!("signal_during_read: reads survived signals");
}

/// A listener that answers its one connection with `reply` after 600 ms and keeps it open for
/// `hold` more, and a thread that sends this process SIGUSR1 every 100 ms for the first 500 ms.
fn late_peer(reply: &'static [u8], hold: Duration) -> (JoinHandle<()>, JoinHandle<()>, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let peer = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        thread::sleep(Duration::from_millis(600));
        stream.write_all(reply).expect("write");
        thread::sleep(hold);
    });
    let pid = std::process::id().to_string();
    let interrupter = thread::spawn(move || {
        for _ in 0..5 {
            thread::sleep(Duration::from_millis(100));
            let status = Command::new("kill")
                .args(["-s", "USR1", &pid])
                .status()
                .expect("run kill");
            assert!(status.success());
        }
    });
    (peer, interrupter, addr)
}

fn join(peer: JoinHandle<()>, interrupter: JoinHandle<()>) {
    interrupter.join().expect("interrupter");
    peer.join().expect("peer");
}
