//! Spends gathered into batches: many spends per transaction, one commit for all of them.
//!
//! A spend's cost is mostly per transaction: on SQLite with `synchronous=FULL`, an fsync per
//! commit; on PostgreSQL, a round trip, a snapshot and a commit record per call. Under load,
//! requests arrive faster than one transaction finishes, so the spends that queue up while a
//! batch runs go together in the next one (group commit). A spend alone is a batch of one and
//! waits for nothing.
//!
//! A batch is one writing transaction on either database (`bulk::spend_and_commit`): its wallets
//! are locked and read, with their lots and the batch's idempotency records, in a few statements;
//! the spends are judged in memory, in order; what they decided is written with one statement
//! per table. One runner on SQLite (it has one writer); on PostgreSQL `SPEND_BATCH_RUNNERS`
//! (by default one per core) commit batches at once.
//!
//! No spend is answered before its batch has committed: a refusal may depend on an earlier spend
//! of the same batch. Whatever the batch could not settle (a wallet with something to expire
//! first, a database error, a failed commit) runs again on its own through the
//! general path, which the idempotency key makes safe: a spend the batch did commit replays.

use std::sync::Arc;

use chrono::{SubsecRound, Utc};
use sea_orm::{DatabaseConnection, DbBackend};
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use super::{
    bulk,
    service::{self, CreditsError, PricedSpend, SpendCommand, SpendResult},
};
use crate::{
    db::{self, WalRestart},
    idempotency::IdempotentRequest,
    metrics::Metrics,
};

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
    /// Starts the runners on the current Tokio runtime: `runners` on PostgreSQL, one on SQLite
    /// (it has one writer).
    pub fn start(db: DatabaseConnection, runners: u32, metrics: Metrics, wal_restart: WalRestart) -> Self {
        let runners = match db::backend(&db) {
            DbBackend::Postgres => runners.max(1),
            _ => 1,
        };
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..runners {
            tokio::spawn(run(db.clone(), receiver.clone(), metrics.clone(), wal_restart.clone()));
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
async fn run(
    db: DatabaseConnection,
    receiver: Arc<Mutex<mpsc::Receiver<Job>>>,
    metrics: Metrics,
    wal_restart: WalRestart,
) {
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
        // Between two batches: the one moment the spend writer can let a long WAL start over.
        wal_restart.finish_if_asked(&db).await;
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

/// Runs one batch in one writing transaction (`bulk::spend_and_commit`) and answers what it
/// settled once it has committed; returns the jobs to run alone. If anything fails, nothing is
/// committed and every job runs alone.
async fn run_batch(db: &DatabaseConnection, batch: Vec<Job>) -> Vec<Job> {
    // Stored to the microsecond on PostgreSQL: the answer shows what the ledger will show.
    let now = Utc::now().trunc_subsecs(6);
    let spends: Vec<bulk::Spend> = batch
        .iter()
        .map(|job| bulk::Spend { user_id: job.user_id, request: &job.request, spend: &job.spend })
        .collect();
    let answers = match bulk::spend_and_commit(db, &spends, now).await {
        Ok(answers) => answers,
        Err(e) => {
            // A racing replica that committed one of the keys first, or a database outage, is
            // expected; anything else is worth a look.
            if !db::is_unique_violation(&e) && !db::is_unavailable(&e) {
                log::warn!("spend batch of {} failed, running each alone: {e}", batch.len());
            }
            return batch;
        }
    };
    drop(spends);
    let mut leftover = Vec::new();
    for (job, answer) in batch.into_iter().zip(answers) {
        match answer {
            Some(answer) => {
                let _ = job.reply.send(answer);
            }
            None => leftover.push(job),
        }
    }
    leftover
}

async fn run_alone(db: DatabaseConnection, job: Job) {
    let answer = service::spend_priced(&db, job.user_id, &job.request, &job.spend).await;
    let _ = job.reply.send(answer);
}
