#!/usr/bin/env node
// A stand-in for the user's browser when `hangar serve` is the authorization
// server: `hangar connect` runs it as $BROWSER with the authorization URL as
// its last argument. It does what a person would: opens the URL, signs in on
// Hangar's password page, approves the consent page, and follows the
// redirect to the shim's loopback callback.
//
//   BROWSER="node tests/drivers/hangar-browser.mjs"
//
// Environment:
//   HANGAR_BROWSER_USER, HANGAR_BROWSER_PASSWORD  who signs in
//   HANGAR_BROWSER_COUNTER  a file; one line is appended each time this runs
//                           (before anything else), so tests can count sign-ins
//
// Only http URLs on 127.0.0.1 are opened. The sign-in and consent steps are
// tests/e2e/oauth-signin.mjs's scripted browser (cookies, `Origin` on form
// posts, every request bounded); the whole run is bounded (30 s). Exits 0 when
// the callback answered 2xx; otherwise prints the trail of requests on
// stderr and exits 1.

import { appendFileSync } from 'node:fs';

import { HttpBrowser } from '../e2e/oauth-signin.mjs';

const url = process.argv[process.argv.length - 1];
if (process.env.HANGAR_BROWSER_COUNTER) {
  appendFileSync(process.env.HANGAR_BROWSER_COUNTER, `${process.pid} ${new Date().toISOString()}\n`);
}
const user = process.env.HANGAR_BROWSER_USER ?? 'alice';
const password = process.env.HANGAR_BROWSER_PASSWORD ?? '';

function loopback(href) {
  const u = new URL(href);
  if (u.protocol !== 'http:' || u.hostname !== '127.0.0.1') {
    throw new Error(`test browser: refusing to open ${u.origin}`);
  }
  return u;
}

const browser = new HttpBrowser(loopback(url).origin);

async function main() {
  const { location } = await browser.authorize(url, { user, password });
  // The shim's loopback callback.
  const back = await browser.get(loopback(new URL(location, browser.origin).href).href);
  if (back.status < 200 || back.status >= 300) throw browser.fail('the callback', back);
}

const overall = setTimeout(() => {
  console.error(`test browser: gave up after 30 s\n${browser.trail.join('\n')}`);
  process.exit(1);
}, 30_000);
try {
  await main();
  clearTimeout(overall);
} catch (e) {
  console.error(`test browser: ${e.message}\n${browser.trail.join('\n')}`);
  process.exit(1);
}
