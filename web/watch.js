// The watch page: the list of live streams at `/`, and at `/watch/{stream}` the player
// (hls.js in low-latency mode, a quality menu, the live latency), the stream's channel and its
// chat. Plain JavaScript, no build step. `window.corral.stats()` reports what the page measured
// (startup, stalls, latency samples, chat) for tests and load checks.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const chatBase = (document.querySelector('meta[name="corral-chat"]')?.content || '').replace(/\/$/, '');
  const chatOn = chatBase !== '' && !chatBase.startsWith('{{');
  const query = new URLSearchParams(location.search);

  // What the page measured, for window.corral.stats().
  const stats = {
    stream: null,
    navigationStart: performance.timeOrigin,
    startupMs: null,
    stalls: 0,
    stallMs: 0,
    recoveries: 0,
    stallLog: [],
    errors: [],
    levels: [],
    level: null,
    autoLevel: true,
    latency: [],
    glassToGlass: [],
    chat: { user: null, connected: false, connects: 0, messages: 0, sent: 0, reactionsSeen: 0, banned: null, announcement: null, viewers: null },
    // Ad breaks (hls.js interstitial events) and the news flashes shown.
    ads: [],
    flashes: [],
    events: [],
  };
  const MAX_SAMPLES = 20000;
  let stallStart = null;

  // Retries wait 0.5 s, 1 s, 2 s, … up to 30 s, each times a random 0.5–1.5 so that players cut
  // off together do not come back in step.
  const backoff = (attempt) => Math.min(30, 0.5 * 2 ** attempt) * (0.5 + Math.random()) * 1000;

  const el = (tag, { dataset, ...props } = {}, ...children) => {
    const e = document.createElement(tag);
    Object.assign(e, props);
    Object.assign(e.dataset, dataset || {});
    for (const c of children) e.append(c);
    return e;
  };

  // ---- the stream list ----------------------------------------------------------------

  async function home() {
    $('home').hidden = false;
    document.title = 'Corral · live';
    const refresh = async () => {
      try {
        const r = await fetch('/api/streams', { cache: 'no-store' });
        if (!r.ok) throw new Error(`the stream list answered ${r.status}`);
        const { streams, sessions = [] } = await r.json();
        const live = streams.filter((s) => s.state === 'live' || s.state === 'reconnecting' || s.state === 'restarting');
        $('streams').replaceChildren(...live.map((s) => {
          const video = s.renditions.filter((x) => x.type === 'video' && x.height);
          const ladder = video.map((x) => `${x.height}p`).join(' · ');
          const viewers = Number.isFinite(s.viewers) ? ` · ${s.viewers} watching` : '';
          return el('li', {}, el('a', { href: `/watch/${encodeURIComponent(s.name)}`, className: 'stream', dataset: { stream: s.name } },
            s.thumbnail ? el('img', { src: `${s.thumbnail}?t=${Date.now()}`, alt: '' }) : '',
            el('span', { className: 'state', textContent: s.state === 'live' ? 'live' : s.state }), ' ',
            el('strong', { textContent: s.title || s.name }),
            el('span', { className: 'detail', textContent: `${ladder || s.source}${viewers}` })));
        }));
        $('streams-empty').hidden = live.length > 0;
        $('replays').replaceChildren(...sessions.map((p) => el('li', {},
          el('a', { href: `/watch/${encodeURIComponent(p.stream)}/${encodeURIComponent(p.session)}`, className: 'replay', dataset: { stream: p.stream, session: p.session } },
            p.thumbnail ? el('img', { src: p.thumbnail, alt: '' }) : '',
            el('strong', { textContent: p.title || p.stream }),
            el('span', { className: 'detail', textContent: ` ${new Date(p.started).toLocaleString()} · ${Math.round(p.duration / 60)} min` })))));
        $('replays-empty').hidden = sessions.length > 0;
        $('streams-error').hidden = true;
      } catch (e) {
        $('streams-error').textContent = `Cannot load the streams: ${e.message}`;
        $('streams-error').hidden = false;
      }
    };
    await refresh();
    setInterval(refresh, 5000);
    // Lifecycle notifications: a stream going live or a replay becoming ready refreshes the
    // list at once.
    if (window.EventSource) {
      const events = new EventSource('/api/events');
      for (const type of ['PENDING', 'LIVE', 'ENDED', 'ARCHIVED']) {
        events.addEventListener(type, (e) => {
          stats.events.push({ type, data: JSON.parse(e.data) });
          refresh();
        });
      }
    }
  }

  // ---- the player ---------------------------------------------------------------------

  // The live stream, its DVR window (`?dvr=1`: pause and seek back), or a finished broadcast
  // (`/watch/{stream}/{session}`) from the archive.
  function source(stream, session) {
    const name = encodeURIComponent(stream);
    if (session) return `/vod/${name}/${encodeURIComponent(session)}/master.m3u8${location.search}`;
    if (query.get('dvr') === '1') return `/live/${name}/dvr.m3u8${location.search}`;
    return `/live/${name}/master.m3u8${location.search}`;
  }

  function player(stream, session) {
    const video = $('video');
    const status = (text) => { $('status').textContent = text; };
    if (!window.Hls) {
      status('hls.js is missing: run `make web` (npm ci in web/) on the edge');
      stats.errors.push('hls.js missing');
      return;
    }
    if (!Hls.isSupported()) {
      // Safari plays HLS itself (and LL-HLS since iOS 14).
      video.src = source(stream, session);
      return;
    }
    status('loading…');
    const hls = new Hls({
      lowLatencyMode: !session && query.get('dvr') !== '1',
      // Catch up to the target latency by playing up to 1.5× after a stall or a slow start.
      maxLiveSyncPlaybackRate: 1.5,
      backBufferLength: 30,
      // `?debug=1` logs hls.js's decisions to the console.
      debug: query.get('debug') === '1',
    });
    window.corral.hls = hls;
    let fatalRetries = 0;

    hls.on(Hls.Events.MANIFEST_PARSED, (_e, data) => {
      stats.levels = data.levels.map((l, i) => ({ index: i, height: l.height, width: l.width, bitrate: l.bitrate, name: l.name }));
      const menu = $('quality');
      menu.replaceChildren(el('option', { value: '-1', textContent: 'Auto' }),
        ...data.levels.map((l, i) => el('option', { value: String(i), textContent: `${l.height}p · ${Math.round(l.bitrate / 1000)} kb/s` })));
      video.play().catch(() => {});
    });
    // The distance kept from the live edge is the playlist's: hls.js in low-latency mode aims
    // at PART-HOLD-BACK (HOLD-BACK without parts) and catches up to it at up to 1.5× speed.
    // `?latency=<seconds>` sets another.
    const asked = Number(query.get('latency'));
    if (asked > 0) {
      hls.once(Hls.Events.LEVEL_LOADED, () => { hls.targetLatency = asked; });
    }
    hls.on(Hls.Events.LEVEL_SWITCHED, (_e, data) => {
      const l = hls.levels[data.level];
      stats.level = data.level;
      $('playing-level').textContent = l ? `${l.height}p${hls.autoLevelEnabled ? ' (auto)' : ''}` : '';
    });
    hls.on(Hls.Events.ERROR, (_e, data) => {
      if (!data.fatal) return;
      stats.errors.push(`${data.type}: ${data.details}`);
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
        return;
      }
      status(`connection lost (${data.details}); retrying…`);
      setTimeout(() => hls.startLoad(-1), backoff(fatalRetries++));
    });
    hls.on(Hls.Events.FRAG_BUFFERED, () => { fatalRetries = 0; });

    $('quality').addEventListener('change', (e) => {
      const level = Number(e.target.value);
      stats.autoLevel = level < 0;
      // loadLevel switches without a break: what is buffered (about a second at low latency)
      // plays out and the new quality follows it. (hls.js's immediate switches, currentLevel
      // and nextLevel, drop buffered parts and can leave a hole where the parts that follow
      // are not independent; players then stall for seconds.) -1 is automatic.
      hls.loadLevel = level;
    });
    $('sound').addEventListener('click', () => {
      video.muted = !video.muted;
      $('sound').textContent = video.muted ? 'Unmute' : 'Mute';
      video.play().catch(() => {});
    });

    video.addEventListener('playing', () => {
      if (stats.startupMs === null) stats.startupMs = Math.round(performance.now());
      if (stallStart !== null) {
        stats.stallMs += performance.now() - stallStart;
        stallStart = null;
      }
      status('');
    });
    video.addEventListener('waiting', () => {
      // A stall is the picture stopping after playback began (not the initial load).
      if (stats.startupMs !== null && stallStart === null) {
        stats.stalls += 1;
        stallStart = performance.now();
        status('buffering…');
        // Where it stopped and what was buffered, for whoever looks into it.
        const b = video.buffered;
        const ranges = [];
        for (let i = 0; i < b.length; i++) ranges.push(`${b.start(i).toFixed(3)}-${b.end(i).toFixed(3)}`);
        if (stats.stallLog.length < 50) {
          stats.stallLog.push({ atMs: Math.round(stallStart), at: new Date().toISOString(), currentTime: video.currentTime, buffered: ranges.join(' '), level: stats.level });
        }
      }
    });

    // A picture that stops while the buffer holds media ahead is a decoder waiting for a
    // keyframe that is not coming (hls.js can follow one quality's part with the next
    // quality's dependent one after a switch): the media is reloaded from where it stands.
    let lastFrames = -1;
    let frozenSince = null;
    const watchdog = () => {
      const frames = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality().totalVideoFrames : -1;
      const b = video.buffered;
      let ahead = 0;
      for (let i = 0; i < b.length; i++) {
        if (b.start(i) <= video.currentTime + 0.1 && b.end(i) > video.currentTime) ahead = b.end(i) - video.currentTime;
      }
      const frozen = stats.startupMs !== null && !video.paused && frames === lastFrames && ahead > 0.5;
      lastFrames = frames;
      if (!frozen) {
        frozenSince = null;
        return;
      }
      frozenSince ??= performance.now();
      if (performance.now() - frozenSince > 1500) {
        frozenSince = null;
        stats.recoveries += 1;
        hls.recoverMediaError();
      }
    };

    setInterval(() => {
      watchdog();
      const latency = hls.latency;
      const date = hls.playingDate;
      const g2g = date && !video.paused ? (Date.now() - date.getTime()) / 1000 : null;
      if (Number.isFinite(latency) && latency > 0 && !video.paused) push(stats.latency, latency);
      if (g2g !== null && Number.isFinite(g2g)) push(stats.glassToGlass, g2g);
      $('latency').textContent = `latency ${fmt(latency)} s · glass-to-glass ${fmt(g2g)} s`;
    }, 500);

    // Ad breaks: hls.js plays each interstitial's asset (a VOD playlist), then goes back to
    // the stream where it would be by then.
    const ad = (name) => (_e, data) => {
      stats.ads.push({ event: name, id: data?.event?.identifier ?? null, at: Date.now() });
      if (name === 'asset-started') $('ad-badge').hidden = false;
      if (name === 'ended') $('ad-badge').hidden = true;
    };
    if (Hls.Events.INTERSTITIAL_STARTED) {
      hls.on(Hls.Events.INTERSTITIAL_STARTED, ad('started'));
      hls.on(Hls.Events.INTERSTITIAL_ASSET_STARTED, ad('asset-started'));
      hls.on(Hls.Events.INTERSTITIAL_ASSET_ENDED, ad('asset-ended'));
      hls.on(Hls.Events.INTERSTITIAL_ENDED, ad('ended'));
      hls.on(Hls.Events.INTERSTITIAL_ASSET_ERROR, (_e, data) => {
        stats.ads.push({ event: 'error', error: String(data?.error?.message || data?.details || 'error'), at: Date.now() });
      });
    }
    // News flashes: date ranges of class com.corral.flash, shown while the picture plays
    // within them.
    const flashes = new Map();
    hls.on(Hls.Events.LEVEL_UPDATED, (_e, data) => {
      for (const range of Object.values(data.details.dateRanges || {})) {
        const a = range.attr || {};
        if (a.CLASS !== 'com.corral.flash' || flashes.has(range.id)) continue;
        const start = Date.parse(a['START-DATE']);
        flashes.set(range.id, { id: range.id, text: a['X-TEXT'] || '', level: a['X-LEVEL'] || 'info', start, end: start + Number(a.DURATION || 10) * 1000 });
      }
    });
    setInterval(() => {
      const at = hls.playingDate ? hls.playingDate.getTime() : null;
      const now = at === null ? null : [...flashes.values()].find((f) => f.start <= at && at < f.end);
      $('flash').hidden = !now;
      if (now) {
        $('flash').textContent = now.text;
        $('flash').dataset.level = now.level;
        if (!stats.flashes.some((f) => f.id === now.id)) stats.flashes.push({ id: now.id, text: now.text, at: Date.now() });
      }
    }, 250);

    hls.loadSource(source(stream, session));
    hls.attachMedia(video);
  }

  const push = (list, v) => { if (list.length < MAX_SAMPLES) list.push(Math.round(v * 1000) / 1000); };
  const fmt = (v) => (Number.isFinite(v) ? v.toFixed(2) : '–');

  // ---- the chat -----------------------------------------------------------------------

  // Who this page chats as: a token given in the URL (`#token=…`, as a site that signs its
  // users in would hand it over), else a guest token from the relay, else read-only.
  async function identity() {
    const given = new URLSearchParams(location.hash.slice(1)).get('token');
    if (given) return { token: given, user: null };
    const key = `corral-guest:${chatBase}`;
    const kept = JSON.parse(sessionStorage.getItem(key) || 'null');
    if (kept && kept.expires * 1000 > Date.now() + 60000) return kept;
    const name = query.get('name') || localStorage.getItem('corral-name') || `viewer-${Math.floor(1000 + Math.random() * 9000)}`;
    const r = await fetch(`${chatBase}/v1/guests`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name }),
    });
    if (!r.ok) return null;
    const guest = await r.json();
    localStorage.setItem('corral-name', guest.user.name);
    sessionStorage.setItem(key, JSON.stringify(guest));
    return guest;
  }

  function chat(stream) {
    $('chat').hidden = false;
    const list = $('messages');
    const shown = new Map();
    let last = 0;
    let me = null;
    let ws = null;
    let attempts = 0;
    const auth = () => (me?.token ? { authorization: `Bearer ${me.token}` } : {});

    const notice = (text, kind = 'error') => {
      const n = $('notice');
      n.textContent = text;
      n.className = kind;
      n.hidden = !text;
    };
    const writable = (on) => {
      $('text').disabled = !on;
      $('send-button').disabled = !on;
    };

    const render = (m) => {
      if (shown.has(m.id)) return;
      const chars = Array.from(m.text);
      const text = el('span', { className: 'text' });
      let at = 0;
      for (const e of m.emotes || []) {
        text.append(chars.slice(at, e.start).join(''));
        text.append(el('span', { className: 'emote', title: `:${e.id}:`, dataset: { emote: e.id }, textContent: EMOTES[e.id] || e.id }));
        at = e.end;
      }
      text.append(chars.slice(at).join(''));
      const item = el('li', { dataset: { id: m.id, offset: String(m.offset) } }, el('span', { className: 'who', textContent: m.user.name }), text);
      const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 40;
      list.append(item);
      shown.set(m.id, item);
      last = Math.max(last, m.offset);
      stats.chat.messages += 1;
      while (list.children.length > 300) {
        shown.delete(list.firstChild.dataset.id);
        list.firstChild.remove();
      }
      if (stick) list.scrollTop = list.scrollHeight;
    };

    const burst = (counts) => {
      const stage = $('burst');
      for (const [emoji, count] of Object.entries(counts)) {
        stats.chat.reactionsSeen += count;
        for (let i = 0; i < Math.min(count, 24); i++) {
          const s = el('span', { textContent: emoji });
          s.style.left = `${5 + Math.random() * 85}%`;
          s.style.animationDelay = `${Math.random() * 0.6}s`;
          s.addEventListener('animationend', () => s.remove());
          stage.append(s);
        }
      }
    };

    const announce = (text, level) => {
      stats.chat.announcement = text;
      $('banner-text').textContent = text;
      $('banner').className = level;
      $('banner').hidden = false;
      clearTimeout(announce.timer);
      if (level !== 'critical') announce.timer = setTimeout(() => { $('banner').hidden = true; }, 20000);
    };
    $('banner-close').addEventListener('click', () => { $('banner').hidden = true; });

    const onFrame = (f) => {
      switch (f.op) {
        case 'msg': render(f); break;
        case 'recovery':
          if (!f.recovered) {
            list.replaceChildren();
            shown.clear();
          }
          for (const m of f.messages) render(m);
          break;
        case 'ack': stats.chat.sent += 1; break;
        case 'reactions': burst(f.counts); break;
        case 'viewers':
          stats.chat.viewers = f.count;
          $('viewers').textContent = `${f.count.toLocaleString()} watching`;
          break;
        case 'deleted': {
          const item = shown.get(f.id);
          if (item) {
            item.classList.add('deleted');
            item.querySelector('.text').textContent = 'message removed by a moderator';
          }
          break;
        }
        case 'announcement': announce(f.text, f.level); break;
        case 'banned': {
          stats.chat.banned = f.reason || 'banned';
          const until = f.until ? ` until ${new Date(f.until * 1000).toLocaleString()}` : '';
          notice(`You are banned from this chat${until}${f.reason ? `: ${f.reason}` : ''}.`);
          writable(false);
          break;
        }
        case 'room': {
          const modes = [];
          if (f.slow_mode) modes.push(`slow mode: one message every ${f.slow_mode} s`);
          if (f.followers_only === 0) modes.push('followers only');
          else if (f.followers_only) modes.push(`followers of ${f.followers_only} min or more only`);
          $('modes').textContent = modes.join(' · ');
          break;
        }
        case 'error': notice(f.message); setTimeout(() => notice(''), 5000); break;
        default: break;
      }
    };

    const connect = () => {
      const url = new URL(`${chatBase}/v1/rooms/${encodeURIComponent(stream)}/ws`);
      url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
      if (me?.token) url.searchParams.set('token', me.token);
      if (last > 0) url.searchParams.set('since', String(last));
      ws = new WebSocket(url);
      ws.onopen = () => {
        attempts = 0;
        stats.chat.connected = true;
        stats.chat.connects += 1;
        if (!stats.chat.banned) writable(Boolean(me?.token));
        if (!me?.token) notice('Read-only: chat needs a sign-in here.', 'info');
      };
      ws.onmessage = (e) => {
        try { onFrame(JSON.parse(e.data)); } catch (err) { stats.errors.push(`chat frame: ${err.message}`); }
      };
      ws.onclose = () => {
        stats.chat.connected = false;
        writable(false);
        setTimeout(connect, backoff(attempts++));
      };
    };

    $('send').addEventListener('submit', (e) => {
      e.preventDefault();
      const text = $('text').value.trim();
      if (!text || !ws || ws.readyState !== WebSocket.OPEN) return;
      ws.send(JSON.stringify({ op: 'send', text, nonce: crypto.randomUUID() }));
      $('text').value = '';
    });
    for (const b of document.querySelectorAll('#react button')) {
      b.addEventListener('click', () => {
        if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ op: 'react', emoji: b.dataset.emoji }));
      });
    }

    const start = async () => {
      try {
        me = await identity();
      } catch (e) {
        stats.errors.push(`chat sign-in: ${e.message}`);
      }
      stats.chat.user = me?.user || null;
      $('me').textContent = me?.user ? `chatting as ${me.user.name}` : '';
      try {
        const r = await fetch(`${chatBase}/v1/rooms/${encodeURIComponent(stream)}/messages?limit=50`);
        if (r.ok) (await r.json()).messages.reverse().forEach(render);
      } catch (e) {
        stats.errors.push(`chat history: ${e.message}`);
      }
      connect();
      channel(stream, () => me, auth);
    };
    start();
  }

  // Glyphs for the relay's default emotes; others show their name.
  const EMOTES = { Kappa: '😏', PogChamp: '😮', LUL: '😂', GG: '🏆', HeyGuys: '👋' };

  // ---- the channel --------------------------------------------------------------------

  async function channel(name, me, auth) {
    const base = `${chatBase}/v1/channels/${encodeURIComponent(name)}`;
    let followers = 0;
    const showFollowers = () => { $('followers').textContent = `${followers.toLocaleString()} follower${followers === 1 ? '' : 's'}`; };
    const showRelation = (r) => {
      $('follow').textContent = r.following ? 'Following' : 'Follow';
      $('follow').classList.toggle('on', r.following);
      $('follow').dataset.following = String(r.following);
      $('subscribe').textContent = r.subscription ? `Subscribed (tier ${r.subscription.tier})` : 'Subscribe';
      $('subscribe').classList.toggle('on', Boolean(r.subscription));
      $('subscribe').dataset.subscribed = String(Boolean(r.subscription));
    };
    const refresh = async () => {
      const r = await fetch(base);
      if (!r.ok) return false;
      const c = await r.json();
      $('channel-name').textContent = c.title ? `${c.name}: ${c.title}` : c.name;
      $('channel-description').textContent = c.description;
      $('stream-title').textContent = c.title || '';
      followers = c.followers;
      showFollowers();
      return true;
    };
    try {
      if (!(await refresh())) return;
    } catch (e) {
      stats.errors.push(`channel: ${e.message}`);
      return;
    }
    $('channel').hidden = false;
    if (!me()?.token) return;
    const r = await fetch(`${base}/relationship`, { headers: auth() });
    if (r.ok) showRelation(await r.json());
    $('follow').disabled = false;
    $('subscribe').disabled = false;
    const change = async (button, path, on, body) => {
      button.disabled = true;
      try {
        const res = await fetch(`${base}/${path}`, {
          method: on ? 'POST' : 'DELETE',
          headers: { ...auth(), ...(body ? { 'content-type': 'application/json' } : {}) },
          body: body ? JSON.stringify(body) : undefined,
        });
        if (!res.ok) throw new Error(`answered ${res.status}`);
        const before = $('follow').dataset.following === 'true';
        const rel = await res.json();
        showRelation(rel);
        // The count moves at once; the next refresh reconciles it with the relay's.
        if (rel.following !== before) {
          followers += rel.following ? 1 : -1;
          showFollowers();
        }
      } catch (e) {
        stats.errors.push(`${path}: ${e.message}`);
      } finally {
        button.disabled = false;
      }
    };
    $('follow').addEventListener('click', () => change($('follow'), 'follow', $('follow').dataset.following !== 'true'));
    $('subscribe').addEventListener('click', () => {
      const on = $('subscribe').dataset.subscribed !== 'true';
      change($('subscribe'), 'subscription', on, on ? { tier: 1 } : null);
    });
    setInterval(() => refresh().catch(() => {}), 30000);
  }

  // ---- routing ------------------------------------------------------------------------

  window.corral = {
    hls: null,
    stats: () => {
      const video = $('video');
      const quality = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : {};
      // The sample lists stay out (samples() has them): this is polled often.
      const { latency, glassToGlass, ...rest } = stats;
      return {
        ...rest,
        stallMs: Math.round(stats.stallMs + (stallStart !== null ? performance.now() - stallStart : 0)),
        currentTime: video.currentTime,
        // Seconds of a finished broadcast (null while live: the browser says Infinity).
        duration: Number.isFinite(video.duration) ? video.duration : null,
        paused: video.paused,
        readyState: video.readyState,
        videoWidth: video.videoWidth,
        videoHeight: video.videoHeight,
        decodedFrames: quality.totalVideoFrames ?? null,
        droppedFrames: quality.droppedVideoFrames ?? null,
        autoLevel: window.corral.hls ? window.corral.hls.autoLevelEnabled : stats.autoLevel,
        latency: latency[latency.length - 1] ?? null,
        glassToGlass: glassToGlass[glassToGlass.length - 1] ?? null,
      };
    },
    samples: () => ({ latency: stats.latency.slice(), glassToGlass: stats.glassToGlass.slice() }),
  };

  const watch = location.pathname.match(/^\/watch\/([^/]+)(?:\/([0-9TZ]+))?\/?$/);
  if (watch) {
    const stream = decodeURIComponent(watch[1]);
    const session = watch[2] || null;
    stats.stream = stream;
    stats.session = session;
    document.title = session ? `${stream} (replay) · Corral` : `${stream} · Corral`;
    $('watch').hidden = false;
    player(stream, session);
    if (chatOn) chat(stream);
  } else {
    home();
  }
})();
