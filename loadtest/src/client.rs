//! A small HTTP/1.1 client with connection reuse, timing every request.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Status code.
    pub status: StatusCode,
    /// The body.
    pub body: Bytes,
    /// From sending the request to the last byte of the body.
    pub elapsed: Duration,
    /// When the last byte arrived.
    pub done: Instant,
    /// When the response headers arrived.
    pub headers_at: Instant,
    /// The `Cache-Control` header, if any.
    pub cache_control: Option<String>,
    /// The `Content-Encoding` header, if any.
    pub content_encoding: Option<String>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// Every response header.
    pub headers: http::HeaderMap,
}

impl Fetched {
    /// A response header as text, if present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An HTTP client for one viewer (connections are reused).
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

impl HttpClient {
    /// A client whose requests give up after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self::with_source(timeout, None)
    }

    /// A client whose connections go out from local address `source` (when one address has
    /// too few ephemeral ports for a load), and whose requests give up after `timeout`.
    pub fn with_source(timeout: Duration, source: Option<std::net::IpAddr>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_local_address(source);
        Self {
            inner: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        }
    }

    /// GETs `uri` with extra `headers`, reading the whole body.
    pub async fn get(&self, uri: &Uri, headers: &[(&str, &str)]) -> anyhow::Result<Fetched> {
        let mut req = Request::get(uri.clone());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Empty::new())?;
        let started = Instant::now();
        let work = async {
            let (parts, body) = self.inner.request(req).await?.into_parts();
            let headers_at = Instant::now();
            let status = parts.status;
            let header = |name: http::header::HeaderName| {
                parts
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let cache_control = header(http::header::CACHE_CONTROL);
            let content_encoding = header(http::header::CONTENT_ENCODING);
            let content_type = header(http::header::CONTENT_TYPE);
            let body = body.collect().await?.to_bytes();
            anyhow::Ok(Fetched {
                status,
                body,
                elapsed: started.elapsed(),
                done: Instant::now(),
                headers_at,
                cache_control,
                content_encoding,
                content_type,
                headers: parts.headers,
            })
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| anyhow::anyhow!("{uri}: no answer within {:?}", self.timeout))?
    }
}

/// Resolves `relative` against the URI of the playlist that named it.
pub fn resolve(base: &Uri, relative: &str) -> anyhow::Result<Uri> {
    if relative.contains("://") {
        return Ok(relative.parse()?);
    }
    let path = base.path();
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let mut joined = format!("{dir}{relative}");
    // Collapse "dir/../x" segments, as a player would.
    while let Some(i) = joined.find("/../") {
        let before = joined[..i].rfind('/').unwrap_or(0);
        joined.replace_range(before..i + 3, "");
    }
    let authority = base.authority().map(|a| a.as_str()).unwrap_or("");
    let scheme = base.scheme_str().unwrap_or("http");
    Ok(format!("{scheme}://{authority}{joined}").parse()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_uris_resolve_like_a_player() {
        let base: Uri = "http://h:1/live/demo/720p/index.m3u8?_HLS_msn=3"
            .parse()
            .expect("uri");
        assert_eq!(
            resolve(&base, "10.2.m4s").expect("ok").to_string(),
            "http://h:1/live/demo/720p/10.2.m4s"
        );
        assert_eq!(
            resolve(&base, "../360p/index.m3u8")
                .expect("ok")
                .to_string(),
            "http://h:1/live/demo/360p/index.m3u8"
        );
    }
}
