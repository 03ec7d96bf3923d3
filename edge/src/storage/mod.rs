//! The edge's cache storage behind pingora-cache's [`Storage`] trait.
//!
//! Complete objects live in a moka cache bounded by bytes (each entry weighs its body plus its
//! headers) and expire on their own clock: fresh lifetime plus the stale windows the response
//! allows. Objects still arriving from upstream are [`fill::Fill`]s: `lookup` prefers a fill
//! over a complete copy, so a request that arrives mid-fetch attaches to the growing object
//! without taking the cache lock, and the lock itself is released as soon as the headers are
//! known (`support_streaming_partial_write`), so coalesced waiters receive each chunk the
//! moment the leader does. Bodies are kept as the chunks upstream sent, shared, never copied.

mod fill;
mod lock;

pub use lock::FillAwareLock;

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use moka::sync::Cache;
use parking_lot::Mutex;
use pingora::Result;
use pingora::cache::key::{CacheHashKey, HashBinary};
use pingora::cache::storage::{
    HandleHit, HitHandler, MissHandler, PurgeOutcome, PurgeTarget, PurgeType, Storage,
};
use pingora::cache::trace::SpanHandle;
use pingora::cache::{CacheKey, CacheMeta};
use pingora::http::ResponseHeader;

use fill::{Fill, FillWriter};

/// Bytes counted for an entry on top of its body (key, headers, bookkeeping).
const ENTRY_OVERHEAD: usize = 512;

/// What is kept of a response's [`CacheMeta`]: enough to rebuild it for every hit without
/// serializing it (`CacheMeta` is not `Clone`).
#[derive(Debug, Clone)]
pub(crate) struct StoredMeta {
    fresh_until: SystemTime,
    created: SystemTime,
    stale_while_revalidate: u32,
    stale_if_error: u32,
    header: ResponseHeader,
}

impl StoredMeta {
    fn of(meta: &CacheMeta) -> Self {
        Self {
            fresh_until: meta.fresh_until(),
            created: meta.created(),
            stale_while_revalidate: meta.stale_while_revalidate_sec(),
            stale_if_error: meta.stale_if_error_sec(),
            header: meta.response_header_copy(),
        }
    }

    fn to_meta(&self) -> CacheMeta {
        CacheMeta::new(
            self.fresh_until,
            self.created,
            self.stale_while_revalidate,
            self.stale_if_error,
            self.header.clone(),
        )
    }

    /// How long to keep the object from now: until it is neither fresh nor servable stale.
    fn keep_for(&self, max: Duration) -> Duration {
        let stale = u64::from(self.stale_while_revalidate.max(self.stale_if_error));
        let until = self.fresh_until + Duration::from_secs(stale);
        until
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(max)
    }
}

/// A complete object.
#[derive(Debug)]
struct Stored {
    id: u64,
    meta: StoredMeta,
    body: Arc<[Bytes]>,
    bytes: usize,
    keep_for: Duration,
}

struct KeepFor;

impl moka::Expiry<HashBinary, Arc<Stored>> for KeepFor {
    fn expire_after_create(
        &self,
        _key: &HashBinary,
        value: &Arc<Stored>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.keep_for)
    }

    fn expire_after_update(
        &self,
        _key: &HashBinary,
        value: &Arc<Stored>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.keep_for)
    }
}

/// Counts of what the storage holds, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Complete objects.
    pub objects: u64,
    /// Their weight in bytes (bodies plus overhead).
    pub bytes: u64,
    /// Objects being filled from upstream now.
    pub filling: u64,
    /// Fills that failed (upstream error, too large) since start.
    pub failed_fills: u64,
    /// Objects evicted to stay within the byte bound since start (expiry not counted).
    pub evictions: u64,
    /// Misses whose object arrived between their lookup and their lock, served from the cache
    /// instead of fetched again, since start.
    pub late_lookups: u64,
}

/// See the module documentation.
pub struct MediaCache {
    complete: Cache<HashBinary, Arc<Stored>>,
    fills: Mutex<HashMap<HashBinary, Arc<Fill>>>,
    next_id: AtomicU64,
    failed_fills: AtomicU64,
    late_lookups: AtomicU64,
    evictions: Arc<AtomicU64>,
    max_object_bytes: usize,
    max_ttl: Duration,
}

impl MediaCache {
    /// A cache of at most `capacity_bytes`, refusing objects over `max_object_bytes`, keeping
    /// none longer than `max_ttl` (fresh and servable stale together).
    pub fn new(capacity_bytes: u64, max_object_bytes: usize, max_ttl: Duration) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        let counted = evictions.clone();
        let complete = Cache::builder()
            .eviction_listener(move |_k, _v, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            })
            .max_capacity(capacity_bytes)
            .weigher(|_k: &HashBinary, v: &Arc<Stored>| {
                u32::try_from(v.bytes + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .expire_after(KeepFor)
            .build();
        Self {
            complete,
            fills: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            failed_fills: AtomicU64::new(0),
            late_lookups: AtomicU64::new(0),
            evictions,
            max_object_bytes,
            max_ttl,
        }
    }

    /// What it holds now.
    pub fn stats(&self) -> StorageStats {
        self.complete.run_pending_tasks();
        StorageStats {
            objects: self.complete.entry_count(),
            bytes: self.complete.weighted_size(),
            filling: self.fills.lock().len() as u64,
            failed_fills: self.failed_fills.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            late_lookups: self.late_lookups.load(Ordering::Relaxed),
        }
    }

    /// Whether `key` is stored or being filled now.
    fn holds(&self, key: &HashBinary) -> bool {
        self.fills.lock().contains_key(key) || self.complete.contains_key(key)
    }

    fn count_late_lookup(&self) {
        self.late_lookups.fetch_add(1, Ordering::Relaxed);
    }

    fn complete(
        &self,
        key: HashBinary,
        id: u64,
        meta: StoredMeta,
        body: Arc<[Bytes]>,
        bytes: usize,
    ) {
        let keep_for = meta.keep_for(self.max_ttl);
        if keep_for.is_zero() {
            return;
        }
        let stored = Stored {
            id,
            meta,
            body,
            bytes,
            keep_for,
        };
        self.complete.insert(key, Arc::new(stored));
    }

    /// Forgets the fill `id` of `key`, unless a newer fill has taken its place.
    fn end_fill(&self, key: &HashBinary, id: u64) {
        let mut fills = self.fills.lock();
        if fills.get(key).is_some_and(|f| f.id == id) {
            fills.remove(key);
        }
    }

    fn count_failed_fill(&self) {
        self.failed_fills.fetch_add(1, Ordering::Relaxed);
    }

    fn hit(stored: &Arc<Stored>) -> (CacheMeta, HitHandler) {
        let reader = CompleteReader {
            body: stored.body.clone(),
            next: 0,
        };
        (stored.meta.to_meta(), Box::new(reader))
    }
}

#[async_trait]
impl Storage for MediaCache {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let hash = key.combined_bin();
        if let Some(fill) = self.fills.lock().get(&hash).cloned() {
            return Ok(Some((fill.meta.to_meta(), Box::new(fill.reader()))));
        }
        Ok(self.complete.get(&hash).map(|s| Self::hit(&s)))
    }

    async fn lookup_streaming_write(
        &'static self,
        key: &CacheKey,
        tag: Option<&[u8]>,
        trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let Some(id) = tag
            .and_then(|t| <[u8; 8]>::try_from(t).ok())
            .map(u64::from_be_bytes)
        else {
            return self.lookup(key, trace).await;
        };
        let hash = key.combined_bin();
        if let Some(fill) = self.fills.lock().get(&hash).filter(|f| f.id == id).cloned() {
            return Ok(Some((fill.meta.to_meta(), Box::new(fill.reader()))));
        }
        // The write may have finished already: its complete copy carries the same id.
        Ok(self
            .complete
            .get(&hash)
            .filter(|s| s.id == id)
            .map(|s| Self::hit(&s)))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        let hash = key.combined_bin();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let fill = Arc::new(Fill::new(id, StoredMeta::of(meta)));
        self.fills.lock().insert(hash, fill.clone());
        Ok(Box::new(FillWriter::new(fill, hash, self)))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let hash = target.key().combined_bin();
        Ok(match self.complete.remove(&hash) {
            Some(_) => PurgeOutcome::Purged(None),
            None => PurgeOutcome::NotFound,
        })
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let hash = key.combined_bin();
        let Some(old) = self.complete.get(&hash) else {
            return Ok(false);
        };
        self.complete(
            hash,
            old.id,
            StoredMeta::of(meta),
            old.body.clone(),
            old.bytes,
        );
        Ok(true)
    }

    fn support_streaming_partial_write(&self) -> bool {
        true
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

/// A [`HandleHit`] on a complete object: its chunks, shared.
struct CompleteReader {
    body: Arc<[Bytes]>,
    next: usize,
}

#[async_trait]
impl HandleHit for CompleteReader {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        let chunk = self.body.get(self.next).cloned();
        self.next += 1;
        Ok(chunk)
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

#[cfg(test)]
mod tests;
