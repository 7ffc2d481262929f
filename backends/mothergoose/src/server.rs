//! Running MotherGoose: the HTTP API (plain or TLS 1.3), the embedded workers, the
//! reconciler and the webhook-secret refresher, all stopped together and gracefully —
//! in-flight requests and tasks finish, unfinished leases are released.

use crate::app::App;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding or serving failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The TLS files could not be used.
    #[error("TLS: {0}")]
    Tls(String),
}

/// A running MotherGoose.
pub struct Running {
    /// Where the API listens.
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
}

impl Running {
    /// Stops everything gracefully and waits for it.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }

    /// Stops at once, like a crash (`kill -9`): nothing is finished, no lease released.
    pub async fn kill(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Waits until `signal` resolves, then stops gracefully.
    pub async fn stop_on(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        self.stop().await;
    }
}

/// rustls, TLS 1.3 only (Property 35), from PEM files.
pub fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| ServeError::Tls(format!("{}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| ServeError::Tls(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ServeError::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))
}

/// Starts the API on `listener` and, per the settings, the workers and the reconciler.
pub async fn start(
    app: Arc<App>,
    listener: std::net::TcpListener,
    api: bool,
) -> Result<Running, ServeError> {
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    if app.settings.workers > 0 {
        tasks.spawn(crate::worker::run(
            app.clone(),
            app.settings.workers,
            stopped.clone(),
        ));
    }
    tasks.spawn(crate::reconcile::run(
        app.clone(),
        app.settings.reconcile_interval,
        stopped.clone(),
    ));
    tasks.spawn(refresh_secrets(app.clone(), stopped.clone()));
    if api {
        let router = crate::http::router(app.clone());
        let grace = app.settings.shutdown_grace;
        let mut stopped = stopped.clone();
        match &app.settings.tls {
            Some((cert, key)) => {
                let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(
                    tls_config(cert, key)?,
                ));
                let handle = axum_server::Handle::new();
                let server = axum_server::from_tcp_rustls(listener, config).handle(handle.clone());
                tasks.spawn(async move {
                    let _ = stopped.changed().await;
                    handle.graceful_shutdown(Some(grace));
                });
                tasks.spawn(async move {
                    if let Err(e) = server.serve(router.into_make_service()).await {
                        tracing::error!("serving HTTPS: {e}");
                    }
                });
            }
            None => {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                tasks.spawn(async move {
                    let shutdown = async move {
                        let _ = stopped.changed().await;
                    };
                    if let Err(e) = axum::serve(listener, router)
                        .with_graceful_shutdown(shutdown)
                        .await
                    {
                        tracing::error!("serving HTTP: {e}");
                    }
                });
            }
        }
    }
    Ok(Running { addr, stop, tasks })
}

/// Picks up a webhook secret set or changed by `gosling deploy` (checked every 10 s and
/// whenever the deployment changes).
async fn refresh_secrets(app: Arc<App>, mut stopped: watch::Receiver<bool>) {
    let mut deployed = app.deployed.clone();
    let mut watching = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            alive = deployed.changed(), if watching => watching = alive,
            _ = stopped.changed() => return,
        }
        app.refresh_webhook_secret().await;
    }
}
