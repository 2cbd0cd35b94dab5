//! TLS to a NATS server: the system's trust store (as the HTTP backends),
//! or exactly the `root-cas` given; a client certificate for mutual TLS.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls_platform_verifier::BuilderVerifierExt;

use super::config::NatsConfig;

pub fn client_config(cfg: &NatsConfig) -> Result<rustls::ClientConfig, String> {
    crate::storage::tls::ensure_provider();
    let bad =
        |what: &std::path::Path, e: &dyn std::fmt::Display| format!("{}: {e}", what.display());
    let builder = rustls::ClientConfig::builder();
    let builder = if cfg.root_cas.is_empty() {
        builder
            .with_platform_verifier()
            .map_err(|e| format!("cannot load the system's certificates: {e}"))?
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for path in &cfg.root_cas {
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(path, &e))? {
                roots
                    .add(cert.map_err(|e| bad(path, &e))?)
                    .map_err(|e| bad(path, &e))?;
            }
        }
        builder.with_root_certificates(roots)
    };
    match &cfg.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| bad(cert, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(cert, &e))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| bad(cert, &e))
        }
    }
}
