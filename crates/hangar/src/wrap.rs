//! `hangar wrap [--listen ADDR] [--path /mcp] [--auth-token TOKEN] -- CMD [ARGS…]`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use hangar_wrap::{Launch, Wrap, WrapConfig};
use mcp_transport::guard::OriginPolicy;
use mcp_transport::{CallerCheck, Limits, ServerConfig, StreamableHttp};

#[derive(Args)]
pub struct WrapArgs {
    /// Address to listen on (loopback by default: expose it deliberately),
    /// or `unix:PATH` for a Unix socket (how the router reaches instances).
    #[arg(long, default_value = "127.0.0.1:8000", value_parser = parse_listen)]
    listen: Listen,
    /// Path of the MCP endpoint.
    #[arg(long, default_value = "/mcp")]
    path: String,
    /// Require `Authorization: Bearer TOKEN` on every request.
    #[arg(long, env = "HANGAR_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    /// Serve every session from one child process (ids are rewritten so they never collide).
    #[arg(long)]
    shared_child: bool,
    /// Host names accepted in the Host header besides the defaults (repeatable).
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// Browser origins allowed to call the endpoint (repeatable).
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Most sessions open at once.
    #[arg(long, default_value_t = Limits::default().max_sessions)]
    max_sessions: usize,
    /// Most requests in flight per session.
    #[arg(long, default_value_t = Limits::default().max_pending_per_session)]
    max_pending: usize,
    /// Seconds a session may sit idle before it (and its child) ends.
    #[arg(long, default_value_t = Limits::default().session_idle_timeout.as_secs())]
    session_idle_timeout: u64,
    /// Require the router's signed identity assertion (Hangar-Identity
    /// header) on every request, checked with this public key.
    #[arg(long, value_name = "PUBLIC_KEY", requires = "instance")]
    identity_key: Option<String>,
    /// The instance id the assertions must name.
    #[arg(long, value_name = "ID")]
    instance: Option<String>,
    /// Pass the verified identity to the server in each request's
    /// `_meta["dev.hangar/identity"]` (shared, multi-tenant servers).
    #[arg(long, requires = "identity_key")]
    inject_identity: bool,
    /// Print `ready` on stdout once listening (for the router).
    #[arg(long)]
    ready_line: bool,
    /// Seconds in-flight requests get to finish after SIGTERM.
    #[arg(long, default_value_t = 10)]
    grace: u64,
    /// The stdio MCP server to run, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

fn parse_listen(value: &str) -> Result<Listen, String> {
    match value.strip_prefix("unix:") {
        Some(path) if !path.is_empty() => Ok(Listen::Unix(PathBuf::from(path))),
        Some(_) => Err("unix: needs a path".into()),
        None => value
            .parse()
            .map(Listen::Tcp)
            .map_err(|e| format!("{value}: {e}")),
    }
}

/// Checks the router's assertion on every request.
#[derive(Debug)]
struct AssertionCheck(hangar_identity::Verifier);

impl CallerCheck for AssertionCheck {
    fn check(&self, headers: &http::HeaderMap) -> Result<Option<String>, String> {
        let token = headers
            .get(hangar_identity::HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or("no Hangar-Identity header")?;
        let identity = self.0.verify(token).map_err(|e| e.to_string())?;
        serde_json::to_string(&identity)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

pub async fn run(args: WrapArgs) -> anyhow::Result<()> {
    let (program, rest) = args
        .command
        .split_first()
        .context("a command to run is required after --")?;
    let service = Arc::new(Wrap::new(WrapConfig {
        launch: Launch {
            program: program.clone(),
            args: rest.to_vec(),
            env: Vec::new(),
            clear_env: false,
        },
        shared_child: args.shared_child,
    }));
    let mut origins = match &args.listen {
        Listen::Tcp(addr) => OriginPolicy::for_listener(addr),
        // A socket is reached only through the file system (the router); no
        // browser can address it, so Host names do not matter.
        Listen::Unix(_) => OriginPolicy::default(),
    };
    if !origins.allowed_hosts.is_empty() {
        origins
            .allowed_hosts
            .extend(args.allow_hosts.iter().cloned());
    }
    origins.allowed_origins = args.allow_origins.clone();
    let mut config = ServerConfig::new(origins);
    config.auth_token = args.auth_token.clone();
    if let (Some(key), Some(instance)) = (&args.identity_key, &args.instance) {
        let verifier = hangar_identity::Verifier::new(key, instance).context("--identity-key")?;
        config.caller_check = Some(Arc::new(AssertionCheck(verifier)));
        config.inject_identity = args.inject_identity;
    }
    config.limits = Limits {
        max_body_bytes: args.max_body_bytes,
        max_sessions: args.max_sessions,
        max_pending_per_session: args.max_pending,
        session_idle_timeout: Duration::from_secs(args.session_idle_timeout),
        ..Limits::default()
    };
    let transport = StreamableHttp::new(service, config);
    let router = transport.router(&args.path);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = {
        let mut stop_rx = stop_rx.clone();
        async move {
            let _ = stop_rx.changed().await;
        }
    };
    let server = match &args.listen {
        Listen::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            let local = listener.local_addr()?;
            tracing::info!(
                "serving `{}` at http://{local}{}",
                args.command.join(" "),
                args.path
            );
            if args.auth_token.is_none() && args.identity_key.is_none() && !local.ip().is_loopback()
            {
                tracing::warn!("listening beyond loopback without --auth-token: anyone who can reach {local} can use this server");
            }
            announce_ready(args.ready_line);
            tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopped)
                    .await
            })
        }
        Listen::Unix(path) => {
            let _ = std::fs::remove_file(path);
            let listener = tokio::net::UnixListener::bind(path)
                .with_context(|| format!("cannot listen on {}", path.display()))?;
            tracing::info!(
                "serving `{}` at unix:{}",
                args.command.join(" "),
                path.display()
            );
            announce_ready(args.ready_line);
            tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopped)
                    .await
            })
        }
    };
    if args.ready_line {
        // Supervised by a router: also stop when the router is gone, so no
        // instance outlives it (even after a SIGKILL).
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = parent_gone() => tracing::warn!("the router is gone; stopping"),
        }
    } else {
        shutdown_signal().await;
    }
    tracing::info!(
        "shutting down: draining in-flight requests (up to {} s)",
        args.grace
    );
    let _ = stop_tx.send(true);
    transport.shutdown(Duration::from_secs(args.grace)).await;
    // Connections still open after the drain (idle SSE) are dropped with the runtime.
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    Ok(())
}

/// Resolves once this process has been re-parented (its parent died).
async fn parent_gone() {
    let parent = nix::unistd::getppid();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if nix::unistd::getppid() != parent {
            return;
        }
    }
}

/// Tells a supervising router we accept connections: one line on stdout
/// (stdout carries nothing else in `hangar wrap`).
fn announce_ready(enabled: bool) {
    if enabled {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    }
}

pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
