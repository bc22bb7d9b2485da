"""Tollgate's webhooks (#18), verified with the official `standardwebhooks` package from PyPI.

A Tollgate server (its retry schedule shortened to three immediate retries) sends events to a
receiver running in this process (`http.server` on a free port). Every delivery the tests look at
is verified with `standardwebhooks.Webhook(secret).verify(body, headers)`, as a product's backend
written in Python would verify it, not with anything of Tollgate's.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from conftest import Server, _tollgate

PASSWORD_FOR_TESTS = "correct horse battery staple"


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every POST; answers the statuses in `script` first, then 200."""

    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 60.0) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.deliveries) >= count:
                    return list(self.deliveries)
            time.sleep(0.05)
        pytest.fail(f"the receiver got {len(self.deliveries)} deliveries, not {count}, within {timeout} s")

    def reset(self, script: list[int] | None = None) -> None:
        with self.lock:
            self.deliveries.clear()
            self.script = list(script or [])


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with state.lock:
                status = state.script.pop(0) if state.script else 200
                state.deliveries.append(Delivery(headers=dict(self.headers.items()), body=body, answered=status))
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    try:
        yield state
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def webhook_server() -> Iterator[Server]:
    with _tollgate({"WEBHOOK_RETRY_SCHEDULE": "0,0,0"}) as started:
        yield started


@dataclass
class Setup:
    admin: httpx.Client
    user: httpx.Client
    user_id: str
    endpoint_id: str
    secret: str


@pytest.fixture(scope="module")
def setup(webhook_server: Server, receiver: Receiver) -> Iterator[Setup]:
    admin = httpx.Client(base_url=webhook_server.base_url, headers={"x-admin-key": webhook_server.admin_key})
    email = f"hooks-{uuid.uuid4().hex}@example.com"
    registered = admin.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD_FOR_TESTS})
    assert registered.status_code == 201, registered.text
    user_id = registered.json()["id"]
    granted = admin.post(
        "/api/v1/credits/grant",
        headers={"Idempotency-Key": uuid.uuid4().hex},
        json={"user_id": user_id, "amount": 100, "reason": "webhooks"},
    )
    assert granted.status_code == 200, granted.text
    session = admin.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD_FOR_TESTS}).json()
    user = httpx.Client(
        base_url=webhook_server.base_url, headers={"authorization": f"Bearer {session['access_token']}"}
    )
    # Made after the grant, the endpoint hears only of what comes next.
    created = admin.post("/api/v1/webhook-endpoints", json={"url": receiver.url, "events": ["credits.spent"]})
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["secret"].startswith("whsec_")
    yield Setup(admin=admin, user=user, user_id=user_id, endpoint_id=endpoint["id"], secret=endpoint["secret"])
    admin.close()
    user.close()


def spend(setup: Setup, amount: int) -> None:
    response = setup.user.post(
        "/api/v1/credits/spend", headers={"Idempotency-Key": uuid.uuid4().hex}, json={"amount": amount}
    )
    assert response.status_code == 200, response.text


def test_a_spend_is_delivered_and_the_official_library_verifies_it(setup: Setup, receiver: Receiver) -> None:
    receiver.reset()
    spend(setup, 5)
    (delivery,) = receiver.wait_for(1)
    event = Webhook(setup.secret).verify(delivery.body, delivery.headers)
    assert event["type"] == "credits.spent"
    assert event["id"] == delivery.headers["webhook-id"]
    assert event["customer"]["id"] == setup.user_id
    assert delivery.headers["content-type"] == "application/json"
    # A body changed on the way, or another secret, does not verify.
    with pytest.raises(WebhookVerificationError):
        Webhook(setup.secret).verify(delivery.body.replace(b"credits.spent", b"credits.xpent"), delivery.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=").verify(delivery.body, delivery.headers)
    time.sleep(1.5)
    assert len(receiver.deliveries) == 1, "delivered once"


def test_a_receiver_failing_three_times_gets_the_event_on_the_fourth_attempt(setup: Setup, receiver: Receiver) -> None:
    receiver.reset(script=[500, 502, 503])
    spend(setup, 1)
    deliveries = receiver.wait_for(4)
    assert [d.answered for d in deliveries] == [500, 502, 503, 200]
    assert len({d.headers["webhook-id"] for d in deliveries}) == 1
    for delivery in deliveries:
        Webhook(setup.secret).verify(delivery.body, delivery.headers)
    attempts = setup.admin.get(
        f"/api/v1/webhook-endpoints/{setup.endpoint_id}/deliveries",
        params={"event_id": deliveries[0].headers["webhook-id"]},
    ).json()["data"]
    assert sorted(a["attempt"] for a in attempts) == [1, 2, 3, 4]
    assert sorted(a["status_code"] for a in attempts) == [200, 500, 502, 503]


def test_during_a_rotation_old_and_new_secrets_both_verify(setup: Setup, receiver: Receiver) -> None:
    old = setup.secret
    rotated = setup.admin.post(f"/api/v1/webhook-endpoints/{setup.endpoint_id}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != old
    receiver.reset()
    spend(setup, 2)
    (delivery,) = receiver.wait_for(1)
    assert len(delivery.headers["webhook-signature"].split(" ")) == 2
    assert Webhook(new).verify(delivery.body, delivery.headers)["type"] == "credits.spent"
    assert Webhook(old).verify(delivery.body, delivery.headers)["type"] == "credits.spent"
    setup.secret = new
