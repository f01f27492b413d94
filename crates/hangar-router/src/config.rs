//! `hangar serve`'s configuration: a TOML file, or the embedded default (the
//! `hangar-everything` server, SQLite under `./hangar-data`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hangar_machines::{Network, SandboxMode};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Tenancy {
    /// Each user gets their own instance.
    #[default]
    PerUser,
    /// One instance serves everyone and receives each caller's identity.
    Shared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// A valid token is required.
    #[default]
    Authenticated,
    /// Anyone may call it (public tools); callers are anonymous.
    Public,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    command: Vec<String>,
    #[serde(default)]
    tenancy: Tenancy,
    #[serde(default)]
    access: Access,
    #[serde(default)]
    idle_timeout: Option<String>,
    #[serde(default)]
    network: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Names of the router's environment variables handed on to instances.
    #[serde(default)]
    env_passthrough: Vec<String>,
    /// Tools that need a scope beyond `mcp` (step-up authorization).
    #[serde(default)]
    tool_scopes: BTreeMap<String, String>,
}

/// The `[oauth]` section: the authorization server's settings.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOAuth {
    access_token_ttl: Option<String>,
    refresh_token_ttl: Option<String>,
    session_ttl: Option<String>,
    dynamic_registration: Option<bool>,
    client_metadata_documents: Option<bool>,
    /// Fetch client metadata documents from loopback addresses (development).
    allow_loopback_client_metadata: Option<bool>,
    password_sign_in: Option<bool>,
    oidc_match_email: Option<bool>,
    oidc_create_users: Option<bool>,
    #[serde(default)]
    oidc: Vec<hangar_auth::upstream::OidcProviderConfig>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<SocketAddr>,
    public_url: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    default_server: Option<String>,
    max_instances: Option<usize>,
    sandbox: Option<String>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    servers: BTreeMap<String, RawServer>,
    #[serde(default)]
    oauth: RawOAuth,
}

/// One catalog entry.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub name: String,
    pub command: Vec<String>,
    pub tenancy: Tenancy,
    pub access: Access,
    pub idle_timeout: Duration,
    pub network: Network,
    /// Variables the server's config declares (`env`), set in every instance.
    pub env: Vec<(String, String)>,
    /// The router's own variables an operator hands on deliberately
    /// (`env_passthrough`); nothing else of the router's environment is.
    pub env_passthrough: Vec<String>,
    /// Tool name → the scope an OAuth token needs to call it.
    pub tool_scopes: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// How clients reach the router (for metadata URLs and audiences).
    pub public_url: String,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    /// Served at `/mcp`.
    pub default_server: String,
    pub max_instances: usize,
    pub sandbox: SandboxMode,
    pub allowed_origins: Vec<String>,
    pub servers: BTreeMap<String, ServerConfig>,
    /// The authorization server's settings.
    pub oauth: hangar_auth::AuthSettings,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_IDLE: Duration = Duration::from_secs(10 * 60);

impl Config {
    /// Reads `path`, or builds the embedded default when there is none.
    /// `listen` and `data_dir` override the file.
    pub fn load(
        path: Option<&Path>,
        listen: Option<SocketAddr>,
        data_dir: Option<PathBuf>,
    ) -> Result<Config, ConfigError> {
        let (raw, origin) = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                let raw: RawConfig = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                (raw, path.display().to_string())
            }
            None => (RawConfig::default(), "the default configuration".to_owned()),
        };
        Config::from_raw(raw, &origin, listen, data_dir)
    }

    /// Parses configuration text (tests, and `load`).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: "config".into(),
            message: e.to_string(),
        })?;
        Config::from_raw(raw, "config", None, None)
    }

    fn from_raw(
        raw: RawConfig,
        origin: &str,
        listen: Option<SocketAddr>,
        data_dir: Option<PathBuf>,
    ) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: origin.to_owned(),
            message,
        };
        let listen = listen
            .or(raw.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default address"));
        let public_url = raw
            .public_url
            .unwrap_or_else(|| format!("http://{listen}"))
            .trim_end_matches('/')
            .to_owned();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(invalid(format!(
                "public_url must be an http(s) URL, not {public_url:?}"
            )));
        }
        let data_dir = data_dir
            .or(raw.data_dir)
            .unwrap_or_else(|| PathBuf::from("./hangar-data"));
        // Every path handed to the sandbox (bind mounts, the hidden data dir)
        // and to instances must be absolute: bwrap resolves a relative one
        // inside the new root, where it does not exist.
        let data_dir = std::path::absolute(&data_dir)
            .map_err(|e| invalid(format!("data_dir {}: {e}", data_dir.display())))?;
        let sandbox = match raw.sandbox.as_deref() {
            // Unset: instances run sandboxed or not at all (the message that
            // refuses them says how to install bubblewrap or opt out).
            None | Some("required") => SandboxMode::Required,
            Some("auto") => SandboxMode::Auto,
            Some("off") => SandboxMode::Off,
            Some(other) => {
                return Err(invalid(format!(
                    "sandbox must be \"auto\", \"required\" or \"off\", not {other:?}"
                )))
            }
        };
        let mut servers = BTreeMap::new();
        let raw_servers = if raw.servers.is_empty() {
            default_catalog()
        } else {
            raw.servers
        };
        for (name, s) in raw_servers {
            if !valid_name(&name) {
                return Err(invalid(format!(
                    "server name {name:?}: use letters, digits, '-' and '_'"
                )));
            }
            if s.command.is_empty() {
                return Err(invalid(format!("servers.{name}.command is empty")));
            }
            let idle_timeout = match &s.idle_timeout {
                Some(t) => humantime::parse_duration(t)
                    .map_err(|e| invalid(format!("servers.{name}.idle_timeout: {e}")))?,
                None => DEFAULT_IDLE,
            };
            let network = match s.network.as_deref() {
                None | Some("host") => Network::Host,
                Some("none") => Network::None,
                Some(other) => {
                    return Err(invalid(format!(
                        "servers.{name}.network must be \"host\" or \"none\", not {other:?}"
                    )))
                }
            };
            for key in s.env.keys() {
                if !valid_env_name(key) {
                    return Err(invalid(format!(
                        "servers.{name}.env: {key:?} is not a valid variable name"
                    )));
                }
            }
            for key in &s.env_passthrough {
                if !valid_env_name(key) {
                    return Err(invalid(format!(
                        "servers.{name}.env_passthrough: {key:?} is not a valid variable name"
                    )));
                }
                if key.starts_with("HANGAR_") {
                    return Err(invalid(format!(
                        "servers.{name}.env_passthrough: {key:?}: HANGAR_* variables are Hangar's own"
                    )));
                }
            }
            servers.insert(
                name.clone(),
                ServerConfig {
                    command: resolve_command(s.command),
                    name,
                    tenancy: s.tenancy,
                    access: s.access,
                    idle_timeout,
                    network,
                    env: s.env.into_iter().collect(),
                    env_passthrough: s.env_passthrough,
                    tool_scopes: s.tool_scopes,
                },
            );
        }
        let default_server = match raw.default_server {
            Some(d) if servers.contains_key(&d) => d,
            Some(d) => return Err(invalid(format!("default_server {d:?} is not in [servers]"))),
            None => servers.keys().next().cloned().unwrap_or_default(),
        };
        let oauth =
            oauth_settings(raw.oauth, &public_url, &servers, &default_server).map_err(invalid)?;
        Ok(Config {
            oauth,
            listen,
            public_url,
            data_dir,
            database_url: raw.database_url,
            default_server,
            max_instances: raw.max_instances.unwrap_or(1000),
            sandbox,
            allowed_origins: raw.allowed_origins,
            servers,
        })
    }

    /// Where the identity signing key lives.
    pub fn identity_key_path(&self) -> PathBuf {
        self.data_dir.join("identity.key")
    }

    /// An instance's own persistent dir.
    pub fn instance_dir(&self, instance_id: &str) -> PathBuf {
        self.data_dir.join("instances").join(instance_id)
    }
}

/// The URLs that name a server as a protected resource: `/mcp/{name}`,
/// and `/mcp` for the default server.
pub fn resource_urls(public_url: &str, server: &str, default_server: &str) -> Vec<String> {
    let mut urls = vec![format!("{public_url}/mcp/{server}")];
    if server == default_server {
        urls.push(format!("{public_url}/mcp"));
    }
    urls
}

fn oauth_settings(
    raw: RawOAuth,
    public_url: &str,
    servers: &BTreeMap<String, ServerConfig>,
    default_server: &str,
) -> Result<hangar_auth::AuthSettings, String> {
    let mut resources: Vec<hangar_auth::Resource> = servers
        .keys()
        .map(|name| hangar_auth::Resource {
            server: name.clone(),
            urls: resource_urls(public_url, name, default_server),
        })
        .collect();
    // The default server first: it is the audience when a client names none.
    resources.sort_by_key(|r| r.server != default_server);
    let mut s = hangar_auth::AuthSettings::new(public_url, resources);
    let duration = |field: &str, v: &Option<String>, into: &mut Duration| -> Result<(), String> {
        if let Some(v) = v {
            *into = humantime::parse_duration(v).map_err(|e| format!("oauth.{field}: {e}"))?;
        }
        Ok(())
    };
    duration(
        "access_token_ttl",
        &raw.access_token_ttl,
        &mut s.access_token_ttl,
    )?;
    duration(
        "refresh_token_ttl",
        &raw.refresh_token_ttl,
        &mut s.refresh_token_ttl,
    )?;
    duration("session_ttl", &raw.session_ttl, &mut s.session_ttl)?;
    if let Some(v) = raw.dynamic_registration {
        s.dynamic_registration = v;
    }
    if let Some(v) = raw.client_metadata_documents {
        s.client_metadata_documents = v;
    }
    if let Some(v) = raw.allow_loopback_client_metadata {
        s.net.allow_loopback = v;
    }
    if let Some(v) = raw.password_sign_in {
        s.password_sign_in = v;
    }
    if let Some(v) = raw.oidc_match_email {
        s.oidc_match_email = v;
    }
    if let Some(v) = raw.oidc_create_users {
        s.oidc_create_users = v;
    }
    for p in &raw.oidc {
        if !valid_name(&p.name) {
            return Err(format!(
                "oauth.oidc name {:?}: use letters, digits, '-' and '_'",
                p.name
            ));
        }
    }
    s.oidc = raw.oidc;
    for server in servers.values() {
        for scope in server.tool_scopes.values() {
            if !s.extra_scopes.contains(scope) {
                s.extra_scopes.push(scope.clone());
            }
        }
    }
    Ok(s)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A portable environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn default_catalog() -> BTreeMap<String, RawServer> {
    let mut servers = BTreeMap::new();
    servers.insert(
        "everything".to_owned(),
        RawServer {
            command: vec!["hangar-everything".into()],
            tenancy: Tenancy::PerUser,
            access: Access::Authenticated,
            idle_timeout: None,
            network: None,
            env: BTreeMap::new(),
            env_passthrough: Vec::new(),
            tool_scopes: BTreeMap::new(),
        },
    );
    servers
}

/// A bare program name that is not on PATH but sits beside the running
/// `hangar` binary (how `cargo build` lays out `hangar-everything`) is
/// resolved to that file.
fn resolve_command(mut command: Vec<String>) -> Vec<String> {
    let program = &command[0];
    if program.contains('/') || on_path(program) {
        return command;
    }
    if let Some(beside) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(program)))
    {
        if beside.is_file() {
            command[0] = beside.display().to_string();
        }
    }
    command
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_the_embedded_everything_server() {
        let c = Config::load(None, None, None).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.public_url, "http://127.0.0.1:8080");
        // Absolute, so that the sandbox's bind mounts work (a relative path
        // made every instance of the README's first run exit at once).
        assert!(c.data_dir.is_absolute(), "{:?}", c.data_dir);
        assert_eq!(
            c.data_dir,
            std::env::current_dir().unwrap().join("hangar-data")
        );
        assert_eq!(c.sandbox, SandboxMode::Required);
        assert_eq!(c.default_server, "everything");
        assert_eq!(c.servers["everything"].tenancy, Tenancy::PerUser);
        assert_eq!(c.servers["everything"].idle_timeout, DEFAULT_IDLE);
    }

    #[test]
    fn parses_the_documented_shape() {
        let c = Config::parse(
            r#"
            listen = "127.0.0.1:9000"
            public_url = "https://mcp.example.com/"
            data_dir = "/var/lib/hangar"
            sandbox = "required"
            [servers.everything]
            command = ["/bin/hangar-everything"]
            tenancy = "shared"
            access = "public"
            idle_timeout = "90s"
            network = "none"
            "#,
        )
        .unwrap();
        assert_eq!(c.public_url, "https://mcp.example.com");
        assert_eq!(c.sandbox, SandboxMode::Required);
        let s = &c.servers["everything"];
        assert_eq!(
            (s.tenancy, s.access, s.network),
            (Tenancy::Shared, Access::Public, Network::None)
        );
        assert_eq!(s.idle_timeout, Duration::from_secs(90));
    }

    #[test]
    fn rejects_bad_values_clearly() {
        for (text, needle) in [
            ("[servers.x]\ncommand = []", "command is empty"),
            (
                "[servers.x]\ncommand = [\"a\"]\nidle_timeout = \"soon\"",
                "idle_timeout",
            ),
            (
                "[servers.x]\ncommand = [\"a\"]\ntenancy = \"everyone\"",
                "tenancy",
            ),
            ("sandbox = \"maybe\"", "sandbox"),
            ("default_server = \"nope\"", "default_server"),
            ("[servers.\"a b\"]\ncommand = [\"a\"]", "server name"),
            ("unknown_key = 1", "unknown"),
            (
                "[servers.x]\ncommand = [\"a\"]\nenv_passthrough = [\"A=B\"]",
                "env_passthrough",
            ),
            (
                "[servers.x]\ncommand = [\"a\"]\nenv_passthrough = [\"HANGAR_USER\"]",
                "Hangar's own",
            ),
        ] {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?} gave {err:?}");
        }
    }
}
