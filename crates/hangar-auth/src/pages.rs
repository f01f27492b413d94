//! The server-rendered pages: sign-in, consent, account and errors. Plain
//! HTML forms that work without JavaScript, labelled fields, one column,
//! and headers that keep them out of frames and caches.

use axum::response::{Html, IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};

use crate::web::{esc, no_store};

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1b1f24}\
main{max-width:34rem;margin:3rem auto;padding:2rem;background:#fff;border:1px solid #d0d7de;border-radius:8px}\
h1{font-size:1.4rem;margin-top:0}label{display:block;margin:.8rem 0 .2rem;font-weight:600}\
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;font:inherit;border:1px solid #8c959f;border-radius:4px}\
button{font:inherit;padding:.5rem 1rem;margin:1rem .5rem 0 0;border-radius:4px;border:1px solid #1f6feb;background:#1f6feb;color:#fff;cursor:pointer}\
button.secondary{background:#fff;color:#1f6feb}.error{color:#a40e26;background:#ffebe9;padding:.5rem;border-radius:4px}\
.note{color:#57606a;font-size:.9rem}table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3rem;border-bottom:1px solid #d0d7de;vertical-align:top}\
ul.scopes li{margin:.2rem 0}code{overflow-wrap:anywhere}a.provider{display:block;margin:.5rem 0}";

/// A complete page with the security headers every page carries.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Hangar</title><style>{STYLE}</style></head>\
         <body><main><h1>{}</h1>\n{body}\n</main></body></html>\n",
        esc(title),
        esc(title)
    );
    let mut resp = (status, Html(html)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The authorization request's query must not leak to other sites.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    no_store(h);
    resp
}

pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    page(
        status,
        title,
        &format!("<p class=\"error\" role=\"alert\">{}</p>", esc(message)),
    )
}

fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        esc(name),
        esc(value)
    )
}

/// What the sign-in page shows.
pub struct SignIn<'a> {
    pub csrf: &'a str,
    pub next: &'a str,
    pub error: Option<&'a str>,
    pub user_name: &'a str,
    pub passwords: bool,
    /// (url, label) per upstream provider.
    pub providers: Vec<(String, String)>,
}

pub fn sign_in(status: StatusCode, s: &SignIn<'_>) -> Response {
    let mut body = String::new();
    if let Some(e) = s.error {
        body.push_str(&format!(
            "<p class=\"error\" role=\"alert\" id=\"error\">{}</p>",
            esc(e)
        ));
    }
    if s.passwords {
        body.push_str(&format!(
            "<form method=\"post\" action=\"/signin\">{}{}\
             <label for=\"username\">User name</label>\
             <input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" required value=\"{}\" autofocus>\
             <label for=\"password\">Password</label>\
             <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
             <button type=\"submit\">Sign in</button></form>",
            hidden("csrf", s.csrf),
            hidden("next", s.next),
            esc(s.user_name)
        ));
    }
    if !s.providers.is_empty() {
        body.push_str("<p>Or sign in with:</p>");
        for (url, label) in &s.providers {
            body.push_str(&format!(
                "<a class=\"provider\" href=\"{}\">{}</a>",
                esc(url),
                esc(label)
            ));
        }
    }
    page(status, "Sign in to Hangar", &body)
}

/// What the consent page shows.
pub struct Consent<'a> {
    pub user_name: &'a str,
    pub client_name: &'a str,
    /// Where the name comes from, e.g. "registered by itself: unverified".
    pub client_note: &'a str,
    pub server: &'a str,
    pub resource: &'a str,
    pub scopes: &'a [String],
    pub redirect_host: &'a str,
    pub csrf: &'a str,
    /// The authorization request, carried to the decision.
    pub params: &'a [(String, String)],
}

pub fn consent(c: &Consent<'_>) -> Response {
    let scopes: String = c
        .scopes
        .iter()
        .map(|s| {
            format!(
                "<li><code>{}</code> — {}</li>",
                esc(s),
                esc(describe_scope(s))
            )
        })
        .collect();
    let params: String = c.params.iter().map(|(k, v)| hidden(k, v)).collect();
    let body = format!(
        "<p>Signed in as <strong>{user}</strong>.</p>\
         <p><strong>{client}</strong> <span class=\"note\">({note})</span> wants to use the MCP server \
         <strong>{server}</strong> (<code>{resource}</code>) as you.</p>\
         <p>It asks for:</p><ul class=\"scopes\">{scopes}</ul>\
         <p class=\"note\">After you decide, you return to <code>{host}</code>.</p>\
         <form method=\"post\" action=\"/oauth/authorize\">{csrf}{params}\
         <button type=\"submit\" name=\"decision\" value=\"approve\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button></form>\
         <p class=\"note\">You can revoke this later on your <a href=\"/account\">account page</a>.</p>",
        user = esc(c.user_name),
        client = esc(c.client_name),
        note = esc(c.client_note),
        server = esc(c.server),
        resource = esc(c.resource),
        host = esc(c.redirect_host),
        csrf = hidden("csrf", c.csrf),
    );
    page(StatusCode::OK, "Allow access?", &body)
}

fn describe_scope(scope: &str) -> &'static str {
    match scope {
        "mcp" => "use this server's tools, resources and prompts",
        "openid" => "know who you are",
        _ => "extra permission defined by this server",
    }
}

/// One row of the account page's connected clients.
pub struct GrantRow {
    pub id: String,
    pub client: String,
    pub resource: String,
    pub scope: String,
    pub created: String,
    pub last_used: String,
}

/// One row of the account page's API tokens.
pub struct TokenRow {
    pub id: String,
    pub created: String,
    pub expires: String,
    pub last_used: String,
}

/// A one-button form that revokes `/account/{kind}/{id}`.
fn revoke_form(kind: &str, id: &str, what: &str, csrf: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/account/{kind}/{}/revoke\">{}\
         <button type=\"submit\" class=\"secondary\" aria-label=\"Revoke {}\">Revoke</button></form>",
        esc(id),
        hidden("csrf", csrf),
        esc(what)
    )
}

pub fn account(
    user_name: &str,
    csrf: &str,
    grants: &[GrantRow],
    tokens: &[TokenRow],
    notice: Option<&str>,
) -> Response {
    let mut body = format!("<p>Signed in as <strong>{}</strong>.</p>", esc(user_name));
    if let Some(n) = notice {
        body.push_str(&format!("<p role=\"status\">{}</p>", esc(n)));
    }
    body.push_str("<h2>Connected clients</h2>");
    if grants.is_empty() {
        body.push_str("<p>No client is connected.</p>");
    } else {
        body.push_str(
            "<table><thead><tr><th scope=\"col\">Client</th><th scope=\"col\">Server</th>\
             <th scope=\"col\">Since</th><th scope=\"col\"><span class=\"note\">Action</span></th></tr></thead><tbody>",
        );
        for g in grants {
            body.push_str(&format!(
                "<tr><td>{client}<br><span class=\"note\">scopes: {scope}; tokens last renewed {last}</span></td>\
                 <td><code>{resource}</code></td><td>{created}</td><td>{form}</td></tr>",
                client = esc(&g.client),
                scope = esc(&g.scope),
                last = esc(&g.last_used),
                resource = esc(&g.resource),
                created = esc(&g.created),
                form = revoke_form("grants", &g.id, &g.client, csrf),
            ));
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("<h2>API tokens</h2>");
    if tokens.is_empty() {
        body.push_str("<p>No API token. An administrator creates them with <code>hangar token create</code>.</p>");
    } else {
        body.push_str(
            "<table><thead><tr><th scope=\"col\">Token</th><th scope=\"col\">Created</th>\
             <th scope=\"col\">Expires</th><th scope=\"col\"><span class=\"note\">Action</span></th></tr></thead><tbody>",
        );
        for t in tokens {
            body.push_str(&format!(
                "<tr><td><code>{id}</code><br><span class=\"note\">last used {last}</span></td><td>{created}</td><td>{expires}</td><td>{form}</td></tr>",
                id = esc(&t.id),
                last = esc(&t.last_used),
                created = esc(&t.created),
                expires = esc(&t.expires),
                form = revoke_form("tokens", &t.id, &format!("token {}", t.id), csrf),
            ));
        }
        body.push_str("</tbody></table>");
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"/signout\">{}<button type=\"submit\" class=\"secondary\">Sign out</button></form>",
        hidden("csrf", csrf)
    ));
    page(StatusCode::OK, "Your Hangar account", &body)
}
