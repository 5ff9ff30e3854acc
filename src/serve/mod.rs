//! `dermclass serve`: an HTTP inference server on axum and tokio.
//!
//! It speaks the Open Inference Protocol (`/v2/...`, as KServe, Triton and Seldon do), takes
//! raw or multipart images at `POST /predict`, adds a Grad-CAM heat map at `POST /explain`,
//! and serves a page at `GET /` that shows both. Inference runs on worker threads, each
//! with its own model ([`engine`]); the async side only moves bytes. Every bad request is
//! answered with a 4xx and a JSON `{"error": ...}` that names the problem.

pub mod engine;
mod handlers;
pub mod protocol;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::sync::oneshot;

pub use engine::{Engine, ModelInfo, Reply, Task};

/// Settings of a server.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Address to bind; port 0 picks a free one.
    pub addr: SocketAddr,
    /// Largest request body in bytes.
    pub body_limit: usize,
    /// Longest a request may take, reading its body included.
    pub timeout: Duration,
    /// Stop gracefully on SIGTERM or Ctrl-C (the command line does; tests stop it by hand).
    pub handle_signals: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit: 20 * 1024 * 1024,
            timeout: Duration::from_secs(30),
            handle_signals: false,
        }
    }
}

/// What the handlers share.
pub(crate) struct AppState {
    engine: Engine,
    config: ServeConfig,
}

/// A running server. [`Server::shutdown`] stops it gracefully: no new connections, requests
/// in flight finish.
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Server {
    /// Binds `config.addr` (so an address in use fails here, at once) and serves `engine`
    /// on a background thread.
    pub fn start(engine: Engine, config: ServeConfig) -> Result<Self> {
        let listener = std::net::TcpListener::bind(config.addr)
            .with_context(|| format!("cannot listen on {}", config.addr))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let state = Arc::new(AppState { engine, config });
        let thread = std::thread::Builder::new()
            .name("dermclass-serve".into())
            .spawn(move || run(listener, state, stopped))
            .context("cannot start the server thread")?;
        Ok(Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, lets requests in flight finish, and waits.
    pub fn shutdown(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.join()
    }

    /// Waits until the server stops (on a signal when it handles them).
    pub fn wait(mut self) -> Result<()> {
        self.join()
    }

    fn join(&mut self) -> Result<()> {
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| anyhow::anyhow!("the server thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.join();
    }
}

fn run(
    listener: std::net::TcpListener,
    state: Arc<AppState>,
    stopped: oneshot::Receiver<()>,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let signals = state.config.handle_signals;
        axum::serve(listener, router(state))
            .with_graceful_shutdown(stop_signal(stopped, signals))
            .await
            .context("the server stopped with an error")
    })
}

/// Resolves on [`Server::shutdown`], or on SIGTERM / Ctrl-C when `signals`.
async fn stop_signal(stopped: oneshot::Receiver<()>, signals: bool) {
    if !signals {
        let _ = stopped.await;
        return;
    }
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = stopped => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

/// Every route of the server.
fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.body_limit;
    Router::new()
        .route("/", get(handlers::page))
        .route("/v2", get(handlers::server_metadata))
        .route("/v2/health/live", get(handlers::live))
        .route("/v2/health/ready", get(handlers::ready))
        .route("/v2/models/{name}", get(handlers::model_metadata))
        .route("/v2/models/{name}/ready", get(handlers::model_ready))
        .route("/v2/models/{name}/infer", post(handlers::infer))
        .route("/predict", post(handlers::predict))
        .route("/explain", post(handlers::explain))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            handlers::time_limit,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}
