"""The opt-in shared token cache: mapped task instances reuse one token through a Variable."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook


@pytest.fixture
def shared_cache_connection(dintero_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    conn = {
        "conn_type": "dintero",
        "host": dintero_emulator.base_url,
        "login": dintero_emulator.partner_client_id,
        "password": dintero_emulator.partner_client_secret,
        "extra": {"account_id": dintero_emulator.partner_id, "token_cache": "variable"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_DINTERO_SHARED", json.dumps(conn))
    return "dintero_shared"


def test_mapped_tasks_reuse_one_token_through_the_variable(
    dintero_emulator: Any, shared_cache_connection: str, run_dag: Any
) -> None:
    from airflow.providers.common.compat.sdk import DAG, task

    merchant = dintero_emulator.merchant_ids[0]

    with DAG("dintero_shared_token_cache", start_date=datetime(2026, 1, 1), schedule=None) as dag:

        @task
        def call_dintero(i: int) -> str:
            from airflow_provider_dintero.auth import TOKEN_CACHE

            TOKEN_CACHE.clear()  # each mapped instance starts like a fresh worker process
            return DinteroPartnerHook(shared_cache_connection).get_account(merchant)["account_id"]

        call_dintero.expand(i=list(range(5)))

    run = run_dag(dag)
    assert run.state == "success"
    assert dintero_emulator.count(path_regex=r".*/management/settings$", status=200) == 5
    assert dintero_emulator.count(path_regex=r".*/exchange_token$") == 1
    assert dintero_emulator.count(path_regex=r".*/auth/token$") == 2
    assert _leases_left() == []  # each mint's lease released (through the Task SDK on Airflow 3)


def _leases_left() -> list[str]:
    from airflow.models.variable import Variable as DbVariable
    from airflow.utils.session import create_session

    with create_session() as session:
        return [row.key for row in session.query(DbVariable).filter(DbVariable.key.like("dintero_lease_%"))]


def test_shared_token_is_stored_encrypted(
    dintero_emulator: Any, shared_cache_connection: str, airflow_db: None
) -> None:
    from airflow.models.variable import Variable as DbVariable
    from airflow.utils.session import create_session

    hook = DinteroPartnerHook(shared_cache_connection)
    token = hook.get_token()
    with create_session() as session:
        stored = session.query(DbVariable).filter(DbVariable.key.like("dintero_token_%")).all()
        assert stored
        assert all(row.is_encrypted for row in stored)
        assert all(token not in (row._val or "") for row in stored)
