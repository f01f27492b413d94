// The soak's report: what the driver counted, what the script saw (faults,
// the router's RSS per run, the store before and after), in one JSON file
// (OUT/report.json) and a summary on stdout. Started by scripts/soak.sh:
//
//   node tests/soak/report.mjs OUT WORK
//
// Exits 1 when the run failed: a request lost (no answer within the
// timeout), a wrong answer (whoami naming someone else, a wrong sum or
// echo), a user, token, OAuth client or grant lost or revoked, a panic, or a
// finding of the script (a router that did not stop, processes outliving it).
// Failed requests (errors that came back) are expected while faults last
// and are reported, not judged.

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const [OUT, WORK] = process.argv.slice(2);
const read = (file) => (existsSync(file) ? readFileSync(file, 'utf8') : null);
const lines = (file) => (read(file) ?? '').split('\n').filter(Boolean);
const json = (file) => {
  const text = read(file);
  return text ? JSON.parse(text) : null;
};

const driver = json(path.join(OUT, 'driver.json'));
const checks = json(path.join(OUT, 'checks.json'));
const problems = [];

// ---- faults
const faultRows = lines(path.join(OUT, 'faults.tsv')).map((l) => {
  const [at, kind, detail] = l.split('\t');
  return { at: Number(at), kind, detail };
});
const faults = {};
for (const f of faultRows) faults[f.kind] = (faults[f.kind] ?? 0) + 1;
for (const f of faultRows.filter((f) => f.kind === 'finding')) problems.push(`finding: ${f.detail}`);

// ---- router RSS, per run
const runs = new Map();
for (const l of lines(path.join(OUT, 'rss.tsv'))) {
  const [at, run, pid, kind, kb, fds] = l.split('\t');
  const r = runs.get(run) ?? { run: Number(run), pid: Number(pid), samples: [] };
  r.samples.push({ at: Number(at), kind, kb: Number(kb), fds: Number(fds) });
  runs.set(run, r);
}
const stops = new Map(
  lines(path.join(OUT, 'runs.tsv')).map((l) => {
    const [run, , why, ms, code] = l.split('\t');
    return [run, { why, stopMs: Number(ms), exitStatus: Number(code) }];
  }),
);
const routerRss = [...runs.values()].map((r) => {
  const start = r.samples.find((s) => s.kind === 'start');
  const end = [...r.samples].reverse().find((s) => s.kind === 'end');
  const kbs = r.samples.map((s) => s.kb).filter((kb) => kb > 0);
  // Past the first rush (instances starting, sign-ins hashing passwords): what later growth is measured from.
  const warm = start && r.samples.find((s) => s.kind === 'sample' && s.at - start.at >= 30);
  return {
    run: r.run,
    pid: r.pid,
    seconds: start && end ? end.at - start.at : null,
    startKb: start?.kb ?? null,
    warmKb: warm?.kb ?? null,
    endKb: end?.kb ?? null,
    maxKb: kbs.length ? kbs.reduce((a, b) => (b > a ? b : a)) : null,
    // Open file descriptors: sockets to clients, instances and PostgreSQL.
    startFds: start?.fds ?? null,
    endFds: end?.fds ?? null,
    maxFds: r.samples.reduce((a, s) => Math.max(a, s.fds || 0), 0),
    // How it ended: SIGTERM → exit, in ms, and its exit status.
    ...stops.get(String(r.run)),
  };
});

for (const r of routerRss) if (r.exitStatus && r.why !== "crashed") problems.push(`router run ${r.run} exited with status ${r.exitStatus}`);

// ---- free disk space (kB where the data is, where the logs are), every 10 s
const disk = lines(path.join(OUT, 'disk.tsv')).map((l) => l.split('\t').map(Number));
const minFreeKb = disk.length ? disk.flatMap(([, a, b]) => [a, b].filter((x) => x >= 0)).reduce((m, x) => Math.min(m, x), Infinity) : null;
if (minFreeKb != null && minFreeKb < 256 * 1024) {
  problems.push(`the disk nearly filled up during the run (${Math.round(minFreeKb / 1024)} MiB free at the least): the figures are unreliable`);
}

// ---- the store, before and after
function compare(what, keyOf, okAfter = () => true) {
  const before = lines(path.join(WORK, `before.${what}`));
  const after = lines(path.join(WORK, `after.${what}`));
  const afterByKey = new Map(after.map((l) => [keyOf(l), l]));
  const beforeKeys = new Set(before.map(keyOf));
  const lost = before.filter((l) => !afterByKey.has(keyOf(l)));
  const changed = before.filter((l) => afterByKey.has(keyOf(l)) && !okAfter(l, afterByKey.get(keyOf(l))));
  const added = after.filter((l) => !beforeKeys.has(keyOf(l)));
  const readable = existsSync(path.join(WORK, `before.${what}`)) && existsSync(path.join(WORK, `after.${what}`));
  if (!readable) problems.push(`${what}: could not be read before and after`);
  if (lost.length) problems.push(`${what}: ${lost.length} lost (${lost.slice(0, 3).join('; ')})`);
  if (changed.length) problems.push(`${what}: ${changed.length} changed (${changed.slice(0, 3).join('; ')})`);
  return { before: before.length, after: after.length, lost: lost.length, changed: changed.length, added: added.length };
}
const first = (l) => l.split(/[\t|]/)[0];
const store = {
  users: compare('users', first, (b, a) => a === b),
  tokens: compare('tokens', first, (b, a) => a === b),
  oauthClients: compare('clients', first),
  // A grant in force before the faults must still be in force after them.
  oauthGrants: compare('grants', first, (b, a) => !(b.endsWith('|0') && !a.endsWith('|0'))),
  auditEntries: checks?.auditEntries ?? null,
};

// ---- requests
let requests = null;
if (!driver) {
  problems.push('the driver wrote no results');
} else {
  const i = driver.initialize;
  const c = driver.toolCall;
  requests = {
    sent: i.sent + c.sent,
    answered: i.answered + i.answeredWithSignIn + c.answered,
    wrong: i.wrong + c.wrong,
    failed: i.failed + c.failed,
    lost: i.lost + c.lost,
  };
  const unaccounted = requests.sent - requests.answered - requests.wrong - requests.failed - requests.lost;
  if (unaccounted !== 0) problems.push(`${unaccounted} requests neither answered, failed nor lost`);
  if (requests.lost) problems.push(`${requests.lost} requests lost (no answer within ${driver.lostMs} ms)`);
  if (requests.wrong) problems.push(`${requests.wrong} wrong answers (see samples)`);
  if (driver.gaveUp) problems.push(`${driver.gaveUp} users never made a successful call`);
  if (c.answered === 0) problems.push('no tool call was answered');
}
if (checks?.routerLog?.panics) problems.push(`${checks.routerLog.panics} panics in the router log`);
if (checks && checks.driverExit !== 0) problems.push(`the driver exited with status ${checks.driverExit}`);
for (const [kind, n] of Object.entries({ kill9: faults.kill9, 'router-restart': faults['router-restart'], 'postgres-stop': faults['postgres-stop'] })) {
  if (!n) problems.push(`no ${kind} fault happened (run longer)`);
}

const report = {
  ok: problems.length === 0,
  problems,
  ...checks,
  requests,
  toolCalls: driver?.toolCall ?? null,
  initializes: driver?.initialize ?? null,
  clients: driver && {
    sdk: driver.sdk,
    node: driver.node,
    users: driver.users,
    oauthUsers: driver.oauthUsers,
    durationS: driver.durationS,
    byTool: driver.byTool,
    whoamiChecked: driver.whoamiChecked,
    connects: driver.connects,
    reconnects: driver.reconnects,
    idleBreaks: driver.idleBreaks,
    oauthSignIns: driver.oauthSignIns,
    oauthRefreshes: driver.oauthRefreshes,
    oauthFinishFailed: driver.oauthFinishFailed,
    oauthClients: driver.oauthClients,
    transportErrors: driver.transportErrors,
    gaveUp: driver.gaveUp,
  },
  faults,
  faultLog: faultRows,
  routerRss,
  minFreeDiskKb: minFreeKb,
  store,
  samples: driver?.samples ?? {},
};
writeFileSync(path.join(OUT, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);

// ---- summary
const kb = (n) => (n == null ? '-' : `${(n / 1024).toFixed(1)} MiB`);
const out = [];
out.push(`soak ${report.ok ? 'PASSED' : 'FAILED'}: commit ${checks?.commit}, started ${checks?.startedAt}`);
out.push(`  ${checks?.command}`);
if (requests) {
  out.push(
    `requests: sent ${requests.sent}, answered ${requests.answered}, failed ${requests.failed}, ` +
      `lost ${requests.lost}, wrong ${requests.wrong}`,
  );
  const c = driver.toolCall;
  out.push(
    `  tools/call: sent ${c.sent}, answered ${c.answered}, failed ${c.failed} ${JSON.stringify(c.failedBy)}, lost ${c.lost}, ` +
      `latency p50 ${c.latencyMs.p50} ms p99 ${c.latencyMs.p99} ms max ${c.latencyMs.max} ms; whoami checked ${driver.whoamiChecked}`,
  );
  const i = driver.initialize;
  out.push(
    `  initialize: sent ${i.sent}, answered ${i.answered} (+${i.answeredWithSignIn} with sign-in), failed ${i.failed} ${JSON.stringify(i.failedBy)}, lost ${i.lost}`,
  );
  out.push(
    `  clients: ${driver.users} API-token + ${driver.oauthUsers} OAuth users, ${driver.connects} sessions (${driver.reconnects} reconnects), ` +
      `${driver.idleBreaks} idle breaks, OAuth sign-ins ${driver.oauthSignIns}, refreshes ${driver.oauthRefreshes}`,
  );
}
out.push(`faults: ${JSON.stringify(faults)}`);
if (checks) out.push(`router log: ${JSON.stringify(checks.routerLog)}`);
out.push(
  `router RSS per run (start → after 30 s → end, max): ${routerRss.map((r) => `#${r.run} ${kb(r.startKb)} → ${kb(r.warmKb)} at 30 s → ${kb(r.endKb)} (${kb(r.maxKb)}, ${r.seconds ?? '-'} s, fds ${r.startFds} → ${r.endFds}, stopped in ${r.stopMs ?? '-'} ms)`).join('; ')}`,
);
out.push(
  `store before → after: users ${store.users.before} → ${store.users.after}, tokens ${store.tokens.before} → ${store.tokens.after}, ` +
    `OAuth clients ${store.oauthClients.before} → ${store.oauthClients.after}, grants ${store.oauthGrants.before} → ${store.oauthGrants.after} ` +
    `(lost ${store.users.lost + store.tokens.lost + store.oauthClients.lost + store.oauthGrants.lost}, revoked or changed ${store.users.changed + store.tokens.changed + store.oauthGrants.changed}); audit entries ${store.auditEntries}`,
);
for (const p of problems) out.push(`PROBLEM: ${p}`);
out.push(`report: ${path.join(OUT, 'report.json')}`);
console.log(out.join('\n'));
process.exit(report.ok ? 0 : 1);
