//! TLS to servers started with memcached's `-Z` (or ferrocached's), with rustls.
//!
//! A [`TlsConfig`] is built once and shared by every connection of a [`crate::Client`]: from PEM
//! files ([`TlsConfig::from_files`]: a CA file or the system's roots, and optionally a client
//! certificate for servers that require one), or from any rustls `ClientConfig`
//! ([`TlsConfig::new`]) for other root stores and settings. The name checked against the
//! server's certificate is the host part of each server's address unless
//! [`TlsConfig::with_server_name`] sets one.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::error::{Error, Result};

/// How to talk TLS to the servers.
#[derive(Clone)]
pub struct TlsConfig {
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Uses a rustls configuration as it is (custom root store, versions, resumption...).
    pub fn new(config: Arc<rustls::ClientConfig>) -> TlsConfig {
        TlsConfig {
            connector: TlsConnector::from(config),
            server_name: None,
        }
    }

    /// Trusts the CAs in `ca_file` (PEM), or the system's roots when it is `None`; presents
    /// `client` (certificate chain and key, PEM) to servers that ask for a certificate.
    pub fn from_files(ca_file: Option<&Path>, client: Option<(&Path, &Path)>) -> Result<TlsConfig> {
        let mut roots = RootCertStore::empty();
        match ca_file {
            Some(path) => {
                for cert in read_certs(path)? {
                    roots
                        .add(cert)
                        .map_err(|e| tls_error(path, &e.to_string()))?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
                if roots.is_empty() {
                    return Err(Error::Tls(
                        "no system CA certificates found; give a CA file".to_string(),
                    ));
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = read_certs(cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| tls_error(key, &e.to_string()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| tls_error(cert, &e.to_string()))?
            }
        };
        Ok(TlsConfig::new(Arc::new(config)))
    }

    /// Checks every server's certificate against `name` instead of the host in its address
    /// (needed when connecting by IP to a server whose certificate names only a host).
    pub fn with_server_name(mut self, name: &str) -> Result<TlsConfig> {
        let name = ServerName::try_from(name.to_string())
            .map_err(|_| Error::Tls(format!("invalid TLS server name {name:?}")))?;
        self.server_name = Some(name);
        Ok(self)
    }

    /// Runs the handshake on a connected socket to `server` (`host:port`).
    pub(crate) async fn handshake(
        &self,
        server: &str,
        stream: TcpStream,
    ) -> Result<TlsStream<TcpStream>> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => {
                let host = host_of(server);
                ServerName::try_from(host.to_string())
                    .map_err(|_| Error::Tls(format!("{host:?} is not a valid TLS server name")))?
            }
        };
        self.connector
            .connect(name, stream)
            .await
            .map_err(|source| Error::Io {
                server: server.to_string(),
                source,
            })
    }
}

/// The host of `host:port`, `[v6]:port` or a bare host.
fn host_of(server: &str) -> &str {
    if let Some(rest) = server.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match server.rsplit_once(':') {
        Some((host, _)) if !host.contains(':') => host,
        _ => server,
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(path, &e.to_string()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_error(path, &e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_error(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

fn tls_error(path: &Path, why: &str) -> Error {
    Error::Tls(format!("{}: {why}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_addresses() {
        assert_eq!(host_of("127.0.0.1:11211"), "127.0.0.1");
        assert_eq!(host_of("[::1]:11211"), "::1");
        assert_eq!(host_of("cache.example:1"), "cache.example");
        assert_eq!(host_of("localhost"), "localhost");
    }

    #[test]
    fn missing_ca_file_is_an_error() {
        let err = TlsConfig::from_files(Some(Path::new("/nonexistent/ca.pem")), None)
            .expect_err("no such file");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
