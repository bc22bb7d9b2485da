//! One gateway call, from the hold to the capture. The work upstream runs in a task of its own,
//! so a client that hangs up (mid-stream, or while a non-streamed answer is awaited) cannot cut
//! it short: the upstream is read to its end (within `GATEWAY_DRAIN_SECONDS` once the client is
//! gone) and the call is charged for what the upstream reports.

use std::{sync::Arc, time::Duration};

use actix_web::web::Bytes;
use serde_json::{Map, Value, json};
use tokio::{sync::mpsc, time::Instant};
use uuid::Uuid;

use super::{
    Upstream, calls,
    lease::{Reserved, Ticket},
    pricing::{Prices, TokenUsage},
    sse::{EventSplitter, Reading, event_data, is_usage_only},
    tokens::Tokenizer,
};
use crate::{
    credits::{
        batch::Lane,
        core::{Answer, Command, Measured, Op, TransferDetails},
    },
    domain::Credits,
    entities::models,
    state::AppState,
};

/// The most of a non-streamed answer (or an error body) that is read.
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;
/// The most of one streamed event that is buffered.
const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// A call, held and about to be sent.
pub struct Call {
    pub state: AppState,
    pub upstream: Arc<Upstream>,
    pub owner: Uuid,
    pub model: models::Model,
    pub prices: Prices,
    pub tokenizer: Tokenizer,
    /// The hold and the call's worst case on it; none for a free model.
    pub hold: Option<(Uuid, Credits)>,
    /// The call's place on its wallet, and on a lease (the hold is then the lease's): the
    /// call draws what it used, and the rest of its worst case goes back to the lease when
    /// the call is dropped.
    pub ticket: Option<Ticket>,
    /// The idempotency claim's row, when the call came with a key.
    pub claim: Option<Uuid>,
    pub request_id: String,
    /// The upper bound counted for the input.
    pub input_bound: u64,
    /// The body sent upstream.
    pub body: Vec<u8>,
    /// Whether the client asked for the usage chunk of a stream itself.
    pub client_wants_usage: bool,
}

/// What the upstream answered first.
pub enum Answered {
    /// A non-streamed answer, or an error of the upstream's: status, content type, body.
    Whole { status: u16, content_type: String, body: Bytes, charged: Option<i64> },
    /// A stream: its events, as they come.
    Stream(mpsc::Receiver<Bytes>),
    /// The upstream could not be reached, or did not answer in time.
    Unreachable { timed_out: bool },
}

impl Call {
    /// Sends the call and answers as soon as the upstream does; the rest runs on its own.
    pub async fn run(self, stream: bool) -> Answered {
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let metrics = self.state.metrics.clone();
            let answered = if stream { self.stream(first_tx).await } else { self.whole(first_tx).await };
            let outcome = match answered {
                Ok(outcome) => outcome,
                Err(e) => {
                    log::error!("gateway call: {e:#}");
                    "ledger_error"
                }
            };
            metrics.gateway_calls.with_label_values(&[outcome]).inc();
        });
        first_rx.await.unwrap_or(Answered::Unreachable { timed_out: false })
    }

    async fn send(&self, deadline: Instant) -> Result<reqwest::Response, bool> {
        let mut request = self
            .upstream
            .client
            .post(&self.upstream.completions_url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("x-request-id", &self.request_id)
            .body(self.body.clone());
        if let Some(key) = &self.upstream.key {
            request = request.bearer_auth(key.expose());
        }
        match tokio::time::timeout_at(deadline, request.send()).await {
            Err(_) => Err(true),
            Ok(Err(e)) => {
                let timed_out = e.is_timeout();
                log::warn!("gateway upstream unreachable: {}", e.without_url());
                Err(timed_out)
            }
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// A non-streamed call; returns its outcome, for the metrics.
    async fn whole(self, first: tokio::sync::oneshot::Sender<Answered>) -> anyhow::Result<&'static str> {
        let deadline = Instant::now() + self.upstream.timeout;
        let response = match self.send(deadline).await {
            Ok(response) => response,
            Err(timed_out) => {
                self.charge_nothing().await?;
                let _ = first.send(Answered::Unreachable { timed_out });
                return Ok("upstream_unreachable");
            }
        };
        let status = response.status().as_u16();
        let content_type = content_type(&response);
        let body = match read_all(response, deadline).await {
            Ok(body) => body,
            Err(timed_out) => {
                self.charge_nothing().await?;
                let _ = first.send(Answered::Unreachable { timed_out });
                return Ok("upstream_unreachable");
            }
        };
        if !(200..300).contains(&status) {
            self.charge_nothing().await?;
            let _ = first.send(Answered::Whole { status, content_type, body, charged: None });
            return Ok("upstream_error");
        }
        let mut reading = Reading::default();
        if let Ok(value) = serde_json::from_slice::<Value>(&body) {
            reading.absorb(&value);
        }
        let settlement = self.settlement(&reading, false);
        let charged = settlement.charged();
        let Some(id) = self.claim else {
            // Nobody can ask for this answer again: it goes out now, and the capture is written
            // after it (the hold keeps the credits meanwhile), which spares the caller a commit.
            let _ = first.send(Answered::Whole { status, content_type, body, charged: Some(charged) });
            self.settle(settlement, Lane::Later).await?;
            return Ok(outcome(charged));
        };
        // A retry with the key gets the stored answer: it is stored, with the capture, first.
        self.settle(settlement, Lane::Now).await?;
        let text = String::from_utf8_lossy(&body).into_owned();
        calls::complete(&self.state.db, id, status, Some(text), self.state.clock.now()).await?;
        let _ = first.send(Answered::Whole { status, content_type, body, charged: Some(charged) });
        Ok(outcome(charged))
    }

    /// A streamed call: events are passed on as they come; the usage chunk Tollgate asked for
    /// is held back from a client that did not ask for it.
    async fn stream(self, first: tokio::sync::oneshot::Sender<Answered>) -> anyhow::Result<&'static str> {
        let mut deadline = Instant::now() + self.upstream.timeout;
        let mut response = match self.send(deadline).await {
            Ok(response) => response,
            Err(timed_out) => {
                self.charge_nothing().await?;
                let _ = first.send(Answered::Unreachable { timed_out });
                return Ok("upstream_unreachable");
            }
        };
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let content_type = content_type(&response);
            let body = read_all(response, deadline).await.unwrap_or_default();
            self.charge_nothing().await?;
            let _ = first.send(Answered::Whole { status, content_type, body, charged: None });
            return Ok("upstream_error");
        }
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        let _ = first.send(Answered::Stream(rx));
        let mut client = Some(tx);
        let mut splitter = EventSplitter::default();
        let mut reading = Reading::default();
        let mut ended = false;
        loop {
            let chunk = match tokio::time::timeout_at(deadline, response.chunk()).await {
                Ok(Ok(Some(chunk))) => chunk,
                Ok(Ok(None)) => {
                    ended = true;
                    break;
                }
                Ok(Err(e)) => {
                    log::warn!("gateway stream broke: {}", e.without_url());
                    break;
                }
                Err(_) => {
                    log::warn!("gateway stream cut at its deadline");
                    break;
                }
            };
            let mut events = splitter.feed(&chunk);
            if splitter.pending() > MAX_EVENT_BYTES {
                log::warn!("gateway stream sent an event over {MAX_EVENT_BYTES} bytes; cut");
                break;
            }
            for event in events.drain(..) {
                let value = event_data(&event).and_then(|d| serde_json::from_str::<Value>(&d).ok());
                let hold_back = value.as_ref().is_some_and(|v| !self.client_wants_usage && is_usage_only(v));
                if let Some(value) = &value {
                    reading.absorb(value);
                }
                if hold_back {
                    continue;
                }
                if let Some(tx) = &client {
                    let sent = tokio::time::timeout_at(deadline, tx.send(Bytes::from(event))).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        // The client is gone: read on, for the usage, a bounded while longer.
                        client = None;
                        deadline = deadline.min(Instant::now() + self.upstream.drain);
                    }
                }
            }
        }
        if ended
            && let Some(rest) = splitter.finish()
            && let Some(tx) = &client
        {
            let _ = tx.send(Bytes::from(rest)).await;
        }
        drop(client);
        let settlement = self.settlement(&reading, true);
        let charged = settlement.charged();
        // The client has had every event: nobody waits on the capture.
        self.settle(settlement, Lane::Later).await?;
        if let Some(id) = self.claim {
            calls::complete(&self.state.db, id, status, None, self.state.clock.now()).await?;
        }
        Ok(outcome(charged))
    }

    /// Releases the hold and gives the key back: the call is charged nothing. Before the
    /// client is answered (an upstream that failed), in the ledger's waiting lane.
    async fn charge_nothing(&self) -> anyhow::Result<()> {
        self.release(Lane::Now).await
    }

    /// Whether the call's worst case is held on a lease its wallet's calls share.
    fn on_lease(&self) -> bool {
        matches!(self.ticket.as_ref().map(|t| t.reserved), Some(Reserved::Lease { .. }))
    }

    async fn release(&self, lane: Lane) -> anyhow::Result<()> {
        // On a lease, the call's worst case goes back to the lease when the call ends.
        if let Some((hold_id, _)) = self.hold
            && !self.on_lease()
        {
            self.submit(Op::Release { hold_id }, lane).await?;
        }
        if let Some(id) = self.claim {
            calls::forget(&self.state.db, id).await?;
        }
        Ok(())
    }

    /// What the call is charged: what it used (at most the hold), or nothing for a call that
    /// produced nothing or a free model.
    fn settlement(&self, reading: &Reading, streamed: bool) -> Settlement {
        if reading.usage.is_none() && reading.text.is_empty() {
            return Settlement::Nothing;
        }
        let Some((hold_id, held)) = self.hold else {
            return Settlement::Free;
        };
        let counted = reading.usage.is_none();
        let usage = reading.usage.unwrap_or_else(|| TokenUsage {
            input_tokens: self.input_bound,
            cached_input_tokens: 0,
            output_tokens: self.tokenizer.count(&reading.text),
        });
        let cost = self.prices.charge(&usage).map_or(i64::MAX, Credits::get);
        let held = held.get();
        let metadata = json!({ "llm": {
            "model": self.model.id,
            "upstream_model": self.model.upstream_model,
            "input_tokens": usage.input_tokens,
            "cached_input_tokens": usage.cached_input_tokens,
            "output_tokens": usage.output_tokens,
            "usage": if counted { "counted" } else { "reported" },
            "capped_at_hold": cost > held,
            "stream": streamed,
            "request_id": self.request_id,
            "upstream_id": reading.upstream_id,
            "prices": {
                "input_per_million": self.prices.input,
                "cached_input_per_million": self.prices.cached_input,
                "output_per_million": self.prices.output,
            },
        }});
        let measured = Measured { quantity: i64::try_from(usage.total()).ok(), metadata: Some(metadata) };
        Settlement::Capture { hold_id, amount: cost.min(held), measured }
    }

    /// Writes the settlement: captures the amount and releases the rest of the hold, or releases
    /// it all (and gives the key back) when the call is charged nothing.
    async fn settle(&self, settlement: Settlement, lane: Lane) -> anyhow::Result<()> {
        match settlement {
            Settlement::Free => Ok(()),
            Settlement::Nothing => self.release(lane).await,
            Settlement::Capture { hold_id, amount, measured } => {
                let amount = Credits::new(amount).map_err(|e| anyhow::anyhow!("{e}"))?;
                if let Some(ticket) = self.ticket.as_ref().filter(|_| self.on_lease()) {
                    if amount.is_zero() {
                        return Ok(());
                    }
                    let details = TransferDetails {
                        description: Some(self.model.call_description()),
                        feature: Some(self.model.feature()),
                        quantity: measured.quantity,
                        metadata: measured.metadata,
                        ..TransferDetails::default()
                    };
                    self.submit(Op::Draw { hold_id, amount, details }, lane).await?;
                    ticket.drawn(amount);
                    return Ok(());
                }
                let op = Op::Capture { hold_id, amount, description: None, measured: Some(measured) };
                self.submit(op, lane).await?;
                Ok(())
            }
        }
    }

    /// Writes one command on the call's wallet, retrying a failed write a few times: a hold left
    /// open would release the credits of a call that was made.
    async fn submit(&self, op: Op, lane: Lane) -> anyhow::Result<Answer> {
        let mut wait = Duration::from_millis(50);
        let mut attempt = 0;
        loop {
            let command = Command { user_id: self.owner, key: None, op: op.clone() };
            match self.state.ledger.submit_in(lane, command).await {
                Ok(answer) => return Ok(answer),
                Err(e @ crate::credits::CreditsError::Database(_)) if attempt < 4 => {
                    log::warn!("gateway ledger write failed, retrying: {e}");
                }
                Err(e) => return Err(anyhow::anyhow!("gateway ledger write for {}: {e}", self.request_id)),
            }
            attempt += 1;
            tokio::time::sleep(wait).await;
            wait *= 4;
        }
    }
}

/// What a finished call is charged, decided before it is written.
enum Settlement {
    /// A free model's call: there is no hold.
    Free,
    /// The call produced nothing: the hold is released and the key given back.
    Nothing,
    Capture {
        hold_id: Uuid,
        amount: i64,
        measured: Measured,
    },
}

impl Settlement {
    fn charged(&self) -> i64 {
        match self {
            Self::Capture { amount, .. } => *amount,
            Self::Free | Self::Nothing => 0,
        }
    }
}

fn outcome(charged: i64) -> &'static str {
    if charged > 0 { "charged" } else { "free" }
}

fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned()
}

/// The whole body, bounded; `Err(true)` when the deadline passed, `Err(false)` when it broke.
async fn read_all(mut response: reqwest::Response, deadline: Instant) -> Result<Bytes, bool> {
    let mut body = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_) => return Err(true),
            Ok(Err(e)) => return Err(e.is_timeout()),
            Ok(Ok(None)) => return Ok(Bytes::from(body)),
            Ok(Ok(Some(chunk))) => {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(false);
                }
                body.extend_from_slice(&chunk);
            }
        }
    }
}

/// The body to send upstream: the client's, naming the upstream's model, bounded in output, and
/// for a stream asking for the usage chunk. Returns it and whether the client asked for usage.
pub fn upstream_body(
    mut body: Map<String, Value>,
    model: &models::Model,
    stream: bool,
    max_output: u64,
) -> (Vec<u8>, bool) {
    body.insert("model".to_owned(), Value::String(model.upstream_model.clone()));
    if !body.contains_key("max_tokens") && !body.contains_key("max_completion_tokens") {
        // Reasoning models take only `max_completion_tokens`; the rest know `max_tokens` best.
        let field =
            if uses_max_completion_tokens(&model.upstream_model) { "max_completion_tokens" } else { "max_tokens" };
        body.insert(field.to_owned(), Value::from(max_output));
    }
    let mut client_wants_usage = false;
    if stream {
        let options = body.entry("stream_options").or_insert_with(|| Value::Object(Map::new()));
        if !options.is_object() {
            *options = Value::Object(Map::new());
        }
        if let Value::Object(options) = options {
            client_wants_usage = options.get("include_usage").and_then(Value::as_bool).unwrap_or(false);
            options.insert("include_usage".to_owned(), Value::Bool(true));
        }
    }
    (serde_json::to_vec(&Value::Object(body)).unwrap_or_default(), client_wants_usage)
}

fn uses_max_completion_tokens(upstream_model: &str) -> bool {
    let name = upstream_model.rsplit('/').next().unwrap_or(upstream_model).to_ascii_lowercase();
    ["o1", "o3", "o4", "gpt-5"].iter().any(|p| name.starts_with(p))
}
