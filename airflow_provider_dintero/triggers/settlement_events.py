"""
An Airflow 3 asset watcher for new Dintero settlements: :class:`DinteroSettlementEventTrigger`.

It polls every merchant of a partner (or a given list) through the partner-wide poller
(:mod:`airflow_provider_dintero.poller`) and yields **one event per merchant batch** of
new settlements. The triggerer records each event on the watched asset, so a DAG scheduled on
:func:`~airflow_provider_dintero.webhooks.settlement_events_asset` runs; its copy step re-reads
the settlements by id (``SettlementsToS3Operator(use_triggering_events=True)``).

Example::

    from airflow.sdk import DAG, Asset, AssetWatcher

    from airflow_provider_dintero.triggers.settlement_events import DinteroSettlementEventTrigger

    watched = Asset(
        name="dintero_settlements_P11200000",
        uri="dintero://P11200000/settlements",
        watchers=[
            AssetWatcher(
                name="dintero_settlements_P11200000",
                trigger=DinteroSettlementEventTrigger(account_id="P11200000", poll_interval=30),
            )
        ],
    )

**Event payload** (the asset event's extra holds it under ``payload``, with ``from_trigger``):
the settlement event of :mod:`airflow_provider_dintero.events` with ``"source": "poll"``: ids
and provider names only, never a credential; the same shape as the webhook receiver's extra.

**The watermark contract.** Per merchant, the watched asset's state store (Airflow 3.3's
``asset_state_store`` table; ``since`` holds the first start; the merchants' watermarks are
spread over keys ``watermarks:<N>:<n>``, about :data:`MERCHANTS_PER_KEY` a key, see
:class:`WatermarkShards`)
keeps a *floor* and the ids reported at or after it. Each sweep lists the merchant's
settlements recorded (``created_at``) on or after the floor, reports those whose id was not
reported yet, and then moves the floor to ``newest reported created_at - lookback``. Hence:

* **Exactly once within the lookback.** A settlement is reported once however it appears,
  provided that when Dintero first lists it, its ``created_at`` is no more than ``lookback``
  (default 1 h) older than the newest settlement already reported for that merchant (ingested
  late, replicated late, clocks apart). An older one is outside the contract and not reported.
* **Bounded.** The ids kept are those within the lookback, at most :data:`MAX_SEEN` per
  merchant (the oldest are dropped first), in memory and in the store.
* **Clock skew at the first start.** Without ``since``, the first start begins
  :data:`FIRST_START_SKEW` (5 min) before the triggerer's clock, so a settlement stamped by a
  Dintero clock up to that much behind is still reported.
* **Restart.** Every merchant's floor and ids are read back from the store before it is
  polled, in every mode (partner-wide included): a restart lists from the stored floor, not from
  the first start. It reads one key per :data:`MERCHANTS_PER_KEY` merchants or so (41 keys at
  10,000 merchants), not one per merchant.
* **Ack mode.** In the triggerer the trigger runs in the shared-stream ack mode
  (``shared_stream_key`` + ``create_shared_stream_producer``): a merchant's watermark is stored
  only after Airflow confirms that its event was recorded in the metadata DB, and ``advance()``
  never moves a merchant past an event that was not recorded: at the first such event it stops
  for that merchant, forgets everything reported since the stored watermark (later events of
  the merchant still in flight are ignored when confirmed), and the next sweep reports them
  again. Confirmed watermarks are written in the background, one write per key for all the
  merchants confirmed together (:data:`FLUSH_DELAY`), so ``advance()`` returns at once and
  Airflow's confirmations are never held up by the store. A triggerer stopped or killed reports
  once more the events recorded whose confirmation or watermark write it did not live to see
  (Airflow confirms on its next state sync, and closes the channel to its supervisor before
  the watcher stops); the copy, which skips objects already in S3, makes that harmless.
  Outside the triggerer (``run()``), the watermark is stored when the consumer asks for the
  next event.

**One bad merchant harms only itself.** Each merchant's listing has its own deadline
(``merchant_timeout``); the healthy merchants' events are yielded in the same sweep; a merchant
that fails (or may not be read: 403/404) is retried with exponential back-off (from the poll
interval up to 30 min), logged once when it starts failing, when its reason changes and when it
recovers. Within a sweep its requests are retried :data:`SWEEP_RETRIES` time(s) only, so a
hundred failing merchants hold the sweep's workers for seconds, not minutes. Nothing
synchronous on the event loop grows with the number of merchants beyond a
few milliseconds: the sweep runs through a fixed pool of workers and the results are processed
with a yield to the loop every few milliseconds.

**Two Airflow behaviours to know:** the triggerer starts a watcher only for a DAG that was
unpaused when its file was parsed (unpausing later takes effect at the next parse); and an event
recorded while the scheduler is creating the run for the previous one is consumed by the *next*
run, so its merchant's copy waits for the next event. The daily sensor DAG, or the webhook,
bounds that wait.

**Errors.** Every event becomes an asset event, so errors are logged, never yielded: a sweep
whose merchant list fails (after the hook's retries) is retried at the next interval; a
merchant's error is handled as above.

**Airflow 2.11** has no event triggers, and **Airflow 3.0 to 3.2** have no asset state store to
keep the watermark in: this module imports, and creating the trigger raises ``RuntimeError``
naming the alternative (the settlement sensor DAG, or Airflow 3.3).
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.triggers.base import TriggerEvent

from airflow_provider_dintero.events import build_extra
from airflow_provider_dintero.exceptions import DinteroApiError
from airflow_provider_dintero.hooks.dintero import DinteroAsyncHook
from airflow_provider_dintero.poller import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MERCHANT_TIMEOUT,
    MerchantHealth,
    SettlementPoller,
    check_account_ids,
    check_concurrency,
    listing_keys,
)
from airflow_provider_dintero.redaction import redact_text
from airflow_provider_dintero.settlements import format_timestamp, parse_timestamp
from airflow_provider_dintero.transport import hold_async_clients
from airflow_provider_dintero.validation import validate_account_id
from airflow_provider_dintero.vocabulary import Settlement

try:  # Airflow 3
    from airflow.triggers.base import BaseEventTrigger as _EventTriggerBase

    EVENT_TRIGGERS = True
except ImportError:  # Airflow 2.11
    from airflow.triggers.base import BaseTrigger as _EventTriggerBase  # type: ignore[assignment]

    EVENT_TRIGGERS = False

try:  # Airflow 3.3: the asset state store, where the watermark lives
    from airflow.sdk.execution_time.context import AssetStateStoreAccessor

    WATERMARK_STORE = True
except ImportError:  # older lines: no durable watermark, so no watcher (see AIRFLOW_3_3_ONLY)
    AssetStateStoreAccessor = None  # type: ignore[assignment,misc]
    WATERMARK_STORE = False

try:  # Airflow 3.3: shared streams in ack mode
    from airflow.triggers.shared_stream import AdvanceItem, SharedStreamProducer
except ImportError:  # older lines: run() only
    AdvanceItem = Any  # type: ignore[assignment,misc]
    SharedStreamProducer = object  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

#: How far behind a merchant's newest reported settlement each sweep lists again, by default.
DEFAULT_LOOKBACK = 3600.0
#: Without ``since``, the first start begins this long before the triggerer's clock.
FIRST_START_SKEW = timedelta(minutes=5)
#: Retries of a merchant's request within one sweep: a merchant still failing is tried again at a
#: later sweep, with back-off (the connection's retries would hold a sweep worker for about 30 s).
SWEEP_RETRIES = 1
#: The most reported ids kept per merchant (memory and state store).
MAX_SEEN = 2000
#: Results processed between two yields to the event loop at most this long (seconds).
SLICE = 0.005
#: The most events the watcher has yielded and Airflow has not resolved (recorded or not) yet, at
#: most: Airflow fails a shared stream whose subscriber queue overflows (``[triggerer]
#: shared_stream_subscriber_queue_size``, 1,024 by default), which a sweep finding new
#: settlements for more merchants than that would do. Half the queue, and never more than 512.
IN_FLIGHT_CAP = 512
#: About how many merchants' watermarks one state-store key holds (about 27 kB at one settlement
#: each; Airflow warns above 64 kB). The merchants are spread over ``N`` keys
#: ``watermarks:<N>:<n>`` by a stable hash of their id, ``N`` growing with them (when a key holds
#: twice this many on average): the watermarks confirmed together are stored in one write per key,
#: and a restart reads ``N`` + 1 keys (41 at 10,000 merchants), not one per merchant.
MERCHANTS_PER_KEY = 250
#: About how many bytes one key holds at most, on average (merchants with many recent settlements
#: keep more ids: the keys are spread by size as well as by count).
BYTES_PER_KEY = 32_768
#: The most keys the watermarks are spread over.
MAX_WATERMARK_KEYS = 1024
#: The key that names the layout and the keys written: ``{"version": 2, "shards": N, "used": [n]}``.
WATERMARK_INDEX = "watermarks"
#: Confirmed watermarks are gathered this long before they are written (seconds).
FLUSH_DELAY = 0.2
#: The longest wait between two tries to write watermarks after a failed write (seconds).
FLUSH_RETRY_MAX = 30.0
#: How long a stopping watcher waits to write the watermarks confirmed last (seconds).
FINAL_FLUSH_TIMEOUT = 5.0


def in_flight_limit() -> int:
    """How many events the watcher may have in flight: half the subscriber queue, at most 512."""
    try:
        from airflow.providers.common.compat.sdk import conf

        queue = conf.getint("triggerer", "shared_stream_subscriber_queue_size", fallback=1024)
    except Exception:  # an unreadable option: Airflow's default
        queue = 1024
    return max(1, min(IN_FLIGHT_CAP, queue // 2))


AIRFLOW_3_ONLY = (
    "DinteroSettlementEventTrigger needs Airflow 3 (asset watchers and event triggers). On "
    "Airflow 2.11 wait with SettlementSensor(all_merchants=True) in a scheduled DAG instead "
    "(example_dags/settlements_to_s3.py)."
)
AIRFLOW_3_3_ONLY = (
    "DinteroSettlementEventTrigger keeps its watermark in the asset state store of Airflow 3.3 "
    "(AssetStateStoreAccessor), which this Airflow does not have: without it a restart would "
    "lose or repeat settlements. Use Airflow 3.3 or later, or wait with "
    "SettlementSensor(all_merchants=True) in a scheduled DAG (example_dags/settlements_to_s3.py)."
)


def asset_name(account_id: str) -> str:
    """
    The name of the asset a partner's settlement events go to (as
    :func:`~airflow_provider_dintero.webhooks.settlement_events_asset` names it).

    :param account_id: the partner (or a merchant watching itself).
    """
    return f"dintero_settlements_{validate_account_id(account_id)}"


def _instant(value: Any) -> datetime | None:
    """
    A plain aware UTC datetime (not pendulum's, whose arithmetic may drop the zone). Dintero's
    ISO-8601 form takes the fast path (``datetime.fromisoformat``, about 50 times faster than a
    general parse: a sweep reads every listed settlement's ``created_at``); anything else goes
    through :func:`~airflow_provider_dintero.settlements.parse_timestamp`.
    """
    if isinstance(value, str) and len(value) > 10:
        try:
            fast = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            aware = fast if fast.tzinfo else fast.replace(tzinfo=timezone.utc)
            return aware.astimezone(timezone.utc)
    p = parse_timestamp(value)
    if p is None:
        return None
    return datetime(p.year, p.month, p.day, p.hour, p.minute, p.second, p.microsecond, tzinfo=timezone.utc)


def _stored_form(at: datetime) -> str:
    """Dintero's form of an instant (what :func:`format_timestamp` gives), fast for UTC ones."""
    if at.tzinfo is timezone.utc:
        return at.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    return format_timestamp(at, "created_at")


@dataclass(slots=True)
class Watermark:
    """
    How far a merchant's settlements were reported (see the module's watermark contract).
    Never changed in place (:meth:`split` returns a new one), so the watcher shares one object
    between the merchant's current and stored watermark and the event's broker payload.

    :param floor: list from here (Dintero's form): the newest reported ``created_at`` less the
        lookback, or the first start's ``since``.
    :param seen: ids reported with ``created_at`` at or after ``floor``, with their ``created_at``.
    """

    floor: str
    seen: dict[str, datetime] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The stored form: ``{"floor", "seen": {id: created_at}}``."""
        return {
            "floor": self.floor,
            "seen": {sid: _stored_form(at) for sid, at in self.seen.items()},
        }

    @classmethod
    def from_json(cls, value: Any) -> Watermark | None:
        """
        Read a stored watermark; ``None`` when absent or unreadable. The earlier form
        ``{"created_at", "ids"}`` reads as a floor at ``created_at`` with those ids seen there.

        :param value: the stored value (a :class:`Watermark` is returned as it is).
        """
        if isinstance(value, Watermark):
            return value
        if not isinstance(value, dict):
            return None
        if "floor" not in value and _instant(value.get("created_at")) is not None:
            at = _instant(value["created_at"])
            assert at is not None
            ids = [i for i in value.get("ids") or [] if isinstance(i, str)]
            return cls(str(value["created_at"]), dict.fromkeys(ids, at))
        if _instant(value.get("floor")) is None:
            return None
        seen: dict[str, datetime] = {}
        raw = value.get("seen")
        for sid, created in raw.items() if isinstance(raw, Mapping) else []:
            at = _instant(created)
            if isinstance(sid, str) and at is not None:
                seen[sid] = at
        return cls(str(value["floor"]), seen)

    def split(
        self, settlements: Sequence[Settlement], lookback: timedelta = timedelta(seconds=DEFAULT_LOOKBACK)
    ) -> tuple[list[Settlement], Watermark]:
        """
        The settlements not yet reported, and the watermark after reporting them. Linear in
        the settlements and the ids seen.

        :param settlements: what the list returned since ``floor``.
        :param lookback: how far behind the newest reported settlement the next list begins.
        """
        floor = _instant(self.floor)
        assert floor is not None
        seen = dict(self.seen)
        fresh: list[Settlement] = []
        newest = max(seen.values(), default=floor)
        for item in settlements:
            sid = item.get("id")
            if isinstance(sid, str) and sid in seen:  # reported already (most of a re-listed lookback)
                continue
            created = _instant(item.get("created_at"))
            if not isinstance(sid, str) or not sid or created is None:
                log.warning("Ignoring a settlement without a readable id or created_at: %r", str(sid)[:60])
                continue
            if created < floor:  # older than the contract
                continue
            fresh.append(item)
            seen[sid] = created
            newest = max(newest, created)
        new_floor = max(floor, newest - lookback)
        kept = {sid: at for sid, at in seen.items() if at >= new_floor}
        if len(kept) > MAX_SEEN:  # the newest MAX_SEEN; the floor rises to the oldest kept
            kept = dict(sorted(kept.items(), key=lambda kv: kv[1])[-MAX_SEEN:])
            new_floor = max(new_floor, min(kept.values()))
        return fresh, Watermark(format_timestamp(new_floor, "floor"), kept)


def state_store(account_id: str) -> Any:
    """
    The watched asset's state store accessor (Airflow 3.3), usable in the triggerer.

    :param account_id: the partner whose asset is watched.
    """
    if AssetStateStoreAccessor is None:
        raise RuntimeError(AIRFLOW_3_3_ONLY)
    return AssetStateStoreAccessor(name=asset_name(account_id))


def _stored_size(mark: Watermark) -> int:
    """About how many bytes ``mark`` takes in its key (its id, floor and seen ids with times)."""
    return 60 + 70 * len(mark.seen)


def shard_of(account_id: str, shards: int) -> int:
    """
    The watermark key (``watermarks:<shards>:<n>``) a merchant's watermark is stored in: a stable
    hash of its id (the same in every process and Python version).

    :param account_id: the merchant.
    :param shards: how many keys the merchants are spread over.
    """
    return zlib.crc32(account_id.encode()) % shards


class WatermarkShards:
    """
    The merchants' stored watermarks, in the asset state store: ``N`` keys
    ``watermarks:<N>:<n>`` of ``{merchant: watermark}`` and an index (:data:`WATERMARK_INDEX`)
    naming ``N`` and the keys written. :meth:`put` records a confirmed watermark in memory and
    marks its key; :meth:`flush` (run by :meth:`keep_flushed` in the background) writes each
    marked key once, so the watermarks confirmed together cost one write per key instead of one
    per merchant, and a restart reads ``N`` + 1 keys instead of one per merchant. ``N`` grows
    with the merchants (about :data:`MERCHANTS_PER_KEY` a key): the new keys are written whole
    before the index names them, so a crash at any point leaves a readable layout.

    One watcher writes a partner's keys: a key's merchants that this watcher does not poll are
    read at the start and written back as they were.

    :param store: the asset state store accessor (``aget``/``aset``).
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self.shards = 1
        #: every stored (or confirmed, not yet written) watermark, by merchant
        self.marks: dict[str, Watermark] = {}
        self.members: dict[int, set[str]] = {}
        self.used: set[int] = set()
        self.dirty: set[int] = set()
        self._wake = asyncio.Event()
        self._writing = asyncio.Lock()
        self._touched: set[str] | None = None
        #: about how many bytes the stored form of ``marks`` takes
        self._bytes = 0
        self._failing: str | None = None

    async def load(self, concurrency: int) -> bool:
        """
        Read every written key; ``False`` when the store has no index (a first start, or the
        earlier layout of one key per merchant).

        :param concurrency: keys read at the same time.
        """
        index = await self.store.aget(WATERMARK_INDEX)
        if not isinstance(index, Mapping) or index.get("version") != 2:
            return False
        shards = index.get("shards")
        self.shards = shards if isinstance(shards, int) and 0 < shards <= MAX_WATERMARK_KEYS else 1
        used = index.get("used")
        used = used if isinstance(used, list) else []
        self.used = {n for n in used if isinstance(n, int) and 0 <= n < self.shards}
        pending = iter(sorted(self.used))

        async def reader() -> None:
            for n in pending:
                value = await self.store.aget(shard_key(self.shards, n))
                for aid, raw in value.items() if isinstance(value, Mapping) else []:
                    mark = Watermark.from_json(raw)
                    # an entry in a key its id does not hash to was not written here: ignored
                    if isinstance(aid, str) and mark is not None and shard_of(aid, self.shards) == n:
                        self.marks[aid] = mark
                        self._bytes += _stored_size(mark)
                        self.members.setdefault(n, set()).add(aid)

        await asyncio.gather(*(reader() for _ in range(max(1, concurrency))))
        return True

    async def write_index(self) -> None:
        """Write the index (at a first start, empty): the layout is known from then on."""
        await self.store.aset(WATERMARK_INDEX, self._index())

    def _index(self, *adding: int) -> dict[str, Any]:
        return _index_value(self.shards, self.used.union(adding))

    def _value(self, aids: set[str]) -> dict[str, Any]:
        """One key's stored form: ``{merchant: watermark}``."""
        return {aid: self.marks[aid].to_json() for aid in aids}

    def put(self, aid: str, mark: Watermark) -> None:
        """
        Record ``aid``'s confirmed watermark; it is written at the next :meth:`flush`.

        :param aid: the merchant.
        :param mark: its watermark.
        """
        n = shard_of(aid, self.shards)
        if self._touched is not None:
            self._touched.add(aid)
        before = self.marks.get(aid)
        self._bytes += _stored_size(mark) - (_stored_size(before) if before is not None else 0)
        self.marks[aid] = mark
        self.members.setdefault(n, set()).add(aid)
        self.dirty.add(n)
        self._wake.set()

    async def flush(self) -> int:
        """
        Write every marked key once (the index first when a key is written for the first time);
        return how many keys were written. A failed write leaves its key marked and raises.
        """
        written = 0
        async with self._writing:  # one flush at a time: the index is written whole
            wanted = self._keys_wanted()
            if wanted > self.shards:
                written += await self._spread(wanted)
            while self.dirty:
                n = self.dirty.pop()
                try:
                    if n not in self.used:
                        await self.store.aset(WATERMARK_INDEX, self._index(n))
                        self.used.add(n)
                    await self.store.aset(shard_key(self.shards, n), self._value(self.members[n]))
                except BaseException:
                    self.dirty.add(n)
                    raise
                written += 1
                await asyncio.sleep(0)  # one key's serialising at a time on the event loop
        return written

    def _keys_wanted(self) -> int:
        """
        The keys the watermarks should be spread over: more once a key holds twice its share of
        merchants (:data:`MERCHANTS_PER_KEY`) or of bytes (:data:`BYTES_PER_KEY`).
        """
        merchants, size = len(self.marks), self._bytes
        if merchants <= 2 * MERCHANTS_PER_KEY * self.shards and size <= 2 * BYTES_PER_KEY * self.shards:
            return self.shards
        wanted = max(-(-merchants // MERCHANTS_PER_KEY), -(-size // BYTES_PER_KEY))
        return min(MAX_WATERMARK_KEYS, max(self.shards, wanted))

    async def _spread(self, shards: int) -> int:
        """
        Spread every watermark over ``shards`` keys: write the new keys, then the index that names
        them, then delete the old keys; return how many keys were written.
        """
        members: dict[int, set[str]] = {}
        for aid in self.marks:
            members.setdefault(shard_of(aid, shards), set()).add(aid)
        self._touched = set()  # merchants put while the new keys are written
        try:
            for n, aids in members.items():
                await self.store.aset(shard_key(shards, n), self._value(aids))
                await asyncio.sleep(0)
            await self.store.aset(WATERMARK_INDEX, _index_value(shards, members))
        finally:
            touched, self._touched = self._touched, None
        old, old_used = self.shards, self.used
        self.shards, self.members, self.used, self.dirty = shards, members, set(members), set()
        for aid in touched:  # written to the new keys at the next pass
            self.put(aid, self.marks[aid])
        log.info("Spread %s merchant watermarks over %s keys (were %s)", len(self.marks), shards, old)
        for n in old_used:
            try:
                await self.store.adelete(shard_key(old, n))
            except Exception as exc:  # a key left behind is never read again
                log.info("Could not delete an earlier watermark key (%s): %s", n, redact_text(exc))
        return len(members)

    async def keep_flushed(self) -> None:
        """Write the marked keys whenever there are some, gathering :data:`FLUSH_DELAY`; forever."""
        retry = FLUSH_DELAY
        while True:
            await self._wake.wait()
            await asyncio.sleep(retry)
            self._wake.clear()
            try:
                await self.flush()
            except Exception as exc:  # the store is out of reach: keep the marks, try again later
                retry = min(FLUSH_RETRY_MAX, retry * 2)
                self._wake.set()
                reason = redact_text(exc)
                if reason != self._failing:
                    log.warning("Storing the watermarks failed; trying again in %.0f s: %s", retry, reason)
                self._failing = reason
                continue
            if self._failing is not None:
                log.info("Storing the watermarks works again")
            self._failing = None
            retry = FLUSH_DELAY

    async def final_flush(self) -> None:
        """Write what is marked, once, within :data:`FINAL_FLUSH_TIMEOUT` (a stopping watcher)."""
        if not self.dirty:
            return
        try:
            await asyncio.wait_for(self.flush(), FINAL_FLUSH_TIMEOUT)
        except Exception as exc:
            log.warning(
                "%s merchant watermark key(s) were not stored before the watcher stopped; their "
                "latest settlements will be reported again: %s",
                len(self.dirty),
                redact_text(exc) or type(exc).__name__,
            )


def _index_value(shards: int, used: Iterable[int]) -> dict[str, Any]:
    """The index's stored form (:data:`WATERMARK_INDEX`)."""
    return {"version": 2, "shards": shards, "used": sorted(used)}


def shard_key(shards: int, n: int) -> str:
    """
    The state-store key of watermark key ``n`` of ``shards``.

    :param shards: how many keys the watermarks are spread over.
    :param n: the key's number.
    """
    return f"{WATERMARK_INDEX}:{shards}:{n}"


class SettlementEventProducer(SharedStreamProducer):
    """
    The poll loop behind :class:`DinteroSettlementEventTrigger`: sweeps, yields one raw event per
    merchant batch, and stores a merchant's watermark once its event is confirmed persisted.

    :param kwargs: the trigger's keyword arguments.
    """

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.account_id = validate_account_id(kwargs["account_id"])
        self.account_ids = check_account_ids(kwargs.get("account_ids"))
        self.payment_providers = kwargs.get("payment_providers")
        self.dintero_conn_id = str(kwargs.get("dintero_conn_id") or DinteroAsyncHook.default_conn_name)
        self.poll_interval = float(kwargs.get("poll_interval", 60.0))
        self.max_concurrency = check_concurrency(kwargs.get("max_concurrency", DEFAULT_MAX_CONCURRENCY))
        self.merchant_timeout = float(kwargs.get("merchant_timeout") or DEFAULT_MERCHANT_TIMEOUT)
        self.lookback = timedelta(seconds=float(kwargs.get("lookback") or DEFAULT_LOOKBACK))
        self.initial_since = kwargs.get("since")
        self.store = state_store(self.account_id)
        self.since = ""
        #: the watermark of every merchant with none stored: one object, shared (never changed)
        self.first = Watermark(format_timestamp(datetime.min.replace(tzinfo=timezone.utc), "since"))
        #: the stored watermarks (``stored`` is ``shards.marks``)
        self.shards = WatermarkShards(self.store)
        self.stored: dict[str, Watermark] = self.shards.marks
        #: with the earlier layout (one key per merchant, read once and moved into the shards):
        #: the merchants whose key was read; ``None`` with the shards' layout
        self.loaded: set[str] | None = None
        self.current: dict[str, Watermark] = {}
        #: per merchant, bumped at each rollback: confirmations of older events are ignored
        self.generation: dict[str, int] = {}
        self.health = MerchantHealth(self.poll_interval, logger=log)
        #: events yielded and not resolved yet, and the most there may be (see :func:`in_flight_limit`)
        self.in_flight = 0
        self.in_flight_limit = in_flight_limit()
        self._room = asyncio.Event()

    async def _load_all(self, merchants: Sequence[str]) -> None:
        """
        With the earlier layout only (one key per merchant): read the key of every merchant not
        read yet and move its watermark into the shards. With the shards, :meth:`_start` read
        every stored watermark.
        """
        loaded = self.loaded
        if loaded is None:
            return
        missing = iter([aid for aid in merchants if aid not in loaded])

        async def worker() -> None:
            for aid in missing:
                mark = Watermark.from_json(await self.store.aget(f"watermark:{aid}"))
                if mark is not None and aid not in self.stored:
                    self.shards.put(aid, mark)
                loaded.add(aid)

        await asyncio.gather(*(worker() for _ in range(self.max_concurrency)))
        await self.shards.flush()
        await self.shards.write_index()  # the next start reads the shards only
        self.loaded = None
        log.info("Moved %s merchant watermark(s) into %s key(s)", len(self.stored), len(self.shards.used))

    def _mark(self, aid: str) -> Watermark:
        return self.current.get(aid) or self.stored.get(aid) or self.first

    async def _start(self) -> None:
        since = await self.store.aget("since")
        if parse_timestamp(since) is None:  # the very first start
            from airflow.providers.common.compat.sdk import timezone

            start = self.initial_since or timezone.utcnow() - FIRST_START_SKEW
            since = format_timestamp(start, "since")
            await self.shards.write_index()
            await self.store.aset("since", since)
        elif not await self.shards.load(self.max_concurrency):
            self.loaded = set()  # the earlier layout: read per merchant, once, into the shards
        self.since = str(since)
        self.first = Watermark(self.since)
        log.info("Watching Dintero settlements of %s created since %s", self._who(), self.since)

    def _who(self) -> str:
        return f"{len(self.account_ids)} merchant(s)" if self.account_ids else f"partner {self.account_id}"

    async def open_stream(self) -> AsyncIterator[tuple[dict[str, Any], tuple[str, Watermark, int]]]:
        """
        Sweep forever; yield ``(event payload, (merchant, new watermark, generation))`` per new
        batch. A sweep keeps, per merchant found, only its new ids, providers and watermarks
        (not the listed settlements), and lets go of each merchant once its event is yielded.
        """
        await self._start()
        poller = SettlementPoller(
            DinteroAsyncHook(dintero_conn_id=self.dintero_conn_id),
            account_ids=self.account_ids,
            payment_providers=self.payment_providers,
            max_concurrency=self.max_concurrency,
            merchant_timeout=self.merchant_timeout,
            each=listing_keys,
            max_retries=SWEEP_RETRIES,
        )
        writer = asyncio.create_task(self.shards.keep_flushed())
        try:
            async with hold_async_clients():
                async for item in self._events(poller):
                    yield item
        finally:
            writer.cancel()
            await self.shards.final_flush()

    async def _events(
        self, poller: SettlementPoller
    ) -> AsyncIterator[tuple[dict[str, Any], tuple[str, Watermark, int]]]:
        """The sweeps' events, forever (see :meth:`open_stream`)."""
        while True:
            found = deque(await self._sweep(poller))
            slice_start = time.perf_counter()
            while found:
                aid, (ids, providers, before, mark) = found.popleft()
                if time.perf_counter() - slice_start > SLICE:
                    await asyncio.sleep(0)  # let the other triggers of this loop run
                    slice_start = time.perf_counter()
                if self._mark(aid) is not before:
                    continue  # rolled back during the sweep: the next sweep decides
                if self.in_flight >= self.in_flight_limit:
                    await self._wait_for_room()
                    if self._mark(aid) is not before:
                        continue
                self.current[aid] = mark
                extra = build_extra(aid, ids, providers, source="poll")
                self.in_flight += 1
                yield extra, (aid, mark, self.generation.get(aid, 0))
            await asyncio.sleep(self.poll_interval)

    async def _wait_for_room(self) -> None:
        """Wait until Airflow has resolved enough of the events in flight to yield another."""
        waited = time.monotonic()
        while self.in_flight >= self.in_flight_limit:
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), 60)
            except asyncio.TimeoutError:
                log.info(
                    "Waiting for Airflow to record the %s settlement events in flight before reporting "
                    "more (%.0f s so far)",
                    self.in_flight,
                    time.monotonic() - waited,
                )

    def settled(self, count: int) -> None:
        """
        Count ``count`` events as resolved by Airflow (recorded or not): room for more.

        :param count: how many.
        """
        self.in_flight = max(0, self.in_flight - count)
        if self.in_flight < self.in_flight_limit:
            self._room.set()

    def _fresh(
        self, aid: str, settlements: list[Settlement]
    ) -> tuple[tuple[str, ...], tuple[str, ...], Watermark, Watermark] | None:
        """
        Reduce one merchant's listing, as soon as it arrives, to what its event needs (the new
        ids and their providers, as tuples of strings, which the garbage collector does not
        track) and its watermarks before and after (``None`` when nothing is new): the listing
        itself is not kept.
        """
        before = self._mark(aid)
        fresh, mark = before.split(settlements, self.lookback)
        if not fresh:
            return None
        ids = tuple(str(s["id"]) for s in fresh)
        providers = tuple(dict.fromkeys(p for s in fresh if isinstance(p := s.get("provider"), str) and p))
        return ids, providers, before, mark

    async def _sweep(self, poller: SettlementPoller) -> list[tuple[str, Any]]:
        try:
            merchants = await poller.merchants()
            await self._load_all(merchants)
            now = time.monotonic()
            due = self.health.due_among(merchants, now)
            sweep = await poller.sweep(lambda aid: self._mark(aid).floor, due, self._fresh)
        except DinteroApiError as exc:
            log.warning(
                "Listing the merchants of %s failed; trying again in %s s: %s",
                self._who(),
                self.poll_interval,
                redact_text(exc),
            )
            return []
        self.health.update(due, sweep, time.monotonic())
        return list(sweep.found.items())

    def get_advance_lane(self, broker_payload: Any) -> Hashable:
        """
        One lane per merchant: a merchant's watermarks are stored in order.

        :param broker_payload: ``(merchant, watermark, generation)``.
        """
        return str(broker_payload[0])

    async def advance(self, batch: Sequence[AdvanceItem]) -> None:
        """
        Store the watermark of each merchant batch whose event was persisted, in order; at the
        first event that was not, stop for that merchant and forget what was reported since its
        stored watermark, so that the next sweep reports it again.

        :param batch: resolved events of one merchant, in order.
        """
        self.settled(len(batch))
        for item in batch:
            aid, mark, generation = item.broker_payload
            if generation != self.generation.get(aid, 0):
                continue  # reported before a rollback: its settlements are being reported again
            if not item.outcome.is_clean:
                self.rollback(aid)
                return
            await self.commit(aid, mark, generation)

    async def commit(self, aid: str, mark: Watermark | dict[str, Any], generation: int = 0) -> None:
        """
        Store ``aid``'s watermark (its event is safely recorded).

        :param aid: the merchant.
        :param mark: the watermark after the batch (or its stored form).
        :param generation: the merchant's generation when the event was yielded.
        """
        if generation != self.generation.get(aid, 0):
            return
        stored = Watermark.from_json(mark)
        if stored is None:
            return
        if self.current.get(aid) is mark:  # nothing newer in flight: one object, not two
            del self.current[aid]
        self.shards.put(aid, stored)

    async def aclose(self) -> None:
        """Write the watermarks confirmed last (Airflow calls this when the poll ends)."""
        await self.shards.final_flush()

    def rollback(self, aid: str) -> None:
        """
        Forget what was reported for ``aid`` since its stored watermark (its event was not recorded).

        :param aid: the merchant.
        """
        log.warning("An event for merchant %s was not recorded; its settlements will be reported again", aid)
        self.current.pop(aid, None)
        self.generation[aid] = self.generation.get(aid, 0) + 1


class DinteroSettlementEventTrigger(_EventTriggerBase):
    """
    Watch a partner's merchants (or a list) for new settlements; one event per merchant batch.

    See the module docstring for the payload, the watermark and the delivery guarantees.

    :param account_id: the partner whose asset is watched (``settlement_events_asset(account_id)``);
        a merchant connection watching itself passes its own id.
    :param account_ids: only these merchants; ``None`` for every merchant of the partner.
    :param payment_providers: only these payout providers (API names).
    :param dintero_conn_id: the Dintero connection id.
    :param poll_interval: seconds between two sweeps.
    :param max_concurrency: merchants polled at the same time (in a triggerer, all triggers of
        one event loop share at most ``transport.MAX_IN_FLIGHT`` requests in flight).
    :param since: where the very first start begins (ISO-8601; default: that start's time less
        :data:`FIRST_START_SKEW`). Only read while the asset's state store has no ``since``.
    :param lookback: seconds behind a merchant's newest reported settlement that each sweep lists
        again (the watermark contract's window for settlements that Dintero lists late).
    :param merchant_timeout: seconds one merchant's listing may take within a sweep.
    """

    def __init__(
        self,
        account_id: str,
        account_ids: Sequence[str] | None = None,
        payment_providers: Sequence[str] | None = None,
        dintero_conn_id: str = DinteroAsyncHook.default_conn_name,
        poll_interval: float = 60.0,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        since: str | None = None,
        lookback: float = DEFAULT_LOOKBACK,
        merchant_timeout: float = DEFAULT_MERCHANT_TIMEOUT,
    ) -> None:
        if not EVENT_TRIGGERS:
            raise RuntimeError(AIRFLOW_3_ONLY)
        if not WATERMARK_STORE:
            raise RuntimeError(AIRFLOW_3_3_ONLY)
        super().__init__()
        self.lookback = float(lookback)
        self.merchant_timeout = float(merchant_timeout)
        self.account_id = account_id
        self.account_ids = list(account_ids) if account_ids is not None else None
        self.payment_providers = list(payment_providers) if payment_providers else None
        self.dintero_conn_id = dintero_conn_id
        self.poll_interval = float(poll_interval)
        self.max_concurrency = max_concurrency
        self.since = since

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the importable class path and the keyword arguments to rebuild this trigger."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "account_id": self.account_id,
                "account_ids": self.account_ids,
                "payment_providers": self.payment_providers,
                "dintero_conn_id": self.dintero_conn_id,
                "poll_interval": self.poll_interval,
                "max_concurrency": self.max_concurrency,
                "since": self.since,
                "lookback": self.lookback,
                "merchant_timeout": self.merchant_timeout,
            },
        )

    def shared_stream_key(self) -> Hashable | None:
        """Share one poll loop (in ack mode) among watchers of the same merchants."""
        return (
            "dintero-settlements",
            self.dintero_conn_id,
            self.account_id,
            tuple(self.account_ids or ()),
            tuple(self.payment_providers or ()),
        )

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> SettlementEventProducer:
        """
        The ack-mode producer: watermarks advance only once events are persisted.

        :param kwargs: one watcher's keyword arguments.
        """
        return SettlementEventProducer(kwargs)

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        """
        Every raw event is one merchant batch: yield it as this watcher's event.

        :param shared_stream: the shared poll's raw events.
        """
        async for payload in shared_stream:
            yield TriggerEvent(payload)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """
        Standalone loop (outside the shared-stream manager): yield each merchant batch; its
        watermark is stored when the consumer asks for the next event.
        """
        producer = self.create_shared_stream_producer(self.serialize()[1])
        async for payload, broker_payload in producer.open_stream():
            yield TriggerEvent(payload)
            producer.settled(1)
            await producer.commit(*broker_payload)
            await producer.shards.flush()
