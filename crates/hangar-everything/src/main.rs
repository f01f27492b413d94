//! `hangar-everything [--stdio] | --listen ADDR`

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use hangar_everything::{Everything, Identity};
use mcp_transport::guard::OriginPolicy;
use mcp_transport::{ServerConfig, StreamableHttp};

#[derive(Parser)]
#[command(
    name = "hangar-everything",
    version,
    about = "Hangar's reference MCP server: every MCP feature and conformance fixture"
)]
struct Args {
    /// Serve over stdio (the default).
    #[arg(long, conflicts_with = "listen")]
    stdio: bool,
    /// Serve Streamable HTTP at /mcp on this address instead.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// With --listen: speak only protocol 2026-07-28 (legacy requests get
    /// 400 -32020/-32022, GET and DELETE 405; discover lists no legacy version).
    #[arg(long, requires = "listen")]
    modern_only: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs go to stderr: stdout carries only protocol.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let identity = Identity::from_env();
    let Some(addr) = args.listen else {
        hangar_everything::stdio::serve(identity).await?;
        return Ok(());
    };
    let mut everything = Everything::new(identity);
    if args.modern_only {
        everything = everything.modern_only();
    }
    let transport = StreamableHttp::new(
        Arc::new(everything),
        ServerConfig::new(OriginPolicy::for_listener(&addr)),
    );
    let mut router = transport.router("/mcp");
    if args.modern_only {
        router = router.layer(axum::middleware::from_fn(
            hangar_everything::modern_only::refuse_legacy,
        ));
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!(
        "hangar-everything: serving MCP at http://{}/mcp",
        listener.local_addr()?
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
