//! Commands gathered into batches: many per transaction, one commit for all of them.
//!
//! A write's cost is mostly per transaction: on SQLite with `synchronous=FULL`, an fsync per
//! commit; on PostgreSQL, round trips, a snapshot and a commit record. Under load, requests
//! arrive faster than one transaction finishes, so the commands that queue up while a batch runs
//! go together in the next one (group commit). A command alone is a batch of one and waits for
//! nothing. One runner on SQLite (it has one writer); on PostgreSQL `SPEND_BATCH_RUNNERS` (by
//! default one per core) commit batches at once, each for its own share of the wallets: a
//! wallet's commands always go to the same runner, so two runners never queue for one wallet's
//! lock (they took turns on a busy wallet, each batch waiting for the other's commit), and all
//! of a busy wallet's waiting commands go in one batch.
//!
//! A batch is one call of [`writer::apply`]: read, judge in the core (each command in order,
//! against the wallets as the commands before it left them, so each gets the answer it would
//! have had alone), write, commit. No command is answered before its batch has committed: a
//! refusal may depend on an earlier command of the same batch. When a batch fails as a whole (a
//! database error), each of its commands runs again as a batch of one, so that one bad command
//! cannot fail the others; idempotency keys make that safe.
//!
//! Two lanes ([`Lane`]): commands a caller is waiting on (a spend, a hold before an LLM call is
//! sent), and commands nobody waits on (an LLM call's capture once its answer has gone out). A batch takes the waiting lane's commands first and adds later ones only when none
//! is waiting, or when they have waited `LATER_PATIENCE`; so a hold does not queue behind the
//! captures of the calls answered just before it, and a capture is never held back for long.

use std::{collections::VecDeque, sync::Arc, time::Instant};

use sea_orm::{DatabaseConnection, DbBackend, DbErr};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

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

/// The longest a command nobody waits on is passed over for commands somebody waits on.
const LATER_PATIENCE: std::time::Duration = std::time::Duration::from_millis(20);

/// Which lane a command goes in: `Now` when somebody is waiting on its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Now,
    /// Passed over for `Now` commands by at most `LATER_PATIENCE`.
    Later,
}

struct Job {
    command: Command,
    reply: oneshot::Sender<Verdict>,
    queued: Instant,
}

/// One runner's two lanes, as callers hold them.
struct Queue {
    now: mpsc::Sender<Job>,
    later: mpsc::Sender<Job>,
}

/// One runner's side of its two lanes.
struct Lanes {
    now: mpsc::Receiver<Job>,
    later: mpsc::Receiver<Job>,
    /// Commands taken off `later` and passed over, oldest first.
    waiting: VecDeque<Job>,
}

impl Lanes {
    /// The next batch: commands somebody waits on, then commands nobody waits on if there was
    /// none or they have waited long enough. Waits for a command; `None` once both lanes closed.
    async fn next_batch(&mut self) -> Option<Vec<Job>> {
        let mut batch = Vec::new();
        self.gather_later();
        if self.waiting.is_empty() {
            tokio::select! {
                biased;
                job = self.now.recv() => batch.push(job?),
                job = self.later.recv() => self.waiting.push_back(job?),
            }
        }
        while batch.len() < MAX_BATCH {
            match self.now.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        self.gather_later();
        let anyone_waits = !batch.is_empty();
        while batch.len() < MAX_BATCH
            && self.waiting.front().is_some_and(|job| !anyone_waits || job.queued.elapsed() >= LATER_PATIENCE)
        {
            batch.extend(self.waiting.pop_front());
        }
        Some(batch)
    }

    /// Moves what the later lane holds behind the commands already passed over.
    fn gather_later(&mut self) {
        while let Ok(job) = self.later.try_recv() {
            self.waiting.push_back(job);
        }
    }
}

/// The ledger's writer as the application holds it: the database, the clock, and each batch
/// runner's queue (none: each command is its own batch). Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    db: DatabaseConnection,
    clock: Clock,
    queues: Arc<[Queue]>,
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
        let unqueued = Self { db, clock, queues: Arc::new([]), signal };
        let mut queues = Vec::new();
        for _ in 0..runners {
            let (now_tx, now) = mpsc::channel(QUEUE_CAPACITY);
            let (later_tx, later) = mpsc::channel(QUEUE_CAPACITY);
            queues.push(Queue { now: now_tx, later: later_tx });
            let lanes = Lanes { now, later, waiting: VecDeque::new() };
            tokio::spawn(run(unqueued.clone(), lanes, metrics.clone(), wal_restart.clone()));
        }
        Self { queues: queues.into(), ..unqueued }
    }

    /// A writer without runners: each command is its own batch (the command line).
    pub fn direct(db: DatabaseConnection, clock: Clock) -> Self {
        Self { db, clock, queues: Arc::new([]), signal: crate::events::Signal::default() }
    }

    /// The runner whose share of the wallets `user_id`'s is.
    fn queue(&self, user_id: Uuid) -> Option<&Queue> {
        let (high, low) = user_id.as_u64_pair();
        let n = self.queues.len() as u64;
        if n == 0 { None } else { self.queues.get(usize::try_from((high ^ low) % n).unwrap_or(0)) }
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
        self.submit_in(Lane::Now, command).await
    }

    /// As `submit`, in `lane`: a command nobody is waiting on (an LLM call's capture after its
    /// answer went out) goes after the commands somebody waits on, by at most `LATER_PATIENCE`.
    pub async fn submit_in(&self, lane: Lane, command: Command) -> Verdict {
        let queue = self.queue(command.user_id).map(|q| match lane {
            Lane::Now => &q.now,
            Lane::Later => &q.later,
        });
        if let Some(queue) = queue {
            let (reply, answer) = oneshot::channel();
            match queue.send(Job { command, reply, queued: Instant::now() }).await {
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

/// Takes the commands waiting in the lanes, up to `MAX_BATCH`, and runs them as one batch.
async fn run(ledger: Ledger, mut lanes: Lanes, metrics: Metrics, wal_restart: WalRestart) {
    loop {
        let Some(batch) = lanes.next_batch().await else { return };
        metrics.ledger_batch_size.observe(batch.len() as f64);
        let spends = batch.iter().filter(|job| matches!(job.command.op, Op::Spend { .. })).count();
        if spends > 0 {
            metrics.spend_batch_size.observe(spends as f64);
        }
        let (commands, replies): (Vec<Command>, Vec<_>) = batch.into_iter().map(|j| (j.command, j.reply)).unzip();
        let started = Instant::now();
        let (verdicts, alone) = ledger.run_batch(commands).await;
        metrics.ledger_batch_seconds.observe(started.elapsed().as_secs_f64());
        metrics.spends_run_alone.inc_by(alone as u64);
        for (reply, verdict) in replies.into_iter().zip(verdicts) {
            let _ = reply.send(verdict);
        }
        // Between two batches: the one moment the writer can let a long WAL start over.
        wal_restart.finish_if_asked(&ledger.db).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(user_id: Uuid, queued: Instant) -> Job {
        let command = Command { user_id, key: None, op: Op::Release { hold_id: Uuid::new_v4() } };
        Job { command, reply: oneshot::channel().0, queued }
    }

    fn lanes() -> (Queue, Lanes) {
        let (now_tx, now) = mpsc::channel(16);
        let (later_tx, later) = mpsc::channel(16);
        (Queue { now: now_tx, later: later_tx }, Lanes { now, later, waiting: VecDeque::new() })
    }

    fn users(batch: &[Job]) -> Vec<Uuid> {
        batch.iter().map(|j| j.command.user_id).collect()
    }

    #[tokio::test]
    async fn commands_somebody_waits_on_go_before_captures_nobody_waits_on() {
        let (queue, mut lanes) = lanes();
        let (capture, hold) = (Uuid::new_v4(), Uuid::new_v4());
        queue.later.try_send(job(capture, Instant::now())).map_err(|_| ()).unwrap();
        queue.now.try_send(job(hold, Instant::now())).map_err(|_| ()).unwrap();
        // The hold goes alone, although the capture was queued first...
        assert_eq!(users(&lanes.next_batch().await.unwrap()), vec![hold]);
        // ...and the capture next, with nothing waiting.
        assert_eq!(users(&lanes.next_batch().await.unwrap()), vec![capture]);
    }

    #[tokio::test]
    async fn a_capture_passed_over_long_enough_goes_with_the_next_waiting_command() {
        let (queue, mut lanes) = lanes();
        let (old, fresh, hold) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let long_ago = Instant::now().checked_sub(LATER_PATIENCE * 2).unwrap();
        queue.later.try_send(job(old, long_ago)).map_err(|_| ()).unwrap();
        queue.later.try_send(job(fresh, Instant::now())).map_err(|_| ()).unwrap();
        queue.now.try_send(job(hold, Instant::now())).map_err(|_| ()).unwrap();
        assert_eq!(users(&lanes.next_batch().await.unwrap()), vec![hold, old]);
        assert_eq!(users(&lanes.next_batch().await.unwrap()), vec![fresh]);
    }

    #[tokio::test]
    async fn each_wallet_has_one_runner_and_the_wallets_are_shared_out() {
        let queues: Vec<Queue> = (0..4).map(|_| lanes().0).collect();
        let ledger = Ledger {
            db: sea_orm::DatabaseConnection::default(),
            clock: Clock::system(),
            queues: queues.into(),
            signal: Default::default(),
        };
        let runner = |user: Uuid| {
            let queue = ledger.queue(user).unwrap();
            ledger.queues.iter().position(|q| std::ptr::eq(q, queue)).unwrap()
        };
        let mut used = std::collections::HashSet::new();
        for _ in 0..64 {
            let user = Uuid::new_v4();
            assert_eq!(runner(user), runner(user));
            used.insert(runner(user));
        }
        assert_eq!(used.len(), 4, "64 wallets over 4 runners used {used:?}");
    }
}
