// Plays a stream in Debian's chromium with a stock player, as a site that embeds one would: no
// page of ours, the player's defaults plus its low-latency switch, nothing tuned.
//
//   node stock.js PLAYER MASTER_URL SECONDS [CERT.pem]
//
// PLAYER is `hlsjs` (hls.js 1.x as web/ pins it, `lowLatencyMode: true`) or `shaka` (Shaka
// Player as tests/browser pins it, `streaming.lowLatencyMode: true`). With CERT (the edge's
// self-signed certificate) and an https:// URL, chromium is forced onto HTTP/3 for that origin
// (QUIC trusts a self-signed certificate only by its key's hash); an https:// URL without CERT
// is HTTP/2 (or HTTP/1.1) over TLS.
//
// STOCK_LIBRARY names another build of the player to load instead (to compare versions).
//
// The page is a blank document of the edge's own origin (so that every request is same-origin
// and its resource timing names its protocol) holding one <video>. It watches for SECONDS and
// prints one JSON report:
//   startupMs     from attaching the player to the first frame playing
//   stalls        times the picture stood still for more than 300 ms after it started
//   stallMs, longestStallMs, stallLog (where each stall began: currentTime, buffered ranges),
//   bufferedAtEnd (the buffered ranges when the run ends: a hole shows there)
//   glassToGlass  {p50, p95, samples}: now − the program date-time of the frame on screen, as
//                 the player dates it (hls.js's playingDate; Shaka's playhead date is not
//                 reliable: it has come out negative, so read the clock instead)
//   latency       {p50, p95}: the player's own distance to the live edge
//   heights       the rendition heights offered; topHeight; the height played each second
//   topFromS      the first second from which the top rung was played to the end (null: never)
//   protocols     media and playlist requests by the protocol they went over
//   errors        the player's errors, fatal or not
//   partFetchMs   {p50, p95}: request to last byte of the parts the player fetched
//   trace         with STOCK_TRACE set: hls.js's own log lines about CDN tune-in (a playlist's
//                 Age moving its requests ahead), stalls, gaps and nudges (at most 300)
//   requests      with STOCK_REQUESTS set: [start s, end s, path] of every playlist and media
//                 request, the first 3000
//   clock         with STOCK_CLOCK_DIR set: every 5 s the bottom of the picture on screen is
//                 saved there as clock-<epoch ms>.png (the test source burns its UTC clock
//                 there), for the benchmark to read glass-to-glass off the picture itself
'use strict';
const fs = require('fs');
const path = require('path');
const { launch } = require('./chromium');

const LIBRARIES = {
  hlsjs: path.join(__dirname, '../../web/node_modules/hls.js/dist/hls.min.js'),
  shaka: path.join(__dirname, 'node_modules/shaka-player/dist/shaka-player.compiled.js'),
};

// Runs in the page: starts PLAYER on MASTER and keeps the measurements in window.stock.
function inPage({ player, master, clock, trace, requests }) {
  const video = document.querySelector('video');
  // Muted autoplay, as an embedded live player starts.
  video.muted = true;
  video.autoplay = true;
  const s = {
    started: performance.now(),
    startupMs: null,
    stalls: 0,
    stallMs: 0,
    longestStallMs: 0,
    g2g: [],
    latency: [],
    heights: [],
    perSecond: [],
    errors: [],
    protocols: {},
    partFetchMs: [],
    frames: [],
    trace: [],
    stallLog: [],
    requests: [],
  };
  window.stock = s;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if (!/\.(m3u8|m4s|mp4)(\?|$)/.test(e.name)) continue;
      const p = e.nextHopProtocol || 'unknown';
      s.protocols[p] = (s.protocols[p] || 0) + 1;
      if (/\.\d+\.m4s(\?|$)/.test(e.name) && e.responseEnd > 0) s.partFetchMs.push(e.responseEnd - e.requestStart);
      if (requests && s.requests.length < 3000) {
        const u = new URL(e.name);
        s.requests.push([+(e.startTime / 1000).toFixed(3), +(e.responseEnd / 1000).toFixed(3), u.pathname + u.search]);
      }
    }
  }).observe({ type: 'resource', buffered: true });
  performance.setResourceTimingBufferSize(100000);

  let date = () => null;
  let playerLatency = () => null;
  let offered = () => [];
  if (player === 'hlsjs') {
    const config = { lowLatencyMode: true };
    if (trace) {
      // Only where hls.js logs to: its behaviour is the same.
      const keep = (...args) => {
        const line = args.map(String).join(' ');
        if (s.trace.length < 300 && /tune-in|stall|gap|nudg/i.test(line)) {
          s.trace.push(`${((performance.now() - s.started) / 1000).toFixed(2)} ${line}`);
        }
      };
      config.debug = { trace() {}, debug: keep, log: keep, info: keep, warn: keep, error: keep };
    }
    const hls = new Hls(config);
    hls.on(Hls.Events.ERROR, (_e, d) => s.errors.push(`${d.fatal ? 'fatal ' : ''}${d.type}: ${d.details}`));
    hls.loadSource(master);
    hls.attachMedia(video);
    date = () => hls.playingDate;
    playerLatency = () => hls.latency;
    offered = () => hls.levels.map((l) => l.height);
    window.player = hls;
  } else {
    shaka.polyfill.installAll();
    const p = new shaka.Player();
    p.configure({ streaming: { lowLatencyMode: true } });
    p.addEventListener('error', (e) => s.errors.push(`shaka ${e.detail && e.detail.code}`));
    p.attach(video).then(() => p.load(master)).catch((e) => s.errors.push(`load: ${e.code || e}`));
    date = () => p.getPlayheadTimeAsDate();
    playerLatency = () => p.getStats().liveLatency;
    offered = () => p.getVariantTracks().map((t) => t.height);
    window.player = p;
  }
  video.addEventListener('playing', () => {
    if (s.startupMs === null) s.startupMs = Math.round(performance.now() - s.started);
  });
  video.addEventListener('canplay', () => video.play().catch(() => {}));

  // A stall: currentTime standing still for more than 300 ms after playback began.
  let lastTime = -1;
  let stillSince = null;
  setInterval(() => {
    const now = performance.now();
    if (s.startupMs === null || video.paused) return;
    if (video.currentTime !== lastTime) {
      if (stillSince !== null) {
        const ms = now - stillSince;
        if (ms > 300) {
          if (s.stallLog.length < 50) s.stallLog.push({ ...s.pending, ms: Math.round(ms) });
          s.stalls += 1;
          s.stallMs += ms;
          s.longestStallMs = Math.max(s.longestStallMs, ms);
        }
      }
      stillSince = null;
      lastTime = video.currentTime;
    } else if (stillSince === null) {
      stillSince = now;
      const b = video.buffered;
      const ranges = [];
      for (let i = 0; i < b.length; i++) ranges.push(`${b.start(i).toFixed(3)}-${b.end(i).toFixed(3)}`);
      s.pending = { atS: +((now - s.started) / 1000).toFixed(2), currentTime: +video.currentTime.toFixed(3), buffered: ranges.join(' '), rate: video.playbackRate };
    }
  }, 25);
  setInterval(() => {
    if (s.startupMs === null || video.paused) return;
    const d = date();
    if (d) s.g2g.push((Date.now() - d.getTime()) / 1000);
    const l = playerLatency();
    if (Number.isFinite(l) && l > 0) s.latency.push(l);
  }, 250);
  setInterval(() => {
    s.heights = offered();
    s.perSecond.push(s.startupMs === null ? 0 : video.videoHeight);
  }, 1000);
  if (clock) {
    // The frame on screen and the time it was taken: the clock burnt into the bottom fifth.
    const canvas = document.createElement('canvas');
    setInterval(() => {
      if (s.startupMs === null || video.paused || !video.videoWidth) return;
      const w = video.videoWidth;
      const h = Math.round(video.videoHeight / 5);
      canvas.width = w;
      canvas.height = h;
      const at = Date.now();
      const ctx = canvas.getContext('2d', { willReadFrequently: true });
      ctx.drawImage(video, 0, video.videoHeight - h, w, h, 0, 0, w, h);
      // Black on white for OCR: the burnt-in text is the only white there.
      const img = ctx.getImageData(0, 0, w, h);
      const d = img.data;
      for (let i = 0; i < d.length; i += 4) {
        const v = d[i] > 190 && d[i + 1] > 190 && d[i + 2] > 190 ? 0 : 255;
        d[i] = d[i + 1] = d[i + 2] = v;
      }
      ctx.putImageData(img, 0, 0);
      s.frames.push({ at, png: canvas.toDataURL('image/png') });
    }, 5000);
  }
  window.takeFrames = () => s.frames.splice(0);
  window.stockReport = () => {
    const b = video.buffered;
    s.bufferedAtEnd = [];
    for (let i = 0; i < b.length; i++) s.bufferedAtEnd.push(`${b.start(i).toFixed(3)}-${b.end(i).toFixed(3)}`);
    // A stall still in progress counts too.
    if (stillSince !== null && performance.now() - stillSince > 300) {
      const ms = performance.now() - stillSince;
      s.stalls += 1;
      s.stallMs += ms;
      s.longestStallMs = Math.max(s.longestStallMs, ms);
    }
    return s;
  };
}

const percentile = (values, p) => {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
};
const round3 = (v) => (v === null ? null : Math.round(v * 1000) / 1000);

async function main() {
  const [player, master, seconds, certPath] = process.argv.slice(2);
  if (!LIBRARIES[player] || !master || !(Number(seconds) > 0)) {
    throw new Error('usage: node stock.js hlsjs|shaka MASTER_URL SECONDS [CERT.pem]');
  }
  const url = new URL(master);
  const browser = await launch({ playback: true, quic: certPath ? { origin: url, cert: certPath } : null });
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(`page error: ${e.message}`));
    // A same-origin blank document: the edge's health answer, replaced by the player's page.
    await page.goto(`${url.origin}/healthz`, { timeout: 20000 });
    await page.setContent('<!doctype html><title>stock player</title><video width="640" height="360"></video>');
    // STOCK_LIBRARY: another build of the player (another version, to compare).
    await page.addScriptTag({ path: process.env.STOCK_LIBRARY || LIBRARIES[player] });
    const clock = process.env.STOCK_CLOCK_DIR || null;
    await page.evaluate(inPage, { player, master, clock: Boolean(clock), trace: Boolean(process.env.STOCK_TRACE), requests: Boolean(process.env.STOCK_REQUESTS) });
    // Watch; picture samples are written out as they come, not held in the page.
    const end = Date.now() + Number(seconds) * 1000;
    while (Date.now() < end) {
      await page.waitForTimeout(Math.min(10000, end - Date.now()));
      if (!clock) continue;
      for (const f of await page.evaluate(() => window.takeFrames())) {
        fs.mkdirSync(clock, { recursive: true });
        fs.writeFileSync(path.join(clock, `clock-${f.at}.png`), Buffer.from(f.png.split(',')[1], 'base64'));
      }
    }
    const s = await page.evaluate(() => window.stockReport());
    const top = s.heights.length ? Math.max(...s.heights) : null;
    let topFromS = null;
    for (let i = s.perSecond.length - 1; i >= 0 && s.perSecond[i] === top; i--) topFromS = i;
    s.errors.push(...pageErrors);
    process.stdout.write(
      `${JSON.stringify({
        player,
        startupMs: s.startupMs,
        stalls: s.stalls,
        stallMs: Math.round(s.stallMs),
        longestStallMs: Math.round(s.longestStallMs),
        stallLog: s.stallLog,
        bufferedAtEnd: s.bufferedAtEnd.join(' '),
        glassToGlass: { p50: round3(percentile(s.g2g, 50)), p95: round3(percentile(s.g2g, 95)), samples: s.g2g.length },
        latency: { p50: round3(percentile(s.latency, 50)), p95: round3(percentile(s.latency, 95)) },
        partFetchMs: { p50: round3(percentile(s.partFetchMs, 50)), p95: round3(percentile(s.partFetchMs, 95)) },
        heights: s.heights,
        topHeight: top,
        perSecond: s.perSecond,
        topFromS,
        protocols: s.protocols,
        errors: s.errors,
        trace: s.trace,
        requests: s.requests,
      })}\n`,
    );
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  process.stderr.write(`stock: ${e.stack || e}\n`);
  process.exit(1);
});
