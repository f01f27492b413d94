// The README's first journey, exactly as written: in a fresh directory,
// `hangar serve` with no config and no flags (so the data dir is the
// relative ./hangar-data and the listener 127.0.0.1:8080), `hangar user add
// alice --password-stdin`, `hangar token create --user alice`, then the
// Inspector CLI (pinned in tests/peers) calling `whoami` with that token.
// The only difference: the debug build (target/debug), which
// scripts/test.sh builds, instead of target/release.
//
// Issue 9 found this journey broken on every machine with bubblewrap: the
// relative data dir reached bwrap's bind mount and every instance exited at
// once. The instance must run, and run sandboxed (its own PID namespace:
// the server sees itself as a low pid).
//
// Needs 127.0.0.1:8080 free (the README's address); skipped, saying so,
// when something else holds it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';

import { HANGAR, NODE22, NODE22_DIR, PEERS, ROOT, canConnect, within } from './helpers.mjs';
import { setTimeout as sleep } from 'node:timers/promises';

const INSPECTOR = path.join(PEERS, '@modelcontextprotocol', 'inspector', 'clients', 'launcher', 'build', 'index.js');
const TIMEOUT = 120_000;

function run(file, args, { cwd, input, env }) {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { cwd, env, timeout: 60_000, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${path.basename(file)} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
    if (input !== undefined) child.stdin.end(input);
  });
}

const busy = await canConnect(8080);

test('the README journey: hangar serve with no config, a user, a token, the Inspector CLI calls whoami in a sandboxed instance', {
  timeout: TIMEOUT,
  skip: busy ? '127.0.0.1:8080 is in use on this machine: the README journey needs it' : false,
}, async (t) => {
  const scratch = path.join(ROOT, 'target', 'tmp');
  mkdirSync(scratch, { recursive: true });
  const dir = mkdtempSync(path.join(scratch, 'hangar-readme-'));
  // A newcomer's shell: no Hangar variables.
  const env = { ...process.env, PATH: `${NODE22_DIR}:${process.env.PATH}` };
  for (const k of Object.keys(env)) if (k.startsWith('HANGAR_')) delete env[k];

  const serve = spawn(HANGAR, ['serve'], { cwd: dir, env, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let log = '';
  serve.stderr.on('data', (d) => { log = (log + d).slice(-64 * 1024); });
  const exited = new Promise((resolve) => serve.once('exit', resolve));
  t.after(async () => {
    try { process.kill(-serve.pid, 'SIGTERM'); } catch { /* gone */ }
    await Promise.race([exited, sleep(5_000)]);
    try { process.kill(-serve.pid, 'SIGKILL'); } catch { /* gone */ }
    rmSync(dir, { recursive: true, force: true });
  });
  const deadline = Date.now() + 20_000;
  while (!(await canConnect(8080))) {
    assert.ok(Date.now() < deadline, `hangar serve did not listen on 8080:\n${log}`);
    await sleep(50);
  }
  assert.match(log, /sandboxed \(bubblewrap\)/, `serve says its instances are sandboxed:\n${log}`);

  await run(HANGAR, ['user', 'add', 'alice', '--password-stdin'], { cwd: dir, env, input: 'a long passphrase\n' });
  const { stdout: token } = await run(HANGAR, ['token', 'create', '--user', 'alice'], { cwd: dir, env });
  assert.match(token.trim(), /^hgr_/);

  const { stdout } = await within(60_000, 'the Inspector CLI', run(NODE22, [
    INSPECTOR, '--cli', 'http://127.0.0.1:8080/mcp/everything', '--transport', 'http',
    '--header', `Authorization: Bearer ${token.trim()}`, '--method', 'tools/call', '--tool-name', 'whoami',
  ], { cwd: dir, env }));
  const result = JSON.parse(stdout);
  assert.notEqual(result.isError, true, stdout);
  const who = JSON.parse(result.content[0].text);
  assert.equal(who.user, 'alice', stdout);
  assert.equal(who.server, 'everything', stdout);
  // bwrap --unshare-pid: the server is one of the first processes of its namespace.
  assert.ok(who.pid < 10, `the server runs in its own PID namespace (pid ${who.pid}):\n${log}`);
  t.diagnostic(`whoami through the README journey: ${result.content[0].text}`);
});
