"""
Everything is bounded: every pager (sync and the trigger's) stops on a repeated or cycling cursor
and at the page cap, naming the endpoint and the account; a JSON answer that trickles fails at
the request deadline; a download that trickles fails by the minimum-throughput rule.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import pytest

from airflow_provider_dintero.exceptions import DinteroApiError, DinteroStreamError
from airflow_provider_dintero.hooks.dintero import DinteroAsyncHook, DinteroPartnerHook
from tests.reliability.hostile import HostileServer, Reply, Seen, trickle

from .conftest import STATS, hostile_connection

MID = "T11200001"


def _cursor_of(seen: Seen) -> str:
    query = parse_qs(seen.query)
    return (query.get("starting_after") or query.get("starting_after_id") or [""])[0]


def _pages(kind: str, page: Callable[[str], Any]) -> Callable[[Seen], Reply]:
    """Answer each page with the next cursor: the same one, a cycle A-B-A, or always a new one."""
    counter = itertools.count(1)

    def respond(seen: Seen) -> Reply:
        current = _cursor_of(seen)
        nxt = {"repeat": "A", "cycle": {"": "A", "A": "B", "B": "A"}.get(current, "A")}.get(kind)
        return Reply(json=page(nxt or f"c{next(counter)}"))

    return respond


def _settlement_page(cursor: str) -> Any:
    item = {"id": cursor, "created_at": "2026-11-24T10:00:00Z"}
    return {"items": [item], "last_evaluated_key": item}


#: pager -> (path, page builder, call(hook) draining it)
PAGERS: dict[str, tuple[str, Callable[[str], Any], Callable[[], Any]]] = {
    "merchants": (
        r"/T11200000/management/accounts$",
        lambda c: [{"account_id": MID, "paging_token": c}],
        lambda: list(DinteroPartnerHook().list_merchants(limit=1)),
    ),
    "settlements": (
        r"/settlements$",
        _settlement_page,
        lambda: list(DinteroPartnerHook().list_settlements(MID)),
    ),
    "settlements-async": (
        r"/settlements$",
        _settlement_page,
        lambda: asyncio.run(DinteroAsyncHook().async_list_settlements(MID)),
    ),
    "report-metadata": (
        r"/reports/metadata$",
        lambda c: {"reports": [{"id": c}], "starting_after": c},
        lambda: list(DinteroPartnerHook().list_report_metadata(MID)),
    ),
    "settlement-report-configurations": (
        r"/settlements/reports/configuration$",
        lambda c: {"items": [{"id": c}], "starting_after": c},
        lambda: list(DinteroPartnerHook().list_settlement_report_configurations(MID)),
    ),
}


@pytest.mark.parametrize("kind", ["repeat", "cycle", "endless"])
@pytest.mark.parametrize("pager", list(PAGERS))
def test_every_pager_stops_on_a_repeated_cursor_or_at_the_page_cap(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch, pager: str, kind: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_DINTERO_DEFAULT", hostile_connection(hostile, max_pages=5))
    path, page, drain = PAGERS[pager]
    hostile.route("GET", path, _pages(kind, page))

    with pytest.raises(DinteroApiError) as err:
        drain()

    STATS["faults"] += 1
    message = str(err.value)
    account = "T11200000" if pager == "merchants" else MID
    assert account in message and "/v1/accounts/" in message, message
    assert ("more than 5 pages" if kind == "endless" else "already returned") in message
    assert hostile.count("GET", path) <= 5


@pytest.mark.parametrize(
    "deadline", [{"request_deadline": 1.5}, {}], ids=["request-deadline", "attempt-2x-timeout"]
)
@pytest.mark.parametrize("transport", ["sync", "async"])
def test_a_trickling_json_answer_fails_at_the_deadline(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch, transport: str, deadline: dict[str, Any]
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_DINTERO_DEFAULT", hostile_connection(hostile, timeout=1, **deadline))
    body = json.dumps({"items": [{"id": f"s{i}"} for i in range(20)]}).encode()
    hostile.route(
        "GET", r"/settlements$", Reply(body=trickle(body), chunk_delay=0.1, content_length=len(body))
    )

    with pytest.raises(DinteroApiError) as err:
        if transport == "sync":
            list(DinteroPartnerHook().list_settlements(MID))
        else:
            asyncio.run(DinteroAsyncHook().async_list_settlements(MID))

    assert "deadline" in str(err.value) and MID in str(err.value)


def test_a_trickling_download_fails_by_the_minimum_throughput_rule(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_DINTERO_DEFAULT", hostile_connection(hostile, timeout=1, min_download_rate=1000)
    )
    body = b"x" * 200
    hostile.route("GET", r"/attachments/a1$", Reply(body=trickle(body), chunk_delay=0.02, content_length=200))

    download = DinteroPartnerHook().stream_settlement_attachment(MID, "s1", "a1")
    with pytest.raises(DinteroStreamError) as err, download as stream:
        stream.read()

    assert "slower than 1000 bytes/s" in str(err.value) and MID in str(err.value)


def test_a_slow_but_steady_download_is_not_cut_by_the_request_deadline(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_DINTERO_DEFAULT",
        hostile_connection(hostile, timeout=1, request_deadline=0.5, min_download_rate=10),
    )
    body = b"y" * 4000
    chunks = [body[i : i + 400] for i in range(0, 4000, 400)]
    hostile.route("GET", r"/attachments/a1$", Reply(body=iter(chunks), chunk_delay=0.1, content_length=4000))

    with DinteroPartnerHook().stream_settlement_attachment(MID, "s1", "a1") as stream:
        assert stream.read() == body
