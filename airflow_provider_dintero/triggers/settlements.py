"""
Trigger that waits, in the triggerer, for new Dintero settlements of an account.

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
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_dintero.exceptions import DinteroApiError, DinteroInputError
from airflow_provider_dintero.hooks.dintero import DinteroAsyncHook
from airflow_provider_dintero.redaction import redact_text
from airflow_provider_dintero.transport import hold_async_clients
from airflow_provider_dintero.vocabulary import Settlement


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
    """

    def __init__(
        self,
        account_id: str,
        since: str,
        payment_providers: Sequence[str] | None = None,
        dintero_conn_id: str = DinteroAsyncHook.default_conn_name,
        poll_interval: float = 60.0,
    ) -> None:
        super().__init__()
        self.account_id = account_id
        self.since = since
        self.payment_providers = list(payment_providers) if payment_providers else None
        self.dintero_conn_id = dintero_conn_id
        self.poll_interval = float(poll_interval)

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
            },
        )

    def _hook(self) -> DinteroAsyncHook:
        return DinteroAsyncHook(dintero_conn_id=self.dintero_conn_id)

    async def _poll(self, hook: DinteroAsyncHook) -> list[Settlement]:
        return await hook.async_list_settlements(
            self.account_id,
            item_created_at_gte=self.since,
            payment_providers=self.payment_providers,
        )

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
        while True:
            polls += 1
            try:
                found = await self._poll(hook)
            except DinteroApiError as exc:
                message = access_error_message(self.account_id, exc) if exc.status in (403, 404) else str(exc)
                # the event is stored in the metadata DB and read by another process: no credential
                message = redact_text(message)
                yield TriggerEvent(
                    {
                        "status": "error",
                        "account_id": self.account_id,
                        "status_code": exc.status,
                        "message": message,
                    }
                )
                return
            except DinteroInputError as exc:
                yield TriggerEvent(
                    {
                        "status": "error",
                        "account_id": self.account_id,
                        "status_code": None,
                        "message": redact_text(exc),
                    }
                )
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
            self.log.info(
                "No settlements yet for account %s created since %s; checking again in %s s",
                self.account_id,
                self.since,
                self.poll_interval,
            )
            await asyncio.sleep(self.poll_interval)
