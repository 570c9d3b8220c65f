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
    hook: DinteroAsyncHook, account_id: str, since: str, payment_providers: Sequence[str] | None
) -> list[Settlement]:
    """
    List one account's settlements recorded (``created_at``) on or after ``since``.

    :param hook: the async hook.
    :param account_id: the merchant (or the connection's own account).
    :param since: ISO-8601 timestamp.
    :param payment_providers: only these payout providers (API names); ``None`` for all.
    """
    return await hook.async_list_settlements(
        account_id, item_created_at_gte=since, payment_providers=list(payment_providers or []) or None
    )


@dataclass
class Sweep:
    """
    What one sweep found.

    :param found: per merchant with settlements, in the order polled, what the list returned.
    :param checked: how many merchants were polled.
    :param skipped: merchants of a partner-wide sweep the connection may not read (403/404),
        with the reason; an explicit list fails instead.
    """

    found: dict[str, list[Settlement]] = field(default_factory=dict)
    checked: int = 0
    skipped: dict[str, str] = field(default_factory=dict)


class SettlementPoller:
    """
    Poll the settlements of many merchants with bounded concurrency.

    :param hook: the async hook (its connection is the partner, or a merchant for its own account).
    :param account_ids: the merchants to poll; ``None`` polls every merchant of the connection's
        partner (listed again at each sweep, so new merchants join).
    :param payment_providers: only these payout providers (API names); ``None`` for all.
    :param max_concurrency: merchants polled at the same time (in a triggerer, all triggers of
        one event loop share at most ``transport.MAX_IN_FLIGHT`` requests in flight).
    """

    def __init__(
        self,
        hook: DinteroAsyncHook,
        *,
        account_ids: Sequence[str] | None = None,
        payment_providers: Sequence[str] | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        self.hook = hook
        self.account_ids = list(account_ids) if account_ids is not None else None
        self.payment_providers = list(payment_providers) if payment_providers else None
        self.max_concurrency = check_concurrency(max_concurrency)

    async def merchants(self) -> list[str]:
        """The merchants to poll: the given list, or the partner's merchants as listed now."""
        if self.account_ids is not None:
            return list(self.account_ids)
        return listed_account_ids(await self.hook.async_list_merchants())

    async def sweep(self, since_for: Callable[[str], str]) -> Sweep:
        """
        Poll every merchant once; raise the first error (in merchant order) other than a
        partner-wide sweep's 403/404, after every poll has ended.

        :param since_for: the ``since`` timestamp of a merchant (the same for all, or a
            per-merchant watermark).
        """
        merchants = await self.merchants()
        limit = asyncio.Semaphore(self.max_concurrency)

        async def one(aid: str) -> list[Settlement]:
            async with limit:
                return await poll_account(self.hook, aid, since_for(aid), self.payment_providers)

        outcomes = await asyncio.gather(*(one(aid) for aid in merchants), return_exceptions=True)
        result = Sweep(checked=len(merchants))
        partner_wide = self.account_ids is None
        for aid, outcome in zip(merchants, outcomes, strict=True):
            if isinstance(outcome, DinteroApiError) and outcome.status in (403, 404) and partner_wide:
                result.skipped[aid] = redact_text(outcome)
                log.warning(
                    "Skipping merchant %s: the connection may not read its settlements (%s)",
                    aid,
                    outcome.status,
                )
                continue
            if isinstance(outcome, DinteroApiError):
                outcome.account_id = aid  # the merchant whose poll failed, even on a token error
                raise outcome
            if isinstance(outcome, BaseException):
                raise outcome
            if outcome:
                result.found[aid] = outcome
        return result


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


def sweep_payload(sweep: Sweep, since: str) -> dict[str, Any]:
    """
    The success event (and the sensor's raw result) of a sweep that found settlements.

    :param sweep: the sweep.
    :param since: the ``since`` the sweep used.
    """
    return {
        "status": "success",
        "since": since,
        "checked": sweep.checked,
        "merchants": [
            {"account_id": aid, "settlements": [settlement_summary(s) for s in found]}
            for aid, found in sweep.found.items()
        ],
        "skipped": sorted(sweep.skipped),
    }


def listed_account_ids(accounts: Iterable[Any]) -> list[str]:
    """
    The account ids of listed merchants, in order and once each; an entry without a valid
    account id is skipped with a warning (the list comes from the wire).

    :param accounts: the merchants as Dintero listed them.
    """
    ids: list[str] = []
    for account in accounts:
        raw = account.get("account_id") if isinstance(account, dict) else None
        try:
            aid = validate_account_id(raw)
        except DinteroInputError:
            log.warning("Skipping a merchant listed with an unreadable account id %r", str(raw)[:40])
            continue
        if aid not in ids:
            ids.append(aid)
    return ids


def sweep_blocking(poller: SettlementPoller, since_for: Callable[[str], str]) -> Sweep:
    """
    Run one sweep to the end from synchronous code (a sensor's poke): the same sweep as in the
    triggerer, on an event loop of its own whose HTTP client is closed afterwards.

    :param poller: the poller.
    :param since_for: the ``since`` timestamp of a merchant.
    """
    from airflow_provider_dintero.transport import hold_async_clients

    async def run() -> Sweep:
        async with hold_async_clients():
            return await poller.sweep(since_for)

    return asyncio.run(run())
