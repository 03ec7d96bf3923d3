//! The archive: every segment and init segment of every broadcast, and the finished VOD
//! playlists, in an object store (`object_store`: a local directory by default, S3 or an
//! S3-compatible service when configured).
//!
//! Writing never holds up the live path: [`Archive::put`] returns at once and a task writes
//! the object, retrying with back-off. What waits is bounded by bytes (`archive.queue_bytes`):
//! a write that would go over is refused, counted and logged, never queued without limit.
//! Every outcome is counted in `corral_origin_archive_writes_total{result}`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::Semaphore;

use crate::config::ArchiveConfig;

/// The archive's metrics.
#[derive(Clone)]
pub struct ArchiveMetrics {
    /// Writes by result: `ok`, `retried` (an attempt failed and will be tried again),
    /// `failed` (every attempt failed), `refused` (over `archive.queue_bytes`).
    pub writes: IntCounterVec,
    /// Bytes written.
    pub bytes: prometheus::IntCounter,
    /// Bytes waiting to be written.
    pub queued_bytes: IntGauge,
    /// Seconds one successful write took, its retries included.
    pub write_seconds: Histogram,
    /// Reads of archived objects by result (`ok`, `missing`, `error`).
    pub reads: IntCounterVec,
    /// Sessions finished, by result: `archived` (a complete VOD), `incomplete` (the VOD has
    /// gaps where writes failed), `failed` (its playlists could not be written), `recovered`
    /// (left unfinished by a crash, finished by the next start from its last checkpoint).
    pub sessions: IntCounterVec,
}

impl ArchiveMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            writes: IntCounterVec::new(
                Opts::new("origin_archive_writes_total", "Archive writes by result"),
                &["result"],
            )?,
            bytes: prometheus::IntCounter::new(
                "origin_archive_bytes_total",
                "Bytes written to the archive",
            )?,
            queued_bytes: IntGauge::new(
                "origin_archive_queued_bytes",
                "Bytes waiting to be written to the archive",
            )?,
            write_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "origin_archive_write_seconds",
                    "Seconds an archive write took, retries included",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ]),
            )?,
            reads: IntCounterVec::new(
                Opts::new("origin_archive_reads_total", "Archive reads by result"),
                &["result"],
            )?,
            sessions: IntCounterVec::new(
                Opts::new(
                    "origin_archive_sessions_total",
                    "Broadcasts finished into a VOD, by result",
                ),
                &["result"],
            )?,
        };
        for result in ["ok", "retried", "failed", "refused"] {
            m.writes.with_label_values(&[result]);
        }
        for result in ["archived", "incomplete", "failed", "recovered"] {
            m.sessions.with_label_values(&[result]);
        }
        registry.register(Box::new(m.writes.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        registry.register(Box::new(m.queued_bytes.clone()))?;
        registry.register(Box::new(m.write_seconds.clone()))?;
        registry.register(Box::new(m.reads.clone()))?;
        registry.register(Box::new(m.sessions.clone()))?;
        Ok(m)
    }
}

/// Units of the byte budget's semaphore.
const BUDGET_UNIT: usize = 1024;

/// At most one log line per this long for each kind of write failure (a dead store fails every
/// write); the ones left out are counted in the next line.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Lets one line through per [`LOG_EVERY`] and counts the others.
#[derive(Default)]
struct Throttle {
    last: parking_lot::Mutex<Option<Instant>>,
    quiet: std::sync::atomic::AtomicU64,
}

impl Throttle {
    /// `Some(lines left out since the last one)` when this one may be logged.
    fn allow(&self) -> Option<u64> {
        let mut last = self.last.lock();
        let now = Instant::now();
        if last.is_some_and(|l| now.duration_since(l) < LOG_EVERY) {
            self.quiet
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.quiet.swap(0, std::sync::atomic::Ordering::Relaxed))
    }
}

/// The object store and its writers; see the module documentation.
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    where_: String,
    budget: Arc<Semaphore>,
    budget_units: usize,
    writers: Arc<Semaphore>,
    attempts: u32,
    first_backoff: Duration,
    max_backoff: Duration,
    metrics: ArchiveMetrics,
    retry_log: Throttle,
    failed_log: Throttle,
    refused_log: Throttle,
}

impl Archive {
    /// Opens the store `config` names. A local directory is created if missing; a directory
    /// that cannot be written is not an error here: writes fail, are counted and logged, and
    /// live streams go on.
    pub fn open(config: &ArchiveConfig, metrics: ArchiveMetrics) -> anyhow::Result<Arc<Archive>> {
        let (store, where_): (Arc<dyn ObjectStore>, String) = match &config.s3 {
            Some(s3) => {
                // Our own retries (archive.retry) come on top: the client's are kept short so
                // that a dead service fails a write in seconds, not minutes.
                let retry = object_store::RetryConfig {
                    max_retries: 2,
                    retry_timeout: Duration::from_secs(10),
                    ..object_store::RetryConfig::default()
                };
                let mut builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(&s3.bucket)
                    .with_allow_http(s3.allow_http)
                    .with_retry(retry);
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(region) = &s3.region {
                    builder = builder.with_region(region);
                }
                let store = builder
                    .build()
                    .map_err(|e| anyhow::anyhow!("archive.s3: {e}"))?;
                (Arc::new(store), format!("s3://{}", s3.bucket))
            }
            None => {
                if let Err(e) = std::fs::create_dir_all(&config.path) {
                    tracing::error!(path = %config.path.display(), error = %e, "cannot create the archive directory; archive writes will fail");
                }
                let store = object_store::local::LocalFileSystem::new_with_prefix(&config.path)
                    .map_err(|e| anyhow::anyhow!("archive.path {}: {e}", config.path.display()))?;
                (
                    Arc::new(store.with_automatic_cleanup(true)),
                    config.path.display().to_string(),
                )
            }
        };
        let budget_units = (config.queue_bytes / BUDGET_UNIT).max(1);
        Ok(Arc::new(Archive {
            store,
            prefix: config.prefix.trim_matches('/').to_string(),
            where_,
            budget: Arc::new(Semaphore::new(budget_units)),
            budget_units,
            writers: Arc::new(Semaphore::new(config.concurrency)),
            attempts: config.retry.attempts,
            first_backoff: Duration::from_secs_f64(config.retry.initial_backoff),
            max_backoff: Duration::from_secs_f64(config.retry.max_backoff),
            metrics,
            retry_log: Throttle::default(),
            failed_log: Throttle::default(),
            refused_log: Throttle::default(),
        }))
    }

    /// Where the archive is, for logs.
    pub fn location(&self) -> &str {
        &self.where_
    }

    /// The metrics.
    pub fn metrics(&self) -> &ArchiveMetrics {
        &self.metrics
    }

    fn path(&self, key: &str) -> StorePath {
        if self.prefix.is_empty() {
            StorePath::from(key)
        } else {
            StorePath::from(format!("{}/{key}", self.prefix))
        }
    }

    /// Writes `chunks` under `key` in the background and calls `done` with whether it was
    /// stored. Never waits: over the byte budget the write is refused (and `done(false)`).
    pub fn put(
        self: &Arc<Self>,
        key: String,
        chunks: Vec<Bytes>,
        done: impl FnOnce(bool) + Send + 'static,
    ) {
        let len: usize = chunks.iter().map(Bytes::len).sum();
        let units = len.div_ceil(BUDGET_UNIT).clamp(1, self.budget_units);
        let Ok(permit) = self.budget.clone().try_acquire_many_owned(units as u32) else {
            self.metrics.writes.with_label_values(&["refused"]).inc();
            if let Some(more) = self.refused_log.allow() {
                tracing::error!(%key, bytes = len, archive = %self.where_, more_since_last_line = more, "archive write refused: too many bytes are waiting (archive.queue_bytes); the object is not archived");
            }
            done(false);
            return;
        };
        self.metrics.queued_bytes.add(len as i64);
        let this = self.clone();
        tokio::spawn(async move {
            let stored = this.write(&key, PutPayload::from_iter(chunks)).await;
            this.metrics.queued_bytes.sub(len as i64);
            drop(permit);
            done(stored);
        });
    }

    /// Writes `bytes` under `key`, retrying, and says whether it was stored.
    pub async fn put_now(&self, key: &str, bytes: Bytes) -> bool {
        self.write(key, PutPayload::from(bytes)).await
    }

    async fn write(&self, key: &str, payload: PutPayload) -> bool {
        let Ok(_writer) = self.writers.acquire().await else {
            return false;
        };
        let path = self.path(key);
        let len = payload.content_length();
        let started = Instant::now();
        let mut backoff = self.first_backoff;
        for attempt in 1..=self.attempts {
            match self.store.put(&path, payload.clone()).await {
                Ok(_) => {
                    self.metrics.writes.with_label_values(&["ok"]).inc();
                    self.metrics.bytes.inc_by(len as u64);
                    self.metrics
                        .write_seconds
                        .observe(started.elapsed().as_secs_f64());
                    return true;
                }
                Err(e) if attempt < self.attempts => {
                    self.metrics.writes.with_label_values(&["retried"]).inc();
                    if let Some(more) = self.retry_log.allow() {
                        tracing::warn!(%key, attempt, retry_in_ms = backoff.as_millis() as u64, error = %e, archive = %self.where_, more_since_last_line = more, "archive write failed; retrying");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.max_backoff);
                }
                Err(e) => {
                    self.metrics.writes.with_label_values(&["failed"]).inc();
                    if let Some(more) = self.failed_log.allow() {
                        tracing::error!(%key, attempts = attempt, error = %e, archive = %self.where_, more_since_last_line = more, "archive write failed for good; the object is not archived");
                    }
                }
            }
        }
        false
    }

    /// Reads the object `key`: `Ok(None)` when there is none.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, object_store::Error> {
        let result = match self.store.get(&self.path(key)).await {
            Ok(found) => found.bytes().await.map(Some),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        };
        let label = match &result {
            Ok(Some(_)) => "ok",
            Ok(None) => "missing",
            Err(_) => "error",
        };
        self.metrics.reads.with_label_values(&[label]).inc();
        result
    }

    /// The keys directly under `dir` that are directories themselves.
    pub async fn list_dirs(&self, dir: &str) -> Result<Vec<String>, object_store::Error> {
        let listing = self.store.list_with_delimiter(Some(&self.path(dir))).await;
        match listing {
            Ok(l) => Ok(l
                .common_prefixes
                .iter()
                .filter_map(|p| p.filename().map(str::to_string))
                .collect()),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Deletes every object under `dir`.
    pub async fn delete_all(&self, dir: &str) -> Result<usize, object_store::Error> {
        use futures_util::TryStreamExt;
        let prefix = self.path(dir);
        let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        for o in &objects {
            self.store.delete(&o.location).await?;
        }
        Ok(objects.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RetryConfig;

    fn archive(path: std::path::PathBuf, queue_bytes: usize) -> Arc<Archive> {
        let config = ArchiveConfig {
            path,
            queue_bytes,
            retry: RetryConfig {
                attempts: 2,
                initial_backoff: 0.05,
                max_backoff: 0.05,
            },
            ..ArchiveConfig::default()
        };
        let metrics = ArchiveMetrics::register(&Registry::new()).expect("metrics");
        Archive::open(&config, metrics).expect("opens")
    }

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("corral-archive-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    async fn put(a: &Arc<Archive>, key: &str, bytes: &'static [u8]) -> bool {
        let (tx, rx) = tokio::sync::oneshot::channel();
        a.put(
            key.to_string(),
            vec![Bytes::from_static(bytes)],
            move |ok| {
                let _ = tx.send(ok);
            },
        );
        rx.await.expect("done is called")
    }

    #[tokio::test]
    async fn objects_are_written_read_listed_and_deleted() {
        let dir = scratch("roundtrip");
        let a = archive(dir.clone(), 1 << 20);
        assert!(put(&a, "s/20261206T070142Z/v/1.m4s", b"one").await);
        assert!(
            a.put_now("s/20261206T070142Z/session.json", Bytes::from_static(b"{}"))
                .await
        );
        assert_eq!(
            a.get("s/20261206T070142Z/v/1.m4s").await.expect("read"),
            Some(Bytes::from_static(b"one"))
        );
        assert_eq!(a.get("s/nothing").await.expect("read"), None);
        assert_eq!(a.list_dirs("s").await.expect("list"), ["20261206T070142Z"]);
        assert_eq!(a.delete_all("s/20261206T070142Z").await.expect("delete"), 2);
        assert_eq!(
            a.get("s/20261206T070142Z/v/1.m4s").await.expect("read"),
            None
        );
        assert_eq!(a.metrics().writes.with_label_values(&["ok"]).get(), 2);
        assert_eq!(a.metrics().queued_bytes.get(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_store_that_fails_is_retried_counted_and_bounded() {
        // A file where the directory should be: every write fails, even for root.
        let dir = scratch("blocked");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("s"), b"not a directory").expect("file");
        let a = archive(dir.clone(), 1024);
        assert!(!put(&a, "s/x/1.m4s", b"one").await, "not stored");
        let writes = |r: &str| a.metrics().writes.with_label_values(&[r]).get();
        assert_eq!((writes("retried"), writes("failed")), (1, 1));
        // With one write waiting (its retry sleeping), the next is over the budget: refused.
        let (tx, first) = tokio::sync::oneshot::channel();
        a.put(
            "s/x/2.m4s".into(),
            vec![Bytes::from_static(b"two")],
            move |ok| {
                let _ = tx.send(ok);
            },
        );
        assert!(!put(&a, "s/x/3.m4s", b"three").await, "refused at once");
        assert_eq!(writes("refused"), 1);
        assert!(!first.await.expect("done"));
        assert_eq!(a.metrics().queued_bytes.get(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
