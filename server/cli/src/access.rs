//! Who may use the platform: `aerekos users …`, `aerekos tokens …`, `aerekos logout`,
//! `aerekos password` and `aerekos audit`, on `aerekos-sdk` only.

use aerekos_sdk::conductor::types::{self, Role};
use anyhow::{Context as _, bail};
use uuid::Uuid;

use crate::{
    client::{Global, api, connect, forget_credentials, read_secret, save_session},
    output::{self, Format},
};

#[derive(clap::Subcommand)]
pub enum UsersCommand {
    /// Every user, with role and whether it is disabled.
    Ls,
    /// Create a user; the password is read like `aerekos login` reads one.
    Add {
        username: String,
        #[arg(long, default_value = "viewer", value_parser = ["admin", "viewer"])]
        role: String,
        /// Read the password from stdin (else AEREKOS_NEW_PASSWORD, else a prompt).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a user's role, or disable/enable it (disabling revokes its tokens).
    Set {
        username: String,
        #[arg(long, value_parser = ["admin", "viewer"])]
        role: Option<String>,
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        #[arg(long)]
        enable: bool,
    },
    /// Delete a user (its tokens are revoked).
    Rm { username: String },
    /// Set a user's password (its tokens are revoked).
    ResetPassword {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(clap::Subcommand)]
pub enum TokensCommand {
    /// The valid sessions and service tokens (never the tokens themselves).
    Ls {
        /// Only this user's sessions.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token or API key by its id; every server refuses it within about a second.
    Revoke { id: String },
    /// Create an API key for an app; the key is printed once.
    CreateApiKey {
        /// Names the app in audit records.
        #[arg(long)]
        name: String,
        /// What it may do (repeat): `key_manager:encrypt:<key>`, `key_manager:decrypt:<key>`,
        /// `key_manager:generate_data_key:<key>`, `key_manager:read:<key>`,
        /// `storage_manager:read:<bucket>`, `storage_manager:write:<bucket>`; `*` for all.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// How long it lives, e.g. `90d` (the default), `1y`.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<std::time::Duration>,
    },
}

#[derive(clap::Args)]
pub struct AuditArgs {
    #[command(flatten)]
    global: Global,
    /// Only this actor, e.g. `user:alice`.
    #[arg(long)]
    actor: Option<String>,
    /// Only this operation, e.g. `deploy_service`.
    #[arg(long)]
    action: Option<String>,
    /// Only paths starting with this.
    #[arg(long)]
    target: Option<String>,
    /// Only the last this long, e.g. `1h`, `7d`.
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<std::time::Duration>,
    /// Only refused and failed requests.
    #[arg(long)]
    failed: bool,
    #[arg(long, default_value_t = 50)]
    limit: i64,
}

fn role(value: &str) -> Role {
    if value == "admin" {
        Role::Admin
    } else {
        Role::Viewer
    }
}

async fn user_id(c: &aerekos_sdk::Conductor, username: &str) -> anyhow::Result<Uuid> {
    let users = api(c.list_users().send().await)?;
    users
        .users
        .iter()
        .find(|u| u.username == username)
        .map(|u| u.id)
        .with_context(|| format!("there is no user {username:?}"))
}

fn user_rows(users: &[types::User]) -> Vec<Vec<String>> {
    users
        .iter()
        .map(|u| {
            vec![
                u.username.clone(),
                u.role.to_string(),
                if u.disabled {
                    "disabled".into()
                } else {
                    "enabled".into()
                },
                u.created_at.format("%Y-%m-%d %H:%M").to_string(),
                u.id.to_string(),
            ]
        })
        .collect()
}

const USER_HEADERS: &[&str] = &["USERNAME", "ROLE", "STATE", "CREATED", "ID"];

pub async fn users(global: Global, command: UsersCommand) -> anyhow::Result<()> {
    let c = connect(&global)?;
    match command {
        UsersCommand::Ls => {
            let list = api(c.list_users().send().await)?;
            output::print(global.output(), &list, USER_HEADERS, user_rows(&list.users))
        }
        UsersCommand::Add {
            username,
            role: r,
            password_stdin,
        } => {
            let password = read_secret(
                password_stdin,
                "AEREKOS_NEW_PASSWORD",
                &format!("password for the new user {username}: "),
            )?;
            let body = types::CreateUserRequest {
                username,
                role: role(&r),
                password,
            };
            let user = api(c.create_user().body(body).send().await)?;
            output::print(
                global.output(),
                &user,
                USER_HEADERS,
                user_rows(std::slice::from_ref(&user)),
            )
        }
        UsersCommand::Set {
            username,
            role: r,
            disable,
            enable,
        } => {
            if r.is_none() && !disable && !enable {
                bail!("say what to change: --role, --disable or --enable");
            }
            let id = user_id(&c, &username).await?;
            let disabled = if disable {
                Some(true)
            } else if enable {
                Some(false)
            } else {
                None
            };
            let body = types::UpdateUserRequest {
                role: r.as_deref().map(role),
                disabled,
            };
            let user = api(c.update_user().id(id).body(body).send().await)?;
            output::print(
                global.output(),
                &user,
                USER_HEADERS,
                user_rows(std::slice::from_ref(&user)),
            )
        }
        UsersCommand::Rm { username } => {
            let id = user_id(&c, &username).await?;
            api(c.delete_user().id(id).send().await)?;
            eprintln!("deleted {username}; its tokens are revoked");
            Ok(())
        }
        UsersCommand::ResetPassword {
            username,
            password_stdin,
        } => {
            let id = user_id(&c, &username).await?;
            let password = read_secret(
                password_stdin,
                "AEREKOS_NEW_PASSWORD",
                &format!("new password for {username}: "),
            )?;
            api(c
                .reset_user_password()
                .id(id)
                .body(types::SetPasswordRequest { password })
                .send()
                .await)?;
            eprintln!("password of {username} set; its tokens are revoked");
            Ok(())
        }
    }
}

pub async fn tokens(global: Global, command: TokensCommand) -> anyhow::Result<()> {
    let c = connect(&global)?;
    match command {
        TokensCommand::Ls { user } => {
            let mut request = c.list_tokens();
            if let Some(name) = &user {
                request = request.user_id(user_id(&c, name).await?);
            }
            let list = api(request.send().await)?;
            let rows = list
                .tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.clone(),
                        t.kind.to_string(),
                        t.name.clone(),
                        t.scopes.join(" "),
                        t.created_at.format("%Y-%m-%d %H:%M").to_string(),
                        t.expires_at.format("%Y-%m-%d %H:%M").to_string(),
                    ]
                })
                .collect();
            output::print(
                global.output(),
                &list,
                &["ID", "KIND", "NAME", "SCOPES", "CREATED", "EXPIRES"],
                rows,
            )
        }
        TokensCommand::CreateApiKey {
            name,
            scopes,
            expires,
        } => {
            let body = types::CreateApiKeyRequest {
                name,
                scopes,
                expires_in_secs: expires.map(|d| d.as_secs()),
            };
            let key = api(c.create_api_key().body(body).send().await)?;
            match global.output() {
                Format::Json => println!("{}", serde_json::to_string_pretty(&key)?),
                Format::Table => {
                    println!("{}", key.key);
                    eprintln!(
                        "API key {} ({}) until {}; it is shown only now. Revoke: aerekos tokens revoke {}",
                        key.name,
                        key.scopes.join(" "),
                        key.expires_at,
                        key.id
                    );
                }
            }
            Ok(())
        }
        TokensCommand::Revoke { id } => {
            api(c.revoke_token().id(&id).send().await)?;
            eprintln!("revoked {id}");
            Ok(())
        }
    }
}

/// Revokes the saved token and forgets it.
pub async fn logout(global: Global) -> anyhow::Result<()> {
    let c = connect(&global)?;
    match api(c.logout().send().await) {
        Ok(()) => {}
        // Already revoked or expired: forgetting it is all that is left to do.
        Err(e) if e.to_string().contains("401") => {}
        Err(e) => return Err(e),
    }
    forget_credentials()?;
    eprintln!("logged out; the token is revoked");
    Ok(())
}

/// Changes the logged-in user's password; all of its sessions end and a new one is saved.
pub async fn password(global: Global, password_stdin: bool) -> anyhow::Result<()> {
    let c = connect(&global)?;
    let (current_password, new_password) = if password_stdin {
        let mut lines = std::io::stdin().lines();
        let mut next = || -> anyhow::Result<String> {
            Ok(lines
                .next()
                .context("stdin must give the current password, then the new one")??)
        };
        (next()?, next()?)
    } else {
        (
            rpassword::prompt_password("current password: ")?,
            rpassword::prompt_password("new password: ")?,
        )
    };
    let session = api(c
        .change_password()
        .body(types::ChangePasswordRequest {
            current_password,
            new_password,
        })
        .send()
        .await)?;
    save_session(&global, &session)?;
    eprintln!("password changed; your other sessions are revoked");
    Ok(())
}

pub async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let c = connect(&args.global)?;
    let mut request = c.list_audit_events().limit(args.limit).failed(args.failed);
    if let Some(actor) = &args.actor {
        request = request.actor(actor);
    }
    if let Some(action) = &args.action {
        request = request.action(action);
    }
    if let Some(target) = &args.target {
        request = request.target(target);
    }
    if let Some(since) = args.since {
        request = request.since(chrono::Utc::now() - chrono::Duration::from_std(since)?);
    }
    let page = api(request.send().await)?;
    let rows = page
        .events
        .iter()
        .map(|e| {
            vec![
                e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                e.actor.clone(),
                e.action.clone(),
                e.target.clone(),
                e.status.to_string(),
                e.client_ip.clone().unwrap_or_default(),
                e.request_id.clone(),
            ]
        })
        .collect();
    match args.global.output() {
        Format::Json => output::print(Format::Json, &page, &[], Vec::new()),
        Format::Table => output::print(
            Format::Table,
            &page,
            &[
                "AT",
                "ACTOR",
                "ACTION",
                "TARGET",
                "STATUS",
                "CLIENT",
                "REQUEST ID",
            ],
            rows,
        ),
    }
}
