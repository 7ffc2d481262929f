//! TLS for Rift's listeners (Property 35): rustls, TLS 1.3 only, the certificate chain and
//! private key read from PEM files — and read again on `SIGHUP` or when the files change, so
//! a renewed certificate is served without a restart. Without them Rift speaks plain HTTP
//! (for a TLS-terminating proxy in front, or a trusted network).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::metrics::Metrics;
use crate::reload::{Reloadable, Watched};

/// The PEM files of the server's certificate chain and private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no usable PEM section of the expected kind.
    #[error("{path}: {what}")]
    #[diagnostic(help("tls_cert takes a PEM certificate chain, tls_key a PEM private key"))]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        what: String,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("the TLS certificate and key cannot be used: {0}")]
    Rustls(#[from] rustls::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The certificate in force, replaceable while serving.
#[derive(Debug)]
pub struct CertStore {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    watched: Watched,
}

impl CertStore {
    /// Loads the certificate and key (they must belong together).
    pub fn load(files: &TlsFiles) -> Result<CertStore, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let watched = Watched::new(vec![files.cert.clone(), files.key.clone()]);
        let key = certified_key(files, &provider)?;
        Ok(CertStore {
            files: files.clone(),
            provider,
            current: RwLock::new(Arc::new(key)),
            watched,
        })
    }

    /// Loads the files again; on error the certificate in force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = Arc::new(certified_key(&self.files, &self.provider)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = key;
        tracing::info!(cert = %self.files.cert.display(), "TLS certificate loaded");
        Ok(())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|p| p.into_inner()),
        ))
    }
}

impl Reloadable for CertStore {
    fn name(&self) -> &'static str {
        "TLS certificate"
    }

    fn reload(&self) -> Result<(), String> {
        CertStore::reload(self).map_err(|e| e.to_string())
    }

    fn watched(&self) -> &Watched {
        &self.watched
    }

    fn counters<'m>(&self, m: &'m Metrics) -> (&'m AtomicU64, &'m AtomicU64) {
        (&m.tls_reloads, &m.tls_reload_errors)
    }
}

fn certified_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let pem = read(&files.cert)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: files.cert.clone(),
            what: format!("invalid PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: files.cert.clone(),
            what: "no CERTIFICATE section".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?).map_err(|e| TlsError::Pem {
        path: files.key.clone(),
        what: format!("no usable private key ({e})"),
    })?;
    Ok(CertifiedKey::from_der(certs, key, provider)?)
}

/// The server configuration over `store`: TLS 1.3 only, ALPN `http/1.1`.
pub fn server_config(store: Arc<CertStore>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(&store.provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
