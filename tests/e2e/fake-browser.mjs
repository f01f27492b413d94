// The "web browser" of tests/e2e/oauth-mcp-remote.test.mjs: mcp-remote opens
// the authorization URL with the `open` package, whose bundled xdg-open runs
// $BROWSER with the URL; the test points $BROWSER at a wrapper that runs
// this script. It signs in and approves on Hangar's pages over HTTP (the
// scripted browser of oauth-signin.mjs), then delivers the redirect to the
// client's loopback callback, as a browser would.
//
//   node fake-browser.mjs URL
//
// Environment: FAKE_BROWSER_LOG (a file: one JSON line per event is
// appended: {event:"open",url}, then {event:"done",location,consent} or
// {event:"error",message}), FAKE_BROWSER_USER, FAKE_BROWSER_PASSWORD.
// Exits 0 when the callback was delivered and answered 2xx.

import { appendFileSync } from 'node:fs';

import { HttpBrowser } from './oauth-signin.mjs';

const log = (event) => appendFileSync(process.env.FAKE_BROWSER_LOG, `${JSON.stringify(event)}\n`);

const url = process.argv[2];
log({ event: 'open', url, at: Date.now() });
try {
  const auth = new URL(url);
  if (auth.hostname !== '127.0.0.1') throw new Error(`refusing to open a non-loopback URL: ${url}`);
  const browser = new HttpBrowser(auth.origin);
  const { location, consent } = await browser.authorize(url, {
    user: process.env.FAKE_BROWSER_USER,
    password: process.env.FAKE_BROWSER_PASSWORD,
  });
  const back = new URL(location);
  if (back.hostname !== '127.0.0.1') throw new Error(`the callback is not on 127.0.0.1: ${location}`);
  const delivered = await fetch(back, { redirect: 'manual', signal: AbortSignal.timeout(15_000) });
  const text = await delivered.text();
  if (delivered.status >= 400) throw new Error(`the callback answered ${delivered.status}: ${text.slice(0, 500)}`);
  log({ event: 'done', location, consent, callbackStatus: delivered.status });
} catch (err) {
  log({ event: 'error', message: String(err?.stack ?? err) });
  process.exit(1);
}
