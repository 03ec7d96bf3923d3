//! The cache lock, closed against a fill that lands between a request's lookup and its lock.
//!
//! pingora-cache looks a request up in storage and, on a miss, takes the key's lock in a
//! second step. A leader that registers its fill and releases the lock between those two steps
//! of another request leaves that request a write permit for an object the storage already
//! has: one more origin fetch for a herd that should cost one. [`FillAwareLock`] takes the
//! lock as pingora's own [`CacheLock`] does and, when it would hand out a write permit for a
//! miss, looks at the storage once more. If the object (or its fill) is there, the permit goes
//! back and the request gets a read lock that is already done, which makes pingora look the
//! request up again and find the object.
//!
//! No fill is missed: a leader registers its fill before it releases the lock, so a request
//! that is granted the lock after that release sees the fill in the storage.

use std::time::Duration;

use http::Extensions;
use pingora::cache::CacheKey;
use pingora::cache::key::CacheHashKey;
use pingora::cache::lock::{CacheKeyLock, CacheLock, LockStatus, Locked, ReadLock, WritePermit};
use pingora::cache::trace::Span;

use super::MediaCache;

/// See the module documentation.
pub struct FillAwareLock {
    inner: CacheLock,
    storage: &'static MediaCache,
}

impl FillAwareLock {
    /// A lock whose writers are given up after `age_timeout`, over `storage`.
    pub fn new(age_timeout: Duration, storage: &'static MediaCache) -> Self {
        Self {
            inner: CacheLock::new(age_timeout),
            storage,
        }
    }

    /// A read lock whose writer has finished: waiting on it returns at once with `Done`.
    fn done() -> ReadLock {
        let (mut permit, stub) = WritePermit::new(Duration::ZERO, false, Extensions::new());
        permit.unlock(LockStatus::Done);
        stub.read_lock()
    }
}

impl CacheKeyLock for FillAwareLock {
    fn lock(&self, key: &CacheKey, stale_writer: bool) -> Locked {
        match self.inner.lock(key, stale_writer) {
            // A revalidation runs with the stale object in storage: that is no race.
            Locked::Write(permit) if !stale_writer && self.storage.holds(&key.combined_bin()) => {
                self.storage.count_late_lookup();
                self.inner.release(key, permit, LockStatus::Done);
                Locked::Read(Self::done())
            }
            locked => locked,
        }
    }

    fn release(&self, key: &CacheKey, permit: WritePermit, reason: LockStatus) {
        self.inner.release(key, permit, reason);
    }

    fn trace_lock_wait(&self, span: &mut Span, read_lock: &ReadLock, lock_status: LockStatus) {
        self.inner.trace_lock_wait(span, read_lock, lock_status);
    }

    fn custom_lock_status(&self, custom_no_cache: &'static str) -> LockStatus {
        self.inner.custom_lock_status(custom_no_cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::cache::CacheMeta;
    use pingora::cache::storage::Storage;
    use pingora::cache::trace::Span;
    use pingora::http::ResponseHeader;
    use std::time::SystemTime;

    fn storage() -> &'static MediaCache {
        Box::leak(Box::new(MediaCache::new(
            1 << 20,
            64 << 10,
            Duration::from_secs(60),
        )))
    }

    fn meta() -> CacheMeta {
        let now = SystemTime::now();
        let header = ResponseHeader::build(200, None).expect("a header");
        CacheMeta::new(now + Duration::from_secs(60), now, 0, 0, header)
    }

    #[tokio::test]
    async fn a_miss_whose_object_arrived_after_its_lookup_looks_again_instead_of_fetching() {
        let storage = storage();
        let lock = FillAwareLock::new(Duration::from_secs(2), storage);
        let key = CacheKey::new("/live/d/360p/12.m4s", "");

        // Nothing stored: the first miss is the writer.
        let Locked::Write(permit) = lock.lock(&key, false) else {
            panic!("the first miss writes");
        };
        // The leader's fill is registered, then the lock released ...
        let span = Span::inactive().handle();
        let _fill = storage
            .get_miss_handler(&key, &meta(), &span)
            .await
            .expect("a fill");
        lock.release(&key, permit, LockStatus::Done);
        // ... and a request that had missed before that takes the lock only now.
        let Locked::Read(read) = lock.lock(&key, false) else {
            panic!("the late miss must not fetch again");
        };
        assert_eq!(read.lock_status(), LockStatus::Done);
        tokio::time::timeout(Duration::from_secs(1), read.wait())
            .await
            .expect("done at once");
        assert_eq!(storage.stats().late_lookups, 1);
    }

    #[tokio::test]
    async fn a_revalidation_writes_with_the_stale_object_stored() {
        let storage = storage();
        let lock = FillAwareLock::new(Duration::from_secs(2), storage);
        let key = CacheKey::new("/live/d/360p/index.m3u8", "");
        let span = Span::inactive().handle();
        let fill = storage
            .get_miss_handler(&key, &meta(), &span)
            .await
            .expect("a fill");
        fill.finish().await.expect("stored");
        let Locked::Write(permit) = lock.lock(&key, true) else {
            panic!("the revalidation writes");
        };
        lock.release(&key, permit, LockStatus::Done);
        assert_eq!(storage.stats().late_lookups, 0);
    }
}
