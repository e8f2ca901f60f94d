//! Commands that work on the data folder directly, with no server running: the first admin
//! token needs no server to ask.

use std::path::PathBuf;

use crate::access::{TokenRequest, TokenView, create_token};
use crate::domain::{QuotaOverrides, Scope};
use crate::error::{Error, Result};
use crate::store::{Store, TokenRow};

/// `trainserve tokens ...`
#[derive(Clone, Debug, clap::Args)]
pub struct TokensArgs {
    /// The data folder of the service whose tokens these are.
    #[arg(
        long,
        env = "TRAINSERVE_DATA_DIR",
        default_value = "./trainserve-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub action: TokensAction,
}

/// What to do with tokens.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum TokensAction {
    /// Make a token and print it; its secret is shown only this once.
    Create {
        /// What it may do: admin, train, predict or read; repeat or separate with commas.
        #[arg(long = "scope", required = true, value_delimiter = ',')]
        scopes: Vec<String>,
        /// A name for people (letters, digits, `-`, `_`, `.`, `@`).
        #[arg(long)]
        name: Option<String>,
        /// Share resources with the tokens of this owner (default: an owner of its own).
        #[arg(long)]
        owner: Option<String>,
        /// A quota of its own, `NAME=VALUE`: active_jobs, sweep_trials, sweep_sample_epochs,
        /// keep_last, storage_bytes, uploads_per_hour, requests_per_second.
        #[arg(long = "quota")]
        quotas: Vec<String>,
    },
    /// List every token (never their secrets).
    List,
    /// Revoke a token by id; it stops working within a second.
    Revoke {
        /// The token's id (`tokens list` shows it).
        id: String,
    },
}

/// Runs a `tokens` command, printing its result on standard output.
pub async fn tokens(args: TokensArgs) -> Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|err| Error::io(&format!("creating {}", args.data_dir.display()), err))?;
    let store = Store::open(&args.data_dir.join("trainserve.db")).await?;
    let outcome = run(&store, args.action, args.json).await;
    store.close().await;
    outcome
}

async fn run(store: &Store, action: TokensAction, json: bool) -> Result<()> {
    match action {
        TokensAction::Create {
            scopes,
            name,
            owner,
            quotas,
        } => {
            let scopes = scopes
                .iter()
                .map(|s| {
                    Scope::parse(s).ok_or_else(|| {
                        Error::invalid(
                            "scope",
                            format!("'{s}' is not a scope; valid: admin, train, predict, read"),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let mut overrides = QuotaOverrides::default();
            for quota in &quotas {
                overrides
                    .set(quota)
                    .map_err(|message| Error::invalid("quota", message))?;
            }
            let (token, row) = create_token(
                store,
                TokenRequest {
                    name,
                    owner,
                    scopes,
                    quotas: overrides,
                },
            )
            .await?;
            if json {
                let mut value = describe(&row)?;
                value["token"] = serde_json::Value::String(token);
                println!("{value}");
            } else {
                println!("{token}");
                eprintln!(
                    "token {} ({}, scopes {}, owner {}): keep it secret, it is not shown again; send it as 'Authorization: Bearer <token>'",
                    row.id, row.name, row.scopes, row.owner
                );
            }
        }
        TokensAction::List => {
            let rows = store.list_tokens().await?;
            if json {
                let list = rows.iter().map(describe).collect::<Result<Vec<_>>>()?;
                println!("{}", serde_json::json!({ "tokens": list }));
            } else {
                println!(
                    "{:<18} {:<24} {:<18} {:<20} {:<26} STATE",
                    "ID", "NAME", "OWNER", "SCOPES", "CREATED"
                );
                for row in rows {
                    let state = match (&row.revoked_at, &row.last_used_at) {
                        (Some(at), _) => format!("revoked {at}"),
                        (None, Some(at)) => format!("last used {at}"),
                        (None, None) => "never used".to_string(),
                    };
                    println!(
                        "{:<18} {:<24} {:<18} {:<20} {:<26} {}",
                        row.id, row.name, row.owner, row.scopes, row.created_at, state
                    );
                }
            }
        }
        TokensAction::Revoke { id } => {
            if !store.revoke_token(&id).await? {
                return Err(match store.get_token(&id).await? {
                    Some(_) => Error::conflict(format!("token {id} is already revoked")),
                    None => Error::not_found("token", id),
                });
            }
            if json {
                println!("{}", serde_json::json!({ "revoked": id }));
            } else {
                println!("revoked {id}");
            }
        }
    }
    Ok(())
}

fn describe(row: &TokenRow) -> Result<serde_json::Value> {
    serde_json::to_value(TokenView::new(row)?)
        .map_err(|err| Error::internal("encoding a token", err))
}
