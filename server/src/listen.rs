//! Accepting connections: at most [`Connections::max`] held at once (the rest wait in the
//! listener's backlog), each given [`Connections::header_read_timeout`] to send its request's
//! headers, every request told its peer's address (axum's `ConnectInfo`, which
//! [`crate::client`] reads), and a graceful stop that lets the answers in progress end.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The bounds of the connections themselves, before any request is read.
#[derive(Clone, Copy, Debug)]
pub struct Connections {
    pub max: usize,
    pub header_read_timeout: Duration,
}

impl Default for Connections {
    fn default() -> Self {
        Self {
            max: wire::limits::MAX_CONNECTIONS,
            header_read_timeout: Duration::from_secs(wire::limits::HEADER_READ_TIMEOUT_S),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` ends, then waits for the connections still open.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    connections: Connections,
    shutdown: impl Future<Output = ()>,
) {
    let places = Arc::new(Semaphore::new(connections.max));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(connections.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let place = tokio::select! {
            place = Arc::clone(&places).acquire_owned() => place.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of files or a reset before accept: the next one may succeed.
                    tracing::warn!(%error, "a connection could not be accepted");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = tower::ServiceExt::map_request(
            app.clone(),
            move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request
            },
        );
        let connection = builder
            .serve_connection_with_upgrades(
                TokioIo::new(stream),
                hyper_util::service::TowerToHyperService::new(service),
            )
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away mid-request is no error of the server's.
            let _ = connection.await;
            drop(place);
        });
    }
    graceful.shutdown().await;
}
