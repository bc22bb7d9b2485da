//! The command line: `tollgate serve` (the default) and the operator's commands.

use clap::{Parser, Subcommand};

use crate::{
    auth,
    clock::Clock,
    config::Settings,
    credits::{
        self, Outcome,
        grants::{GrantCommand, Recipient},
    },
    db,
    domain::{Email, IdempotencyKey, ledger::LotSource},
    idempotency::IdempotentRequest,
    startup::Application,
};

/// Tollgate: credit-based billing for AI features.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API and the SPA (the default). Migrates first unless MIGRATE_ON_START=false.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI spec as YAML (`tollgate openapi > openapi.yaml`).
    Openapi,
    /// Manage users.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Grant credits to a user, as an admin would; the key makes a retry harmless.
    Grant {
        /// The user's email.
        #[arg(long)]
        email: String,
        /// Credits to grant.
        #[arg(long)]
        amount: i64,
        /// Why; shown in the user's history.
        #[arg(long)]
        reason: String,
        /// Idempotency key (default: a new one, so each run grants).
        #[arg(long)]
        key: Option<String>,
    },
    /// Mirror Stripe's active prices (with credits in their metadata) into the catalog.
    SyncPrices,
    /// Post due expiries and release overdue holds now, then exit.
    Expire,
    /// Sandbox mode tools.
    Sandbox {
        #[command(subcommand)]
        command: SandboxCommand,
    },
    /// Check the ledger's invariants; exit 1 on any violation.
    Reconcile {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Start a new period for every sandbox subscription: grant its credits, or end it if it
    /// was set to cancel at period end.
    Renew,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Give a user the admin role.
    Promote {
        /// The user's email.
        email: String,
    },
}

/// Runs the command; the return value is the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Openapi = command {
        print!("{}", crate::openapi::spec_yaml()?);
        return Ok(0);
    }
    let settings = Settings::from_env()?;
    match command {
        Command::Serve => {
            let sandbox = settings.stripe_mode() == "sandbox";
            log::info!(
                "starting Tollgate on http://{} (the {}){}",
                settings.bind,
                db::describe(&settings),
                if sandbox { ", Stripe sandbox mode: no real payments" } else { "" }
            );
            let app = Application::build(settings).await?;
            app.run_until_stopped().await?;
            Ok(0)
        }
        Command::Migrate => {
            eprintln!("tollgate: using the {}", db::describe(&settings));
            let db = db::connect(&settings).await?;
            db::migrate(&db, &settings).await?;
            println!("migrations applied to the {}", db::describe(&settings));
            Ok(0)
        }
        Command::Users { command: UsersCommand::Promote { email } } => {
            let email = Email::parse(&email).map_err(|m| anyhow::anyhow!("email {m}"))?;
            let db = connect_migrated(&settings).await?;
            let user = auth::service::promote(&db, &Clock::system(), &email)
                .await
                .map_err(|e| anyhow::anyhow!("{e}: {email}"))?;
            println!("{} is now an admin", user.email);
            Ok(0)
        }
        Command::Grant { email, amount, reason, key } => {
            let db = connect_migrated(&settings).await?;
            let key = match key {
                Some(k) => IdempotencyKey::parse(&k).map_err(|m| anyhow::anyhow!("--key {m}"))?,
                None => IdempotencyKey::generate(),
            };
            // The same bound as `POST /credits/grant`.
            let amount = credits::spend::parse_amount("--amount", amount, false).map_err(|e| anyhow::anyhow!("{e}"))?;
            let request = IdempotentRequest {
                scope: "admin-cli".to_owned(),
                // Hashed like every fingerprint: the text itself may be longer than the column.
                fingerprint: crate::auth::service::hash_secret(&format!("grant\n{email}\n{amount}\n{reason}")),
                key,
            };
            let command = GrantCommand {
                recipient: Recipient::Email(email),
                amount,
                reason,
                source: LotSource::Grant,
                priority: None,
                expires_at: None,
            };
            match credits::grants::grant(&credits::Ledger::direct(db, Clock::system()), &request, command)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
            {
                Outcome::Fresh(r) => println!("granted {}; balance is now {}", r.transfer.amount, r.balance.balance),
                Outcome::Replayed(_) => println!("already granted with this key; nothing changed"),
            }
            Ok(0)
        }
        Command::Sandbox { command: SandboxCommand::Renew } => {
            let db = connect_migrated(&settings).await?;
            let (renewed, ended) = crate::billing::service::renew_sandbox_subscriptions(&db, &Clock::system())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("renewed {renewed} sandbox subscriptions, ended {ended}");
            Ok(0)
        }
        Command::SyncPrices => {
            let db = connect_migrated(&settings).await?;
            let crate::billing::stripe::PaymentMode::Stripe(gateway) =
                crate::billing::stripe::PaymentMode::from_settings(&settings)?
            else {
                anyhow::bail!("STRIPE_SECRET_KEY is not set: sandbox mode has no Stripe prices to sync");
            };
            let (synced, deactivated) = crate::billing::service::sync_prices(&db, &Clock::system(), &gateway)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("mirrored {synced} prices, deactivated {deactivated}");
            Ok(0)
        }
        Command::Expire => {
            let db = connect_migrated(&settings).await?;
            let n = credits::expiry::expire_due(&credits::Ledger::direct(db, Clock::system()))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("settled {n} wallets");
            Ok(0)
        }
        Command::Reconcile { json } => {
            let db = connect_migrated(&settings).await?;
            let report = credits::reconcile::reconcile(&db, &Clock::system()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
            Ok(if report.ok { 0 } else { 1 })
        }
        Command::Openapi => Ok(0),
    }
}

/// The database of an operator command other than `serve` and `migrate`: it must exist already.
/// Says which one it is on stderr, so that stdout stays the command's own output.
async fn connect_migrated(settings: &Settings) -> anyhow::Result<sea_orm::DatabaseConnection> {
    eprintln!("tollgate: using the {}", db::describe(settings));
    let db = db::connect_existing(settings).await?;
    if settings.migrate_on_start {
        db::migrate(&db, settings).await?;
    }
    Ok(db)
}
