// A scripted browser for Hangar's sign-in and consent pages, over plain HTTP
// (Node's fetch): a cookie jar, no automatic redirects (every hop is
// checked), the router's origin sent as `Origin` on form posts as a browser
// does. The Node twin of crates/hangar/tests/common/oauth.rs.
//
// No dependencies beyond Node itself: tests/e2e/fake-browser.mjs (the
// "browser" mcp-remote opens) imports it too. Not a test file: its name must
// not end in `.test.mjs`. Every request is bounded in time.

const REQUEST_MS = 15_000;

/** The `<input type="hidden">` fields of a page, unescaped, in order. */
export function hiddenFields(html) {
  const out = [];
  const re = /<input type="hidden" name="([^"]*)" value="([^"]*)">/g;
  for (const m of html.matchAll(re)) out.push([unescape(m[1]), unescape(m[2])]);
  return out;
}

function unescape(s) {
  return s
    .replaceAll('&quot;', '"')
    .replaceAll('&#39;', "'")
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&amp;', '&');
}

/** A browser: a cookie jar and no automatic redirects. */
export class HttpBrowser {
  constructor(origin) {
    this.origin = new URL(origin).origin;
    this.jar = new Map();
    /** Every request made, as "METHOD URL → STATUS", for failure messages. */
    this.trail = [];
  }

  #absolute(url) {
    return new URL(url, this.origin).href;
  }

  #cookieHeader() {
    return [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  #keepCookies(resp) {
    for (const line of resp.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq < 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => /^\s*max-age=0\s*$/i.test(a)) || value === '';
      if (expired) this.jar.delete(name);
      else this.jar.set(name, value);
    }
  }

  async #send(method, url, { body, headers = {} } = {}) {
    const href = this.#absolute(url);
    const sameOrigin = new URL(href).origin === this.origin;
    const resp = await fetch(href, {
      method,
      redirect: 'manual',
      headers: { ...(sameOrigin && this.jar.size ? { cookie: this.#cookieHeader() } : {}), ...headers },
      body,
      signal: AbortSignal.timeout(REQUEST_MS),
    });
    if (sameOrigin) this.#keepCookies(resp);
    const page = {
      status: resp.status,
      location: resp.headers.get('location'),
      headers: resp.headers,
      body: await resp.text(),
      url: href,
    };
    this.trail.push(`${method} ${href} → ${page.status}${page.location ? ` (Location: ${page.location})` : ''}`);
    return page;
  }

  get(url) {
    return this.#send('GET', url);
  }

  /** POSTs `fields` ([[name, value]…]) as a form, with `Origin`. */
  postForm(url, fields) {
    return this.#send('POST', url, {
      body: new URLSearchParams(fields).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: this.origin },
    });
  }

  fail(what, page) {
    return new Error(`${what}: HTTP ${page.status}\n${this.trail.join('\n')}\n${page.body.slice(0, 2000)}`);
  }

  /** Signs in on the sign-in page `signinUrl` (a redirect target). */
  async signIn(signinUrl, user, password) {
    const page = await this.get(signinUrl);
    if (page.status !== 200 || !page.body.includes('name="password"')) throw this.fail('the sign-in page', page);
    const fields = hiddenFields(page.body);
    if (!fields.some(([k]) => k === 'csrf')) throw this.fail('the sign-in page has no csrf field', page);
    fields.push(['username', user], ['password', password]);
    const signed = await this.postForm('/signin', fields);
    if (signed.status !== 303 || !signed.location) throw this.fail('signing in', signed);
    return { signinPage: page, signed };
  }

  /**
   * Runs the authorization request `authUrl` through sign-in (when needed)
   * and the consent page, answering `decision` (approve or deny). Resolves
   * with { location (where the router sends the browser back: the client's
   * redirect URI with code, state, iss), consent (the consent page's HTML),
   * signedIn (whether the sign-in page was shown) }.
   */
  async authorize(authUrl, { user, password, decision = 'approve' }) {
    let page = await this.get(authUrl);
    let signedIn = false;
    if (page.status === 303 && page.location?.startsWith('/signin')) {
      const { signed } = await this.signIn(page.location, user, password);
      signedIn = true;
      page = await this.get(signed.location);
    }
    if (page.status !== 200 || !page.body.includes('Allow access?')) throw this.fail('the consent page', page);
    const consent = page.body;
    const fields = hiddenFields(consent);
    fields.push(['decision', decision]);
    const decided = await this.postForm('/oauth/authorize', fields);
    if (decided.status !== 303 || !decided.location) throw this.fail('the consent decision', decided);
    return { location: decided.location, consent, signedIn };
  }
}
