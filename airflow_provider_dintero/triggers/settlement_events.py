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

**Watermark.** Per merchant, the creation time of its newest reported settlement plus the ids
seen at exactly that time (``created_at`` has no tie-breaker), kept in the watched asset's
state store (Airflow 3.3's ``asset_state_store`` table, keys ``since`` and
``watermark:<account id>``), so a triggerer restart resumes where the last stored watermark
left off. The first start stores ``since`` (default: the start time); a merchant without a
watermark is read from there.

**Never lost, never repeated.** In the triggerer the trigger runs in the shared-stream **ack
mode** (``shared_stream_key`` + ``create_shared_stream_producer``): a merchant's watermark is
advanced only after Airflow confirms that the event was stored in the metadata DB. An event not
confirmed (the triggerer stopped or crashed first, or the ack timed out) leaves the watermark
where it was, and the settlements are reported again by the next sweep or after the restart:
nothing is lost. What remains is the instant between Airflow's confirmation and the watermark
write: a crash exactly there reports that batch once more, and the copy step, which skips objects
already in S3, makes that harmless. Outside the triggerer (``run()``), the watermark is advanced
when the consumer asks for the next event.

**Seen live on Airflow 3.3.2** (``bench/settlement_watcher.py``, ``tests/system``): files in S3
about 30 s after the addition at a 30 s poll interval, 13 s for one added while the triggerer
was stopped; each settlement reported once across the restart and each file written once. Two
Airflow behaviours to know: the triggerer starts a watcher only for a DAG that was unpaused when
its file was parsed (unpausing later takes effect at the next parse); and an event recorded
while the scheduler is creating the run for the previous one (36 ms apart, live) is consumed by
the *next* run, so its merchant's copy waits for the next event. The daily sensor DAG, or the
webhook, bounds that wait.

**Errors.** Every event becomes an asset event, so errors are logged, never yielded: a sweep
that fails (after the hook's retries) is retried at the next interval; a merchant the partner
may not read is skipped with a warning (an explicit list keeps retrying it, logged).

**Airflow 2.11** has no event triggers: this module imports, and creating the trigger raises
``RuntimeError`` naming the alternative (the settlement sensor DAG).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from airflow.triggers.base import TriggerEvent

from airflow_provider_dintero.events import poll_extra
from airflow_provider_dintero.exceptions import DinteroApiError
from airflow_provider_dintero.hooks.dintero import DinteroAsyncHook
from airflow_provider_dintero.poller import (
    DEFAULT_MAX_CONCURRENCY,
    SettlementPoller,
    check_account_ids,
    check_concurrency,
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

try:  # Airflow 3.3: shared streams in ack mode
    from airflow.triggers.shared_stream import AdvanceItem, SharedStreamProducer
except ImportError:  # older lines: run() only
    AdvanceItem = Any  # type: ignore[assignment,misc]
    SharedStreamProducer = object  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

AIRFLOW_3_ONLY = (
    "DinteroSettlementEventTrigger needs Airflow 3 (asset watchers and event triggers). On "
    "Airflow 2.11 wait with SettlementSensor(all_merchants=True) in a scheduled DAG instead "
    "(example_dags/settlements_to_s3.py)."
)


def asset_name(account_id: str) -> str:
    """
    The name of the asset a partner's settlement events go to (as
    :func:`~airflow_provider_dintero.webhooks.settlement_events_asset` names it).

    :param account_id: the partner (or a merchant watching itself).
    """
    return f"dintero_settlements_{validate_account_id(account_id)}"


@dataclass(frozen=True)
class Watermark:
    """
    How far a merchant's settlements were reported.

    :param created_at: creation time of the newest reported settlement (Dintero's form).
    :param ids: ids of the reported settlements created at exactly ``created_at``.
    """

    created_at: str
    ids: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        return {"created_at": self.created_at, "ids": sorted(self.ids)}

    @classmethod
    def from_json(cls, value: Any) -> Watermark | None:
        """
        Read a stored watermark; ``None`` when absent or unreadable.

        :param value: the stored value.
        """
        if not isinstance(value, dict) or parse_timestamp(value.get("created_at")) is None:
            return None
        ids = value.get("ids")
        return cls(str(value["created_at"]), frozenset(i for i in ids or [] if isinstance(i, str)))

    def split(self, settlements: Sequence[Settlement]) -> tuple[list[Settlement], Watermark]:
        """
        The settlements not yet reported, and the watermark after reporting them.

        :param settlements: what the list returned since ``created_at``.
        """
        mark = parse_timestamp(self.created_at)
        assert mark is not None
        newest, ids = mark, set(self.ids)
        fresh: list[Settlement] = []
        for item in settlements:
            sid, created = item.get("id"), parse_timestamp(item.get("created_at"))
            if not isinstance(sid, str) or not sid or created is None:
                log.warning("Ignoring a settlement without a readable id or created_at: %r", str(sid)[:60])
                continue
            if created < mark or (created == mark and sid in self.ids) or any(sid == f["id"] for f in fresh):
                continue
            fresh.append(item)
            if created > newest:
                newest, ids = created, {sid}
            elif created == newest:
                ids.add(sid)
        return fresh, Watermark(format_timestamp(newest, "created_at"), frozenset(ids))


def state_store(account_id: str) -> Any:
    """
    The watched asset's state store accessor (Airflow 3.3), usable in the triggerer.

    :param account_id: the partner whose asset is watched.
    """
    from airflow.sdk.execution_time.context import AssetStateStoreAccessor

    return AssetStateStoreAccessor(name=asset_name(account_id))


class SettlementEventProducer(SharedStreamProducer):  # type: ignore[misc,valid-type]
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
        self.initial_since = kwargs.get("since")
        self.store = state_store(self.account_id)
        self.since = ""
        self.stored: dict[str, Watermark] = {}
        self.current: dict[str, Watermark] = {}

    async def _load(self, aid: str) -> Watermark:
        if aid not in self.stored:
            mark = Watermark.from_json(await self.store.aget(f"watermark:{aid}"))
            self.stored[aid] = mark or Watermark(self.since)
        return self.current.setdefault(aid, self.stored[aid])

    async def _start(self) -> None:
        since = await self.store.aget("since")
        if parse_timestamp(since) is None:
            from airflow.providers.common.compat.sdk import timezone

            since = format_timestamp(self.initial_since or timezone.utcnow(), "since")
            await self.store.aset("since", since)
        self.since = str(since)
        log.info("Watching Dintero settlements of %s created since %s", self._who(), self.since)

    def _who(self) -> str:
        return f"{len(self.account_ids)} merchant(s)" if self.account_ids else f"partner {self.account_id}"

    async def open_stream(self) -> AsyncIterator[tuple[dict[str, Any], tuple[str, dict[str, Any]]]]:  # type: ignore[override]
        """Sweep forever; yield ``(event payload, (merchant, new watermark))`` per new batch."""
        await self._start()
        poller = SettlementPoller(
            DinteroAsyncHook(dintero_conn_id=self.dintero_conn_id),
            account_ids=self.account_ids,
            payment_providers=self.payment_providers,
            max_concurrency=self.max_concurrency,
        )
        async with hold_async_clients():
            while True:
                merchants = await self._sweep(poller)
                for aid, settlements in merchants:
                    fresh, mark = (await self._load(aid)).split(settlements)
                    if fresh:
                        self.current[aid] = mark
                        yield poll_extra(aid, fresh), (aid, mark.to_json())
                await asyncio.sleep(self.poll_interval)

    async def _sweep(self, poller: SettlementPoller) -> list[tuple[str, list[Settlement]]]:
        for aid in poller.account_ids or []:
            await self._load(aid)
        try:
            sweep = await poller.sweep(
                lambda aid: (self.current.get(aid) or Watermark(self.since)).created_at
            )
        except DinteroApiError as exc:
            log.warning(
                "Polling the settlements of %s failed; trying again in %s s: %s",
                self._who(),
                self.poll_interval,
                redact_text(exc),
            )
            return []
        return list(sweep.found.items())

    def get_advance_lane(self, broker_payload: Any) -> Hashable:
        """
        One lane per merchant: a merchant's watermarks are stored in order.

        :param broker_payload: ``(merchant, watermark)``.
        """
        return str(broker_payload[0])

    async def advance(self, batch: Sequence[AdvanceItem]) -> None:
        """
        Store the watermark of every merchant batch whose event was persisted; forget the
        others, so that the next sweep reports them again.

        :param batch: resolved events of one merchant, in order.
        """
        for item in batch:
            aid, mark = item.broker_payload
            if item.outcome.is_clean:
                await self.commit(aid, mark)
            else:
                self.rollback(aid)

    async def commit(self, aid: str, mark: dict[str, Any]) -> None:
        """
        Store ``aid``'s watermark (its event is safely recorded).

        :param aid: the merchant.
        :param mark: the watermark after the batch.
        """
        await self.store.aset(f"watermark:{aid}", mark)
        stored = Watermark.from_json(mark)
        if stored is not None:
            self.stored[aid] = stored

    def rollback(self, aid: str) -> None:
        """
        Forget what was reported for ``aid`` since its stored watermark (its event was not recorded).

        :param aid: the merchant.
        """
        log.warning("An event for merchant %s was not recorded; its settlements will be reported again", aid)
        self.current.pop(aid, None)


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
    :param since: where the very first start begins (ISO-8601; default: that start's time). Only
        read while the asset's state store has no ``since``.
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
    ) -> None:
        if not EVENT_TRIGGERS:
            raise RuntimeError(AIRFLOW_3_ONLY)
        super().__init__()
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
            await producer.commit(*broker_payload)
