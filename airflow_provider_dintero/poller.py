"""
One poll loop for many merchants: the settlements sweep shared by the one-merchant trigger, the
partner-wide trigger, the sensor's poke mode and the event trigger.

A sweep lists the settlements recorded since a point in time for every merchant of a partner (or
a given list), at most ``max_concurrency`` merchants at a time, and reports per merchant what it
found. Every request goes through the hook's pipeline (retries, page cap, repeated-cursor check,
response caps) and through the process's one HTTP client for the running event loop.

Example::

    from airflow_provider_dintero.hooks.dintero import DinteroAsyncHook
    from airflow_provider_dintero.poller import SettlementPoller

    poller = SettlementPoller(DinteroAsyncHook("dintero_default"), account_ids=None, max_concurrency=16)
    sweep = await poller.sweep(lambda account_id: "2026-11-24T00:00:00.000000Z")
    for account_id, settlements in sweep.found.items():
        ...
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_dintero.exceptions import DinteroApiError, DinteroInputError
from airflow_provider_dintero.hooks.dintero import DinteroAsyncHook
from airflow_provider_dintero.redaction import redact_text
from airflow_provider_dintero.validation import validate_account_id
from airflow_provider_dintero.vocabulary import Settlement

log = logging.getLogger(__name__)

#: Merchants polled at the same time by default.
DEFAULT_MAX_CONCURRENCY = 16
#: The most merchants a sweep polls at the same time (a guard against a typo such as 16000).
MAX_CONCURRENCY = 256
#: The longest a sweep's own bookkeeping runs on the event loop before it yields (seconds).
SLICE = 0.005


def check_concurrency(value: Any, field: str = "max_concurrency") -> int:
    """
    Return ``value`` as a concurrency limit (1 to :data:`MAX_CONCURRENCY`); raise
    :class:`DinteroInputError` otherwise.

    :param value: the configured limit.
    :param field: the parameter name for the error message.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENCY:
        raise DinteroInputError(field, f"a whole number from 1 to {MAX_CONCURRENCY}", value)
    return value


def check_account_ids(value: Any, field: str = "account_ids") -> list[str] | None:
    """
    Return a list of distinct, valid account ids (``None`` stays ``None``: every merchant).

    :param value: ``None``, or a non-empty list of account ids.
    :param field: the parameter name for the error message.
    """
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise DinteroInputError(field, "a non-empty list of account ids", value)
    return list(dict.fromkeys(validate_account_id(v) for v in value))


async def poll_account(
    hook: DinteroAsyncHook,
    account_id: str,
    since: str,
    payment_providers: Sequence[str] | None,
    each: Callable[[Settlement], Any] | None = None,
    max_retries: int | None = None,
) -> list[Any]:
    """
    List one account's settlements recorded (``created_at``) on or after ``since``.

    :param hook: the async hook.
    :param account_id: the merchant (or the connection's own account).
    :param since: ISO-8601 timestamp.
    :param payment_providers: only these payout providers (API names); ``None`` for all.
    :param each: what to keep of each settlement as its page is decoded (``None``: all of it).
    :param max_retries: retries of each request (``None``: the connection's).
    """
    providers = list(payment_providers or []) or None
    return await hook.async_list_settlements(
        account_id, each=each, max_retries=max_retries, item_created_at_gte=since, payment_providers=providers
    )


def listing_keys(settlement: Settlement) -> dict[str, Any]:
    """
    What a sweep keeps of a listed settlement until its merchant's listing is reduced: ``id``,
    ``created_at`` and ``provider`` (a dict of strings, which the garbage collector does not
    track; the decoded page, with its nested attachments and amounts, is let go at once).

    :param settlement: a settlement as the list endpoint returns it.
    """
    return {
        "id": settlement.get("id"),
        "created_at": settlement.get("created_at"),
        "provider": settlement.get("provider"),
    }


#: Seconds one merchant's listing may take within a sweep by default (all its pages, retries
#: included); a merchant that takes longer is reported as failed for that sweep.
DEFAULT_MERCHANT_TIMEOUT = 60.0


@dataclass
class Sweep:
    """
    What one sweep found. Every merchant polled ends in exactly one of ``found``, ``skipped``,
    ``failed`` or neither (read, nothing new).

    :param found: per merchant with settlements, in the order polled, what the list returned
        (or what the sweep's ``reduce`` made of it).
    :param checked: how many merchants were polled.
    :param skipped: merchants the connection may not read (403/404), with the reason.
    :param failed: merchants whose listing failed or ran out of time, with the reason.
    :param errors: the error of each merchant in ``skipped`` or ``failed``.
    """

    found: dict[str, Any] = field(default_factory=dict)
    checked: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)

    @property
    def read(self) -> int:
        """How many merchants were read (found or nothing new)."""
        return self.checked - len(self.skipped) - len(self.failed)


def unreadable(exc: BaseException) -> bool:
    """
    True when ``exc`` says the connection may not read the merchant (403/404): a grant is
    missing, or the merchant is not the partner's.

    :param exc: a merchant's error.
    """
    return isinstance(exc, DinteroApiError) and exc.status in (403, 404)


class SettlementPoller:
    """
    Poll the settlements of many merchants with bounded concurrency, each merchant on its own:
    a merchant that fails or is slow (beyond ``merchant_timeout``) is reported in the sweep's
    ``failed`` (or ``skipped`` for 403/404) and delays no other merchant's result.

    :param hook: the async hook (its connection is the partner, or a merchant for its own account).
    :param account_ids: the merchants to poll; ``None`` polls every merchant of the connection's
        partner (listed again at each sweep, so new merchants join).
    :param payment_providers: only these payout providers (API names); ``None`` for all.
    :param max_concurrency: merchants polled at the same time (in a triggerer, all triggers of
        one event loop share at most ``transport.MAX_IN_FLIGHT`` requests in flight).
    :param merchant_timeout: seconds one merchant's listing may take (all pages and retries).
    :param each: what a sweep keeps of each listed settlement as its page is decoded, e.g.
        :func:`listing_keys` (``None``: the whole settlement).
    :param max_retries: retries of each of a merchant's requests within a sweep (``None``: the
        connection's ``max_retries``). A caller that retries a failing merchant at a later sweep
        anyway (the watcher) asks for fewer, so a failing merchant holds one of the sweep's
        workers for seconds, not the half minute of the connection's back-off.
    """

    def __init__(
        self,
        hook: DinteroAsyncHook,
        *,
        account_ids: Sequence[str] | None = None,
        payment_providers: Sequence[str] | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        merchant_timeout: float = DEFAULT_MERCHANT_TIMEOUT,
        each: Callable[[Settlement], Any] | None = None,
        max_retries: int | None = None,
    ) -> None:
        self.hook = hook
        self.each = each
        self.max_retries = max_retries
        self.account_ids = list(account_ids) if account_ids is not None else None
        self.payment_providers = list(payment_providers) if payment_providers else None
        self.max_concurrency = check_concurrency(max_concurrency)
        if isinstance(merchant_timeout, bool) or not isinstance(merchant_timeout, int | float):
            raise DinteroInputError("merchant_timeout", "a number of seconds above 0", merchant_timeout)
        if not merchant_timeout > 0:
            raise DinteroInputError("merchant_timeout", "a number of seconds above 0", merchant_timeout)
        self.merchant_timeout = float(merchant_timeout)

    async def merchants(self) -> list[str]:
        """The merchants to poll: the given list, or the partner's merchants as listed now."""
        if self.account_ids is not None:
            return list(self.account_ids)
        return listed_account_ids(await self.hook.async_list_merchants())

    async def sweep(
        self,
        since_for: Callable[[str], str],
        merchants: Sequence[str] | None = None,
        reduce: Callable[[str, list[Settlement]], Any] | None = None,
    ) -> Sweep:
        """
        Poll every merchant once. Raises only when the merchants cannot be listed; each
        merchant's error or timeout is recorded in the result, by id, with its reason.

        :param since_for: the ``since`` timestamp of a merchant (the same for all, or a
            per-merchant watermark).
        :param merchants: the merchants to poll (default: :meth:`merchants`).
        :param reduce: applied to each merchant's listing as soon as it arrives; ``found`` keeps
            what it returns (when truthy) instead of the listing, so a sweep of 10,000 merchants
            never holds every listed settlement at once.
        """
        todo = list(merchants) if merchants is not None else await self.merchants()
        outcomes: dict[str, Any] = {}
        queue = iter(todo)

        async def worker() -> None:
            # a fixed pool of workers, not one task per merchant: no burst of 10,000 tasks
            for aid in queue:
                try:
                    # a timeout scope, not wait_for: no task per merchant, and the listing is
                    # reduced in the step that received it
                    async with asyncio.timeout(self.merchant_timeout):
                        listed = await poll_account(
                            self.hook,
                            aid,
                            since_for(aid),
                            self.payment_providers,
                            self.each,
                            self.max_retries,
                        )
                    outcomes[aid] = reduce(aid, listed) if reduce is not None else listed
                    del listed
                except TimeoutError:
                    outcomes[aid] = TimeoutError(
                        f"no complete answer within {self.merchant_timeout:g} s (merchant_timeout)"
                    )
                except (DinteroApiError, DinteroInputError, OSError, ValueError) as exc:
                    outcomes[aid] = exc

        await asyncio.gather(*(worker() for _ in range(min(self.max_concurrency, len(todo)))))
        result = Sweep(checked=len(todo))
        slice_start = time.perf_counter()
        for aid in todo:
            if time.perf_counter() - slice_start > SLICE:
                await asyncio.sleep(0)  # 10,000 merchants: let the other triggers of this loop run
                slice_start = time.perf_counter()
            outcome = outcomes.pop(aid)
            if isinstance(outcome, BaseException):
                if isinstance(outcome, DinteroApiError):
                    outcome.account_id = aid  # the merchant whose poll failed, even on a token error
                result.errors[aid] = outcome
                if unreadable(outcome):
                    result.skipped[aid] = redact_text(outcome)
                else:
                    result.failed[aid] = redact_text(outcome)
            elif outcome:
                result.found[aid] = outcome
        return result


def sweep_error(sweep: Sweep, *, partner_wide: bool) -> BaseException | None:
    """
    The error that ends a wait when a sweep found nothing: on an explicit list, the first
    merchant the connection may not read (a configuration error); otherwise, when no merchant
    at all could be read, the first error. ``None``: keep waiting (failing merchants are
    reported, and retried at the next sweep).

    :param sweep: the sweep.
    :param partner_wide: whether the merchants are the partner's list (403/404 then mean a
        merchant not (yet) granted, not a typo).
    """
    if not partner_wide and sweep.skipped:
        return sweep.errors[next(iter(sweep.skipped))]
    if sweep.checked and sweep.read == 0 and sweep.failed:
        return sweep.errors[next(iter(sweep.failed))]
    return None


@dataclass
class _Failing:
    failures: int
    next_try: float
    reason: str


class MerchantHealth:
    """
    Which merchants are failing, when to try each again (exponential back-off), and one log line
    per merchant per change of state (failing, failing for another reason, recovered), whatever
    the number of sweeps.

    :param base: seconds before the first retry of a failing merchant.
    :param cap: the longest wait between two tries.
    :param logger: where state changes are logged.
    """

    def __init__(self, base: float, cap: float = 1800.0, logger: Any = log) -> None:
        self.base = max(float(base), 0.0)
        self.cap = max(float(cap), self.base)
        self.log = logger
        self.failing: dict[str, _Failing] = {}

    def due_among(self, merchants: Sequence[str], now: float) -> list[str]:
        """
        The merchants of ``merchants`` to poll in a sweep starting at ``now`` (monotonic), in order.

        :param merchants: the merchants.
        :param now: ``time.monotonic()``.
        """
        if not self.failing:
            return list(merchants)
        return [aid for aid in merchants if self.due(aid, now)]

    def due(self, account_id: str, now: float) -> bool:
        """
        True when ``account_id`` should be polled in a sweep starting at ``now`` (monotonic).

        :param account_id: the merchant.
        :param now: ``time.monotonic()``.
        """
        state = self.failing.get(account_id)
        return state is None or now >= state.next_try

    def update(self, polled: Iterable[str], sweep: Sweep, now: float) -> None:
        """
        Record a sweep's outcome for the merchants it polled.

        Linear in the failing merchants, not in those polled (a set of them is built once).

        :param polled: the merchants the sweep polled.
        :param sweep: its result.
        :param now: ``time.monotonic()`` at its end.
        """
        if self.failing:
            polled_now = polled if isinstance(polled, set | frozenset | dict) else set(polled)
            recovered = [
                aid
                for aid in self.failing
                if aid in polled_now and aid not in sweep.skipped and aid not in sweep.failed
            ]
            for aid in recovered:
                was = self.failing.pop(aid)
                self.log.info(
                    "Merchant %s: settlements readable again after %s failure(s)", aid, was.failures
                )
        for aid in [*sweep.skipped, *sweep.failed]:
            reason = sweep.skipped[aid] if aid in sweep.skipped else sweep.failed[aid]
            before = self.failing.get(aid)
            failures = before.failures + 1 if before else 1
            wait = min(self.base * 2 ** min(failures - 1, 30), self.cap)
            self.failing[aid] = _Failing(failures, now + wait, reason)
            kind = "may not be read" if aid in sweep.skipped else "failed"
            if before is None or before.reason != reason:
                self.log.warning(
                    "Merchant %s: its settlements %s (%s); trying again with back-off (next in %.0f s, "
                    "logged again only when this changes)",
                    aid,
                    kind,
                    reason,
                    wait,
                )


def settlement_summary(settlement: Mapping[str, Any]) -> dict[str, Any]:
    """
    Return the small, JSON-serialisable part of a settlement that sensors push to XCom.

    :param settlement: a settlement as the list endpoint returns it.
    """
    return {
        "id": settlement.get("id"),
        "provider": settlement.get("provider"),
        "created_at": settlement.get("created_at"),
        "settled_at": settlement.get("settled_at"),
        "attachments": [
            {
                "id": a.get("id"),
                "created_by": a.get("created_by"),
                "extension": a.get("extension"),
                "content_type": a.get("content_type"),
            }
            for a in settlement.get("attachments") or []
        ],
    }


def access_error_message(account_id: str, exc: DinteroApiError) -> str:
    """
    Explain a 403 or 404 on the settlements list: which account and which grant is missing.

    :param account_id: the account whose settlements were listed.
    :param exc: the error raised by the hook.
    """
    if exc.status == 403:
        return (
            f"Dintero refused to list the settlements of account {account_id} (403): the API client "
            f"needs a grant on audience .../v1/accounts/{account_id} with the read:settlements "
            f"(or admin:settlements) scope, and a partner connection needs the merchant's access "
            f"through the exchange token. Dintero said: {exc}"
        )
    return (
        f"Account {account_id} was not found or is not visible to this connection (404): check the "
        f"account id and that the merchant is connected to the partner, with a grant carrying "
        f"read:settlements. Dintero said: {exc}"
    )


def listed_ids(account_id: str, settlements: Iterable[Any]) -> list[str]:
    """
    The ids of a merchant's listed settlements, in order and once each: what a partner-wide
    sweep keeps of a listing (its ``reduce``), so that neither the sweep nor its event holds
    whole settlements. An entry without an id is left out (the list comes from the wire; the
    copy confirms every id with Dintero before writing).

    :param account_id: the merchant (unused: the signature of a sweep's ``reduce``).
    :param settlements: the listing, settlement mappings (or ids already).
    """
    ids: dict[str, None] = {}
    for s in settlements:
        sid = s.get("id") if isinstance(s, Mapping) else s
        if isinstance(sid, str) and sid:
            ids.setdefault(sid, None)
    return list(ids)


#: The shape of :func:`sweep_payload`'s event. Version 1 (no ``version`` key) carried a
#: settlement summary per settlement (``merchants[].settlements``); version 2 carries ids.
PAYLOAD_VERSION = 2


def sweep_payload(sweep: Sweep, since: str) -> dict[str, Any]:
    """
    The success event (and the sensor's raw result) of a sweep that found settlements: ids and
    counts, never whole settlements, so that it stays small in the trigger table and in XCom
    whatever the number of merchants (about 50 bytes per merchant plus its ids)::

        {"status": "success", "version": 2, "since", "checked": <merchants polled>,
         "found": <settlements found>, "merchants": [{"account_id", "settlement_ids": [...]}],
         "skipped": [account ids], "unreadable": {account id: reason}, "failed": {...}}

    :param sweep: the sweep (``found`` holds listings or ids, see :func:`listed_ids`).
    :param since: the ``since`` the sweep used.
    """
    merchants = [
        {"account_id": aid, "settlement_ids": listed_ids(aid, found)} for aid, found in sweep.found.items()
    ]
    return {
        "status": "success",
        "version": PAYLOAD_VERSION,
        "since": since,
        "checked": sweep.checked,
        "found": sum(len(m["settlement_ids"]) for m in merchants),
        "merchants": merchants,
        "skipped": sorted(sweep.skipped),
        "unreadable": dict(sweep.skipped),
        "failed": dict(sweep.failed),
    }


def payload_settlement_ids(merchant: Mapping[str, Any]) -> list[str]:
    """
    The settlement ids of one merchant of a :func:`sweep_payload` event, in either shape:
    ``settlement_ids`` (version 2), or the ids of its ``settlements`` summaries (version 1: an
    event stored by a trigger that fired before an upgrade).

    :param merchant: one item of the event's ``merchants``.
    """
    if "settlement_ids" in merchant:
        raw = merchant.get("settlement_ids") or []
    else:
        raw = merchant.get("settlements") or []
    return listed_ids(str(merchant.get("account_id")), raw if isinstance(raw, list) else [])


def listed_account_ids(accounts: Iterable[Any]) -> list[str]:
    """
    The account ids of listed merchants, in order and once each; an entry without a valid
    account id is skipped with a warning (the list comes from the wire).

    :param accounts: the merchants as Dintero listed them.
    """
    ids: dict[str, None] = {}  # ordered and O(1) membership: linear in the merchants
    for account in accounts:
        raw = account.get("account_id") if isinstance(account, dict) else None
        try:
            aid = validate_account_id(raw)
        except DinteroInputError:
            log.warning("Skipping a merchant listed with an unreadable account id %r", str(raw)[:40])
            continue
        ids.setdefault(aid, None)
    return list(ids)


def sweep_blocking(
    poller: SettlementPoller,
    since_for: Callable[[str], str],
    reduce: Callable[[str, list[Settlement]], Any] | None = None,
) -> Sweep:
    """
    Run one sweep to the end from synchronous code (a sensor's poke): the same sweep as in the
    triggerer, on an event loop of its own whose HTTP client is closed afterwards.

    :param poller: the poller.
    :param since_for: the ``since`` timestamp of a merchant.
    :param reduce: what to keep of each merchant's listing (see :meth:`SettlementPoller.sweep`).
    """
    from airflow_provider_dintero.transport import hold_async_clients

    async def run() -> Sweep:
        async with hold_async_clients():
            return await poller.sweep(since_for, reduce=reduce)

    return asyncio.run(run())
