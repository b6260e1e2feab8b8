//! A throwaway certificate authority and a loopback server certificate, for the engines' TLS
//! listeners (RabbitMQ's `127.0.0.1:5683`), under `.services/tls/`:
//!
//! | file | what |
//! |---|---|
//! | `ca.pem` | the CA's self-signed certificate (`KERNEL_AMQP_CA`): what a test client trusts |
//! | `server.pem` | the server certificate, signed by the CA, for `localhost`, `127.0.0.1` and `::1` |
//! | `server.key` | the server's private key (PKCS#8 PEM), mode 0600 |
//!
//! Keys are ECDSA P-256, made by `rcgen` on `ring`. The CA's private key is never written, so
//! nothing else can ever be signed by this CA: it is trusted by the tests of this checkout only.
//! The files are made once and kept across restarts. If any of them is missing, all three are made
//! anew (with a new CA). Each file is written to a temporary name and renamed, `ca.pem` last, so
//! an interrupted run leaves an incomplete set, never a truncated file.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::Result;

/// The names the server certificate is valid for: every way a test reaches loopback.
pub(super) const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Where the CA and the server certificate live (nothing is read or written until [`ensure`]).
///
/// [`ensure`]: Tls::ensure
#[derive(Debug, Clone)]
pub(super) struct Tls {
    dir: PathBuf,
}

impl Tls {
    /// The files in `dir` (`<root>/.services/tls`).
    pub(super) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The CA certificate the clients trust.
    pub(super) fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The server certificate (signed by the CA).
    pub(super) fn cert_file(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    /// The server certificate's private key.
    pub(super) fn key_file(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// Whether all three files are there.
    pub(super) fn is_complete(&self) -> bool {
        [self.ca_file(), self.cert_file(), self.key_file()]
            .iter()
            .all(|file| file.is_file())
    }

    /// Makes a new CA and server certificate unless all three files are already there.
    pub(super) fn ensure(&self) -> Result<()> {
        if self.is_complete() {
            return Ok(());
        }
        fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let material = Material::generate()?;
        write_file(&self.key_file(), &material.server_key, 0o600)?;
        write_file(&self.cert_file(), &material.server_cert, 0o644)?;
        write_file(&self.ca_file(), &material.ca_cert, 0o644)?;
        eprintln!(
            "services: made a throwaway CA and a certificate for {} in {}",
            SERVER_NAMES.join(", "),
            self.dir.display()
        );
        Ok(())
    }
}

/// A fresh CA certificate and a server certificate and key signed by it, all PEM.
struct Material {
    ca_cert: String,
    server_cert: String,
    server_key: String,
}

impl Material {
    fn generate() -> Result<Self> {
        let tls = |e: rcgen::Error| format!("cannot make the test certificates: {e}");

        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
        ca.distinguished_name = rcgen::DistinguishedName::new();
        ca.distinguished_name.push(
            DnType::CommonName,
            "kernel-test throwaway CA (cargo xtask services)",
        );
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().map_err(tls)?;
        let ca_cert = ca.self_signed(&ca_key).map_err(tls)?;
        let issuer = Issuer::new(ca, ca_key);

        let names = SERVER_NAMES.map(str::to_owned).to_vec();
        let mut server = CertificateParams::new(names).map_err(tls)?;
        server.distinguished_name = rcgen::DistinguishedName::new();
        server
            .distinguished_name
            .push(DnType::CommonName, SERVER_NAMES[0]);
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server.use_authority_key_identifier_extension = true;
        let server_key = KeyPair::generate().map_err(tls)?;
        let server_cert = server.signed_by(&server_key, &issuer).map_err(tls)?;

        Ok(Self {
            ca_cert: ca_cert.pem(),
            server_cert: server_cert.pem(),
            server_key: server_key.serialize_pem(),
        })
    }
}

/// Writes `contents` to `path` with `mode` through a temporary file and a rename.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let partial = path.with_extension("partial");
    let _ = fs::remove_file(&partial);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&partial)
        .and_then(|mut file| file.write_all(contents.as_bytes()))
        .and_then(|()| fs::rename(&partial, path));
    written.map_err(|e| format!("cannot write {}: {e}", path.display()).into())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn ensure_makes_the_three_files_once_and_again_when_one_is_missing() {
        let dir = std::env::temp_dir().join(format!("xtask-tls-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let tls = Tls::new(dir.join("tls"));

        tls.ensure().unwrap();
        let ca = fs::read_to_string(tls.ca_file()).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
        let key = fs::read_to_string(tls.key_file()).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        let mode = fs::metadata(tls.key_file()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        tls.ensure().unwrap();
        assert_eq!(fs::read_to_string(tls.ca_file()).unwrap(), ca, "kept");

        fs::remove_file(tls.cert_file()).unwrap();
        tls.ensure().unwrap();
        assert!(tls.is_complete());
        assert_ne!(fs::read_to_string(tls.ca_file()).unwrap(), ca, "a new CA");
        fs::remove_dir_all(&dir).unwrap();
    }
}
