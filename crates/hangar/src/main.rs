//! The `hangar` command line: a thin layer over the library crates.

mod clients;
mod connect;
mod serve;
mod wrap;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hangar",
    version,
    about = "Run MCP servers remotely: wrap, route, connect"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a stdio MCP server as a remote Streamable HTTP endpoint.
    Wrap(wrap::WrapArgs),
    /// Run the router: users, tokens, and each user's own server instances.
    Serve(serve::ServeArgs),
    /// Manage users (same config and data dir as serve).
    User(serve::UserArgs),
    /// Manage API tokens.
    Token(serve::TokenArgs),
    /// List instances.
    Instances(serve::InstancesArgs),
    /// Manage pre-registered OAuth clients.
    Client(clients::ClientArgs),
    /// Manage the OAuth authorization server (signing keys).
    Oauth(clients::OAuthArgs),
    /// Connect a stdio-only MCP client to a remote server (the stdio shim).
    Connect(connect::ConnectArgs),
}

fn main() -> anyhow::Result<()> {
    // Logs go to stderr; stdout is kept for protocol and command output.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour only on a terminal: stderr is often a log file (MCP clients
        // keep the stderr of `hangar connect`).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A log write that fails (stderr on a full disk) is dropped: the
        // fallback report of it is an eprintln!, which panics whichever
        // thread was logging (a request, the audit writer, the store's
        // worker, shutdown).
        .log_internal_errors(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HANGAR_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Wrap(args) => runtime.block_on(wrap::run(args)),
        Command::Serve(args) => runtime.block_on(serve::serve(args)),
        Command::User(args) => runtime.block_on(serve::user(args)),
        Command::Token(args) => runtime.block_on(serve::token(args)),
        Command::Instances(args) => runtime.block_on(serve::instances(args)),
        Command::Client(args) => runtime.block_on(clients::client(args)),
        Command::Oauth(args) => runtime.block_on(clients::oauth(args)),
        Command::Connect(args) => runtime.block_on(connect::run(args)),
    }
}
