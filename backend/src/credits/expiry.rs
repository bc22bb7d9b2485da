//! What time does to the books, posted even when no request touches a wallet: lots past their
//! expiry and holds past their time, settled by the background task and `tollgate expire`.

use super::{
    batch::Ledger,
    core::{Command, Op},
    error::CreditsError,
    store,
};

/// Wallets settled per transaction.
const CHUNK: usize = 64;

/// Posts expiry for every wallet with lots past their expiry or holds past their time to live.
/// Returns how many wallets it settled.
pub async fn expire_due(ledger: &Ledger) -> Result<usize, CreditsError> {
    let users = store::users_with_something_due(ledger.db(), ledger.clock().now()).await?;
    for chunk in users.chunks(CHUNK) {
        let commands: Vec<Command> =
            chunk.iter().map(|user_id| Command { user_id: *user_id, key: None, op: Op::Settle }).collect();
        for verdict in ledger.apply_together(commands).await {
            verdict?;
        }
    }
    Ok(users.len())
}
