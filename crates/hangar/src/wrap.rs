//! `hangar wrap [--listen ADDR] [--path /mcp] [--auth-token TOKEN] -- CMD [ARGS…]`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use hangar_wrap::{Launch, Wrap, WrapConfig};
use mcp_transport::guard::OriginPolicy;
use mcp_transport::{Limits, ServerConfig, StreamableHttp};

#[derive(Args)]
pub struct WrapArgs {
    /// Address to listen on (loopback by default: expose it deliberately).
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
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
    /// Seconds in-flight requests get to finish after SIGTERM.
    #[arg(long, default_value_t = 10)]
    grace: u64,
    /// The stdio MCP server to run, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
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
        },
        shared_child: args.shared_child,
    }));
    let mut origins = OriginPolicy::for_listener(&args.listen);
    if !origins.allowed_hosts.is_empty() {
        origins
            .allowed_hosts
            .extend(args.allow_hosts.iter().cloned());
    }
    origins.allowed_origins = args.allow_origins.clone();
    let mut config = ServerConfig::new(origins);
    config.auth_token = args.auth_token.clone();
    config.limits = Limits {
        max_body_bytes: args.max_body_bytes,
        max_sessions: args.max_sessions,
        max_pending_per_session: args.max_pending,
        session_idle_timeout: Duration::from_secs(args.session_idle_timeout),
        ..Limits::default()
    };
    let transport = StreamableHttp::new(service, config);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(
        "serving `{}` at http://{local}{}",
        args.command.join(" "),
        args.path
    );
    if args.auth_token.is_none() && !local.ip().is_loopback() {
        tracing::warn!("listening beyond loopback without --auth-token: anyone who can reach {local} can use this server");
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, transport.router(&args.path)).with_graceful_shutdown({
        let mut stop_rx = stop_rx.clone();
        async move {
            let _ = stop_rx.changed().await;
        }
    });
    let server = tokio::spawn(async move { server.await });
    shutdown_signal().await;
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

async fn shutdown_signal() {
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
