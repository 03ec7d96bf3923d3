// An LL-HLS viewer loop: each virtual user loads the multivariant playlist, follows one media
// playlist with blocking reloads for the next part (as a delta update when offered) and loads
// each hinted part, like `loadtest viewers`.
//
//   k6 run -e MASTER=http://127.0.0.1:8080/live/demo/master.m3u8 -e VUS=100 -e DURATION=60s loadtest/k6/viewer.js
//
// MASTER: the multivariant playlist; RENDITION: the variant's index from the top (default 0);
// VUS, DURATION, RAMP: virtual users, how long, and the ramp-up.
import http from 'k6/http';
import { check } from 'k6';
import { Trend, Counter } from 'k6/metrics';

const MASTER = __ENV.MASTER || 'http://127.0.0.1:8080/live/demo/master.m3u8';
const RENDITION = parseInt(__ENV.RENDITION || '0', 10);

export const options = {
  scenarios: {
    viewers: {
      executor: 'ramping-vus',
      stages: [
        { duration: __ENV.RAMP || '10s', target: parseInt(__ENV.VUS || '50', 10) },
        { duration: __ENV.DURATION || '60s', target: parseInt(__ENV.VUS || '50', 10) },
      ],
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    part_ms: ['p(99)<1500'],
    blocking_ms: ['p(99)<3000'],
    resyncs: ['count<10'],
  },
};

const partMs = new Trend('part_ms', true);
const blockingMs = new Trend('blocking_ms', true);
const resyncs = new Counter('resyncs');

function dir(url) {
  return url.slice(0, url.lastIndexOf('/') + 1);
}

function variants(text) {
  const lines = text.split('\n');
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].startsWith('#EXT-X-STREAM-INF') && lines[i].includes('RESOLUTION=')) {
      out.push(lines[i + 1].trim());
    }
  }
  return out;
}

// The preload hint's URI and its (msn, part), or null.
function hint(text) {
  const m = text.match(/#EXT-X-PRELOAD-HINT:TYPE=PART,URI="((\d+)\.(\d+)\.m4s)"/);
  return m ? { uri: m[1], msn: parseInt(m[2], 10), part: parseInt(m[3], 10) } : null;
}

export default function () {
  const master = http.get(MASTER, { tags: { kind: 'master' } });
  check(master, { 'master 200': (r) => r.status === 200 });
  const list = variants(master.body || '');
  if (list.length === 0) {
    return;
  }
  const media = dir(MASTER) + list[Math.min(RENDITION, list.length - 1)];
  let playlist = http.get(media, { tags: { kind: 'playlist' } });
  let next = hint(playlist.body || '');
  const end = Date.now() + 30000;
  while (next && Date.now() < end) {
    const url = `${media}?_HLS_msn=${next.msn}&_HLS_part=${next.part}&_HLS_skip=YES`;
    const [reload, part] = http.batch([
      ['GET', url, null, { tags: { kind: 'blocking_playlist' } }],
      ['GET', dir(media) + next.uri, null, { tags: { kind: 'part' } }],
    ]);
    blockingMs.add(reload.timings.duration);
    partMs.add(part.timings.duration);
    check(part, { 'part 200': (r) => r.status === 200 });
    if (reload.status !== 200) {
      // Re-synchronise with a whole reload, as players do.
      resyncs.add(1);
      playlist = http.get(media, { tags: { kind: 'playlist' } });
      next = hint(playlist.body || '');
      continue;
    }
    next = hint(reload.body || '');
  }
}
