"""The generated Python client against a real Tollgate server: a customer's whole day.

The tests run in order on one server and one customer (each builds on the balance the one
before left), as a product's backend would use the client.
"""

from __future__ import annotations

import uuid
from enum import Enum
from http import HTTPStatus
from types import ModuleType
from typing import Any

import pytest

from conftest import ALL_SCOPES, Server

CUSTOMER = "acme/user #1?x=ä"


@pytest.fixture(scope="module")
def admin(tc: ModuleType, server: Server) -> Any:
    """A client that sends the admin key (the `admin_key` scheme: header `x-admin-key`)."""
    return tc.Client(base_url=server.base_url, headers={"x-admin-key": server.admin_key})


def mint(tc: ModuleType, admin: Any, scopes: list[str], name: str) -> str:
    from tollgate_client.api.server_keys import create_server_key
    from tollgate_client.models import CreateServerKeyRequest, CreatedServerKeyResponse, Scope

    response = create_server_key.sync_detailed(
        client=admin, body=CreateServerKeyRequest(name=name, scopes=[Scope(s) for s in scopes])
    )
    assert response.status_code == HTTPStatus.CREATED, response.content
    created = response.parsed
    assert isinstance(created, CreatedServerKeyResponse)
    assert sorted(created.scopes) == sorted(Scope(s) for s in scopes)
    assert created.secret.startswith("tg_sk_")
    return created.secret


@pytest.fixture(scope="module")
def client(tc: ModuleType, admin: Any, server: Server) -> Any:
    """A client with a server key holding every scope (`AuthenticatedClient(token=…)`)."""
    return tc.AuthenticatedClient(base_url=server.base_url, token=mint(tc, admin, ALL_SCOPES, "python"))


def test_upsert_get_and_list_customer(client: Any) -> None:
    from tollgate_client.api.customers import get_customer, list_customers, upsert_customer
    from tollgate_client.models import Customer, UpsertCustomerRequest, UpsertCustomerRequestMetadataType0

    created = upsert_customer.sync_detailed(
        external_id=CUSTOMER,
        client=client,
        body=UpsertCustomerRequest(
            email="ada@example.com",
            name="Ada",
            metadata=UpsertCustomerRequestMetadataType0.from_dict({"plan": "team"}),
        ),
    )
    assert created.status_code == HTTPStatus.CREATED, created.content
    assert isinstance(created.parsed, Customer)
    assert created.parsed.external_id == CUSTOMER
    assert created.parsed.balance == 0

    updated = upsert_customer.sync_detailed(
        external_id=CUSTOMER, client=client, body=UpsertCustomerRequest(name="Ada Lovelace")
    )
    assert updated.status_code == HTTPStatus.OK
    assert updated.parsed.id == created.parsed.id
    assert updated.parsed.name == "Ada Lovelace"
    assert updated.parsed.email == "ada@example.com"

    fetched = get_customer.sync(external_id=CUSTOMER, client=client)
    assert isinstance(fetched, Customer)
    assert fetched.metadata.to_dict() == {"plan": "team"}

    page = list_customers.sync(client=client, q="acme/", limit=10)
    assert CUSTOMER in [c.external_id for c in page.data]


def test_grant_check_and_spend_once_per_key(client: Any) -> None:
    from tollgate_client.api.customers import customer_balance, customer_check, customer_grant, customer_spend
    from tollgate_client.models import CheckReason, CheckRequest, CheckResponse, CustomerGrantRequest, SpendRequest

    grant = customer_grant.sync_detailed(
        external_id=CUSTOMER,
        client=client,
        idempotency_key=f"grant-{uuid.uuid4()}",
        body=CustomerGrantRequest(amount=100, reason="Welcome bonus"),
    )
    assert grant.status_code == HTTPStatus.OK, grant.content
    assert grant.parsed.balance.available == 100

    check = customer_check.sync(
        external_id=CUSTOMER, client=client, body=CheckRequest(feature="example.summarize", quantity=2)
    )
    assert isinstance(check, CheckResponse)
    assert (check.allowed, check.price, check.available) == (True, 10, 100)
    assert check.reason is None

    refused = customer_check.sync(external_id=CUSTOMER, client=client, body=CheckRequest(amount=1000))
    assert refused.allowed is False
    # A typed enum, not a bare string.
    assert isinstance(refused.reason, CheckReason) and isinstance(refused.reason, Enum)
    assert refused.reason == CheckReason.INSUFFICIENT_CREDITS

    body = SpendRequest(feature="example.summarize", quantity=2, description="two summaries")
    first = customer_spend.sync_detailed(
        external_id=CUSTOMER, client=client, idempotency_key="py-spend-1", body=body
    )
    assert first.status_code == HTTPStatus.OK, first.content
    assert first.headers.get("Idempotent-Replayed") is None
    assert first.parsed.transfer.amount == 10
    assert first.parsed.balance.available == 90

    # The retry, with the same key: the first answer again, marked as a replay, charged once.
    retry = customer_spend.sync_detailed(
        external_id=CUSTOMER, client=client, idempotency_key="py-spend-1", body=body
    )
    assert retry.status_code == HTTPStatus.OK
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert retry.parsed.transfer.id == first.parsed.transfer.id
    assert customer_balance.sync(external_id=CUSTOMER, client=client).available == 90


def test_hold_and_capture(client: Any) -> None:
    from tollgate_client.api.customers import (
        customer_capture_hold,
        customer_create_hold,
        customer_get_hold,
        customer_ledger,
    )
    from tollgate_client.models import CaptureHoldRequest, CreateHoldRequest, HoldStatus, TransferKind

    held = customer_create_hold.sync_detailed(
        external_id=CUSTOMER,
        client=client,
        idempotency_key=f"hold-{uuid.uuid4()}",
        body=CreateHoldRequest(amount=30, description="a long job"),
    )
    assert held.status_code == HTTPStatus.OK, held.content
    assert held.parsed.hold.status == HoldStatus.OPEN
    assert (held.parsed.balance.available, held.parsed.balance.held) == (60, 30)
    hold_id = held.parsed.hold.id
    assert customer_get_hold.sync(external_id=CUSTOMER, id=hold_id, client=client).amount == 30

    captured = customer_capture_hold.sync(
        external_id=CUSTOMER, id=hold_id, client=client, body=CaptureHoldRequest(amount=20)
    )
    assert captured.hold.status == HoldStatus.CAPTURED
    assert (captured.balance.balance, captured.balance.available, captured.balance.held) == (70, 70, 0)

    ledger = customer_ledger.sync(external_id=CUSTOMER, client=client)
    kinds = [entry.kind for entry in ledger.entries]
    assert all(isinstance(kind, TransferKind) for kind in kinds)
    assert TransferKind.GRANT in kinds and TransferKind.SPEND in kinds


def test_insufficient_credits_is_a_typed_problem(client: Any) -> None:
    from tollgate_client.api.customers import customer_spend
    from tollgate_client.models import SpendRequest

    response = customer_spend.sync_detailed(
        external_id=CUSTOMER, client=client, idempotency_key=f"big-{uuid.uuid4()}", body=SpendRequest(amount=1000)
    )
    assert response.status_code == HTTPStatus.PAYMENT_REQUIRED
    problem = response.parsed
    assert isinstance(problem.code, Enum)
    assert problem.code.value == "insufficient_credits"
    assert (problem.available, problem.requested) == (70, 1000)


def test_a_key_without_the_scope_gets_missing_scope(tc: ModuleType, admin: Any, server: Server) -> None:
    from tollgate_client.api.customers import customer_balance, customer_spend
    from tollgate_client.models import SpendRequest

    read_only = tc.AuthenticatedClient(
        base_url=server.base_url, token=mint(tc, admin, ["customers:read", "credits:read"], "read only")
    )
    assert customer_balance.sync(external_id=CUSTOMER, client=read_only).available == 70
    response = customer_spend.sync_detailed(
        external_id=CUSTOMER, client=read_only, idempotency_key=f"no-{uuid.uuid4()}", body=SpendRequest(amount=1)
    )
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.parsed.code.value == "missing_scope"
    assert response.parsed.required_scope == "credits:spend"


def test_unknown_customer_is_customer_not_found(client: Any) -> None:
    from tollgate_client.api.customers import get_customer

    response = get_customer.sync_detailed(external_id="nobody", client=client)
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.parsed.code.value == "customer_not_found"


def test_the_hosted_pages_cookie_scheme_is_usable(tc: ModuleType, client: Any, server: Server) -> None:
    """`hosted_session`: a portal-session link, opened once, gives the cookie the hosted routes take."""
    import httpx
    from tollgate_client.api.customers import customer_balance, customer_portal_session
    from tollgate_client.api.hosted import balance, session
    from tollgate_client.models import PortalSessionRequest

    link = customer_portal_session.sync(
        external_id=CUSTOMER, client=client, body=PortalSessionRequest(return_url=f"{server.base_url}/account")
    )
    opened = httpx.get(link.url.replace("http://127.0.0.1:8080", server.base_url), follow_redirects=False)
    assert opened.status_code == HTTPStatus.SEE_OTHER
    cookie = opened.cookies.get("tollgate_hosted")
    assert cookie
    hosted = tc.Client(base_url=server.base_url, cookies={"tollgate_hosted": cookie})
    who = session.sync(client=hosted)
    assert who.customer.external_id == CUSTOMER
    assert who.return_url == f"{server.base_url}/account"
    assert balance.sync(client=hosted).available == customer_balance.sync(external_id=CUSTOMER, client=client).available
    # Without the cookie: a typed 401.
    refused = balance.sync_detailed(client=tc.Client(base_url=server.base_url))
    assert refused.status_code == HTTPStatus.UNAUTHORIZED
    assert refused.parsed.code.value == "portal_session_required"
