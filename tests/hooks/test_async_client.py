"""
One ``httpx.AsyncClient`` per process and event loop: every trigger of a loop shares it (its SSL
context built once per process), and it is closed when the last trigger stops.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from airflow_provider_dintero import transport
from airflow_provider_dintero.triggers.settlements import SettlementTrigger


async def _first_event(trigger: SettlementTrigger) -> Any:
    """The trigger's first event's payload."""
    async for event in trigger.run():
        return event.payload
    return None


def test_triggers_of_one_loop_share_one_client_closed_when_the_last_stops(
    dintero_emulator: Any, dintero_connection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    mids = dintero_emulator.merchant_ids[:3]
    for mid in mids:
        dintero_emulator.add_settlement(mid, provider="vipps")
    built: list[httpx.AsyncClient] = []

    class CountingClient(httpx.AsyncClient):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            built.append(self)

    monkeypatch.setattr(httpx, "AsyncClient", CountingClient)

    async def main() -> list[Any]:
        triggers = [
            SettlementTrigger(account_id=m, since="2020-01-01T00:00:00Z", dintero_conn_id=dintero_connection)
            for m in mids
        ]
        return await asyncio.gather(*(_first_event(t) for t in triggers))

    events = asyncio.run(main())

    assert [e["status"] for e in events] == ["success"] * 3
    assert len(built) == 1  # one client for the three triggers' polls
    assert built[0].is_closed  # closed when the last trigger stopped
    assert dintero_emulator.count("GET", r"/settlements$") >= 3


def test_the_ssl_context_is_built_once_per_process() -> None:
    transport.ssl_context.cache_clear()

    async def two_loops_worth() -> None:
        async with transport.hold_async_clients():
            transport.shared_async_client(True)

    asyncio.run(two_loops_worth())
    asyncio.run(two_loops_worth())

    assert transport.ssl_context.cache_info().misses == 1


def test_a_loop_keeps_at_most_max_in_flight_requests_however_many_triggers_wait(
    dintero_emulator: Any, dintero_connection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    mid = dintero_emulator.merchant_ids[0]
    dintero_emulator.add_settlement(mid, provider="vipps")
    triggers = 3 * transport.MAX_IN_FLIGHT
    dintero_emulator.inject_fault(path_regex=r"/settlements$", delay=0.2, count=triggers)
    seen = {"now": 0, "peak": 0}

    class CountingClient(httpx.AsyncClient):
        async def send(self, *args: Any, **kwargs: Any) -> httpx.Response:
            seen["now"] += 1
            seen["peak"] = max(seen["peak"], seen["now"])
            try:
                return await super().send(*args, **kwargs)
            finally:
                seen["now"] -= 1

    monkeypatch.setattr(httpx, "AsyncClient", CountingClient)

    async def main() -> list[Any]:
        waiting = [
            SettlementTrigger(
                account_id=mid, since="2020-01-01T00:00:00Z", dintero_conn_id=dintero_connection
            )
            for _ in range(triggers)
        ]
        return await asyncio.gather(*(_first_event(t) for t in waiting))

    events = asyncio.run(main())

    assert [e["status"] for e in events] == ["success"] * triggers
    assert seen["peak"] == transport.MAX_IN_FLIGHT  # the others waited their turn (not 100 at once)
