//! Playlists compressed once per version, not once per player.
//!
//! The cache holds one identity copy of each playlist (the origin is never asked for an
//! encoding, so a herd costs one upstream request whatever its players accept). Players that
//! accept gzip get a compressed copy, and at every part thousands of them ask for the same new
//! playlist: compressing it for each (a deflate state set up and torn down, a few kilobytes
//! deflated) cost the edge an eighth of its CPU under a viewer swarm. [`GzipCache`] keeps the
//! compressed copy of each identity body it has seen, looked up by the body itself (a keyed
//! hash, then a byte comparison), so a copy can never be served for other bytes, whichever
//! request, fill or signature produced them. It is bounded in bytes and forgets a copy soon
//! after its playlist stops being asked for. The bodies are whole playlists: the caller
//! gathers one before asking (they are kilobytes).

use std::hash::BuildHasher;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use moka::sync::Cache;

/// How long a compressed copy outlives the last request for it. Live playlists change at
/// every part; a blocking playlist's copy is asked for within a part target or never again.
const IDLE: Duration = Duration::from_secs(10);

/// Bytes counted per entry on top of the two bodies (key, `Arc`s, the map's bookkeeping).
const ENTRY_OVERHEAD: usize = 128;

/// An identity body and its gzip encoding.
struct Compressed {
    identity: Bytes,
    gzip: Bytes,
}

/// Where a compressed body came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Compressed for this request (and kept for the next ones).
    Compressed,
    /// Another request's copy of the same bytes.
    Reused,
}

impl Outcome {
    /// The label used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Compressed => "compressed",
            Outcome::Reused => "reused",
        }
    }
}

/// Compressed copies of the playlists served lately.
///
/// ```
/// use corral_edge::gzip::{GzipCache, Outcome};
/// let cache = GzipCache::new(1 << 20, 4);
/// let playlist = b"#EXTM3U\n#EXT-X-VERSION:9\n".repeat(40);
/// let (first, how) = cache.compress(&playlist);
/// assert_eq!(how, Outcome::Compressed);
/// let (again, how) = cache.compress(&playlist);
/// assert_eq!((again, how), (first, Outcome::Reused));
/// ```
pub struct GzipCache {
    copies: Cache<u64, Arc<Compressed>>,
    hasher: std::hash::RandomState,
    level: Compression,
}

impl GzipCache {
    /// A cache of at most `max_bytes` (identity and compressed bodies together), compressing
    /// at `level` (0–9).
    pub fn new(max_bytes: u64, level: u32) -> Self {
        let copies = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_, c: &Arc<Compressed>| {
                u32::try_from(c.identity.len() + c.gzip.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .time_to_idle(IDLE)
            .build();
        Self {
            copies,
            // Keyed at random per process: bodies cannot be chosen to collide in the map (and
            // a collision would only cost a compression: the bytes are compared).
            hasher: std::hash::RandomState::new(),
            level: Compression::new(level.min(9)),
        }
    }

    /// The gzip encoding of `identity`, and whether it was made now or found. Requests that
    /// ask for the same new body at once (a herd's waiters, woken together) wait for one
    /// compression.
    pub fn compress(&self, identity: &[u8]) -> (Bytes, Outcome) {
        let mut made = false;
        let copy = self.copies.get_with(self.hasher.hash_one(identity), || {
            made = true;
            Arc::new(Compressed {
                identity: Bytes::copy_from_slice(identity),
                gzip: gzip(identity, self.level),
            })
        });
        if copy.identity == identity {
            let outcome = if made {
                Outcome::Compressed
            } else {
                Outcome::Reused
            };
            return (copy.gzip.clone(), outcome);
        }
        // Another body with the same 64-bit hash: compressed on its own, not kept.
        (gzip(identity, self.level), Outcome::Compressed)
    }

    /// Copies held now (after pending evictions).
    pub fn len(&self) -> u64 {
        self.copies.run_pending_tasks();
        self.copies.entry_count()
    }

    /// Whether no copy is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn gzip(body: &[u8], level: Compression) -> Bytes {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 3 + 64), level);
    // Writing to a Vec cannot fail.
    encoder.write_all(body).expect("writing to memory");
    Bytes::from(encoder.finish().expect("writing to memory"))
}

/// Whether an `Accept-Encoding` value accepts gzip (`gzip` or `x-gzip`, with a q-value other
/// than 0). A `*` is not taken as gzip: a player that wants it says so.
///
/// ```
/// use corral_edge::gzip::accepts_gzip;
/// assert!(accepts_gzip(b"gzip, deflate, br"));
/// assert!(accepts_gzip(b"br;q=1.0, GZIP;q=0.5"));
/// assert!(!accepts_gzip(b"gzip;q=0, br"));
/// assert!(!accepts_gzip(b"identity"));
/// ```
pub fn accepts_gzip(accept_encoding: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(accept_encoding) else {
        return false;
    };
    text.split(',').any(|item| {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        if !coding.eq_ignore_ascii_case("gzip") && !coding.eq_ignore_ascii_case("x-gzip") {
            return false;
        }
        parts.all(|param| {
            let Some((name, value)) = param.split_once('=') else {
                return true;
            };
            !name.trim().eq_ignore_ascii_case("q")
                || value.trim().parse::<f32>().is_ok_and(|q| q > 0.0)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Read;

    fn gunzip(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    #[test]
    fn each_version_is_compressed_once_and_decompresses_to_itself() {
        let cache = GzipCache::new(1 << 20, 4);
        let one = b"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:1\n".repeat(50);
        let two = b"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:2\n".repeat(50);
        let (a, how) = cache.compress(&one);
        assert_eq!(how, Outcome::Compressed);
        assert!(a.len() < one.len() / 4, "{} of {}", a.len(), one.len());
        assert_eq!(gunzip(&a), one);
        let (b, how) = cache.compress(&two);
        assert_eq!(how, Outcome::Compressed);
        assert_eq!(gunzip(&b), two);
        for _ in 0..3 {
            assert_eq!(cache.compress(&one), (a.clone(), Outcome::Reused));
            assert_eq!(cache.compress(&two), (b.clone(), Outcome::Reused));
        }
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_herd_asking_at_once_waits_for_one_compression() {
        let cache = Arc::new(GzipCache::new(1 << 20, 9));
        let body = Arc::new(b"#EXTM3U\n#EXT-X-PART:DURATION=0.33334,URI=\"1.0.m4s\"\n".repeat(200));
        let outcomes: Vec<(Bytes, Outcome)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16).map(|_| s.spawn(|| cache.compress(&body))).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("no panic"))
                .collect()
        });
        let made = outcomes
            .iter()
            .filter(|(_, how)| *how == Outcome::Compressed)
            .count();
        assert_eq!(made, 1);
        assert!(outcomes.iter().all(|(gz, _)| *gz == outcomes[0].0));
    }

    #[test]
    fn the_cache_stays_within_its_bytes() {
        let cache = GzipCache::new(64 << 10, 1);
        for i in 0..200u32 {
            let body = format!("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:{i}\n").repeat(40);
            let (gz, _) = cache.compress(body.as_bytes());
            assert_eq!(gunzip(&gz), body.as_bytes());
        }
        let held = cache.len();
        // Each entry weighs about 1.5 KB: 64 KB holds a few dozen, never all 200.
        assert!(held > 0 && held < 60, "{held}");
    }

    #[test]
    fn accept_encoding_is_read_as_http_says() {
        for (value, gzip) in [
            (&b"gzip"[..], true),
            (b"x-gzip", true),
            (b"deflate, gzip;q=0.8", true),
            (b" GZip ; q=1", true),
            (b"gzip;q=0", false),
            (b"gzip;q=0.000", false),
            (b"gzip;q=nonsense", false),
            (b"*", false),
            (b"", false),
            (b"br, deflate", false),
            (b"gzipped", false),
            (b"\xff\xfe", false),
        ] {
            assert_eq!(
                accepts_gzip(value),
                gzip,
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }

    proptest! {
        #[test]
        fn any_body_round_trips_and_is_reused(body in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let cache = GzipCache::new(1 << 20, 4);
            let (gz, how) = cache.compress(&body);
            prop_assert_eq!(how, Outcome::Compressed);
            prop_assert_eq!(gunzip(&gz), body.clone());
            prop_assert_eq!(cache.compress(&body), (gz, Outcome::Reused));
        }

        #[test]
        fn any_accept_encoding_reads_without_panicking(value in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = accepts_gzip(&value);
        }
    }
}
