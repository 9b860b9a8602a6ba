//! A throwaway certificate authority and the server certificate it issues for 127.0.0.1.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

/// A test CA and one server certificate (for `127.0.0.1` and `localhost`), as PEM files in a
/// temporary folder removed on drop.
#[derive(Debug)]
pub struct TestCa {
    dir: TempDir,
    server_cert_der: Vec<u8>,
    server_key_der: Vec<u8>,
}

impl TestCa {
    /// Creates the CA, issues the server certificate and writes `ca.pem`, `server.pem` and
    /// `server-key.pem` (PKCS#8).
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("opsline-tls-").tempdir()?;
        let ca_key = KeyPair::generate()?;
        let ca_params = ca_params()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate()?;
        let server_cert = server_params()?.signed_by(&server_key, &issuer)?;

        let ca = Self {
            dir,
            server_cert_der: server_cert.der().to_vec(),
            server_key_der: server_key.serialize_der(),
        };
        write(&ca.ca_cert_path(), &ca_cert.pem())?;
        write(&ca.server_cert_path(), &server_cert.pem())?;
        write(&ca.server_key_path(), &server_key.serialize_pem())?;
        Ok(ca)
    }

    /// The CA certificate clients trust (`curl --cacert`, `SSL_CERT_FILE`).
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate, PEM.
    pub fn server_cert_path(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server's private key, PEM (PKCS#8).
    pub fn server_key_path(&self) -> PathBuf {
        self.dir.path().join("server-key.pem")
    }

    /// The server certificate, DER.
    pub fn server_cert_der(&self) -> &[u8] {
        &self.server_cert_der
    }

    /// The server's private key, DER (PKCS#8).
    pub fn server_key_der(&self) -> &[u8] {
        &self.server_key_der
    }
}

fn ca_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "opsline test CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn server_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    params.distinguished_name.push(DnType::CommonName, "localhost");
    // Lets chain builders pick the issuing key directly instead of matching names.
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    Ok(params)
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
