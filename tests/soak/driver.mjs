// The soak's clients: many users, each with the official MCP TypeScript SDK
// client (tests/peers, pinned 1.32.2) and its StreamableHTTPClientTransport,
// calling `echo`, `add` and `whoami` on `hangar serve` in a loop while
// scripts/soak.sh injects faults (kill -9 of instances, router restarts,
// PostgreSQL stopped). Started by scripts/soak.sh; not a test file.
//
//   node tests/soak/driver.mjs CONFIG.json
//
// CONFIG.json (written by soak.sh):
//   { url, durationMs, lostMs, idleTimeoutMs, thinkMs: [min, max], out, ready, usersFile }
// usersFile (0600): { users: [{ name, id, token }], oauthUsers: [{ name, id, password }] }
//
// What a user does, as a real client would: connect (initialize), call a
// tool, check the answer (whoami must name this user, every time), think a
// little, now and then pause longer than the server's idle_timeout (so the
// router stops the idle instance and the next call starts a new one). On an
// error it retries: a 404 (session unknown) or a connection error means a
// new SDK client and session; other errors retry on the same session. Every
// wait is bounded: a call that gets no answer within lostMs is "lost".
//
// API-token users send `Authorization: Bearer hgr_…`. OAuth users sign in
// through the SDK's own OAuth code (an OAuthClientProvider with Dynamic
// Client Registration); their "browser" signs in on Hangar's pages over HTTP
// (tests/e2e/oauth-signin.mjs). Their access tokens are short-lived, so they
// refresh all along, faults included.
//
// Output: CONFIG.out (JSON, every counter and the first samples of each kind
// of failure), a progress line on stdout every 30 s, and CONFIG.ready (a
// file) once every user made its first successful call.

import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

import { HttpBrowser } from '../e2e/oauth-signin.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SDK = path.join(ROOT, 'tests', 'peers', 'node_modules', '@modelcontextprotocol', 'sdk');
const sdkImport = (rel) => import(pathToFileURL(path.join(SDK, 'dist', 'esm', rel)).href);
const { Client } = await sdkImport('client/index.js');
const { StreamableHTTPClientTransport, StreamableHTTPError } = await sdkImport('client/streamableHttp.js');
const { UnauthorizedError } = await sdkImport('client/auth.js');
const { McpError } = await sdkImport('types.js');
const SDK_VERSION = JSON.parse(readFileSync(path.join(SDK, 'package.json'), 'utf8')).version;

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
// The users and their secrets come in a private file of their own.
Object.assign(config, JSON.parse(readFileSync(config.usersFile, 'utf8')));
const started = Date.now();
const deadline = started + config.durationMs;
const LOST_MS = config.lostMs;
const [THINK_MIN, THINK_MAX] = config.thinkMs;
/** Upper bound on one user's iterations (the deadline ends it long before). */
const MAX_ITERATIONS = 1_000_000;
/** Longest pause between a user's attempts after errors (exponential from 250 ms). */
const MAX_BACKOFF_MS = 5_000;
/** Samples of each kind of failure kept for the report. */
const SAMPLES = 20;
/** A closing client gets this long. */
const CLOSE_MS = 5_000;
/** The redirect URI OAuth users register; never contacted (the scripted browser stops at the redirect). */
const REDIRECT_URI = 'http://127.0.0.1:9/callback';

const rand = (min, max) => min + Math.floor(Math.random() * (max - min + 1));

// ---------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------

/** One set of counters per kind of request (initialize, tools/call). */
function counters() {
  return {
    sent: 0,
    answered: 0, // a result came back and it was right
    answeredWithSignIn: 0, // initialize of an OAuth user: 401, then the user signed in
    wrong: 0, // a result came back but it was not the right one (e.g. whoami named someone else)
    failed: 0, // an error came back: JSON-RPC error, HTTP error, tool error or a failed connection
    lost: 0, // nothing came back within lostMs
    failedBy: {}, // "jsonrpc -32603", "http 503", "connection ECONNREFUSED", "tool", "unauthorized"
    latencyMs: [], // of answered requests
  };
}
const stats = {
  initialize: counters(),
  toolCall: counters(),
  byTool: { echo: 0, add: 0, whoami: 0 },
  whoamiChecked: 0,
  connects: 0, // SDK clients that finished initialize
  reconnects: 0, // new clients after one was dropped
  idleBreaks: 0,
  oauthSignIns: 0, // trips to the "browser" (the first sign-in of each OAuth user included)
  oauthRefreshes: 0, // saveTokens calls beyond one per sign-in: refreshes
  oauthFinishFailed: {}, // token requests (code → tokens) that failed, by kind
  transportErrors: {}, // onerror of the transports (GET stream reconnects and the like), by kind
  samples: {}, // kind → [{ at, user, detail }]
  gaveUp: 0,
};

function sample(kind, user, detail) {
  const list = (stats.samples[kind] ??= []);
  if (list.length < SAMPLES) list.push({ atS: Math.round((Date.now() - started) / 100) / 10, user, detail });
}

const bump = (map, key) => {
  map[key] = (map[key] ?? 0) + 1;
};

class LostError extends Error {}

/** What kind of failure `err` is: a short, stable key for the counters, and whether the client is done for. */
function classify(err) {
  if (err instanceof LostError) return { key: 'lost', drop: true };
  if (err instanceof UnauthorizedError) return { key: 'unauthorized', drop: true };
  if (err instanceof StreamableHTTPError) {
    // HTTP error from the transport (err.code is the HTTP status, -1 for a bad content type).
    // 404: the session is unknown (router restarted, or the session expired): a new session.
    return { key: `http ${err.code}`, drop: err.code === 404 || err.code === 400 || err.code === -1 };
  }
  if (err instanceof McpError) {
    // A JSON-RPC error answer, or the SDK's own (-32000 connection closed, -32001 its timeout).
    return { key: `jsonrpc ${err.code}`, drop: err.code === -32000 || err.code === -32001 };
  }
  const cause = err?.cause;
  if (err instanceof TypeError && /fetch failed/.test(err.message)) {
    return { key: `connection ${cause?.code ?? cause?.name ?? 'error'}`, drop: true };
  }
  if (err?.name === 'AbortError') return { key: 'connection aborted', drop: true };
  return { key: `other ${err?.name ?? typeof err}`, drop: true };
}

/** Runs `fn(signal)`; rejects with LostError when nothing came back within LOST_MS. */
async function bounded(fn) {
  const controller = new AbortController();
  let timer;
  const lost = new Promise((_, reject) => {
    timer = setTimeout(() => {
      const e = new LostError(`no answer within ${LOST_MS} ms`);
      controller.abort(e);
      reject(e);
    }, LOST_MS);
  });
  try {
    return await Promise.race([fn(controller.signal), lost]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------
// OAuth: an in-memory OAuthClientProvider whose browser signs in over HTTP
// ---------------------------------------------------------------------------

class SoakProvider {
  constructor(user) {
    this.user = user;
    this.data = {};
    /** The code the browser brought back, for transport.finishAuth. */
    this.pendingCode = null;
    this.signIns = 0;
    this.tokenSaves = 0;
  }

  get redirectUrl() {
    return REDIRECT_URI;
  }

  get clientMetadata() {
    return {
      client_name: `soak ${this.user.name}`,
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }

  state() {
    this.data.state = crypto.randomUUID();
    return this.data.state;
  }

  clientInformation() {
    return this.data.client;
  }

  saveClientInformation(info) {
    this.data.client = info;
  }

  tokens() {
    return this.data.tokens;
  }

  saveTokens(tokens) {
    this.tokenSaves += 1;
    if (this.tokenSaves > this.signIns) stats.oauthRefreshes += 1;
    this.data.tokens = tokens;
  }

  saveCodeVerifier(verifier) {
    this.data.verifier = verifier;
  }

  codeVerifier() {
    if (!this.data.verifier) throw new Error('no code verifier saved');
    return this.data.verifier;
  }

  discoveryState() {
    return this.data.discovery;
  }

  saveDiscoveryState(state) {
    this.data.discovery = state;
  }

  async redirectToAuthorization(url) {
    this.signIns += 1;
    stats.oauthSignIns += 1;
    const browser = new HttpBrowser(url.origin);
    const { location } = await browser.authorize(url.href, { user: this.user.name, password: this.user.password });
    const back = new URL(location);
    if (back.searchParams.get('state') !== this.data.state) throw new Error(`state changed on the way back: ${location}`);
    this.pendingCode = back.searchParams.get('code');
    if (!this.pendingCode) throw new Error(`no code in ${location}`);
  }
}

// ---------------------------------------------------------------------------
// One user
// ---------------------------------------------------------------------------

const live = new Set(); // open clients, closed at the end
let firstCallsPending = config.users.length + config.oauthUsers.length;
let readyWritten = false;
function firstCallDone() {
  firstCallsPending -= 1;
  if (firstCallsPending === 0 && !readyWritten) {
    readyWritten = true;
    writeFileSync(config.ready, `${Date.now()}\n`);
    console.log(`[driver] every user made a first call after ${Math.round((Date.now() - started) / 1000)} s`);
  }
}

async function closeQuietly(conn) {
  if (!conn) return;
  live.delete(conn.client);
  let timer;
  await Promise.race([
    conn.client.close().catch(() => {}),
    new Promise((resolve) => {
      timer = setTimeout(resolve, CLOSE_MS);
    }),
  ]);
  clearTimeout(timer);
}

function newTransport(user, provider) {
  const opts = provider
    ? { authProvider: provider }
    : { requestInit: { headers: { Authorization: `Bearer ${user.token}` } } };
  const transport = new StreamableHTTPClientTransport(new URL(config.url), opts);
  return transport;
}

/** Records a failed request of `kind`; returns whether the client must be dropped. */
function failed(kind, user, err) {
  const c = stats[kind];
  const { key, drop } = classify(err);
  if (key === 'lost') {
    c.lost += 1;
    sample('lost', user.name, `${kind}: ${err.message}`);
  } else {
    c.failed += 1;
    bump(c.failedBy, key);
    sample(key, user.name, `${kind}: ${String(err?.message ?? err).slice(0, 300)}`);
  }
  return drop;
}

/**
 * Finishes an OAuth sign-in with the code the provider's browser brought
 * back (the token request), on a transport of its own as an application
 * does. False (sampled) when the token endpoint failed.
 */
async function finishSignIn(user, provider) {
  const code = provider.pendingCode;
  provider.pendingCode = null;
  try {
    await bounded(() => newTransport(user, provider).finishAuth(code));
    return true;
  } catch (err) {
    bump(stats.oauthFinishFailed, classify(err).key);
    sample('oauth finishAuth', user.name, String(err?.message ?? err).slice(0, 300));
    return false;
  }
}

/**
 * A connected SDK client for `user`, or null after a failed attempt (counted).
 * OAuth users: a 401 the SDK cannot settle by refreshing sends the
 * provider's browser; the code it brings back finishes the flow and a new
 * client connects, as an application does.
 */
async function connect(user, provider) {
  if (provider?.pendingCode && !(await finishSignIn(user, provider))) return null;
  for (let attempt = 0; attempt < 2; attempt++) {
    const client = new Client({ name: `soak-${user.name}`, version: '1.0.0' }, { capabilities: {} });
    const transport = newTransport(user, provider);
    const conn = { client, transport };
    live.add(client);
    stats.initialize.sent += 1;
    const t0 = Date.now();
    try {
      await bounded((signal) => client.connect(transport, { signal, timeout: LOST_MS * 2 }));
    } catch (err) {
      await closeQuietly(conn);
      if (provider && err instanceof UnauthorizedError && provider.pendingCode && attempt === 0) {
        // Answered: 401, and the user signed in. Not a failure of the server.
        stats.initialize.answeredWithSignIn += 1;
        if (!(await finishSignIn(user, provider))) return null;
        continue;
      }
      failed('initialize', user, err);
      return null;
    }
    stats.initialize.answered += 1;
    stats.initialize.latencyMs.push(Date.now() - t0);
    stats.connects += 1;
    // The GET stream's troubles (reconnects after a restart, 404 of a dead
    // session) reach onerror; counted, not failures of a request.
    transport.onerror = (e) => bump(stats.transportErrors, classify(e).key);
    return conn;
  }
  return null;
}

/** One tools/call, checked. Returns 'ok' | 'wrong' | 'failed' | 'drop'. */
async function callOnce(conn, user, seq) {
  const tool = ['echo', 'add', 'whoami'][seq % 3];
  let args = {};
  let expect;
  if (tool === 'echo') {
    const message = `soak ${user.name} #${seq} ${Math.random().toString(36).slice(2)}`;
    args = { message };
    expect = (text) => text === `Echo: ${message}`;
  } else if (tool === 'add') {
    const a = rand(-1_000_000, 1_000_000);
    const b = rand(-1_000_000, 1_000_000);
    args = { a, b };
    expect = (text) => text === String(a + b);
  } else {
    expect = (text) => {
      let who;
      try {
        who = JSON.parse(text);
      } catch {
        return false;
      }
      stats.whoamiChecked += 1;
      return who.user === user.name && who.user_id === user.id && who.server === 'everything';
    };
  }
  stats.toolCall.sent += 1;
  stats.byTool[tool] += 1;
  const t0 = Date.now();
  let result;
  try {
    result = await bounded((signal) =>
      conn.client.callTool({ name: tool, arguments: args }, undefined, { signal, timeout: LOST_MS * 2 }),
    );
  } catch (err) {
    return failed('toolCall', user, err) ? 'drop' : 'failed';
  }
  const text = (result.content ?? [])
    .filter((c) => c.type === 'text')
    .map((c) => c.text)
    .join('\n');
  if (result.isError) {
    stats.toolCall.failed += 1;
    bump(stats.toolCall.failedBy, 'tool');
    sample('tool', user.name, `${tool}: ${text.slice(0, 300)}`);
    return 'failed';
  }
  if (!expect(text)) {
    stats.toolCall.wrong += 1;
    sample(`wrong ${tool}`, user.name, `${JSON.stringify(args)} → ${text.slice(0, 300)}`);
    return 'wrong';
  }
  stats.toolCall.answered += 1;
  stats.toolCall.latencyMs.push(Date.now() - t0);
  return 'ok';
}

async function runUser(user, provider) {
  let conn = null;
  let everConnected = false;
  let firstOk = false;
  let backoff = 0;
  let nextBreak = Date.now() + rand(20_000, 90_000);
  for (let seq = 0; seq < MAX_ITERATIONS && Date.now() < deadline; seq++) {
    if (backoff) await sleep(Math.min(backoff, Math.max(0, deadline - Date.now())));
    if (Date.now() >= deadline) break;
    if (!conn) {
      conn = await connect(user, provider);
      if (!conn) {
        backoff = Math.min(MAX_BACKOFF_MS, backoff ? backoff * 2 : 250);
        continue;
      }
      if (everConnected) stats.reconnects += 1;
      everConnected = true;
    }
    const outcome = await callOnce(conn, user, seq);
    if (outcome === 'ok') {
      backoff = 0;
      if (!firstOk) {
        firstOk = true;
        firstCallDone();
      }
    } else {
      backoff = Math.min(MAX_BACKOFF_MS, backoff ? backoff * 2 : 250);
      if (outcome === 'drop') {
        await closeQuietly(conn);
        conn = null;
      }
    }
    if (Date.now() >= nextBreak) {
      // Longer than idle_timeout: the router stops this user's instance.
      stats.idleBreaks += 1;
      await sleep(Math.min(config.idleTimeoutMs + rand(2_000, 8_000), Math.max(0, deadline - Date.now())));
      nextBreak = Date.now() + rand(30_000, 120_000);
    } else {
      await sleep(rand(THINK_MIN, THINK_MAX));
    }
  }
  if (!firstOk) {
    stats.gaveUp += 1;
    firstCallDone();
  }
  await closeQuietly(conn);
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

const progress = setInterval(() => {
  const c = stats.toolCall;
  console.log(
    `[driver] ${Math.round((Date.now() - started) / 1000)} s: calls sent ${c.sent}, answered ${c.answered}, ` +
      `wrong ${c.wrong}, failed ${c.failed}, lost ${c.lost}; connects ${stats.connects}, ` +
      `initialize failed ${stats.initialize.failed} lost ${stats.initialize.lost}`,
  );
}, 30_000);

const oauthProviders = config.oauthUsers.map((u) => new SoakProvider(u));
await Promise.all([
  ...config.users.map((u) => runUser(u, null)),
  ...config.oauthUsers.map((u, i) => runUser(u, oauthProviders[i])),
]);
clearInterval(progress);
// Every user closed its own client; anything left (a user cut off mid-close) goes now.
await Promise.all([...live].map((client) => closeQuietly({ client })));

const percentile = (xs, p) => {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const summarize = (c) => {
  const { latencyMs, ...rest } = c;
  return {
    ...rest,
    latencyMs: {
      p50: percentile(latencyMs, 50),
      p99: percentile(latencyMs, 99),
      // A loop, not Math.max(...xs): spreading 100,000+ latencies overflowed
      // the call stack and lost the whole report (found by a 20-minute run).
      max: latencyMs.length ? latencyMs.reduce((a, b) => (b > a ? b : a)) : null,
    },
  };
};
const report = {
  sdk: `@modelcontextprotocol/sdk ${SDK_VERSION}`,
  node: process.version,
  users: config.users.length,
  oauthUsers: config.oauthUsers.length,
  durationS: Math.round((Date.now() - started) / 1000),
  lostMs: LOST_MS,
  ...stats,
  initialize: summarize(stats.initialize),
  toolCall: summarize(stats.toolCall),
  oauthClients: oauthProviders.map((p) => ({ user: p.user.name, signIns: p.signIns, tokenSaves: p.tokenSaves })),
};
writeFileSync(config.out, JSON.stringify(report, null, 2));
console.log(`[driver] done: ${JSON.stringify({ sent: report.toolCall.sent, answered: report.toolCall.answered, wrong: report.toolCall.wrong, failed: report.toolCall.failed, lost: report.toolCall.lost })}`);
// Lingering sockets (undici keep-alive) must not hold the process.
process.exit(0);
