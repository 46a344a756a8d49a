//! memcachedc over TLS to ferrocached started with -Z and certificates generated for the test:
//! set and get with --tls-ca, a refusal when the CA is not trusted, and mutual TLS with
//! --tls-cert/--tls-key.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use ferrocache_testkit::certs::Pki;
use ferrocache_testkit::Server;

fn memcachedc(server: &Server, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_memcachedc"))
        .args(["-s", &format!("127.0.0.1:{}", server.port())])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run memcachedc");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn start(pki: &Pki, mutual: bool) -> Server {
    let mut options = format!(
        "ssl_chain_cert={},ssl_key={}",
        path(&pki.server_cert),
        path(&pki.server_key)
    );
    if mutual {
        options.push_str(&format!(",ssl_ca_cert={},ssl_verify_mode=2", path(&pki.ca)));
    }
    Server::ferrocached(&["-Z", "-o", &options])
}

#[test]
fn set_and_get_over_tls() {
    let pki = Pki::generate("cli");
    let server = start(&pki, false);
    let ca = ["--tls-ca", path(&pki.ca)];
    let set = memcachedc(&server, &[&ca[..], &["set", "k", "over tls"]].concat(), b"");
    assert_eq!(set.status.code(), Some(0), "{set:?}");
    let get = memcachedc(&server, &[&ca[..], &["get", "k"]].concat(), b"");
    assert_eq!(get.status.code(), Some(0), "{get:?}");
    assert_eq!(String::from_utf8_lossy(&get.stdout), "over tls\n");

    // The server's CA is not among the system's roots: plain --tls must refuse it.
    let untrusted = memcachedc(&server, &["--tls", "get", "k"], b"");
    assert_eq!(untrusted.status.code(), Some(2), "{untrusted:?}");
    // And a plaintext client gets no answer from a TLS port.
    let plain = memcachedc(&server, &["--timeout", "1000", "get", "k"], b"");
    assert_eq!(plain.status.code(), Some(2), "{plain:?}");
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let pki = Pki::generate("cli-mtls");
    let server = start(&pki, true);
    let ca = ["--tls-ca", path(&pki.ca)];
    let anonymous = memcachedc(&server, &[&ca[..], &["set", "k", "v"]].concat(), b"");
    assert_eq!(anonymous.status.code(), Some(2), "{anonymous:?}");
    let cert = [
        "--tls-cert",
        path(&pki.client_cert),
        "--tls-key",
        path(&pki.client_key),
    ];
    let set = memcachedc(
        &server,
        &[&ca[..], &cert[..], &["set", "k", "v"]].concat(),
        b"",
    );
    assert_eq!(set.status.code(), Some(0), "{set:?}");
    let get = memcachedc(&server, &[&ca[..], &cert[..], &["get", "k"]].concat(), b"");
    assert_eq!(String::from_utf8_lossy(&get.stdout), "v\n", "{get:?}");
}
