"""A local stand-in for an OpenAI-compatible upstream: `POST /v1/chat/completions`, as JSON or SSE.

It answers in OpenAI's chat-completion formats (a `chat.completion` object, or `chat.completion.chunk`
events ending in `data: [DONE]`, with the usage chunk `choices: []` when
`stream_options.include_usage` is true), records every request it received (headers and body) so a
test can check what Tollgate forwarded, and counts the streams it served to their end.

What it does is chosen by the `model` it is sent (Tollgate forwards a model's `upstream_model`):

- `fake-slow`: the same answer, with `SLOW_DELAY` seconds between events, so a client can leave
  half way while the stream goes on;
- `fake-error-500`: a 500 with OpenAI's error object;
- anything else: the answer at once.

The reply's text depends only on the model; its usage on the request (`usage_for`), and each answer
keeps the usage it reported (`Served.usage`), so a test can work out what a call must be charged.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SLOW_MODEL = "fake-slow"
ERROR_MODEL = "fake-error-500"
SLOW_DELAY = 0.25
CREATED = 1_700_000_000

_PIECES = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", "."]


def reply_pieces(model: str) -> list[str]:
    """The content deltas a stream of `model` carries, in order (their join is the whole reply)."""
    return [*_PIECES, f" ({model})"]


def reply_text(model: str) -> str:
    return "".join(reply_pieces(model))


def prompt_tokens(messages: Any) -> int:
    """What the fake counts for a prompt: about one token per 4 characters of content, plus 7."""
    chars = 0
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(part.get("text", "")) for part in content if isinstance(part, dict))
    return chars // 4 + 7


def usage_for(body: dict[str, Any]) -> dict[str, Any]:
    """The usage reported for a request: OpenAI's fields, with cached tokens for a long prompt.

    As OpenAI: the cache covers whole 128-token blocks of a prompt of 1024 tokens or more (here half
    of it), and the completion stops at `max_completion_tokens` / `max_tokens` when one is given.
    """
    model = str(body.get("model"))
    prompt = prompt_tokens(body.get("messages"))
    cached = (prompt // 2) // 128 * 128 if prompt >= 1024 else 0
    completion = 300 + len(reply_pieces(model))
    caps = [body.get(k) for k in ("max_completion_tokens", "max_tokens") if isinstance(body.get(k), int)]
    if caps:
        completion = min([completion, *caps])
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


@dataclass
class Received:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # the parsed JSON, or the raw text when it is not JSON

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None


@dataclass
class Served:
    """One answer: its completion id, whether it streamed, and how a stream ended."""

    completion_id: str
    model: str
    stream: bool
    usage: dict[str, Any]  # as reported (in the body, or the last chunk when include_usage)
    finished: bool = False  # every event and `[DONE]` written
    client_left: bool = False  # the peer closed the connection before the end


@dataclass
class FakeUpstream:
    host: str = "127.0.0.1"
    received: list[Received] = field(default_factory=list)
    served: list[Served] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeUpstream:
        fake = self

        class Handler(_Handler):
            upstream = fake

        self._httpd = ThreadingHTTPServer((self.host, 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-upstream", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "start() first"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """What a client (or GATEWAY_UPSTREAM_URL) takes: `/chat/completions` is under it."""
        return f"http://{self.host}:{self.port}/v1"

    # ---- what happened ----------------------------------------------------------------------

    def requests(self, model: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if model is None or r.model == model]

    def answers(self, model: str | None = None) -> list[Served]:
        with self._lock:
            return [s for s in self.served if model is None or s.model == model]

    def answer(self, completion_id: str) -> Served:
        """The answer with this completion id (what the client saw as `id`)."""
        found = [s for s in self.answers() if s.completion_id == completion_id]
        assert len(found) == 1, f"the fake served {len(found)} answers with id {completion_id}"
        return found[0]

    def streams_completed(self, model: str | None = None) -> int:
        return sum(1 for s in self.answers(model) if s.stream and s.finished)

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> bool:
        """Waits until `predicate(self)` holds (checked whenever a request or answer changes)."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with self._changed:
                self._changed.wait(min(left, 0.1))
        return True

    def _record(self, item: Received | Served) -> None:
        with self._changed:
            (self.received if isinstance(item, Received) else self.served).append(item)
            self._changed.notify_all()

    def _update(self) -> None:
        with self._changed:
            self._changed.notify_all()


class _Handler(BaseHTTPRequestHandler):
    upstream: FakeUpstream
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, as a real upstream

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    # ---- request ----------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    # trailers, up to the blank line
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        self.upstream._record(Received("GET", self.path, self._lower_headers(), None))
        if self.path.rstrip("/") == "/v1/models":
            data = [
                {"id": m, "object": "model", "created": CREATED, "owned_by": "fake"} for m in ("fake-fast", SLOW_MODEL)
            ]
            self._json(200, {"object": "list", "data": data})
        else:
            self._error(404, "Not found", "invalid_request_error", "not_found")

    def do_POST(self) -> None:  # noqa: N802 - the base class's name
        raw = self._read_body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        received = Received("POST", self.path, self._lower_headers(), body)
        self.upstream._record(received)
        if self.path.split("?")[0].rstrip("/") != "/v1/chat/completions":
            self._error(404, f"Unknown path {self.path}", "invalid_request_error", "not_found")
            return
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("model"), str)
            or not isinstance(body.get("messages"), list)
        ):
            self._error(400, "model and messages are required", "invalid_request_error", None)
            return
        model = body["model"]
        if model == ERROR_MODEL:
            self._error(500, "The fake upstream failed, as asked.", "server_error", None)
            return
        if body.get("stream") is True:
            options = body.get("stream_options") or {}
            self._stream(body, include_usage=isinstance(options, dict) and options.get("include_usage") is True)
        else:
            if model == SLOW_MODEL:
                time.sleep(SLOW_DELAY * 2)
            self._complete(body)

    def _lower_headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    # ---- answers ----------------------------------------------------------------------------

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-request-id", f"req_fake_{uuid.uuid4().hex[:12]}")
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str, code: str | None) -> None:
        self._json(status, {"error": {"message": message, "type": kind, "param": None, "code": code}})

    def _complete(self, body: dict[str, Any]) -> None:
        model, usage = body["model"], usage_for(body)
        completion_id = f"chatcmpl-fake{uuid.uuid4().hex}"
        # Recorded before it is sent, so a client that has the answer finds it here.
        served = Served(completion_id, model, stream=False, usage=usage)
        self.upstream._record(served)
        self._json(
            200,
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": CREATED,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": reply_text(model),
                            "refusal": None,
                            "annotations": [],
                        },
                        "logprobs": None,
                        "finish_reason": _finish_reason(model, usage),
                    }
                ],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
            },
        )
        served.finished = True
        self.upstream._update()

    def _stream(self, body: dict[str, Any], include_usage: bool) -> None:
        model, usage = body["model"], usage_for(body)
        completion_id = f"chatcmpl-fake{uuid.uuid4().hex}"
        served = Served(completion_id, model, stream=True, usage=usage)
        self.upstream._record(served)

        def chunk(choices: list[dict[str, Any]], usage: Any = None) -> dict[str, Any]:
            event: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
                "choices": choices,
            }
            if include_usage:
                event["usage"] = usage  # null on every chunk but the last, as OpenAI sends
            return event

        def delta(d: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}]

        events: list[Any] = [chunk(delta({"role": "assistant", "content": "", "refusal": None}))]
        events += [chunk(delta({"content": piece})) for piece in reply_pieces(model)]
        events.append(chunk(delta({}, _finish_reason(model, usage))))
        if include_usage:
            events.append(chunk([], usage))
        events.append("[DONE]")

        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("x-request-id", f"req_fake_{uuid.uuid4().hex[:12]}")
        self.end_headers()
        delay = SLOW_DELAY if model == SLOW_MODEL else 0.0
        try:
            for i, event in enumerate(events):
                if delay and i:
                    time.sleep(delay)
                text = event if isinstance(event, str) else json.dumps(event)
                self._write_chunk(f"data: {text}\n\n".encode())
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            served.client_left = True
            self.close_connection = True
            self.upstream._update()
            return
        served.finished = True
        self.upstream._update()

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _finish_reason(model: str, usage: dict[str, Any]) -> str:
    return "length" if usage["completion_tokens"] < 300 + len(reply_pieces(model)) else "stop"


if __name__ == "__main__":
    # Run it by hand: python fake_upstream.py  (then GATEWAY_UPSTREAM_URL=<printed url>)
    upstream = FakeUpstream().start()
    print(upstream.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        upstream.stop()
