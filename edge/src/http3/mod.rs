//! HTTP/3 on the TLS listener's UDP port (quinn for QUIC, h3 for HTTP/3), in front of the
//! same proxy, cache and cache lock as the TCP listeners.
//!
//! # Design: an in-process bridge into the pingora proxy path
//!
//! pingora has no HTTP/3, but its proxy accepts a downstream session of any protocol through
//! its custom session trait. Each HTTP/3 request becomes one such session
//! ([`session::H3Session`]) and is handed to the very [`HttpProxy`] that serves the TCP
//! listeners (`process_new_http`, as pingora itself does for each HTTP/2 stream). So there is
//! one cache, one cache lock and one upstream pool: an HTTP/3 player and an HTTP/2 player
//! asking for the same uncached part wait on the same fetch, and every phase (request checks,
//! signatures, cache key, Age, X-Cache, playlist signing, metrics) runs unchanged.
//!
//! The alternative, a separate front that calls into the cache and upstream code itself,
//! would have to duplicate the proxy's phases and keep a second lock coherent with pingora's;
//! a loopback hop (HTTP/3 terminated here, then proxied to our own TCP listener) would cost a
//! socket pair, a second parse and a copy per request. The bridge costs a header conversion
//! per request (`http::Request` to pingora's `RequestHeader`, and back for the response).
//!
//! Measured (BENCHMARKS.md, `scripts/bench-edge-protocols.sh`, 2 cores): a cached 427-byte
//! playlist costs the edge 23.0 µs of CPU per request over HTTP/3 against 22.1 µs over
//! HTTP/2, so the bridge is about a microsecond. A cached 123 KB part costs 168 µs over
//! HTTP/3 against 97 µs over HTTP/2: that difference is QUIC's per-packet encryption and
//! sending (about a hundred packets per part), not the bridge.
//!
//! # Bounds
//!
//! At most `http3.max_connections` QUIC connections are open (one more is refused in its
//! handshake); they share one UDP socket, so unlike TCP connections they cost no file
//! descriptors and have a limit of their own. Each connection has at most `http3.max_streams`
//! requests open, `http3.send_window` bytes in flight, small receive windows (players send
//! only headers), an idle timeout, and `max_header_bytes` for a request's header block (h3
//! answers 431 above it). A stream opened and never finished is reset after
//! `http3.header_timeout`. Random datagrams are dropped by quinn before any state is kept.
//!
//! # Shutdown
//!
//! On the server's shutdown (SIGTERM) every connection sends GOAWAY: requests already open
//! finish (within `shutdown_grace`), new ones go elsewhere; then the endpoint closes its
//! connections, before the process exits.

pub mod session;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::HttpServerApp;
use pingora::protocols::http::ServerSession;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::task::JoinSet;

use crate::admission::ConnectionLimit;
use crate::config::EdgeConfig;
use crate::proxy::Edge;
use session::H3Session;

/// Per-stream receive window: a request is a header block (players send no bodies).
const STREAM_RECEIVE_WINDOW: u32 = 64 << 10;
/// Per-connection receive window.
const RECEIVE_WINDOW: u32 = 256 << 10;
/// Unidirectional streams a client may open: HTTP/3's control and QPACK streams, with room
/// for a few reserved (grease) ones.
const MAX_UNI_STREAMS: u32 = 8;

/// The HTTP/3 listener, run as a background service of the edge's server.
pub struct Http3 {
    socket: parking_lot::Mutex<Option<UdpSocket>>,
    local: SocketAddr,
    server_config: quinn::ServerConfig,
    proxy: Arc<HttpProxy<Edge>>,
    limit: Arc<ConnectionLimit>,
    header_timeout: Duration,
    max_header_bytes: u64,
    /// How long open requests get to finish after GOAWAY when the edge stops: the edge's
    /// grace period less a second to close the connections before the process exits.
    drain: Duration,
}

impl Http3 {
    /// Binds `config.tls_listen`'s UDP port with `config.tls`'s certificate, serving through
    /// `proxy`, counting connections against `limit`.
    pub fn bind(
        config: &EdgeConfig,
        cert: &std::path::Path,
        key: &std::path::Path,
        proxy: Arc<HttpProxy<Edge>>,
        limit: Arc<ConnectionLimit>,
    ) -> anyhow::Result<Self> {
        let tls = tls_config(cert, key)?;
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .context("http3: the TLS config cannot serve QUIC")?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let h3 = &config.http3;
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_concurrent_bidi_streams(h3.max_streams.into())
            .max_concurrent_uni_streams(MAX_UNI_STREAMS.into())
            .stream_receive_window(STREAM_RECEIVE_WINDOW.into())
            .receive_window(RECEIVE_WINDOW.into())
            .send_window(h3.send_window)
            .max_idle_timeout(Some(
                Duration::from_secs_f64(h3.idle_timeout)
                    .try_into()
                    .context("http3.idle_timeout")?,
            ));
        server_config.transport_config(Arc::new(transport));
        let socket = UdpSocket::bind(config.tls_listen)
            .with_context(|| format!("http3: cannot listen on udp {}", config.tls_listen))?;
        let local = socket.local_addr()?;
        Ok(Self {
            socket: parking_lot::Mutex::new(Some(socket)),
            local,
            server_config,
            proxy,
            limit,
            header_timeout: Duration::from_secs_f64(h3.header_timeout),
            max_header_bytes: config.max_header_bytes as u64,
            drain: Duration::from_secs(config.shutdown_grace.saturating_sub(1)),
        })
    }

    /// The UDP address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

/// TLS 1.3 (QUIC needs it) with `cert` and `key`, offering `h3`.
fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<rustls::ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("http3: cannot read the certificate {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("http3: cannot read the key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("http3: TLS 1.3")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("http3: the certificate and key do not make a TLS config")?;
    tls.alpn_protocols = vec![b"h3".to_vec()];
    Ok(tls)
}

#[async_trait]
impl BackgroundService for Http3 {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(socket) = self.socket.lock().take() else {
            return;
        };
        let endpoint = match quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(self.server_config.clone()),
            socket,
            Arc::new(quinn::TokioRuntime),
        ) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(listen = %self.local, error = %e, "http3: cannot start QUIC");
                return;
            }
        };
        tracing::info!(listen = %self.local, "HTTP/3 listening (QUIC)");
        let mut connections = JoinSet::new();
        loop {
            let incoming = tokio::select! {
                incoming = endpoint.accept() => incoming,
                _ = shutdown.changed() => break,
            };
            let Some(incoming) = incoming else { break };
            let Some(admitted) = self.limit.admit() else {
                incoming.refuse();
                continue;
            };
            let serve = Connection {
                proxy: self.proxy.clone(),
                header_timeout: self.header_timeout,
                max_header_bytes: self.max_header_bytes,
                server: self.local,
                shutdown: shutdown.clone(),
            };
            connections.spawn(async move {
                let _admitted = admitted;
                serve.run(incoming).await;
            });
            // Reap finished connections so the set does not grow with the connections served.
            while connections.try_join_next().is_some() {}
        }
        // GOAWAY has gone out on every connection (each watches `shutdown`); give their open
        // requests the drain period, then close what is left.
        let drained = tokio::time::timeout(self.drain, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::info!("http3: requests still open after the drain period were reset");
        }
        endpoint.close(quinn::VarInt::from_u32(0), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    }
}

/// Serves one QUIC connection.
struct Connection {
    proxy: Arc<HttpProxy<Edge>>,
    header_timeout: Duration,
    max_header_bytes: u64,
    server: SocketAddr,
    shutdown: ShutdownWatch,
}

impl Connection {
    async fn run(mut self, incoming: quinn::Incoming) {
        let remote = incoming.remote_address();
        let quic = match incoming.await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(%remote, error = %e, "http3: handshake failed");
                return;
            }
        };
        let built = h3::server::builder()
            .max_field_section_size(self.max_header_bytes)
            .build::<_, Bytes>(h3_quinn::Connection::new(quic.clone()))
            .await;
        let mut h3 = match built {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(%remote, error = %e, "http3: connection setup failed");
                return;
            }
        };
        let mut requests = JoinSet::new();
        let mut stopping = *self.shutdown.borrow();
        if stopping {
            let _ = h3.shutdown(0).await;
        }
        loop {
            let accepted = tokio::select! {
                accepted = h3.accept() => accepted,
                _ = self.shutdown.changed(), if !stopping => {
                    stopping = true;
                    // GOAWAY: requests already open finish; accept() ends once they have.
                    let _ = h3.shutdown(0).await;
                    continue;
                }
            };
            match accepted {
                Ok(Some(resolver)) => {
                    let request = Request {
                        proxy: self.proxy.clone(),
                        quic: quic.clone(),
                        server: self.server,
                        header_timeout: self.header_timeout,
                        shutdown: self.shutdown.clone(),
                    };
                    requests.spawn(request.serve(resolver));
                    while requests.try_join_next().is_some() {}
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(%remote, error = %e, "http3: connection closed");
                    break;
                }
            }
        }
        while requests.join_next().await.is_some() {}
    }
}

/// Serves one request stream.
struct Request {
    proxy: Arc<HttpProxy<Edge>>,
    quic: quinn::Connection,
    server: SocketAddr,
    header_timeout: Duration,
    shutdown: ShutdownWatch,
}

type Resolver = h3::server::RequestResolver<h3_quinn::Connection, Bytes>;

impl Request {
    async fn serve(self, resolver: Resolver) {
        let remote = self.quic.remote_address();
        let resolved = tokio::time::timeout(self.header_timeout, resolver.resolve_request()).await;
        let (request, stream) = match resolved {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::debug!(%remote, error = %e, "http3: bad request stream");
                return;
            }
            Err(_) => {
                // Dropping the resolver resets the stream.
                tracing::debug!(%remote, "http3: request headers not sent in time");
                return;
            }
        };
        let session = match H3Session::new(request, stream, self.quic, self.server) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%remote, error = %e, "http3: request refused");
                return;
            }
        };
        self.proxy
            .process_new_http(ServerSession::new_custom(Box::new(session)), &self.shutdown)
            .await;
    }
}
