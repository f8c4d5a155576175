//! Mutual TLS as CloudNativePG's plugin client expects it: TLS 1.3, ALPN
//! `h2`, our certificate from `--tls-cert`/`--tls-key`, and a client
//! certificate required and verified against `--client-ca` (cert-manager's
//! self-signed client certificate itself, pinned, or a CA: [`PinnedOrSigned`]).
//!
//! The files are read again at every handshake and the configuration
//! rebuilt when they changed: cert-manager rotates the Secrets, the kubelet
//! swaps the mounted files, and CloudNativePG immediately trusts only the new
//! server certificate and presents only the new client one. A rotation that
//! is half-written keeps the last good configuration until it is complete.
//! (tonic's own TLS reads its certificates once, hence this acceptor.)

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::UnixTime;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

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
        let read = |flag: &str, path: &Path| {
            std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
        };
        let fresh = (|| {
            Ok::<_, String>((
                read("--tls-cert", &self.files.cert)?,
                read("--tls-key", &self.files.key)?,
                read("--client-ca", &self.files.client_ca)?,
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
    let mut pinned = Vec::new();
    for der in CertificateDer::pem_slice_iter(ca) {
        let der = der.map_err(|e| format!("--client-ca {}: {e}", files.client_ca.display()))?;
        roots
            .add(der.clone())
            .map_err(|e| format!("--client-ca {}: {e}", files.client_ca.display()))?;
        pinned.push(der);
    }
    if pinned.is_empty() {
        return Err(format!(
            "--client-ca {}: no certificate",
            files.client_ca.display()
        ));
    }
    let provider = Arc::new(default_provider());
    let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("--client-ca {}: {e}", files.client_ca.display()))?;
    let verifier = Arc::new(PinnedOrSigned { webpki, pinned });
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

/// A client certificate passes when it is signed by one of `--client-ca`'s
/// certificates (WebPKI), or when it *is* one of them: pinned, as Go's
/// verifier accepts a certificate found in its own root pool, whatever its
/// basic constraints (a self-signed certificate made by `openssl req -x509`
/// says CA:TRUE, which WebPKI refuses as an end entity). The handshake's
/// signature is checked with the certificate's key either way.
#[derive(Debug)]
struct PinnedOrSigned {
    webpki: Arc<dyn ClientCertVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ClientCertVerifier for PinnedOrSigned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, tokio_rustls::rustls::Error> {
        use tokio_rustls::rustls::{CertificateError as C, Error as E};
        match self
            .webpki
            .verify_client_cert(end_entity, intermediates, now)
        {
            Ok(verified) => Ok(verified),
            // Out of its validity, a pinned certificate is refused too.
            Err(
                e @ E::InvalidCertificate(
                    C::Expired
                    | C::ExpiredContext { .. }
                    | C::NotValidYet
                    | C::NotValidYetContext { .. },
                ),
            ) => Err(e),
            Err(_)
                if self
                    .pinned
                    .iter()
                    .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                Ok(ClientCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
