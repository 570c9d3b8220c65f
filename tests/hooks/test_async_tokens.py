"""
The async hook gets its tokens through the same token flow as the sync one, over httpx on the
event loop (never ``requests`` in a worker thread): one token per account however many triggers
of a loop ask at once, and a rejected token re-minted once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import requests

from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from airflow_provider_dintero.triggers.settlements import SettlementTrigger

TOKEN, EXCHANGE = r"/auth/token$", r"/auth/exchange_token$"


async def _first_event(trigger: SettlementTrigger) -> Any:
    async for event in trigger.run():
        return event.payload
    return None


def _poll(conn_id: str, *account_ids: str) -> list[Any]:
    """The first event of one SettlementTrigger per account id, all on one event loop."""

    async def main() -> list[Any]:
        triggers = [
            SettlementTrigger(account_id=aid, since="2020-01-01T00:00:00Z", dintero_conn_id=conn_id)
            for aid in account_ids
        ]
        return await asyncio.gather(*(_first_event(t) for t in triggers))

    return asyncio.run(main())


@pytest.fixture
def no_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail any request sent with ``requests`` (the sync transport), recording its URL."""
    sent: list[str] = []

    def refuse(self: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(url)
        raise AssertionError(f"requests used for {method} {url}")

    monkeypatch.setattr(requests.Session, "request", refuse)
    return sent


def test_a_trigger_mints_its_tokens_over_httpx(
    dintero_emulator: Any, dintero_connection: str, no_requests: list[str]
) -> None:
    mid = dintero_emulator.merchant_ids[0]
    dintero_emulator.add_settlement(mid, provider="vipps")

    [event] = _poll(dintero_connection, mid)

    assert event["status"] == "success", event
    assert no_requests == []
    assert (dintero_emulator.count("POST", TOKEN), dintero_emulator.count("POST", EXCHANGE)) == (2, 1)


def test_triggers_of_one_loop_mint_one_token_per_account(
    dintero_emulator: Any, dintero_connection: str, no_requests: list[str]
) -> None:
    mids = dintero_emulator.merchant_ids[:3]
    for mid in mids:
        dintero_emulator.add_settlement(mid, provider="vipps")
    dintero_emulator.inject_fault(path_regex=TOKEN, delay=0.2, count=10)  # keep the mints in flight

    events = _poll(dintero_connection, *(mids * 4))  # four triggers per merchant, at once

    assert [e["status"] for e in events] == ["success"] * 12
    # one partner token, then one exchange and one merchant token per merchant
    assert dintero_emulator.count("POST", TOKEN) == 1 + len(mids)
    assert dintero_emulator.count("POST", EXCHANGE) == len(mids)


def test_a_rejected_token_is_reminted_once_on_the_event_loop(
    dintero_emulator: Any, dintero_connection: str
) -> None:
    mid = dintero_emulator.merchant_ids[0]
    dintero_emulator.add_settlement(mid, provider="vipps")
    DinteroPartnerHook(dintero_connection).get_token(mid)  # cached, then revoked by Dintero
    dintero_emulator.expire_tokens()
    dintero_emulator.clear_requests()

    [event] = _poll(dintero_connection, mid)

    assert event["status"] == "success", event
    assert dintero_emulator.count("GET", r"/settlements$", status=401) == 1
    # the partner's token was revoked too: the exchange is refused once, then made with a new one
    assert dintero_emulator.count("POST", EXCHANGE, status=401) == 1
    assert dintero_emulator.count("POST", EXCHANGE, status=200) == 1
