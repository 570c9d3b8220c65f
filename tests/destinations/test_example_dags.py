"""
The demo's example DAGs, unchanged but for their ``destination`` param, into every store's local
server: the same DAG runs on MWAA (S3), Cloud Composer (GCS) and Azure (Blob Storage / ADLS Gen2).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from tests.conftest import AIRFLOW_V3

from .conftest import StoreUnderTest

LOGICAL_DATE = datetime(2026, 11, 24, tzinfo=timezone.utc)
MERCHANT = "T11200001"


def _ti(dag_run: Any, task_id: str, map_index: int = -1) -> Any:
    return next(t for t in dag_run.get_task_instances() if t.task_id == task_id and t.map_index == map_index)


def _asset_event_uris() -> list[str]:
    from airflow.utils.session import create_session

    if AIRFLOW_V3:
        from airflow.models.asset import AssetEvent

        with create_session() as session:
            return [event.asset.uri for event in session.query(AssetEvent).all()]
    from airflow.models.dataset import DatasetEvent

    with create_session() as session:
        return [event.dataset.uri for event in session.query(DatasetEvent).all()]


def test_settlements_example_copies_into_the_destination_param(
    emu: Any,
    store: StoreUnderTest,
    run_dag: Callable[..., Any],
    load_example_dag: Callable[..., Any],
) -> None:
    busy = emu.merchant_ids[0]
    added = emu.add_settlement(busy, provider="payex", created_at=LOGICAL_DATE - timedelta(minutes=30))
    dag = load_example_dag("settlements_to_s3.py")
    wait = dag.get_task("wait_for_settlements")
    wait.poke_interval = wait.poll_interval = 0.2
    wait.timeout = 60
    wait.deferrable = False  # reschedule mode: the same sweep in the worker
    dag.get_task("copy_to_s3").retries = 0

    dag_run = run_dag(
        dag,
        conf={"destination": store.destination, "merchant_ids": [busy]},
        logical_date=LOGICAL_DATE,
    )

    assert dag_run.state == "success"
    result = _ti(dag_run, "copy_to_s3", 0).xcom_pull(task_ids="copy_to_s3", map_indexes=0)
    prefix = (
        f"dintero/settlements/account={busy}/provider=payex/settled_date={added['settled_at'][:10]}/"
        f"{added['id']}/"
    )
    expected = {f"{prefix}{a['id']}.{a['extension']}" for a in added["attachments"]} | {
        f"{prefix}manifest.json"
    }
    assert store.list_keys() == expected
    assert result["merchants"][busy]["written"] == len(expected)  # a batch: counts per merchant
    assert f"{store.namespace}/dintero/settlements" in _asset_event_uris()


def test_insight_example_copies_into_the_destination_param(
    dintero_connection: str,
    dintero_emulator: Any,
    store: StoreUnderTest,
    run_dag: Callable[..., Any],
    load_example_dag: Callable[..., Any],
) -> None:
    dag = load_example_dag("insight_reports_to_s3.py")
    if not AIRFLOW_V3:
        dag.sync_to_db()  # registers the asset alias outlet, as the DAG processor would
    conf = {"merchant_id": MERCHANT, "destination": store.destination}

    first = run_dag(dag, conf=conf, logical_date=datetime(2026, 11, 2, tzinfo=timezone.utc))

    assert first.state == "success"
    keys = store.list_keys()
    assert len(keys) == 4  # September and October, each as pdf and csv
    uris = _ti(first, "copy_new_reports").xcom_pull(task_ids="copy_new_reports")
    assert sorted(uris) == sorted(store.uri(k) for k in keys)
    assert f"{store.namespace}/dintero/insight/account={MERCHANT}" in _asset_event_uris()
    dintero_emulator.clear_requests()

    second = run_dag(dag, conf=conf, logical_date=datetime(2026, 11, 3, tzinfo=timezone.utc))

    assert second.state == "success"
    assert dintero_emulator.count("GET", r"^/_emulator/signed/") == 0
    assert store.list_keys() == keys
