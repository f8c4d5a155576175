//! Serving the three services on a TCP listener, over mutual TLS or (local
//! tests only) plaintext.

use super::proto::identity::identity_server::IdentityServer;
use super::proto::lifecycle::operator_lifecycle_server::OperatorLifecycleServer;
use super::proto::operator::operator_server::OperatorServer;
use super::service::{Plugin, Services};
use super::tls::Reloader;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::transport::server::{Connected, Router};

/// A client that has not finished its TLS handshake by then is dropped, so
/// slow or silent peers cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Accepted connections waiting for the gRPC server.
const BACKLOG: usize = 64;

/// Serves until `shutdown` resolves. With `tls`, every connection must
/// complete a mutual TLS 1.3 handshake first.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<Reloader>>,
    plugin: Arc<Plugin>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let services = Services(plugin);
    let router = tonic::transport::Server::builder()
        .add_service(IdentityServer::new(services.clone()))
        .add_service(OperatorLifecycleServer::new(services.clone()))
        .add_service(OperatorServer::new(services));
    match tls {
        Some(reloader) => {
            let (tx, rx) = mpsc::channel(BACKLOG);
            let accept = tokio::spawn(accept_tls(listener, reloader, tx));
            let result = run(router, rx, shutdown).await;
            accept.abort();
            result
        }
        None => {
            let (tx, rx) = mpsc::channel(BACKLOG);
            let accept = tokio::spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((tcp, _)) => {
                            let _ = tcp.set_nodelay(true);
                            if tx.send(tcp).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => accept_failed(e).await,
                    }
                }
            });
            let result = run(router, rx, shutdown).await;
            accept.abort();
            result
        }
    }
}

async fn run<IO>(
    router: Router,
    rx: mpsc::Receiver<IO>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String>
where
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
{
    let incoming = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|io| (Ok::<_, std::io::Error>(io), rx))
    });
    router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| format!("gRPC server: {e}"))
}

async fn accept_tls(
    listener: TcpListener,
    reloader: Arc<Reloader>,
    tx: mpsc::Sender<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_failed(e).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let config = match reloader.config() {
            Ok(config) => config,
            Err(e) => {
                tracing::error!(error = %e, "no usable TLS configuration: connection refused");
                continue;
            }
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send(stream).await;
                }
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "TLS handshake refused");
                }
                Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Accepting fails when the process is out of file descriptors: wait a
/// little rather than spin.
async fn accept_failed(error: std::io::Error) {
    tracing::warn!(%error, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
