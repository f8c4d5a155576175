//! Mutual TLS as CloudNativePG's plugin client expects it: TLS 1.3, ALPN
//! `h2`, our certificate from `--tls-cert`/`--tls-key`, and a client
//! certificate required and verified against `--client-ca` (cert-manager's
//! self-signed client certificate itself, pinned, or a CA).
//!
//! The files are read again at every handshake and the configuration
//! rebuilt when they changed: cert-manager rotates the Secrets, the kubelet
//! swaps the mounted files, and CloudNativePG immediately trusts only the new
//! server certificate and presents only the new client one. A rotation that
//! is half-written keeps the last good configuration until it is complete.
//! (tonic's own TLS reads its certificates once, hence this acceptor.)

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// The three files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

type Contents = (Vec<u8>, Vec<u8>, Vec<u8>);

/// Builds the server configuration from the files, again when they change.
pub struct Reloader {
    files: TlsFiles,
    current: Mutex<Option<(Contents, Arc<ServerConfig>)>>,
}

impl Reloader {
    /// Fails when the files do not make a configuration now (at start-up:
    /// better refuse to start than to serve nobody).
    pub fn new(files: TlsFiles) -> Result<Reloader, String> {
        let reloader = Reloader {
            files,
            current: Mutex::new(None),
        };
        reloader.config()?;
        Ok(reloader)
    }

    /// The configuration for the next handshake.
    pub fn config(&self) -> Result<Arc<ServerConfig>, String> {
        let read =
            |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
        let fresh = (|| {
            Ok::<_, String>((
                read(&self.files.cert)?,
                read(&self.files.key)?,
                read(&self.files.client_ca)?,
            ))
        })();
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let contents = match fresh {
            Ok(contents) => contents,
            Err(e) => {
                return match current.as_ref() {
                    Some((_, config)) => {
                        tracing::warn!(error = %e, "TLS files unreadable; keeping the previous ones");
                        Ok(config.clone())
                    }
                    None => Err(e),
                }
            }
        };
        if let Some((seen, config)) = current.as_ref() {
            if *seen == contents {
                return Ok(config.clone());
            }
        }
        match build(&self.files, &contents) {
            Ok(config) => {
                let config = Arc::new(config);
                if current.is_some() {
                    tracing::info!("TLS certificates changed: using the new ones");
                }
                *current = Some((contents, config.clone()));
                Ok(config)
            }
            Err(e) => match current.as_ref() {
                Some((_, config)) => {
                    tracing::warn!(error = %e, "new TLS files do not work (yet); keeping the previous ones");
                    Ok(config.clone())
                }
                None => Err(e),
            },
        }
    }
}

fn build(files: &TlsFiles, (cert, key, ca): &Contents) -> Result<ServerConfig, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--tls-cert {}: {e}", files.cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate",
            files.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| format!("--tls-key {}: {e}", files.key.display()))?;
    let mut roots = RootCertStore::empty();
    let mut anchors = 0;
    for der in CertificateDer::pem_slice_iter(ca) {
        let der = der.map_err(|e| format!("--client-ca {}: {e}", files.client_ca.display()))?;
        roots
            .add(der)
            .map_err(|e| format!("--client-ca {}: {e}", files.client_ca.display()))?;
        anchors += 1;
    }
    if anchors == 0 {
        return Err(format!(
            "--client-ca {}: no certificate",
            files.client_ca.display()
        ));
    }
    let provider = Arc::new(default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("--client-ca {}: {e}", files.client_ca.display()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&tokio_rustls::rustls::version::TLS13])
        .map_err(|e| format!("TLS 1.3: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| {
            format!(
                "--tls-cert {} / --tls-key {}: {e}",
                files.cert.display(),
                files.key.display()
            )
        })?;
    // gRPC over HTTP/2 only; grpc-go refuses a server without ALPN h2.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}
