//! A response body made of byte chunks already in memory: a part, or a segment's parts in
//! order, sent without copying them into one buffer; or a stream of chunks from a channel
//! (server-sent events), whose end is the channel's.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// Chunks of a body whose total length is known up front.
#[derive(Debug, Default)]
pub struct Body {
    chunks: VecDeque<Bytes>,
    remaining: u64,
    stream: Option<tokio::sync::mpsc::Receiver<Bytes>>,
}

impl Body {
    /// No body.
    pub fn empty() -> Self {
        Self::default()
    }

    /// One chunk.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self::chunks([bytes.into()])
    }

    /// Several chunks, sent in order.
    pub fn chunks(chunks: impl IntoIterator<Item = Bytes>) -> Self {
        let chunks: VecDeque<Bytes> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        Self {
            chunks,
            remaining,
            stream: None,
        }
    }

    /// Chunks as they come from `rx`, until it closes; the length is unknown.
    pub fn streaming(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Self {
        Self {
            chunks: VecDeque::new(),
            remaining: 0,
            stream: Some(rx),
        }
    }

    /// Total bytes left to send.
    pub fn len(&self) -> u64 {
        self.remaining
    }

    /// Whether nothing is left to send.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(chunk) = self.chunks.pop_front() {
            self.remaining -= chunk.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match self.stream.as_mut() {
            Some(rx) => rx
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| Ok(Frame::data(c)))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty() && self.stream.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.stream.is_some() {
            return SizeHint::default();
        }
        SizeHint::with_exact(self.remaining)
    }
}
