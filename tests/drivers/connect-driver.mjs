#!/usr/bin/env node
// The conformance client for `hangar connect`: the official TypeScript SDK
// client over `StdioClientTransport`, spawning `target/debug/hangar connect
// URL` (the shim under test). `conformance client --command "node
// tests/drivers/connect-driver.mjs"` appends the scenario's server URL and
// sets MCP_CONFORMANCE_SCENARIO, MCP_CONFORMANCE_CONTEXT (JSON) and
// MCP_CONFORMANCE_PROTOCOL_VERSION.
//
// What it does, for every scenario: connect, list the tools, call each
// tool with arguments made from its input schema, answer elicitation by
// accepting with the schema's defaults (applyDefaults). At the 2026-07-28
// wire there is no initialize: it sends modern tools/list and tools/call
// (protocol version and capabilities in _meta) through the same transport.
// Sign-in happens inside the shim: $BROWSER is tests/drivers/browser.mjs,
// which follows the authorization redirects to the shim's callback.
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
const version = process.env.MCP_CONFORMANCE_PROTOCOL_VERSION ?? '2025-11-25';
const modern = version >= '2026-07-28';

const hangar = process.env.HANGAR_BIN ?? path.join(ROOT, 'target', 'debug', 'hangar');
const args = ['connect', serverUrl, '--transport', 'http-only'];
if (context.client_id) {
  // Pre-registered client (auth/pre-registration).
  const info = { client_id: context.client_id };
  if (context.client_secret) info.client_secret = context.client_secret;
  args.push('--static-oauth-client-info', JSON.stringify(info));
}
if (scenario === 'auth/basic-cimd') {
  // The document itself is never fetched (the test AS only checks the
  // client_id); only this scenario gets it, so no other run resolves the
  // non-loopback name.
  args.push('--client-metadata-url', 'https://conformance-test.local/client-metadata.json');
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'hangar-connect-driver-'));
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
  console.error('driver: timed out');
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

async function legacy() {
  const client = new Client(
    { name: 'hangar-connect-driver', version: '1.0.0' },
    { capabilities: { elicitation: { form: { applyDefaults: true } } } },
  );
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'accept', content: {} }));
  await client.connect(transport);
  const { tools } = await client.listTools();
  for (const tool of tools) {
    const res = await client.callTool({ name: tool.name, arguments: argsFor(tool.inputSchema) });
    if (res.isError) throw new Error(`${tool.name} failed: ${JSON.stringify(res.content)}`);
  }
}

async function modernFlow() {
  const pending = new Map();
  let nextId = 1;
  transport.onmessage = (m) => {
    if (m.id !== undefined && pending.has(m.id)) {
      pending.get(m.id)(m);
      pending.delete(m.id);
    }
  };
  const meta = {
    'io.modelcontextprotocol/protocolVersion': version,
    'io.modelcontextprotocol/clientCapabilities': {},
    'io.modelcontextprotocol/clientInfo': { name: 'hangar-connect-driver', version: '1.0.0' },
  };
  const request = (method, params = {}) => new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, (m) => (m.error ? reject(new Error(`${method}: ${m.error.message}`)) : resolve(m.result)));
    transport.send({ jsonrpc: '2.0', id, method, params: { ...params, _meta: meta } }).catch(reject);
  });
  await transport.start();
  const { tools } = await request('tools/list');
  for (const tool of tools) {
    const res = await request('tools/call', { name: tool.name, arguments: argsFor(tool.inputSchema) });
    if (res.isError) throw new Error(`${tool.name} failed`);
  }
}

try {
  await (modern ? modernFlow() : legacy());
  await finish(0);
} catch (e) {
  console.error(`driver: ${e.message}`);
  await finish(1);
}
