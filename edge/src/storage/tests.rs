use std::time::{Duration, SystemTime};

use bytes::Bytes;
use pingora::cache::storage::{HitHandler, MissHandler, Storage};
use pingora::cache::trace::Span;
use pingora::cache::{CacheKey, CacheMeta};
use pingora::http::ResponseHeader;

use super::MediaCache;

fn cache(capacity: u64) -> &'static MediaCache {
    Box::leak(Box::new(MediaCache::new(
        capacity,
        64 << 10,
        Duration::from_secs(3600),
    )))
}

fn meta(fresh: Duration) -> CacheMeta {
    let now = SystemTime::now();
    let header = ResponseHeader::build(200, None).expect("a header");
    CacheMeta::new(now + fresh, now, 0, 0, header)
}

async fn lookup(c: &'static MediaCache, key: &CacheKey) -> Option<HitHandler> {
    let span = Span::inactive().handle();
    c.lookup(key, &span).await.expect("lookup").map(|(_, h)| h)
}

async fn miss(c: &'static MediaCache, key: &CacheKey) -> MissHandler {
    let span = Span::inactive().handle();
    c.get_miss_handler(key, &meta(Duration::from_secs(60)), &span)
        .await
        .expect("a miss handler")
}

async fn read_all(h: &mut HitHandler) -> pingora::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = h.read_body().await? {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[tokio::test]
async fn readers_attached_to_a_fill_get_each_chunk_as_it_arrives() {
    let c = cache(1 << 20);
    let key = CacheKey::new("/live/d/360p/7.2.m4s", "");
    let mut writer = miss(c, &key).await;
    let mut early = lookup(c, &key).await.expect("the fill is found");
    writer
        .write_body(Bytes::from_static(b"moof"), false)
        .await
        .expect("write");
    assert_eq!(
        early.read_body().await.expect("read").as_deref(),
        Some(&b"moof"[..])
    );
    // A reader blocked on the next chunk is woken by the write, not by a timer.
    let pending = tokio::spawn(async move {
        let chunk = early.read_body().await.expect("read");
        (chunk, early)
    });
    tokio::task::yield_now().await;
    writer
        .write_body(Bytes::from_static(b"mdat"), true)
        .await
        .expect("write");
    let (chunk, mut early) = tokio::time::timeout(Duration::from_secs(1), pending)
        .await
        .expect("woken")
        .expect("task");
    assert_eq!(chunk.as_deref(), Some(&b"mdat"[..]));
    let mut late = lookup(c, &key).await.expect("still the fill");
    writer.finish().await.expect("finish");
    assert_eq!(early.read_body().await.expect("read"), None, "done");
    assert_eq!(read_all(&mut late).await.expect("read"), b"moofmdat");
    // After the fill, the complete object serves.
    let mut hit = lookup(c, &key).await.expect("cached");
    assert_eq!(read_all(&mut hit).await.expect("read"), b"moofmdat");
    let s = c.stats();
    assert_eq!((s.objects, s.filling, s.failed_fills), (1, 0, 0));
}

#[tokio::test]
async fn a_fill_that_fails_is_an_error_for_its_readers_and_is_not_kept() {
    let c = cache(1 << 20);
    let key = CacheKey::new("/live/d/360p/8.m4s", "");
    let mut writer = miss(c, &key).await;
    writer
        .write_body(Bytes::from_static(b"half"), false)
        .await
        .expect("write");
    let mut reader = lookup(c, &key).await.expect("the fill");
    drop(writer);
    assert!(
        read_all(&mut reader).await.is_err(),
        "a truncated body is never passed off as complete"
    );
    assert!(lookup(c, &key).await.is_none(), "nothing kept");
    assert_eq!(c.stats().failed_fills, 1);
}

#[tokio::test]
async fn an_object_over_the_size_limit_fails_its_fill() {
    let c = cache(1 << 20);
    let key = CacheKey::new("/big", "");
    let mut writer = miss(c, &key).await;
    let big = Bytes::from(vec![0u8; 65 << 10]);
    assert!(writer.write_body(big, true).await.is_err());
    drop(writer);
    assert!(lookup(c, &key).await.is_none());
}

#[tokio::test]
async fn the_cache_is_bounded_by_bytes() {
    let c = cache(1 << 20);
    for i in 0..64 {
        let key = CacheKey::new(format!("/live/d/360p/{i}.m4s"), "");
        let mut writer = miss(c, &key).await;
        writer
            .write_body(Bytes::from(vec![7u8; 60 << 10]), true)
            .await
            .expect("write");
        writer.finish().await.expect("finish");
    }
    let s = c.stats();
    assert!(s.bytes <= 1 << 20, "{s:?}");
    assert!(s.objects < 64 && s.objects > 0, "{s:?}");
    assert!(s.evictions > 0, "{s:?}");
}

#[tokio::test]
async fn the_streaming_write_tag_finds_that_write_only() {
    let c = cache(1 << 20);
    let key = CacheKey::new("/live/d/360p/9.0.m4s", "");
    let span = Span::inactive().handle();
    let first = miss(c, &key).await;
    let tag = first.streaming_write_tag().expect("a tag").to_vec();
    let second = miss(c, &key).await;
    let other = second.streaming_write_tag().expect("a tag").to_vec();
    assert_ne!(tag, other);
    assert!(
        c.lookup_streaming_write(&key, Some(&other), &span)
            .await
            .expect("lookup")
            .is_some()
    );
    assert!(
        c.lookup_streaming_write(&key, Some(&tag), &span)
            .await
            .expect("lookup")
            .is_none(),
        "a newer fill replaced it; the old tag finds nothing rather than another body"
    );
    drop((first, second));
}

#[tokio::test]
async fn an_object_that_cannot_be_fresh_or_stale_is_not_kept() {
    let c = cache(1 << 20);
    let key = CacheKey::new("/expired", "");
    let span = Span::inactive().handle();
    let now = SystemTime::now();
    let header = ResponseHeader::build(404, None).expect("a header");
    let expired = CacheMeta::new(now - Duration::from_secs(5), now, 0, 0, header);
    let mut writer = c
        .get_miss_handler(&key, &expired, &span)
        .await
        .expect("a miss handler");
    writer
        .write_body(Bytes::from_static(b"x"), true)
        .await
        .expect("write");
    writer.finish().await.expect("finish");
    assert!(lookup(c, &key).await.is_none());
}
