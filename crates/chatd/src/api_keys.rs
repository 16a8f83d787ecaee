//! `chatd api-key create|list|revoke`: the server API's keys, made and
//! revoked on the store itself, for the operator who holds the machine
//! (the API does the same with the bootstrap key).

use std::process::ExitCode;

use chat_gateway::Engine;
use chat_server_api::Scope;
use clap::Subcommand;

/// What to do with keys.
#[derive(Subcommand)]
pub enum Action {
    /// Make a key and print it (the only time it is shown).
    Create {
        /// What the key is for, shown in listings.
        #[arg(long)]
        name: String,
        /// What it may do: publish, rooms, users, read (repeat, or comma-separated).
        #[arg(long = "scope", required = true, value_delimiter = ',', value_parser = parse_scope)]
        scopes: Vec<Scope>,
    },
    /// List every key: id, name, scopes, when made, when revoked.
    List,
    /// Revoke a key by its id: from now on it opens nothing.
    Revoke {
        /// The key's id (the part after `ck_`, before the dot).
        id: String,
    },
}

fn parse_scope(name: &str) -> Result<Scope, String> {
    Scope::parse(name).ok_or_else(|| format!("'{name}' is no scope: publish, rooms, users, read"))
}

/// Runs `action`; prints its answer, or one line on standard error and
/// exit code 2 (bad settings, an unreachable store, no such key).
pub fn command(config: Option<&std::path::Path>, action: Action) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&e),
    };
    match runtime.block_on(run(config, action)) {
        Ok(lines) => {
            // What this command prints.
            #[allow(clippy::print_stdout)]
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("chatd api-key: {e}");
    ExitCode::from(2)
}

async fn run(config: Option<&std::path::Path>, action: Action) -> anyhow::Result<Vec<String>> {
    let settings = crate::Settings::load_from(config)?;
    // Where the keys are: said with every answer, and never a new SQLite
    // file (keys made in a folder chatd does not use would open nothing).
    let place = match &settings.shared.redis_url {
        Some(_) => format!("Redis (prefix '{}')", settings.shared.redis_prefix),
        None => {
            let path = settings.shared.data_dir.join("messages.db");
            if !path.exists() {
                anyhow::bail!(
                    "no store at {}: set CHAT_DATA_DIR to the folder chatd keeps its data in \
                     (or REDIS_URL for gateways sharing a Redis)",
                    path.display()
                );
            }
            path.display().to_string()
        }
    };
    let keys = Engine::from_settings(&settings.shared).open_store().await?;
    let when = |ms: u64| {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
        humantime::format_rfc3339_seconds(at).to_string()
    };
    match action {
        Action::Create { name, scopes } => {
            let (record, key) = chat_server_api::make_key(&*keys, &name, &scopes).await?;
            Ok(vec![
                key,
                format!(
                    "id {}, kept in {place}: keep the key above; it is not shown again",
                    record.id
                ),
            ])
        }
        Action::List => {
            let mut lines = vec![format!(
                "# API keys in {place}: id, name, scopes, made, state"
            )];
            lines.extend(keys.keys().await?.into_iter().map(|k| {
                let state = k
                    .revoked_at
                    .map_or("active".to_owned(), |at| format!("revoked {}", when(at)));
                format!(
                    "{}\t{}\t{}\t{}\t{state}",
                    k.id,
                    k.name,
                    k.scopes.join(","),
                    when(k.created_at)
                )
            }));
            Ok(lines)
        }
        Action::Revoke { id } => match keys.revoke_key(&id, chat_server_api::now_ms()).await? {
            Some(key) => Ok(vec![format!("revoked {} in {place}", key.id)]),
            None => anyhow::bail!("no API key '{id}' in {place}"),
        },
    }
}
