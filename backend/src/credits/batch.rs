//! Spends gathered into batches: many spends per transaction, one commit for all of them.
//!
//! A spend's cost is mostly per transaction: on SQLite with `synchronous=FULL`, an fsync per
//! commit; on PostgreSQL, a round trip, a snapshot and a commit record per call. Under load,
//! requests arrive faster than one transaction finishes, so the spends that queue up while a
//! batch runs go together in the next one (group commit). A spend alone is a batch of one and
//! waits for nothing.
//!
//! - PostgreSQL: one call to `tollgate_spend_batch`, which locks the batch's wallets in one
//!   order and runs `tollgate_spend` on each spend. Several runners take batches at once.
//! - SQLite: one `BEGIN IMMEDIATE` transaction on the one connection. A spend reads, then writes
//!   in one call; one whose wallet has something to settle runs the general path in a savepoint,
//!   so a refusal rolls back the expiry it posted and nothing else.
//!
//! No spend is answered before its batch has committed: a refusal may depend on an earlier spend
//! of the same batch. Whatever the batch could not settle (a wallet with something to expire
//! first on PostgreSQL, a database error, a failed commit) runs again on its own through the
//! general path, which the idempotency key makes safe: a spend the batch did commit replays.

use std::sync::Arc;

use chrono::Utc;
use sea_orm::{DatabaseConnection, DbBackend, TransactionTrait};
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use super::{
    ledger::{self, BatchedSpend},
    service::{self, CreditsError, Outcome, PricedSpend, SpendCommand, SpendResult, SqliteStep},
};
use crate::{db, idempotency::IdempotentRequest, metrics::Metrics};

/// At most this many spends share a transaction.
const MAX_BATCH: usize = 64;

/// Queued spends waiting for a runner.
const QUEUE_CAPACITY: usize = 4096;

struct Job {
    user_id: Uuid,
    request: IdempotentRequest,
    spend: PricedSpend,
    reply: oneshot::Sender<SpendResult>,
}

/// The queue that spends join; cheap to clone.
#[derive(Clone)]
pub struct SpendBatcher {
    db: DatabaseConnection,
    queue: mpsc::Sender<Job>,
}

impl SpendBatcher {
    /// Starts the runners on the current Tokio runtime: one on SQLite (it has one writer), up to
    /// four on PostgreSQL, leaving connections of `pool_size` for everything else.
    pub fn start(db: DatabaseConnection, pool_size: u32, metrics: Metrics) -> Self {
        let runners = match db::backend(&db) {
            DbBackend::Postgres => (pool_size / 2).clamp(1, 4),
            _ => 1,
        };
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..runners {
            tokio::spawn(run(db.clone(), receiver.clone(), metrics.clone()));
        }
        Self { db, queue }
    }

    /// Spends credits from the user's wallet, in the next batch.
    pub async fn spend(&self, user_id: Uuid, request: &IdempotentRequest, command: SpendCommand) -> SpendResult {
        let spend = PricedSpend::of(&self.db, command).await?;
        let (reply, answer) = oneshot::channel();
        let job = Job { user_id, request: request.clone(), spend: spend.clone(), reply };
        if self.queue.send(job).await.is_ok()
            && let Ok(answer) = answer.await
        {
            return answer;
        }
        // The runners are gone (the runtime is shutting down): spend alone. If the batch did
        // commit this spend, the key replays it.
        service::spend_priced(&self.db, user_id, request, &spend).await
    }
}

/// Takes the spends waiting in the queue, up to `MAX_BATCH`, and runs them as one batch.
async fn run(db: DatabaseConnection, receiver: Arc<Mutex<mpsc::Receiver<Job>>>, metrics: Metrics) {
    loop {
        let mut batch = Vec::new();
        {
            let mut receiver = receiver.lock().await;
            match receiver.recv().await {
                Some(job) => batch.push(job),
                None => return,
            }
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        metrics.spend_batch_size.observe(batch.len() as f64);
        let leftover = run_batch(&db, batch).await;
        metrics.spends_run_alone.inc_by(leftover.len() as u64);
        // What the batch could not settle runs on its own, beside the next batches.
        for job in leftover {
            let db = db.clone();
            tokio::spawn(run_alone(db, job));
        }
    }
}

/// Runs spends as one batch, then whatever it left alone, and answers in the order given (what
/// the runners do, without the queue).
pub async fn spend_together(
    db: &DatabaseConnection,
    spends: Vec<(Uuid, IdempotentRequest, PricedSpend)>,
) -> Vec<SpendResult> {
    let mut answers = Vec::with_capacity(spends.len());
    let mut batch = Vec::with_capacity(spends.len());
    for (user_id, request, spend) in spends {
        let (reply, answer) = oneshot::channel();
        batch.push(Job { user_id, request, spend, reply });
        answers.push(answer);
    }
    for job in run_batch(db, batch).await {
        run_alone(db.clone(), job).await;
    }
    let mut results = Vec::with_capacity(answers.len());
    for answer in answers {
        results.push(answer.await.unwrap_or_else(|_| {
            Err(CreditsError::Database(sea_orm::DbErr::Custom("a batched spend was never answered".to_owned())))
        }));
    }
    results
}

/// Answers what it can of one batch; returns the jobs to run alone.
async fn run_batch(db: &DatabaseConnection, batch: Vec<Job>) -> Vec<Job> {
    match db::backend(db) {
        DbBackend::Postgres => run_postgres(db, batch).await,
        _ => run_sqlite(db, batch).await,
    }
}

async fn run_alone(db: DatabaseConnection, job: Job) {
    let answer = service::spend_priced(&db, job.user_id, &job.request, &job.spend).await;
    let _ = job.reply.send(answer);
}

/// One call to `tollgate_spend_batch`. Returns the jobs to run alone.
async fn run_postgres(db: &DatabaseConnection, batch: Vec<Job>) -> Vec<Job> {
    let now = Utc::now();
    let transfers: Vec<_> = batch.iter().map(|job| job.spend.transfer(&job.request, now)).collect();
    let mut spends = Vec::with_capacity(batch.len());
    for (job, transfer) in batch.iter().zip(&transfers) {
        match PricedSpend::view(transfer) {
            Ok(view) => spends.push(BatchedSpend { user_id: job.user_id, transfer, idempotency: &job.request, view }),
            Err(_) => return batch,
        }
    }
    let outcomes = match ledger::spend_batch_in_database(db, &spends, now).await {
        Ok(outcomes) => outcomes,
        Err(e) => {
            if !db::is_unique_violation(&e) && !db::is_unavailable(&e) {
                log::warn!("spend batch of {} failed, running each alone: {e}", batch.len());
            }
            return batch;
        }
    };
    let mut leftover = Vec::new();
    for (job, outcome) in batch.into_iter().zip(outcomes) {
        match service::answer_from_database(outcome, job.spend.amount) {
            Some(answer) => {
                let _ = job.reply.send(answer);
            }
            None => leftover.push(job),
        }
    }
    leftover
}

/// One `BEGIN IMMEDIATE` transaction. A spend reads, then writes in one call; a spend whose wallet
/// has something to settle runs the general path inside a savepoint of its own, so a refusal takes
/// its expiry back with it. Returns the jobs to run alone.
async fn run_sqlite(db: &DatabaseConnection, batch: Vec<Job>) -> Vec<Job> {
    let Ok(txn) = db::begin_write(db).await else {
        return batch;
    };
    let now = Utc::now();
    let mut answered: Vec<(Job, SpendResult)> = Vec::with_capacity(batch.len());
    let mut leftover = Vec::new();
    let mut jobs = batch.into_iter();
    while let Some(job) = jobs.next() {
        let step = service::spend_sqlite_batched(&txn, job.user_id, &job.request, &job.spend, now).await;
        let kept = match step {
            Ok(SqliteStep::Answered(answer)) => Ok(Some(answer)),
            Ok(SqliteStep::Settle) => settle_then_spend(&txn, &job, now).await,
            Ok(SqliteStep::Failed(e)) => {
                log::warn!("a batched spend's writes failed; the batch is rolled back and runs alone: {e}");
                Err(())
            }
            // A read failed: nothing was written.
            Err(_) => Ok(None),
        };
        match kept {
            Ok(Some(answer)) => answered.push((job, answer)),
            Ok(None) => leftover.push(job),
            Err(()) => {
                // What the spend wrote cannot be told apart from the batch's: commit nothing, and
                // every spend runs again alone.
                drop(txn);
                leftover.push(job);
                leftover.extend(answered.into_iter().map(|(job, _)| job));
                leftover.extend(jobs);
                return leftover;
            }
        }
    }
    if txn.commit().await.is_err() {
        // Nothing was committed: every spend runs again alone.
        leftover.extend(answered.into_iter().map(|(job, _)| job));
        return leftover;
    }
    for (job, answer) in answered {
        let _ = job.reply.send(answer);
    }
    leftover
}

/// The general path for one spend of a batch, in a savepoint: `Ok(Some)` answered, `Ok(None)` to
/// run alone (nothing kept), `Err` when the savepoint could not be closed.
async fn settle_then_spend(
    txn: &sea_orm::DatabaseTransaction,
    job: &Job,
    now: chrono::DateTime<Utc>,
) -> Result<Option<SpendResult>, ()> {
    let Ok(savepoint) = txn.begin().await else {
        return Ok(None);
    };
    let answer = service::spend_general(&savepoint, job.user_id, &job.request, &job.spend, now).await;
    let closed = match &answer {
        Ok(Outcome::Fresh(_)) => savepoint.commit().await,
        // A replay or a refusal keeps nothing: a refusal may have settled an expiry, which goes
        // with it, and an error may have stopped halfway through the writes.
        _ => savepoint.rollback().await,
    };
    match (closed, answer) {
        (Err(_), _) => Err(()),
        (Ok(()), Err(CreditsError::Database(_))) => Ok(None),
        (Ok(()), answer) => Ok(Some(answer)),
    }
}
