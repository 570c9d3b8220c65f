"""
Collect every merchant's new settlement reports into S3, one mapped task group per merchant.

``list_merchants`` reads the partner's merchants from Dintero (or takes the ``merchant_ids``
param); then, for each merchant, ``merchant.wait_for_settlements`` waits for settlements
recorded since the run's window began (see :class:`SettlementSensor`), and
``merchant.copy_to_s3`` streams exactly those into S3 with a manifest per settlement. A
merchant whose access is missing or whose copy breaks fails alone; ``report`` runs in every
case and lists, per merchant, what was copied and what failed.

Params: ``merchant_ids`` (optional list; default all of the partner's merchants), ``s3_bucket``
(default ``$DINTERO_DEMO_BUCKET`` or ``dintero-settlements``), ``deferrable`` (wait in the
triggerer instead of rescheduling).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.providers.common.compat.sdk import dag, task, task_group

from airflow_provider_dintero.sensors.settlements import SettlementSensor
from airflow_provider_dintero.transfers.settlements_to_s3 import SettlementsToS3Operator, settlements_asset

BUCKET = os.environ.get("DINTERO_DEMO_BUCKET", "dintero-settlements")
DINTERO_CONN_ID = "dintero_default"
AWS_CONN_ID = "aws_default"

log = logging.getLogger(__name__)


@task
def list_merchants(params: dict[str, Any] | None = None) -> list[str]:
    """The merchants to collect: the ``merchant_ids`` param, or every merchant of the partner."""
    from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook, validate_account_id

    chosen = (params or {}).get("merchant_ids") or []
    if chosen:
        return [validate_account_id(m, "merchant_ids") for m in chosen]
    hook = DinteroPartnerHook(dintero_conn_id=DINTERO_CONN_ID)
    return [m["account_id"] for m in hook.list_merchants() if m.get("active", True)]


@task_group(group_id="merchant")
def collect_merchant(account_id: str) -> Any:
    """Wait for one merchant's new settlements, then copy them to S3."""
    wait = SettlementSensor(
        task_id="wait_for_settlements",
        account_id=account_id,
        deferrable="{{ params.deferrable }}",
        mode="reschedule",
        poll_interval=600,
        timeout=6 * 3600,
        dintero_conn_id=DINTERO_CONN_ID,
    )
    copy = SettlementsToS3Operator(
        task_id="copy_to_s3",
        account_id=account_id,
        s3_bucket="{{ params.s3_bucket }}",
        settlement_ids=wait.output,  # type: ignore[arg-type]  # the sensor's find, at run time
        aws_conn_id=AWS_CONN_ID,
        dintero_conn_id=DINTERO_CONN_ID,
        outlets=[settlements_asset(BUCKET)],
        retries=2,
        retry_delay=timedelta(minutes=2),
    )
    return copy.output


@task(trigger_rule="all_done")
def report(merchant_ids: list[str], results: Any, **context: Any) -> dict[str, dict[str, Any]]:
    """Per merchant: the objects written and skipped, or the state of the task that failed."""
    copied = {r["account_id"]: r for r in results or [] if isinstance(r, dict)}
    states = _group_states(context)
    summary: dict[str, dict[str, Any]] = {}
    for index, account_id in enumerate(merchant_ids or []):
        if account_id in copied:
            r = copied[account_id]
            summary[account_id] = {
                "status": "copied",
                "settlements": len(r["settlement_ids"]),
                "written": len(r["written"]),
                "skipped": len(r["skipped"]),
            }
            continue
        wait = states.get(("merchant.wait_for_settlements", index))
        copy = states.get(("merchant.copy_to_s3", index))
        failed_step = "wait_for_settlements" if wait != "success" else "copy_to_s3"
        summary[account_id] = {
            "status": "failed",
            "step": failed_step,
            "state": wait if wait != "success" else copy,
        }
    for account_id, line in summary.items():
        log.info("Merchant %s: %s", account_id, line)
    return summary


def _group_states(context: dict[str, Any]) -> dict[tuple[str, int], str | None]:
    """The state of each mapped task of the merchant group in this run, on Airflow 3 and 2.11."""
    ti = context["ti"]
    states: dict[tuple[str, int], str | None] = {}
    if hasattr(ti, "get_task_states"):  # Airflow 3: ask the API server
        run_id = context["run_id"]
        found = ti.get_task_states(dag_id=ti.dag_id, task_group_id="merchant", run_ids=[run_id])
        for key, state in (found.get(run_id) or {}).items():
            task_id, _, index = key.rpartition("_")
            if index.isdigit():
                states[(task_id, int(index))] = state
        return states
    for other in context["dag_run"].get_task_instances():  # Airflow 2.11: the metadata DB
        if other.task_id.startswith("merchant."):
            states[(other.task_id, other.map_index)] = other.state
    return states


@dag(
    dag_id="dintero_settlements_to_s3",
    schedule="@daily",
    start_date=datetime(2026, 11, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["dintero", "settlements", "s3"],
    params={"merchant_ids": None, "s3_bucket": BUCKET, "deferrable": False},
    doc_md=__doc__,
)
def dintero_settlements_to_s3() -> None:
    """One run per day: every merchant's new settlement files into S3."""
    merchants = list_merchants()
    results = collect_merchant.expand(account_id=merchants)
    report(merchants, results)  # type: ignore[arg-type]  # XComArgs resolve at run time


settlements_to_s3_dag = dintero_settlements_to_s3()
