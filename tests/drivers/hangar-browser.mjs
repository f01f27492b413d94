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
// Only http URLs on 127.0.0.1 are opened. Form posts carry the router's
// origin as `Origin` and the cookies it set, as a browser's would. Every
// request is bounded (10 s); the whole run is bounded (30 s). Exits 0 when
// the callback answered 2xx; otherwise prints the trail of requests on
// stderr and exits 1.

import { appendFileSync } from 'node:fs';

const REQUEST_MS = 10_000;
const url = process.argv[process.argv.length - 1];
if (process.env.HANGAR_BROWSER_COUNTER) {
  appendFileSync(process.env.HANGAR_BROWSER_COUNTER, `${process.pid} ${new Date().toISOString()}\n`);
}
const user = process.env.HANGAR_BROWSER_USER ?? 'alice';
const password = process.env.HANGAR_BROWSER_PASSWORD ?? '';

const jar = new Map();
const trail = [];

function loopback(href) {
  const u = new URL(href);
  if (u.protocol !== 'http:' || u.hostname !== '127.0.0.1') {
    throw new Error(`test browser: refusing to open ${u.origin}`);
  }
  return u;
}

function unescapeHtml(s) {
  return s
    .replaceAll('&quot;', '"')
    .replaceAll('&#39;', "'")
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&amp;', '&');
}

/** The page's `<input type="hidden">` fields, in order. */
function hiddenFields(html) {
  const out = [];
  for (const m of html.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)) {
    out.push([unescapeHtml(m[1]), unescapeHtml(m[2])]);
  }
  return out;
}

async function send(method, href, { origin, form } = {}) {
  const u = loopback(href);
  const sameOrigin = origin && u.origin === origin;
  const headers = {};
  if (sameOrigin && jar.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  let body;
  if (form) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    headers.origin = origin;
    body = new URLSearchParams(form).toString();
  }
  const res = await fetch(u, { method, headers, body, redirect: 'manual', signal: AbortSignal.timeout(REQUEST_MS) });
  if (sameOrigin) {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq < 0) continue;
      const [name, value] = [pair.slice(0, eq).trim(), pair.slice(eq + 1).trim()];
      if (value === '' || attrs.some((a) => /^\s*max-age=0\s*$/i.test(a))) jar.delete(name);
      else jar.set(name, value);
    }
  }
  const location = res.headers.get('location');
  const text = await res.text();
  trail.push(`${method} ${u.origin}${u.pathname} → ${res.status}${location ? ` → ${location.split('?')[0]}` : ''}`);
  return { status: res.status, location: location && new URL(location, u).href, body: text };
}

function fail(what, page) {
  return new Error(`${what}: HTTP ${page.status}\n${page.body.slice(0, 1000)}`);
}

async function main() {
  const origin = loopback(url).origin;
  let page = await send('GET', url, { origin });
  if (page.status === 303 && new URL(page.location).pathname === '/signin') {
    const signin = await send('GET', page.location, { origin });
    if (signin.status !== 200 || !signin.body.includes('name="password"')) throw fail('the sign-in page', signin);
    const fields = hiddenFields(signin.body);
    fields.push(['username', user], ['password', password]);
    const signed = await send('POST', `${origin}/signin`, { origin, form: fields });
    if (signed.status !== 303 || !signed.location) throw fail('signing in', signed);
    page = await send('GET', signed.location, { origin });
  }
  if (page.status !== 200 || !page.body.includes('Allow access?')) throw fail('the consent page', page);
  const fields = hiddenFields(page.body);
  fields.push(['decision', 'approve']);
  const decided = await send('POST', `${origin}/oauth/authorize`, { origin, form: fields });
  if (decided.status !== 303 || !decided.location) throw fail('the consent decision', decided);
  // The shim's loopback callback.
  const back = await send('GET', decided.location);
  if (back.status < 200 || back.status >= 300) throw fail('the callback', back);
}

const overall = setTimeout(() => {
  console.error(`test browser: gave up after 30 s\n${trail.join('\n')}`);
  process.exit(1);
}, 30_000);
try {
  await main();
  clearTimeout(overall);
} catch (e) {
  console.error(`test browser: ${e.message}\n${trail.join('\n')}`);
  process.exit(1);
}
