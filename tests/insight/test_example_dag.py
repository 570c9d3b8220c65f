"""The ``dintero_insight_reports_to_s3`` example DAG, end to end on the emulator and moto."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest

from tests.conftest import AIRFLOW_V3, REPO

DAG_FILE = "insight_reports_to_s3.py"
DAG_ID = "dintero_insight_reports_to_s3"
MERCHANT = "T11200001"


def _asset_event_uris() -> list[str]:
    from airflow.utils.session import create_session

    if AIRFLOW_V3:
        from airflow.models.asset import AssetEvent

        with create_session() as session:
            return [event.asset.uri for event in session.query(AssetEvent).all()]
    from airflow.models.dataset import DatasetEvent

    with create_session() as session:
        return [event.dataset.uri for event in session.query(DatasetEvent).all()]


def test_dag_is_daily_without_catchup_and_has_the_documented_params(
    load_example_dag: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DINTERO_DEMO_BUCKET", "demo-bucket")
    monkeypatch.delenv("DINTERO_DEMO_DESTINATION", raising=False)
    dag = load_example_dag(DAG_FILE)

    assert dag.dag_id == DAG_ID
    assert dag.catchup is False
    timetable = dag.timetable
    assert (getattr(timetable, "expression", None) or timetable._expression) == "0 0 * * *"  # @daily
    assert dict(dag.params) == {"merchant_id": MERCHANT, "s3_bucket": "demo-bucket", "destination": None}
    assert dag.get_task("ensure_monthly_schedule").downstream_task_ids == {"copy_new_reports"}


def test_dag_bucket_defaults_to_dintero_reports(
    load_example_dag: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DINTERO_DEMO_BUCKET", raising=False)

    assert load_example_dag(DAG_FILE).params["s3_bucket"] == "dintero-reports"


def test_dag_file_parses_without_heavy_imports() -> None:
    code = (
        "import runpy, sys; "
        f"runpy.run_path({str(REPO / 'example_dags' / DAG_FILE)!r}); "
        "heavy = [m for m in ('boto3', 'botocore', 'airflow.providers.amazon.aws.hooks.s3', "
        "'airflow_provider_dintero.emulator') if m in sys.modules]; "
        "print('HEAVY', heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )

    assert "HEAVY []" in result.stdout


def test_dag_copies_the_reports_then_a_second_run_copies_nothing_new(
    load_example_dag: Callable[..., Any],
    run_dag: Callable[..., Any],
    dintero_connection: str,
    dintero_emulator: Any,
    s3_bucket: str,
    s3_client: Any,
) -> None:
    dag = load_example_dag(DAG_FILE)
    if not AIRFLOW_V3:
        dag.sync_to_db()  # as the DAG processor would: registers the asset alias outlet
    conf = {"merchant_id": MERCHANT, "s3_bucket": s3_bucket}

    first = run_dag(dag, conf=conf, logical_date=datetime(2026, 11, 2, tzinfo=timezone.utc))

    assert first.state == "success"
    keys = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket).get("Contents", []))
    assert len(keys) == 4  # September and October, each as pdf and csv
    assert {k.split("/")[4] for k in keys} == {"period=2026-09-01_2026-09-30", "period=2026-10-01_2026-10-31"}
    assert all(k.startswith(f"dintero/insight/account={MERCHANT}/config=") for k in keys)
    copy_ti = next(ti for ti in first.get_task_instances() if ti.task_id == "copy_new_reports")
    assert sorted(copy_ti.xcom_pull(task_ids="copy_new_reports")) == [f"s3://{s3_bucket}/{k}" for k in keys]
    assert dintero_emulator.count("POST", r"/insight/reports/configuration") == 0  # seeded schedule reused
    assert dintero_emulator.count("GET", r"^/_emulator/signed/") == 4
    assert _asset_event_uris().count(f"s3://{s3_bucket}/dintero/insight/account={MERCHANT}") == 1
    dintero_emulator.clear_requests()

    second = run_dag(dag, conf=conf, logical_date=datetime(2026, 11, 3, tzinfo=timezone.utc))

    assert second.state == "success"
    assert dintero_emulator.count("GET", r"^/_emulator/signed/") == 0
    assert len(s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]) == 4
    assert _asset_event_uris().count(f"s3://{s3_bucket}/dintero/insight/account={MERCHANT}") == 1


@pytest.mark.skipif(not AIRFLOW_V3, reason="Airflow 2.11 gives every run a logical date")
def test_dag_succeeds_without_a_logical_date(
    load_example_dag: Callable[..., Any],
    run_dag: Callable[..., Any],
    dintero_connection: str,
    dintero_emulator: Any,
    s3_bucket: str,
    s3_client: Any,
) -> None:
    dag_run = run_dag(
        load_example_dag(DAG_FILE),
        conf={"merchant_id": MERCHANT, "s3_bucket": s3_bucket},
        no_logical_date=True,
    )

    assert dag_run.logical_date is None
    assert dag_run.state == "success"
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert keys  # the seeded reports of the last 35 days before the run


def test_an_unknown_report_configuration_fails_at_once_without_retries(
    load_example_dag: Callable[..., Any],
    run_dag: Callable[..., Any],
    dintero_connection: str,
    dintero_emulator: Any,
    s3_bucket: str,
) -> None:
    dag = load_example_dag(DAG_FILE)
    copy = dag.get_task("copy_new_reports")
    copy.report_config_id = "no-such-configuration"
    copy.retries = 2

    dag_run = run_dag(
        dag,
        conf={"merchant_id": MERCHANT, "s3_bucket": s3_bucket},
        logical_date=datetime(2026, 11, 2, tzinfo=timezone.utc),
    )

    ti = next(t for t in dag_run.get_task_instances() if t.task_id == "copy_new_reports")
    assert ti.state == "failed"  # not up_for_retry
    assert ti.try_number == 1
