"""DAG runs: the sensor in poke and deferrable modes, and the example DAG end to end."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_dintero.sensors.settlements import SettlementSensor
from airflow_provider_dintero.triggers.settlements import SettlementTrigger

from ..conftest import AIRFLOW_V3
from .conftest import LIST_PATH, settled_count

LOGICAL_DATE = datetime(2026, 11, 24, tzinfo=timezone.utc)


def _ti(dag_run: Any, task_id: str, map_index: int = -1) -> Any:
    return next(t for t in dag_run.get_task_instances() if t.task_id == task_id and t.map_index == map_index)


@pytest.fixture
def add_when_polled(emu: Any) -> Iterator[Callable[..., dict[str, Any]]]:
    """Add a settlement from a thread once the account's settlements were listed ``polls`` times."""
    threads: list[threading.Thread] = []

    def start(account_id: str, created_at: datetime, polls: int) -> dict[str, Any]:
        added: dict[str, Any] = {}

        def run() -> None:
            deadline = time.monotonic() + 60
            while emu.count("GET", LIST_PATH) < polls and time.monotonic() < deadline:
                time.sleep(0.02)
            added.update(emu.add_settlement(account_id, provider="vipps", created_at=created_at))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return added

    yield start
    for thread in threads:
        thread.join(timeout=5)


@pytest.mark.parametrize(
    ("mode", "deferrable"),
    [("poke", False), ("reschedule", False), ("poke", True)],
    ids=["poke", "reschedule", "deferrable"],
)
def test_sensor_picks_up_a_settlement_added_while_waiting(
    emu: Any,
    run_dag: Callable[..., Any],
    add_when_polled: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    deferrable: bool,
) -> None:
    from airflow.providers.common.compat.sdk import DAG

    trigger_polls: list[str] = []
    original_poll = SettlementTrigger._poll

    async def counting_poll(self: SettlementTrigger, hook: Any) -> Any:
        trigger_polls.append(self.since)
        return await original_poll(self, hook)

    monkeypatch.setattr(SettlementTrigger, "_poll", counting_poll)

    mid = emu.merchant_ids[0]
    since = datetime(2027, 1, 1, tzinfo=timezone.utc)
    with DAG(
        dag_id=f"test_settlement_sensor_{'deferrable' if deferrable else mode}",
        schedule=None,
        start_date=datetime(2026, 11, 1, tzinfo=timezone.utc),
        catchup=False,
    ) as dag:
        SettlementSensor(
            task_id="wait",
            account_id=mid,
            since=since.isoformat(),
            deferrable=deferrable,
            mode=mode,
            poll_interval=0.2,
            timeout=120,
        )
    # Wait for two empty checks: the first check (both modes) and a second one, which in
    # deferrable mode can only come from the trigger, since the task checks once then defers.
    added = add_when_polled(mid, since + timedelta(hours=2), polls=2)

    dag_run = run_dag(dag, logical_date=LOGICAL_DATE)

    ti = _ti(dag_run, "wait")
    assert ti.state == "success"
    value = ti.xcom_pull(task_ids="wait")
    assert value["settlement_ids"] == [added["id"]]
    polls = settled_count(emu, len(trigger_polls) + 1 if deferrable else 3, "GET", LIST_PATH)
    assert polls >= 3
    if deferrable:  # one check in the task, every later poll in the trigger
        assert len(trigger_polls) == polls - 1
        assert trigger_polls[0] == since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    else:
        assert trigger_polls == []


def test_example_dag_parses(load_example_dag: Callable[..., Any]) -> None:
    dag = load_example_dag("settlements_to_s3.py")

    assert dag.dag_id == "dintero_settlements_to_s3"
    assert set(dag.task_ids) == {
        "list_merchants",
        "merchant.wait_for_settlements",
        "merchant.copy_to_s3",
        "report",
    }
    assert dag.get_task("report").trigger_rule == "all_done"
    assert not dag.catchup


def test_example_dag_end_to_end_isolates_a_failing_merchant(
    emu: Any,
    s3_bucket: str,
    s3_client: Any,
    run_dag: Callable[..., Any],
    load_example_dag: Callable[..., Any],
) -> None:
    good = emu.merchant_ids[:2]
    foreign = emu.foreign_merchant_id  # not this partner's merchant: 403
    created = LOGICAL_DATE - timedelta(minutes=30)  # inside the run's window on 3.x and 2.11
    added = {mid: emu.add_settlement(mid, provider="payex", created_at=created) for mid in good}
    dag = load_example_dag("settlements_to_s3.py")

    dag_run = run_dag(
        dag,
        conf={"merchant_ids": [*good, foreign], "s3_bucket": s3_bucket, "deferrable": True},
        logical_date=LOGICAL_DATE,
    )

    assert _ti(dag_run, "merchant.wait_for_settlements", 2).state == "failed"
    assert _ti(dag_run, "merchant.copy_to_s3", 2).state == "upstream_failed"
    for index in (0, 1):
        assert _ti(dag_run, "merchant.copy_to_s3", index).state == "success"
    report_ti = _ti(dag_run, "report")
    assert report_ti.state == "success"
    summary = report_ti.xcom_pull(task_ids="report")
    attachments = {mid: len(added[mid]["attachments"]) for mid in good}
    assert summary == {
        good[0]: {"status": "copied", "settlements": 1, "written": attachments[good[0]] + 1, "skipped": 0},
        good[1]: {"status": "copied", "settlements": 1, "written": attachments[good[1]] + 1, "skipped": 0},
        foreign: {"status": "failed", "step": "wait_for_settlements", "state": "failed"},
    }
    if AIRFLOW_V3:  # 2.11's dag.test() does not register datasets, so it records no events
        extras = _asset_event_extras("s3://dintero-settlements/dintero/settlements", dag_run.run_id)
        assert sorted(e["account_id"] for e in extras) == sorted(good)
        assert all(e["written"] == attachments[e["account_id"]] + 1 for e in extras)
    keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket).get("Contents", [])}
    for mid in good:
        s = added[mid]
        prefix = f"dintero/settlements/account={mid}/provider=payex/settled_date={s['settled_at'][:10]}"
        assert f"{prefix}/{s['id']}/manifest.json" in keys


def _asset_event_extras(uri: str, run_id: str) -> list[dict[str, Any]]:
    """The extra of every asset (2.11: dataset) event the run ``run_id`` recorded for ``uri``."""
    from airflow.utils.session import create_session

    try:
        from airflow.models.asset import AssetEvent as Event
        from airflow.models.asset import AssetModel as Model
    except ImportError:  # Airflow 2.11
        from airflow.models.dataset import DatasetEvent as Event  # type: ignore[no-redef]
        from airflow.models.dataset import DatasetModel as Model  # type: ignore[no-redef]

    with create_session() as session:
        model = session.query(Model).filter(Model.uri == uri).one()
        key = Event.asset_id if hasattr(Event, "asset_id") else Event.dataset_id
        events = session.query(Event).filter(key == model.id, Event.source_run_id == run_id)
        return [e.extra for e in events]
