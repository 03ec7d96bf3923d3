// A thundering herd: every virtual user asks at the same moment for the next hinted part of
// one media playlist, before it exists, like `loadtest herd`. Run once per herd; compare the
// origin's request counter (corral_origin_http_requests_total{kind="part"}) before and after.
//
//   k6 run -e PLAYLIST=http://127.0.0.1:8080/live/demo/720p/index.m3u8 -e PLAYERS=500 loadtest/k6/herd.js
import http from 'k6/http';
import { check } from 'k6';
import { Trend } from 'k6/metrics';

const PLAYLIST = __ENV.PLAYLIST || 'http://127.0.0.1:8080/live/demo/720p/index.m3u8';
const PLAYERS = parseInt(__ENV.PLAYERS || '500', 10);

export const options = {
  scenarios: {
    herd: { executor: 'per-vu-iterations', vus: PLAYERS, iterations: 1, maxDuration: '30s' },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    herd_part_ms: ['p(99)<2000'],
  },
};

const herdMs = new Trend('herd_part_ms', true);

// Every user reads the playlist once in setup, so all ask for the same part.
export function setup() {
  const text = http.get(PLAYLIST).body || '';
  const m = text.match(/#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"/);
  return { part: m ? PLAYLIST.slice(0, PLAYLIST.lastIndexOf('/') + 1) + m[1] : null };
}

export default function (data) {
  if (!data.part) {
    return;
  }
  const r = http.get(data.part, { tags: { kind: 'hinted_part' } });
  herdMs.add(r.timings.duration);
  check(r, { 'part 200': (res) => res.status === 200 });
}
