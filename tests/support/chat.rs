//! A running chat-relay binary on free ports with its own database, stopped by PID on drop,
//! and a WebSocket client (tokio-tungstenite) that speaks its protocol.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::{Scratch, binary, free_port, wait_listening};

/// The local development secret and admin token (conf/chat-relay.yaml).
pub const SECRET: &str = "dev-chat-secret";
/// See [`SECRET`].
pub const ADMIN: &str = "dev-admin-token";

/// A token for user `id` called `name`, valid for an hour (signed with `secret`).
pub fn token_with(secret: &str, id: &str, name: &str, exp_from_now: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": id, "name": name, "exp": now + exp_from_now}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a token")
}

/// A valid token for user `id` called `name`.
pub fn token(id: &str, name: &str) -> String {
    token_with(SECRET, id, name, 3600)
}

/// See the module documentation.
pub struct ChatRelay {
    child: Option<Child>,
    /// Its HTTP and WebSocket address.
    pub http: SocketAddr,
    /// Its metrics address.
    pub metrics: SocketAddr,
    config: PathBuf,
    scratch: Scratch,
}

impl ChatRelay {
    /// Starts a relay with `extra` YAML appended to a config that sets its ports and database.
    pub fn start(extra: &str) -> ChatRelay {
        ChatRelay::start_on(free_port(), extra)
    }

    /// Like [`ChatRelay::start`], listening on `port` (one chosen before, for a config that
    /// names the relay).
    pub fn start_on(port: u16, extra: &str) -> ChatRelay {
        let scratch = Scratch::new("chat");
        let http: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let db = scratch.0.join("chat.sqlite");
        let config = scratch.file(
            "chat.yaml",
            &format!(
                "listen: {http}\nmetrics_listen: {metrics}\ndatabase: {}\n{extra}",
                db.display()
            ),
        );
        let mut relay = ChatRelay {
            child: None,
            http,
            metrics,
            config,
            scratch,
        };
        relay.launch();
        relay
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.scratch.0.join("chat.log"))
            .expect("log file");
        let mut child = Command::new(binary("chat-relay"))
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("chat-relay starts");
        wait_listening(
            &mut child,
            &[self.http, self.metrics],
            "chat-relay",
            &self.scratch.0.join("chat.log"),
        );
        self.child = Some(child);
    }

    /// Stops it (SIGTERM) and waits; then starts it again on the same ports and database.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while let Ok(None) = child.try_wait() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.wait();
        }
    }

    /// Kills it (SIGKILL): no goodbye to its clients or to Redis.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.scratch.0.join("chat.log")).unwrap_or_default()
    }

    /// `ws://<relay>/v1/rooms/<room>/ws`, with `?token=` when given.
    pub fn ws_url(&self, room: &str, token: Option<&str>) -> String {
        match token {
            Some(t) => format!("ws://{}/v1/rooms/{room}/ws?token={t}", self.http),
            None => format!("ws://{}/v1/rooms/{room}/ws", self.http),
        }
    }

    /// Connects to `room`.
    pub async fn connect(&self, room: &str, token: Option<&str>) -> ChatClient {
        self.connect_url(&self.ws_url(room, token)).await
    }

    /// Connects to `room` again, having seen up to offset `since`.
    pub async fn reconnect(&self, room: &str, token: Option<&str>, since: u64) -> ChatClient {
        let url = self.ws_url(room, token);
        let sep = if url.contains('?') { '&' } else { '?' };
        self.connect_url(&format!("{url}{sep}since={since}")).await
    }

    async fn connect_url(&self, url: &str) -> ChatClient {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("connect to {url}: {e}\n{}", self.log()));
        ChatClient { ws }
    }

    /// An HTTP request to the relay: (status, JSON body or Null).
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        crate::curl_json(method, &format!("http://{}{path}", self.http), auth, body).await
    }

    /// A sample of its metrics (0 when absent).
    pub async fn metric(&self, sample: &str) -> f64 {
        let out = tokio::process::Command::new("curl")
            .args(["-s", &format!("http://{}/metrics", self.metrics)])
            .output()
            .await
            .expect("curl runs");
        crate::metric(&String::from_utf8_lossy(&out.stdout), sample)
    }
}

impl Drop for ChatRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A WebSocket client of the relay.
pub struct ChatClient {
    /// The socket.
    pub ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

/// What reading a frame found.
#[derive(Debug)]
pub enum Read {
    /// A JSON frame.
    Frame(Value),
    /// The relay closed the connection, with this code.
    Closed(Option<u16>),
    /// Nothing within the time.
    Nothing,
}

impl ChatClient {
    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("a frame goes out");
    }

    /// The next frame, close or nothing within `limit`.
    pub async fn read(&mut self, limit: Duration) -> Read {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next()).await;
            match next {
                Err(_) => return Read::Nothing,
                Ok(None) => return Read::Closed(None),
                Ok(Some(Err(_))) => return Read::Closed(None),
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Read::Frame(
                        serde_json::from_str(t.as_str()).expect("the relay sends JSON"),
                    );
                }
                Ok(Some(Ok(Message::Close(c)))) => {
                    return Read::Closed(c.map(|c| u16::from(c.code)));
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The next frame whose `op` is `op` (others are skipped), within 5 s.
    pub async fn expect(&mut self, op: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read(left).await {
                Read::Frame(f) if f["op"] == op => return f,
                Read::Frame(_) => continue,
                other => panic!("waiting for {op}: {other:?}"),
            }
        }
    }
}

/// A redis-server (Debian's package) on a free port, without persistence, stopped by PID on
/// drop.
pub struct Redis {
    child: Child,
    /// Its `redis://` URL.
    pub url: String,
    _scratch: Scratch,
}

impl Redis {
    /// Starts one and waits until it listens.
    pub fn start() -> Redis {
        let scratch = Scratch::new("redis");
        let port = free_port();
        let log = scratch.0.join("redis.log");
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&scratch.0)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (make test installs it)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        wait_listening(&mut child, &[addr], "redis-server", &log);
        Redis {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
            _scratch: scratch,
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
