"""
The payment-profile list pages with the shared pager (issue 13 item 5): a server repeating or
cycling its cursor, or paging without end, is stopped by the repeated-cursor guard and the page
cap, with an error naming the endpoint and the account.
"""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import parse_qs

import pytest

from airflow_provider_dintero.exceptions import DinteroApiError
from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from tests.reliability.hostile import HostileServer, Reply, Seen

from .conftest import STATS, hostile_connection

MID = "T11200001"
PROFILES = r"/v1/admin/session/profiles$"


def _full_page(kind: str) -> Any:
    counter = itertools.count(1)

    def respond(seen: Seen) -> Reply:
        current = (parse_qs(seen.query).get("starting_after") or [""])[0]
        last = {"repeat": "A", "cycle": {"": "A", "A": "B", "B": "A"}.get(current, "A")}.get(kind)
        last = last or f"p{next(counter)}"
        return Reply(json=[{"profile_id": f"{last}-{i}"} for i in range(99)] + [{"profile_id": last}])

    return respond


@pytest.mark.parametrize("kind", ["repeat", "cycle", "endless"])
def test_profile_list_stops_on_a_repeated_cursor_or_at_the_page_cap(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    conn = hostile_connection(hostile, max_pages=5, checkout_base_url=hostile.url)
    monkeypatch.setenv("AIRFLOW_CONN_DINTERO_DEFAULT", conn)
    hostile.route("GET", PROFILES, _full_page(kind))

    with pytest.raises(DinteroApiError) as err:
        DinteroPartnerHook().list_payment_profiles(MID)

    STATS["faults"] += 1
    message = str(err.value)
    assert MID in message and "/v1/admin/session/profiles" in message, message
    assert ("more than 5 pages" if kind == "endless" else "already returned") in message
    assert hostile.count("GET", PROFILES) <= 5


def test_a_server_that_does_not_page_is_read_once(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_DINTERO_DEFAULT", hostile_connection(hostile, checkout_base_url=hostile.url)
    )
    hostile.route("GET", PROFILES, Reply(json=[{"profile_id": f"p{i}"} for i in range(150)]))

    profiles = DinteroPartnerHook().list_payment_profiles(MID)

    assert len(profiles) == 150
    assert hostile.count("GET", PROFILES) == 1
