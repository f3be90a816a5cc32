//! The accept loop: every connection lives under limits, so slow or silent clients cannot
//! starve relying parties fetching CRLs, CA certificates and bundles. A client gets
//! `header_read_timeout_secs` to send a request's headers and `body_read_timeout_secs` to send
//! its body; a connection with no request in flight is closed after `idle_timeout_secs`; at most
//! `max_connections` are open at once (never more than the descriptor limit allows), and when
//! the cap is reached the connection idle the longest is closed to admit the new one (a new
//! connection is turned away only when every open one is busy). axum's own `serve` has none of
//! these, so the loop drives hyper directly.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

use super::tls::ClientAddr;
use crate::config::ServerConfig;

/// Descriptors kept free for the store, published files, outgoing fetches and the log.
const RESERVED_DESCRIPTORS: u64 = 64;

/// The limits in force, from the configuration and the process's descriptor limit.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn from_config(config: &ServerConfig) -> Limits {
        let descriptors = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        let fit = descriptors.saturating_sub(RESERVED_DESCRIPTORS).max(8);
        Limits {
            header_read_timeout: Duration::from_secs(config.header_read_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(config.idle_timeout_secs.max(1)),
            max_connections: (config.max_connections as u64).min(fit).max(1) as usize,
        }
    }
}

/// One open connection as the registry sees it.
struct Entry {
    /// Told to close; its descriptor is released when its task ends.
    closing: bool,
    /// Requests in flight.
    busy: usize,
    /// When it last became idle (or opened).
    idle_since: Instant,
    close: Arc<Notify>,
}

/// Every open connection, shared by the listeners of one server (plain HTTP and HTTPS).
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<HashMap<u64, Entry>>>,
    next: Arc<AtomicU64>,
    /// Signalled whenever a connection's task ends (its descriptor is free).
    freed: Arc<Notify>,
}

impl Registry {
    pub fn open_connections(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Waits until one more connection fits under the cap: when it is reached, the connection
    /// idle the longest is told to close, and the caller waits for its descriptor to be freed
    /// (while every connection is busy, new ones wait in the kernel's accept queue).
    async fn make_room(&self, limits: &Limits) {
        loop {
            let full = match self.inner.lock() {
                Ok(mut map) if map.len() >= limits.max_connections => {
                    let closing = map.values().filter(|e| e.closing).count();
                    // Ask one more idle connection to go unless enough are already leaving.
                    if closing == 0 {
                        if let Some(e) = map
                            .values_mut()
                            .filter(|e| e.busy == 0 && !e.closing)
                            .min_by_key(|e| e.idle_since)
                        {
                            e.closing = true;
                            e.close.notify_one();
                        }
                    }
                    true
                }
                _ => false,
            };
            if !full {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), self.freed.notified()).await;
        }
    }

    fn register(&self) -> (u64, Arc<Notify>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let close = Arc::new(Notify::new());
        if let Ok(mut map) = self.inner.lock() {
            map.insert(
                id,
                Entry {
                    closing: false,
                    busy: 0,
                    idle_since: crate::clock::monotonic_now(),
                    close: close.clone(),
                },
            );
        }
        (id, close)
    }

    fn started(&self, id: u64) {
        if let Ok(mut map) = self.inner.lock() {
            if let Some(e) = map.get_mut(&id) {
                e.busy += 1;
            }
        }
    }

    fn finished(&self, id: u64) {
        if let Ok(mut map) = self.inner.lock() {
            if let Some(e) = map.get_mut(&id) {
                e.busy = e.busy.saturating_sub(1);
                if e.busy == 0 {
                    e.idle_since = crate::clock::monotonic_now();
                }
            }
        }
    }

    /// How long the connection has been idle (`None` while busy or once gone).
    fn idle_for(&self, id: u64) -> Option<Duration> {
        let map = self.inner.lock().ok()?;
        let e = map.get(&id)?;
        (e.busy == 0).then(|| e.idle_since.elapsed())
    }

    fn remove(&self, id: u64) {
        if let Ok(mut map) = self.inner.lock() {
            map.remove(&id);
        }
        self.freed.notify_waiters();
    }
}

/// Serves `app` on an accepted connection under the limits; `tls` marks HTTPS requests.
/// When `stop` turns true the connection finishes its request in flight and closes.
fn spawn_connection<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    registry: &Registry,
    limits: Limits,
    tls: bool,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (id, close) = registry.register();
    let registry = registry.clone();
    tokio::spawn(async move {
        let tracked = registry.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request
                .extensions_mut()
                .insert(ConnectInfo(ClientAddr(peer)));
            if tls {
                request.extensions_mut().insert(super::web::OverTls);
            }
            tracked.started(id);
            let app = app.clone();
            let tracked = tracked.clone();
            async move {
                let response = app.oneshot(request.map(Body::new)).await;
                tracked.finished(id);
                response
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true);
        let mut connection = Box::pin(builder.serve_connection(TokioIo::new(io), service));
        let idle_timeout = limits.idle_timeout;
        let mut tick = tokio::time::interval(idle_timeout / 4);
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                    break;
                }
                _ = close.notified() => {
                    // Evicted to make room: only idle connections are chosen.
                    break;
                }
                _ = tick.tick() => {
                    if registry.idle_for(id).is_some_and(|d| d >= idle_timeout) {
                        break;
                    }
                }
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection.as_mut()).await;
                    break;
                }
            }
        }
        // The connection (and its descriptor) is dropped before the slot is freed.
        drop(connection);
        registry.remove(id);
    });
}

/// How long a shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Accepts connections from `listener` (plain TCP or TLS) until `shutdown` resolves, then lets
/// the requests in flight finish (for at most `SHUTDOWN_GRACE`).
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    registry: Registry,
    limits: Limits,
    tls: bool,
    shutdown: impl std::future::Future<Output = ()>,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            // Room first, then accept: open descriptors never pass the cap. axum's listeners
            // wait and retry on accept errors instead of spinning.
            (io, peer) = async {
                registry.make_room(&limits).await;
                listener.accept().await
            } => {
                spawn_connection(io, peer, app.clone(), &registry, limits, tls, stop_rx.clone());
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let deadline = crate::clock::monotonic_now() + SHUTDOWN_GRACE;
    while registry.open_connections() > 0 && crate::clock::monotonic_now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
