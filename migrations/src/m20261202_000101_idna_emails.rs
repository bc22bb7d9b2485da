//! Emails are now stored with their domain in IDNA ASCII form (`ada@xn--exmple-cua.com`, not
//! `ada@exämple.com`), so that one mailbox is one account. Rewrites the addresses stored before.
//!
//! An address whose ASCII form another account already has is left as it is and reported: two
//! accounts for one mailbox cannot be merged here (each has its own wallet). Until an operator
//! resolves it, signing in with either form reaches the account stored in ASCII.

use sea_orm_migration::{
    prelude::*,
    sea_orm::{ConnectionTrait, Statement},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The same normalisation as `tollgate::domain::Email::normalise`.
fn normalise(email: &str) -> Option<String> {
    let (local, domain) = email.rsplit_once('@')?;
    let domain = idna::domain_to_ascii(domain).ok()?;
    Some(format!("{}@{domain}", local.to_lowercase()))
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let backend = db.get_database_backend();
        let rows = db.query_all_raw(Statement::from_string(backend, "SELECT email FROM users")).await?;
        let mut emails = Vec::with_capacity(rows.len());
        for row in rows {
            emails.push(row.try_get::<String>("", "email")?);
        }
        let taken: std::collections::HashSet<&str> = emails.iter().map(String::as_str).collect();
        let update = match backend {
            sea_orm::DbBackend::Postgres => "UPDATE users SET email = $1 WHERE email = $2",
            _ => "UPDATE users SET email = ? WHERE email = ?",
        };
        let mut renamed = std::collections::HashSet::new();
        for email in &emails {
            // Only the domain can change: stored local parts are already lower-cased.
            let Some(ascii) = normalise(email).filter(|a| a != email) else { continue };
            if taken.contains(ascii.as_str()) || !renamed.insert(ascii.clone()) {
                eprintln!(
                    "migration {}: the account {email:?} is the mailbox of another account ({ascii:?}); \
                     left unchanged, resolve it by hand",
                    self.name()
                );
                continue;
            }
            db.execute_raw(Statement::from_sql_and_values(backend, update, [ascii.into(), email.clone().into()]))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // The ASCII form is the same mailbox: nothing to undo.
        Ok(())
    }
}
