//! The origins of a region in priority order, with their health: a request goes to the first
//! healthy one (the primary while it is up), and to the next on failure.
//!
//! An origin is marked down when a request cannot connect to it or loses its connection, and
//! by the health check (`GET /healthz` every `health_interval`) when it fails [`DOWN_AFTER`]
//! checks in a row (no 200 in time); it is up again when a check passes. Host names are
//! resolved by the health check (off the request path), so a request never waits on DNS; an IP
//! address needs no resolving. When every origin is down, requests still try them in order
//! rather than fail without trying. The selection is pure code; the health check
//! is the only thing here that does I/O.
//!
//! Sticky (the default): after a failover, requests stay on the origin that took over while
//! it is up ([`Origins::served`] records which origin answers), and go back down the list only
//! when it fails; the shield, listed first when there is one, is preferred whenever it is up.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// See the module documentation.
#[derive(Debug)]
pub struct Origins {
    list: Vec<Origin>,
    /// The first index that takes part in stickiness (1 behind a shield, else 0); `None`
    /// when the first healthy origin in the list always serves.
    sticky_from: Option<usize>,
    /// The origin that serves now, when sticky.
    current: AtomicUsize,
    /// When an origin last answered a request, as milliseconds after `created` (0: never).
    last_answer_ms: AtomicU64,
    created: Instant,
}

/// Health checks that must fail in a row before the check marks an origin down: one slow
/// answer from a busy origin is not an outage, two in a row are (a request that fails marks
/// it down at once).
pub const DOWN_AFTER: u32 = 2;

#[derive(Debug)]
struct Origin {
    addr: String,
    up: AtomicBool,
    /// Health checks failed in a row.
    failed_checks: AtomicU32,
    resolved: RwLock<Option<SocketAddr>>,
}

/// Where a try goes: the origin's configured name, and its address once resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick<'a> {
    /// Its place in the priority order (for the request's record of origins tried).
    pub index: usize,
    /// HOST:PORT as configured.
    pub name: &'a str,
    /// Its address, when known (an IP literal, or resolved by the health check).
    pub addr: Option<SocketAddr>,
}

impl Origins {
    /// `addrs` (HOST:PORT) in priority order, all assumed up.
    pub fn new(addrs: &[String]) -> Self {
        let list = addrs
            .iter()
            .map(|a| Origin {
                addr: a.clone(),
                up: AtomicBool::new(true),
                failed_checks: AtomicU32::new(0),
                resolved: RwLock::new(a.parse().ok()),
            })
            .collect();
        Self {
            list,
            sticky_from: None,
            current: AtomicUsize::new(0),
            last_answer_ms: AtomicU64::new(0),
            created: Instant::now(),
        }
    }

    /// Makes the selection sticky (see the module documentation); the first of the list is a
    /// shield when `shield`.
    pub fn sticky(mut self, shield: bool) -> Self {
        let from = usize::from(shield);
        self.sticky_from = Some(from);
        self.current = AtomicUsize::new(from);
        self
    }

    /// Records that origin `index` answered a request: when sticky and the origin serving
    /// until now is down, it serves from now on. (One that is up keeps serving: a request that
    /// went on after its 404, say while it starts, moves nothing.)
    pub fn served(&self, index: usize) {
        let ms = (self.created.elapsed().as_millis() as u64).max(1);
        self.last_answer_ms.store(ms, Ordering::Relaxed);
        let Some(from) = self.sticky_from else {
            return;
        };
        let current = self.current.load(Ordering::Relaxed);
        if index >= from && index < self.list.len() && !self.list[current].is_up() {
            self.current.store(index, Ordering::Relaxed);
        }
    }

    /// The order in which origins are preferred now: the list's order, or, when sticky, the
    /// shield, the current origin, then the list's order.
    fn preference(&self) -> impl Iterator<Item = usize> + Clone + '_ {
        let first = self.sticky_from.map(|from| {
            let current = self.current.load(Ordering::Relaxed);
            (0..from).chain(std::iter::once(current))
        });
        first.into_iter().flatten().chain(0..self.list.len())
    }

    /// The origin for a request's next try, given the origins it `tried` already (bit `i` for
    /// origin `i`): the first healthy origin in order of preference it has not tried, then the
    /// first unhealthy one it has not tried; when it has tried them all, the first healthy one.
    pub fn pick(&self, tried: u64) -> Pick<'_> {
        let untried = |i: &usize| i >= &64 || tried & (1 << i) == 0;
        let healthy = |i: &usize| self.list[*i].is_up();
        let indices = self.preference();
        let i = indices
            .clone()
            .filter(untried)
            .find(healthy)
            .or_else(|| indices.clone().find(untried))
            .or_else(|| indices.clone().find(healthy))
            .unwrap_or(0);
        let o = &self.list[i];
        Pick {
            index: i,
            name: &o.addr,
            addr: *o.resolved.read(),
        }
    }

    /// Records the address `name` resolves to now.
    pub fn set_resolved(&self, name: &str, addr: SocketAddr) {
        if let Some(o) = self.find(name) {
            *o.resolved.write() = Some(addr);
        }
    }

    /// How many origins there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the list is empty (never, for a validated config).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Records that `addr` failed a request or a health check; returns whether it was up.
    pub fn mark_down(&self, addr: &str) -> bool {
        self.find(addr)
            .is_some_and(|o| o.up.swap(false, Ordering::Relaxed))
    }

    /// Records that `addr` passed a health check; returns whether it was down.
    pub fn mark_up(&self, addr: &str) -> bool {
        self.find(addr).is_some_and(|o| {
            o.failed_checks.store(0, Ordering::Relaxed);
            !o.up.swap(true, Ordering::Relaxed)
        })
    }

    /// Records that `addr` failed a health check, and marks it down once [`DOWN_AFTER`] have
    /// failed in a row; returns whether that changed it from up to down.
    pub fn check_failed(&self, addr: &str) -> bool {
        self.find(addr).is_some_and(|o| {
            let failed = o.failed_checks.fetch_add(1, Ordering::Relaxed) + 1;
            failed >= DOWN_AFTER && o.up.swap(false, Ordering::Relaxed)
        })
    }

    /// Whether `addr` is considered up.
    pub fn is_up(&self, addr: &str) -> bool {
        self.find(addr).is_some_and(Origin::is_up)
    }

    /// Whether any origin is considered up, or one answered a request within `recently`
    /// (health checks that time out under load do not cut off an origin that answers).
    pub fn reachable(&self, recently: Duration) -> bool {
        let last = self.last_answer_ms.load(Ordering::Relaxed);
        let answered = last != 0
            && self
                .created
                .elapsed()
                .saturating_sub(Duration::from_millis(last))
                < recently;
        answered || self.list.iter().any(Origin::is_up)
    }

    /// Every origin, in priority order.
    pub fn addrs(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|o| o.addr.as_str())
    }

    fn find(&self, addr: &str) -> Option<&Origin> {
        self.list.iter().find(|o| o.addr == addr)
    }
}

impl Origin {
    fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}

/// Resolves `name` (HOST:PORT) to its first address, within `timeout`.
pub async fn resolve(name: &str, timeout: Duration) -> Option<SocketAddr> {
    match tokio::time::timeout(timeout, tokio::net::lookup_host(name)).await {
        Ok(Ok(mut addrs)) => addrs.next(),
        _ => None,
    }
}

/// Whether the origin `name` at `addr` answers `GET /healthz?upstream` with 200 within
/// `timeout`. An origin ignores the query; an edge (a shield) answers 503 to it when it has no
/// upstream up itself, so the edges below it go around it rather than through it.
pub async fn healthy(name: &str, addr: SocketAddr, timeout: Duration) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!(
            "GET /healthz?upstream HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\nUser-Agent: corral-edge\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        std::io::Result::Ok(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
    };
    matches!(tokio::time::timeout(timeout, probe).await, Ok(Ok(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins() -> Origins {
        Origins::new(&["a:1".to_string(), "b:2".to_string(), "c:3".to_string()])
    }

    #[test]
    fn the_primary_serves_while_it_is_up_and_retries_go_down_the_list() {
        let o = origins();
        // A request tries each origin once, in order.
        let mut tried = 0u64;
        let mut order = Vec::new();
        for _ in 0..4 {
            let p = o.pick(tried);
            tried |= 1 << p.index;
            order.push(p.name);
        }
        assert_eq!(order, ["a:1", "b:2", "c:3", "a:1"]);
    }

    #[test]
    fn a_sticky_selection_stays_on_the_origin_that_took_over_and_prefers_the_shield() {
        let o = Origins::new(&["shield:1".to_string(), "a:1".to_string(), "b:2".to_string()])
            .sticky(true);
        assert_eq!(o.pick(0).name, "shield:1");
        // The shield down: the primary serves; then it fails and the standby takes over.
        o.mark_down("shield:1");
        assert_eq!(o.pick(0).name, "a:1");
        o.mark_down("a:1");
        let p = o.pick(0);
        assert_eq!(p.name, "b:2");
        o.served(p.index);
        // A request the primary could not serve (a 404) while it is up moves nothing.
        let fresh = Origins::new(&["a:1".to_string(), "b:2".to_string()]).sticky(false);
        fresh.served(1);
        assert_eq!(fresh.pick(0).name, "a:1");
        // The primary is back: the standby keeps serving while it is up.
        o.mark_up("a:1");
        assert_eq!(o.pick(0).name, "b:2");
        assert_eq!(o.pick(0b100).name, "a:1", "a retry goes down the list");
        // The shield back: preferred at once.
        o.mark_up("shield:1");
        assert_eq!(o.pick(0).name, "shield:1");
        o.mark_down("shield:1");
        // The standby fails: back to the primary, which serves from then on.
        o.mark_down("b:2");
        let p = o.pick(0);
        assert_eq!(p.name, "a:1");
        o.served(p.index);
        o.mark_up("b:2");
        assert_eq!(o.pick(0).name, "a:1");
        o.served(2);
        assert_eq!(o.pick(0).name, "a:1");
        // Not sticky: the first healthy one in the list, always.
        let plain = Origins::new(&["a:1".to_string(), "b:2".to_string()]);
        plain.served(1);
        assert_eq!(plain.pick(0).name, "a:1");
    }

    #[test]
    fn an_upstream_that_answers_is_reachable_even_when_its_checks_fail() {
        let o = origins();
        for name in ["a:1", "b:2", "c:3"] {
            o.mark_down(name);
        }
        assert!(
            !o.reachable(Duration::from_secs(2)),
            "all down, nothing answered"
        );
        o.served(1);
        assert!(o.reachable(Duration::from_secs(2)));
        assert!(!o.reachable(Duration::ZERO), "not within no time");
    }

    #[test]
    fn ip_literals_need_no_resolving_and_names_use_the_last_resolution() {
        let o = Origins::new(&["127.0.0.1:81".to_string(), "origin.example:81".to_string()]);
        assert_eq!(o.pick(0).addr, Some("127.0.0.1:81".parse().expect("addr")));
        assert_eq!(o.pick(0b1).addr, None, "not resolved yet");
        o.set_resolved("origin.example:81", "10.1.2.3:81".parse().expect("addr"));
        assert_eq!(o.pick(0b1).addr, Some("10.1.2.3:81".parse().expect("addr")));
    }

    #[test]
    fn a_down_origin_is_skipped_until_it_is_back() {
        let o = origins();
        assert!(o.mark_down("a:1"));
        assert!(!o.mark_down("a:1"), "already down");
        assert_eq!(o.pick(0).name, "b:2", "the first healthy one");
        assert_eq!(
            o.pick(0b010).name,
            "c:3",
            "b failed this request: the next healthy one"
        );
        assert_eq!(o.pick(0b110).name, "a:1", "then the one marked down");
        // The primary failed this request and was marked down: the retry must not go back to
        // it, whatever the new order of health.
        assert_eq!(o.pick(0b001).name, "b:2");
        assert!(o.mark_up("a:1"));
        assert_eq!(
            o.pick(0).name,
            "a:1",
            "the primary takes over again when healthy"
        );
        assert!(!o.mark_up("x:9"), "an unknown origin changes nothing");
    }

    #[test]
    fn the_health_check_marks_an_origin_down_after_failures_in_a_row() {
        let o = origins();
        assert!(!o.check_failed("a:1"), "one slow answer is not an outage");
        assert!(o.is_up("a:1"));
        assert!(!o.mark_up("a:1"), "a pass: it was up all along");
        assert!(!o.check_failed("a:1"), "the count started again");
        assert!(o.check_failed("a:1"), "two in a row: down");
        assert!(!o.is_up("a:1"));
        assert!(!o.check_failed("a:1"), "already down");
        assert!(o.mark_up("a:1"));
        assert!(o.is_up("a:1"));
    }

    #[test]
    fn when_all_are_down_they_are_still_tried_in_order() {
        let o = origins();
        for a in ["a:1", "b:2", "c:3"] {
            o.mark_down(a);
        }
        assert_eq!((o.pick(0).name, o.pick(0b001).name), ("a:1", "b:2"));
    }

    #[tokio::test]
    async fn the_health_check_wants_a_200_from_healthz() {
        let ok = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let bad = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let serve = |l: tokio::net::TcpListener, answer: &'static [u8]| {
            tokio::spawn(async move {
                while let Ok((mut s, _)) = l.accept().await {
                    let mut buf = [0u8; 256];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(answer).await;
                }
            })
        };
        let ok_addr = ok.local_addr().expect("addr");
        let bad_addr = bad.local_addr().expect("addr");
        serve(ok, b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n");
        serve(bad, b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let t = Duration::from_secs(2);
        assert!(healthy("ok", ok_addr, t).await);
        assert!(!healthy("bad", bad_addr, t).await);
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let closed_addr = closed.local_addr().expect("addr");
        drop(closed);
        assert!(
            !healthy("closed", closed_addr, t).await,
            "nothing listening"
        );
        assert_eq!(
            resolve(&ok_addr.to_string(), t).await,
            Some(ok_addr),
            "an address resolves to itself"
        );
    }
}
