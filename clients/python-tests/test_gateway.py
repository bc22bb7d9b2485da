"""Tollgate's OpenAI-compatible gateway (#16), with the official `openai` package as its client.

A second Tollgate (`gateway_server`) forwards to the fake upstream (fake_upstream.py). Each test
calls the gateway through `openai.OpenAI(base_url=…/gateway/v1, api_key=<a Tollgate key>)` and checks
what a user would: the answer the SDK parsed, what the fake received, the spend in the ledger
(feature `llm.<model>`, amount worked out here from the usage the fake reported and the model's
prices), and the balance after. The tests share one server and wallet; each compares against the
state it found.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

import httpx
import openai
import pytest

from conftest import GatewayServer
from fake_upstream import ERROR_MODEL, SLOW_MODEL, FakeUpstream, Served, reply_pieces, reply_text

# Not round numbers, so that a charge is rarely a whole number of credits before rounding up.
PRICES = {"input_per_million": 2000, "cached_input_per_million": 500, "output_per_million": 8000}
MAX_OUTPUT = 1000
# Tollgate's model id -> the upstream model the fake sees (and which picks its behaviour).
MODELS = {"gpt-test": "fake-fast", "gpt-slow": SLOW_MODEL, "gpt-broken": ERROR_MODEL}
INACTIVE = "gpt-retired"
# Over 1024 tokens as the fake counts them, so its usage includes cached tokens.
MESSAGES = [
    {"role": "system", "content": "You are terse. " * 400},
    {"role": "user", "content": "Say something about a fox."},
]
RICH_GRANT = 1000
POOR_GRANT = 3  # less than the worst case of any call (MAX_OUTPUT output tokens alone cost 8)
SDK_TIMEOUT = 30.0


def ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def cost_micro(model: dict[str, Any], usage: dict[str, Any]) -> int:
    """A call's cost in millionths of a credit: uncached input, cached input and output at their prices."""
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    return (
        (usage["prompt_tokens"] - cached) * model["input_per_million"]
        + cached * model["cached_input_per_million"]
        + usage["completion_tokens"] * model["output_per_million"]
    )


def charge(model: dict[str, Any], usage: dict[str, Any]) -> int:
    """What the contract says a call costs: ceil(cost / 1e6) credits."""
    return ceil_div(cost_micro(model, usage), 1_000_000)


@dataclass
class Wallet:
    """A Tollgate account (or customer) as a user of the gateway has it: an SDK client and its ledger."""

    api: httpx.Client  # Tollgate's own API, with the wallet's key
    client: openai.OpenAI  # the gateway
    key: str
    ledger_path: str = "/api/v1/credits/ledger"
    balance_path: str = "/api/v1/credits/balance"

    def balance(self) -> dict[str, Any]:
        response = self.api.get(self.balance_path)
        assert response.status_code == 200, response.text
        return response.json()

    def entries(self) -> list[dict[str, Any]]:
        response = self.api.get(self.ledger_path, params={"limit": 200})
        assert response.status_code == 200, response.text
        return response.json()["entries"]

    def snapshot(self) -> Snapshot:
        return Snapshot(balance=self.balance(), entry_ids={e["id"] for e in self.entries()})

    def new_entries(self, before: Snapshot) -> list[dict[str, Any]]:
        return [e for e in self.entries() if e["id"] not in before.entry_ids]

    def wait_for_entries(self, before: Snapshot, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The entries written since `before`, once there are `count` of them (or at the timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            entries = self.new_entries(before)
            if len(entries) >= count or time.monotonic() > deadline:
                return entries
            time.sleep(0.1)


@dataclass
class Snapshot:
    balance: dict[str, Any]
    entry_ids: set[str]


def sdk(server: GatewayServer, key: str, **kwargs: Any) -> openai.OpenAI:
    # No retries: a test counts the requests the fake received, and a retried 500 would triple them.
    return openai.OpenAI(
        base_url=f"{server.base_url}/gateway/v1", api_key=key, max_retries=0, timeout=SDK_TIMEOUT, **kwargs
    )


@pytest.fixture(scope="module")
def gateway(gateway_server: GatewayServer) -> GatewayServer:
    return gateway_server


@pytest.fixture(scope="module")
def fake(gateway_server: GatewayServer) -> FakeUpstream:
    return gateway_server.upstream


@pytest.fixture(scope="module")
def admin(gateway: GatewayServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.base_url, headers={"x-admin-key": gateway.admin_key}, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def models(admin: httpx.Client) -> dict[str, dict[str, Any]]:
    """The rate card: the models of MODELS (active) and INACTIVE, created by the admin."""
    created = {}
    for model_id, upstream in [*MODELS.items(), (INACTIVE, "fake-fast")]:
        body = {
            "id": model_id,
            "upstream_model": upstream,
            **PRICES,
            "max_output_tokens": MAX_OUTPUT,
            "active": model_id != INACTIVE,
        }
        response = admin.post("/api/v1/models", json=body)
        assert response.status_code == 201, response.text
        view = response.json()
        assert {k: view[k] for k in body} == body
        created[model_id] = view
    return created


def open_account(gateway: GatewayServer, admin: httpx.Client, grant: int) -> Wallet:
    """A person signs up, is granted `grant` credits by the admin, and makes a personal API key."""
    email = f"gw-{uuid.uuid4().hex[:10]}@example.com"
    password = "correct horse battery staple"
    with httpx.Client(base_url=gateway.base_url, timeout=30) as anonymous:
        registered = anonymous.post("/api/v1/auth/register", json={"email": email, "password": password})
        assert registered.status_code == 201, registered.text
        login = anonymous.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        made = anonymous.post(
            "/api/v1/api-keys",
            headers={"authorization": f"Bearer {token}"},
            json={"name": "gateway", "scopes": ["credits:spend", "credits:read"]},
        )
        assert made.status_code == 201, made.text
        key = made.json()["secret"]
    granted = admin.post(
        "/api/v1/credits/grant",
        headers={"Idempotency-Key": f"grant-{uuid.uuid4()}"},
        json={"email": email, "amount": grant, "reason": "gateway tests"},
    )
    assert granted.status_code == 200, granted.text
    api = httpx.Client(base_url=gateway.base_url, headers={"authorization": f"Bearer {key}"}, timeout=30)
    return Wallet(api=api, client=sdk(gateway, key), key=key)


@pytest.fixture(scope="module")
def rich(gateway: GatewayServer, admin: httpx.Client, models: dict[str, Any]) -> Iterator[Wallet]:
    wallet = open_account(gateway, admin, RICH_GRANT)
    assert wallet.balance()["available"] == RICH_GRANT
    yield wallet
    wallet.api.close()
    wallet.client.close()


@pytest.fixture(scope="module")
def poor(gateway: GatewayServer, admin: httpx.Client, models: dict[str, Any]) -> Iterator[Wallet]:
    wallet = open_account(gateway, admin, POOR_GRANT)
    yield wallet
    wallet.api.close()
    wallet.client.close()


def assert_one_llm_spend(entries: list[dict[str, Any]], model_id: str, model: dict[str, Any], served: Served) -> int:
    """The entries are exactly one spend for `served`, charged by the usage the fake reported."""
    assert len(entries) == 1, entries
    spend = entries[0]
    expected = charge(model, served.usage)
    assert spend["kind"] == "spend"
    assert spend["feature"] == f"llm.{model_id}"
    assert spend["amount"] == -expected, (spend, served.usage)
    llm = spend["metadata"]["llm"]
    cached = served.usage["prompt_tokens_details"]["cached_tokens"]
    assert llm["model"] == model_id
    assert llm["input_tokens"] == served.usage["prompt_tokens"] - cached, llm
    assert llm["cached_input_tokens"] == cached, llm
    assert llm["output_tokens"] == served.usage["completion_tokens"], llm
    assert llm["upstream_id"] == served.completion_id, llm
    return expected


def assert_nothing_held(wallet: Wallet, balance: int) -> None:
    now = wallet.balance()
    assert (now["balance"], now["held"], now["available"]) == (balance, 0, balance), now


def forwarded(fake: FakeUpstream, since: int) -> list[Any]:
    return fake.requests()[since:]


# ---- the tests ------------------------------------------------------------------------------


def test_models_lists_the_active_models(gateway: GatewayServer, models: dict[str, Any], rich: Wallet) -> None:
    listed = list(rich.client.models.list())
    assert sorted(m.id for m in listed) == sorted(MODELS)
    assert all(m.object == "model" and m.owned_by == "tollgate" for m in listed)
    # The same as Tollgate's own public list.
    public = httpx.get(f"{gateway.base_url}/api/v1/models").json()
    assert sorted(m["id"] for m in public) == sorted(MODELS)


def test_non_streamed_completion_is_charged_by_the_reported_usage(
    gateway: GatewayServer, fake: FakeUpstream, models: dict[str, Any], rich: Wallet
) -> None:
    before, sent_before = rich.snapshot(), len(fake.requests())

    raw = rich.client.chat.completions.with_raw_response.create(model="gpt-test", messages=MESSAGES)
    completion = raw.parse()

    assert completion.choices[0].message.content == reply_text("fake-fast")
    served = fake.answer(completion.id)
    assert completion.usage is not None
    assert completion.usage.model_dump(exclude_none=True) == served.usage
    assert served.usage["prompt_tokens_details"]["cached_tokens"] > 0
    assert cost_micro(models["gpt-test"], served.usage) % 1_000_000 != 0  # the charge is rounded up

    # The capture is written just after the answer.
    expected = assert_one_llm_spend(rich.wait_for_entries(before), "gpt-test", models["gpt-test"], served)
    assert_nothing_held(rich, before.balance["balance"] - expected)
    assert raw.headers.get("X-Tollgate-Charged") == str(expected)

    # What Tollgate sent upstream: the upstream model, the upstream key (never the caller's), a cap.
    (sent,) = forwarded(fake, sent_before)
    assert sent.path == "/v1/chat/completions"
    assert sent.body["model"] == "fake-fast"
    assert sent.body["messages"] == MESSAGES
    assert sent.body.get("stream") in (None, False)
    assert sent.headers["authorization"] == f"Bearer {gateway.upstream_key}"
    assert not any(rich.key in value for value in sent.headers.values())
    caps = [sent.body[k] for k in ("max_tokens", "max_completion_tokens") if k in sent.body]
    assert caps and all(0 < cap <= MAX_OUTPUT for cap in caps), sent.body


@pytest.mark.parametrize("client_asks_usage", [False, True], ids=["plain", "include_usage"])
def test_streamed_completion_is_charged_once_by_the_reported_usage(
    gateway: GatewayServer, fake: FakeUpstream, models: dict[str, Any], rich: Wallet, client_asks_usage: bool
) -> None:
    before, sent_before = rich.snapshot(), len(fake.requests())
    options = {"stream_options": {"include_usage": True}} if client_asks_usage else {}

    chunks = list(rich.client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True, **options))

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply_text("fake-fast")
    served = fake.answer(chunks[0].id)
    assert fake.wait_for(lambda f: served.finished, timeout=5)  # (marked just after its last write)
    if client_asks_usage:
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.model_dump(exclude_none=True) == served.usage
    else:
        # As from OpenAI: no usage chunk unasked (its `choices: []` breaks code reading choices[0]).
        assert all(c.choices and c.usage is None for c in chunks), chunks[-1]

    # Tollgate asks upstream for the usage whether or not the client did: it is what it charges by.
    (sent,) = forwarded(fake, sent_before)
    assert sent.body["model"] == "fake-fast"
    assert sent.body["stream"] is True
    assert sent.body["stream_options"]["include_usage"] is True
    assert sent.headers["authorization"] == f"Bearer {gateway.upstream_key}"

    entries = rich.wait_for_entries(before)
    expected = assert_one_llm_spend(entries, "gpt-test", models["gpt-test"], served)
    time.sleep(0.3)  # a second charge would show up by now
    assert len(rich.new_entries(before)) == 1
    assert_nothing_held(rich, before.balance["balance"] - expected)


def test_stream_cancelled_half_way_is_charged_for_the_whole_upstream_stream(
    fake: FakeUpstream, models: dict[str, Any], rich: Wallet
) -> None:
    before, completed_before = rich.snapshot(), fake.streams_completed(SLOW_MODEL)

    stream = rich.client.chat.completions.create(model="gpt-slow", messages=MESSAGES, stream=True)
    first, second = next(stream), next(stream)
    stream.close()  # the client leaves after two chunks
    left_at = time.monotonic()

    got = (first.choices[0].delta.content or "") + (second.choices[0].delta.content or "")
    assert reply_text(SLOW_MODEL).startswith(got)
    served = fake.answer(first.id)
    assert not served.finished, "the slow stream ended before the client left: the test proves nothing"

    # The gateway reads on to the end (the usage comes last), then charges once.
    assert fake.wait_for(lambda f: f.answer(first.id).finished or f.answer(first.id).client_left, timeout=10)
    assert served.finished and not served.client_left, "Tollgate stopped reading upstream when the client left"
    assert fake.streams_completed(SLOW_MODEL) == completed_before + 1
    entries = rich.wait_for_entries(before, timeout=max(0.0, 10 - (time.monotonic() - left_at)))
    expected = assert_one_llm_spend(entries, "gpt-slow", models["gpt-slow"], served)
    assert served.usage["completion_tokens"] > len(reply_pieces(SLOW_MODEL))  # the whole answer's usage
    time.sleep(0.3)
    assert len(rich.new_entries(before)) == 1
    assert_nothing_held(rich, before.balance["balance"] - expected)


def test_a_wallet_that_cannot_afford_the_worst_case_gets_402_before_upstream(
    fake: FakeUpstream, models: dict[str, Any], poor: Wallet
) -> None:
    before, sent_before = poor.snapshot(), len(fake.requests())

    with pytest.raises(openai.APIStatusError) as raised:
        poor.client.chat.completions.create(model="gpt-test", messages=MESSAGES)

    error = raised.value
    assert error.status_code == 402
    assert error.code == "insufficient_credits"  # the SDK reads it from the `error` object
    problem = error.response.json()
    assert problem["code"] == "insufficient_credits"
    assert problem["available"] == POOR_GRANT
    # The worst case: at least MAX_OUTPUT output tokens at the output price.
    assert problem["price"] >= ceil_div(MAX_OUTPUT * PRICES["output_per_million"], 1_000_000) > POOR_GRANT
    assert forwarded(fake, sent_before) == []
    assert poor.new_entries(before) == []
    assert_nothing_held(poor, POOR_GRANT)


def test_a_retry_with_the_same_idempotency_key_is_the_same_completion_charged_once(
    fake: FakeUpstream, models: dict[str, Any], rich: Wallet
) -> None:
    before, sent_before = rich.snapshot(), len(fake.requests())
    key = {"Idempotency-Key": f"gw-{uuid.uuid4()}"}

    first = rich.client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=MESSAGES, extra_headers=key
    )
    again = rich.client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=MESSAGES, extra_headers=key
    )

    assert again.parse().id == first.parse().id
    assert again.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert first.headers.get("Idempotent-Replayed") is None
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len(forwarded(fake, sent_before)) == 1
    served = fake.answer(first.parse().id)
    expected = assert_one_llm_spend(rich.new_entries(before), "gpt-test", models["gpt-test"], served)
    assert_nothing_held(rich, before.balance["balance"] - expected)


def test_a_streamed_calls_idempotency_key_cannot_be_reused(
    fake: FakeUpstream, models: dict[str, Any], rich: Wallet
) -> None:
    key = {"Idempotency-Key": f"gw-stream-{uuid.uuid4()}"}
    chunks = list(
        rich.client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True, extra_headers=key)
    )
    assert fake.wait_for(lambda f: f.answer(chunks[0].id).finished, timeout=5)
    before, sent_before = rich.snapshot(), len(fake.requests())

    with pytest.raises(openai.ConflictError) as raised:
        rich.client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True, extra_headers=key)

    assert raised.value.status_code == 409
    assert raised.value.code == "idempotency_key_in_use"
    assert forwarded(fake, sent_before) == []
    time.sleep(0.3)  # the first call's charge is written by now; nothing after it
    assert [e for e in rich.new_entries(before) if e["feature"] == "llm.gpt-test"] == []


def test_an_upstream_500_is_passed_through_and_nothing_is_charged(
    fake: FakeUpstream, models: dict[str, Any], rich: Wallet
) -> None:
    before, sent_before = rich.snapshot(), len(fake.requests())

    with pytest.raises(openai.InternalServerError) as raised:
        rich.client.chat.completions.create(model="gpt-broken", messages=MESSAGES)

    assert raised.value.status_code == 500
    # Upstream's own error, unchanged.
    assert raised.value.body == {
        "message": "The fake upstream failed, as asked.",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    (sent,) = forwarded(fake, sent_before)
    assert sent.body["model"] == ERROR_MODEL
    time.sleep(0.3)
    assert rich.new_entries(before) == []
    assert_nothing_held(rich, before.balance["balance"])


def test_an_unknown_model_is_404_model_not_found(fake: FakeUpstream, models: dict[str, Any], rich: Wallet) -> None:
    sent_before = len(fake.requests())
    for model in ("no-such-model", INACTIVE):
        with pytest.raises(openai.NotFoundError) as raised:
            rich.client.chat.completions.create(model=model, messages=MESSAGES)
        assert raised.value.code == "model_not_found", model
    assert forwarded(fake, sent_before) == []


def test_a_wrong_key_is_401_invalid_api_key(gateway: GatewayServer, fake: FakeUpstream, models: dict[str, Any]) -> None:
    sent_before = len(fake.requests())
    with pytest.raises(openai.AuthenticationError) as raised:
        sdk(gateway, "tg_not-a-real-key").chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"
    assert forwarded(fake, sent_before) == []


def test_a_server_key_spends_from_the_customer_it_names(
    gateway: GatewayServer, fake: FakeUpstream, admin: httpx.Client, models: dict[str, Any]
) -> None:
    """A product's backend: its server key plus `X-Tollgate-Customer`, charged to that customer."""
    minted = admin.post(
        "/api/v1/admin/server-keys",
        json={
            "name": "gateway backend",
            "scopes": ["customers:write", "customers:read", "credits:read", "credits:spend", "credits:grant"],
        },
    )
    assert minted.status_code == 201, minted.text
    secret = minted.json()["secret"]
    customer = f"gw-customer-{uuid.uuid4().hex[:8]}"
    api = httpx.Client(base_url=gateway.base_url, headers={"authorization": f"Bearer {secret}"}, timeout=30)
    assert api.put(f"/api/v1/customers/{customer}", json={"name": "Gateway customer"}).status_code == 201
    granted = api.post(
        f"/api/v1/customers/{customer}/grant",
        headers={"Idempotency-Key": f"grant-{uuid.uuid4()}"},
        json={"amount": 100, "reason": "gateway tests"},
    )
    assert granted.status_code == 200, granted.text
    wallet = Wallet(
        api=api,
        client=sdk(gateway, secret, default_headers={"X-Tollgate-Customer": customer}),
        key=secret,
        ledger_path=f"/api/v1/customers/{customer}/ledger",
        balance_path=f"/api/v1/customers/{customer}/balance",
    )
    before = wallet.snapshot()

    completion = wallet.client.chat.completions.create(model="gpt-test", messages=MESSAGES)

    assert completion.choices[0].message.content == reply_text("fake-fast")
    served = fake.answer(completion.id)
    expected = assert_one_llm_spend(wallet.wait_for_entries(before), "gpt-test", models["gpt-test"], served)
    assert_nothing_held(wallet, 100 - expected)
    api.close()
    wallet.client.close()


def test_usage_by_model_adds_up_the_gateways_spends(rich: Wallet) -> None:
    spends = [e for e in rich.entries() if e["kind"] == "spend"]
    assert spends, "the tests above charged this wallet"
    response = rich.api.get("/api/v1/usage", params={"group_by": "model"})
    assert response.status_code == 200, response.text
    usage = response.json()
    assert usage["group_by"] == "model"
    buckets = {b["key"]: b for b in usage["buckets"]}
    for model_id in {e["metadata"]["llm"]["model"] for e in spends}:
        mine = [e for e in spends if e["metadata"]["llm"]["model"] == model_id]
        bucket = buckets[model_id]
        assert bucket["credits"] == -sum(e["amount"] for e in mine)
        assert bucket["spends"] == len(mine)
        for field in ("input_tokens", "cached_input_tokens", "output_tokens"):
            assert bucket[field] == sum(e["metadata"]["llm"][field] for e in mine), field
