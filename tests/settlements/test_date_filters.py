"""
The settlements date filters go out as whole days and the exact window is applied to what comes
back (issue 13 item 1): the hook's list (sync and async), the sensor, the trigger and the
transfer find the same settlements in every ``strict_dates`` mode of the emulator (the ``emu``
fixture runs each test in all of them).
"""

from __future__ import annotations

import asyncio
import re
from datetime import date, datetime, timezone
from typing import Any

import pytest

from airflow_provider_dintero.hooks.dintero import DinteroAsyncHook, DinteroPartnerHook
from airflow_provider_dintero.poller import listing_keys
from airflow_provider_dintero.settlements import (
    SettlementWindow,
    filter_date,
    parse_timestamp,
    settlement_query,
)

from .conftest import LIST_PATH, settled_count

DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def day_of_settlements(emu: Any) -> tuple[str, list[str]]:
    """Four settlements of one merchant on 2026-11-05 (settled and recorded at 06, 10, 14, 18 h)."""
    mid = emu.merchant_ids[0]
    ids = []
    for hour in (6, 10, 14, 18):
        at = datetime(2026, 11, 5, hour, tzinfo=timezone.utc)
        ids.append(emu.add_settlement(mid, provider="vipps", created_at=at, settled_at=at)["id"])
    return mid, ids


#: Keyword filters -> which of the four settlements (by hour index) are inside.
WINDOWS = [
    ({"created_at_gte": "2026-11-05T09:00:00Z", "created_at_lte": "2026-11-05T15:00:00Z"}, [1, 2]),
    ({"created_at_gte": "2026-11-05T11:00:00+01:00", "created_at_lte": "2026-11-05T14:00:00Z"}, [1, 2]),
    ({"created_at_gte": datetime(2026, 11, 5, 14, tzinfo=timezone.utc)}, [2, 3]),
    ({"created_at_gte": "2026-11-05", "created_at_lte": "2026-11-05"}, [0, 1, 2, 3]),
    ({"created_at_gte": date(2026, 11, 5), "created_at_lte": "2026-11-05T06:00:00Z"}, [0]),
    (
        {"item_created_at_gte": "2026-11-05T10:00:00.000001Z", "item_created_at_lte": "2026-11-05T18:00:00Z"},
        [2, 3],
    ),
    ({"item_created_at_gte": "2026-11-05T06:30:00Z", "item_created_at_lte": "2026-11-05T10:00:00Z"}, [1]),
]


@pytest.mark.parametrize(("filters", "inside"), WINDOWS)
def test_list_settlements_applies_the_exact_window(
    emu: Any, day_of_settlements: tuple[str, list[str]], filters: dict[str, Any], inside: list[int]
) -> None:
    mid, ids = day_of_settlements

    found = [s["id"] for s in DinteroPartnerHook().list_settlements(mid, **filters)]

    assert sorted(found) == sorted(ids[i] for i in inside)
    (request,) = [r for r in emu.requests if r.method == "GET" and r.path.endswith("/settlements")]
    sent = [value for name, value in request.query if "created_at" in name]
    assert sent and all(DATE.fullmatch(value) for value in sent), sent


@pytest.mark.parametrize(("filters", "inside"), WINDOWS)
def test_async_list_settlements_applies_the_same_window(
    emu: Any, day_of_settlements: tuple[str, list[str]], filters: dict[str, Any], inside: list[int]
) -> None:
    mid, ids = day_of_settlements

    found = asyncio.run(DinteroAsyncHook().async_list_settlements(mid, **filters))

    assert sorted(s["id"] for s in found) == sorted(ids[i] for i in inside)
    assert settled_count(emu, 1, "GET", LIST_PATH) == 1


def test_async_list_settlements_keeps_what_each_returns_of_the_window(
    emu: Any, day_of_settlements: tuple[str, list[str]]
) -> None:
    mid, ids = day_of_settlements

    found = asyncio.run(
        DinteroAsyncHook().async_list_settlements(
            mid,
            each=listing_keys,
            item_created_at_gte="2026-11-05T10:00:00.000001Z",
            item_created_at_lte="2026-11-05T18:00:00Z",
        )
    )

    assert sorted(s["id"] for s in found) == sorted(ids[2:])  # the window, as without each
    assert all(set(s) == {"id", "created_at", "provider"} and s["provider"] == "vipps" for s in found)


#: Dintero's timestamps and other ISO-8601 forms: the fast path reads them as pendulum does.
TIMESTAMPS = [
    "2026-11-05T10:00:00.000000Z",
    "2026-11-05T10:00:00Z",
    "2026-11-05T10:00:00.123Z",
    "2026-11-05T11:00:00+01:00",
    "2026-11-05 10:00",
    "20261105T100000Z",
    "2026-11-05",
    "2026-11-05T10:00:00",
]


@pytest.mark.parametrize("text", TIMESTAMPS)
def test_parse_timestamp_reads_iso_forms_as_pendulum_does(text: str) -> None:
    import pendulum

    parsed = parse_timestamp(text)

    assert parsed is not None and parsed.tzinfo is not None
    assert parsed == pendulum.parse(text, tz="UTC")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-05T23:30:00-02:00", "2026-11-06"),
        ("2026-11-05T00:30:00+02:00", "2026-11-04"),
        (datetime(2026, 11, 5, 23, 59, 59, 999999, tzinfo=timezone.utc), "2026-11-05"),
        (date(2026, 11, 5), "2026-11-05"),
        ("2026-11-05", "2026-11-05"),
        ("0999-01-02T00:00:00Z", "0999-01-02"),
    ],
)
def test_filter_date_is_the_utc_day_of_the_instant(value: Any, expected: str) -> None:
    assert filter_date(value, "created_at_gte") == expected
    assert settlement_query(created_at_lte=value)["created_at.lte"] == expected


def test_window_keeps_a_settlement_it_cannot_judge() -> None:
    window = SettlementWindow.of(created_at_gte="2026-11-05T12:00:00Z")

    assert window.contains({"id": "a"})
    assert window.contains({"id": "b", "settled_at": "not a date"})
    assert not window.contains({"id": "c", "settled_at": "2026-11-05T11:59:59.999999Z"})
    assert window.contains({"id": "d", "settled_at": "2026-11-05T12:00:00Z"})
