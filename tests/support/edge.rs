//! A running edge binary in front of a test origin, stopped by PID on drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corral_loadtest::client::{Fetched, HttpClient};
use corral_loadtest::playlist::MediaPlaylist;

use crate::{Scratch, binary, free_port, metric, wait_listening};

/// See the module documentation.
pub struct Edge {
    child: Child,
    /// How it was started, to start it again on the same ports.
    command: Vec<std::ffi::OsString>,
    /// Its HTTP/1.1 address.
    pub http: SocketAddr,
    /// Its metrics address.
    pub metrics: SocketAddr,
    /// The HTTP client tests use.
    pub client: HttpClient,
    /// Its TLS address (TCP for HTTP/2 and HTTP/1.1, UDP for HTTP/3), when started with TLS.
    pub tls: Option<SocketAddr>,
    /// The self-signed certificate it serves there (the one to trust).
    pub ca: Option<PathBuf>,
    scratch: Scratch,
}

impl Edge {
    /// Starts an edge in front of `origins` (one is given with the `--origin` flag, several
    /// in the file) listening where `--listen` says, with `extra` YAML appended to a config
    /// that sets its metrics port, and waits until it accepts connections.
    pub fn start(origins: &[&str], extra: &str) -> Edge {
        Edge::launch(Scratch::new("edge"), origins, extra, None)
    }

    /// Like [`Edge::start`], with TLS on a port free for TCP and UDP (HTTP/2, HTTP/1.1 and
    /// HTTP/3) with a self-signed certificate for 127.0.0.1 and localhost.
    pub fn start_tls(origins: &[&str], extra: &str) -> Edge {
        let scratch = Scratch::new("edge");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("a self-signed certificate");
        let ca = scratch.file("edge.crt", &cert.cert.pem());
        let key = scratch.file("edge.key", &cert.signing_key.serialize_pem());
        let port = loop {
            let port = free_port();
            if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
                break port;
            }
        };
        let tls: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let config = format!(
            "tls_listen: {tls}\ntls: {{ cert: {}, key: {} }}\n{extra}",
            ca.display(),
            key.display()
        );
        Edge::launch(scratch, origins, &config, Some((tls, ca)))
    }

    fn launch(
        scratch: Scratch,
        origins: &[&str],
        extra: &str,
        tls: Option<(SocketAddr, PathBuf)>,
    ) -> Edge {
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let mut config = format!("metrics_listen: {metrics}\nlog_level: info\n{extra}");
        let mut command = Command::new(binary("edge"));
        match origins {
            [one] => {
                command.arg("--origin").arg(one);
            }
            several => {
                config.push_str("\norigins:\n");
                for o in several {
                    config.push_str(&format!("  - {o}\n"));
                }
            }
        }
        let path = scratch.file("edge.yaml", &config);
        command
            .arg("--config")
            .arg(&path)
            .arg("--listen")
            .arg(http.to_string());
        let args: Vec<std::ffi::OsString> = command.get_args().map(Into::into).collect();
        let child = spawn_logged(&args, &scratch.0.join("edge.log"));
        let mut edge = Edge {
            child,
            command: args,
            http,
            metrics,
            client: HttpClient::new(Duration::from_secs(20)),
            tls: tls.as_ref().map(|(addr, _)| *addr),
            ca: tls.map(|(_, ca)| ca),
            scratch,
        };
        let log = edge.scratch.0.join("edge.log");
        let mut addrs = vec![edge.http, edge.metrics];
        addrs.extend(edge.tls);
        wait_listening(&mut edge.child, &addrs, "edge", &log);
        edge
    }

    /// Kills it (SIGKILL, a crash: its connections reset).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills it (SIGKILL, a crash: its players' connections reset) and starts it again with
    /// the same config on the same ports, its cache empty; returns once it listens.
    pub fn crash_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = self.scratch.0.join("edge.log");
        self.child = spawn_logged(&self.command, &log);
        let mut addrs = vec![self.http, self.metrics];
        addrs.extend(self.tls);
        wait_listening(&mut self.child, &addrs, "edge", &log);
    }

    /// Its resident memory in kB (VmRSS).
    pub fn rss_kb(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))?
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }

    /// Sends SIGTERM (a graceful stop) and returns at once.
    pub fn terminate(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }

    /// Waits up to `limit` for the process to exit; its status, if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        crate::wait_exit(&mut self.child, limit)
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What the edge logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.scratch.0.join("edge.log")).unwrap_or_default()
    }

    /// `http://<edge><path>`.
    pub fn url(&self, path: &str) -> http::Uri {
        format!("http://{}{path}", self.http)
            .parse()
            .expect("valid URI")
    }

    /// GETs `path` through the edge.
    pub async fn get(&self, path: &str) -> Fetched {
        self.client
            .get(&self.url(path), &[])
            .await
            .unwrap_or_else(|e| panic!("GET {path} through the edge: {e}\n{}", self.log()))
    }

    /// A sample of the edge's metrics (0 when absent).
    pub async fn metric(&self, sample: &str) -> f64 {
        let uri = format!("http://{}/metrics", self.metrics)
            .parse()
            .expect("valid URI");
        let r = self.client.get(&uri, &[]).await.expect("metrics answer");
        metric(std::str::from_utf8(&r.body).expect("utf-8"), sample)
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(None) = self.child.try_wait() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.wait();
    }
}

/// Starts the edge binary with `args`, its output appended to `log`.
fn spawn_logged(args: &[std::ffi::OsString], log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(binary("edge"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("edge starts")
}

/// The media playlist the edge tests watch.
pub const PLAYLIST: &str = "/live/demo/360p/index.m3u8";

/// An origin config with the test ladder and the `demo` test source at 640x360.
pub fn origin_config() -> String {
    format!(
        "{}\nstreams:\n  - name: demo\n    source: testsrc\n    testsrc: {{ width: 640, height: 360 }}\n",
        crate::TEST_LADDER
    )
}

/// Requests of `kind` the origin has answered, any status.
pub async fn origin_requests(origin: &crate::Origin, kind: &str) -> f64 {
    crate::metric_sum(
        &origin.metrics_text().await,
        &format!("corral_origin_http_requests_total{{kind=\"{kind}\""),
    )
}

/// [`PLAYLIST`] through the edge (HTTP/1.1), once the stream is live there.
pub async fn live_playlist(edge: &Edge) -> MediaPlaylist {
    live_playlist_of(edge, PLAYLIST).await
}

/// The media playlist at `path` through the edge (HTTP/1.1), once the stream is live there.
pub async fn live_playlist_of(edge: &Edge, path: &str) -> MediaPlaylist {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = edge.get(path).await;
        if r.status == 200
            && let Ok(p) = MediaPlaylist::parse(std::str::from_utf8(&r.body).expect("utf-8"))
            && p.preload_hint.is_some()
        {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "the stream never went live through the edge\n{}",
            edge.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One LL-HLS viewer step through the edge on the media playlist at `path`: the blocking
/// playlist for the hinted part, then the part. A failed request is retried once (a player's
/// retry budget); returns the new playlist, and how many retries it took.
pub async fn viewer_step(
    edge: &Edge,
    path: &str,
    playlist: &MediaPlaylist,
) -> (MediaPlaylist, usize) {
    let hint = playlist.preload_hint.clone().expect("a hinted part");
    let (msn, part) = MediaPlaylist::part_position(&hint).expect("msn.part.m4s");
    let folder = &path[..path.rfind('/').expect("a path") + 1];
    let mut retries = 0;
    let mut fetch = async |path: String| {
        for attempt in 0..2 {
            match edge.client.get(&edge.url(&path), &[]).await {
                Ok(r) if r.status == 200 => return r,
                other => {
                    let what = other
                        .map(|r| r.status.to_string())
                        .unwrap_or_else(|e| e.to_string());
                    assert!(
                        attempt == 0,
                        "GET {path} failed twice: {what}\n{}",
                        edge.log()
                    );
                    retries += 1;
                }
            }
        }
        unreachable!("the loop returns or fails")
    };
    let listed = fetch(format!("{path}?_HLS_msn={msn}&_HLS_part={part}")).await;
    fetch(format!("{folder}{hint}")).await;
    let next = MediaPlaylist::parse(std::str::from_utf8(&listed.body).expect("utf-8"))
        .expect("a playlist");
    (next, retries)
}
