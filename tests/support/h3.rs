//! An independent HTTP/3 client for the tests: `tests/clients/h3_client.py` on Python's
//! aioquic, installed in `target/pyenv` by `scripts/install-test-clients.sh` (make test's
//! set-up). Started by PID, killed on drop.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// The Python that has aioquic.
pub fn python() -> PathBuf {
    let path = std::env::var_os("CORRAL_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/pyenv/bin/python")
        });
    assert!(
        path.exists(),
        "{} is missing: install the test clients with scripts/install-test-clients.sh (make test does)",
        path.display()
    );
    path
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/h3_client.py")
}

/// One HTTP/3 response.
#[derive(Debug, Clone)]
pub struct H3Response {
    /// Which of the client's connections it came on.
    pub connection: u64,
    /// The URL asked.
    pub url: String,
    /// The status, or `None` when the stream was reset before one.
    pub status: Option<u16>,
    /// Response fields (not pseudo-headers), in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The ALPN protocol of the connection.
    pub alpn: String,
    /// The reset code, when the server reset the stream.
    pub reset: Option<u64>,
    /// From request to last byte, milliseconds.
    pub ms: f64,
}

impl H3Response {
    /// The first value of `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn parse(line: &str) -> H3Response {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("h3 client said {line:?}: {e}"));
        let hex = v["body"].as_str().unwrap_or_default();
        let body = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
            .collect();
        H3Response {
            connection: v["connection"].as_u64().unwrap_or_default(),
            url: v["url"].as_str().unwrap_or_default().to_string(),
            status: v["status"].as_u64().map(|s| s as u16),
            headers: v["headers"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| {
                            (
                                p[0].as_str().unwrap_or_default().to_string(),
                                p[1].as_str().unwrap_or_default().to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            body,
            alpn: v["alpn"].as_str().unwrap_or_default().to_string(),
            reset: v["reset"].as_u64(),
            ms: v["ms"].as_f64().unwrap_or_default(),
        }
    }
}

/// GETs `urls` on each of `connections` HTTP/3 connections (all at once), trusting `ca`.
pub fn get(ca: &Path, connections: usize, urls: &[String]) -> Vec<H3Response> {
    let out = Command::new(python())
        .arg(script())
        .arg("--ca")
        .arg(ca)
        .arg("--connections")
        .arg(connections.to_string())
        .args(urls)
        .stdin(Stdio::null())
        .output()
        .expect("the h3 client runs");
    assert!(
        out.status.success(),
        "h3 client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(H3Response::parse)
        .collect()
}

/// An h3 client whose connections are set up first and whose requests are sent on a signal
/// (`--stdin`), to aim a herd at an object that exists only by then.
pub struct H3Herd {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// Connections set up.
    pub ready: usize,
    /// Connections that could not be set up.
    pub failed: usize,
}

impl H3Herd {
    /// Opens `connections` connections to `authority` (`host:port`), with `extra` arguments;
    /// returns once they are set up.
    pub fn connect(ca: &Path, authority: &str, connections: usize, extra: &[&str]) -> H3Herd {
        let mut child = Command::new(python())
            .arg(script())
            .arg("--ca")
            .arg(ca)
            .arg("--connections")
            .arg(connections.to_string())
            .arg("--stdin")
            .args(extra)
            .arg(format!("https://{authority}/"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the h3 client starts");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("the h3 client's first line");
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("h3 client said {line:?} ({e}) instead of ready"));
        H3Herd {
            child,
            stdin,
            stdout,
            ready: v["ready"].as_u64().unwrap_or_default() as usize,
            failed: v["failed"].as_u64().unwrap_or_default() as usize,
        }
    }

    /// Sends `urls` on every connection.
    pub fn send(&mut self, urls: &[String]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{}", urls.join(" ")).expect("the h3 client reads its URLs");
        stdin.flush().expect("flush");
    }

    /// Reads `n` responses.
    pub fn responses(&mut self, n: usize) -> Vec<H3Response> {
        (0..n)
            .map(|_| {
                let mut line = String::new();
                let read = self.stdout.read_line(&mut line).expect("a response line");
                assert!(read > 0, "the h3 client ended before its responses");
                H3Response::parse(&line)
            })
            .collect()
    }

    /// Closes its stdin (a `--hold` client then closes its connections) and waits for it.
    pub fn finish(mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for H3Herd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
