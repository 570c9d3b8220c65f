"""The settlement event (``airflow_provider_dintero.events``): one shape, built and read in one place."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_dintero.events import (
    UNRECOGNISED,
    VERSION,
    SettlementEvent,
    build_extra,
    event_accounts,
    parse_extra,
    poll_extra,
    wake_up_extra,
)
from airflow_provider_dintero.exceptions import DinteroInputError
from airflow_provider_dintero.webhooks.delivery import Delivery

MID = "T11200001"


def test_the_webhook_and_the_watcher_write_the_same_shape() -> None:
    webhook = Delivery(MID, "settlement_add", "d-1", ("s1",), ("vipps",)).asset_extra()
    watcher = poll_extra(MID, [{"id": "s1", "provider": "vipps"}])

    assert webhook == {**watcher, "source": "webhook", "event_delivery": "d-1"}
    assert watcher == {
        "version": VERSION,
        "account_id": MID,
        "settlement_ids": ["s1"],
        "providers": ["vipps"],
        "source": "poll",
    }


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (  # written before "version" existed: read as version 1
            {"account_id": MID, "settlement_ids": ["s1"], "providers": ["vipps"], "source": "webhook"},
            SettlementEvent(MID, ("s1",), ("vipps",), "webhook"),
        ),
        (  # the watcher's payload as the triggerer stores it
            {"from_trigger": True, "payload": poll_extra(MID, [{"id": "s1"}])},
            SettlementEvent(MID, ("s1",), (), "poll"),
        ),
        (
            wake_up_extra(MID, source="webhook", event_delivery="d-2"),
            SettlementEvent(MID, (), (), "webhook", "d-2", UNRECOGNISED),
        ),
        (  # a later version: a wake-up for its account, its ids not trusted
            {"version": 2, "account_id": MID, "settlement_ids": ["s1"], "source": "poll"},
            SettlementEvent(MID, (), (), "poll", None, UNRECOGNISED, 2),
        ),
        ({"account_id": MID, "written": 3}, None),  # the copy's own asset event
        ({"from_trigger": True, "payload": {"status": "success"}}, None),
    ],
)
def test_parse_extra(extra: dict[str, Any], expected: SettlementEvent | None) -> None:
    assert parse_extra(SimpleNamespace(extra=extra)) == expected
    assert parse_extra(extra) == expected


def test_an_event_without_ids_is_a_wake_up() -> None:
    event = parse_extra(wake_up_extra(MID, source="webhook", event_delivery="d-3"))

    assert event is not None and event.is_wake_up
    assert not SettlementEvent(MID, ("s1",)).is_wake_up


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"account_id": "P1", "settlement_ids": []}, "extra.account_id"),
        ({"account_id": MID, "settlement_ids": "s1"}, "extra.settlement_ids"),
        ({"account_id": MID, "settlement_ids": [""]}, "extra.settlement_ids"),
        ({"account_id": MID, "settlement_ids": [], "version": "1"}, "extra.version"),
    ],
)
def test_a_malformed_settlement_event_names_the_field(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(DinteroInputError) as err:
        parse_extra(extra)

    assert err.value.field == field


def test_build_extra_refuses_an_unknown_source_and_a_bad_account() -> None:
    with pytest.raises(DinteroInputError, match="source"):
        build_extra(MID, [], source="email")  # type: ignore[arg-type]
    with pytest.raises(DinteroInputError, match="account_id"):
        build_extra("P1", [], source="poll")


def test_event_accounts_in_order_of_first_appearance() -> None:
    events = {
        "a": [
            SimpleNamespace(extra={"from_trigger": True, "payload": poll_extra("T11200002", [{"id": "s"}])}),
            SimpleNamespace(extra=wake_up_extra(MID, source="webhook")),
            SimpleNamespace(extra={"account_id": "T11200002", "settlement_ids": ["s3"]}),
            SimpleNamespace(extra={"account_id": "nope", "settlement_ids": ["s4"]}),
        ]
    }

    assert event_accounts(events) == ["T11200002", MID]
    assert event_accounts(None) == []
