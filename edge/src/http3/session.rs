//! One HTTP/3 request as a pingora downstream session: the proxy runs its phases, the cache
//! and its lock on it exactly as on an HTTP/1.1 or HTTP/2 request, and writes the answer here.
//!
//! pingora's custom session trait is the seam: every call it makes on a downstream session
//! (read the request, write the header, the body, the trailers, finish, reset) maps onto one
//! call on the h3 request stream.

use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, Bytes};
use futures_core::Stream;
use h3::error::Code;
use h3::server::RequestStream;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Version, header};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::HttpTask;
use pingora::protocols::http::custom::CustomMessageWrite;
use pingora::protocols::http::custom::server::Session as CustomSession;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::{Digest, http::date::get_cached_date};
use pingora::{Error, ErrorType, OrErr, Result};

/// The h3 request stream of a QUIC connection served by quinn.
pub type H3Stream = RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// Request body bytes read and dropped at most (players send GET and HEAD without a body).
const MAX_REQUEST_BODY: usize = 64 << 10;

/// See the module documentation.
pub struct H3Session {
    request: RequestHeader,
    stream: H3Stream,
    head: bool,
    response: Option<ResponseHeader>,
    ended: bool,
    body_done: bool,
    body_read: usize,
    body_sent: usize,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    drain_timeout: Option<Duration>,
    client: SocketAddr,
    server: SocketAddr,
    /// The QUIC connection, to notice the player leaving while the proxy waits.
    connection: quinn::Connection,
}

impl H3Session {
    /// The session of `request`, answered on `stream` of `connection`, to `server`.
    pub fn new(
        request: http::Request<()>,
        stream: H3Stream,
        connection: quinn::Connection,
        server: std::net::SocketAddr,
    ) -> Result<Self> {
        let client = connection.remote_address();
        let (mut parts, ()) = request.into_parts();
        // An HTTP/3 request names its host in :authority; the proxy and the origins (HTTP/1.1)
        // read Host, and the target is sent in origin form.
        if let Some(authority) = parts.uri.authority()
            && !parts.headers.contains_key(header::HOST)
        {
            let host = HeaderValue::from_str(authority.as_str())
                .or_err(ErrorType::InvalidHTTPHeader, "h3 :authority")?;
            parts.headers.insert(header::HOST, host);
        }
        if let Some(target) = parts.uri.path_and_query() {
            parts.uri = target
                .as_str()
                .parse()
                .or_err(ErrorType::InvalidHTTPHeader, "h3 :path")?;
        }
        parts.version = Version::HTTP_3;
        let head = parts.method == Method::HEAD;
        Ok(Self {
            request: RequestHeader::from(parts),
            stream,
            head,
            response: None,
            ended: false,
            body_done: false,
            body_read: 0,
            body_sent: 0,
            read_timeout: None,
            write_timeout: None,
            drain_timeout: None,
            client: SocketAddr::Inet(client),
            server: SocketAddr::Inet(server),
            connection,
        })
    }

    async fn send_header(&mut self, mut resp: ResponseHeader, end: bool) -> Result<()> {
        if self.ended || self.response.is_some() || resp.status.is_informational() {
            return Ok(());
        }
        resp.insert_header(header::DATE, get_cached_date())?;
        // Connection-specific fields do not exist in HTTP/3 (RFC 9114, 4.2).
        for name in [
            header::TRANSFER_ENCODING,
            header::CONNECTION,
            header::UPGRADE,
            HeaderName::from_static("keep-alive"),
            HeaderName::from_static("proxy-connection"),
        ] {
            resp.remove_header(&name);
        }
        let answer = http::Response::from_parts(resp.as_owned_parts(), ());
        let sent = self.stream.send_response(answer);
        with_timeout(self.write_timeout, sent)
            .await?
            .or_err(ErrorType::WriteError, "while writing an h3 response header")?;
        self.response = Some(resp);
        if end {
            self.end().await?;
        }
        Ok(())
    }

    async fn send_body(&mut self, data: Bytes, end: bool) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        // A HEAD answer has the headers of a GET and no body.
        if !data.is_empty() && !self.head {
            let len = data.len();
            let sent = self.stream.send_data(data);
            with_timeout(self.write_timeout, sent)
                .await?
                .or_err(ErrorType::WriteError, "while writing an h3 response body")?;
            self.body_sent += len;
        }
        if end {
            self.end().await?;
        }
        Ok(())
    }

    /// Ends the response stream (FIN).
    async fn end(&mut self) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        with_timeout(self.write_timeout, self.stream.finish())
            .await?
            .or_err(ErrorType::WriteError, "while finishing an h3 response")
    }
}

/// `future` within `limit`, if any.
async fn with_timeout<T>(limit: Option<Duration>, future: impl Future<Output = T>) -> Result<T> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, future)
            .await
            .or_err(ErrorType::WriteTimedout, "h3 stream"),
        None => Ok(future.await),
    }
}

#[async_trait]
impl CustomSession for H3Session {
    fn req_header(&self) -> &RequestHeader {
        &self.request
    }

    fn req_header_mut(&mut self) -> &mut RequestHeader {
        &mut self.request
    }

    async fn read_body_bytes(&mut self) -> Result<Option<Bytes>> {
        if self.body_done {
            return Ok(None);
        }
        let read = self.stream.recv_data();
        let chunk = match self.read_timeout {
            Some(limit) => tokio::time::timeout(limit, read)
                .await
                .or_err(ErrorType::ReadTimedout, "h3 request body")?,
            None => read.await,
        }
        .or_err(ErrorType::ReadError, "while reading an h3 request body")?;
        match chunk {
            Some(mut chunk) => {
                let bytes = chunk.copy_to_bytes(chunk.remaining());
                self.body_read += bytes.len();
                if self.body_read > MAX_REQUEST_BODY {
                    return Error::e_explain(
                        ErrorType::InvalidHTTPHeader,
                        "h3 request body too large",
                    );
                }
                Ok(Some(bytes))
            }
            None => {
                self.body_done = true;
                Ok(None)
            }
        }
    }

    async fn drain_request_body(&mut self) -> Result<()> {
        while self.read_body_bytes().await?.is_some() {}
        Ok(())
    }

    async fn write_response_header(&mut self, resp: Box<ResponseHeader>, end: bool) -> Result<()> {
        self.send_header(*resp, end).await
    }

    async fn write_response_header_ref(&mut self, resp: &ResponseHeader, end: bool) -> Result<()> {
        self.send_header(resp.clone(), end).await
    }

    async fn write_body(&mut self, data: Bytes, end: bool) -> Result<()> {
        self.send_body(data, end).await
    }

    async fn write_trailers(&mut self, trailers: HeaderMap) -> Result<()> {
        if self.ended || self.head {
            return Ok(());
        }
        with_timeout(self.write_timeout, self.stream.send_trailers(trailers))
            .await?
            .or_err(ErrorType::WriteError, "while writing h3 trailers")?;
        self.end().await
    }

    async fn response_duplex_vec(&mut self, tasks: Vec<HttpTask>) -> Result<bool> {
        let mut end = false;
        for task in tasks {
            end = match task {
                HttpTask::Header(header, last) => {
                    self.send_header(*header, last).await?;
                    last
                }
                HttpTask::Body(Some(data), last) => {
                    self.send_body(data, last).await?;
                    last
                }
                HttpTask::Body(None, last) => last,
                HttpTask::Trailer(Some(trailers)) => {
                    self.write_trailers(*trailers).await?;
                    true
                }
                HttpTask::Trailer(None) | HttpTask::Done => true,
                HttpTask::UpgradedBody(..) => {
                    return Error::e_explain(ErrorType::InternalError, "upgraded body on h3");
                }
                HttpTask::Failed(e) => return Err(e),
            } || end;
        }
        if end {
            self.end().await?;
        }
        Ok(end)
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    fn get_read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.write_timeout = timeout;
    }

    fn get_write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }

    fn set_total_drain_timeout(&mut self, timeout: Option<Duration>) {
        self.drain_timeout = timeout;
    }

    fn get_total_drain_timeout(&self) -> Option<Duration> {
        self.drain_timeout
    }

    fn request_summary(&self) -> String {
        format!(
            "{} {} (h3), Host: {}",
            self.request.method,
            self.request.uri,
            self.request
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default()
        )
    }

    fn response_written(&self) -> Option<&ResponseHeader> {
        self.response.as_ref()
    }

    async fn shutdown(&mut self, _code: u32, _ctx: &str) {
        if !self.ended {
            // The stream is reset: the player sees an error, never a short body that looks whole.
            self.ended = true;
            self.stream.stop_stream(Code::H3_INTERNAL_ERROR);
        }
    }

    fn is_body_done(&mut self) -> bool {
        self.body_done
    }

    async fn finish(&mut self) -> Result<()> {
        if self.response.is_some() {
            self.end().await?;
        }
        Ok(())
    }

    fn is_body_empty(&mut self) -> bool {
        self.body_read == 0
            && (self.body_done
                || self
                    .request
                    .headers
                    .get(header::CONTENT_LENGTH)
                    .is_none_or(|v| v.as_bytes() == b"0"))
    }

    async fn read_body_or_idle(&mut self, no_body_expected: bool) -> Result<Option<Bytes>> {
        if no_body_expected || self.body_done {
            // Nothing more comes on this stream: the proxy waits here while it fetches, and
            // learns that the player left when the connection closes.
            let reason = self.connection.closed().await;
            return Error::e_explain(
                ErrorType::ConnectionClosed,
                format!("h3 client closed the connection: {reason}"),
            );
        }
        self.read_body_bytes().await
    }

    fn body_bytes_sent(&self) -> usize {
        self.body_sent
    }

    fn body_bytes_read(&self) -> usize {
        self.body_read
    }

    fn digest(&self) -> Option<&Digest> {
        None
    }

    fn digest_mut(&mut self) -> Option<&mut Digest> {
        None
    }

    fn client_addr(&self) -> Option<&SocketAddr> {
        Some(&self.client)
    }

    fn server_addr(&self) -> Option<&SocketAddr> {
        Some(&self.server)
    }

    fn pseudo_raw_h1_request_header(&self) -> Bytes {
        Bytes::new()
    }

    fn enable_retry_buffering(&mut self) {}

    fn retry_buffer_truncated(&self) -> bool {
        false
    }

    fn get_retry_buffer(&self) -> Option<Bytes> {
        None
    }

    async fn finish_custom(&mut self) -> Result<()> {
        Ok(())
    }

    fn take_custom_message_reader(
        &mut self,
    ) -> Option<Box<dyn Stream<Item = Result<Bytes>> + Unpin + Send + Sync + 'static>> {
        None
    }

    fn restore_custom_message_reader(
        &mut self,
        _reader: Box<dyn Stream<Item = Result<Bytes>> + Unpin + Send + Sync + 'static>,
    ) -> Result<()> {
        Ok(())
    }

    fn take_custom_message_writer(&mut self) -> Option<Box<dyn CustomMessageWrite>> {
        None
    }

    fn restore_custom_message_writer(
        &mut self,
        _writer: Box<dyn CustomMessageWrite>,
    ) -> Result<()> {
        Ok(())
    }
}
