"""Assertion helpers for the provisioning tests: request-log counts, task results, rendered fields."""

from __future__ import annotations

import json
import re
import time
from typing import Any

#: Requests that change state on Dintero (token endpoints excluded: minting is not a write).
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
_TOKEN_PATH = re.compile(r"/auth/(token|exchange_token)$")


def settle(emulator: Any) -> Any:
    """
    Wait until the emulator's request log stops growing, and return the emulator.

    The emulator appends a request to its log just after it has sent the answer, so the last
    request of a test may land a moment after the client has read the response.
    """
    deadline = time.monotonic() + 2.0
    last = -1
    while time.monotonic() < deadline:
        count = len(emulator.requests)
        if count == last:
            break
        last = count
        time.sleep(0.05)
    return emulator


def clear_log(emulator: Any) -> None:
    """Empty the emulator's request log once every request made so far is in it."""
    settle(emulator).clear_requests()


def writes(emulator: Any) -> list[tuple[str, str]]:
    """The state-changing requests the emulator has seen, as ``(method, path)``."""
    settle(emulator)
    return [
        (r.method, r.path)
        for r in emulator.requests
        if r.method in WRITE_METHODS and not _TOKEN_PATH.search(r.path)
    ]


def api_requests(emulator: Any) -> list[tuple[str, str]]:
    """Every logged request except token minting."""
    settle(emulator)
    return [(r.method, r.path) for r in emulator.requests if not _TOKEN_PATH.search(r.path)]


def task_result(dagrun: Any, task_id: str) -> Any:
    """The XCom return value of one task of a DagRun."""
    ti = next(t for t in dagrun.get_task_instances() if t.task_id == task_id)
    return ti.xcom_pull(task_ids=task_id)


def task_state(dagrun: Any, task_id: str) -> str:
    """The final state of one task of a DagRun."""
    ti = next(t for t in dagrun.get_task_instances() if t.task_id == task_id)
    return str(ti.state.value if hasattr(ti.state, "value") else ti.state)


def rendered_fields(dagrun: Any, task_id: str) -> str:
    """The rendered template fields Airflow stored for a task, as one JSON string."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    ti = next(t for t in dagrun.get_task_instances() if t.task_id == task_id)
    with create_session() as session:
        row = (
            session.query(RenderedTaskInstanceFields)
            .filter_by(dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id)
            .one()
        )
        return json.dumps(row.rendered_fields, default=str)


def read_variable(key: str) -> str | None:
    """Read an Airflow Variable from the metadata DB (outside any task, on 2.11 and 3.x)."""
    from airflow.models import Variable

    return Variable.get(key, None)


def delete_variable(key: str) -> None:
    """Remove an Airflow Variable from the metadata DB, if present (the DB lives for the session)."""
    from airflow.models import Variable

    Variable.delete(key)
