//! `hangar connect URL [--header "K: V"]… [--transport …] [--protocol …] [--allow-http] [OAuth flags…]`
//!
//! The stdio shim for MCP clients that speak only stdio, to a server that
//! speaks Streamable HTTP or the legacy HTTP+SSE transport (`--transport`,
//! default http-first: falls back to SSE on a 4xx). A host that speaks the
//! legacy protocol is bridged to a server that speaks only 2026-07-28
//! (`--protocol`, default auto: `server/discover` decides). Flag names follow
//! mcp-remote so it is a drop-in replacement. Without an `Authorization`
//! header, a 401 starts OAuth sign-in in the browser (`hangar_connect::auth`);
//! tokens are kept in the OS keychain or under `$HANGAR_CONNECT_DIR` /
//! `~/.config/hangar/connect` (`HANGAR_CONNECT_STORE=file` forces files).

use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use hangar_connect::auth::{OAuth, OAuthConfig, StaticToken};
use hangar_connect::browser::Browser;
use hangar_connect::oauth::ClientInfo;
use hangar_connect::options::{parse_header, server_url};
use hangar_connect::{ClientConfig, Url};
use hangar_connect::{Options, ProtocolMode, Shim, TransportMode};
use http::{HeaderName, HeaderValue};

#[derive(Args)]
pub struct ConnectArgs {
    /// The remote MCP endpoint, e.g. https://mcp.example.com/mcp/everything.
    url: String,
    /// The OAuth callback port (mcp-remote's positional form of --callback-port).
    #[arg(value_name = "CALLBACK_PORT")]
    port: Option<u16>,
    /// A header sent on every request, "Name: value"; `${VAR}` expands from
    /// the environment (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Which transport to try: Streamable HTTP, the legacy HTTP+SSE, or one then the other.
    #[arg(long, value_enum, default_value_t = Transport::HttpFirst)]
    transport: Transport,
    /// Which protocol era to speak to the server for a host that sends
    /// `initialize`: auto (ask with server/discover; bridge a server that
    /// speaks only 2026-07-28), legacy (forward as it is), modern (always bridge).
    #[arg(long, value_enum, default_value_t = Protocol::Auto)]
    protocol: Protocol,
    /// Allow plain http:// to hosts that are not loopback.
    #[arg(long)]
    allow_http: bool,
    /// Use HTTP_PROXY/HTTPS_PROXY/NO_PROXY from the environment.
    #[arg(long)]
    enable_proxy: bool,
    /// OAuth: the port of the loopback redirect (default: derived from the URL).
    #[arg(long, value_name = "PORT")]
    callback_port: Option<u16>,
    /// OAuth: a pre-registered client {"client_id", "client_secret"?} (JSON, or @file).
    #[arg(long, value_name = "JSON|@FILE")]
    static_oauth_client_info: Option<String>,
    /// OAuth: client metadata fields for registration (JSON, or @file).
    #[arg(long, value_name = "JSON|@FILE")]
    static_oauth_client_metadata: Option<String>,
    /// OAuth: our client ID metadata document (CIMD) URL, used when the server supports it.
    #[arg(long, value_name = "URL")]
    client_metadata_url: Option<String>,
    /// OAuth: the resource (RFC 8707) to ask a token for (default: from the server's metadata).
    #[arg(long, value_name = "URI")]
    resource: Option<String>,
    /// OAuth: print the sign-in URL on stderr instead of opening a browser.
    #[arg(long)]
    no_browser: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    HttpFirst,
    SseFirst,
    HttpOnly,
    SseOnly,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    Auto,
    Legacy,
    Modern,
}

/// Reads a `JSON|@file` option and checks that it is JSON.
fn json_option(flag: &str, value: &str) -> anyhow::Result<serde_json::Value> {
    let text = match value.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("{flag}: cannot read {path}"))?
        }
        None => value.to_owned(),
    };
    serde_json::from_str(&text).with_context(|| format!("{flag}: not valid JSON"))
}

pub async fn run(args: ConnectArgs) -> anyhow::Result<()> {
    let url = server_url(&args.url, args.allow_http)?;
    let transport = match args.transport {
        Transport::HttpFirst => TransportMode::HttpFirst,
        Transport::SseFirst => TransportMode::SseFirst,
        Transport::HttpOnly => TransportMode::HttpOnly,
        Transport::SseOnly => TransportMode::SseOnly,
    };
    let protocol = match args.protocol {
        Protocol::Auto => ProtocolMode::Auto,
        Protocol::Legacy => ProtocolMode::Legacy,
        Protocol::Modern => ProtocolMode::Modern,
    };
    let static_client = match &args.static_oauth_client_info {
        Some(v) => {
            let info: ClientInfo =
                serde_json::from_value(json_option("--static-oauth-client-info", v)?)
                    .context("--static-oauth-client-info: needs at least \"client_id\"")?;
            Some(info)
        }
        None => None,
    };
    let client_metadata = match &args.static_oauth_client_metadata {
        Some(v) => {
            let m = json_option("--static-oauth-client-metadata", v)?;
            if !m.is_object() {
                bail!("--static-oauth-client-metadata must be a JSON object");
            }
            Some(m)
        }
        None => None,
    };
    if let Some(v) = &args.client_metadata_url {
        let cimd = Url::parse(v).context("--client-metadata-url")?;
        if cimd.scheme() != "https" || cimd.path() == "/" {
            bail!("--client-metadata-url must be an https:// URL with a path");
        }
    }
    if let Some(v) = &args.resource {
        Url::parse(v).context("--resource must be an absolute URI")?;
    }

    let mut config = ClientConfig::new(url);
    config.proxy_from_env = args.enable_proxy;
    for line in &args.headers {
        let (name, value) = parse_header(line, |v| std::env::var(v).ok())?;
        let header = HeaderName::from_bytes(name.as_bytes())
            .with_context(|| format!("--header {name}: not a valid header name"))?;
        let mut value = HeaderValue::from_str(&value)
            .with_context(|| format!("--header {name}: not a valid header value"))?;
        if header == http::header::AUTHORIZATION || header == http::header::COOKIE {
            value.set_sensitive(true);
        }
        config.headers.insert(header, value);
    }
    let authorizer: Arc<dyn hangar_connect::Authorizer> =
        if config.headers.contains_key(http::header::AUTHORIZATION) {
            // A token given with --header: no OAuth.
            Arc::new(StaticToken)
        } else {
            let env = |k: &str| std::env::var(k).ok();
            let dir = hangar_connect::store::default_dir(env)?;
            let mut oauth = OAuthConfig::new(config.url.clone(), dir);
            oauth.resource = args.resource.clone();
            oauth.static_client = static_client;
            oauth.client_metadata = client_metadata;
            oauth.client_metadata_url = args.client_metadata_url.clone();
            oauth.callback_port = args.callback_port.or(args.port);
            oauth.browser = Browser::from_env(args.no_browser, env("BROWSER"));
            oauth.store = env("HANGAR_CONNECT_STORE");
            oauth.proxy_from_env = args.enable_proxy;
            Arc::new(OAuth::new(oauth)?)
        };
    tracing::debug!("connecting to {}", config.url);
    let options = Options {
        transport,
        protocol,
        ..Options::default()
    };
    let shim = Shim::new(config, authorizer, options)?;
    shim.run(
        hangar_connect::stdio::stdin(),
        hangar_connect::stdio::stdout(),
        crate::wrap::shutdown_signal(),
    )
    .await;
    Ok(())
}
