//! Cache-hit throughput by protocol: `connections` clients, each with `streams` requests in
//! flight, ask for one URL (a cached object) over and over for `duration`, over HTTP/1.1
//! (plain or TLS), HTTP/2 (TLS) or HTTP/3 (QUIC). Reports requests per second, latency
//! quantiles and, given the server's PID, the server's CPU time per request (from
//! `/proc/<pid>/stat`), so the protocols can be compared on the same object in one run.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Buf, Bytes};
use hdrhistogram::Histogram;
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty};
use parking_lot::Mutex;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

/// The protocol to fetch with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1, over TLS for an `https` URL.
    H1,
    /// HTTP/2 over TLS.
    H2,
    /// HTTP/3 over QUIC.
    H3,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct HitsPlan {
    /// The URL (`http://` for plain HTTP/1.1, `https://` otherwise).
    pub url: Uri,
    /// The protocol.
    pub protocol: Protocol,
    /// Client connections.
    pub connections: usize,
    /// Requests in flight on each connection (1 for HTTP/1.1).
    pub streams: usize,
    /// How long to run.
    pub duration: Duration,
    /// The PEM certificate to trust for TLS and QUIC.
    pub ca: Option<PathBuf>,
    /// The server's processes (nginx's workers, say), to measure their CPU time together.
    pub server_pids: Vec<u32>,
}

/// The outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HitsReport {
    /// `hits`: tells this report from the other modes'.
    pub scenario: String,
    /// The protocol.
    pub protocol: Protocol,
    /// Connections and requests in flight on each.
    pub connections: usize,
    /// Requests in flight per connection.
    pub streams: usize,
    /// Seconds measured.
    pub seconds: f64,
    /// Requests answered 200 with the whole body.
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Requests per second.
    pub requests_per_second: f64,
    /// Body bytes per second.
    pub bytes_per_second: f64,
    /// Latency quantiles, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// The server's CPU time (user + system) per request, microseconds.
    pub server_cpu_us_per_request: Option<f64>,
    /// The server's CPU use over the run, in cores.
    pub server_cores: Option<f64>,
    /// HTTP/1.1 connections the server closed between requests (nginx does after
    /// `keepalive_requests`), each replaced by a new one as browsers do.
    #[serde(default)]
    pub reconnects: u64,
}

struct Tally {
    requests: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    reconnects: AtomicU64,
    latency: Mutex<Histogram<u64>>,
    stop: AtomicBool,
}

impl Tally {
    fn record(&self, started: Instant, result: anyhow::Result<usize>) {
        match result {
            Ok(bytes) => {
                self.requests.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                let us = started.elapsed().as_micros() as u64;
                let _ = self.latency.lock().record(us.max(1));
            }
            Err(e) => {
                if self.errors.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(error = %e, "request failed");
                }
            }
        }
    }
}

impl HitsReport {
    /// One line for people.
    pub fn summary_line(&self) -> String {
        format!(
            "hits: {:?} × {} connections × {} streams for {:.1} s: {} requests ({:.0}/s, {:.1} MB/s), p50 {:.2} ms, p99 {:.2} ms, {} errors{}{}",
            self.protocol,
            self.connections,
            self.streams,
            self.seconds,
            self.requests,
            self.requests_per_second,
            self.bytes_per_second / 1e6,
            self.p50_ms,
            self.p99_ms,
            self.errors,
            if self.reconnects > 0 {
                format!(
                    " ({} connections closed by the server and reopened)",
                    self.reconnects
                )
            } else {
                String::new()
            },
            self.server_cpu_us_per_request
                .map_or(String::new(), |c| format!(
                    ", server {c:.1} µs CPU per request"
                ))
        )
    }
}

/// Runs `plan`.
pub async fn run(plan: &HitsPlan) -> anyhow::Result<HitsReport> {
    if plan.protocol == Protocol::H1 && plan.streams != 1 {
        bail!("HTTP/1.1 has one request in flight per connection: use --streams 1");
    }
    let tally = Arc::new(Tally {
        requests: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
        latency: Mutex::new(Histogram::new(3).context("histogram")?),
        stop: AtomicBool::new(false),
    });
    let tls = match &plan.ca {
        Some(ca) => Some(client_tls(ca, plan.protocol)?),
        None => None,
    };
    // Every connection is set up before the clock starts.
    let mut workers = Vec::new();
    for _ in 0..plan.connections {
        workers.extend(connect(plan, tls.clone()).await?);
    }
    let cpu_before = cpu_seconds_of(&plan.server_pids);
    let started = Instant::now();
    let shared = Arc::new((plan.clone(), tls));
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|w| tokio::spawn(w.run(shared.clone(), tally.clone())))
        .collect();
    tokio::time::sleep(plan.duration).await;
    tally.stop.store(true, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after = cpu_seconds_of(&plan.server_pids);
    for t in tasks {
        let _ = t.await;
    }
    let requests = tally.requests.load(Ordering::Relaxed);
    let latency = tally.latency.lock();
    let cpu = cpu_before.zip(cpu_after).map(|(b, a)| a - b);
    Ok(HitsReport {
        scenario: "hits".into(),
        protocol: plan.protocol,
        connections: plan.connections,
        streams: plan.streams,
        seconds,
        requests,
        errors: tally.errors.load(Ordering::Relaxed),
        requests_per_second: requests as f64 / seconds,
        bytes_per_second: tally.bytes.load(Ordering::Relaxed) as f64 / seconds,
        p50_ms: latency.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: latency.value_at_quantile(0.99) as f64 / 1000.0,
        server_cpu_us_per_request: cpu.map(|c| c * 1e6 / requests.max(1) as f64),
        server_cores: cpu.map(|c| c / seconds),
        reconnects: tally.reconnects.load(Ordering::Relaxed),
    })
}

/// CPU seconds (user + system) of processes `pids` together so far; `None` without any, or
/// when one of them cannot be read (it exited).
fn cpu_seconds_of(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| cpu_seconds(p)).sum()
}

/// CPU seconds (user + system) of process `pid` so far.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // Linux reports these in USER_HZ, which is 100 on every architecture it supports.
    Some(ticks / 100.0)
}

fn client_tls(
    ca: &std::path::Path,
    protocol: Protocol,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("{}", ca.display()))? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![match protocol {
        Protocol::H1 => b"http/1.1".to_vec(),
        Protocol::H2 => b"h2".to_vec(),
        Protocol::H3 => b"h3".to_vec(),
    }];
    Ok(Arc::new(config))
}

/// A request loop on one connection.
enum Worker {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
    H3(h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>),
}

/// Opens one connection and returns its `streams` request loops.
async fn connect(
    plan: &HitsPlan,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> anyhow::Result<Vec<Worker>> {
    let host = plan.url.host().context("the URL has no host")?.to_string();
    let https = plan.url.scheme_str() == Some("https");
    let port = plan.url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await?
        .next()
        .context("the host does not resolve")?;
    let server_name = rustls_pki_types::ServerName::try_from(host.clone())?;
    let workers = match plan.protocol {
        Protocol::H1 | Protocol::H2 => {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let io: Box<dyn Io> = match (&tls, https) {
                (Some(tls), true) => {
                    let connector = tokio_rustls::TlsConnector::from(tls.clone());
                    Box::new(connector.connect(server_name, tcp).await?)
                }
                (None, true) => bail!("an https URL needs --ca"),
                _ => Box::new(tcp),
            };
            let io = hyper_util::rt::TokioIo::new(io);
            if plan.protocol == Protocol::H1 {
                let (send, conn) = hyper::client::conn::http1::handshake(io).await?;
                tokio::spawn(conn);
                vec![Worker::H1(send)]
            } else {
                let (send, conn) =
                    hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                        .await?;
                tokio::spawn(conn);
                (0..plan.streams)
                    .map(|_| Worker::H2(send.clone()))
                    .collect()
            }
        }
        Protocol::H3 => {
            let tls = tls.context("HTTP/3 needs --ca")?;
            let crypto = quinn::crypto::rustls::QuicClientConfig::try_from((*tls).clone())?;
            let local = if addr.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let mut endpoint = quinn::Endpoint::client(local.parse()?)?;
            endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
            let quic = endpoint.connect(addr, &host)?.await?;
            let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(quic)).await?;
            tokio::spawn(async move {
                let _endpoint = endpoint;
                let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
            });
            (0..plan.streams)
                .map(|_| Worker::H3(send.clone()))
                .collect()
        }
    };
    Ok(workers)
}

/// What a TLS or plain TCP stream is to hyper.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

impl Worker {
    /// Requests until the tally says stop. `plan_tls` is the plan and TLS set-up to reconnect with.
    async fn run(
        mut self,
        plan_tls: Arc<(HitsPlan, Option<Arc<rustls::ClientConfig>>)>,
        tally: Arc<Tally>,
    ) {
        let (plan, tls) = &*plan_tls;
        while !tally.stop.load(Ordering::Relaxed) {
            if let Worker::H1(send) = &mut self
                && send.ready().await.is_err()
            {
                // The server closed the connection after its last answer (`Connection:
                // close`), as HTTP/1.1 lets it: no request was lost, a client opens another.
                match connect(plan, tls.clone()).await {
                    Ok(mut fresh) if !fresh.is_empty() => {
                        self = fresh.swap_remove(0);
                        tally.reconnects.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Ok(_) => return,
                    Err(e) => {
                        tally.record(Instant::now(), Err(e.context("reconnecting")));
                        return;
                    }
                }
            }
            let started = Instant::now();
            let result = self.fetch(&plan.url).await;
            let failed = result.is_err();
            tally.record(started, result);
            if failed && matches!(self, Worker::H1(ref s) if s.is_closed()) {
                return;
            }
        }
    }

    /// One GET; the body's length.
    async fn fetch(&mut self, url: &Uri) -> anyhow::Result<usize> {
        let target = url.path_and_query().map_or("/", |p| p.as_str());
        match self {
            Worker::H1(send) => {
                send.ready().await?;
                let req = Request::get(target)
                    .header(
                        http::header::HOST,
                        url.authority().map_or("", |a| a.as_str()),
                    )
                    .body(Empty::new())?;
                let resp = send.send_request(req).await?;
                read_body(resp).await
            }
            Worker::H2(send) => {
                let req = Request::get(url.clone()).body(Empty::new())?;
                let resp = send.send_request(req).await?;
                read_body(resp).await
            }
            Worker::H3(send) => {
                let req = Request::get(url.clone()).body(())?;
                let mut stream = send.send_request(req).await?;
                stream.finish().await?;
                let resp = stream.recv_response().await?;
                if resp.status() != 200 {
                    bail!("status {}", resp.status());
                }
                let mut len = 0;
                while let Some(chunk) = stream.recv_data().await? {
                    len += chunk.remaining();
                }
                Ok(len)
            }
        }
    }
}

async fn read_body(resp: http::Response<hyper::body::Incoming>) -> anyhow::Result<usize> {
    if resp.status() != 200 {
        bail!("status {}", resp.status());
    }
    let body = resp.into_body().collect().await?;
    Ok(body.to_bytes().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_cpu_time() {
        let cpu = cpu_seconds(std::process::id()).expect("/proc/self/stat reads");
        assert!(cpu >= 0.0);
    }

    #[test]
    fn several_processes_cpu_times_add_up_and_a_missing_one_spoils_the_sum() {
        let me = std::process::id();
        let one = cpu_seconds_of(&[me]).expect("this process reads");
        let two = cpu_seconds_of(&[me, me]).expect("this process reads twice");
        // The clock may tick between the reads, by at most a few ticks.
        assert!(two >= 2.0 * one && two <= 2.0 * one + 0.1, "{one} {two}");
        assert_eq!(cpu_seconds_of(&[]), None);
        // PIDs stop short of 2^22 on Linux: this one cannot exist.
        assert_eq!(cpu_seconds_of(&[me, u32::MAX]), None);
    }
}
