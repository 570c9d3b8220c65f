"""Fixtures shared by the settlement sensor, trigger and transfer tests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_dintero.emulator.pytest_plugin import connection_json

ATTACHMENT_PATH = r"/settlements/[^/]+/attachments/"
LIST_PATH = r"/settlements$"


@pytest.fixture
def emu(dintero_emulator: Any, dintero_connection: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The reset emulator behind ``dintero_default``, with fast retries so error tests stay quick."""
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
