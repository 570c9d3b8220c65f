"""
The settlement event: the asset-event extra that the webhook receiver
(:mod:`airflow_provider_dintero.webhooks.delivery`), the watcher
(:mod:`airflow_provider_dintero.triggers.settlement_events`) and the copy
(:mod:`airflow_provider_dintero.transfers.settlements_to_s3`) write and read. This module is the
one place that builds it, parses it and knows its versions.

Version 1::

    {"version": 1, "account_id": "P11200001", "settlement_ids": ["..."], "providers": ["..."],
     "source": "webhook" | "poll", "event_delivery": "<id>" (webhook only),
     "shape": "unrecognised" (only when a verified webhook body could not be read)}

An event whose ``settlement_ids`` is empty is a **wake-up** for its account: the consumer copies
what is new for that account since its last collection instead of copying by id. Extras without
``version`` (written before it existed) are read as version 1; an extra of a later version is
read as a wake-up for its account (its ids are not trusted to mean what version 1 means).

Ids and provider names only, never a credential. The watcher's events reach the asset through
the triggerer, which stores the payload under ``payload`` beside ``from_trigger``:
:func:`parse_extra` reads both forms.

Example::

    from airflow_provider_dintero.events import parse_extra, poll_extra

    extra = poll_extra("P11200001", settlements)
    event = parse_extra(extra)
    assert event is not None and event.settlement_ids
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from airflow_provider_dintero.exceptions import DinteroInputError
from airflow_provider_dintero.validation import validate_account_id

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The version this module writes.
VERSION = 1
#: ``shape`` of a verified webhook whose body could not be read: a wake-up.
UNRECOGNISED = "unrecognised"

Source = Literal["webhook", "poll"]


@dataclass(frozen=True)
class SettlementEvent:
    """
    A parsed settlement event.

    :param account_id: the account the event is about (validated).
    :param settlement_ids: the settlements it names; empty for a wake-up.
    :param providers: their payout providers, when known.
    :param source: ``"webhook"`` or ``"poll"`` (``"unknown"`` when missing).
    :param event_delivery: the webhook delivery id, when a webhook wrote it.
    :param shape: ``"unrecognised"`` for a webhook body that could not be read, else ``None``.
    :param version: the extra's version (1 when absent).
    """

    account_id: str
    settlement_ids: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    source: str = "unknown"
    event_delivery: str | None = None
    shape: str | None = None
    version: int = VERSION

    @property
    def is_wake_up(self) -> bool:
        """True when the event names no settlement: copy what is new for the account."""
        return not self.settlement_ids


def _distinct(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def build_extra(
    account_id: str,
    settlement_ids: Sequence[str],
    providers: Sequence[str] = (),
    *,
    source: Source,
    event_delivery: str | None = None,
    shape: str | None = None,
) -> dict[str, Any]:
    """
    The extra of one settlement event (version :data:`VERSION`).

    :param account_id: the account the event is about.
    :param settlement_ids: the settlements it names (empty: a wake-up).
    :param providers: their payout providers.
    :param source: ``"webhook"`` or ``"poll"``.
    :param event_delivery: the webhook delivery id (webhook only).
    :param shape: ``"unrecognised"`` when a verified webhook body could not be read.
    """
    if source not in ("webhook", "poll"):
        raise DinteroInputError("source", '"webhook" or "poll"', source)
    extra: dict[str, Any] = {
        "version": VERSION,
        "account_id": validate_account_id(account_id),
        "settlement_ids": _distinct(str(s) for s in settlement_ids),
        "providers": _distinct(str(p) for p in providers),
        "source": source,
    }
    if event_delivery is not None:
        extra["event_delivery"] = event_delivery
    if shape is not None:
        extra["shape"] = shape
    return extra


def poll_extra(account_id: str, settlements: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """
    The watcher's event for one merchant batch of new settlements (``source: "poll"``).

    :param account_id: the merchant.
    :param settlements: its new settlements, as the list returned them (each with an ``id``).
    """
    ids: list[str] = []
    providers: list[str] = []
    for s in settlements:
        ids.append(str(s["id"]))
        provider = s.get("provider")
        if isinstance(provider, str) and provider:
            providers.append(provider)
    return build_extra(account_id, ids, providers, source="poll")


def wake_up_extra(account_id: str, *, source: Source, event_delivery: str | None = None) -> dict[str, Any]:
    """
    A wake-up for ``account_id``: an event that names no settlement (a verified webhook whose
    body could not be read).

    :param account_id: the account to collect.
    :param source: ``"webhook"`` or ``"poll"``.
    :param event_delivery: the webhook delivery id.
    """
    return build_extra(account_id, [], source=source, event_delivery=event_delivery, shape=UNRECOGNISED)


def _strings(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise DinteroInputError(f"extra.{field}", "a list of non-empty strings", value)
    return tuple(_distinct(value))


def raw_extra(event: Any) -> Mapping[str, Any] | None:
    """
    The settlement part of an asset event's extra, whichever wrote it (the receiver's extra
    itself, or a trigger's payload that Airflow stores under ``payload`` beside
    ``from_trigger``); ``None`` when it is not a settlement event.

    :param event: an asset event (anything with an ``extra``), or the extra mapping itself.
    """
    extra = event if isinstance(event, Mapping) else getattr(event, "extra", None)
    if isinstance(extra, Mapping) and extra.get("from_trigger") and isinstance(extra.get("payload"), Mapping):
        extra = extra["payload"]
    if not isinstance(extra, Mapping) or "settlement_ids" not in extra or "account_id" not in extra:
        return None
    return extra


def parse_extra(event: Any) -> SettlementEvent | None:
    """
    Read a settlement event; ``None`` when the extra is not one (another asset event).

    Raises :class:`DinteroInputError` naming the field when the extra claims to be a settlement
    event but its account id or id list is malformed.

    :param event: an asset event (anything with an ``extra``), or the extra mapping itself.
    """
    extra = raw_extra(event)
    if extra is None:
        return None
    account_id = validate_account_id(extra.get("account_id"), "extra.account_id")
    version = extra.get("version", VERSION)
    source = extra.get("source")
    source = source if source in ("webhook", "poll") else "unknown"
    delivery = extra.get("event_delivery")
    delivery = delivery if isinstance(delivery, str) else None
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DinteroInputError("extra.version", "a whole number from 1", version)
    if version > VERSION:
        log.warning(
            "A settlement event of version %s for account %s (this provider reads version %s): "
            "treating it as a wake-up for that account",
            version,
            account_id,
            VERSION,
        )
        return SettlementEvent(account_id, (), (), source, delivery, UNRECOGNISED, version)
    shape = extra.get("shape")
    return SettlementEvent(
        account_id=account_id,
        settlement_ids=_strings(extra.get("settlement_ids"), "settlement_ids"),
        providers=_strings(extra.get("providers"), "providers"),
        source=source,
        event_delivery=delivery,
        shape=shape if isinstance(shape, str) else None,
        version=version,
    )


def triggering_events(context: Mapping[str, Any]) -> Any:
    """
    The run's triggering asset events from a task context: ``triggering_asset_events``
    (Airflow 3) or ``triggering_dataset_events`` (2.11); an empty mapping when neither.

    :param context: the task context.
    """
    by_asset = context.get("triggering_asset_events")
    if by_asset is None:
        by_asset = context.get("triggering_dataset_events")
    return by_asset or {}


def iter_events(triggering_asset_events: Any) -> Iterable[Any]:
    """
    Every event of a run's triggering asset events, asset by asset.

    :param triggering_asset_events: the context's ``triggering_asset_events`` (Airflow 3) or
        ``triggering_dataset_events`` (2.11), or ``None``; or already a list of events (what
        :func:`run_events` returns), yielded as they are.
    """
    if isinstance(triggering_asset_events, (list, tuple)):
        yield from triggering_asset_events
        return
    by_asset = triggering_asset_events or {}
    for asset in list(by_asset):  # keys first: Airflow 3's accessor resolves them lazily
        yield from by_asset[asset] or []


def _events_recorded_after(asset: Any, after: Any, dag_id: str | None = None) -> list[Any]:
    """
    The events recorded on ``asset`` from ``after`` on that no run of ``dag_id`` consumed (a
    later run acts on its own events), read through the Task SDK; an empty list outside an
    Airflow 3 task (2.11, a test calling the operator directly).
    """
    try:
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.context import InletEventsAccessor
    except ImportError:  # Airflow 2.11: no asset watcher writes these events there
        return []
    name, uri = getattr(asset, "name", None), getattr(asset, "uri", None)
    if getattr(task_runner, "SUPERVISOR_COMMS", None) is None or not (name and uri):
        return []  # not inside a task, or an asset alias (events reach the run by their asset)
    stamp = after.isoformat() if hasattr(after, "isoformat") else str(after)
    events = list(InletEventsAccessor(asset_name=name, asset_uri=uri).after(stamp))
    return [event for event in events if not _consumed_by(event, dag_id)]


def _consumed_by(event: Any, dag_id: str | None) -> bool:
    """Whether a run of ``dag_id`` consumed ``event`` (Airflow names the runs it created)."""
    runs = getattr(event, "created_dagruns", None) or []
    return dag_id is not None and any(getattr(run, "dag_id", None) == dag_id for run in runs)


def run_events(context: Mapping[str, Any]) -> list[Any]:
    """
    The settlement events a run scheduled on assets must act on: its triggering asset events,
    plus those recorded on the same assets after the run was queued (its ``run_after``).

    Airflow's scheduler gives a run the events stamped up to the moment its queue entry was
    created (``AssetDagRunQueue.created_at``), and an event that arrives while that entry
    waits for the scheduler does not create another: it belongs to no run until a later event
    queues the next one. For the last settlement of a burst that may be never. Reading the
    assets' events from ``run_after`` on closes that gap: every event is then acted on by the
    run that was queued before it or the run it queued itself. Events a later run of the same
    DAG consumed are left to that run, so a burst of runs does not act on every later event
    each; an event whose run is being created may be acted on by both (the copy skips what is
    already in the destination, so nothing is written twice).

    :param context: the task context.
    """
    by_asset = triggering_events(context)
    events = list(iter_events(by_asset))
    dag_run = context.get("dag_run")
    run_after = getattr(dag_run, "run_after", None)
    if not events or run_after is None:
        return events
    dag_id = getattr(dag_run, "dag_id", None)
    for asset in list(by_asset):
        late = _events_recorded_after(asset, run_after, dag_id)
        if late:
            log.info(
                "%s event(s) recorded on asset %s after this run was queued: acting on them too",
                len(late),
                getattr(asset, "name", asset),
            )
        events.extend(late)
    return events


#: Accounts per mapped copy in :func:`event_account_batches` (as ``SettlementSensor``'s batches).
EVENT_BATCH_SIZE = 100


def event_account_batches(events: Any, size: int = EVENT_BATCH_SIZE) -> list[list[str]]:
    """
    The accounts :func:`event_accounts` finds, in lists of at most ``size``: what a copy maps over
    (``SettlementsToS3Operator.partial(..., use_triggering_events=True).expand(merchants=...)``)
    so that a run whose events name 10,000 accounts makes 100 mapped copies, not 10,000, and
    stays under Airflow's ``[core] max_map_length`` (1,024).

    :param events: as :func:`event_accounts` takes them.
    :param size: accounts per batch (from 1).
    """
    return batches(event_accounts(events), size)


def batches(items: Sequence[T], size: int = EVENT_BATCH_SIZE) -> list[list[T]]:
    """
    ``items`` in order, in lists of at most ``size``: what a copy maps over.

    :param items: e.g. account ids.
    :param size: items per batch (from 1).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise DinteroInputError("size", "a whole number from 1", size)
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


@dataclass
class EventSelection:
    """
    What a run's settlement events ask of one account.

    :param ids: the settlement ids they name (in order, distinct).
    :param wake_up: whether one of them names none (a wake-up: copy what is new).
    """

    ids: list[str] = field(default_factory=list)
    wake_up: bool = False

    def to_json(self) -> dict[str, Any]:
        """The form a batch carries to a copy: ``{"settlement_ids": [...], "wake_up": bool}``."""
        return {"settlement_ids": list(self.ids), "wake_up": self.wake_up}


def event_selections(events: Any) -> dict[str, EventSelection] | None:
    """
    What the events ask of each account they name, in order of first appearance; ``None`` when
    none is a settlement event (a manual run). Raises :class:`DinteroInputError` for an event
    whose id list is malformed; an event naming no valid account is left out (and logged).

    :param events: as :func:`event_accounts` takes them.
    """
    selections: dict[str, EventSelection] | None = None
    for event in iter_events(events):
        if raw_extra(event) is None:
            continue
        selections = {} if selections is None else selections
        try:
            parsed = parse_extra(event)
        except DinteroInputError as exc:
            if exc.field != "extra.account_id":
                raise DinteroInputError(
                    "triggering_asset_events", "events whose extra has settlement_ids as a list of ids", exc
                ) from None
            log.warning("Ignoring an asset event naming no valid account (%s)", exc)
            continue
        assert parsed is not None
        selection = selections.setdefault(parsed.account_id, EventSelection())
        selection.wake_up = selection.wake_up or parsed.is_wake_up
        selection.ids.extend(parsed.settlement_ids)
    for selection in (selections or {}).values():
        selection.ids = list(dict.fromkeys(selection.ids))
    return selections


def event_selection_batches(events: Any, size: int = EVENT_BATCH_SIZE) -> list[dict[str, dict[str, Any]]]:
    """
    What the events ask of each account, in batches of at most ``size`` accounts: each batch
    ``{account id: {"settlement_ids": [...], "wake_up": bool}}``, what a copy maps over
    (``SettlementsToS3Operator.partial(...).expand(merchants=...)``). The run's events are read
    once, by the task calling this, not once per mapped copy: a run whose events name 10,000
    accounts reads them once, not 100 times.

    :param events: as :func:`event_accounts` takes them (e.g. what :func:`run_events` returns).
    :param size: accounts per batch (from 1).
    """
    items = list((event_selections(events) or {}).items())
    return [{aid: sel.to_json() for aid, sel in batch} for batch in batches(items, size)]


def event_accounts(triggering_asset_events: Any) -> list[str]:
    """
    The accounts named by a run's triggering settlement events, in order of first appearance:
    what the copy maps over (``SettlementsToS3Operator.partial(..., use_triggering_events=True)
    .expand(account_id=...)``). Events naming no valid account are left out (and logged).

    :param triggering_asset_events: the context's ``triggering_asset_events`` (Airflow 3) or
        ``triggering_dataset_events`` (2.11), or the list :func:`run_events` returns.
    """
    accounts: dict[str, None] = {}
    for event in iter_events(triggering_asset_events):
        extra = raw_extra(event)
        if extra is None:
            continue
        try:
            accounts.setdefault(validate_account_id(extra.get("account_id")), None)
        except DinteroInputError:
            log.warning(
                "Ignoring an asset event naming no valid account: %r", str(extra.get("account_id"))[:40]
            )
    return list(accounts)
