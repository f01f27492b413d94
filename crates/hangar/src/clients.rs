//! `hangar client …` (pre-registered OAuth clients) and `hangar oauth …`
//! (the authorization server's signing keys).

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use hangar_store::NewClient;

use crate::serve::ConfigArgs;

#[derive(Args)]
pub struct ClientArgs {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Registers a client and prints its id (and secret, for a confidential
    /// client; shown once).
    Add {
        /// The name users see on the consent page.
        #[arg(long)]
        name: String,
        /// An allowed redirect URI (repeat for several); exact match, except
        /// that loopback http redirects may use any port.
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        /// Give the client a secret (client_secret_basic); otherwise it is a
        /// public client using PKCE alone.
        #[arg(long)]
        confidential: bool,
    },
    /// Lists registered clients.
    List,
    /// Removes a client and revokes everything it was granted.
    Remove { id: String },
}

pub async fn client(args: ClientArgs) -> anyhow::Result<()> {
    let config = args.config.load(None)?;
    let store = hangar_router::open_store(&config).await?;
    match args.command {
        ClientCommand::Add {
            name,
            redirect_uris,
            confidential,
        } => {
            let native = redirect_uris
                .iter()
                .any(|u| !u.starts_with("http://") && !u.starts_with("https://"));
            for uri in &redirect_uris {
                hangar_auth::clients::check_redirect_uri(uri, native)
                    .map_err(anyhow::Error::msg)?;
            }
            let new = NewClient {
                kind: "static".into(),
                name: Some(name.clone()),
                redirect_uris,
                token_endpoint_auth_method: if confidential {
                    "client_secret_basic"
                } else {
                    "none"
                }
                .into(),
                application_type: if native { "native" } else { "web" }.into(),
                metadata: "{}".into(),
            };
            let (client, secret) = store.register_client(&new).await?;
            println!("client_id={}", client.id);
            if let Some(secret) = secret {
                println!("client_secret={secret}");
                eprintln!("the secret is shown only once");
            }
            eprintln!("registered client {name:?}");
        }
        ClientCommand::List => {
            for c in store.list_clients().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    c.id,
                    c.kind,
                    c.name.unwrap_or_default(),
                    c.token_endpoint_auth_method,
                    c.redirect_uris.join(" ")
                );
            }
        }
        ClientCommand::Remove { id } => {
            if !store.remove_client(&id).await? {
                bail!("no client with id {id:?}");
            }
            hangar_router::auth::mark_tokens_changed(&config.data_dir)?;
            eprintln!("removed client {id}; its grants are revoked");
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct OAuthArgs {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: OAuthCommand,
}

#[derive(Subcommand)]
enum OAuthCommand {
    /// Adds a new signing key; the previous one keeps verifying tokens it
    /// signed (nobody is logged out), older ones are removed. Running
    /// routers pick the new key up within a second.
    RotateKey,
}

pub async fn oauth(args: OAuthArgs) -> anyhow::Result<()> {
    let config = args.config.load(None)?;
    match args.command {
        OAuthCommand::RotateKey => {
            let dir = config.data_dir.join("oauth-keys");
            let kid = hangar_auth::keys::rotate(&dir).context("rotating the signing key")?;
            println!("{kid}");
            eprintln!("new signing key {kid} in {}", dir.display());
        }
    }
    Ok(())
}
