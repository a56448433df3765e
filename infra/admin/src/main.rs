//! `payments-admin`: manages merchants and API keys, and redrives the webhook relay's
//! failures; never exposed over the public API.
//!
//! Configured like the functions: `TABLE_NAME`, the standard AWS variables, and
//! `AWS_ENDPOINT_URL_DYNAMODB` for the local stack. Prints one JSON line per command on stdout;
//! errors go to stderr with a non-zero exit code. An API key is printed exactly once, here.

use clap::{Parser, Subcommand};
use serde_json::json;
use shared::domain::{MerchantId, Timestamp};
use shared::http::auth::{NewApiKey, PUBLIC_PREFIX_LEN};
use shared::migrations::{self, runner};
use shared::store::merchants::RevokeError;
use shared::store::{Merchant, Store, StoreError};
use std::io::Read as _;
use std::process::ExitCode;
use time::OffsetDateTime;

#[derive(Parser)]
#[command(
    name = "payments-admin",
    version,
    about = "Manage merchants and API keys, migrations and webhook redrives"
)]
struct Cli {
    /// The DynamoDB table (defaults to $TABLE_NAME).
    #[arg(long, env = "TABLE_NAME", global = true, default_value = "")]
    table: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Merchants (tenants).
    Merchants {
        #[command(subcommand)]
        command: MerchantCommand,
    },
    /// API keys.
    Keys {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// The table itself (local stack and tests; the deployed one is made by template.yaml).
    Table {
        #[command(subcommand)]
        command: TableCommand,
    },
    /// The deployment's secrets: the key list cursors are signed with and the one the sandbox
    /// processor signs its events with (made with the first merchant; never printed).
    /// `cursor-secret` is its name from before the sandbox had one.
    #[command(alias = "cursor-secret")]
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Webhook delivery operations.
    Webhooks {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// Data migrations: the table's items brought to the current code's shape, in place.
    Migrate {
        #[command(subcommand)]
        command: MigrateCommand,
    },
}

#[derive(Subcommand)]
enum MigrateCommand {
    /// Each migration, in order: pending, running, done or failed, with its progress.
    Status,
    /// Runs what is pending (one run at a time; a stopped run goes on from its checkpoints).
    /// A progress line per scan segment and page goes to stderr.
    Run {
        /// Parallel scan segments of a migration that starts now.
        #[arg(long, default_value_t = 4)]
        segments: u32,
        /// The share of the table's capacity the run may spend (provisioned: its read and
        /// write capacity; on demand: of 4,000 units/s, what a new on-demand table serves).
        #[arg(long, default_value_t = 0.1)]
        capacity_share: f64,
        /// Capacity units per second instead of a share.
        #[arg(long)]
        units_per_second: Option<f64>,
        /// Seconds to wait for another run's lease (default: exit at once, naming it).
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// Relays again the stream records the relay gave up on, read back from the stream by the
    /// ranges the on-failure messages name (`WebhookRelayFailures` deployed; under `make dev`,
    /// .dev/webhook-relay-failures.jsonl). Idempotent: each delivery is made once.
    Redrive {
        /// The messages: one JSON message per line, or a JSON array (of messages or of SQS
        /// bodies); `-` or nothing reads stdin.
        #[arg(long, default_value = "-")]
        file: String,
        /// Read capacity units per second the table Scan may spend for ranges the stream no
        /// longer holds (their events are read from the table instead).
        #[arg(long, default_value_t = 200.0)]
        units_per_second: f64,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Makes each secret the table does not have yet (a deployment from before one existed
    /// needs this once; the deploy workflow runs it after every deploy).
    Ensure,
}

#[derive(Subcommand)]
enum MerchantCommand {
    /// Creates a merchant with its first API key.
    Create {
        #[arg(long)]
        name: String,
    },
    /// Prints a merchant; exits 1 when there is no such merchant.
    Show {
        #[arg(long)]
        merchant: String,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Creates another API key for a merchant.
    Create {
        #[arg(long)]
        merchant: String,
    },
    /// Revokes the merchant's key that starts with the given prefix (its first 12 characters).
    Revoke {
        #[arg(long)]
        merchant: String,
        #[arg(long = "key-prefix")]
        key_prefix: String,
    },
}

#[derive(Subcommand)]
enum TableCommand {
    /// Creates the table with its indexes, stream and TTL unless it exists; an existing table
    /// of an earlier version gets what it lacks (indexes, stream, TTL), as a deploy would.
    Create,
}

/// What a command can fail with, told to the operator.
#[derive(Debug)]
struct Failure(String);

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Failure(err.to_string())
    }
}

fn merchant_id(input: &str) -> Result<MerchantId, Failure> {
    MerchantId::parse(input).map_err(|_| Failure(format!("'{input}' is not a merchant id (mer_…)")))
}

fn new_key(merchant: &MerchantId, now: OffsetDateTime) -> Result<NewApiKey, Failure> {
    NewApiKey::generate(merchant, now).map_err(|e| Failure(format!("no randomness available: {e}")))
}

/// `{"merchant_id":"mer_…","api_key":"sk_…"}`, in that order, as the contract shows it.
fn issued(merchant: &MerchantId, key: &NewApiKey) -> String {
    format!(
        r#"{{"merchant_id":{},"api_key":{}}}"#,
        json!(merchant),
        json!(key.secret)
    )
}

/// DynamoDB did not answer a key write and it could not be read back: it may have committed.
/// The key is never shown again, so such a key is to be revoked, not hoped for.
fn unknown_outcome(merchant: &MerchantId, err: StoreError) -> Failure {
    Failure(format!(
        "{err}; the write may have committed without its key being shown: run the command \
         again for a key, and revoke any key of {merchant} you do not recognise"
    ))
}

/// The part of `--key-prefix` that identifies a key: its first [`PUBLIC_PREFIX_LEN`] characters.
/// Keys are ASCII, so anything else cannot name one (and would not cut on a byte boundary).
fn public_prefix(input: &str) -> Result<&str, Failure> {
    input
        .get(..PUBLIC_PREFIX_LEN)
        .filter(|prefix| input.is_ascii() && prefix.starts_with("sk_"))
        .ok_or_else(|| {
            Failure(format!(
                "--key-prefix must be the key's first {PUBLIC_PREFIX_LEN} characters or more (sk_…)"
            ))
        })
}

async fn run(cli: Cli) -> Result<String, Failure> {
    if cli.table.is_empty() {
        return Err(Failure("set TABLE_NAME or pass --table".into()));
    }
    let sdk_config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store = Store::new(
        aws_sdk_dynamodb::Client::new(&sdk_config),
        cli.table.clone(),
    );
    let now = OffsetDateTime::now_utc();
    match cli.command {
        Command::Webhooks {
            command:
                WebhookCommand::Redrive {
                    file,
                    units_per_second,
                },
        } => redrive(&store, &sdk_config, &file, units_per_second).await,
        Command::Table {
            command: TableCommand::Create,
        } => {
            let ensured = store.ensure_table().await?;
            Ok(json!({"table": cli.table, "created": ensured.created,
                      "upgraded": ensured.upgraded})
            .to_string())
        }
        Command::Migrate {
            command: MigrateCommand::Status,
        } => {
            let states = runner::status(&store, migrations::ALL).await?;
            let scanned: u64 = states.iter().map(|m| m.scanned).sum();
            let pending = states.iter().filter(|m| m.status != "done").count();
            Ok(json!({"migrations": states, "pending": pending, "scanned": scanned}).to_string())
        }
        Command::Migrate {
            command:
                MigrateCommand::Run {
                    segments,
                    capacity_share,
                    units_per_second,
                    wait,
                },
        } => {
            let units = match units_per_second {
                Some(units) => units,
                None => runner::units_for_share(&store, capacity_share).await?,
            };
            let options = runner::RunOptions {
                segments,
                units_per_second: units,
                wait: std::time::Duration::from_secs(wait),
                ..runner::RunOptions::default()
            };
            let context = migrations::Context {
                deadlines: shared::config::deadlines(&shared::config::env)
                    .map_err(|e| Failure(e.to_string()))?,
            };
            let progress = |p: &runner::Progress| {
                eprintln!("{}", serde_json::to_string(p).unwrap_or_default());
            };
            let states = runner::run(
                &store,
                &context,
                migrations::ALL,
                &options,
                &shared::clock::SystemClock,
                &progress,
            )
            .await
            .map_err(|e| Failure(e.to_string()))?;
            let failed: Vec<&str> = states
                .iter()
                .filter(|m| m.status != "done")
                .map(|m| m.id)
                .collect();
            let summary = json!({"migrations": states, "units_per_second": units});
            if failed.is_empty() {
                Ok(summary.to_string())
            } else {
                Err(Failure(format!(
                    "{summary}: not done: {failed:?}; the items it could not read are in the log                      (\"does not read\"); fix them or the code, then run again"
                )))
            }
        }
        Command::Secrets {
            command: SecretsCommand::Ensure,
        } => {
            store.ensure_secrets().await?;
            Ok(json!({"secrets": "present"}).to_string())
        }
        Command::Merchants {
            command: MerchantCommand::Create { name },
        } => {
            let name = name.trim().to_owned();
            if name.is_empty() || name.chars().count() > 200 {
                return Err(Failure("--name must be 1 to 200 characters".into()));
            }
            // The deployment's functions sign cursors and sandbox events with them
            // (store::secrets); the first merchant is the moment before any request can be
            // authenticated.
            store.ensure_secrets().await?;
            let id = MerchantId::generate(now);
            let key = new_key(&id, now)?;
            let merchant = Merchant {
                merchant_id: id.clone(),
                name,
                created_at: Timestamp::from_datetime(now),
            };
            match store.create_merchant(&merchant, &key.record).await {
                Ok(()) => Ok(issued(&id, &key)),
                Err(err @ StoreError::Unavailable(_)) => Err(unknown_outcome(&id, err)),
                Err(err) => Err(err.into()),
            }
        }
        Command::Merchants {
            command: MerchantCommand::Show { merchant },
        } => {
            let id = merchant_id(&merchant)?;
            let found = store.get_merchant(&id).await?;
            let merchant = found.ok_or_else(|| Failure(format!("no merchant {id}")))?;
            let shown = json!({"merchant_id": merchant.merchant_id, "name": merchant.name,
                               "created_at": merchant.created_at});
            Ok(shown.to_string())
        }
        Command::Keys {
            command: KeyCommand::Create { merchant },
        } => {
            let id = merchant_id(&merchant)?;
            let key = new_key(&id, now)?;
            match store.add_api_key(&key.record).await {
                Ok(()) => Ok(issued(&id, &key)),
                Err(StoreError::ConditionFailed) => Err(Failure(format!("no merchant {id}"))),
                Err(err @ StoreError::Unavailable(_)) => Err(unknown_outcome(&id, err)),
                Err(err) => Err(err.into()),
            }
        }
        Command::Keys {
            command:
                KeyCommand::Revoke {
                    merchant,
                    key_prefix,
                },
        } => {
            let id = merchant_id(&merchant)?;
            let prefix = public_prefix(&key_prefix)?;
            match store
                .revoke_api_key(&id, prefix, Timestamp::from_datetime(now))
                .await
            {
                Ok(key) => Ok(json!({"merchant_id": id, "key_prefix": key.key_prefix,
                                     "revoked_at": key.revoked_at})
                .to_string()),
                Err(RevokeError::NotFound) => {
                    Err(Failure(format!("no key of {id} starts with {prefix}")))
                }
                Err(RevokeError::Ambiguous) => {
                    Err(Failure(format!("several keys of {id} start with {prefix}")))
                }
                Err(RevokeError::Store(err)) => Err(err.into()),
            }
        }
    }
}

/// `webhooks redrive`: every message's range, then one line with what was done.
async fn redrive(
    store: &Store,
    sdk_config: &aws_config::SdkConfig,
    file: &str,
    units_per_second: f64,
) -> Result<String, Failure> {
    use payments_admin::redrive;
    let mut text = String::new();
    let read = if file == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(file).map(|t| text = t)
    };
    read.map_err(|e| Failure(format!("cannot read {file}: {e}")))?;
    let messages = redrive::parse_messages(&text).map_err(Failure)?;
    // DynamoDB Local serves the stream at the table's own endpoint.
    let mut config = aws_sdk_dynamodbstreams::config::Builder::from(sdk_config);
    if let Ok(url) = std::env::var("AWS_ENDPOINT_URL_DYNAMODB_STREAMS")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL_DYNAMODB"))
    {
        config = config.endpoint_url(url);
    }
    let streams = aws_sdk_dynamodbstreams::Client::from_conf(config.build());
    let (mut records, mut failed, mut errors) = (0, 0, Vec::new());
    let clock = shared::clock::SystemClock;
    let mut from_table = 0;
    for message in &messages {
        let done = match redrive::redrive(store, &streams, &clock, message).await {
            // Past the stream's 24 hours: the events of its arrival window, from the table.
            Err(redrive::RedriveError::Trimmed { .. }) => {
                from_table += 1;
                redrive::redrive_from_table(store, &clock, message, units_per_second).await
            }
            other => other,
        };
        match done {
            Ok(done) => {
                records += done.records;
                failed += done.failed_records;
            }
            Err(err) => errors.push(err.to_string()),
        }
    }
    let summary = json!({"messages": messages.len(), "records": records,
                         "failed_records": failed, "read_from_table": from_table,
                         "errors": errors});
    if errors.is_empty() && failed == 0 {
        Ok(summary.to_string())
    } else {
        Err(Failure(format!(
            "{summary}: records the relay failed again are in its log"
        )))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(Failure(message)) => {
            eprintln!("payments-admin: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_prefix_is_its_first_ascii_characters() {
        assert_eq!(
            public_prefix("sk_0123456789abcdef").ok(),
            Some("sk_012345678")
        );
        for bad in [
            "",
            "sk_0123",
            "pk_0123456789",
            "sk_éééééééééé",
            "sk_01234567é",
            "ééééééééééééé",
        ] {
            assert!(public_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
