//! Helpers for the end-to-end tests: finding the built binaries, starting an origin on free
//! loopback ports with a config of the test's choosing, and stopping it by PID.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod chat;
pub mod edge;
pub mod h3;

use corral_loadtest::client::{Fetched, HttpClient};
use corral_loadtest::playlist::MediaPlaylist;

/// Tests that run an origin take the lock so their ffmpeg ladders do not compete for the CPU.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An origin config for a published stream `studio` (key `studio-key`) on the 180p test
/// ladder, taking RTMP on `rtmp` (SRT on a free port); with `follow`, a standby that follows
/// that primary. The redundancy and fault tests run a primary and a standby with it.
pub fn published_origin_config(rtmp: u16, follow: Option<SocketAddr>) -> String {
    let follow = follow.map_or(String::new(), |p| {
        format!("redundancy: {{ follow: \"{p}\" }}\n")
    });
    format!(
        "transcoder:
  x264_preset: ultrafast
  ladder:
    - {{ name: 180p, width: 320, height: 180, bitrate: 300k }}
  audio: {{ name: audio, bitrate: 64k }}
ingest:
  rtmp: {{ listen: 127.0.0.1:{rtmp} }}
  srt: {{ listen: 127.0.0.1:{srt} }}
  media_timeout: 1
  reconnect_grace: 30
{follow}streams:
  - {{ name: studio, source: publish, key: studio-key }}
",
        srt = free_udp_port(),
    )
}

/// The watch page's directory (its hls.js is installed by `make test`'s set-up).
pub fn web_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web")
}

/// Runs tests/browser/watch.js (a headless chromium on the watch page) with `args` (its mode
/// and theirs) to its end; its JSON report.
pub async fn browser_report(args: Vec<std::ffi::OsString>) -> serde_json::Value {
    browser_script_report("watch.js", args).await
}

/// Runs the node script `script` of tests/browser/ with `args` to its end; the one JSON report
/// it prints.
pub async fn browser_script_report(
    script: &str,
    args: Vec<std::ffi::OsString>,
) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("browser")
        .join(script);
    let run = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args(args)
            .output()
            .expect("node runs")
    })
    .await
    .expect("the browser");
    assert!(
        run.status.success(),
        "the browser script failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "the script's JSON report ({e}): {}",
            String::from_utf8_lossy(&run.stdout)
        )
    })
}

/// The path of a workspace binary built by `cargo build --workspace --bins`.
pub fn binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    // CORRAL_BIN_DIR picks other builds (the fault suite's script runs the release ones).
    let dir = std::env::var_os("CORRAL_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("debug"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins` (make test does)",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1, never one this test process handed out before: the kernel
/// may give a port just released to the next bind, and two listeners of one server on the
/// same port would keep it from starting (an edge's player and metrics listeners once did).
pub fn free_port() -> u16 {
    unique_port(|| {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("an ephemeral port")
    })
}

/// A free UDP port on 127.0.0.1, never one this test process handed out before.
pub fn free_udp_port() -> u16 {
    unique_port(|| {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .expect("an ephemeral port")
    })
}

/// The first port from `probe` not handed out before in this process.
fn unique_port(probe: impl Fn() -> u16) -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = probe();
        if given.insert(port) {
            return port;
        }
    }
}

/// A real ffmpeg publisher (test pattern and tone), killed by PID on drop.
pub struct Publisher {
    child: Child,
    /// When it was started.
    pub started: Instant,
}

impl Publisher {
    /// Publishes a 320x180 test pattern with a tone to `url` (`rtmp://...` or `srt://...`),
    /// in real time, for `seconds` (or until dropped). `extra` goes before the output.
    pub fn start(url: &str, seconds: Option<u32>, extra: &[&str]) -> Publisher {
        let format = if url.starts_with("srt://") {
            "mpegts"
        } else {
            "flv"
        };
        let mut args = Self::encode_args(seconds);
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["-f".to_string(), format.to_string(), url.to_string()]);
        Self::spawn(&args)
    }

    /// Publishes the same encoded stream (one encoder, the same timestamps) to every RTMP URL
    /// of `urls` at once, as a broadcaster feeding a primary and a standby origin does; a
    /// destination that fails does not stop the others.
    pub fn start_to_each(urls: &[&str], seconds: Option<u32>) -> Publisher {
        let mut args = Self::encode_args(seconds);
        let outputs: Vec<String> = urls
            .iter()
            .map(|u| format!("[f=flv:onfail=ignore]{u}"))
            .collect();
        args.extend(
            ["-map", "0:v", "-map", "1:a", "-f", "tee"]
                .map(String::from)
                .into_iter()
                .chain([outputs.join("|")]),
        );
        Self::spawn(&args)
    }

    /// ffmpeg's arguments up to the output: the test pattern and tone, encoded in real time.
    fn encode_args(seconds: Option<u32>) -> Vec<String> {
        let mut args: Vec<String> = ["-hide_banner", "-loglevel", "error", "-nostdin"]
            .map(String::from)
            .to_vec();
        for input in [
            "testsrc2=size=320x180:rate=30",
            "sine=frequency=440:sample_rate=48000",
        ] {
            args.push("-re".into());
            if let Some(s) = seconds {
                args.extend(["-t".to_string(), s.to_string()]);
            }
            args.extend(["-f", "lavfi", "-i", input].map(String::from));
        }
        args.extend(
            [
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
                "-g",
                "30",
                "-c:a",
                "aac",
                "-b:a",
                "64k",
            ]
            .map(String::from),
        );
        args
    }

    fn spawn(args: &[String]) -> Publisher {
        let child = Command::new("ffmpeg")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ffmpeg starts");
        Publisher {
            child,
            started: Instant::now(),
        }
    }

    /// Waits up to `limit` for the publisher to exit; returns its exit status if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        wait_exit(&mut self.child, limit)
    }

    /// Kills it at once (SIGKILL), as a crashed encoder or a pulled cable would end it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The value of a Prometheus sample (`name{labels} value`) in `text`, 0 when absent.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

pub use corral_loadtest::metric_sum;

/// A request with curl: `method` on `url`, with a bearer token and a JSON body when given;
/// the status and the JSON answer (Null when it is not JSON).
pub async fn curl_json(
    method: &str,
    url: &str,
    auth: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut args = vec![
        "-s".to_string(),
        "-X".into(),
        method.into(),
        "-w".into(),
        "\n%{http_code}".into(),
    ];
    if let Some(a) = auth {
        args.extend(["-H".into(), format!("Authorization: Bearer {a}")]);
    }
    if let Some(b) = body {
        args.extend([
            "-H".into(),
            "content-type: application/json".into(),
            "--data".into(),
            b.to_string(),
        ]);
    }
    args.push(url.to_string());
    let out = tokio::process::Command::new("curl")
        .args(&args)
        .output()
        .await
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').expect("a status line");
    (
        code.trim().parse().expect("a status"),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// Waits up to `limit` for `child` to exit; its exit status, if it did.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (up to 20 s) until every address in `addrs` accepts connections, failing the test
/// with the log at `log` if `child` exits first or the time runs out.
pub fn wait_listening(child: &mut Child, addrs: &[SocketAddr], what: &str, log: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let read_log = || std::fs::read_to_string(log).unwrap_or_default();
    while addrs
        .iter()
        .any(|a| std::net::TcpStream::connect(a).is_err())
    {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the {what} exited with {status}\n{}", read_log());
        }
        assert!(
            Instant::now() < deadline,
            "the {what} did not start\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A new empty directory under the system's temp dir.
    pub fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "corral-e2e-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Scratch(dir)
    }

    /// Writes `text` to `name` inside the directory and returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(text.as_bytes()).expect("write");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The small ladder the tests use: cheap enough to run in real time beside the tests.
pub const TEST_LADDER: &str = "
transcoder:
  x264_preset: veryfast
  ladder:
    - { name: 360p, width: 640, height: 360, bitrate: 800k }
    - { name: 180p, width: 320, height: 180, bitrate: 300k }
  audio: { name: audio, bitrate: 96k }
";

/// A running origin, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Origin {
    child: Child,
    /// Its HTTP address.
    pub http: SocketAddr,
    /// Its metrics address.
    pub metrics: SocketAddr,
    /// The HTTP client tests use.
    pub client: HttpClient,
    scratch: Scratch,
}

impl Origin {
    /// Starts an origin with `extra` YAML appended to a config that sets the ports, and waits
    /// until `/healthz` answers.
    pub fn start(extra: &str) -> Origin {
        Origin::start_with_http("", extra)
    }

    /// Like [`Origin::start`], with `http_keys` (YAML lines indented under `http:`) added to
    /// its `http:` section.
    pub fn start_with_http(http_keys: &str, extra: &str) -> Origin {
        let scratch = Scratch::new("origin");
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let config =
            format!("http:\n  listen: {http}\n{http_keys}metrics:\n  listen: {metrics}\n{extra}");
        scratch.file("origin.yaml", &config);
        let mut origin = Origin {
            child: Self::spawn(&scratch),
            http,
            metrics,
            client: HttpClient::new(Duration::from_secs(15)),
            scratch,
        };
        let log = origin.scratch.0.join("origin.log");
        wait_listening(&mut origin.child, &[origin.http], "origin", &log);
        origin
    }

    /// Runs the origin of `scratch`'s config, appending to its log.
    fn spawn(scratch: &Scratch) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(scratch.0.join("origin.log"))
            .expect("log file");
        Command::new(binary("origin"))
            .arg("--config")
            .arg(scratch.0.join("origin.yaml"))
            // Relative paths in the config (the archive's) land in the scratch directory.
            .current_dir(&scratch.0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("origin starts")
    }

    /// Starts it again with the same config (the same ports) after [`Origin::kill`], its
    /// streams gone; returns once it listens.
    pub fn restart(&mut self) {
        self.child = Self::spawn(&self.scratch);
        let log = self.scratch.0.join("origin.log");
        wait_listening(&mut self.child, &[self.http], "origin", &log);
    }

    /// Its scratch directory: the working directory, where a relative `archive.path` is.
    pub fn dir(&self) -> &std::path::Path {
        &self.scratch.0
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the origin logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.scratch.0.join("origin.log")).unwrap_or_default()
    }

    /// `http://<origin><path>`.
    pub fn url(&self, path: &str) -> http::Uri {
        format!("http://{}{path}", self.http)
            .parse()
            .expect("valid URI")
    }

    /// Polls `check` every 50 ms until it holds, failing the test after `limit`.
    pub fn wait_until(&self, what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !check() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}\n--- origin log ---\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GETs `path` with optional extra headers.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Fetched {
        self.client
            .get(&self.url(path), headers)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.log()))
    }

    /// GETs and parses a media playlist, which must answer 200.
    pub async fn playlist(&self, path: &str) -> MediaPlaylist {
        let r = self.get(path, &[]).await;
        assert_eq!(
            r.status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let text = std::str::from_utf8(&r.body).expect("utf-8");
        MediaPlaylist::parse(text).unwrap_or_else(|e| panic!("{path}: {e}\n{text}"))
    }

    /// The media playlist at `path` once it lists at least `complete` complete segments
    /// (within 40 s).
    pub async fn playlist_with(&self, path: &str, complete: usize) -> MediaPlaylist {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let r = self.get(path, &[]).await;
            if r.status == 200
                && let Ok(p) = MediaPlaylist::parse(std::str::from_utf8(&r.body).expect("utf-8"))
                && p.segments.iter().filter(|s| s.duration.is_some()).count() >= complete
            {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never had {complete} complete segments\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The origin's Prometheus metrics as text.
    pub async fn metrics_text(&self) -> String {
        let uri = format!("http://{}/metrics", self.metrics)
            .parse()
            .expect("valid URI");
        let r = self.client.get(&uri, &[]).await.expect("metrics answer");
        String::from_utf8(r.body.to_vec()).expect("utf-8")
    }

    /// The PIDs of the origin's child processes (its ffmpeg transcoders).
    pub fn children(&self) -> Vec<u32> {
        let out = Command::new("pgrep")
            .arg("-P")
            .arg(self.pid().to_string())
            .output()
            .expect("pgrep runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Kills it at once (SIGKILL), as a crash would: its connections reset, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGSTOP: the origin hangs (its port still accepts connections, nothing answers)
    /// until [`Origin::resume`].
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Sends SIGCONT after [`Origin::pause`].
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
    }

    /// Sends SIGTERM and returns at once (the origin stops on its own; `stop` waits).
    pub fn terminate(&self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        // A paused origin would hold the signal until it runs again.
        self.signal(nix::sys::signal::Signal::SIGCONT);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().expect("killed");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// Runs ffprobe on `file` and returns its JSON output.
pub fn ffprobe(file: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(file)
        .output()
        .expect("ffprobe runs (make test installs ffmpeg)");
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe prints JSON")
}

/// Parses an attribute list (`A=1,B="x,y"`) into pairs.
pub fn attributes(list: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = list;
    while let Some((name, after)) = rest.split_once('=') {
        let (value, after) = match after.strip_prefix('"') {
            Some(q) => {
                let end = q.find('"').unwrap_or(q.len());
                (&q[..end], q.get(end + 1..).unwrap_or(""))
            }
            None => match after.find(',') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            },
        };
        out.push((name.to_string(), value.to_string()));
        rest = after.strip_prefix(',').unwrap_or(after);
    }
    out
}

/// The value of attribute `name` in `list`.
pub fn attribute(list: &str, name: &str) -> Option<String> {
    attributes(list)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}
