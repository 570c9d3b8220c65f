"""
Helpers for the provisioning operator tests: a one-task DAG runner, a merchant connection,
Secrets Manager on moto, and write counts from the emulator's request log.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest


@pytest.fixture
def run_tasks(run_dag: Callable[..., Any]) -> Callable[..., Any]:
    """
    Build a DAG from ``factory()`` (called inside a ``with DAG`` block), run it, return the DagRun.
    """

    def _run(factory: Callable[[], Any], conf: dict[str, Any] | None = None) -> Any:
        from airflow.providers.common.compat.sdk import DAG

        with DAG(
            dag_id=f"provisioning_{uuid.uuid4().hex[:10]}",
            schedule=None,
            start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
        ) as dag:
            factory()
        return run_dag(dag, conf=conf)

    return _run


@pytest.fixture
def merchant_connection(dintero_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A merchant's own API client as connection ``dintero_merchant``; returns (conn id, merchant)."""
    merchant = dintero_emulator.merchant_ids[0]
    login, secret = dintero_emulator.merchant_credentials(merchant)
    conn = {
        "conn_type": "dintero",
        "login": login,
        "password": secret,
        "host": dintero_emulator.base_url,
        "extra": {"account_id": merchant, "checkout_base_url": dintero_emulator.base_url},
    }
    monkeypatch.setenv("AIRFLOW_CONN_DINTERO_MERCHANT", json.dumps(conn))
    return "dintero_merchant", merchant


@pytest.fixture
def secretsmanager(s3_server: str) -> Any:
    """A boto3 Secrets Manager client on moto's server (the same endpoint as S3)."""
    import boto3

    return boto3.client(
        "secretsmanager",
        endpoint_url=s3_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


@pytest.fixture
def secret_name() -> str:
    """A fresh secret name under Airflow's connections prefix (moto is shared by the session)."""
    return f"airflow/connections/dintero_test_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def variable_key() -> Iterator[str]:
    """A fresh Airflow Variable key, deleted after the test (the metadata DB lives for the session)."""
    from tests.provisioning.helpers import delete_variable

    key = f"dintero_test_secret_{uuid.uuid4().hex[:10]}"
    yield key
    delete_variable(key)
