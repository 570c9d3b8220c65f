"""
The provider in a real Airflow deployment (3.3, or 2.11: see :mod:`.conftest`): the connection
form in headless Chromium, every example DAG triggered through the REST API and run by the
scheduler, the executor and the triggerer, and no secret in any log or process output.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import AIRFLOW_V3

from .conftest import CONN_ID, FORM_FIELDS_2, SENSOR, SETTLEMENTS_DAG, task_instances
from .deployment import Deployment, emulator_canaries, leaks, written_files

RUNS_ON_AIRFLOW_2 = True
airflow_3_only = pytest.mark.skipif(not AIRFLOW_V3, reason="Airflow 3's form and REST API v2")
airflow_2_only = pytest.mark.skipif(AIRFLOW_V3, reason="Airflow 2.11's form (Flask AppBuilder)")


@airflow_3_only
def test_the_connection_form_saves_its_defaults_as_shown(ui_connection: dict[str, Any]) -> None:
    saved = json.loads(ui_connection["saved"])
    saved = saved[0] if isinstance(saved, list) else saved
    extra = saved["extra_dejson"]  # as stored (the REST API would mask values itself)

    assert ui_connection["blocked"] == []  # the UI asked nothing of the outside world
    assert "***" not in ui_connection["extra_shown"]  # every default is shown as it is
    assert not [key for key, value in extra.items() if value == "***"]  # ... and saved as it is
    assert extra["cache_mode"] == "memory"
    assert float(extra["timeout"]) == 30  # the CLI prints every value as text
    assert int(extra["max_retries"]) == 5
    assert ui_connection["placeholders"] == {"host": "https://api.dintero.com", "login": "API client id"}
    assert all(path.stat().st_size > 0 for path in ui_connection["screenshots"])


@airflow_2_only
def test_the_airflow_2_form_shows_every_dintero_field_relabelled_with_defaults(
    ui_connection: dict[str, Any],
) -> None:
    form = ui_connection["form"]

    assert ui_connection["blocked"] == []
    assert form["visible"] == dict.fromkeys(FORM_FIELDS_2, True)
    assert form["hidden"] == {"schema": True, "port": True}
    assert form["labels"] == {
        "host": "Base URL",
        "login": "Client ID",
        "password": "Client secret",
        "account_id": "Account ID",
        "checkout_base_url": "Checkout base URL",
        "timeout": "Request timeout (seconds)",
        "max_retries": "Retries on 429/5xx/connection errors",
        "cache_mode": "Access token cache",
        "refresh_margin": "Access token refresh margin (seconds)",
    }
    assert form["placeholders"] == {
        "host": "https://api.dintero.com",
        "login": "API client id",
        "account_id": "T11200000",
        "checkout_base_url": "https://checkout.dintero.com",
        "timeout": "30",
        "max_retries": "5",
        "cache_mode": "memory",
        "refresh_margin": "300",
    }
    assert all(path.stat().st_size > 0 for path in ui_connection["screenshots"])


@airflow_2_only
def test_the_airflow_2_form_tests_and_saves_only_what_was_typed(
    ui_connection: dict[str, Any], emulator: Any
) -> None:
    saved = json.loads(ui_connection["saved"])
    saved = saved[0] if isinstance(saved, list) else saved
    extra = {key: value for key, value in saved["extra_dejson"].items() if value not in (None, "")}

    assert "Connected to Dintero test partner account T11200000" in ui_connection["tested"]
    assert extra == {"account_id": emulator.partner_id, "checkout_base_url": emulator.base_url}
    assert (saved["host"], saved["login"]) == (emulator.base_url, emulator.partner_client_id)


def test_the_connection_made_in_the_form_works(deployment: Deployment, ui_connection: dict[str, Any]) -> None:
    result = deployment.airflow("connections", "test", CONN_ID)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Connection success!" in result.stdout


def test_the_rest_api_test_of_the_saved_connection_names_the_account(
    deployment: Deployment, ui_connection: dict[str, Any], emulator: Any
) -> None:
    saved = json.loads(ui_connection["saved"])
    saved = saved[0] if isinstance(saved, list) else saved
    body = {
        "connection_id": CONN_ID,
        "conn_type": "dintero",
        "host": saved["host"],
        "login": saved["login"],
        "password": emulator.partner_client_secret,
        "extra": json.dumps(saved["extra_dejson"]),
    }

    answer = deployment.api("/connections/test", "POST", body)

    assert answer == {
        "status": True,
        "message": f"Connected to Dintero test partner account T11200000 at {emulator.base_url}",
    }


def test_every_example_dag_succeeds_when_triggered_without_a_logical_date(
    deployment: Deployment, example_runs: dict[str, Any]
) -> None:
    assert example_runs["import_errors"] == []
    assert len(example_runs["runs"]) == len(deployment.example_dag_files())
    for dag_id, run_id in example_runs["runs"].items():
        run = deployment.api(f"/dags/{dag_id}/dagRuns/{run_id}")
        assert run["logical_date"] is None or not AIRFLOW_V3, dag_id
        assert run["run_type"] == "manual", dag_id
    assert example_runs["states"] == dict.fromkeys(example_runs["runs"], "success")


def test_settlement_sensors_deferred_and_the_triggerer_found_what_arrived_while_they_waited(
    deployment: Deployment, example_runs: dict[str, Any]
) -> None:
    run_id = example_runs["runs"][SETTLEMENTS_DAG]
    sensors = task_instances(deployment, SETTLEMENTS_DAG, run_id, SENSOR)
    added = example_runs["added"]

    assert len(sensors) == 1  # one sensor for every merchant of the partner
    ti = sensors[0]
    assert ti["map_index"] == -1
    assert ti["state"] == "success"
    assert ti["try_number"] == 1  # deferred and resumed, never retried
    assert datetime.fromisoformat(ti["end_date"]).timestamp() > example_runs["added_at"]
    batches = deployment.xcom(SETTLEMENTS_DAG, run_id, SENSOR)  # [{account id: [settlement ids]}]
    found = {m: ids for batch in batches for m, ids in batch.items()}
    assert found == {m: [s["id"]] for m, s in added.items()}
    log = _task_log(deployment, run_id)
    assert "deferring to the triggerer" in log
    assert f"Found new settlements for {len(added)} of {len(added)} merchant(s)" in log
    copies = task_instances(deployment, SETTLEMENTS_DAG, run_id, "copy_to_s3")
    assert sorted(c["map_index"] for c in copies) == list(range(len(batches)))  # one task per batch
    report = deployment.xcom(SETTLEMENTS_DAG, run_id, "report")
    assert {m: line["status"] for m, line in report.items()} == dict.fromkeys(added, "copied")


def _task_log(deployment: Deployment, run_id: str) -> str:
    """The sensor's log file(s), as the worker and the triggerer wrote them."""
    root = deployment.home / "logs" / f"dag_id={SETTLEMENTS_DAG}" / f"run_id={run_id}" / f"task_id={SENSOR}"
    return "\n".join(f.read_text(errors="replace") for f in sorted(root.rglob("*")) if f.is_file())


def test_no_secret_token_or_signature_in_any_log_or_process_output(
    deployment: Deployment, emulator: Any, example_runs: dict[str, Any], dintero_connection: str
) -> None:
    canaries = emulator_canaries(emulator)

    hits = leaks(deployment, canaries)

    assert all(canaries.values()), {k: len(v) for k, v in canaries.items()}  # the scan had something to find
    assert len(written_files(deployment)) > 10
    assert hits == []
