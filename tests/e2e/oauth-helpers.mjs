// Helpers shared by the OAuth end-to-end tests (tests/e2e/oauth-*.test.mjs):
// a `hangar serve` that is also the authorization server, with a user who
// signs in with a password, that can be stopped and started again on the
// same port and data dir; an HTTPS host on 127.0.0.1 for Client ID Metadata
// Documents (with its own throwaway CA, which the router is told to trust);
// a loopback redirect target that records codes. Not a test file: its name
// must not end in `.test.mjs`. Every wait is bounded.

import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

import { HANGAR, HANGAR_EVERYTHING, BUILD_HINT, freePort, requireFile, spawnDetached, waitForPort } from './helpers.mjs';

requireFile(HANGAR_EVERYTHING, BUILD_HINT);

export const ALICE = { name: 'alice', password: 'correct horse battery staple' };

/** Runs `hangar ARGS…` with `input` on stdin; resolves with stdout. */
export function hangarWithInput(args, input) {
  return new Promise((resolve, reject) => {
    const child = spawn(HANGAR, args, { env: { ...process.env, HANGAR_LOG: 'warn' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`hangar ${args.join(' ')} failed (${code ?? signal}):\n${err}`));
    });
    child.stdin.end(input);
  });
}

/**
 * A `hangar serve` on a free loopback port with a fresh data dir: the
 * per-user `everything` server (hangar-everything) at /mcp/everything, OAuth
 * with `[oauth]` settings `oauth` (access tokens live `accessTokenTtl`;
 * client metadata documents may be fetched from loopback), and alice, who
 * signs in with her password. `env` is added to the router's environment.
 * `stop()` and `start()` restart it on the same port, config and data dir;
 * the test's teardown stops it and removes the directory.
 */
export async function startOAuthRouter(t, { accessTokenTtl = '5s', oauth = {}, env = {} } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hangar-e2e-oauth-'));
  const port = await freePort();
  const config = path.join(dir, 'hangar.toml');
  const oauthLines = Object.entries({
    access_token_ttl: accessTokenTtl,
    allow_loopback_client_metadata: true,
    ...oauth,
  }).map(([k, v]) => `${k} = ${JSON.stringify(v)}`);
  writeFileSync(
    config,
    [
      `listen = "127.0.0.1:${port}"`,
      `data_dir = ${JSON.stringify(path.join(dir, 'data'))}`,
      '[servers.everything]',
      `command = [${JSON.stringify(HANGAR_EVERYTHING)}]`,
      'tenancy = "per-user"',
      'access = "authenticated"',
      'idle_timeout = "10m"',
      '[oauth]',
      ...oauthLines,
      '',
    ].join('\n'),
  );
  await hangarWithInput(['user', 'add', ALICE.name, '--password-stdin', '--config', config], ALICE.password);

  let child = null;
  let logs = '';
  const start = async () => {
    if (child) throw new Error('hangar serve is already running');
    child = spawnDetached(HANGAR, ['serve', '--config', config], {
      env: { ...process.env, ...env, HANGAR_LOG: process.env.HANGAR_LOG ?? 'info' },
      graceMs: 10_000,
      unrefTimers: true,
    });
    await waitForPort('hangar serve', port, child, stop);
  };
  const stop = async () => {
    if (!child) return;
    const c = child;
    child = null;
    await c.terminate();
    logs += c.log();
  };
  t.after(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await start();

  const origin = `http://127.0.0.1:${port}`;
  return {
    dir,
    port,
    config,
    origin,
    url: new URL(`${origin}/mcp/everything`),
    start,
    stop,
    /** The router's output so far, over every run. */
    log: () => logs + (child ? child.log() : ''),
  };
}

const run = promisify(execFile);

/**
 * A throwaway CA and a server certificate for 127.0.0.1 signed by it, made
 * with the openssl CLI in `dir`. Resolves with { caFile, key, cert }.
 */
export async function loopbackCertificate(dir) {
  const f = (name) => path.join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const opts = { timeout: 15_000 };
  await run('openssl', ['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2',
    '-subj', '/CN=Hangar e2e throwaway CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], opts);
  await run('openssl', ['req', ...ec, '-keyout', f('leaf.key'), '-out', f('leaf.csr'), '-subj', '/CN=127.0.0.1'], opts);
  writeFileSync(f('leaf.ext'), [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=IP:127.0.0.1',
    '',
  ].join('\n'));
  await run('openssl', ['x509', '-req', '-in', f('leaf.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'),
    '-CAcreateserial', '-out', f('leaf.pem'), '-days', '2', '-extfile', f('leaf.ext')], opts);
  return { caFile: f('ca.pem'), key: readFileSync(f('leaf.key')), cert: readFileSync(f('leaf.pem')) };
}

/** Whether the openssl CLI can be run. */
export async function haveOpenssl() {
  try {
    await run('openssl', ['version'], { timeout: 5_000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * An HTTPS server on 127.0.0.1 publishing one Client ID Metadata Document at
 * https://127.0.0.1:PORT/clients/<name>.json: `makeDoc(url)` returns the
 * document (its client_id must be `url`). Start the router with
 * SSL_CERT_FILE=<caFile> so it trusts the throwaway CA (reqwest's native
 * roots honour it). `hits` lists the paths fetched. Closed when the test ends.
 */
export async function startCimdHost(t, name, makeDoc) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hangar-e2e-cimd-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { caFile, key, cert } = await loopbackCertificate(dir);
  const hits = [];
  let doc = null;
  const docPath = `/clients/${name}.json`;
  const server = https.createServer({ key, cert }, (req, res) => {
    hits.push(req.url);
    if (req.method === 'GET' && req.url === docPath) {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=60' });
      res.end(JSON.stringify(doc));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  t.after(() => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }));
  const url = `https://127.0.0.1:${server.address().port}${docPath}`;
  doc = makeDoc(url);
  return { url, caFile, hits, doc };
}

/**
 * A plain HTTP server on 127.0.0.1 standing in for a client's redirect URI:
 * records the query of every request to /callback (`calls`) and answers 200.
 * Closed when the test ends.
 */
export async function startRedirectTarget(t) {
  const calls = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    if (url.pathname === '/callback') {
      calls.push(Object.fromEntries(url.searchParams));
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><title>Signed in</title><p>You can close this window.</p>');
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  t.after(() => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }));
  return { url: `http://127.0.0.1:${server.address().port}/callback`, calls };
}
