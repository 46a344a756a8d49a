//! TLS (`-Z`): ferrocached with certificates generated at test time, driven by our client library,
//! by a raw rustls connection (text, meta and binary commands), and by `openssl s_client`.
//! Mutual TLS, a plaintext `notls:` listener beside a TLS one, and certificate reload on SIGHUP
//! and with `refresh_certs`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrocache_client::{Client, Config, ServerSpec, TlsConfig};
use ferrocache_testkit::certs::Pki;
use ferrocache_testkit::{ferrocached_bin, Server};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn ssl_options(cert: &Path, key: &Path) -> String {
    format!(
        "ssl_chain_cert={},ssl_key={}",
        cert.display(),
        key.display()
    )
}

fn tls_server(pki: &Pki, more_options: &str, extra: &[&str]) -> Server {
    let mut options = ssl_options(&pki.server_cert, &pki.server_key);
    if !more_options.is_empty() {
        options = format!("{options},{more_options}");
    }
    let mut args = vec!["-Z", "-o", &options];
    args.extend_from_slice(extra);
    Server::ferrocached(&args)
}

/// Our client library over TLS to `port`, one pooled connection, trusting `ca`.
fn client(port: u16, ca: &Path, client_cert: Option<(&Path, &Path)>) -> Client {
    let spec = ServerSpec::parse(&format!("127.0.0.1:{port}")).expect("server spec");
    let mut config = Config::new(vec![spec]);
    config.pool_size = 1;
    config.failure_limit = 1000;
    config.connect_timeout = Duration::from_secs(5);
    config.request_timeout = Duration::from_secs(5);
    config.tls = Some(TlsConfig::from_files(Some(ca), client_cert).expect("TLS config"));
    Client::new(config)
}

/// A rustls client configuration trusting `ca`, with an optional client certificate.
fn rustls_config(ca: &Path, client_cert: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    Arc::new(match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .expect("read cert")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("cert PEM"),
                PrivateKeyDer::from_pem_file(key).expect("read key"),
            )
            .expect("client cert"),
    })
}

/// One raw TLS connection: sends `request`, reads until the reply ends with `terminator`.
struct RawTls {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
}

impl RawTls {
    async fn connect(port: u16, config: Arc<rustls::ClientConfig>) -> std::io::Result<RawTls> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let name = ServerName::try_from("localhost").expect("name");
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        Ok(RawTls { stream })
    }

    async fn exchange(&mut self, request: &[u8], terminator: &[u8]) -> std::io::Result<Vec<u8>> {
        self.stream.write_all(request).await?;
        self.stream.flush().await?;
        let mut out = Vec::new();
        let mut buf = [0u8; 16384];
        while !out.ends_with(terminator) {
            let n = tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut buf))
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            out.extend_from_slice(&buf[..n]);
        }
        Ok(out)
    }

    async fn text(&mut self, request: &str, terminator: &str) -> String {
        let reply = self
            .exchange(request.as_bytes(), terminator.as_bytes())
            .await
            .expect("TLS exchange");
        String::from_utf8_lossy(&reply).into_owned()
    }
}

#[tokio::test]
async fn set_and_get_over_tls_with_the_client_library() {
    let pki = Pki::generate("basic");
    let server = tls_server(&pki, "", &[]);
    let client = client(server.port(), &pki.ca, None);
    assert!(client.set(b"greeting", b"hello", 5, 0).await.expect("set"));
    let value = client.get(b"greeting").await.expect("get").expect("hit");
    assert_eq!(value.data, b"hello");
    assert_eq!(value.flags, 5);
    // A value larger than a TLS record (16 KiB) crosses many records both ways.
    let big = vec![b'x'; 300 * 1024];
    assert!(client.set(b"big", &big, 0, 0).await.expect("set big"));
    let value = client.get(b"big").await.expect("get big").expect("hit");
    assert_eq!(value.data.len(), big.len());
    let stats = client.stats(None).await;
    let (_, stats) = &stats[0];
    let stats = stats.as_ref().expect("stats");
    let stat = |name: &str| {
        stats
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(stat("ssl_handshake_errors").as_deref(), Some("0"));
    assert!(stat("time_since_server_cert_refresh").is_some());
}

#[tokio::test]
async fn meta_and_binary_protocols_work_over_tls() {
    let pki = Pki::generate("protocols");
    let server = tls_server(&pki, "", &[]);
    let config = rustls_config(&pki.ca, None);
    let mut meta = RawTls::connect(server.port(), config.clone())
        .await
        .expect("handshake");
    assert_eq!(meta.text("ms mkey 2 T0\r\nhi\r\n", "\r\n").await, "HD\r\n");
    assert_eq!(
        meta.text("mg mkey v\r\nmn\r\n", "MN\r\n").await,
        "VA 2\r\nhi\r\nMN\r\n"
    );

    let mut binary = RawTls::connect(server.port(), config)
        .await
        .expect("handshake");
    // Binary GET (opcode 0x00) of "mkey": header of 24 bytes, then the key.
    let mut request = vec![0x80, 0x00, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 4];
    request.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    request.extend_from_slice(b"mkey");
    let reply = binary.exchange(&request, b"hi").await.expect("binary get");
    assert_eq!(reply[0], 0x81, "binary response magic");
    assert_eq!(&reply[6..8], &[0, 0], "status: no error");
    assert!(reply.ends_with(b"hi"));
}

#[test]
fn plaintext_to_a_tls_port_gets_no_reply_and_counts_a_handshake_error() {
    let pki = Pki::generate("plain");
    let server = tls_server(&pki, "", &[]);
    let mut conn = server.connect();
    conn.send("version\r\n");
    let (reply, closed) = conn.drain(Duration::from_secs(5));
    assert!(closed, "the server must close a connection that is not TLS");
    assert!(
        !String::from_utf8_lossy(&reply).contains("VERSION"),
        "{reply:?}"
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut tls = RawTls::connect(server.port(), rustls_config(&pki.ca, None))
            .await
            .expect("handshake");
        let stats = tls.text("stats\r\n", "END\r\n").await;
        assert!(stats.contains("STAT ssl_handshake_errors 1\r\n"), "{stats}");
    });
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate() {
    let pki = Pki::generate("mtls");
    let ca = format!("ssl_ca_cert={},ssl_verify_mode=2", pki.ca.display());
    let server = tls_server(&pki, &ca, &[]);

    let anonymous = client(server.port(), &pki.ca, None);
    assert!(
        anonymous.set(b"k", b"v", 0, 0).await.is_err(),
        "a client without a certificate must be refused"
    );
    // With TLS 1.3 the client may finish its side first; the refusal shows on the first read.
    let refused = async {
        let mut raw = RawTls::connect(server.port(), rustls_config(&pki.ca, None)).await?;
        raw.exchange(b"version\r\n", b"\r\n").await
    };
    assert!(refused.await.is_err());

    let with_cert = client(
        server.port(),
        &pki.ca,
        Some((&pki.client_cert, &pki.client_key)),
    );
    assert!(with_cert
        .set(b"k", b"v", 0, 0)
        .await
        .expect("set with cert"));
    let value = with_cert.get(b"k").await.expect("get").expect("hit");
    assert_eq!(value.data, b"v");

    // A certificate from another CA is refused as well.
    let other = Pki::generate("other");
    let stranger = client(
        server.port(),
        &pki.ca,
        Some((&other.client_cert, &other.client_key)),
    );
    assert!(stranger.set(b"k", b"v", 0, 0).await.is_err());
}

#[tokio::test]
async fn verify_mode_1_makes_the_client_certificate_optional() {
    let pki = Pki::generate("optional");
    let ca = format!("ssl_ca_cert={},ssl_verify_mode=1", pki.ca.display());
    let server = tls_server(&pki, &ca, &[]);
    let anonymous = client(server.port(), &pki.ca, None);
    assert!(anonymous
        .set(b"a", b"1", 0, 0)
        .await
        .expect("anonymous set"));
    let with_cert = client(
        server.port(),
        &pki.ca,
        Some((&pki.client_cert, &pki.client_key)),
    );
    assert!(with_cert.get(b"a").await.expect("get").is_some());
}

/// Server files that a test can overwrite, then reload.
struct LiveFiles {
    cert: PathBuf,
    key: PathBuf,
}

impl LiveFiles {
    fn new(dir: &Path, from: &Pki) -> LiveFiles {
        let files = LiveFiles {
            cert: dir.join("live-cert.pem"),
            key: dir.join("live-key.pem"),
        };
        files.install(from);
        files
    }

    fn install(&self, from: &Pki) {
        std::fs::copy(&from.server_cert, &self.cert).expect("copy cert");
        std::fs::copy(&from.server_key, &self.key).expect("copy key");
    }
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_open_connections_keep_working() {
    let old = Pki::generate("old");
    let new = Pki::generate("new");
    let live = LiveFiles::new(old.dir(), &old);
    let options = ssl_options(&live.cert, &live.key);
    let server = Server::ferrocached(&["-Z", "-o", &options]);

    let before = client(server.port(), &old.ca, None);
    assert!(before
        .set(b"k", b"v1", 0, 0)
        .await
        .expect("set before reload"));
    assert!(
        client(server.port(), &new.ca, None)
            .set(b"k", b"x", 0, 0)
            .await
            .is_err(),
        "the new CA cannot be trusted before the reload"
    );

    live.install(&new);
    server.signal("HUP");
    // The signal is handled asynchronously: poll (bounded) until new handshakes see the new cert.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = client(server.port(), &new.ca, None);
        if fresh.set(b"k2", b"v2", 0, 0).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served after SIGHUP; stderr:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        client(server.port(), &old.ca, None)
            .get(b"k")
            .await
            .is_err(),
        "new handshakes must not present the old certificate"
    );
    // The connection opened before the reload is still the same one, and still works.
    let value = before
        .get(b"k")
        .await
        .expect("old connection")
        .expect("hit");
    assert_eq!(value.data, b"v1");
    assert_eq!(
        before
            .stats_counters()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the pre-reload connection must not have been replaced"
    );
}

#[tokio::test]
async fn refresh_certs_reloads_or_says_why_not() {
    let old = Pki::generate("refresh-old");
    let new = Pki::generate("refresh-new");
    let live = LiveFiles::new(old.dir(), &old);
    let options = ssl_options(&live.cert, &live.key);
    let server = Server::ferrocached(&["-Z", "-o", &options]);
    let mut conn = RawTls::connect(server.port(), rustls_config(&old.ca, None))
        .await
        .expect("handshake");

    live.install(&new);
    assert_eq!(conn.text("refresh_certs\r\n", "\r\n").await, "OK\r\n");
    assert!(RawTls::connect(server.port(), rustls_config(&new.ca, None))
        .await
        .is_ok());
    // A missing file: memcached's error line, and the current certificate stays.
    std::fs::remove_file(&live.cert).expect("remove cert");
    let reply = conn.text("refresh_certs noreply\r\n", "\r\n").await;
    assert!(
        reply.starts_with("Error loading the certificate chain: ")
            && reply.contains("live-cert.pem"),
        "{reply}"
    );
    let mut after = RawTls::connect(server.port(), rustls_config(&new.ca, None))
        .await
        .expect("the last good certificate is still served");
    assert!(after
        .text("version\r\n", "\r\n")
        .await
        .starts_with("VERSION"));
}

#[test]
fn refresh_certs_without_tls_is_an_error_line() {
    let server = Server::ferrocached(&[]);
    let mut conn = server.connect();
    assert_eq!(conn.line("refresh_certs\r\n"), "Error TLS not enabled\r\n");
}

#[test]
fn sighup_without_tls_keeps_the_server_running() {
    // memcached 1.6.18 survives SIGHUP too; here it would reload certificates if there were any.
    let server = Server::ferrocached(&[]);
    let mut conn = server.connect();
    conn.line("set k 0 0 1\r\nv\r\n");
    server.signal("HUP");
    assert!(conn.line("version\r\n").starts_with("VERSION"));
    let mut fresh = server.connect();
    assert_eq!(
        fresh.request("get k\r\n", "END\r\n"),
        "VALUE k 0 1\r\nv\r\nEND\r\n"
    );
}

#[tokio::test]
async fn a_notls_listener_stays_plaintext_beside_a_tls_one() {
    let pki = Pki::generate("notls");
    let server = tls_server(&pki, "", &["-l", "notls:127.0.0.1"]);
    let ports = server.ports();
    assert_eq!(ports.len(), 2, "two listeners: {ports:?}");
    let (tls_port, plain_port) = (ports[0], ports[1]);
    assert_ne!(tls_port, plain_port);

    let tls = client(tls_port, &pki.ca, None);
    assert!(tls
        .set(b"shared", b"both", 0, 0)
        .await
        .expect("set over TLS"));

    let mut plain = ferrocache_testkit::Conn::connect(([127, 0, 0, 1], plain_port).into());
    assert_eq!(
        plain.request("get shared\r\n", "END\r\n"),
        "VALUE shared 0 4\r\nboth\r\nEND\r\n"
    );
    let settings = plain.request("stats settings\r\n", "END\r\n");
    assert!(settings.contains("STAT ssl_enabled yes\r\n"), "{settings}");

    // And a TLS handshake on the plaintext port fails.
    assert!(RawTls::connect(plain_port, rustls_config(&pki.ca, None))
        .await
        .is_err());
}

#[test]
fn openssl_s_client_drives_text_commands() {
    let pki = Pki::generate("openssl");
    let server = tls_server(&pki, "", &[]);
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-connect"])
        .arg(format!("127.0.0.1:{}", server.port()))
        .arg("-CAfile")
        .arg(&pki.ca)
        .args(["-servername", "localhost", "-verify_hostname", "localhost"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl must be installed (apt-get install openssl)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"set via-openssl 7 0 5\r\nhello\r\nget via-openssl\r\nquit\r\n")
        .expect("write to openssl");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("openssl s_client did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("openssl output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout,
        "STORED\r\nVALUE via-openssl 7 5\r\nhello\r\nEND\r\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_tls_configuration_exits_non_zero_with_a_message() {
    let pki = Pki::generate("bad");
    let good = ssl_options(&pki.server_cert, &pki.server_key);
    let missing = "ssl_chain_cert=/nonexistent/cert.pem,ssl_key=/nonexistent/key.pem".to_string();
    let no_ca = format!("{good},ssl_verify_mode=2");
    let bad_mode = format!("{good},ssl_verify_mode=7");
    // The key of another CA's certificate does not match this certificate.
    let other = Pki::generate("mismatch");
    let mismatch = ssl_options(&pki.server_cert, &other.server_key);
    // Exit statuses as memcached 1.6.18's: 1 for a bad ssl_verify_mode, 64 (EX_USAGE) for
    // certificates that cannot be loaded and for -Z without a TCP port.
    for (args, status) in [
        (vec!["-p", "-1", "-Z"], 64),
        (vec!["-p", "-1", "-Z", "-o", &missing], 64),
        (vec!["-p", "-1", "-Z", "-o", &no_ca], 64),
        (vec!["-p", "-1", "-Z", "-o", &bad_mode], 1),
        (vec!["-p", "-1", "-Z", "-o", &mismatch], 64),
        (vec!["-p", "0", "-Z", "-o", &good], 64),
    ] {
        let stderr = pki.dir().join("stderr");
        let mut child = Command::new(ferrocached_bin())
            .args(["-l", "127.0.0.1"])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("run ferrocached");
        let deadline = Instant::now() + Duration::from_secs(10);
        let code = loop {
            if let Some(code) = child.try_wait().expect("wait") {
                break code;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{args:?} must exit, not serve");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let message = std::fs::read_to_string(&stderr).unwrap_or_default();
        assert_eq!(
            code.code(),
            Some(status),
            "{args:?} must fail like a bad flag: {message}"
        );
        assert!(!message.trim().is_empty(), "{args:?} must say why");
    }
}
