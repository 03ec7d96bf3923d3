// Drives the edge's watch page in Debian's chromium: what a viewer does, measured.
//
//   node watch.js e2e   BASE CHAT_BASE ADMIN_TOKEN OUT_DIR [STREAM]
//   node watch.js bench BASE SECONDS OUT_DIR [STREAM]
//   node watch.js fault BASE OUT_DIR [STREAM]
//   node watch.js replay BASE PAGE_PATH OUT_DIR
//   node watch.js cues BASE SECONDS OUT_DIR [STREAM]
//
// e2e: the stream list shows STREAM (default demo); its link starts playback; the video plays
// for 20 s; each rendition is forced in turn from the quality menu and plays; a second viewer
// (a phone-sized window) gets a chat message with an emote, a reaction burst, an announcement,
// follows the channel, sees the viewer count, and is banned; screenshots of a TV-sized and a
// phone-sized window are saved in OUT_DIR. bench: one viewer watches for SECONDS and reports
// the latency percentiles. fault: one viewer opens the stream's page, says
// {"event":"playing"} on stdout once the video plays, and watches until a line (or the end)
// on stdin: what it saw meanwhile (stalls, the longest the picture stood still, whether it
// plays at the end). replay: one viewer opens PAGE_PATH (a finished broadcast's page,
// /watch/{stream}/{session}), plays it for 5 s, seeks to its middle and checks it plays on
// from there. cues: one viewer opens the stream's page, says {"event":"playing"} once it plays,
// and watches for SECONDS: the ad breaks (hls.js interstitial events) and news flashes it saw.
// Each prints one JSON report on stdout; failures are reported in it
// (`failures`), not thrown, so that the caller shows everything at once. BASE may be https://
// (the edge's self-signed certificate is accepted; the report says which protocol was used).
'use strict';
const fs = require('fs');
const path = require('path');
const chromium = require('./chromium');

const PHONE = { width: 390, height: 844 };
const TV = { width: 1920, height: 1080 };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Two viewers in one headless browser: neither is throttled as a background page.
const launch = () => chromium.launch({ playback: true });

async function viewer(browser, name, viewport) {
  const context = await browser.newContext({ viewport, ignoreHTTPSErrors: true });
  await context.addInitScript((n) => localStorage.setItem('corral-name', n), name);
  const page = await context.newPage();
  const log = [];
  page.on('console', (m) => { if (m.type() === 'error') log.push(m.text()); });
  page.on('pageerror', (e) => log.push(`page error: ${e.message}`));
  return { context, page, log };
}

const stats = (page) => page.evaluate(() => window.corral.stats());

// Polls `check` (returning a value or a falsy one) every 100 ms until `ms` have passed.
async function until(what, ms, check) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

const percentile = (values, p) => {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
};
const summary = (values) => ({
  samples: values.length,
  p50: percentile(values, 50),
  p95: percentile(values, 95),
  max: values.length ? Math.max(...values) : null,
});

async function protocolOf(page) {
  return page.evaluate(() => performance.getEntriesByType('navigation')[0]?.nextHopProtocol || null);
}

// Opens the stream list and follows the stream's link; answers when playback started.
async function openFromList(page, base, stream, report) {
  await page.goto(`${base}/`, { timeout: 20000 });
  const link = page.locator(`a.stream[data-stream="${stream}"]`);
  await link.waitFor({ timeout: 20000 });
  report.listed = true;
  // What is hidden stays hidden: the list page shows no player, the player no empty banner.
  report.playerOnList = await page.locator('#watch').isVisible();
  await Promise.all([page.waitForURL(`**/watch/${stream}`), link.click()]);
  report.protocol = await protocolOf(page);
  await until('playback to start', 20000, async () => (await stats(page)).startupMs !== null);
  report.startupMs = (await stats(page)).startupMs;
  report.bannerAtStart = await page.locator('#banner').isVisible();
}

async function e2e(base, chatBase, admin, out, stream) {
  const report = { base, failures: [] };
  const fail = (what) => report.failures.push(what);
  const step = async (name, f) => {
    try {
      await f();
    } catch (e) {
      fail(`${name}: ${e.message}`);
    }
  };
  const browser = await launch();
  const a = await viewer(browser, 'alice', TV);
  const b = await viewer(browser, 'bob', PHONE);
  try {
    await step('start', () => openFromList(a.page, base, stream, report));
    if (report.startupMs === undefined) return report;

    await step('playback', async () => {
      const first = await stats(a.page);
      const samples = [];
      const t0 = Date.now();
      while (Date.now() - t0 < 20000) {
        await sleep(1000);
        const s = await stats(a.page);
        samples.push({ at: Date.now() - t0, currentTime: s.currentTime, decodedFrames: s.decodedFrames, stalls: s.stalls });
      }
      const last = samples[samples.length - 1];
      report.playback = {
        seconds: (Date.now() - t0) / 1000,
        advanced: last.currentTime - first.currentTime,
        framesDecoded: last.decodedFrames - first.decodedFrames,
        stalls: last.stalls - first.stalls,
        stuckSeconds: samples.filter((s, i) => i > 0 && s.currentTime <= samples[i - 1].currentTime).length,
        samples,
      };
    });

    await step('renditions', async () => {
      const { levels } = await stats(a.page);
      report.levels = levels;
      report.switches = [];
      for (const level of levels) {
        const started = Date.now();
        await a.page.selectOption('#quality', String(level.index));
        await until(`rendition ${level.height}p`, 15000, async () => {
          const s = await stats(a.page);
          return s.level === level.index && s.videoHeight === level.height && !s.autoLevel;
        });
        const switchedMs = Date.now() - started;
        const before = await stats(a.page);
        await sleep(3000);
        const after = await stats(a.page);
        report.switches.push({
          index: level.index,
          height: level.height,
          switchedMs,
          advanced: after.currentTime - before.currentTime,
          framesDecoded: after.decodedFrames - before.decodedFrames,
          videoHeight: after.videoHeight,
        });
      }
      await a.page.selectOption('#quality', '-1');
    });

    await step('chat', async () => {
      const chat = {};
      report.chat = chat;
      await b.page.goto(`${base}/watch/${stream}`, { timeout: 20000 });
      for (const v of [a, b]) {
        await until('the chat to connect', 15000, async () => (await stats(v.page)).chat.connected);
      }
      await until('the send box', 5000, () => a.page.locator('#text').isEnabled());
      const text = `hello from alice ${Date.now()} :Kappa:`;
      const sent = Date.now();
      await a.page.fill('#text', text);
      await a.page.press('#text', 'Enter');
      const plain = text.replace(' :Kappa:', '');
      const line = b.page.locator('#messages li', { hasText: plain });
      await line.waitFor({ timeout: 10000 });
      chat.deliveredMs = Date.now() - sent;
      chat.from = await line.locator('.who').textContent();
      chat.emote = await line.locator('.emote[data-emote="Kappa"]').count();

      await until('the viewer count', 15000, async () => ((await stats(b.page)).chat.viewers || 0) >= 2);
      chat.viewers = (await stats(b.page)).chat.viewers;
      chat.viewersShown = await b.page.locator('#viewers').textContent();

      for (let i = 0; i < 3; i++) await a.page.click('#react button[data-emoji="🔥"]');
      await until('the reaction burst', 10000, async () => (await stats(b.page)).chat.reactionsSeen >= 3);
      chat.reactionsSeen = (await stats(b.page)).chat.reactionsSeen;
      chat.burst = await b.page.locator('#burst span').count();

      await until('the follow button', 10000, () => b.page.locator('#follow').isEnabled());
      const count = async () => Number((await b.page.locator('#followers').textContent()).replace(/\D/g, ''));
      chat.followersBefore = await count();
      await b.page.click('#follow');
      await until('"Following"', 5000, async () => (await b.page.locator('#follow').textContent()) === 'Following');
      chat.followersAfter = await count();
      await b.page.click('#subscribe');
      await until('"Subscribed"', 5000, async () => (await b.page.locator('#subscribe').textContent()).startsWith('Subscribed'));
      chat.subscribed = await b.page.locator('#subscribe').textContent();

      const rest = async (p, body) => {
        const r = await fetch(`${chatBase}${p}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        if (!r.ok) throw new Error(`${p} answered ${r.status}`);
      };
      const notice = `Kick-off in 5 minutes ${Date.now()}`;
      await rest(`/v1/rooms/${stream}/announcements`, { text: notice, level: 'info' });
      for (const v of [a, b]) {
        await v.page.locator('#banner', { hasText: notice }).waitFor({ timeout: 10000 });
      }
      chat.announcement = true;

      // Screenshots while the banner shows: the TV-sized window and the phone.
      fs.mkdirSync(out, { recursive: true });
      await a.page.screenshot({ path: path.join(out, 'watch-tv.png') });
      await b.page.screenshot({ path: path.join(out, 'watch-phone.png') });
      report.screenshots = ['watch-tv.png', 'watch-phone.png'].map((f) => path.join(out, f));
      report.layout = {
        tv: await layout(a.page),
        phone: await layout(b.page),
      };

      const bob = (await stats(b.page)).chat.user;
      await rest(`/v1/rooms/${stream}/bans`, { user_id: bob.id, reason: 'spam' });
      await b.page.locator('#notice', { hasText: 'banned' }).waitFor({ timeout: 10000 });
      chat.banNotice = await b.page.locator('#notice').textContent();
      chat.banDisabled = await b.page.locator('#text').isDisabled();
    });

    await step('latency', async () => {
      const samples = await a.page.evaluate(() => window.corral.samples());
      report.latency = summary(samples.latency);
      report.glassToGlass = summary(samples.glassToGlass);
    });
    report.final = await stats(a.page);
    delete report.final.levels;
  } finally {
    report.console = { a: a.log, b: b.log };
    await browser.close();
  }
  return report;
}

// Where the video and the chat are on the page, and whether they fit the window.
async function layout(page) {
  return page.evaluate(() => {
    const box = (id) => {
      const r = document.getElementById(id).getBoundingClientRect();
      return { left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height };
    };
    const stage = box('stage');
    const chat = box('chat');
    return {
      viewport: { width: innerWidth, height: innerHeight },
      stage,
      chat,
      overflowX: document.documentElement.scrollWidth > innerWidth,
      chatBeside: chat.left >= stage.right - 1,
      chatBelow: chat.top >= stage.bottom - 1,
    };
  });
}

async function bench(base, seconds, out, stream) {
  const report = { base, seconds, failures: [] };
  const browser = await launch();
  const a = await viewer(browser, 'bench', { width: 1280, height: 720 });
  try {
    await openFromList(a.page, base, stream, report);
    const t0 = Date.now();
    const startStalls = (await stats(a.page)).stalls;
    while (Date.now() - t0 < seconds * 1000) await sleep(1000);
    const s = await stats(a.page);
    const samples = await a.page.evaluate(() => window.corral.samples());
    // Only the measured window: the page samples every 500 ms from the start.
    const keep = Math.floor(seconds * 2);
    report.latency = summary(samples.latency.slice(-keep));
    report.glassToGlass = summary(samples.glassToGlass.slice(-keep));
    report.stalls = s.stalls - startStalls;
    report.stallMs = s.stallMs;
    report.stallLog = s.stallLog;
    report.recoveries = s.recoveries;
    report.droppedFrames = s.droppedFrames;
    report.decodedFrames = s.decodedFrames;
    fs.mkdirSync(out, { recursive: true });
    await a.page.screenshot({ path: path.join(out, 'watch-bench.png') });
  } catch (e) {
    report.failures.push(e.message);
  } finally {
    report.console = a.log;
    await browser.close();
  }
  return report;
}

// Samples every 500 ms until stdin says stop; the report of what one viewer saw.
async function fault(base, out, stream) {
  const report = { base, failures: [] };
  let stop = false;
  process.stdin.on('data', () => { stop = true; });
  process.stdin.on('end', () => { stop = true; });
  const browser = await launch();
  const a = await viewer(browser, 'fault', { width: 640, height: 360 });
  try {
    await a.page.goto(`${base}/watch/${stream}`, { timeout: 20000 });
    await until('playback to start', 30000, async () => (await stats(a.page)).startupMs !== null);
    const first = await stats(a.page);
    report.startupMs = first.startupMs;
    process.stdout.write(`${JSON.stringify({ event: 'playing' })}\n`);
    const samples = [{ at: Date.now(), currentTime: first.currentTime }];
    while (!stop) {
      await sleep(500);
      const s = await stats(a.page);
      samples.push({ at: Date.now(), currentTime: s.currentTime });
    }
    process.stdin.destroy();
    const last = await stats(a.page);
    report.watchedSeconds = (samples[samples.length - 1].at - samples[0].at) / 1000;
    report.advanced = last.currentTime - first.currentTime;
    report.stalls = last.stalls - first.stalls;
    report.stallMs = Math.round(last.stallMs - first.stallMs);
    report.recoveries = last.recoveries - first.recoveries;
    report.stallLog = last.stallLog;
    // The longest run of samples over which the picture did not move.
    let still = 0;
    let since = null;
    for (let i = 1; i < samples.length; i++) {
      if (samples[i].currentTime <= samples[i - 1].currentTime) {
        since ??= samples[i - 1].at;
        still = Math.max(still, samples[i].at - since);
      } else {
        since = null;
      }
    }
    report.longestStillMs = still;
    // Still playing at the end: the picture moved over the last two seconds.
    const recent = samples.filter((x) => x.at >= samples[samples.length - 1].at - 2000);
    report.playingAtEnd = recent.length > 1 && recent[recent.length - 1].currentTime > recent[0].currentTime;
    fs.mkdirSync(out, { recursive: true });
    await a.page.screenshot({ path: path.join(out, 'fault.png') });
  } catch (e) {
    report.failures.push(e.message);
  } finally {
    report.console = a.log.slice(0, 20);
    await browser.close();
  }
  return report;
}

// A finished broadcast: plays from its start, then from its middle after a seek.
async function replay(base, pagePath, out) {
  const report = { base, page: pagePath, failures: [] };
  const browser = await launch();
  const a = await viewer(browser, 'replay', { width: 640, height: 360 });
  try {
    await a.page.goto(`${base}${pagePath}`, { timeout: 20000 });
    await until('playback to start', 30000, async () => (await stats(a.page)).startupMs !== null);
    const first = await stats(a.page);
    report.startupMs = first.startupMs;
    report.duration = first.duration;
    await until('5 s of playback', 20000, async () => (await stats(a.page)).currentTime >= first.currentTime + 5);
    const middle = Math.floor((first.duration || 0) / 2);
    await a.page.evaluate((t) => { document.getElementById('video').currentTime = t; }, middle);
    report.seekedTo = middle;
    await until('playback after the seek', 20000, async () => {
      const s = await stats(a.page);
      return s.currentTime >= middle + 3 && s.currentTime < middle + 20 && !s.paused;
    });
    const last = await stats(a.page);
    report.currentTime = last.currentTime;
    report.videoWidth = last.videoWidth;
    report.decodedFrames = last.decodedFrames;
    report.errors = last.errors;
    fs.mkdirSync(out, { recursive: true });
    await a.page.screenshot({ path: path.join(out, 'replay.png') });
  } catch (e) {
    report.failures.push(e.message);
  } finally {
    report.console = a.log.slice(0, 20);
    await browser.close();
  }
  return report;
}

// A live viewer while the operator inserts an ad break and a news flash.
async function cues(base, seconds, out, stream) {
  const report = { base, failures: [] };
  const browser = await launch();
  const a = await viewer(browser, 'cues', { width: 640, height: 360 });
  try {
    await a.page.goto(`${base}/watch/${stream}`, { timeout: 20000 });
    await until('playback to start', 30000, async () => (await stats(a.page)).startupMs !== null);
    process.stdout.write(`${JSON.stringify({ event: 'playing' })}\n`);
    const deadline = Date.now() + seconds * 1000;
    let sawBadge = false;
    let sawFlash = null;
    while (Date.now() < deadline) {
      await sleep(250);
      sawBadge ||= await a.page.evaluate(() => !document.getElementById('ad-badge').hidden);
      sawFlash ??= await a.page.evaluate(() => {
        const f = document.getElementById('flash');
        return f.hidden ? null : f.textContent;
      });
      const s = await stats(a.page);
      if (s.ads.some((x) => x.event === 'ended') && s.flashes.length > 0) break;
    }
    const last = await stats(a.page);
    report.ads = last.ads;
    report.flashes = last.flashes;
    report.adBadgeShown = sawBadge;
    report.flashShown = sawFlash;
    report.errors = last.errors;
    const t0 = last.currentTime;
    await sleep(2000);
    const t1 = (await stats(a.page)).currentTime;
    report.playingAtEnd = t1 > t0;
    fs.mkdirSync(out, { recursive: true });
    await a.page.screenshot({ path: path.join(out, 'cues.png') });
  } catch (e) {
    report.failures.push(e.message);
  } finally {
    report.console = a.log.slice(0, 20);
    await browser.close();
  }
  return report;
}

async function main() {
  const [mode, ...args] = process.argv.slice(2);
  let report;
  if (mode === 'e2e') {
    const [base, chatBase, admin, out, stream = 'demo'] = args;
    report = await e2e(base, chatBase, admin, out, stream);
  } else if (mode === 'fault') {
    const [base, out, stream = 'demo'] = args;
    report = await fault(base, out, stream);
  } else if (mode === 'cues') {
    const [base, seconds, out, stream = 'demo'] = args;
    report = await cues(base, Number(seconds), out, stream);
  } else if (mode === 'replay') {
    const [base, pagePath, out] = args;
    report = await replay(base, pagePath, out);
  } else if (mode === 'bench') {
    const [base, seconds, out, stream = 'demo'] = args;
    report = await bench(base, Number(seconds), out, stream);
  } else {
    throw new Error('usage: watch.js e2e BASE CHAT_BASE ADMIN_TOKEN OUT_DIR [STREAM] | bench BASE SECONDS OUT_DIR [STREAM] | fault BASE OUT_DIR [STREAM] | replay BASE PAGE_PATH OUT_DIR | cues BASE SECONDS OUT_DIR [STREAM]');
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((e) => {
  console.error(e.stack || e.message);
  process.exit(1);
});
