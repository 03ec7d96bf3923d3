//! The player against a scripted LL-HLS stream on a simulated clock: what it asks, in what
//! order, and what it counts, for a live stream, delta updates, a 503, a rendition switch and
//! a stall.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::*;
use crate::swarm::abr::BandwidthTrace;

/// Parts of 0.5 s, four to a segment, published at their media's end; at the start segments
/// 100 to 102 are complete and 103 has no part yet.
const PART: f64 = 0.5;
const PER_SEGMENT: u64 = 4;
const FIRST_PUBLISHED: u64 = 103 * PER_SEGMENT;
/// Steps of the simulated clock.
const STEP: f64 = 0.01;

struct Stream {
    t0: Instant,
    wall0: SystemTime,
    /// Parts requested in [from, to) seconds are answered only at `to`.
    frozen: Option<(f64, f64, &'static str)>,
}

impl Stream {
    fn new() -> Self {
        Self {
            t0: Instant::now(),
            wall0: SystemTime::now(),
            frozen: None,
        }
    }

    /// Parts published at `t`: part g exists once g < published.
    fn published(t: f64) -> u64 {
        FIRST_PUBLISHED + (t / PART + 1e-9).floor() as u64
    }

    fn pdt(&self, msn: u64) -> String {
        let offset = (msn * PER_SEGMENT) as f64 * PART - FIRST_PUBLISHED as f64 * PART;
        let at = if offset >= 0.0 {
            self.wall0 + Duration::from_secs_f64(offset)
        } else {
            self.wall0 - Duration::from_secs_f64(-offset)
        };
        humantime::format_rfc3339_millis(at).to_string()
    }

    fn playlist(&self, rendition: &str, t: f64, skip: bool) -> String {
        let p = Self::published(t);
        let complete_end = p / PER_SEGMENT; // segments below this are complete
        let first = complete_end.saturating_sub(5).max(100);
        let mut o = format!(
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=4.0,PART-HOLD-BACK=1.5\n\
             #EXT-X-PART-INF:PART-TARGET=0.5\n#EXT-X-MEDIA-SEQUENCE:{first}\n"
        );
        let skipped = if skip {
            (complete_end - first).saturating_sub(2)
        } else {
            0
        };
        if skip {
            o += &format!("#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}\n");
        }
        o += "#EXT-X-MAP:URI=\"init.mp4\"\n";
        for msn in first + skipped..=complete_end {
            let parts = if msn < complete_end {
                PER_SEGMENT
            } else {
                p % PER_SEGMENT
            };
            if msn == complete_end && parts == 0 {
                break;
            }
            o += &format!("#EXT-X-PROGRAM-DATE-TIME:{}\n", self.pdt(msn));
            for i in 0..parts {
                let independent = if i == 0 || rendition == "aac" {
                    ",INDEPENDENT=YES"
                } else {
                    ""
                };
                o += &format!("#EXT-X-PART:DURATION=0.5,URI=\"{msn}.{i}.m4s\"{independent}\n");
            }
            if msn < complete_end {
                o += &format!("#EXTINF:2.0,\n{msn}.m4s\n");
            }
        }
        o += &format!(
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}.{}.m4s\"\n",
            p / PER_SEGMENT,
            p % PER_SEGMENT
        );
        for other in ["720p", "360p"] {
            if other != rendition {
                let last = p - 1;
                o += &format!(
                    "#EXT-X-RENDITION-REPORT:URI=\"../{other}/index.m3u8\",LAST-MSN={},LAST-PART={}\n",
                    last / PER_SEGMENT,
                    last % PER_SEGMENT
                );
            }
        }
        o
    }

    /// The answer to `r` at `t`, or `None` while it is held (a blocking request for a part not
    /// yet published).
    fn answer(&self, r: &Request, asked: f64, t: f64) -> Option<Outcome> {
        let path = r.url.path();
        let query = r.url.query().unwrap_or("");
        let rendition = path.split('/').nth(3).unwrap_or("");
        let ok = |body: String| Outcome::Answer {
            status: 200,
            body: Bytes::from(body),
            gzip: false,
            elapsed: Duration::from_millis(5),
            transfer: Duration::from_millis(2),
        };
        if path.ends_with("master.m3u8") {
            return Some(ok(MASTER.to_string()));
        }
        if path.ends_with("init.mp4") {
            return Some(ok("i".repeat(500)));
        }
        let exists = |msn: u64, part: u64| msn * PER_SEGMENT + part < Self::published(t);
        if path.ends_with("index.m3u8") {
            let get = |k: &str| {
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            if let (Some(m), Some(p)) = (get("_HLS_msn"), get("_HLS_part"))
                && !exists(m, p)
            {
                return None;
            }
            let skip = query.contains("_HLS_skip=YES");
            return Some(ok(self.playlist(rendition, t, skip)));
        }
        let name = path.rsplit('/').next().unwrap_or("");
        let (msn, part) = MediaPlaylist::part_position(name)?;
        if let Some((from, to, which)) = self.frozen
            && rendition == which
            && (from..to).contains(&asked)
            && t < to
        {
            return None;
        }
        if !exists(msn, part) {
            return None;
        }
        let size = if rendition == "aac" { 1_000 } else { 10_000 };
        Some(ok("p".repeat(size)))
    }
}

const MASTER: &str = "#EXTM3U\n#EXT-X-VERSION:9\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"aac\",DEFAULT=YES,URI=\"aac/index.m3u8\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1280x720,AUDIO=\"audio\"\n720p/index.m3u8\n\
#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,AUDIO=\"audio\"\n360p/index.m3u8\n";

/// What a run saw: every request with the time it was sent, and every observation.
struct Run {
    requests: Vec<(f64, Request)>,
    observations: Vec<Observation>,
    startup: Option<Duration>,
    stalls: Vec<Duration>,
}

impl Run {
    fn urls(&self) -> Vec<String> {
        self.requests
            .iter()
            .map(|(_, r)| {
                r.url
                    .path_and_query()
                    .map_or(String::new(), |p| p.to_string())
            })
            .collect()
    }

    fn count(&self, wanted: &Observation) -> usize {
        self.observations.iter().filter(|o| *o == wanted).count()
    }

    fn errors(&self) -> Vec<&str> {
        self.observations
            .iter()
            .filter_map(|o| match o {
                Observation::Error(e) => Some(e.as_str()),
                _ => None,
            })
            .collect()
    }
}

fn plan(selection: Selection) -> PlayerPlan {
    PlayerPlan {
        master: "http://edge:8080/live/demo/master.m3u8"
            .parse()
            .expect("a URL"),
        selection,
        audio: true,
        delta: true,
        hold_back: None,
    }
}

/// Runs `player` against `stream` for `seconds` of simulated time; `fault` may answer a
/// request in the stream's place (the request, the time it was sent, now).
fn drive(
    mut player: Player,
    stream: &Stream,
    seconds: f64,
    mut fault: impl FnMut(&Request, f64, f64) -> Option<Outcome>,
) -> Run {
    let mut pending: Vec<(f64, Request)> = Vec::new();
    let mut run = Run {
        requests: Vec::new(),
        observations: Vec::new(),
        startup: None,
        stalls: Vec::new(),
    };
    let steps = (seconds / STEP).round() as u64;
    for step in 0..=steps {
        let t = step as f64 * STEP;
        let now = stream.t0 + Duration::from_secs_f64(t);
        let wall = stream.wall0 + Duration::from_secs_f64(t);
        loop {
            let (requests, _) = player.poll(now);
            for r in requests {
                run.requests.push((t, r.clone()));
                pending.push((t, r));
            }
            let mut answered = false;
            let mut still = Vec::new();
            for (asked, r) in pending.drain(..) {
                match fault(&r, asked, t).or_else(|| stream.answer(&r, asked, t)) {
                    Some(outcome) => {
                        player.on_outcome(r.id, outcome, now, wall);
                        answered = true;
                    }
                    None => still.push((asked, r)),
                }
            }
            pending = still;
            if !answered {
                break;
            }
        }
        run.observations.extend(player.take_observations());
    }
    let end = stream.t0 + Duration::from_secs_f64(seconds);
    let (startup, stalls) = player.finish(end);
    run.startup = startup;
    run.stalls = stalls;
    run
}

fn no_fault(_: &Request, _: f64, _: f64) -> Option<Outcome> {
    None
}

#[test]
fn follows_the_stream_like_a_low_latency_player() {
    let stream = Stream::new();
    let player = Player::new(plan(Selection::Fixed("720p".into())), stream.t0, 1);
    let run = drive(player, &stream, 10.0, no_fault);
    let urls = run.urls();
    assert_eq!(urls[0], "/live/demo/master.m3u8");
    assert_eq!(
        &urls[1..3],
        ["/live/demo/720p/index.m3u8", "/live/demo/aac/index.m3u8"],
        "both playlists are joined with a plain request"
    );
    assert!(urls.contains(&"/live/demo/720p/init.mp4".to_string()));
    assert!(urls.contains(&"/live/demo/aac/init.mp4".to_string()));
    // Joined PART-HOLD-BACK (1.5 s) behind the live end, on an independent part: the video
    // at the open segment's start, 103.0 (the live end is 103.0 at t = 0, so 102.0).
    let first_video_part = urls
        .iter()
        .find(|u| u.starts_with("/live/demo/720p/") && u.ends_with(".m4s"))
        .expect("a part");
    assert_eq!(first_video_part, "/live/demo/720p/102.0.m4s");
    // Then one blocking reload for the next part at a time, as a delta update.
    assert!(
        urls.contains(&"/live/demo/720p/index.m3u8?_HLS_msn=104&_HLS_part=2&_HLS_skip=YES".into()),
        "{urls:#?}"
    );
    assert!(run.count(&Observation::Delta) > 30, "delta updates applied");
    assert_eq!(run.count(&Observation::DeltaMiss), 0);
    // Every part from the join to the live end, once: 4 + 20 for the video in 10 s.
    let video_parts: Vec<&String> = urls
        .iter()
        .filter(|u| u.starts_with("/live/demo/720p/") && u.ends_with(".m4s"))
        .collect();
    let mut unique = video_parts.clone();
    unique.dedup();
    assert_eq!(video_parts.len(), unique.len(), "no part loaded twice");
    assert!(
        (23..=25).contains(&video_parts.len()),
        "{}",
        video_parts.len()
    );
    assert!(run.errors().is_empty(), "{:?}", run.errors());
    // Hinted parts arrive as they are published: no lag on the simulated clock.
    let lags: Vec<Duration> = run
        .observations
        .iter()
        .filter_map(|o| match o {
            Observation::PartLag(d) => Some(*d),
            _ => None,
        })
        .collect();
    assert!(lags.len() > 30, "{}", lags.len());
    assert!(
        lags.iter().all(|d| *d <= Duration::from_millis(20)),
        "{lags:?}"
    );
    assert!(run.startup.is_some_and(|s| s < Duration::from_millis(100)));
    assert!(run.stalls.is_empty(), "{:?}", run.stalls);
}

#[test]
fn a_delta_update_that_skips_what_the_player_lacks_costs_a_whole_reload() {
    let stream = Stream::new();
    let player = Player::new(plan(Selection::Fixed("720p".into())), stream.t0, 1);
    let mut injected = false;
    let run = drive(player, &stream, 6.0, |r, _, t| {
        let delta = r.url.query().is_some_and(|q| q.contains("_HLS_skip=YES"));
        if delta && t >= 3.0 && !injected && r.url.path().contains("720p") {
            injected = true;
            // Skips 90 to 92, which the player never held.
            let text = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n\
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=4.0,PART-HOLD-BACK=1.5\n\
#EXT-X-PART-INF:PART-TARGET=0.5\n#EXT-X-MEDIA-SEQUENCE:90\n#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n\
#EXT-X-PART:DURATION=0.5,URI=\"93.0.m4s\"\n";
            return Some(Outcome::Answer {
                status: 200,
                body: Bytes::from(text),
                gzip: false,
                elapsed: Duration::from_millis(5),
                transfer: Duration::from_millis(2),
            });
        }
        None
    });
    assert!(injected);
    assert_eq!(run.count(&Observation::DeltaMiss), 1);
    let at = run
        .requests
        .iter()
        .position(|(t, r)| *t >= 3.0 && r.url.path().contains("720p") && r.kind == Kind::Playlist)
        .expect("a whole reload after the bad delta");
    assert_eq!(
        run.requests[at].1.url.query(),
        None,
        "the whole playlist, no directives"
    );
    assert!(run.stalls.is_empty(), "{:?}", run.stalls);
}

#[test]
fn a_503_is_counted_and_retried_after_a_jittered_back_off() {
    let retry_delay = |seed: u64| {
        let stream = Stream::new();
        let player = Player::new(plan(Selection::Fixed("720p".into())), stream.t0, seed);
        let mut failed_at = None;
        let run = drive(player, &stream, 5.0, |r, _, t| {
            let blocking = r.kind == Kind::BlockingPlaylist && r.url.path().contains("720p");
            if blocking && t >= 2.0 && failed_at.is_none() {
                failed_at = Some(t);
                return Some(Outcome::Answer {
                    status: 503,
                    body: Bytes::new(),
                    gzip: false,
                    elapsed: Duration::from_millis(5),
                    transfer: Duration::from_millis(2),
                });
            }
            None
        });
        let failed_at = failed_at.expect("the 503 was sent");
        assert_eq!(run.errors(), ["blocking_playlist: 503"]);
        assert_eq!(run.count(&Observation::Retry), 1);
        assert!(run.observations.contains(&Observation::Answered {
            kind: Kind::BlockingPlaylist,
            status: 503,
            bytes: 0,
            elapsed: Duration::from_millis(5),
        }));
        let (retried_at, retry) = run
            .requests
            .iter()
            .find(|(t, r)| *t > failed_at && r.url.path().contains("720p/index"))
            .expect("a retry");
        assert_eq!(retry.kind, Kind::Playlist, "a whole reload re-synchronises");
        assert!(run.stalls.is_empty(), "{:?}", run.stalls);
        retried_at - failed_at
    };
    let delays: Vec<f64> = (1..=4).map(retry_delay).collect();
    for d in &delays {
        assert!(
            (0.09..=0.21).contains(d),
            "{delays:?}: half to all of 200 ms"
        );
    }
    assert!(
        delays.windows(2).any(|w| (w[0] - w[1]).abs() > 0.015),
        "jitter spreads players: {delays:?}"
    );
}

#[test]
fn a_bandwidth_trace_switches_rendition_through_the_rendition_report() {
    let stream = Stream::new();
    let trace: BandwidthTrace = "5M:3s,500k:100s".parse().expect("a trace");
    let player = Player::new(plan(Selection::Trace(trace)), stream.t0, 1);
    let run = drive(player, &stream, 8.0, no_fault);
    assert_eq!(run.count(&Observation::Switch), 1);
    let urls = run.urls();
    let first_720 = urls
        .iter()
        .position(|u| u.contains("/720p/"))
        .expect("720p");
    let first_360 = urls
        .iter()
        .position(|u| u.contains("/360p/"))
        .expect("360p");
    assert!(first_720 < first_360, "starts high, 5 Mb/s fits 3 Mb/s");
    let join = &run.requests[first_360];
    assert!(join.0 >= 3.0, "switched when the bandwidth fell");
    assert_eq!(join.1.kind, Kind::BlockingPlaylist);
    let query = join.1.url.query().unwrap_or("");
    assert!(
        query.starts_with("_HLS_msn=") && query.contains("&_HLS_part="),
        "joins through the rendition report: {query}"
    );
    assert!(urls.contains(&"/live/demo/360p/init.mp4".to_string()));
    let parts_360 = urls
        .iter()
        .filter(|u| u.starts_with("/live/demo/360p/") && u.ends_with(".m4s"))
        .count();
    assert!(parts_360 >= 8, "{parts_360}");
    assert!(
        !run.requests[first_360..]
            .iter()
            .any(|(_, r)| r.url.path().contains("/720p/")),
        "nothing more of 720p"
    );
    assert!(run.errors().is_empty(), "{:?}", run.errors());
    assert!(run.stalls.is_empty(), "{:?}", run.stalls);
}

#[test]
fn parts_that_come_late_stall_the_player_until_it_can_resume() {
    let mut stream = Stream::new();
    // Video parts asked for between 4 s and 7 s come only at 7 s: about 3 s without media
    // against 1.5 s buffered.
    stream.frozen = Some((4.0, 7.0, "720p"));
    let player = Player::new(plan(Selection::Fixed("720p".into())), stream.t0, 1);
    let run = drive(player, &stream, 10.0, no_fault);
    assert_eq!(run.stalls.len(), 1, "{:?}", run.stalls);
    let stall = run.stalls[0].as_secs_f64();
    assert!((1.0..=2.5).contains(&stall), "{stall}");
    assert!(
        run.errors().is_empty(),
        "late is not failed: {:?}",
        run.errors()
    );
}
