// Debian's chromium, forced onto QUIC for the edge's TLS address, opens a page of the edge
// and fetches paths from it; prints what the browser's resource timing says about each.
//
//   node h3_fetch.js https://127.0.0.1:PORT CERT.pem PATH...
//
// Output (one JSON line): {"navigation": {"url", "protocol", "status"},
// "fetches": [{"path", "status", "bytes", "protocol"}]}. The certificate is trusted by its
// public key's hash (--ignore-certificate-errors-spki-list), as a self-signed one must be
// for QUIC; --origin-to-force-quic-on makes chromium use HTTP/3 without an Alt-Svc round.
'use strict';
const { launch } = require('./chromium');

async function main() {
  const [base, certPath, ...paths] = process.argv.slice(2);
  const browser = await launch({ quic: { origin: new URL(base), cert: certPath } });
  try {
    const page = await browser.newPage();
    const response = await page.goto(`${base}/healthz`, { timeout: 20000 });
    const fetches = await page.evaluate(async (paths) => {
      const out = [];
      for (const path of paths) {
        const r = await fetch(path, { cache: 'no-store' });
        const bytes = (await r.arrayBuffer()).byteLength;
        out.push({ path, status: r.status, bytes });
      }
      const timing = performance.getEntriesByType('resource');
      for (const f of out) {
        const entry = timing.find((e) => new URL(e.name).pathname + new URL(e.name).search === f.path);
        f.protocol = entry ? entry.nextHopProtocol : null;
      }
      return out;
    }, paths);
    const navigation = await page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      return { url: nav.name, protocol: nav.nextHopProtocol };
    });
    navigation.status = response ? response.status() : null;
    console.log(JSON.stringify({ navigation, fetches }));
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`h3_fetch: ${e.stack || e}`);
  process.exit(1);
});
