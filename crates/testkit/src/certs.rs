//! Throw-away certificates for the TLS tests, generated with rcgen when a test runs, so no
//! private key is ever committed. A [`Pki`] is one CA that signs a server certificate (for
//! `localhost` and `127.0.0.1`) and a client certificate (for mutual TLS); all are PEM files in a
//! scratch directory that is removed when the `Pki` is dropped.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A CA with a server and a client certificate, as PEM files.
pub struct Pki {
    dir: PathBuf,
    /// The CA certificate (what clients trust, and `ssl_ca_cert` for mutual TLS).
    pub ca: PathBuf,
    /// The server's certificate (`ssl_chain_cert`) and key (`ssl_key`).
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate signed by the same CA, and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    /// Makes a new CA named `name` and its two certificates, in a fresh scratch directory.
    pub fn generate(name: &str) -> Pki {
        let dir = crate::scratch_dir();
        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = params.self_signed(&ca_key).expect("self-sign CA");
        let leaf = |names: Vec<String>, purpose, file: &str| {
            let key = KeyPair::generate().expect("generate key");
            let mut params = CertificateParams::new(names).expect("leaf params");
            params
                .distinguished_name
                .push(DnType::CommonName, format!("{name} {file}"));
            params.extended_key_usages = vec![purpose];
            let cert = params.signed_by(&key, &ca, &ca_key).expect("sign");
            write_pair(&dir, file, &cert, &key)
        };
        let (server_cert, server_key) = leaf(
            vec!["localhost".to_string(), "127.0.0.1".to_string()],
            ExtendedKeyUsagePurpose::ServerAuth,
            "server",
        );
        let (client_cert, client_key) = leaf(
            vec!["client.test".to_string()],
            ExtendedKeyUsagePurpose::ClientAuth,
            "client",
        );
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca.pem()).expect("write CA");
        Pki {
            dir,
            ca: ca_path,
            server_cert,
            server_key,
            client_cert,
            client_key,
        }
    }

    /// The scratch directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn write_pair(dir: &Path, name: &str, cert: &Certificate, key: &KeyPair) -> (PathBuf, PathBuf) {
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, cert.pem()).expect("write certificate");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (cert_path, key_path)
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
