// Debian's chromium for the browser tests: one launcher and its command-line flags, shared by
// watch.js, stock.js and h3_fetch.js.
//
//   launch({ playback, quic })   playback: flags for a page that plays video unattended
//                                quic: { origin: URL, cert: PEM path } forces that origin onto
//                                HTTP/3, trusting the self-signed certificate by its key's hash
//                                (the only way QUIC accepts one)
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const { chromium } = require('playwright-core');

// Headless, no sandbox (root in CI), nothing fetched on the browser's own behalf.
const BASE = [
  '--no-sandbox',
  '--headless=new',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

// Video starts without a gesture and pages are never throttled as background ones.
const PLAYBACK = [
  '--autoplay-policy=no-user-gesture-required',
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
];

// The flags that put `origin` on HTTP/3 and trust the certificate at `certPath` there.
function quicArgs(origin, certPath) {
  const cert = new crypto.X509Certificate(fs.readFileSync(certPath));
  const spki = crypto
    .createHash('sha256')
    .update(cert.publicKey.export({ type: 'spki', format: 'der' }))
    .digest('base64');
  return ['--enable-quic', `--origin-to-force-quic-on=${origin.host}`, `--ignore-certificate-errors-spki-list=${spki}`];
}

function launch({ playback = false, quic = null } = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [...BASE, ...(playback ? PLAYBACK : []), ...(quic ? quicArgs(quic.origin, quic.cert) : [])],
  });
}

module.exports = { launch };
