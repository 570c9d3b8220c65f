"""Reading a verified delivery: ping whatever its body, settlements from any plausible shape, a
wake-up otherwise; and the refusal log's once-per-minute rule."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from airflow_provider_dintero.webhooks.delivery import DeliveryRefused, parse_delivery

PATH_ACCOUNT = "P11200000"
MERCHANT = "P11200001"

#: Dintero's documented ping body: the bare subscription object, no envelope.
BARE_PING = {
    "created_at": "2026-12-06T10:00:00Z",
    "id": "3f1c6a52-8e53-4d7e-9c4a-1f4f8b2a9e10",
    "config": {
        "url": "https://airflow.example.com/dintero-webhooks/P11200000",
        "content_type": "application/json",
    },
    "events": ["settlement_add"],
    "active": True,
}


def _parse(body: Any, event: str | None = "settlement_add", delivery: str | None = "d-1") -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_delivery(raw, event, delivery, PATH_ACCOUNT)


@pytest.mark.parametrize(
    ("body", "event"),
    [
        (BARE_PING, "ping"),
        (BARE_PING, None),
        ({"account_id": MERCHANT, "event": "ping", "event_delivery": "d-1"}, "ping"),
    ],
    ids=["bare-subscription-with-header", "bare-subscription-without-header", "envelope"],
)
def test_a_ping_is_read_whatever_its_body(body: dict[str, Any], event: str | None) -> None:
    assert _parse(body, event).event == "ping"


def _envelope(**payload: Any) -> dict[str, Any]:
    return {"account_id": MERCHANT, "event": "settlement_add", "event_delivery": "d-1", **payload}


SHAPES: list[tuple[str, dict[str, Any], tuple[str, ...], tuple[str, ...]]] = [
    ("settlement-object", _envelope(settlement={"id": "s-1", "provider": "vipps"}), ("s-1",), ("vipps",)),
    (
        "settlement-list",
        _envelope(settlement=[{"id": "s-1"}, {"id": "s-2", "provider": "payex"}]),
        ("s-1", "s-2"),
        ("payex",),
    ),
    ("settlements-list", _envelope(settlements=[{"id": "s-1", "provider": "vipps"}]), ("s-1",), ("vipps",)),
    ("data-object", _envelope(data={"id": "s-1", "provider": "vipps"}), ("s-1",), ("vipps",)),
    ("data-holding-settlement", _envelope(data={"settlement": {"id": "s-1"}}), ("s-1",), ()),
    ("only-ids", _envelope(settlement_ids=["s-1", "s-2"]), ("s-1", "s-2"), ()),
    ("one-id", _envelope(settlement_id="s-1"), ("s-1",), ()),
]


@pytest.mark.parametrize(("body", "ids", "providers"), [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES])
def test_settlements_are_read_from_every_plausible_shape(
    body: dict[str, Any], ids: tuple[str, ...], providers: tuple[str, ...]
) -> None:
    delivery = _parse(body)

    assert (delivery.settlement_ids, delivery.providers, delivery.recognised) == (ids, providers, True)
    assert "shape" not in delivery.asset_extra()


UNREADABLE: list[tuple[str, dict[str, Any]]] = [
    ("no-settlement-key", _envelope(payout={"id": "s-1"})),
    ("settlement-without-id", _envelope(settlement={"provider": "vipps"})),
    ("id-with-a-slash", _envelope(settlement={"id": "../x"})),
    ("one-bad-item-of-two", _envelope(settlements=[{"id": "s-1"}, {"id": 7}])),
    ("empty-list", _envelope(settlements=[])),
    ("bad-provider", _envelope(settlement={"id": "s-1", "provider": "a/b"})),
    ("no-envelope-at-all", {"whatever": True}),
]


@pytest.mark.parametrize("body", [u[1] for u in UNREADABLE], ids=[u[0] for u in UNREADABLE])
def test_an_unreadable_settlement_add_is_a_wake_up_for_the_account(body: dict[str, Any]) -> None:
    delivery = _parse(body)

    assert delivery.asset_extra() == {
        "version": 1,
        "account_id": body.get("account_id", PATH_ACCOUNT),
        "settlement_ids": [],
        "providers": [],
        "source": "webhook",
        "event_delivery": "d-1",
        "shape": "unrecognised",
    }


def test_an_unrecognised_shape_is_logged_once_with_its_top_level_keys_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = _envelope(payout_report={"id": "secret-looking-id"}, zz_marker=1)

    with caplog.at_level("WARNING"):
        _parse(body, delivery="d-1")
        _parse({**body, "event_delivery": "d-2"}, delivery="d-2")

    lines = [r.getMessage() for r in caplog.records if "does not read" in r.getMessage()]
    assert len(lines) == 1
    assert "account_id, event, event_delivery, payout_report, zz_marker" in lines[0]
    assert "secret-looking-id" not in caplog.text


@pytest.mark.parametrize(
    ("body", "header", "expected"),
    [
        (_envelope(settlement={"id": "s-1"}), "d-1", "d-1"),
        ({**_envelope(settlement={"id": "s-1"}), "event_delivery": "d-body"}, None, "d-body"),
    ],
    ids=["header", "body"],
)
def test_the_delivery_id_comes_from_the_header_or_the_body(
    body: dict[str, Any], header: str | None, expected: str
) -> None:
    assert _parse(body, delivery=header).event_delivery == expected


def test_a_delivery_without_an_id_is_identified_by_its_body() -> None:
    body = {"account_id": MERCHANT, "event": "settlement_add", "settlement": {"id": "s-1"}}
    raw = json.dumps(body).encode()

    assert _parse(raw, delivery=None).event_delivery == "sha256:" + hashlib.sha256(raw).hexdigest()


def test_the_path_account_is_used_when_the_body_names_no_valid_account() -> None:
    assert _parse(_envelope(account_id="P1", settlement={"id": "s-1"})).account_id == PATH_ACCOUNT


@pytest.mark.parametrize(
    ("body", "event", "delivery"),
    [
        (b"settlement_add please", "settlement_add", "d-1"),
        (b"[]", "settlement_add", "d-1"),
        (b'{"event": "ping", "event": "settlement_add"}', None, "d-1"),
        (_envelope(settlement={"id": "s-1"}), "ping", "d-1"),
        (_envelope(settlement={"id": "s-1"}), "settlement_add", "another"),
        ({"settlement": {"id": "s-1"}}, None, "d-1"),
        (_envelope(settlement={"id": "s-1"}), "settlement_add", "bad id with spaces"),
    ],
    ids=[
        "not-json",
        "array",
        "duplicate-keys",
        "event-header-differs",
        "delivery-header-differs",
        "no-event",
        "bad-delivery-id",
    ],
)
def test_what_cannot_be_read_at_all_is_refused(body: Any, event: str | None, delivery: str | None) -> None:
    with pytest.raises(DeliveryRefused) as refused:
        _parse(body, event, delivery)

    assert refused.value.status == 400


def test_a_refusal_is_logged_at_most_once_per_account_per_minute() -> None:
    from airflow_provider_dintero.webhooks.receiver import RefusalLog

    log = RefusalLog()

    assert [log.should_log("P1", t) for t in (0.0, 1.0, 59.9, 60.0)] == [True, False, False, True]
    assert log.should_log("P2", 1.0)


def test_a_flood_of_distinct_paths_logs_no_more_than_the_capacity() -> None:
    from airflow_provider_dintero.webhooks.receiver import RefusalLog

    log = RefusalLog(capacity=10)

    logged = sum(log.should_log(f"P{i:08d}", 1.0) for i in range(1000))

    assert logged == 10
