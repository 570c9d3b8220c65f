"""The ``dintero_provision_merchant`` example DAG, end to end against the emulator."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from tests.conftest import AIRFLOW_V3
from tests.provisioning.helpers import (
    clear_log,
    delete_variable,
    read_variable,
    settle,
    task_result,
    task_state,
    writes,
)

DAG_FILE = "provision_merchant.py"
TASKS = ["account_details", "api_client", "grants", "payment_profile", "settlement_webhook"]


@pytest.fixture
def merchant(dintero_emulator: Any) -> str:
    """The example's default merchant, with no secret left in the Variable by an earlier test."""
    merchant_id = dintero_emulator.merchant_ids[0]
    delete_variable(f"dintero_client_secret_{merchant_id}")
    return merchant_id


def test_parses_without_calling_the_api(load_example_dag: Any, dintero_emulator: Any) -> None:
    dag = load_example_dag(DAG_FILE)

    assert dag.dag_id == "dintero_provision_merchant"
    assert dag.params["merchant_id"] == "T11200001"
    assert [t.task_id for t in dag.topological_sort()] == TASKS
    assert settle(dintero_emulator).requests == []


def test_runs_end_to_end_and_the_new_client_can_log_in(
    run_dag: Any,
    load_example_dag: Any,
    dintero_emulator: Any,
    dintero_connection: str,
    merchant: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dagrun = run_dag(load_example_dag(DAG_FILE), conf={"merchant_id": merchant})

    assert {task: task_state(dagrun, task) for task in TASKS} == dict.fromkeys(TASKS, "success")
    assert task_result(dagrun, "account_details")["applicant"]["signup_reference"]
    client = task_result(dagrun, "api_client")["client"]
    grant = task_result(dagrun, "grants")
    assert grant["client_id"] == client["id"]
    assert set(grant["scope"]) == {"read:settlements", "read:reports", "admin:insight", "read:hooks"}
    assert task_result(dagrun, "settlement_webhook")["events"] == ["settlement_add"]
    secret = read_variable(f"dintero_client_secret_{merchant}")
    assert secret
    assert all(secret not in json.dumps(task_result(dagrun, task)) for task in TASKS)

    new_conn = {
        "conn_type": "dintero",
        "login": client["client_id"],
        "password": secret,
        "host": dintero_emulator.base_url,
        "extra": {"account_id": merchant, "checkout_base_url": dintero_emulator.base_url},
    }
    monkeypatch.setenv("AIRFLOW_CONN_DINTERO_NEW_CLIENT", json.dumps(new_conn))
    list(DinteroPartnerHook("dintero_new_client").list_settlements(limit=10))
    assert settle(dintero_emulator).count("GET", rf"/v1/accounts/{merchant}/settlements$", 200) == 1


def test_second_run_creates_nothing_new(
    run_dag: Any, load_example_dag: Any, dintero_emulator: Any, dintero_connection: str, merchant: str
) -> None:
    dag = load_example_dag(DAG_FILE)
    first = run_dag(dag, conf={"merchant_id": merchant})
    assert first.state == "success"
    assert len(writes(dintero_emulator)) == 4  # client, grant, profile, subscription
    clear_log(dintero_emulator)

    second = run_dag(dag, conf={"merchant_id": merchant})

    assert second.state == "success"
    assert writes(dintero_emulator) == []
    assert task_result(second, "api_client")["created"] is False


@pytest.mark.skipif(not AIRFLOW_V3, reason="Airflow 2.11 gives every run a logical date")
def test_succeeds_without_a_logical_date(
    run_dag: Any, load_example_dag: Any, dintero_emulator: Any, dintero_connection: str, merchant: str
) -> None:
    dagrun = run_dag(load_example_dag(DAG_FILE), conf={"merchant_id": merchant}, no_logical_date=True)

    assert dagrun.logical_date is None
    assert dagrun.state == "success"


def test_a_malformed_merchant_id_fails_at_once_without_retries(
    run_dag: Any, load_example_dag: Any, dintero_emulator: Any, dintero_connection: str
) -> None:
    dag = load_example_dag(DAG_FILE)
    dag.get_task("account_details").retries = 2

    dagrun = run_dag(dag, conf={"merchant_id": "T1120"})

    assert task_state(dagrun, "account_details") == "failed"  # not up_for_retry
    assert settle(dintero_emulator).requests == []
