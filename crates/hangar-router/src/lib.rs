//! `hangar serve`: the router.
//!
//! It authenticates each caller ([`auth`]), finds or starts the caller's own
//! instance of the requested server ([`instances`], on a
//! [`hangar_machines::Backend`]) and proxies MCP traffic to it ([`app`]),
//! passing a signed identity assertion instead of the client's token.

pub mod app;
pub mod audit;
/// The resource-server check lives in `hangar-auth`; re-exported under its
/// old name for the CLI.
pub use hangar_auth::resource as auth;
pub mod config;
pub mod instances;
pub mod metrics;
pub mod proxy;
pub mod sessions;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hangar_identity::Signer;
pub use hangar_machines::SandboxMode;
use hangar_machines::{ProcessBackend, ProcessBackendConfig, Sandbox};
use hangar_store::Store;

pub use config::Config;

/// Opens the store the configuration names (SQLite in the data dir by default).
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    match &config.database_url {
        Some(url) => Store::open(url).await.context("opening database_url"),
        None => Store::open_data_dir(&config.data_dir)
            .await
            .with_context(|| format!("opening the store in {}", config.data_dir.display())),
    }
}

/// A router ready to serve: the axum app plus what shutdown needs.
pub struct Router {
    pub app: axum::Router,
    pub instances: Arc<instances::Instances>,
    pub store: Arc<Store>,
    pub sandboxed: bool,
    pub sandbox_mode: SandboxMode,
    /// Why instances are not sandboxed, when they are not.
    pub sandbox_problem: Option<String>,
}

/// Builds the router for `config` with the process backend.
pub async fn build(config: Config) -> anyhow::Result<Router> {
    let config = Arc::new(config);
    // Keys and instance dirs live here even when the store is Postgres.
    hangar_common::fs::create_private_dir(&config.data_dir)
        .with_context(|| format!("creating the data dir {}", config.data_dir.display()))?;
    let store = Arc::new(open_store(&config).await?);
    let signer =
        Arc::new(Signer::load_or_create(&config.identity_key_path()).context("identity key")?);
    let data_dir =
        std::fs::canonicalize(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
    let sandbox = Sandbox::detect(config.sandbox, vec![data_dir]);
    let sandboxed = sandbox.active();
    let sandbox_mode = sandbox.mode();
    let sandbox_problem = sandbox.problem().map(str::to_owned);
    let backend = Arc::new(ProcessBackend::new(
        ProcessBackendConfig {
            session_idle_timeout: config
                .servers
                .values()
                .map(|s| s.idle_timeout)
                .max()
                .unwrap_or(Duration::from_secs(600)),
        },
        sandbox,
    ));
    let metrics = Arc::new(metrics::Metrics::new());
    let instances = instances::Instances::new(
        backend,
        config.clone(),
        metrics.clone(),
        store.clone(),
        signer.clone(),
    );
    let auth_server =
        hangar_auth::AuthServer::new(config.oauth.clone(), store.clone(), &config.data_dir)
            .context("authorization server")?;
    let auth = auth_server.authenticator();
    let state = Arc::new(app::AppState::new(
        config,
        store.clone(),
        auth,
        instances.clone(),
        metrics,
    ));
    Ok(Router {
        app: app::router(state).merge(auth_server.routes()),
        instances,
        store,
        sandboxed,
        sandbox_mode,
        sandbox_problem,
    })
}
