//! TLS for the TCP listeners (`-Z`), with rustls, configured through memcached 1.6's `-o ssl_*`
//! options.
//!
//! The rustls `ServerConfig` sits behind a lock in [`TlsState`]: every accepted connection takes
//! the current one for its handshake, and a reload (`SIGHUP`, or memcached's `refresh_certs`
//! command) builds a new one from the same files and swaps it in. Connections already past their
//! handshake keep their session; only new handshakes see the new certificate. A reload that fails
//! (missing file, key that does not match) keeps the old configuration and says why, as
//! memcached's `refresh_certs` does.

use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use anyhow::bail;
use parking_lot::RwLock;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Prefix of a `-l` address whose listener stays plaintext under `-Z`, as in memcached 1.6.
pub const NOTLS_PREFIX: &str = "notls:";

/// The `-o ssl_*` options, as given. Collected whether or not `-Z` is on, as memcached does.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// `-Z` / `--enable-ssl`.
    pub enabled: bool,
    /// `ssl_chain_cert`: the server's certificate chain, PEM, leaf first.
    pub chain_cert: Option<String>,
    /// `ssl_key`: the private key; without it, the key is read from the chain file.
    pub key: Option<String>,
    /// `ssl_keyformat`: 1 (PEM, the default) or 2 (DER), OpenSSL's `SSL_FILETYPE_*` numbers.
    pub key_format: u8,
    /// `ssl_ca_cert`: the CAs a client certificate must chain to.
    pub ca_cert: Option<String>,
    /// `ssl_verify_mode`: 0 none, 1 request (a certificate is optional but checked when sent),
    /// 2 require, 3 once (as 2: rustls never renegotiates, so "once" is what it always does).
    pub verify_mode: u8,
    /// `ssl_min_version`: 0..=3 for TLS 1.0..1.3. rustls has no TLS 1.0/1.1, so 0..=2 all mean
    /// TLS 1.2 and up; 3 means TLS 1.3 only.
    pub min_version: u8,
    /// `ssl_ciphers`, `ssl_wbuf_size`, ...: accepted, shown in `stats settings`, not used.
    pub ciphers: Option<String>,
    pub wbuf_size_kb: u32,
    pub session_cache: bool,
}

impl TlsSettings {
    /// Takes one `-o` option if it is one of memcached's `ssl_*`; `Ok(false)` for any other key.
    /// Options rustls cannot honour go to `warnings`.
    pub fn take_option(
        &mut self,
        key: &str,
        value: &str,
        warnings: &mut Vec<String>,
    ) -> anyhow::Result<bool> {
        match key {
            "ssl_chain_cert" => self.chain_cert = Some(value.to_string()),
            "ssl_key" => self.key = Some(value.to_string()),
            "ssl_ca_cert" => self.ca_cert = Some(value.to_string()),
            "ssl_keyformat" => {
                self.key_format = match value {
                    "1" | "PEM" | "pem" => 1,
                    "2" | "DER" | "der" => 2,
                    _ => bail!("Invalid ssl_keyformat {value}: PEM (1) and DER (2) are supported"),
                }
            }
            "ssl_verify_mode" => {
                self.verify_mode = match value.parse::<u8>() {
                    Ok(mode @ 0..=3) => mode,
                    _ => {
                        return Err(crate::config::failure(
                            "Invalid ssl_verify_mode. Use help to see valid options.",
                        ))
                    }
                }
            }
            "ssl_min_version" => {
                self.min_version = match value.parse::<u8>() {
                    Ok(v @ 0..=3) => v,
                    _ => {
                        return Err(crate::config::failure(
                            "Invalid ssl_min_version. Use help to see valid options.",
                        ))
                    }
                };
                if self.min_version < 2 {
                    warnings.push(format!(
                        "-o ssl_min_version={value}: rustls speaks only TLS 1.2 and 1.3; \
                         the minimum stays TLS 1.2"
                    ));
                }
            }
            "ssl_ciphers" => {
                self.ciphers = Some(value.to_string());
                warnings.push(
                    "-o ssl_ciphers is accepted but not implemented (OpenSSL cipher strings do \
                     not apply to rustls, whose defaults are used); ignored"
                        .to_string(),
                );
            }
            "ssl_wbuf_size" => {
                self.wbuf_size_kb = value.parse().map_err(|_| {
                    crate::config::failure("could not parse argument to ssl_wbuf_size")
                })?;
                warnings.push(
                    "-o ssl_wbuf_size is accepted but not implemented (rustls sizes its own \
                     buffers); ignored"
                        .to_string(),
                );
            }
            "ssl_session_cache" => {
                self.session_cache = true;
            }
            "ssl_kernel_tls" => warnings.push(
                "-o ssl_kernel_tls is accepted but not implemented; TLS stays in user space"
                    .to_string(),
            ),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Checks what `-Z` needs, once all flags are read; loads the files once so that a bad
    /// certificate stops the start with a message instead of failing every handshake later.
    pub fn validate(&self, has_tcp: bool) -> anyhow::Result<()> {
        if !self.enabled {
            return Ok(());
        }
        if !has_tcp {
            bail!("ERROR: You cannot enable SSL without a TCP port.");
        }
        if self.chain_cert.is_none() {
            bail!("-Z needs a certificate: -o ssl_chain_cert=<file>[,ssl_key=<file>]");
        }
        if self.verify_mode > 0 && self.ca_cert.is_none() {
            bail!(
                "ssl_verify_mode={} needs -o ssl_ca_cert=<file> to check client certificates",
                self.verify_mode
            );
        }
        build_server_config(self).map_err(|e| anyhow::anyhow!("{}", e.trim_end()))?;
        Ok(())
    }
}

/// The live TLS configuration, shared by the listeners, the `SIGHUP` handler and
/// `refresh_certs`.
pub struct TlsState {
    settings: TlsSettings,
    current: RwLock<Arc<rustls::ServerConfig>>,
    /// Server clock time of the last successful load (`time_since_server_cert_refresh`).
    last_refresh: AtomicU32,
    /// `ssl_handshake_errors` in `stats`.
    pub handshake_errors: AtomicU64,
}

impl TlsState {
    /// Loads the certificates named in `settings`; `now` is the server clock.
    pub fn new(settings: TlsSettings, now: u32) -> anyhow::Result<TlsState> {
        let config = build_server_config(&settings).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(TlsState {
            settings,
            current: RwLock::new(Arc::new(config)),
            last_refresh: AtomicU32::new(now),
            handshake_errors: AtomicU64::new(0),
        })
    }

    /// An acceptor with the configuration current at this moment.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().clone())
    }

    /// Reads the files again and swaps the new configuration in. On failure the old one stays,
    /// and the error is memcached's line (with its `\r\n`), ready to send to a client.
    pub fn reload(&self, now: u32) -> Result<(), String> {
        let config = build_server_config(&self.settings)?;
        *self.current.write() = Arc::new(config);
        self.last_refresh.store(now, Relaxed);
        Ok(())
    }

    /// Seconds since the certificates were last loaded.
    pub fn since_refresh(&self, now: u32) -> u32 {
        now.saturating_sub(self.last_refresh.load(Relaxed))
    }

    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }
}

/// Builds a rustls server configuration from the files. Errors read like memcached's
/// (`Error loading the certificate chain: <file> : <reason>`), ending in `\r\n`.
fn build_server_config(settings: &TlsSettings) -> Result<rustls::ServerConfig, String> {
    let chain_path = settings.chain_cert.as_deref().unwrap_or("(null)");
    let chain = read_certs(chain_path)
        .map_err(|e| format!("Error loading the certificate chain: {chain_path} : {e}\r\n"))?;
    let key_path = settings.key.as_deref().unwrap_or(chain_path);
    let key = read_key(key_path, settings.key_format)
        .map_err(|e| format!("Error loading the key: {key_path} : {e}\r\n"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if settings.min_version >= 3 {
        &[&rustls::version::TLS13]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("Error setting the TLS versions: {e}\r\n"))?;
    let builder = match (&settings.ca_cert, settings.verify_mode) {
        (Some(ca_path), mode) if mode > 0 => {
            let mut roots = RootCertStore::empty();
            let cas = read_certs(ca_path)
                .map_err(|e| format!("Error loading the CA certificate: {ca_path} : {e}\r\n"))?;
            for ca in cas {
                roots.add(ca).map_err(|e| {
                    format!("Error loading the CA certificate: {ca_path} : {e}\r\n")
                })?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if mode == 1 {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("Error loading the CA certificate: {ca_path} : {e}\r\n"))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("Error validating the certificate: {e}\r\n"))?;
    if !settings.session_cache {
        // memcached resumes sessions only with -o ssl_session_cache.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    }
    Ok(config)
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate in the file".to_string());
    }
    Ok(certs)
}

fn read_key(path: &str, format: u8) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = std::fs::read(Path::new(path)).map_err(|e| e.to_string())?;
    if format == 2 {
        return PrivateKeyDer::try_from(bytes).map_err(str::to_string);
    }
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_mode_and_versions_are_checked() {
        let mut s = TlsSettings::default();
        let mut warnings = Vec::new();
        assert!(s.take_option("ssl_verify_mode", "2", &mut warnings).is_ok());
        assert_eq!(s.verify_mode, 2);
        assert!(s
            .take_option("ssl_verify_mode", "4", &mut warnings)
            .is_err());
        assert!(s
            .take_option("ssl_min_version", "9", &mut warnings)
            .is_err());
        assert!(s.take_option("ssl_min_version", "1", &mut warnings).is_ok());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(!s.take_option("hashpower", "20", &mut warnings).expect("ok"));
    }

    #[test]
    fn enabled_needs_a_certificate_and_a_tcp_port() {
        let s = TlsSettings {
            enabled: true,
            ..TlsSettings::default()
        };
        assert!(s.validate(true).is_err());
        let s = TlsSettings {
            enabled: true,
            chain_cert: Some("/nonexistent/cert.pem".to_string()),
            ..TlsSettings::default()
        };
        let err = s.validate(true).expect_err("missing file").to_string();
        assert!(err.contains("certificate chain"), "{err}");
        assert!(s.validate(false).is_err());
    }
}
