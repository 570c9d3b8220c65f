"""The webhook receiver over real HTTP: what it records, what it refuses, and replays."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.webhooks.conftest import (
    SECRET,
    airflow3_only,
    asset_event_extras,
    delivery,
    hmac_sha1,
    lonely_account,
    queued_dag_ids,
    serve,
    signed,
)

pytestmark = [airflow3_only, pytest.mark.usefixtures("secret_variable", "consumer_dag")]

Request = tuple[str, "bytes | Iterator[bytes]", dict[str, str]]


def _path(account_id: str) -> str:
    from airflow_provider_dintero.webhooks import receiver_path

    return receiver_path(account_id)


def test_the_plugin_mounts_the_receiver_through_the_entry_point() -> None:
    from airflow import plugins_manager

    apps, _ = plugins_manager.get_fastapi_plugins()

    assert [a["url_prefix"] for a in apps if a["name"] == "Dintero webhook receiver"] == ["/dintero-webhooks"]


def test_a_signed_settlement_add_records_one_asset_event_with_ids_only(
    post: Callable[..., Any], partner: str, consumer_dag: str
) -> None:
    merchant = partner[:4] + "00001"
    envelope = delivery(merchant, settlement={"id": "s-1", "provider": "vipps", "amount": 10})
    body, headers = signed(envelope)

    response = post(_path(partner), body, headers)

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"
    assert asset_event_extras(partner) == [
        {
            "version": 1,
            "account_id": merchant,
            "settlement_ids": ["s-1"],
            "providers": ["vipps"],
            "source": "webhook",
            "event_delivery": envelope["event_delivery"],
        }
    ]
    assert queued_dag_ids(partner) == [consumer_dag]


def test_a_replayed_delivery_is_answered_but_records_nothing(post: Callable[..., Any], partner: str) -> None:
    body, headers = signed(delivery(partner))
    first = post(_path(partner), body, headers)

    replay = post(_path(partner), body, headers)

    assert (first.status_code, replay.status_code) == (202, 200)
    assert replay.json() == {"status": "duplicate", "asset_event_id": first.json()["asset_event_id"]}
    assert len(asset_event_extras(partner)) == 1


def test_replays_are_recognised_by_a_new_receiver_from_the_metadata_db(
    post: Callable[..., Any], partner: str
) -> None:
    import httpx

    from airflow_provider_dintero.webhooks.receiver import create_app
    from airflow_provider_dintero.webhooks.settings import ReceiverSettings

    body, headers = signed(delivery(partner))
    assert post(_path(partner), body, headers).status_code == 202

    fresh = serve(create_app(ReceiverSettings(enabled=True, accounts=frozenset({partner}))))
    base = next(fresh)
    try:
        replay = httpx.post(f"{base}/{partner}", content=body, headers=headers, timeout=30)
    finally:
        next(fresh, None)

    assert replay.json()["status"] == "duplicate"
    assert len(asset_event_extras(partner)) == 1


@pytest.mark.parametrize(
    ("age_days", "outcome"), [(29, "duplicate"), (31, "accepted")], ids=["inside-window", "after-window"]
)
def test_replays_are_looked_for_within_the_replay_window(
    post: Callable[..., Any], partner: str, age_days: int, outcome: str
) -> None:
    from datetime import datetime, timedelta, timezone

    from airflow.utils.session import create_session

    from airflow_provider_dintero.webhooks.replay import DELIVERIES

    envelope = delivery(partner)
    body, headers = signed(envelope)
    assert post(_path(partner), body, headers).status_code == 202
    with create_session() as session:
        session.execute(
            DELIVERIES.update()
            .where(DELIVERIES.c.event_delivery == envelope["event_delivery"])
            .values(received_at=datetime.now(timezone.utc) - timedelta(days=age_days))
        )

    replay = post(_path(partner), body, headers)

    assert replay.json()["status"] == outcome


@pytest.mark.parametrize(
    ("event", "outcome"), [("ping", "pong"), ("account_update", "ignored")], ids=["ping", "other-event"]
)
def test_signed_events_other_than_settlement_add_are_acknowledged_without_an_event(
    post: Callable[..., Any], partner: str, event: str, outcome: str
) -> None:
    body, headers = signed(delivery(partner, event=event))

    response = post(_path(partner), body, headers)

    assert (response.status_code, response.json()["status"]) == (200, outcome)
    assert asset_event_extras(partner) == []


def test_an_account_no_dag_schedules_on_is_acknowledged_without_an_event(
    post: Callable[..., Any], partner: str
) -> None:
    from airflow.models.variable import Variable

    from airflow_provider_dintero.webhooks import webhook_secret_variable

    lonely = lonely_account(partner)
    Variable.set(webhook_secret_variable(lonely), SECRET)
    try:
        body, headers = signed(delivery(lonely))
        response = post(_path(lonely), body, headers)
    finally:
        Variable.delete(webhook_secret_variable(lonely))

    assert (response.status_code, response.json()["status"]) == (200, "no-asset")
    assert asset_event_extras(lonely) == []


# --- refusals --------------------------------------------------------------------------------


def _valid(partner: str) -> Request:
    body, headers = signed(delivery(partner))
    return _path(partner), body, headers


def _without(header: str) -> Callable[[str], Request]:
    def build(partner: str) -> Request:
        path, body, headers = _valid(partner)
        return path, body, {k: v for k, v in headers.items() if k != header}

    return build


def _with_headers(**changes: str) -> Callable[[str], Request]:
    def build(partner: str) -> Request:
        path, body, headers = _valid(partner)
        new = {k.replace("_", "-"): v for k, v in changes.items()}
        kept = {k: v for k, v in headers.items() if k.lower() not in new}
        return path, body, {**kept, **new}

    return build


def _forged(partner: str) -> Request:
    body, headers = signed(delivery(partner), secret="not-the-subscription-secret")
    return _path(partner), body, headers


def _changed_after_signing(partner: str) -> Request:
    path, body, headers = _valid(partner)
    return path, body.replace(b'"vipps"', b'"payex"'), headers


def _signed_body(raw: bytes, event_delivery: str | None = None) -> Callable[[str], Request]:
    def build(partner: str) -> Request:
        delivery_id = event_delivery or str(uuid.uuid4())
        return (
            _path(partner),
            raw,
            {
                "Content-Type": "application/json",
                "event": "settlement_add",
                "event-delivery": delivery_id,
                "event-signature": hmac_sha1(raw, SECRET),
            },
        )

    return build


def _envelope(**changes: Any) -> Callable[[str], Request]:
    def build(partner: str) -> Request:
        envelope = {**delivery(partner), **changes}
        envelope = {k: v for k, v in envelope.items() if v is not None}
        body, headers = signed(envelope)
        return _path(partner), body, headers

    return build


def _two_megabytes(chunked: bool) -> Callable[[str], Request]:
    def build(partner: str) -> Request:
        envelope = {**delivery(partner), "padding": "x" * (2 * 1024 * 1024)}
        body, headers = signed(envelope)
        if not chunked:
            return _path(partner), body, headers
        chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
        return _path(partner), iter(chunks), headers

    return build


def _at(path_account: str) -> Callable[[str], Request]:
    def build(partner: str) -> Request:
        _, body, headers = _valid(partner)
        return f"/dintero-webhooks/{path_account}", body, headers

    return build


REFUSALS: list[tuple[str, Callable[[str], Request], int]] = [
    ("unsigned", _without("event-signature"), 401),
    ("forged-signature", _forged, 401),
    ("signature-not-hex", _with_headers(event_signature="z" * 40), 401),
    ("signature-truncated", _with_headers(event_signature="ab" * 10), 401),
    ("body-changed-after-signing", _changed_after_signing, 401),
    ("2MB-body", _two_megabytes(chunked=False), 413),
    ("2MB-body-chunked", _two_megabytes(chunked=True), 413),
    ("text-plain", _with_headers(content_type="text/plain"), 415),
    ("not-json", _signed_body(b"settlement_add please"), 400),
    ("json-array", _signed_body(b"[]"), 400),
    ("duplicate-keys", _signed_body(b'{"event": "ping", "event": "settlement_add"}'), 400),
    ("delivery-header-differs", _with_headers(event_delivery="another-delivery"), 400),
    ("event-header-differs", _with_headers(event="ping"), 400),
    ("account-not-listed", _at("P99900000"), 404),
    ("listed-account-without-secret", lambda partner: _at(lonely_account(partner))(partner), 404),
    ("path-not-an-account", _at("not-an-account"), 404),
]


@pytest.mark.parametrize(("build", "status"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refused_deliveries_record_no_asset_event(
    post: Callable[..., Any], partner: str, build: Callable[[str], Request], status: int
) -> None:
    path, body, headers = build(partner)

    response = post(path, body, headers)

    assert response.status_code == status, response.text
    assert response.json()["status"] == "refused"
    assert SECRET not in response.text
    assert asset_event_extras(partner) == []
    assert queued_dag_ids(partner) == []


def test_refusals_never_log_the_secret_or_the_body(
    post: Callable[..., Any], partner: str, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow_provider_dintero.webhooks.receiver import REFUSAL_LOG

    REFUSAL_LOG.clear()
    envelope = delivery(partner, settlement={"id": "s-secretive", "provider": "vipps"})
    body, headers = signed(envelope, secret="wrong-secret-value")

    with caplog.at_level("INFO"):
        response = post(_path(partner), body, headers)

    assert response.status_code == 401
    assert "does not match" in caplog.text
    for leaked in (SECRET, "wrong-secret-value", "s-secretive", headers["event-signature"]):
        assert leaked not in caplog.text
    assert json.loads(response.text) == {
        "status": "refused",
        "detail": "event-signature does not match the body",
    }
