//! Commands gathered into batches: many per transaction, one commit for all of them.
//!
//! A write's cost is mostly per transaction: on SQLite with `synchronous=FULL`, an fsync per
//! commit; on PostgreSQL, round trips, a snapshot and a commit record. Under load, requests
//! arrive faster than one transaction finishes, so the commands that queue up while a batch runs
//! go together in the next one (group commit). A command alone is a batch of one and waits for
//! nothing. One runner on SQLite (it has one writer); on PostgreSQL `SPEND_BATCH_RUNNERS` (by
//! default one per core) commit batches at once.
//!
//! A batch is one call of [`writer::apply`]: read, judge in the core (each command in order,
//! against the wallets as the commands before it left them, so each gets the answer it would
//! have had alone), write, commit. No command is answered before its batch has committed: a
//! refusal may depend on an earlier command of the same batch. When a batch fails as a whole (a
//! database error), each of its commands runs again as a batch of one, so that one bad command
//! cannot fail the others; idempotency keys make that safe.

use std::sync::Arc;

use sea_orm::{DatabaseConnection, DbBackend, DbErr};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{
    core::{Command, Op, Verdict},
    error::CreditsError,
    writer,
};
use crate::{
    clock::Clock,
    db::{self, WalRestart},
    metrics::Metrics,
};

/// At most this many commands share a transaction.
const MAX_BATCH: usize = 64;

/// Queued commands waiting for a runner.
const QUEUE_CAPACITY: usize = 4096;

struct Job {
    command: Command,
    reply: oneshot::Sender<Verdict>,
}

/// The ledger's writer as the application holds it: the database, the clock, and the queue the
/// batch runners take commands from. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    db: DatabaseConnection,
    clock: Clock,
    queue: Option<mpsc::Sender<Job>>,
    /// Rung after every committed batch (its events are readable).
    signal: crate::events::Signal,
}

impl Ledger {
    /// Starts the runners on the current Tokio runtime: `runners` on PostgreSQL, one on SQLite.
    pub fn start(
        db: DatabaseConnection,
        clock: Clock,
        runners: u32,
        metrics: Metrics,
        wal_restart: WalRestart,
        signal: crate::events::Signal,
    ) -> Self {
        let runners = match db::backend(&db) {
            DbBackend::Postgres => runners.max(1),
            _ => 1,
        };
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let receiver = Arc::new(Mutex::new(receiver));
        let ledger = Self { db, clock, queue: Some(queue), signal };
        for _ in 0..runners {
            tokio::spawn(run(ledger.unqueued(), receiver.clone(), metrics.clone(), wal_restart.clone()));
        }
        ledger
    }

    /// A writer without runners: each command is its own batch (the command line).
    pub fn direct(db: DatabaseConnection, clock: Clock) -> Self {
        Self { db, clock, queue: None, signal: crate::events::Signal::default() }
    }

    fn unqueued(&self) -> Self {
        Self { db: self.db.clone(), clock: self.clock.clone(), queue: None, signal: self.signal.clone() }
    }

    /// The signal rung after each committed batch.
    pub fn events(&self) -> &crate::events::Signal {
        &self.signal
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Judges and writes one command in the next batch; answers once the batch has committed.
    pub async fn submit(&self, command: Command) -> Verdict {
        if let Some(queue) = &self.queue {
            let (reply, answer) = oneshot::channel();
            match queue.send(Job { command, reply }).await {
                Ok(()) => {
                    if let Ok(verdict) = answer.await {
                        return verdict;
                    }
                    return Err(CreditsError::Database(DbErr::Custom("the ledger's writer stopped".to_owned())));
                }
                // The runners are gone (the runtime is shutting down): write alone.
                Err(mpsc::error::SendError(job)) => return self.alone(job.command).await,
            }
        }
        self.alone(command).await
    }

    /// Judges and writes `commands` as one batch, in order (what a runner does, without the
    /// queue), with the same fallback.
    pub async fn apply_together(&self, commands: Vec<Command>) -> Vec<Verdict> {
        let (verdicts, _) = self.run_batch(commands).await;
        verdicts
    }

    async fn alone(&self, command: Command) -> Verdict {
        match writer::apply(&self.db, &self.clock, std::slice::from_ref(&command)).await {
            Ok(mut verdicts) => {
                self.signal.bump();
                verdicts.pop().unwrap_or_else(|| Err(no_verdict()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One batch; when it fails as a whole, each command alone. Returns the verdicts and how
    /// many commands ran alone.
    async fn run_batch(&self, commands: Vec<Command>) -> (Vec<Verdict>, usize) {
        match writer::apply(&self.db, &self.clock, &commands).await {
            Ok(verdicts) => {
                self.signal.bump();
                (verdicts, 0)
            }
            Err(e) if commands.len() == 1 => (vec![Err(e.into())], 0),
            Err(e) => {
                if !db::is_unavailable(&e) {
                    log::warn!("a ledger batch of {} failed, running each alone: {e}", commands.len());
                }
                let mut verdicts = Vec::with_capacity(commands.len());
                for command in &commands {
                    verdicts.push(self.alone(command.clone()).await);
                }
                (verdicts, commands.len())
            }
        }
    }
}

fn no_verdict() -> CreditsError {
    CreditsError::Database(DbErr::Custom("a ledger batch returned no verdict".to_owned()))
}

/// Takes the commands waiting in the queue, up to `MAX_BATCH`, and runs them as one batch.
async fn run(ledger: Ledger, receiver: Arc<Mutex<mpsc::Receiver<Job>>>, metrics: Metrics, wal_restart: WalRestart) {
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
        metrics.ledger_batch_size.observe(batch.len() as f64);
        let spends = batch.iter().filter(|job| matches!(job.command.op, Op::Spend { .. })).count();
        if spends > 0 {
            metrics.spend_batch_size.observe(spends as f64);
        }
        let (commands, replies): (Vec<Command>, Vec<_>) = batch.into_iter().map(|j| (j.command, j.reply)).unzip();
        let (verdicts, alone) = ledger.run_batch(commands).await;
        metrics.spends_run_alone.inc_by(alone as u64);
        for (reply, verdict) in replies.into_iter().zip(verdicts) {
            let _ = reply.send(verdict);
        }
        // Between two batches: the one moment the writer can let a long WAL start over.
        wal_restart.finish_if_asked(&ledger.db).await;
    }
}
