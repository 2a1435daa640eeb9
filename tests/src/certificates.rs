//! Throwaway certificates for TLS tests: a CA, a server certificate for
//! `127.0.0.1` and `localhost` signed by it, and an unrelated CA that
//! must not be trusted.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::TlsFiles;

/// The files written by [`generate`].
#[derive(Debug, Clone)]
pub struct TestCertificates {
    /// The broker's listener files, signed by `tls.ca_cert`.
    pub tls: TlsFiles,
    /// A CA that signed nothing of the broker's.
    pub other_ca: std::path::PathBuf,
}

/// Writes a CA, a server certificate and key, and an unrelated CA, as PEM
/// files into `dir`.
pub fn generate(dir: &Path) -> anyhow::Result<TestCertificates> {
    std::fs::create_dir_all(dir)?;
    let (ca_pem, issuer) = certificate_authority("celeriac test CA")?;
    let (other_pem, _) = certificate_authority("celeriac untrusted CA")?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "celeriac test broker");
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let tls = TlsFiles {
        ca_cert: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&tls.ca_cert, ca_pem)?;
    std::fs::write(&tls.cert, cert.pem())?;
    std::fs::write(&tls.key, key.serialize_pem())?;
    let other_ca = dir.join("other-ca.pem");
    std::fs::write(&other_ca, other_pem)?;
    Ok(TestCertificates { tls, other_ca })
}

/// A self-signed CA certificate (PEM) and the issuer to sign with.
fn certificate_authority(name: &str) -> anyhow::Result<(String, Issuer<'static, KeyPair>)> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), Issuer::new(params, key)))
}
