#!/usr/bin/env node
// A stand-in for the user's browser in tests: `hangar connect` runs it as
// $BROWSER with the authorization URL as its last argument. It GETs the URL
// and follows redirects (at most 10, 10 s in all) the way a browser would,
// which lands on the shim's loopback callback and completes the sign-in
// (test authorization servers approve at once). Only http(s) URLs on
// loopback hosts are followed.
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);
let url = process.argv[process.argv.length - 1];
const deadline = Date.now() + 10_000;
for (let hop = 0; hop < 10 && Date.now() < deadline; hop++) {
  const u = new URL(url);
  if (!['http:', 'https:'].includes(u.protocol) || !LOOPBACK.has(u.hostname)) {
    console.error(`test browser: not following ${u.origin}`);
    process.exit(1);
  }
  let res;
  try {
    res = await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())) });
  } catch (e) {
    console.error(`test browser: GET ${u.origin}${u.pathname} failed: ${e.message}`);
    process.exit(1);
  }
  const next = res.headers.get('location');
  await res.arrayBuffer().catch(() => {});
  if (res.status >= 300 && res.status < 400 && next) {
    url = new URL(next, url).toString();
    continue;
  }
  process.exit(res.ok ? 0 : 1);
}
process.exit(1);
