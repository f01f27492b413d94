#!/usr/bin/env node
// A legacy stdio host for `hangar connect`, for `conformance client`: the
// official TypeScript SDK 1.32 `Client` over `StdioClientTransport`,
// spawning `target/debug/hangar connect URL`, and nothing else — it acts as
// Claude Desktop does, whatever protocol revision the scenario's server
// speaks: initialize, list the tools, call each one (with the arguments the
// scenario suggests, else ones made from its input schema), accept elicitations (the SDK fills in the schema's
// defaults). It never sends a modern request itself: against a 2026-07-28
// server the shim's era bridge does that (tests/drivers/connect-driver.mjs
// is the modern host).
//
// `conformance client --command "node tests/drivers/connect-legacy-driver.mjs"`
// appends the scenario's server URL and sets MCP_CONFORMANCE_SCENARIO and
// MCP_CONFORMANCE_CONTEXT (JSON). What a user would put in the host's
// config comes from them: a pre-registered OAuth client, and the client
// metadata document URL for auth/basic-cimd. Sign-in happens inside the
// shim: $BROWSER is tests/drivers/browser.mjs, which follows the
// authorization redirects to the shim's callback.
//
// Exits 0 when every call succeeded, 1 otherwise; bounded: 20 s in all.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const SDK = path.join(ROOT, 'tests', 'peers', 'node_modules', '@modelcontextprotocol', 'sdk', 'dist', 'esm');
const sdk = (rel) => import(pathToFileURL(path.join(SDK, rel)).href);
const { Client } = await sdk('client/index.js');
const { StdioClientTransport } = await sdk('client/stdio.js');
const { ElicitRequestSchema } = await sdk('types.js');

const serverUrl = process.argv[process.argv.length - 1];
const scenario = process.env.MCP_CONFORMANCE_SCENARIO ?? '';
const context = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT ?? '{}');

// What a user would type for a tool, when the scenario suggests it.
const suggested = new Map((context.toolCalls ?? []).map((c) => [c.name, c.arguments]));

const hangar = process.env.HANGAR_BIN ?? path.join(ROOT, 'target', 'debug', 'hangar');
const args = ['connect', serverUrl];
if (context.client_id) {
  const info = { client_id: context.client_id };
  if (context.client_secret) info.client_secret = context.client_secret;
  args.push('--static-oauth-client-info', JSON.stringify(info));
}
if (scenario === 'auth/basic-cimd') {
  // Never fetched (the test AS only checks the client_id).
  args.push('--client-metadata-url', 'https://conformance-test.local/client-metadata.json');
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'hangar-connect-legacy-driver-'));
const transport = new StdioClientTransport({
  command: hangar,
  args,
  env: {
    ...process.env,
    BROWSER: path.join(HERE, 'browser.mjs'),
    HANGAR_CONNECT_DIR: dir,
    HANGAR_CONNECT_STORE: 'file',
    HANGAR_LOG: process.env.HANGAR_LOG ?? 'info',
  },
  stderr: 'inherit',
});

function argsFor(schema) {
  const out = {};
  for (const [name, prop] of Object.entries(schema?.properties ?? {})) {
    const t = Array.isArray(prop.type) ? prop.type[0] : prop.type;
    out[name] = t === 'number' || t === 'integer' ? 1 : t === 'boolean' ? true : t === 'string' ? 'x' : t === 'array' ? [] : t === 'object' ? {} : null;
  }
  return out;
}

const timer = setTimeout(() => {
  console.error('legacy driver: timed out');
  finish(1);
}, 20_000);

let finishing = false;
async function finish(code) {
  if (finishing) return;
  finishing = true;
  clearTimeout(timer);
  await Promise.race([transport.close().catch(() => {}), new Promise((r) => setTimeout(r, 2000))]);
  rmSync(dir, { recursive: true, force: true });
  process.exit(code);
}

try {
  const client = new Client(
    { name: 'hangar-connect-legacy-driver', version: '1.0.0' },
    { capabilities: { elicitation: { form: { applyDefaults: true } } } },
  );
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'accept', content: {} }));
  await client.connect(transport);
  const { tools } = await client.listTools();
  for (const tool of tools) {
    const res = await client.callTool({ name: tool.name, arguments: suggested.get(tool.name) ?? argsFor(tool.inputSchema) });
    if (res.isError) throw new Error(`${tool.name} failed: ${JSON.stringify(res.content)}`);
  }
  await finish(0);
} catch (e) {
  console.error(`legacy driver: ${e.message}`);
  await finish(1);
}
