//! TLS for `amqps://` (rustls with the ring provider), behind the `tls` feature.

use crate::connection::Io;
use crate::{ConnectOptions, Error};

#[cfg(feature = "tls")]
pub(crate) async fn wrap(
    tcp: tokio::net::TcpStream,
    options: &ConnectOptions,
) -> Result<Box<dyn Io>, Error> {
    use std::sync::Arc;

    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    let mut roots = RootCertStore::empty();
    match &options.ca_file {
        Some(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|e| Error::InvalidUrl(format!("cannot read {}: {e}", path.display())))?;
            for certificate in certificates {
                let certificate = certificate.map_err(|e| {
                    Error::InvalidUrl(format!("bad certificate in {}: {e}", path.display()))
                })?;
                roots.add(certificate).map_err(|e| {
                    Error::InvalidUrl(format!("bad certificate in {}: {e}", path.display()))
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Protocol(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(options.host.clone())
        .map_err(|_| Error::InvalidUrl(format!("{:?} is not a TLS server name", options.host)))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| {
            // A certificate or protocol refusal is for good; a reset or an end of file
            // during the handshake (a broker restarting) may pass.
            let refused = e
                .get_ref()
                .is_some_and(|inner| inner.is::<tokio_rustls::rustls::Error>());
            if refused {
                Error::Tls(e.to_string())
            } else {
                Error::from(e)
            }
        })?;
    Ok(Box::new(stream))
}

#[cfg(not(feature = "tls"))]
pub(crate) async fn wrap(
    _tcp: tokio::net::TcpStream,
    _options: &ConnectOptions,
) -> Result<Box<dyn Io>, Error> {
    Err(Error::InvalidUrl(
        "amqps:// needs kernel-amqp's `tls` feature".into(),
    ))
}
