//! `hangar serve` and the admin commands that share its config and data dir.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use hangar_router::Config;

/// Where the configuration and data live (shared by serve and the admin commands).
#[derive(Args, Clone)]
pub struct ConfigArgs {
    /// TOML configuration file; without it, the embedded default.
    #[arg(long, global = true, env = "HANGAR_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (SQLite, keys, instance data); overrides the file.
    #[arg(long, global = true, env = "HANGAR_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl ConfigArgs {
    pub(crate) fn load(&self, listen: Option<SocketAddr>) -> anyhow::Result<Config> {
        Ok(Config::load(
            self.config.as_deref(),
            listen,
            self.data_dir.clone(),
        )?)
    }
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<SocketAddr>,
}

/// A line of the startup banner on stderr. Unlike `eprintln!`, a write that
/// fails (stderr on a full disk) is dropped instead of panicking: the
/// router must start whether or not its log can be written.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config.load(args.listen)?;
    raise_open_files_limit();
    let listen = config.listen;
    let data_dir = config.data_dir.clone();
    let servers: Vec<String> = config.servers.keys().cloned().collect();
    let public_url = config.public_url.clone();
    let router = hangar_router::build(config).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let users = router.store.list_users().await?.len();
    say!("hangar serve: listening on http://{listen}");
    for s in &servers {
        say!("  MCP server {s:?} at {public_url}/mcp/{s}");
    }
    say!(
        "  data in {}; instances {}",
        data_dir.display(),
        match (router.sandboxed, router.sandbox_mode) {
            (true, _) => "sandboxed (bubblewrap)".to_owned(),
            (false, hangar_router::SandboxMode::Required) => format!(
                "NOT sandboxed, so none can start: they must run sandboxed and {}.\n  Install bubblewrap (e.g. `sudo apt-get install bubblewrap`) and restart, or set sandbox = \"off\" in a config file to run servers unsandboxed",
                router.sandbox_problem.as_deref().unwrap_or("the sandbox is unavailable")
            ),
            (false, _) => "NOT sandboxed".to_owned(),
        }
    );
    if users == 0 {
        say!("No users yet. Create the first one (it signs in with this password in the browser), and an API token if you want one:");
        say!(
            "  hangar user add alice --password-stdin --data-dir {}",
            data_dir.display()
        );
        say!(
            "  hangar token create --user alice --data-dir {}",
            data_dir.display()
        );
    }
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(mcp_transport::listen::serve(
        listener,
        router.app,
        mcp_transport::listen::ListenLimits::default(),
        async move {
            let _ = stop_rx.changed().await;
        },
    ));
    crate::wrap::shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    // Stopping the instances drains their in-flight requests and ends their
    // streams, which lets the open client connections finish too.
    router.instances.stop_all().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Ok(())
}

/// Raises this process's soft limit on open files to its hard limit. Each
/// local instance holds its server's pipes in the router, and each client
/// a connection: the usual soft limit of 1,024 would stop a router at a
/// few hundred active users, with "too many open files".
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open files limit"),
            Err(e) => tracing::warn!("could not raise the open files limit from {soft}: {e}"),
        },
        Ok(_) => {}
        Err(e) => tracing::warn!("could not read the open files limit: {e}"),
    }
}

#[derive(Args)]
pub struct UserArgs {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Creates a user.
    Add {
        name: String,
        /// Read a sign-in password from stdin (hashed with argon2id).
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        admin: bool,
    },
    /// Sets (or replaces) a user's sign-in password, read from stdin.
    SetPassword { name: String },
    /// Lists users.
    List,
    /// Removes a user and their tokens.
    Remove { name: String },
}

/// Reads a password from stdin (one line) and hashes it with argon2id.
fn password_hash_from_stdin() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::stdin().read_to_string(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!("the password on stdin is empty");
    }
    hangar_router::auth::hash_password(password).map_err(anyhow::Error::msg)
}

pub async fn user(args: UserArgs) -> anyhow::Result<()> {
    let config = args.config.load(None)?;
    let store = hangar_router::open_store(&config).await?;
    match args.command {
        UserCommand::Add {
            name,
            password_stdin,
            admin,
        } => {
            let hash = if password_stdin {
                Some(password_hash_from_stdin()?)
            } else {
                None
            };
            let user = store.add_user(&name, hash.as_deref(), admin).await?;
            println!("{}", user.id);
            eprintln!("created user {name}{}", if admin { " (admin)" } else { "" });
        }
        UserCommand::SetPassword { name } => {
            let hash = password_hash_from_stdin()?;
            if !store.set_password_hash(&name, &hash).await? {
                bail!("no user named {name:?}");
            }
            eprintln!("password set for {name}");
        }
        UserCommand::List => {
            for u in store.list_users().await? {
                println!(
                    "{}\t{}\t{}",
                    u.name,
                    u.id,
                    if u.admin { "admin" } else { "" }
                );
            }
        }
        UserCommand::Remove { name } => {
            if !store.remove_user(&name).await? {
                bail!("no user named {name:?}");
            }
            hangar_router::auth::mark_tokens_changed(&config.data_dir)?;
            eprintln!("removed user {name} and their tokens");
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct TokenArgs {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Creates an API token and prints it (only the token, on stdout; it is shown once).
    Create {
        #[arg(long)]
        user: String,
        /// Lifetime, e.g. 30d or 12h; without it the token does not expire.
        #[arg(long)]
        expires: Option<String>,
    },
    /// Revokes a token by id.
    Revoke { id: String },
    /// Lists tokens (ids, never secrets).
    List {
        #[arg(long)]
        user: Option<String>,
    },
}

pub async fn token(args: TokenArgs) -> anyhow::Result<()> {
    let config = args.config.load(None)?;
    let store = hangar_router::open_store(&config).await?;
    match args.command {
        TokenCommand::Create { user, expires } => {
            let Some(u) = store.user_by_name(&user).await? else {
                bail!("no user named {user:?}")
            };
            let expires_at = match expires {
                Some(d) => {
                    let d = humantime::parse_duration(&d)
                        .with_context(|| format!("--expires {d:?}"))?;
                    Some(hangar_store::now() + d.as_secs() as i64)
                }
                None => None,
            };
            let (info, secret) = store.create_token(&u.id, expires_at).await?;
            println!("{secret}");
            eprintln!("token {} for {user}; it is shown only once", info.id);
        }
        TokenCommand::Revoke { id } => {
            if !store.revoke_token(&id).await? {
                bail!("no token with id {id:?}");
            }
            hangar_router::auth::mark_tokens_changed(&config.data_dir)?;
            eprintln!("revoked token {id}");
        }
        TokenCommand::List { user } => {
            let user_id = match user {
                Some(name) => Some(
                    store
                        .user_by_name(&name)
                        .await?
                        .with_context(|| format!("no user named {name:?}"))?
                        .id,
                ),
                None => None,
            };
            for t in store.list_tokens(user_id.as_deref()).await? {
                println!(
                    "{}\t{}\t{}",
                    t.id,
                    t.user_id,
                    if t.revoked { "revoked" } else { "active" }
                );
            }
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct InstancesArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

/// Lists the instances the router recorded (state as of its last change).
pub async fn instances(args: InstancesArgs) -> anyhow::Result<()> {
    let store = hangar_router::open_store(&args.config.load(None)?).await?;
    let users: std::collections::HashMap<String, String> = store
        .list_users()
        .await?
        .into_iter()
        .map(|u| (u.id, u.name))
        .collect();
    println!("ID\tSERVER\tUSER\tSTATE\tPID");
    for i in store.list_instances().await? {
        let user = i
            .user_id
            .as_ref()
            .map(|id| users.get(id).cloned().unwrap_or_else(|| id.clone()))
            .unwrap_or_else(|| "(shared)".into());
        let pid = i.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        println!("{}\t{}\t{}\t{}\t{}", i.id, i.server, user, i.state, pid);
    }
    Ok(())
}
