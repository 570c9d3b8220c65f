"""SettlementSensor in poke mode, its inputs, and SettlementTrigger, against the emulator."""

from __future__ import annotations

import asyncio
import importlib
from datetime import datetime, timedelta, timezone
from typing import Any, cast

import pytest

from airflow_provider_dintero.exceptions import DinteroApiError, DinteroInputError
from airflow_provider_dintero.sensors.settlements import SettlementSensor
from airflow_provider_dintero.settlements import run_window
from airflow_provider_dintero.triggers.settlements import SettlementTrigger

from .conftest import LIST_PATH, settled_count

SINCE_ALL = "2026-09-01T00:00:00Z"
SINCE_NONE = "2027-06-01T00:00:00Z"


def _created(item: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(item["created_at"].replace("Z", "+00:00"))


def _poke(sensor: SettlementSensor) -> tuple[bool, Any]:
    result = sensor.poke(cast("Any", {}))
    return result.is_done, result.xcom_value


def _sensor(**kwargs: Any) -> SettlementSensor:
    kwargs.setdefault("task_id", "wait")
    return SettlementSensor(**kwargs)


def test_poke_finds_settlements_created_since(emu: Any) -> None:
    mid = emu.merchant_ids[0]
    since = "2026-10-10T00:00:00Z"
    expected = {
        s["id"] for s in emu.settlements(mid) if _created(s) >= datetime(2026, 10, 10, tzinfo=timezone.utc)
    }
    assert 0 < len(expected) < len(emu.settlements(mid))  # the filter matters

    done, value = _poke(_sensor(account_id=mid, since=since))

    assert done
    assert set(value["settlement_ids"]) == expected
    assert value["account_id"] == mid
    first = value["settlements"][0]
    assert set(first) == {"id", "provider", "created_at", "settled_at", "attachments"}
    assert {a["id"] for a in first["attachments"]} == {
        a["id"] for s in emu.settlements(mid) if s["id"] == first["id"] for a in s["attachments"]
    }
    assert settled_count(emu, 1, "GET", LIST_PATH) == 1


def test_poke_filters_on_created_at_not_settlement_date(emu: Any) -> None:
    # Klarna's seeded file is settled in October but recorded on 2026-11-20.
    mid = emu.merchant_ids[0]
    done, value = _poke(_sensor(account_id=mid, since="2026-11-01"))

    assert done
    assert [s["provider"] for s in value["settlements"]] == ["klarna"]
    settled_count(emu, 1, "GET", LIST_PATH)
    (request,) = [r for r in emu.requests if r.method == "GET" and r.path.endswith("/settlements")]
    assert "item_created_at.gte" in request.query
    assert "created_at.gte" not in request.query


def test_poke_not_found(emu: Any) -> None:
    done, value = _poke(_sensor(account_id=emu.merchant_ids[0], since=SINCE_NONE))

    assert not done
    assert value is None
    assert settled_count(emu, 1, "GET", LIST_PATH) == 1


@pytest.mark.parametrize(
    ("providers", "expected"),
    [
        (["vipps"], {"vipps"}),
        ("Walley", {"collector"}),
        (["swedbank_pay", "Klarna"], {"payex", "klarna"}),
    ],
)
def test_poke_provider_filter(emu: Any, providers: Any, expected: set[str]) -> None:
    done, value = _poke(_sensor(account_id=emu.merchant_ids[1], since=SINCE_ALL, payment_providers=providers))

    assert done
    assert {s["provider"] for s in value["settlements"]} == expected
    settled_count(emu, 1, "GET", LIST_PATH)
    (request,) = [r for r in emu.requests if r.method == "GET" and r.path.endswith("/settlements")]
    assert set(request.query["payment_provider"]) == expected


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"payment_providers": ["pay/pal"]}, "payment_providers"),
        ({"since": "last tuesday"}, "since"),
        ({"account_id": "merchant-1"}, "account_id"),
        ({"lookback": 3600, "since": None}, "lookback"),
    ],
)
def test_bad_input_fails_before_any_request(emu: Any, kwargs: dict[str, Any], field: str) -> None:
    params = {"account_id": emu.merchant_ids[0], "since": SINCE_ALL, **kwargs}
    with pytest.raises(DinteroInputError) as err:
        _sensor(**params).poke(cast("Any", {}))
    assert err.value.field == field
    assert emu.requests == []


def test_api_error_is_never_found(emu: Any) -> None:
    emu.inject_fault(path_regex=LIST_PATH, status=500, count=10)

    with pytest.raises(DinteroApiError) as err:
        _sensor(account_id=emu.merchant_ids[0], since=SINCE_ALL).poke(cast("Any", {}))

    assert err.value.status == 500
    assert settled_count(emu, 2, "GET", LIST_PATH, status=500) == 2  # one retry, then the error


@pytest.mark.parametrize("status", [403, 404])
def test_access_errors_fail_at_once_naming_account_and_grant(emu: Any, status: int) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    mid = emu.merchant_ids[2]
    emu.inject_fault(path_regex=LIST_PATH, status=status, count=5)

    with pytest.raises(AirflowFailException) as err:
        _sensor(account_id=mid, since=SINCE_ALL).poke(cast("Any", {}))

    assert mid in str(err.value)
    assert "read:settlements" in str(err.value)
    assert settled_count(emu, 1, "GET", LIST_PATH) == 1


def test_merchant_of_another_partner_fails_with_the_reason(emu: Any) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    foreign = emu.foreign_merchant_id
    with pytest.raises(AirflowFailException) as err:
        _sensor(account_id=foreign, since=SINCE_ALL).poke(cast("Any", {}))

    assert f"settlements of account {foreign} (403)" in str(err.value)
    assert "does not belong to partner" in str(err.value)


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        (  # a scheduled run with a real interval (Airflow 2.11's cron timetable)
            {
                "data_interval_start": datetime(2026, 11, 24, tzinfo=timezone.utc),
                "data_interval_end": datetime(2026, 11, 25, tzinfo=timezone.utc),
            },
            "2026-11-23T23:00:00.000000Z",
        ),
        (  # an empty interval (Airflow 3's CronTriggerTimetable): the day before
            {
                "data_interval_start": datetime(2026, 11, 25, tzinfo=timezone.utc),
                "data_interval_end": datetime(2026, 11, 25, tzinfo=timezone.utc),
            },
            "2026-11-23T23:00:00.000000Z",
        ),
        (  # a manual run without an interval: the day before the logical date
            {"logical_date": datetime(2026, 11, 25, 12, tzinfo=timezone.utc)},
            "2026-11-24T11:00:00.000000Z",
        ),
    ],
)
def test_default_since_is_window_start_minus_lookback(context: dict[str, Any], expected: str) -> None:
    assert _sensor(account_id="T11200001").resolve_since(cast("Any", context)) == expected


def test_run_window_keeps_a_real_interval() -> None:
    start, end = datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 11, 2, tzinfo=timezone.utc)
    assert run_window(cast("Any", {"data_interval_start": start, "data_interval_end": end})) == (start, end)


# ---------------------------------------------------------------------------- trigger


def test_trigger_serialize_round_trip() -> None:
    trigger = SettlementTrigger(
        account_id="T11200001",
        since="2026-11-01T00:00:00.000000Z",
        payment_providers=["vipps", "payex"],
        dintero_conn_id="dintero_other",
        poll_interval=5,
        first_poll_after=5,
    )
    path, kwargs = trigger.serialize()
    module, name = path.rsplit(".", 1)
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)

    assert type(rebuilt) is SettlementTrigger
    assert rebuilt.serialize() == (path, kwargs)
    assert kwargs == {
        "account_id": "T11200001",
        "since": "2026-11-01T00:00:00.000000Z",
        "payment_providers": ["vipps", "payex"],
        "dintero_conn_id": "dintero_other",
        "poll_interval": 5.0,
        "first_poll_after": 5.0,
    }


async def _first_event(trigger: SettlementTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return event.payload
    raise AssertionError("the trigger ended without an event")


def test_trigger_one_list_request_per_poll_then_success(emu: Any) -> None:
    mid = emu.merchant_ids[0]
    trigger = SettlementTrigger(account_id=mid, since="2026-11-01T00:00:00Z", payment_providers=["klarna"])

    payload = asyncio.run(_first_event(trigger))

    assert payload["status"] == "success"
    assert [s["provider"] for s in payload["settlements"]] == ["klarna"]
    assert settled_count(emu, 1, "GET", LIST_PATH) == 1


def test_trigger_keeps_polling_until_a_settlement_arrives(emu: Any) -> None:
    mid = emu.merchant_ids[0]
    since = datetime(2027, 1, 1, tzinfo=timezone.utc)
    trigger = SettlementTrigger(account_id=mid, since=since.isoformat(), poll_interval=0.05)

    async def scenario() -> dict[str, Any]:
        task = asyncio.ensure_future(_first_event(trigger))
        while emu.count("GET", LIST_PATH) < 2:
            await asyncio.sleep(0.01)
        assert not task.done()
        added = await asyncio.to_thread(emu.add_settlement, mid, created_at=since + timedelta(hours=1))
        payload = await asyncio.wait_for(task, 30)
        payload["added"] = added["id"]
        return payload

    payload = asyncio.run(scenario())

    assert payload["status"] == "success"
    assert [s["id"] for s in payload["settlements"]] == [payload["added"]]


def test_trigger_sends_nothing_before_first_poll_after(emu: Any) -> None:
    trigger = SettlementTrigger(account_id=emu.merchant_ids[0], since=SINCE_ALL, first_poll_after=30)

    async def scenario() -> bool:
        task = asyncio.ensure_future(_first_event(trigger))
        await asyncio.sleep(0.3)  # well inside the 30 s wait: the trigger is still waiting
        task.cancel()
        return task.done()

    asyncio.run(scenario())

    assert emu.count("GET", LIST_PATH) == 0


def test_deferred_sensor_trigger_waits_one_poll_interval_first(emu: Any) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    sensor = SettlementSensor(
        task_id="wait",
        account_id=emu.merchant_ids[0],
        since="2027-01-01T00:00:00Z",
        deferrable=True,
        poll_interval=45,
    )

    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(cast("Any", {}))

    assert deferred.value.trigger.first_poll_after == 45.0


@pytest.mark.parametrize(("status", "text"), [(403, "read:settlements"), (500, "500")])
def test_trigger_error_event(emu: Any, status: int, text: str) -> None:
    mid = emu.merchant_ids[1]
    emu.inject_fault(path_regex=LIST_PATH, status=status, count=5)

    payload = asyncio.run(_first_event(SettlementTrigger(account_id=mid, since=SINCE_ALL)))

    assert payload["status"] == "error"
    assert payload["status_code"] == status
    assert mid in payload["message"]
    assert text in payload["message"]


@pytest.mark.parametrize(
    ("event", "error"),
    [
        ({"status": "error", "status_code": 403, "message": "no grant", "account_id": "T11200001"}, "fail"),
        ({"status": "error", "status_code": 500, "message": "boom", "account_id": "T11200001"}, "api"),
    ],
)
def test_execute_complete_raises_on_error_events(event: dict[str, Any], error: str) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    expected = AirflowFailException if error == "fail" else DinteroApiError
    with pytest.raises(expected, match=event["message"]):
        _sensor(account_id="T11200001").execute_complete({}, event)


def test_execute_complete_returns_what_the_trigger_found() -> None:
    summary = {"id": "s1", "provider": "vipps", "created_at": "x", "settled_at": "y", "attachments": []}
    event = {"status": "success", "account_id": "T11200001", "since": "z", "settlements": [summary]}

    assert _sensor(account_id="T11200001").execute_complete({}, event) == {
        "account_id": "T11200001",
        "since": "z",
        "settlement_ids": ["s1"],
        "settlements": [summary],
    }
