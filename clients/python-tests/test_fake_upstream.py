"""The fake upstream speaks what the official `openai` package accepts: the SDK pointed straight at it.

If these fail, the gateway's tests cannot be trusted: they read the fake's answers through the SDK.
"""

from __future__ import annotations

import time
from typing import Iterator

import httpx
import openai
import pytest

from fake_upstream import ERROR_MODEL, SLOW_DELAY, SLOW_MODEL, FakeUpstream, reply_pieces, reply_text, usage_for

MESSAGES = [{"role": "user", "content": "Say something."}]
# Long enough (over 1024 tokens as the fake counts) for part of it to be reported as cached.
LONG = [{"role": "system", "content": "You are terse. " * 400}, *MESSAGES]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def direct(fake: FakeUpstream) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.base_url, api_key="sk-direct", max_retries=0)


def test_a_completion_parses_with_its_usage(fake: FakeUpstream, direct: openai.OpenAI) -> None:
    completion = direct.chat.completions.create(model="fake-fast", messages=LONG)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == reply_text("fake-fast")
    assert completion.choices[0].finish_reason == "stop"
    usage = usage_for({"model": "fake-fast", "messages": LONG})
    assert usage["prompt_tokens_details"]["cached_tokens"] > 0
    assert fake.answer(completion.id).usage == usage
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == usage["prompt_tokens"]
    assert completion.usage.completion_tokens == usage["completion_tokens"]
    assert completion.usage.total_tokens == usage["prompt_tokens"] + usage["completion_tokens"]
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == usage["prompt_tokens_details"]["cached_tokens"]

    sent = fake.requests()[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == "Bearer sk-direct"
    assert sent.body["messages"] == LONG


def test_a_completion_stops_at_max_tokens(fake: FakeUpstream, direct: openai.OpenAI) -> None:
    completion = direct.chat.completions.create(model="fake-fast", messages=MESSAGES, max_tokens=50)
    assert completion.usage.completion_tokens == 50
    assert completion.usage.prompt_tokens_details.cached_tokens == 0
    assert completion.choices[0].finish_reason == "length"
    assert fake.requests()[-1].body["max_tokens"] == 50


def test_a_stream_with_usage_ends_in_a_usage_chunk(fake: FakeUpstream, direct: openai.OpenAI) -> None:
    before = fake.streams_completed()
    stream = direct.chat.completions.create(
        model="fake-fast", messages=LONG, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply_text("fake-fast")
    # Only the last has usage, and no choices (OpenAI's shape with include_usage).
    assert [c.usage is not None for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.model_dump(exclude_none=True) == usage_for({"model": "fake-fast", "messages": LONG})
    assert fake.answer(chunks[0].id).usage == usage_for({"model": "fake-fast", "messages": LONG})
    assert fake.requests()[-1].body["stream_options"] == {"include_usage": True}
    assert fake.wait_for(lambda f: f.streams_completed() == before + 1, timeout=5)


def test_a_stream_without_usage_has_none(direct: openai.OpenAI) -> None:
    chunks = list(direct.chat.completions.create(model="fake-fast", messages=MESSAGES, stream=True))
    assert all(c.usage is None for c in chunks)
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == reply_pieces("fake-fast")
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_the_raw_stream_is_sse_ending_in_done(fake: FakeUpstream) -> None:
    with httpx.stream(
        "POST",
        f"{fake.base_url}/chat/completions",
        json={"model": "fake-fast", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    assert '"choices": []' in lines[-2] and '"usage": {' in lines[-2]


def test_a_slow_stream_left_half_way_is_seen_as_left(fake: FakeUpstream, direct: openai.OpenAI) -> None:
    completed = fake.streams_completed(SLOW_MODEL)
    started = time.monotonic()
    stream = direct.chat.completions.create(
        model=SLOW_MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    first, second = next(stream), next(stream)
    assert second.choices[0].delta.content == reply_pieces(SLOW_MODEL)[0]
    assert first.id == second.id
    stream.close()
    # The fake finds out at its next write or the one after.
    assert fake.wait_for(lambda f: f.answers(SLOW_MODEL)[-1].client_left, timeout=5 + 10 * SLOW_DELAY)
    assert fake.streams_completed(SLOW_MODEL) == completed
    assert time.monotonic() - started < len(reply_pieces(SLOW_MODEL)) * SLOW_DELAY


def test_the_error_model_is_a_500_the_sdk_raises(fake: FakeUpstream, direct: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as raised:
        direct.chat.completions.create(model=ERROR_MODEL, messages=MESSAGES)
    assert raised.value.status_code == 500
    assert raised.value.body["type"] == "server_error"
    assert len(fake.requests(ERROR_MODEL)) == 1  # max_retries=0: asked once
