"""
Triggers that wait, in the triggerer, for new Dintero settlements: of one account
(:class:`SettlementTrigger`) or of many merchants of a partner in one poll loop
(:class:`PartnerSettlementTrigger`). Both poll through
:mod:`airflow_provider_dintero.poller`.

Example::

    from airflow_provider_dintero.triggers.settlements import SettlementTrigger

    trigger = SettlementTrigger(
        account_id="T11200001",
        since="2026-11-24T00:00:00.000000Z",
        payment_providers=["vipps"],
        dintero_conn_id="dintero_default",
        poll_interval=300,
    )
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_dintero.exceptions import DinteroApiError, DinteroInputError
from airflow_provider_dintero.hooks.dintero import DinteroAsyncHook
from airflow_provider_dintero.poller import (
    DEFAULT_MAX_CONCURRENCY,
    MerchantHealth,
    SettlementPoller,
    access_error_message,
    listed_ids,
    listing_keys,
    poll_account,
    settlement_summary,
    sweep_error,
    sweep_payload,
)
from airflow_provider_dintero.redaction import redact_text
from airflow_provider_dintero.transport import hold_async_clients
from airflow_provider_dintero.vocabulary import Settlement

#: A waiting trigger logs its first poll and then every this-many polls, not each one.
QUIET_POLLS = 10


def error_payload(exc: DinteroApiError | DinteroInputError, account_id: str | None) -> dict[str, Any]:
    """
    The ``{"status": "error", ...}`` event of a failed poll: the account, the HTTP status and a
    message with every credential-shaped value removed (the event is stored in the metadata DB).

    :param exc: the error raised by the hook.
    :param account_id: the account being polled (``exc.account_id`` when ``None``).
    """
    aid = account_id or getattr(exc, "account_id", None)
    status = exc.status if isinstance(exc, DinteroApiError) else None
    if isinstance(exc, DinteroApiError) and status in (403, 404) and aid:
        message = access_error_message(str(aid), exc)
    else:
        message = str(exc)
    return {"status": "error", "account_id": aid, "status_code": status, "message": redact_text(message)}


class SettlementTrigger(BaseTrigger):
    """
    Poll Dintero until settlements recorded on or after ``since`` exist for an account.

    Each poll sends one settlements list request per page, filtered on the settlement's
    ``created_at`` (``item_created_at.gte``), never on the settlement date. The trigger fires
    once: ``{"status": "success", "account_id": ..., "since": ..., "settlements": [summary, ...]}``
    when something is found, or ``{"status": "error", "account_id": ..., "status_code": <int|None>,
    "message": ...}`` when Dintero answers with an error (after the hook's retries).

    :param account_id: the merchant (or the connection's own account).
    :param since: ISO-8601 timestamp; settlements created on or after it count.
    :param payment_providers: only these payout providers (API names, e.g. ``["vipps"]``).
    :param dintero_conn_id: the Dintero connection id.
    :param poll_interval: seconds between two polls.
    :param first_poll_after: seconds to wait before the first poll. The sensor passes its poll
        interval: it checked just before deferring, and an event fired within a second of the
        deferral can race Airflow's own bookkeeping of it (the scheduler then fails the task).
    """

    def __init__(
        self,
        account_id: str,
        since: str,
        payment_providers: Sequence[str] | None = None,
        dintero_conn_id: str = DinteroAsyncHook.default_conn_name,
        poll_interval: float = 60.0,
        first_poll_after: float = 0.0,
    ) -> None:
        super().__init__()
        self.account_id = account_id
        self.since = since
        self.payment_providers = list(payment_providers) if payment_providers else None
        self.dintero_conn_id = dintero_conn_id
        self.poll_interval = float(poll_interval)
        self.first_poll_after = float(first_poll_after)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the importable class path and the keyword arguments to rebuild this trigger."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "account_id": self.account_id,
                "since": self.since,
                "payment_providers": self.payment_providers,
                "dintero_conn_id": self.dintero_conn_id,
                "poll_interval": self.poll_interval,
                "first_poll_after": self.first_poll_after,
            },
        )

    def _hook(self) -> DinteroAsyncHook:
        return DinteroAsyncHook(dintero_conn_id=self.dintero_conn_id)

    async def _poll(self, hook: DinteroAsyncHook) -> list[Settlement]:
        return await poll_account(hook, self.account_id, self.since, self.payment_providers)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """
        Poll every ``poll_interval`` seconds; yield one event and stop.

        The polls share the process's HTTP client for this event loop; the last trigger to stop
        closes it.
        """
        async with hold_async_clients():
            async for event in self._events():
                yield event

    async def _events(self) -> AsyncIterator[TriggerEvent]:
        hook = self._hook()
        polls = 0
        await asyncio.sleep(self.first_poll_after)
        while True:
            polls += 1
            try:
                found = await self._poll(hook)
            except (DinteroApiError, DinteroInputError) as exc:
                # the event is stored in the metadata DB and read by another process: no credential
                yield TriggerEvent(error_payload(exc, self.account_id))
                return
            if found:
                self.log.info(
                    "Found %s settlement(s) for account %s created since %s (poll %s)",
                    len(found),
                    self.account_id,
                    self.since,
                    polls,
                )
                yield TriggerEvent(
                    {
                        "status": "success",
                        "account_id": self.account_id,
                        "since": self.since,
                        "settlements": [settlement_summary(s) for s in found],
                    }
                )
                return
            if polls % QUIET_POLLS == 1:  # the first and every QUIET_POLLS-th: a thousand
                # waiting triggers must not flood the triggerer's log forwarding
                self.log.info(
                    "No settlements yet for account %s created since %s (poll %s); checking every %s s",
                    self.account_id,
                    self.since,
                    polls,
                    self.poll_interval,
                )
            await asyncio.sleep(self.poll_interval)


class PartnerSettlementTrigger(BaseTrigger):
    """
    Poll many merchants in one loop until at least one has settlements recorded on or after
    ``since``; fire once with every merchant found in that sweep.

    Each sweep polls the merchants (``account_ids``, or every merchant of the connection's
    partner, listed again at each sweep) with at most ``max_concurrency`` at a time, one
    settlements list request per page each. Tokens: the partner's, then one exchange and one
    merchant token per merchant, each reused for its lifetime. A partner-wide sweep skips (and
    logs) a merchant the connection may not read (403/404); an explicit list fails on it.
    Each merchant's listing has its own deadline (``merchant_timeout``): a merchant that fails
    or is slow is reported by id with its reason and delays no other merchant's result; one
    log line per merchant per change of state.

    Events: ``{"status": "success", "version": 2, "since", "checked": <merchants polled>,
    "found": <settlements found>, "merchants": [{"account_id", "settlement_ids": [...]}, ...],
    "skipped": [account ids], "unreadable": {account id: reason}, "failed": {account id:
    reason}}`` as soon as one merchant has settlements (ids only: the event is stored in the
    trigger table and stays small whatever the number of merchants; each listing is reduced to
    its ids as it arrives, so the sweep never holds every merchant's settlements), or
    ``{"status": "error", "account_id", "status_code", "message"}`` when the merchants cannot
    be listed, when an explicit list names a merchant the connection may not read, or when no
    merchant at all could be read.

    :param since: ISO-8601 timestamp; settlements created on or after it count.
    :param account_ids: the merchants; ``None`` for every merchant of the partner.
    :param payment_providers: only these payout providers (API names).
    :param dintero_conn_id: the Dintero connection id (a partner connection for ``None``).
    :param poll_interval: seconds between two sweeps.
    :param max_concurrency: merchants polled at the same time (in a triggerer, all triggers of
        one event loop share at most ``transport.MAX_IN_FLIGHT`` requests in flight).
    :param first_poll_after: seconds to wait before the first poll. The sensor passes its poll
        interval: it checked just before deferring, and an event fired within a second of the
        deferral can race Airflow's own bookkeeping of it (the scheduler then fails the task).
    """

    def __init__(
        self,
        since: str,
        account_ids: Sequence[str] | None = None,
        payment_providers: Sequence[str] | None = None,
        dintero_conn_id: str = DinteroAsyncHook.default_conn_name,
        poll_interval: float = 60.0,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        first_poll_after: float = 0.0,
    ) -> None:
        super().__init__()
        self.since = since
        self.account_ids = list(account_ids) if account_ids is not None else None
        self.payment_providers = list(payment_providers) if payment_providers else None
        self.dintero_conn_id = dintero_conn_id
        self.poll_interval = float(poll_interval)
        self.max_concurrency = max_concurrency
        self.first_poll_after = float(first_poll_after)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the importable class path and the keyword arguments to rebuild this trigger."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "since": self.since,
                "account_ids": self.account_ids,
                "payment_providers": self.payment_providers,
                "dintero_conn_id": self.dintero_conn_id,
                "poll_interval": self.poll_interval,
                "max_concurrency": self.max_concurrency,
                "first_poll_after": self.first_poll_after,
            },
        )

    def poller(self) -> SettlementPoller:
        """The poller of this trigger's merchants."""
        return SettlementPoller(
            DinteroAsyncHook(dintero_conn_id=self.dintero_conn_id),
            account_ids=self.account_ids,
            payment_providers=self.payment_providers,
            max_concurrency=self.max_concurrency,
            each=listing_keys,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Sweep every ``poll_interval`` seconds; yield one event and stop."""
        async with hold_async_clients():
            async for event in self._events():
                yield event

    async def _events(self) -> AsyncIterator[TriggerEvent]:
        sweeps = 0
        try:
            poller = self.poller()
        except DinteroInputError as exc:
            yield TriggerEvent(error_payload(exc, None))
            return
        await asyncio.sleep(self.first_poll_after)
        health = MerchantHealth(self.poll_interval, logger=self.log)
        while True:
            sweeps += 1
            try:
                merchants = await poller.merchants()
                sweep = await poller.sweep(lambda _aid: self.since, merchants, listed_ids)
            except (DinteroApiError, DinteroInputError) as exc:
                yield TriggerEvent(error_payload(exc, None))
                return
            health.update(merchants, sweep, time.monotonic())
            if sweep.found:
                self.log.info(
                    "Found new settlements for %s of %s merchant(s) created since %s (sweep %s); "
                    "%s could not be read, %s failed",
                    len(sweep.found),
                    sweep.checked,
                    self.since,
                    sweeps,
                    len(sweep.skipped),
                    len(sweep.failed),
                )
                yield TriggerEvent(sweep_payload(sweep, self.since))
                return
            error = sweep_error(sweep, partner_wide=self.account_ids is None)
            if error is not None:
                yield TriggerEvent(error_payload(error, getattr(error, "account_id", None)))  # type: ignore[arg-type]
                return
            self.log.info(
                "No settlements yet for any of %s merchant(s) read created since %s; sweeping again in %s s",
                sweep.read,
                self.since,
                self.poll_interval,
            )
            await asyncio.sleep(self.poll_interval)
