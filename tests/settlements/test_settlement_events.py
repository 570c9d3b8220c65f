"""
DinteroSettlementEventTrigger: one event per merchant batch, its watermark in the asset's state
store, and each settlement reported exactly once across a restart (a new trigger instance
reading the same store), against the emulator.

The state store here is a dict with the accessor's async ``aget``/``aset`` (the triggerer's
``AssetStateStoreAccessor`` needs the triggerer's supervisor channel); what is under test is what
the trigger writes and reads back through it.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from airflow_provider_dintero.triggers import settlement_events
from airflow_provider_dintero.triggers.settlement_events import (
    EVENT_TRIGGERS,
    WATERMARK_STORE,
    DinteroSettlementEventTrigger,
    Watermark,
)

SINCE = "2027-06-01T00:00:00Z"
AT = "2027-07-01T08:00:00.000000Z"
LATER = "2027-07-02T08:00:00.000000Z"
AT_LESS_LOOKBACK = "2027-07-01T07:00:00.000000Z"  # the default lookback is an hour
LATER_LESS_LOOKBACK = "2027-07-02T07:00:00.000000Z"
JWT = re.compile(r"eyJ[\w-]+\.[\w-]+")

needs_airflow_3 = pytest.mark.skipif(
    not (EVENT_TRIGGERS and WATERMARK_STORE),
    reason="the watcher needs Airflow 3.3 (event triggers, state store)",
)


class DictStore:
    """An asset state store accessor's async interface over a dict (survives trigger instances)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def aget(self, key: str, default: Any = None) -> Any:
        return json.loads(self.values[key]) if key in self.values else default

    async def aset(self, key: str, value: Any) -> None:
        assert value is not None
        self.values[key] = json.dumps(value)  # JSON only, as the real store

    async def adelete(self, key: str) -> None:
        self.values.pop(key, None)


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> DictStore:
    shared = DictStore()
    names: list[str] = []

    def state_store(account_id: str) -> DictStore:
        names.append(settlement_events.asset_name(account_id))
        return shared

    monkeypatch.setattr(settlement_events, "state_store", state_store)
    shared.names = names  # type: ignore[attr-defined]
    return shared


def _stored(store: DictStore, mid: str) -> Any:
    """``mid``'s stored watermark (the entry of the key the index says it is in), or ``None``."""
    index = json.loads(store.values.get(settlement_events.WATERMARK_INDEX, "{}"))
    if "shards" not in index:
        return None
    key = settlement_events.shard_key(index["shards"], settlement_events.shard_of(mid, index["shards"]))
    return json.loads(store.values[key]).get(mid) if key in store.values else None


def _trigger(emu: Any, **kwargs: Any) -> DinteroSettlementEventTrigger:
    kwargs.setdefault("account_id", emu.partner_id)
    kwargs.setdefault("poll_interval", 0.01)
    kwargs.setdefault("since", SINCE)
    return DinteroSettlementEventTrigger(**kwargs)


async def _take(events: AsyncIterator[Any], n: int) -> list[dict[str, Any]]:
    return [dict((await events.__anext__()).payload) for _ in range(n)]


async def _ask_next_then_stop(events: AsyncIterator[Any], emu: Any) -> None:
    """Ask for the next event (which stores the last watermark) until a new sweep runs; then stop."""
    before = emu.count("GET", r"/settlements$")
    pending = asyncio.ensure_future(events.__anext__())
    while emu.count("GET", r"/settlements$") <= before and not pending.done():
        await asyncio.sleep(0.005)
    pending.cancel()
    with pytest.raises((asyncio.CancelledError, StopAsyncIteration)):
        await pending


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _ids(events: list[dict[str, Any]]) -> list[str]:
    return [sid for e in events for sid in e["settlement_ids"]]


# ------------------------------------------------------------------------------ payload


@needs_airflow_3
def test_one_event_per_merchant_batch_with_the_webhook_extra_keys(emu: Any, store: DictStore) -> None:
    m1, m2 = emu.merchant_ids[:2]
    a = emu.add_settlement(m1, provider="vipps", created_at=AT)["id"]
    b = emu.add_settlement(m1, provider="klarna", created_at=LATER)["id"]
    c = emu.add_settlement(m2, provider="walley", created_at=AT)["id"]

    async def go() -> list[dict[str, Any]]:
        events = _trigger(emu).run()
        try:
            return await _take(events, 2)
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    events = sorted(asyncio.run(go()), key=lambda e: e["account_id"])

    assert all(set(e) == {"version", "account_id", "settlement_ids", "providers", "source"} for e in events)
    assert [
        (e["account_id"], set(e["settlement_ids"]), set(e["providers"]), e["source"]) for e in events
    ] == [
        (m1, {a, b}, {"vipps", "klarna"}, "poll"),
        (m2, {c}, {"walley"}, "poll"),
    ]
    assert not JWT.search(json.dumps(events))
    assert store.names == [f"dintero_settlements_{emu.partner_id}"]  # type: ignore[attr-defined]


@needs_airflow_3
def test_first_start_stores_since_and_reports_nothing_older(emu: Any, store: DictStore) -> None:
    mid = emu.merchant_ids[0]

    async def go() -> list[dict[str, Any]]:
        events = _trigger(emu, since=None).run()
        try:
            first = asyncio.ensure_future(events.__anext__())
            while emu.count("GET", r"/settlements$") < 2 * len(emu.merchant_ids):  # two empty sweeps
                await asyncio.sleep(0.005)
            new = emu.add_settlement(mid, created_at="2099-01-01T00:00:00Z")["id"]
            payload = dict((await first).payload)
            assert payload["settlement_ids"] == [new]
            return [payload]
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    asyncio.run(go())

    assert "since" in store.values  # the seeded (older) settlements were never reported


# ------------------------------------------------------------------------------ restarts


@needs_airflow_3
def test_restart_after_the_watermark_was_stored_repeats_nothing(emu: Any, store: DictStore) -> None:
    mid = emu.merchant_ids[0]
    first = emu.add_settlement(mid, created_at=AT)["id"]

    async def before_restart() -> list[dict[str, Any]]:
        events = _trigger(emu).run()
        got = await _take(events, 1)
        await _ask_next_then_stop(events, emu)
        return got

    async def after_restart() -> list[dict[str, Any]]:
        events = _trigger(emu).run()  # a new instance: only the store is shared
        try:
            return await _take(events, 1)
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    reported = asyncio.run(before_restart())
    assert _stored(store, mid) == {"floor": AT_LESS_LOOKBACK, "seen": {first: AT}}
    tie = emu.add_settlement(mid, created_at=AT)["id"]  # same creation time as the reported one
    later = emu.add_settlement(mid, created_at=LATER)["id"]
    reported += asyncio.run(after_restart())

    assert sorted(_ids(reported)) == sorted([first, tie, later])  # each exactly once
    assert _stored(store, mid)["floor"] in (AT_LESS_LOOKBACK, LATER_LESS_LOOKBACK)


@needs_airflow_3
def test_restart_before_the_watermark_was_stored_loses_nothing(emu: Any, store: DictStore) -> None:
    mid = emu.merchant_ids[1]
    sid = emu.add_settlement(mid, created_at=AT)["id"]

    async def stopped_right_after_the_event() -> list[dict[str, Any]]:
        events = _trigger(emu).run()
        got = await _take(events, 1)
        await events.aclose()  # type: ignore[attr-defined]  # stopped before the event was confirmed
        return got

    async def restarted() -> list[dict[str, Any]]:
        events = _trigger(emu).run()
        try:
            return await _take(events, 1)
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    assert _ids(asyncio.run(stopped_right_after_the_event())) == [sid]
    assert _stored(store, mid) is None
    assert _ids(asyncio.run(restarted())) == [sid]  # reported again: not lost


# ------------------------------------------------------------------------------ ack mode


@needs_airflow_3
@pytest.mark.parametrize(("acked", "failed", "again"), [(1, 0, False), (0, 1, True), (0, 0, True)])
def test_ack_mode_stores_the_watermark_only_for_persisted_events(
    emu: Any, store: DictStore, acked: int, failed: int, again: bool
) -> None:
    from airflow.triggers.shared_stream import AdvanceItem, AdvanceOutcome

    mid = emu.merchant_ids[2]
    sid = emu.add_settlement(mid, created_at=AT)["id"]
    trigger = _trigger(emu, account_ids=[mid])
    producer = DinteroSettlementEventTrigger.create_shared_stream_producer(trigger.serialize()[1])

    async def go() -> bool:
        stream = producer.open_stream()
        try:
            payload, broker = await stream.__anext__()
            assert payload["settlement_ids"] == [sid]
            await producer.advance([AdvanceItem(broker, AdvanceOutcome(acked=acked, failed=failed))])
            later = emu.add_settlement(mid, created_at=LATER)["id"]
            payload, _ = await stream.__anext__()
            assert later in payload["settlement_ids"]
            return sid in payload["settlement_ids"]
        finally:
            await stream.aclose()

    assert asyncio.run(go()) is again
    assert (_stored(store, mid) is not None) is (acked == 1)


@needs_airflow_3
def test_a_confirmed_event_leaves_one_watermark_of_its_merchant_in_memory(emu: Any, store: DictStore) -> None:
    from airflow.triggers.shared_stream import AdvanceItem, AdvanceOutcome

    mid = emu.merchant_ids[0]
    sid = emu.add_settlement(mid, created_at=AT)["id"]
    trigger = _trigger(emu, account_ids=[mid])
    producer = DinteroSettlementEventTrigger.create_shared_stream_producer(trigger.serialize()[1])

    async def go() -> None:
        stream = producer.open_stream()
        try:
            _payload, broker = await stream.__anext__()
            await producer.advance([AdvanceItem(broker, AdvanceOutcome(acked=1, failed=0))])
        finally:
            await stream.aclose()

    asyncio.run(go())

    assert mid not in producer.current  # the stored watermark is the one in use, not a copy
    assert producer.stored[mid].seen == {sid: _at(AT)}
    assert _stored(store, mid) == {"floor": AT_LESS_LOOKBACK, "seen": {sid: AT}}


@needs_airflow_3
def test_shared_stream_key_and_serialize() -> None:
    a = DinteroSettlementEventTrigger(account_id="T11200000", poll_interval=30)
    path, kwargs = a.serialize()

    assert path == "airflow_provider_dintero.triggers.settlement_events.DinteroSettlementEventTrigger"
    assert DinteroSettlementEventTrigger(**kwargs).serialize() == (path, kwargs)
    assert a.shared_stream_key() == DinteroSettlementEventTrigger(**kwargs).shared_stream_key()
    assert (
        a.shared_stream_key()
        != DinteroSettlementEventTrigger(
            account_id="T11200000", account_ids=["T11200001"]
        ).shared_stream_key()
    )


@pytest.mark.skipif(EVENT_TRIGGERS, reason="Airflow 2.11 behaviour")
def test_airflow_2_explains() -> None:
    with pytest.raises(RuntimeError, match="Airflow 3"):
        DinteroSettlementEventTrigger(account_id="T11200000")


@pytest.mark.skipif(not EVENT_TRIGGERS or WATERMARK_STORE, reason="Airflow 3.0 to 3.2 behaviour")
def test_airflow_3_without_the_state_store_refuses_naming_the_line() -> None:
    with pytest.raises(RuntimeError, match=r"Airflow 3\.3"):
        DinteroSettlementEventTrigger(account_id="T11200000")


# ------------------------------------------------------------------------------ watermark


@pytest.mark.parametrize(
    ("items", "fresh", "mark"),
    [
        ([], [], (AT, ["a"])),
        ([("a", AT)], [], (AT, ["a"])),
        ([("b", AT)], ["b"], (AT, ["a", "b"])),
        ([("c", LATER), ("a", AT)], ["c"], (LATER_LESS_LOOKBACK, ["c"])),
        ([("old", "2027-06-30T00:00:00Z")], [], (AT, ["a"])),  # behind the floor: outside the contract
        ([("x", "not a time"), (None, LATER)], [], (AT, ["a"])),
        ([("d", LATER), ("d", LATER)], ["d"], (LATER_LESS_LOOKBACK, ["d"])),
    ],
)
def test_watermark_split(items: list[tuple[Any, str]], fresh: list[str], mark: tuple[str, list[str]]) -> None:
    settlements = [{"id": i, "created_at": t} for i, t in items]

    got, after = Watermark(AT, {"a": _at(AT)}).split(settlements)

    assert [s["id"] for s in got] == fresh
    assert (after.floor, sorted(after.seen)) == mark


# ------------------------------------------------------------------------------ one bad merchant


async def _first(events: AsyncIterator[Any], within: float = 20.0) -> dict[str, Any]:
    """The next event, or a failure after ``within`` seconds (a liveness bound, not a timing)."""
    return dict((await asyncio.wait_for(events.__anext__(), within)).payload)


def _watch(emu: Any, body: Any, **kwargs: Any) -> Any:
    async def go() -> Any:
        events = _trigger(emu, **kwargs).run()
        try:
            return await body(events)
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    return asyncio.run(go())


@needs_airflow_3
def test_a_failing_merchant_does_not_hold_back_the_others(emu: Any, store: DictStore) -> None:
    bad, good = emu.merchant_ids[:2]
    emu.inject_fault(path_regex=f"/accounts/{bad}/settlements$", status=400, count=10_000)
    sid = emu.add_settlement(good, created_at=AT)["id"]

    event = _watch(emu, _first)

    assert (event["account_id"], event["settlement_ids"]) == (good, [sid])


@needs_airflow_3
def test_a_merchant_answering_500_is_retried_once_within_a_sweep(emu: Any, store: DictStore) -> None:
    bad, good = emu.merchant_ids[:2]
    emu.inject_fault(path_regex=f"/accounts/{bad}/settlements$", status=500, count=10_000)
    sid = emu.add_settlement(good, created_at=AT)["id"]

    event = _watch(emu, _first, account_ids=[bad, good], max_concurrency=1)

    assert event["settlement_ids"] == [sid]
    assert emu.count("GET", f"/accounts/{bad}/settlements$") == settlement_events.SWEEP_RETRIES + 1


@needs_airflow_3
def test_a_slow_merchant_does_not_delay_the_others(emu: Any, store: DictStore) -> None:
    slow, good = emu.merchant_ids[:2]
    emu.inject_fault(path_regex=f"/accounts/{slow}/settlements$", delay=60, count=1)
    sid = emu.add_settlement(good, created_at=AT)["id"]

    event = _watch(emu, lambda events: _first(events, within=30), merchant_timeout=1)

    assert (event["account_id"], event["settlement_ids"]) == (good, [sid])


@needs_airflow_3
def test_a_failing_merchant_is_retried_with_back_off_and_logged_once(
    emu: Any, store: DictStore, caplog: pytest.LogCaptureFixture
) -> None:
    bad, good = emu.merchant_ids[:2]
    emu.inject_fault(path_regex=f"/accounts/{bad}/settlements$", status=400, count=10_000)

    async def sweeps(events: AsyncIterator[Any]) -> None:
        pending = asyncio.ensure_future(events.__anext__())
        while emu.count("GET", f"/accounts/{good}/settlements$") < 12 and not pending.done():
            await asyncio.sleep(0.005)
        pending.cancel()
        with pytest.raises((asyncio.CancelledError, StopAsyncIteration)):
            await pending

    caplog.set_level("INFO", logger="airflow_provider_dintero")
    _watch(emu, sweeps, poll_interval=0.02)

    tries = emu.count("GET", f"/accounts/{bad}/settlements$")
    assert 1 <= tries < emu.count("GET", f"/accounts/{good}/settlements$") // 2
    assert len([r for r in caplog.records if r.levelname == "WARNING" and bad in r.getMessage()]) == 1


# ------------------------------------------------------------------------------ the watermark contract


@needs_airflow_3
def test_a_settlement_listed_late_within_the_lookback_is_reported_once(emu: Any, store: DictStore) -> None:
    mid = emu.merchant_ids[0]
    first = emu.add_settlement(mid, created_at=AT)["id"]

    async def body(events: AsyncIterator[Any]) -> list[list[str]]:
        got = [(await _first(events))["settlement_ids"]]
        late = emu.add_settlement(mid, created_at="2027-07-01T07:30:00Z")["id"]  # behind the newest
        got.append((await _first(events))["settlement_ids"])
        with pytest.raises(asyncio.TimeoutError):  # and never again
            await _first(events, within=1)
        return [*got, [late]]

    first_event, second_event, late = _watch(emu, body, account_ids=[mid])

    assert (first_event, second_event) == ([first], late)


@needs_airflow_3
def test_the_first_start_tolerates_a_dintero_clock_behind_the_triggerer(emu: Any, store: DictStore) -> None:
    from datetime import timedelta, timezone

    mid = emu.merchant_ids[0]

    async def body(events: AsyncIterator[Any]) -> tuple[str, list[str]]:
        pending = asyncio.ensure_future(events.__anext__())
        while emu.count("GET", r"/settlements$") < 1:  # started: ``since`` is set
            await asyncio.sleep(0.005)
        stamped = datetime.now(timezone.utc) - timedelta(seconds=30)  # Dintero's clock 30 s behind
        sid = emu.add_settlement(mid, created_at=stamped)["id"]
        return sid, list((await asyncio.wait_for(pending, 20)).payload["settlement_ids"])

    sid, reported = _watch(emu, body, account_ids=[mid], since=None)

    assert reported == [sid]


def _listed_from(emu: Any, account_id: str) -> list[str]:
    return [
        value
        for r in emu.requests
        if r.path.endswith(f"/accounts/{account_id}/settlements")
        for key, value in r.query
        if "created_at" in key and "gte" in key
    ]


@needs_airflow_3
def test_a_partner_wide_restart_lists_each_merchant_from_its_stored_watermark(
    emu: Any, store: DictStore
) -> None:
    mid = emu.merchant_ids[0]
    emu.add_settlement(mid, created_at=AT)

    async def before(events: AsyncIterator[Any]) -> None:
        await _first(events)
        await _ask_next_then_stop(events, emu)

    _watch(emu, before)  # partner-wide: no account_ids
    emu.clear_requests()

    async def after(events: AsyncIterator[Any]) -> None:
        await _ask_next_then_stop(events, emu)

    _watch(emu, after)

    assert _listed_from(emu, mid)
    assert all(v.startswith("2027-07-01") for v in _listed_from(emu, mid))  # not the first start's SINCE


@needs_airflow_3
def test_advance_never_moves_a_merchant_past_an_unrecorded_event(emu: Any, store: DictStore) -> None:
    from airflow.triggers.shared_stream import AdvanceItem, AdvanceOutcome

    mid = emu.merchant_ids[2]
    first = emu.add_settlement(mid, created_at=AT)["id"]
    producer = DinteroSettlementEventTrigger.create_shared_stream_producer(
        _trigger(emu, account_ids=[mid]).serialize()[1]
    )

    async def go() -> list[str]:
        stream = producer.open_stream()
        try:
            _, lost = await stream.__anext__()
            emu.add_settlement(mid, created_at=LATER)
            _, recorded = await stream.__anext__()
            await producer.advance(
                [
                    AdvanceItem(lost, AdvanceOutcome(acked=0, failed=1)),
                    AdvanceItem(recorded, AdvanceOutcome(acked=1, failed=0)),
                ]
            )
            payload, _ = await stream.__anext__()
            return list(payload["settlement_ids"])
        finally:
            await stream.aclose()

    assert first in asyncio.run(go())  # reported again, not lost
    assert _stored(store, mid) is None


def test_the_ids_kept_by_a_watermark_are_bounded() -> None:
    from datetime import timedelta

    start = _at(AT)
    settlements = [
        {"id": f"s{i}", "created_at": (start + timedelta(milliseconds=i)).isoformat()}
        for i in range(settlement_events.MAX_SEEN + 50)
    ]

    fresh, after = Watermark(AT).split(settlements)

    assert len(fresh) == len(settlements)
    assert len(after.seen) == settlement_events.MAX_SEEN
    assert len(json.dumps(after.to_json())) < 200 * settlement_events.MAX_SEEN


@needs_airflow_3
def test_a_burst_of_merchants_never_outruns_airflows_subscriber_queue(
    emu: Any, store: DictStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.triggers.shared_stream import AdvanceItem, AdvanceOutcome

    monkeypatch.setenv("AIRFLOW__TRIGGERER__SHARED_STREAM_SUBSCRIBER_QUEUE_SIZE", "4")
    merchants = emu.merchant_ids[:3]
    for mid in merchants:
        emu.add_settlement(mid, created_at=AT)
    producer = DinteroSettlementEventTrigger.create_shared_stream_producer(
        _trigger(emu, account_ids=merchants).serialize()[1]
    )

    async def go() -> tuple[int, bool, int]:
        stream = producer.open_stream()
        try:
            first = [await stream.__anext__() for _ in range(2)]  # the limit: half the queue
            third = asyncio.ensure_future(stream.__anext__())
            await asyncio.sleep(0.2)
            held = not third.done()
            await producer.advance([AdvanceItem(first[0][1], AdvanceOutcome(acked=1, failed=0))])
            await asyncio.wait_for(third, 5)
            return len(first), held, producer.in_flight
        finally:
            await stream.aclose()

    assert asyncio.run(go()) == (2, True, 2)


# ------------------------------------------------------------------------------ watermark storage


class CountingStore(DictStore):
    """A :class:`DictStore` that counts reads and writes, and can fail writes."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []
        self.writes: list[str] = []
        self.failing = 0

    async def aget(self, key: str, default: Any = None) -> Any:
        self.reads.append(key)
        return await super().aget(key, default)

    async def aset(self, key: str, value: Any) -> None:
        if self.failing:
            self.failing -= 1
            raise OSError("state store unreachable")
        self.writes.append(key)
        await super().aset(key, value)


MERCHANTS = [f"T{11200001 + i}" for i in range(2000)]


def _put_each(shards: Any, merchants: list[str], ids: int = 1) -> None:
    """A confirmed watermark for each merchant, naming ``ids`` settlements at ``AT``."""
    for mid in merchants:
        shards.put(mid, Watermark(AT, {f"s-{mid}-{i}": _at(AT) for i in range(ids)}))


def test_watermarks_confirmed_together_are_written_once_per_key() -> None:
    store = CountingStore()
    shards = settlement_events.WatermarkShards(store)
    _put_each(shards, MERCHANTS)

    asyncio.run(shards.flush())

    keys = [k for k in store.writes if k != settlement_events.WATERMARK_INDEX]
    assert len(keys) == len(set(keys)) == len(MERCHANTS) // settlement_events.MERCHANTS_PER_KEY  # 8
    assert all(_stored(store, mid) for mid in MERCHANTS)


def test_a_restart_reads_the_shards_not_one_key_per_merchant() -> None:
    store = CountingStore()
    before = settlement_events.WatermarkShards(store)
    _put_each(before, MERCHANTS)
    asyncio.run(before.flush())
    after = settlement_events.WatermarkShards(store)

    assert asyncio.run(after.load(concurrency=8)) is True

    assert len(store.reads) == 1 + len(MERCHANTS) // settlement_events.MERCHANTS_PER_KEY  # the index and 8
    assert {mid: m.to_json() for mid, m in after.marks.items()} == {
        mid: m.to_json() for mid, m in before.marks.items()
    }


def test_a_failed_watermark_write_keeps_the_mark_and_is_retried(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CountingStore()
    shards = settlement_events.WatermarkShards(store)
    store.failing = 3

    async def go() -> None:
        writer = asyncio.create_task(shards.keep_flushed())
        try:
            shards.put(MERCHANTS[0], Watermark(AT, {"s": _at(AT)}))
            while not any("works again" in r.getMessage() for r in caplog.records):
                await asyncio.sleep(0.01)
        finally:
            writer.cancel()

    caplog.set_level("INFO", logger="airflow_provider_dintero")
    monkeypatch.setattr(settlement_events, "FLUSH_DELAY", 0.01)
    asyncio.run(asyncio.wait_for(go(), 20))

    assert _stored(store, MERCHANTS[0]) == {"floor": AT, "seen": {"s": AT}}
    warnings = [
        r for r in caplog.records if r.levelname == "WARNING" and "Storing the watermarks" in r.getMessage()
    ]
    assert len(warnings) == 1  # one line per state change, not one per try


def test_a_merchant_not_polled_keeps_its_stored_watermark() -> None:
    store = CountingStore()
    first = settlement_events.WatermarkShards(store)
    polled, other = MERCHANTS[:2]  # one key holds both
    first.put(other, Watermark(AT, {"kept": _at(AT)}))
    asyncio.run(first.flush())
    second = settlement_events.WatermarkShards(store)
    asyncio.run(second.load(concurrency=1))

    second.put(polled, Watermark(LATER, {"new": _at(LATER)}))
    asyncio.run(second.flush())

    assert _stored(store, other) == {"floor": AT, "seen": {"kept": AT}}
    assert _stored(store, polled) == {"floor": LATER, "seen": {"new": LATER}}


@needs_airflow_3
def test_watermarks_stored_one_key_per_merchant_are_read_once_and_moved_into_the_shards(
    emu: Any, store: DictStore
) -> None:
    mid = emu.merchant_ids[0]
    reported = emu.add_settlement(mid, created_at=AT)["id"]
    later = emu.add_settlement(mid, created_at=LATER)["id"]
    store.values["since"] = json.dumps(SINCE)  # an earlier layout's state: no index, a key per merchant
    store.values[f"watermark:{mid}"] = json.dumps({"floor": AT_LESS_LOOKBACK, "seen": {reported: AT}})

    event = _watch(emu, _first, account_ids=[mid])

    assert event["settlement_ids"] == [later]  # the stored watermark was honoured
    assert _stored(store, mid) is not None
    assert json.loads(store.values[settlement_events.WATERMARK_INDEX])["version"] == 2


def test_the_keys_grow_with_the_merchants_and_a_restart_reads_the_new_ones() -> None:
    store = CountingStore()
    shards = settlement_events.WatermarkShards(store)
    _put_each(shards, MERCHANTS[:400])  # within two keys' share of one key: stays 1
    asyncio.run(shards.flush())
    assert json.loads(store.values[settlement_events.WATERMARK_INDEX])["shards"] == 1

    _put_each(shards, MERCHANTS[400:])
    asyncio.run(shards.flush())

    assert json.loads(store.values[settlement_events.WATERMARK_INDEX])["shards"] == 8
    assert settlement_events.shard_key(1, 0) not in store.values  # the earlier key is deleted
    again = settlement_events.WatermarkShards(store)
    asyncio.run(again.load(concurrency=4))
    assert set(again.marks) == set(MERCHANTS)


def test_merchants_with_many_recent_settlements_are_spread_over_more_keys() -> None:
    store = CountingStore()
    shards = settlement_events.WatermarkShards(store)
    _put_each(shards, MERCHANTS[:100], ids=40)  # 100 merchants, 40 ids each: about 290 kB in all

    asyncio.run(shards.flush())

    keys = {k: v for k, v in store.values.items() if k != settlement_events.WATERMARK_INDEX}
    assert len(keys) >= 8
    assert max(len(v) for v in keys.values()) < 2 * settlement_events.BYTES_PER_KEY
