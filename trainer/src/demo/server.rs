//! Binding, serving and stopping the demo: the listener is bound before the model loads (a port
//! in use is reported at once, naming the port; port 0 picks a free one), the worker loads the
//! model, then `listening on http://ADDR` is printed and requests are served until Ctrl-C or
//! SIGTERM. On a stop the queue is shut (waiting runs dropped, the running one cancelled before
//! its next turn), open event streams end, and the private upload directory is removed.
//!
//! Left out: TLS and authentication (bind to loopback, the default, or put a proxy in front).

use super::examples::Examples;
use super::queue::Queue;
use super::routes::{App, router};
use super::settings::Limits;
use super::uploads::UploadDir;
use super::{DemoConfig, DemoError, worker};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// A bound, not yet serving, demo.
pub struct DemoServer {
    listener: TcpListener,
    pub addr: SocketAddr,
}

/// Binds `host:port` (port 0: a free port).
pub async fn bind(host: &str, port: u16) -> Result<DemoServer, DemoError> {
    let listener = TcpListener::bind((host, port)).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => DemoError::PortInUse { host: host.to_string(), port },
        _ => DemoError::Bind { host: host.to_string(), port, message: e.to_string() },
    })?;
    let addr =
        listener.local_addr().map_err(|e| DemoError::Bind { host: host.into(), port, message: e.to_string() })?;
    Ok(DemoServer { listener, addr })
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

impl DemoServer {
    /// Loads the model, serves until `stop` resolves, then cleans up. `on_ready` is called with
    /// the address once requests are served.
    pub async fn serve(
        self,
        cfg: DemoConfig,
        stop: impl Future<Output = ()> + Send + 'static,
        on_ready: impl FnOnce(SocketAddr),
    ) -> Result<(), DemoError> {
        let examples = Examples::load(&cfg.examples)?;
        for why in &examples.skipped {
            eprintln!("omnirl demo: example left out: {why}");
        }
        let uploads = Arc::new(UploadDir::new().map_err(|e| DemoError::Uploads(e.to_string()))?);
        let queue = Arc::new(Queue::new(cfg.queue_bound.max(1)));
        let limits = Limits::of(&cfg.stage);
        let mut app = App::new(queue.clone(), uploads.clone(), examples, limits);
        app.max_upload_bytes = cfg.max_upload_bytes;
        app.attach_timeout = Duration::from_secs_f64(cfg.attach_timeout_s.max(0.1));
        app.model = cfg.model.display().to_string();
        let app = Arc::new(app);
        let load_cfg = cfg.clone();
        let load_queue = queue.clone();
        let worker = tokio::task::spawn_blocking(move || worker::spawn(load_cfg, load_queue))
            .await
            .map_err(|e| DemoError::Serve(e.to_string()))??;
        on_ready(self.addr);
        let (closing, app_for_stop) = (queue.clone(), app.clone());
        let shutdown = async move {
            stop.await;
            closing.shutdown();
            app_for_stop.close_streams();
        };
        let served = axum::serve(self.listener, router(app)).with_graceful_shutdown(shutdown);
        let result = served.await.map_err(|e| DemoError::Serve(e.to_string()));
        queue.shutdown();
        let joined = tokio::task::spawn_blocking(move || worker.join());
        let _ = tokio::time::timeout(Duration::from_secs(30), joined).await;
        let _ = std::fs::remove_dir_all(uploads.path());
        result
    }
}
