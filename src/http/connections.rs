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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

use super::downloads::Downloads;
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

/// One open connection: what its requests update (atomics, no registry lock per request).
struct Connection {
    /// Requests in flight.
    busy: AtomicUsize,
    /// When it last became idle (or opened), in nanoseconds since the registry's epoch.
    idle_since: AtomicU64,
    /// Told to close; its descriptor is released when its task ends.
    close: Notify,
}

impl Connection {
    fn started(&self) {
        self.busy.fetch_add(1, Ordering::AcqRel);
    }

    fn finished(&self, epoch: Instant) {
        if self.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since.store(nanos_since(epoch), Ordering::Release);
        }
    }

    /// How long it has been idle (`None` while busy).
    fn idle_for(&self, epoch: Instant) -> Option<Duration> {
        (self.busy.load(Ordering::Acquire) == 0).then(|| {
            let since = self.idle_since.load(Ordering::Acquire);
            Duration::from_nanos(nanos_since(epoch).saturating_sub(since))
        })
    }
}

fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(
        crate::clock::monotonic_now()
            .saturating_duration_since(epoch)
            .as_nanos(),
    )
    .unwrap_or(u64::MAX)
}

/// One open connection as the registry sees it.
struct Entry {
    /// Told to close (set under the registry lock, so one eviction at a time).
    closing: bool,
    connection: Arc<Connection>,
}

/// Every open connection, shared by the listeners of one server (plain HTTP and HTTPS).
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Mutex<HashMap<u64, Entry>>>,
    next: Arc<AtomicU64>,
    /// Signalled whenever a connection's task ends (its descriptor is free).
    freed: Arc<Notify>,
    /// The origin of the connections' idle clocks.
    epoch: Instant,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            inner: Arc::default(),
            next: Arc::default(),
            freed: Arc::default(),
            epoch: crate::clock::monotonic_now(),
        }
    }
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
                            .filter(|e| !e.closing)
                            .filter_map(|e| {
                                let idle = e.connection.idle_for(self.epoch)?;
                                Some((idle, e))
                            })
                            .max_by_key(|(idle, _)| *idle)
                            .map(|(_, e)| e)
                        {
                            e.closing = true;
                            e.connection.close.notify_one();
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

    fn register(&self) -> (u64, Arc<Connection>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(nanos_since(self.epoch)),
            close: Notify::new(),
        });
        if let Ok(mut map) = self.inner.lock() {
            map.insert(
                id,
                Entry {
                    closing: false,
                    connection: connection.clone(),
                },
            );
        }
        (id, connection)
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
#[allow(clippy::too_many_arguments)]
fn spawn_connection<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    downloads: Option<Downloads>,
    registry: &Registry,
    limits: Limits,
    tls: bool,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (id, slot) = registry.register();
    let registry = registry.clone();
    let epoch = registry.epoch;
    tokio::spawn(async move {
        let tracked = slot.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request
                .extensions_mut()
                .insert(ConnectInfo(ClientAddr(peer)));
            if tls {
                request.extensions_mut().insert(super::web::OverTls);
            }
            tracked.started();
            // Prepared downloads first: no routing, no layers (see `downloads`).
            let next = match downloads.as_ref().and_then(|d| d.hit(&request, tls)) {
                Some(response) => Ok(response),
                None => Err((app.clone(), request)),
            };
            let tracked = tracked.clone();
            async move {
                let response = match next {
                    Ok(response) => Ok(response),
                    Err((app, request)) => app.oneshot(request.map(Body::new)).await,
                };
                tracked.finished(epoch);
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
                _ = slot.close.notified() => {
                    // Evicted to make room: only idle connections are chosen.
                    break;
                }
                _ = tick.tick() => {
                    if slot.idle_for(epoch).is_some_and(|d| d >= idle_timeout) {
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
    downloads: Option<Downloads>,
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
                spawn_connection(io, peer, app.clone(), downloads.clone(), &registry, limits, tls, stop_rx.clone());
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
