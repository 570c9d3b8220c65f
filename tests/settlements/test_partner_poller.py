"""
One poller for many merchants: PartnerSettlementTrigger, the sensor's many-merchant forms and
the copy mapped over their result, against a 30-merchant emulator and a slow hostile server.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any, cast

import pytest

from airflow_provider_dintero.emulator import EmulatorSeed
from airflow_provider_dintero.emulator.pytest_plugin import connection_json
from airflow_provider_dintero.emulator.server import DinteroEmulator
from airflow_provider_dintero.exceptions import DinteroApiError, DinteroInputError
from airflow_provider_dintero.poller import Sweep, sweep_payload
from airflow_provider_dintero.sensors.settlements import SettlementSensor, settlement_copy_kwargs
from airflow_provider_dintero.triggers.settlements import PartnerSettlementTrigger
from tests.reliability.conftest import hostile_connection
from tests.reliability.hostile import HostileServer, Reply, Seen

MERCHANTS = 30
#: after every seeded settlement: only the ones a test adds are new
SINCE = "2027-06-01T00:00:00Z"
NEW_AT = "2027-07-01T08:00:00Z"
TOKEN_PATH = r"/auth/(token|exchange_token)$"


@pytest.fixture(scope="module")
def many_server() -> Iterator[DinteroEmulator]:
    with DinteroEmulator(EmulatorSeed(merchants=MERCHANTS, settlements_per_provider=1)) as emu:
        yield emu


@pytest.fixture
def many(many_server: DinteroEmulator, monkeypatch: pytest.MonkeyPatch) -> DinteroEmulator:
    """The 30-merchant emulator, reset, behind ``dintero_default`` with fast retries."""
    many_server.reset()
    conn = json.loads(connection_json(many_server))
    conn["extra"].update({"max_retries": 1, "retry_backoff": 0.01, "retry_max_wait": 0.05})
    monkeypatch.setenv("AIRFLOW_CONN_DINTERO_DEFAULT", json.dumps(conn))
    return many_server


def _first_event(trigger: Any) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(first())


def _add(emu: DinteroEmulator, *indexes: int, provider: str = "vipps") -> dict[str, list[str]]:
    added: dict[str, list[str]] = {}
    for i in indexes:
        mid = emu.merchant_ids[i]
        added.setdefault(mid, []).append(emu.add_settlement(mid, provider=provider, created_at=NEW_AT)["id"])
    return added


def _poke(sensor: SettlementSensor) -> tuple[bool, Any]:
    result = sensor.poke(cast("Any", {}))
    return result.is_done, result.xcom_value


# ------------------------------------------------------------------------------ trigger


def test_partner_trigger_reports_every_merchant_found_in_the_sweep(many: DinteroEmulator) -> None:
    added = _add(many, 3, 17, 17)

    event = _first_event(PartnerSettlementTrigger(since=SINCE, poll_interval=0.01))

    assert event["status"] == "success"
    assert event["checked"] == MERCHANTS
    found = {m["account_id"]: sorted(m["settlement_ids"]) for m in event["merchants"]}
    assert found == {aid: sorted(ids) for aid, ids in added.items()}
    assert many.count("GET", r"/settlements$") == MERCHANTS
    assert event["skipped"] == []


def test_partner_trigger_event_names_ids_not_whole_settlements(many: DinteroEmulator) -> None:
    added = _add(many, 3, 17, 17)

    event = _first_event(PartnerSettlementTrigger(since=SINCE, poll_interval=0.01))

    assert (event["version"], event["found"]) == (2, 3)
    assert all(set(m) == {"account_id", "settlement_ids"} for m in event["merchants"])
    assert {m["account_id"]: sorted(m["settlement_ids"]) for m in event["merchants"]} == {
        aid: sorted(ids) for aid, ids in added.items()
    }
    assert "attachments" not in json.dumps(event)


@pytest.mark.parametrize("attachments", [0, 2, 20])
def test_partner_event_stays_ids_and_counts_whatever_a_settlement_holds(attachments: int) -> None:
    merchants = [f"T1{i:07d}" for i in range(1, 1001)]
    settlement = {
        "id": "s-0001",
        "provider": "vipps",
        "created_at": NEW_AT,
        "settled_at": NEW_AT,
        "attachments": [
            {"id": f"a{i}", "created_by": "dintero", "extension": "csv"} for i in range(attachments)
        ],
    }
    sweep = Sweep(found={aid: [settlement] for aid in merchants}, checked=len(merchants))

    event = sweep_payload(sweep, SINCE)

    assert len(json.dumps(event)) < 60 * len(merchants)  # the account id, the id and the keys
    assert event["merchants"][0] == {"account_id": merchants[0], "settlement_ids": ["s-0001"]}


def test_partner_trigger_polls_until_one_merchant_has_settlements(many: DinteroEmulator) -> None:
    polls = 0

    async def run() -> dict[str, Any]:
        nonlocal polls
        trigger = PartnerSettlementTrigger(since=SINCE, poll_interval=0.05, account_ids=many.merchant_ids[:5])
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("no event")

    def add_later() -> None:
        while many.count("GET", r"/settlements$") < 10:  # two sweeps of five found nothing
            time.sleep(0.01)
        _add(many, 4)

    adder = threading.Thread(target=add_later)
    adder.start()
    event = asyncio.run(run())
    adder.join()

    assert [m["account_id"] for m in event["merchants"]] == [many.merchant_ids[4]]
    assert event["checked"] == 5
    assert many.count("GET", r"/settlements$") >= 15


def test_token_economy_one_partner_one_exchange_one_merchant_token_each(many: DinteroEmulator) -> None:
    _add(many, 0)
    trigger = PartnerSettlementTrigger(since=SINCE)

    _first_event(trigger)
    first = many.count("POST", TOKEN_PATH)
    _first_event(trigger)  # a second sweep reuses every token

    assert first == 1 + 2 * MERCHANTS
    assert many.count("POST", TOKEN_PATH) == first
    assert many.count("POST", r"/auth/exchange_token$") == MERCHANTS


def test_trigger_serialize_round_trip() -> None:
    trigger = PartnerSettlementTrigger(
        since=SINCE, account_ids=["T11200001"], payment_providers=["vipps"], max_concurrency=4
    )
    path, kwargs = trigger.serialize()

    assert path == "airflow_provider_dintero.triggers.settlements.PartnerSettlementTrigger"
    assert PartnerSettlementTrigger(**kwargs).serialize() == (path, kwargs)


def test_explicit_list_error_event_names_the_account(many: DinteroEmulator) -> None:
    foreign = many.foreign_merchant_id

    event = _first_event(PartnerSettlementTrigger(since=SINCE, account_ids=[many.merchant_ids[0], foreign]))

    assert event["status"] == "error"
    assert event["account_id"] == foreign
    assert event["status_code"] in (400, 403, 404)
    assert "eyJ" not in event["message"]


# ------------------------------------------------------------------------------ concurrency


class _SlowPartner:
    """A hostile partner with ``n`` merchants whose settlement lists answer slowly, counting overlap."""

    def __init__(self, server: HostileServer, n: int, delay: float = 0.15) -> None:
        self.ids = [f"T112{i:05d}" for i in range(1, n + 1)]
        self.delay = delay
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        server.route(
            "GET",
            r"/management/accounts$",
            Reply(json=[{"account_id": aid, "paging_token": aid} for aid in self.ids]),
        )
        server.route("GET", r"/settlements$", self.settlements)

    def settlements(self, seen: Seen) -> Reply:
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        time.sleep(self.delay)
        with self.lock:
            self.in_flight -= 1
        aid = re.search(r"/accounts/([^/]+)/settlements", seen.path)
        found = aid is not None and aid.group(1) == self.ids[-1]
        items = (
            [{"id": "s_last", "provider": "vipps", "created_at": NEW_AT, "attachments": []}] if found else []
        )
        return Reply(json=items)


@pytest.fixture
def slow_partner(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[HostileServer, _SlowPartner]]:
    with HostileServer() as server:
        monkeypatch.setenv("AIRFLOW_CONN_DINTERO_DEFAULT", hostile_connection(server))
        yield server, _SlowPartner(server, MERCHANTS)


@pytest.mark.parametrize("limit", [1, 4, 16])
def test_sweep_polls_at_most_max_concurrency_merchants_at_once(
    slow_partner: tuple[HostileServer, _SlowPartner], limit: int
) -> None:
    server, partner = slow_partner

    event = _first_event(PartnerSettlementTrigger(since=SINCE, max_concurrency=limit))

    assert [m["account_id"] for m in event["merchants"]] == [partner.ids[-1]]
    assert server.count("GET", r"/settlements$") == MERCHANTS
    assert partner.peak <= limit
    if limit > 1:
        assert partner.peak > 1  # the merchants really are polled side by side


def test_repeated_merchant_cursor_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with HostileServer() as server:
        monkeypatch.setenv("AIRFLOW_CONN_DINTERO_DEFAULT", hostile_connection(server))
        page = [{"account_id": f"T112{i:05d}", "paging_token": "same"} for i in range(1, 101)]
        server.route("GET", r"/management/accounts$", Reply(json=page))

        event = _first_event(PartnerSettlementTrigger(since=SINCE))

    assert event["status"] == "error"
    assert server.count("GET", r"/management/accounts$") == 2
    assert server.count("GET", r"/settlements$") == 0


# ------------------------------------------------------------------------------ sensor


def test_sensor_all_merchants_returns_one_item_per_merchant_found(many: DinteroEmulator) -> None:
    added = _add(many, 2, 29)

    done, value = _poke(SettlementSensor(task_id="wait", all_merchants=True, since=SINCE))

    assert done
    assert [(r["account_id"], r["settlement_ids"]) for r in value] == list(added.items())
    assert all(set(r) == {"account_id", "since", "settlement_ids", "count"} for r in value)
    assert [settlement_copy_kwargs(r) for r in value] == [
        {"account_id": aid, "settlement_ids": ids} for aid, ids in added.items()
    ]


def _summary(sid: str) -> dict[str, Any]:
    return {"id": sid, "provider": "vipps", "created_at": NEW_AT, "settled_at": NEW_AT, "attachments": []}


#: the partner trigger's event before and after it carried ids only (a trigger that fired
#: before an upgrade hands the upgraded sensor the first shape)
PARTNER_EVENTS = {
    "before the upgrade": {
        "status": "success",
        "since": SINCE,
        "checked": 3,
        "merchants": [
            {"account_id": "T11200001", "settlements": [_summary("s1"), _summary("s2")]},
            {"account_id": "T11200002", "settlements": [_summary("s3")]},
        ],
        "skipped": [],
        "unreadable": {},
        "failed": {},
    },
    "version 2": {
        "status": "success",
        "version": 2,
        "since": SINCE,
        "checked": 3,
        "found": 3,
        "merchants": [
            {"account_id": "T11200001", "settlement_ids": ["s1", "s2"]},
            {"account_id": "T11200002", "settlement_ids": ["s3"]},
        ],
        "skipped": [],
        "unreadable": {},
        "failed": {},
    },
}


@pytest.mark.parametrize("shape", list(PARTNER_EVENTS))
def test_sensor_returns_ids_and_counts_from_a_partner_event_of_either_shape(shape: str) -> None:
    sensor = SettlementSensor(task_id="wait", all_merchants=True)

    result = sensor.execute_complete(cast("Any", {}), PARTNER_EVENTS[shape])

    assert result == [
        {"account_id": "T11200001", "since": SINCE, "settlement_ids": ["s1", "s2"], "count": 2},
        {"account_id": "T11200002", "since": SINCE, "settlement_ids": ["s3"], "count": 1},
    ]


@pytest.mark.parametrize("shape", list(PARTNER_EVENTS))
def test_sensor_batches_a_partner_event_of_either_shape(shape: str) -> None:
    sensor = SettlementSensor(task_id="wait", all_merchants=True, batch_size=1)

    result = sensor.execute_complete(cast("Any", {}), PARTNER_EVENTS[shape])

    assert result == [{"T11200001": ["s1", "s2"]}, {"T11200002": ["s3"]}]


def test_sensor_account_ids_polls_only_those(many: DinteroEmulator) -> None:
    _add(many, 1, 5)
    chosen = [many.merchant_ids[5], many.merchant_ids[6]]

    done, value = _poke(SettlementSensor(task_id="wait", account_ids=chosen, since=SINCE, max_concurrency=2))

    assert done
    assert [r["account_id"] for r in value] == [many.merchant_ids[5]]
    assert many.count("GET", r"/settlements$") == 2


def test_sensor_many_not_found(many: DinteroEmulator) -> None:
    done, value = _poke(SettlementSensor(task_id="wait", all_merchants=True, since=SINCE))

    assert (done, value) == (False, None)
    assert many.count("GET", r"/settlements$") == MERCHANTS


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"account_id": "T11200001", "all_merchants": True}, "account_id, all_merchants"),
        ({"account_id": "T11200001", "account_ids": ["T11200002"]}, "account_id, account_ids"),
        ({}, "account_id"),
        ({"account_ids": []}, "account_ids"),
        ({"account_ids": "T11200001"}, "account_ids"),
        ({"account_ids": ["T11200001", "../x"]}, "account_id"),
        ({"all_merchants": True, "max_concurrency": 0}, "max_concurrency"),
        ({"all_merchants": "maybe"}, "all_merchants"),
    ],
)
def test_sensor_refuses_bad_forms_before_any_request(
    many: DinteroEmulator, kwargs: dict[str, Any], field: str
) -> None:
    sensor = SettlementSensor(task_id="wait", since=SINCE, **kwargs)

    with pytest.raises(DinteroInputError) as err:
        sensor.poke(cast("Any", {}))

    assert err.value.field == field
    assert many.requests == []


def test_sensor_deferrable_many_defers_to_one_partner_trigger(many: DinteroEmulator) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    sensor = SettlementSensor(
        task_id="wait",
        all_merchants=True,
        since=SINCE,
        deferrable=True,
        max_concurrency=8,
        poll_interval=0.05,
    )

    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(cast("Any", {}))

    trigger = deferred.value.trigger
    assert isinstance(trigger, PartnerSettlementTrigger)
    assert (trigger.since, trigger.account_ids, trigger.max_concurrency, trigger.first_poll_after) == (
        "2027-06-01T00:00:00.000000Z",
        None,
        8,
        0.05,  # the sensor has just swept: the trigger's first sweep waits one poll interval
    )
    added = _add(many, 9)
    result = sensor.execute_complete(cast("Any", {}), _first_event(trigger))
    assert [(r["account_id"], r["settlement_ids"]) for r in result] == list(added.items())


def test_sensor_explicit_list_fails_at_once_on_a_foreign_merchant(many: DinteroEmulator) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    sensor = SettlementSensor(task_id="wait", account_ids=[many.foreign_merchant_id], since=SINCE)

    with pytest.raises((AirflowFailException, DinteroApiError)) as err:
        sensor.poke(cast("Any", {}))

    assert many.foreign_merchant_id in str(err.value)


# ------------------------------------------------------------------------------ the mapped copy


def test_copy_maps_over_the_merchants_found(
    many: DinteroEmulator, run_dag: Any, s3_bucket: str, s3_client: Any
) -> None:
    from airflow.providers.common.compat.sdk import DAG

    from airflow_provider_dintero.transfers.settlements_to_s3 import SettlementsToS3Operator

    added = _add(many, 0, 11, 11, 23)
    with DAG("partner_copy_mapped", start_date=datetime(2026, 11, 1), schedule=None, catchup=False) as dag:
        wait = SettlementSensor(task_id="wait", all_merchants=True, since=SINCE, poke_interval=1, timeout=60)
        SettlementsToS3Operator.partial(
            task_id="copy", s3_bucket=s3_bucket, attachments="source"
        ).expand_kwargs(wait.output.map(settlement_copy_kwargs))

    run = run_dag(dag)

    assert str(run.state) in ("success", "DagRunState.SUCCESS")
    copies = sorted(
        (ti for ti in run.get_task_instances() if ti.task_id == "copy"), key=lambda ti: ti.map_index
    )
    assert len(copies) == len(added)
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    for aid, ids in added.items():
        for sid in ids:
            assert any(aid in k and sid in k for k in keys), (aid, sid, keys)
    other = [k for k in keys if not any(aid in k for aid in added)]
    assert other == []


def test_partner_wide_sweep_skips_a_merchant_it_may_not_read(many: DinteroEmulator) -> None:
    added = _add(many, 1)
    many.inject_fault(path_regex=f"/accounts/{many.merchant_ids[4]}/settlements$", status=403, count=100)

    event = _first_event(PartnerSettlementTrigger(since=SINCE))

    assert event["status"] == "success"
    assert event["skipped"] == [many.merchant_ids[4]]
    assert [m["account_id"] for m in event["merchants"]] == list(added)


# ------------------------------------------------------------------------------ one bad merchant


def test_partner_trigger_reports_healthy_merchants_and_names_the_failing_one(
    many: DinteroEmulator,
) -> None:
    added = _add(many, 2)
    bad = many.merchant_ids[5]
    many.inject_fault(path_regex=f"/accounts/{bad}/settlements$", status=500, count=10_000)

    event = _first_event(PartnerSettlementTrigger(since=SINCE))

    assert event["status"] == "success"
    assert [m["account_id"] for m in event["merchants"]] == list(added)
    assert list(event["failed"]) == [bad]
    assert "500" in event["failed"][bad]


def test_partner_trigger_gives_a_slow_merchant_its_own_deadline(many: DinteroEmulator) -> None:
    from airflow_provider_dintero.poller import SettlementPoller

    added = _add(many, 3)
    slow = many.merchant_ids[6]
    many.inject_fault(path_regex=f"/accounts/{slow}/settlements$", delay=60, count=1)
    trigger = PartnerSettlementTrigger(since=SINCE)
    trigger.poller = lambda: SettlementPoller(  # type: ignore[method-assign]
        PartnerSettlementTrigger(since=SINCE).poller().hook, merchant_timeout=1
    )

    event = _first_event(trigger)

    assert [m["account_id"] for m in event["merchants"]] == list(added)
    assert "merchant_timeout" in event["failed"][slow]


def test_sensor_names_the_merchants_it_could_not_read(many: DinteroEmulator) -> None:
    added = _add(many, 7)
    denied = many.merchant_ids[8]
    many.inject_fault(path_regex=f"/accounts/{denied}/settlements$", status=403, count=100)
    pushed: dict[str, Any] = {}

    class TI:
        def xcom_push(self, key: str, value: Any) -> None:
            pushed[key] = value

    result = SettlementSensor(task_id="wait", all_merchants=True, since=SINCE).poke(cast("Any", {"ti": TI()}))

    assert [r["account_id"] for r in result.xcom_value] == list(added)
    assert pushed["not_collected"][denied]["status"] == "could not be read"


# ------------------------------------------------------------------------------ batches


def test_sensor_groups_the_merchants_found_into_batches_of_ids(many: DinteroEmulator) -> None:
    added = _add(many, 0, 1, 2, 3, 4)

    done, batches = _poke(SettlementSensor(task_id="wait", all_merchants=True, since=SINCE, batch_size=2))

    assert done
    assert [len(b) for b in batches] == [2, 2, 1]
    assert {aid: ids for b in batches for aid, ids in b.items()} == added


def test_a_batch_copy_copies_every_merchant_it_can_and_names_the_others(
    many: DinteroEmulator, s3_bucket: str
) -> None:
    from airflow_provider_dintero.transfers.settlements_to_s3 import SettlementsToS3Operator

    added = _add(many, 0, 1)
    denied = many.merchant_ids[2]
    many.inject_fault(path_regex=f"/accounts/{denied}/settlements", status=403, count=100)
    pushed: dict[str, Any] = {}

    class TI:
        def xcom_push(self, key: str, value: Any) -> None:
            pushed[key] = value

    copy = SettlementsToS3Operator(
        task_id="copy", s3_bucket=s3_bucket, merchants={**added, denied: ["s-x"]}, attachments="source"
    )
    with pytest.raises(Exception, match=denied):
        copy.execute(cast("Any", {"ti": TI()}))

    lines = pushed["merchants"]
    assert {aid: lines[aid]["status"] for aid in added} == dict.fromkeys(added, "copied")
    assert lines[denied]["status"] == "could not be read"


def test_a_batch_copy_with_events_copies_what_each_accounts_events_name(
    many: DinteroEmulator, s3_bucket: str, s3_client: Any
) -> None:
    from types import SimpleNamespace

    from airflow_provider_dintero.transfers.settlements_to_s3 import SettlementsToS3Operator

    added = _add(many, 0, 1)
    unnamed = many.add_settlement(many.merchant_ids[0], provider="vipps", created_at=SINCE)["id"]
    events = {
        "asset": [
            SimpleNamespace(extra={"account_id": aid, "settlement_ids": ids}) for aid, ids in added.items()
        ]
    }
    copy = SettlementsToS3Operator(
        task_id="copy",
        s3_bucket=s3_bucket,
        merchants=list(added),
        use_triggering_events=True,
        attachments="source",
    )

    result = copy.execute(cast("Any", {"triggering_asset_events": events}))

    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert {aid: line["status"] for aid, line in result["merchants"].items()} == dict.fromkeys(
        added, "copied"
    )
    assert {
        sid for ids in added.values() for sid in ids if any(f"/{sid}/manifest.json" in k for k in keys)
    } == {sid for ids in added.values() for sid in ids}
    assert not any(unnamed in k for k in keys)


def test_a_batch_copy_given_the_events_selections_reads_no_event(
    many: DinteroEmulator, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_dintero.events import EventSelection
    from airflow_provider_dintero.transfers import settlements_to_s3
    from airflow_provider_dintero.transfers.settlements_to_s3 import SettlementsToS3Operator

    added = _add(many, 0, 1)

    def read_events(context: Any) -> list[Any]:
        raise AssertionError("a copy given its selections read the run's events")

    monkeypatch.setattr(settlements_to_s3, "run_events", read_events)
    copy = SettlementsToS3Operator(
        task_id="copy",
        s3_bucket=s3_bucket,
        merchants={aid: EventSelection(ids).to_json() for aid, ids in added.items()},
        use_triggering_events=True,
        attachments="source",
    )

    result = copy.execute(cast("Any", {}))

    assert {aid: line["settlement_ids"] for aid, line in result["merchants"].items()} == added


@pytest.mark.parametrize(
    ("chosen", "field"),
    [
        ({"settlement_ids": "s-1"}, "merchants[{aid}]"),
        ({"settlement_ids": ["s-1"], "wake_up": "yes"}, "merchants[{aid}].wake_up"),
        ({"ids": ["s-1"]}, "merchants[{aid}]"),
    ],
)
def test_a_malformed_selection_is_refused_naming_the_field(
    many: DinteroEmulator, s3_bucket: str, chosen: Any, field: str
) -> None:
    from airflow_provider_dintero.exceptions import DinteroInputError
    from airflow_provider_dintero.transfers.settlements_to_s3 import SettlementsToS3Operator

    aid = many.merchant_ids[0]
    copy = SettlementsToS3Operator(task_id="copy", s3_bucket=s3_bucket, merchants={aid: chosen})

    with pytest.raises(DinteroInputError) as caught:
        copy.execute(cast("Any", {}))

    assert caught.value.field == field.format(aid=aid)
