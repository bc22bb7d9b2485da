//! A fake OpenAI-compatible upstream for the gateway's tests: `POST /v1/chat/completions` in
//! OpenAI's JSON and SSE formats (with the usage chunk when `stream_options.include_usage`),
//! recording what it was sent. What it does is chosen by the model it is sent:
//!
//! - `fake-echo` (and any other): answers at once;
//! - `fake-slow`: streams its chunks 100 ms apart;
//! - `fake-gated`: waits until the test opens the gate;
//! - `fake-nousage`: never reports usage;
//! - `fake-500`: answers 500 with an OpenAI error body;
//! - `fake-hang`: never answers.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// The answer's text, streamed word by word.
pub const REPLY: &str = "Hello from the fake upstream, one word at a time.";
/// The usage it reports: prompt tokens (cached ones included), cached, completion.
pub const PROMPT_TOKENS: u64 = 1200;
pub const CACHED_TOKENS: u64 = 200;
pub const COMPLETION_TOKENS: u64 = 300;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Default)]
pub struct FakeState {
    pub requests: Mutex<Vec<Recorded>>,
    /// Streams sent to their last byte.
    pub streams_finished: AtomicUsize,
    gate: tokio::sync::Notify,
    open: std::sync::atomic::AtomicBool,
}

pub struct FakeLlm {
    /// The API base to configure: `http://127.0.0.1:<port>/v1`.
    pub base: String,
    pub state: Arc<FakeState>,
}

impl FakeLlm {
    pub async fn start() -> Self {
        let state = Arc::new(FakeState::default());
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new().app_data(data.clone()).route("/v1/chat/completions", web::post().to(completions))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind the fake upstream");
        let port = server.addrs()[0].port();
        tokio::spawn(server.run());
        Self { base: format!("http://127.0.0.1:{port}/v1"), state }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn streams_finished(&self) -> usize {
        self.state.streams_finished.load(Ordering::SeqCst)
    }

    /// Lets every gated call (waiting and to come) answer.
    pub fn open_gate(&self) {
        self.state.open.store(true, Ordering::SeqCst);
        self.state.gate.notify_waiters();
    }

    /// Waits until `n` requests arrived (at most 10 s).
    pub async fn wait_for_requests(&self, n: usize) {
        for _ in 0..200 {
            if self.requests().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the fake upstream got {} requests, not {n}", self.requests().len());
    }
}

fn usage() -> Value {
    json!({
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS},
    })
}

fn chunk(model: &str, delta: Value, finish: Option<&str>) -> String {
    let chunk = json!({
        "id": "chatcmpl-fake-1", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    format!("data: {chunk}\n\n")
}

async fn completions(req: HttpRequest, body: web::Json<Value>, state: web::Data<FakeState>) -> HttpResponse {
    let body = body.into_inner();
    let authorization = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    state.requests.lock().unwrap().push(Recorded { authorization, body: body.clone() });
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    match model.as_str() {
        "fake-500" => {
            return HttpResponse::InternalServerError()
                .json(json!({"error": {"message": "the upstream exploded", "type": "server_error", "code": null}}));
        }
        "fake-hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        "fake-gated" => {
            while !state.open.load(Ordering::SeqCst) {
                let notified = state.gate.notified();
                if state.open.load(Ordering::SeqCst) {
                    break;
                }
                let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
            }
        }
        _ => {}
    }
    let with_usage = model != "fake-nousage";
    if body["stream"].as_bool() != Some(true) {
        let mut answer = json!({
            "id": "chatcmpl-fake-1", "object": "chat.completion", "created": 1_700_000_000, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}],
        });
        if with_usage {
            answer["usage"] = usage();
        }
        return HttpResponse::Ok().json(answer);
    }
    let include_usage = with_usage && body["stream_options"]["include_usage"].as_bool() == Some(true);
    let mut events = vec![chunk(&model, json!({"role": "assistant", "content": ""}), None)];
    for word in REPLY.split_inclusive(' ') {
        events.push(chunk(&model, json!({"content": word}), None));
    }
    events.push(chunk(&model, json!({}), Some("stop")));
    if include_usage {
        let last = json!({"id": "chatcmpl-fake-1", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": model, "choices": [], "usage": usage()});
        events.push(format!("data: {last}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_owned());
    let delay = if model == "fake-slow" { Duration::from_millis(100) } else { Duration::ZERO };
    let state = state.into_inner();
    let stream = futures_util::stream::unfold((events.into_iter(), state), move |(mut events, state)| async move {
        match events.next() {
            Some(event) => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Some((Ok::<_, std::convert::Infallible>(web::Bytes::from(event)), (events, state)))
            }
            None => {
                state.streams_finished.fetch_add(1, Ordering::SeqCst);
                None
            }
        }
    });
    HttpResponse::Ok().content_type("text/event-stream").streaming(stream)
}
