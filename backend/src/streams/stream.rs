//! One open stream: what it sends, in order. First the `retry:` hint; then, when the client
//! resumes with `Last-Event-ID`, every event of the wallet after that one, read from the outbox
//! page by page; then the live events the hub hands it, each sent once (a frame the replay sent
//! already is skipped by its seq); a `: heartbeat` comment when nothing was sent for a while. It
//! ends when the server shuts down, or when its client fell so far behind that the hub dropped it.

use std::{sync::Arc, time::Duration};

use actix_web::web::Bytes;
use sea_orm::DatabaseConnection;
use tokio::{sync::watch, time::Instant};
use uuid::Uuid;

use super::hub::{Filter, Frame, Subscription, visible};

/// How long a client waits before reconnecting, sent as `retry:` (milliseconds).
pub const RETRY_MILLISECONDS: u64 = 2000;
/// Events read from the outbox per page of a replay.
const REPLAY_PAGE: u64 = 200;
/// Waiting frames are sent together in one chunk up to about this size.
const COALESCE_BYTES: usize = 32 * 1024;

/// What woke a live stream.
enum Woken {
    Closing,
    Frame(Option<Arc<Frame>>),
    Heartbeat,
}

pub struct EventStream {
    db: DatabaseConnection,
    customer: Uuid,
    subscription: Subscription,
    /// The seq of the last event sent (or of the point the stream started from).
    last: i64,
    /// Still reading the outbox after `Last-Event-ID`.
    replaying: bool,
    started: bool,
    ended: bool,
    closing: watch::Receiver<bool>,
    heartbeat: Duration,
    next_heartbeat: Instant,
}

impl EventStream {
    /// A stream of `customer`'s events: after `after` (the seq of the client's `Last-Event-ID`)
    /// by way of the outbox, or those the hub hands over from now when the client names none.
    pub fn new(
        db: DatabaseConnection,
        customer: Uuid,
        subscription: Subscription,
        after: Option<i64>,
        closing: watch::Receiver<bool>,
        heartbeat: Duration,
    ) -> Self {
        // Without an id, every event the hub hands over after joining it is new (a late commit
        // with a lower seq than the hub's head included).
        let last = after.unwrap_or(0);
        Self {
            db,
            customer,
            replaying: after.is_some(),
            subscription,
            last,
            started: false,
            ended: false,
            closing,
            heartbeat,
            next_heartbeat: Instant::now() + heartbeat,
        }
    }

    /// The response body: chunks until the stream ends.
    pub fn into_body(self) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> {
        futures_util::stream::unfold(self, |mut stream| async move {
            let chunk = stream.next_chunk().await?;
            Some((Ok(chunk), stream))
        })
    }

    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.ended || *self.closing.borrow() {
            return None;
        }
        if !self.started {
            self.started = true;
            return Some(Bytes::from(format!("retry: {RETRY_MILLISECONDS}\n\n")));
        }
        if self.replaying {
            let filter = Filter::After { after: self.last, customer: Some(self.customer) };
            match visible(&self.db, filter, REPLAY_PAGE).await {
                Ok(page) => {
                    if (page.len() as u64) < REPLAY_PAGE {
                        self.replaying = false;
                    }
                    if !page.is_empty() {
                        let mut out = Vec::new();
                        for event in &page {
                            out.extend_from_slice(&Frame::render(event).bytes);
                            self.last = event.position.seq;
                        }
                        self.sent();
                        return Some(Bytes::from(out));
                    }
                }
                Err(e) => {
                    // The client reconnects and resumes from what it got.
                    log::warn!("event stream: cannot read the outbox: {e}");
                    return None;
                }
            }
        }
        loop {
            let woken = tokio::select! {
                biased;
                _ = self.closing.changed() => Woken::Closing,
                frame = self.subscription.rx.recv() => Woken::Frame(frame),
                _ = tokio::time::sleep_until(self.next_heartbeat) => Woken::Heartbeat,
            };
            match woken {
                Woken::Closing => {
                    if *self.closing.borrow() {
                        return None;
                    }
                }
                Woken::Frame(None) => {
                    // Dropped by the hub: the client fell behind. Say so, then end.
                    self.ended = true;
                    return Some(Bytes::from_static(b": too far behind; reconnect with Last-Event-ID\n\n"));
                }
                Woken::Frame(Some(frame)) => {
                    let mut out: Vec<u8> = Vec::new();
                    self.take(&frame, &mut out);
                    while out.len() < COALESCE_BYTES {
                        let Ok(more) = self.subscription.rx.try_recv() else { break };
                        self.take(&more, &mut out);
                    }
                    if !out.is_empty() {
                        self.sent();
                        return Some(Bytes::from(out));
                    }
                }
                Woken::Heartbeat => {
                    self.sent();
                    return Some(Bytes::from_static(b": heartbeat\n\n"));
                }
            }
        }
    }

    /// Appends a live frame unless the replay sent it already.
    fn take(&mut self, frame: &Arc<Frame>, out: &mut Vec<u8>) {
        if frame.seq > self.last {
            self.last = frame.seq;
            out.extend_from_slice(&frame.bytes);
        }
    }

    fn sent(&mut self) {
        self.next_heartbeat = Instant::now() + self.heartbeat;
    }
}
