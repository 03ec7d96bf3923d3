//! An object being fetched from upstream: the writer appends chunks as they arrive, and any
//! number of readers (the leader's own player and every coalesced waiter) read them as they
//! come, woken by a watch channel, never by a timer.
//!
//! A write that is dropped before it finishes (upstream reset, timeout) is a failure that every
//! reader sees as an error, never as a short body that looks complete.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::RwLock;
use pingora::cache::CacheKey;
use pingora::cache::key::HashBinary;
use pingora::cache::storage::{HandleHit, HandleMiss, MissFinishType, Storage};
use pingora::cache::trace::SpanHandle;
use pingora::{Error, ErrorType, Result};
use tokio::sync::watch;

use super::{MediaCache, StoredMeta};

/// How far a fill has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Still receiving; this many chunks so far.
    Growing(usize),
    /// Complete with this many chunks.
    Done(usize),
    /// The write failed; readers get an error.
    Failed,
}

/// One in-flight object.
#[derive(Debug)]
pub(crate) struct Fill {
    pub(crate) id: u64,
    pub(crate) meta: StoredMeta,
    chunks: RwLock<Vec<Bytes>>,
    progress: watch::Sender<Progress>,
}

impl Fill {
    pub(crate) fn new(id: u64, meta: StoredMeta) -> Self {
        Self {
            id,
            meta,
            chunks: RwLock::new(Vec::new()),
            progress: watch::Sender::new(Progress::Growing(0)),
        }
    }

    /// A reader from the first byte.
    pub(crate) fn reader(self: &Arc<Self>) -> FillReader {
        FillReader {
            progress: self.progress.subscribe(),
            fill: self.clone(),
            next: 0,
        }
    }
}

/// The [`HandleMiss`] of a fill: appends what upstream sends.
pub(crate) struct FillWriter {
    pub(crate) fill: Arc<Fill>,
    pub(crate) key: HashBinary,
    pub(crate) cache: &'static MediaCache,
    bytes: usize,
    tag: [u8; 8],
    finished: bool,
}

impl FillWriter {
    pub(crate) fn new(fill: Arc<Fill>, key: HashBinary, cache: &'static MediaCache) -> Self {
        let tag = fill.id.to_be_bytes();
        Self {
            fill,
            key,
            cache,
            bytes: 0,
            tag,
            finished: false,
        }
    }
}

#[async_trait]
impl HandleMiss for FillWriter {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.bytes += data.len();
        if self.bytes > self.cache.max_object_bytes {
            // Fail the readers now; the drop below removes the fill.
            self.fill.progress.send_replace(Progress::Failed);
            return Error::e_explain(
                ErrorType::InternalError,
                format!(
                    "object larger than the cache's max_object_bytes ({})",
                    self.cache.max_object_bytes
                ),
            );
        }
        let count = {
            let mut chunks = self.fill.chunks.write();
            chunks.push(data);
            chunks.len()
        };
        self.fill.progress.send_replace(Progress::Growing(count));
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        self.finished = true;
        let chunks: Arc<[Bytes]> = self.fill.chunks.read().clone().into();
        let count = chunks.len();
        self.cache.complete(
            self.key,
            self.fill.id,
            self.fill.meta.clone(),
            chunks,
            self.bytes,
        );
        self.fill.progress.send_replace(Progress::Done(count));
        self.cache.end_fill(&self.key, self.fill.id);
        Ok(MissFinishType::Created(self.bytes))
    }

    fn streaming_write_tag(&self) -> Option<&[u8]> {
        Some(&self.tag)
    }
}

impl Drop for FillWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.fill.progress.send_replace(Progress::Failed);
            self.cache.end_fill(&self.key, self.fill.id);
            self.cache.count_failed_fill();
        }
    }
}

/// A [`HandleHit`] on a fill: returns chunks as they arrive.
pub(crate) struct FillReader {
    fill: Arc<Fill>,
    progress: watch::Receiver<Progress>,
    next: usize,
}

#[async_trait]
impl HandleHit for FillReader {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        loop {
            // Mark the progress seen before looking at the chunks: the writer pushes a chunk
            // before it announces it, so nothing announced after this point can be missed.
            let progress = *self.progress.borrow_and_update();
            if let Some(chunk) = self.fill.chunks.read().get(self.next) {
                self.next += 1;
                return Ok(Some(chunk.clone()));
            }
            match progress {
                Progress::Done(_) => return Ok(None),
                Progress::Failed => {
                    return Error::e_explain(
                        ErrorType::ReadError,
                        "the upstream fetch this response was following failed",
                    );
                }
                Progress::Growing(_) => {
                    // The sender lives in the fill, which this reader holds: `changed` can only
                    // fail if it is dropped, which it is not while `self.fill` exists.
                    if self.progress.changed().await.is_err() {
                        return Error::e_explain(ErrorType::ReadError, "fill abandoned");
                    }
                }
            }
        }
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}
