"""Fixtures shared by the settlement sensor, trigger and transfer tests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_dintero.emulator.pytest_plugin import connection_json

ATTACHMENT_PATH = r"/settlements/[^/]+/attachments/"
LIST_PATH = r"/settlements$"


#: The emulator's readings of the settlements date filters: ``off`` takes dates and timestamps,
#: ``spec`` only dates in ``created_at.*`` (the 2024 spec's ``format: date``), ``all`` only dates
#: in ``item_created_at.*`` too. Each accepts a superset of what the next one accepts.
STRICT_DATES = ("off", "spec", "all")

#: Modules whose tests build the filters (sensor, trigger, filters, providers): run in every mode.
#: The others (copies, example DAGs, events) run in the strictest mode only: a request it accepts
#: the laxer modes accept too, so the other two runs would repeat the same requests and answers.
EVERY_MODE = frozenset({"test_date_filters", "test_sensor", "test_provider_names"})


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test using ``emu`` in every ``strict_dates`` mode or the strictest (see above)."""
    if "emu" not in metafunc.fixturenames:
        return
    every = metafunc.module.__name__.rpartition(".")[2] in EVERY_MODE
    modes = STRICT_DATES if every else STRICT_DATES[-1:]
    metafunc.parametrize("emu", modes, indirect=True, ids=[f"strict_dates={mode}" for mode in modes])


@pytest.fixture
def emu(
    request: pytest.FixtureRequest,
    dintero_emulator: Any,
    dintero_connection: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """
    The reset emulator behind ``dintero_default``, with fast retries so error tests stay quick,
    in the ``strict_dates`` mode the test is parametrized with (see :func:`pytest_generate_tests`):
    the same tests pass whether Dintero takes dates or timestamps.
    """
    dintero_emulator.settings.strict_dates = request.param
    conn = json.loads(connection_json(dintero_emulator))
    conn["extra"].update({"max_retries": 1, "retry_backoff": 0.01, "retry_max_wait": 0.05})
    monkeypatch.setenv("AIRFLOW_CONN_DINTERO_DEFAULT", json.dumps(conn))
    return dintero_emulator


def settled_count(
    emu: Any, expected: int, method: str | None = None, path_regex: str | None = None, **kw: Any
) -> int:
    """
    The emulator's request count once it reaches ``expected`` (or after 5 s).

    The emulator logs a request after it has sent the response, so a client can finish before
    its last request is logged; this waits for the log instead of racing it.
    """
    import time

    deadline = time.monotonic() + 5
    while True:
        count = int(emu.count(method, path_regex, **kw))
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.01)
