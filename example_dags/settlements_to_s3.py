"""
Collect every merchant's new settlement reports into S3, one mapped task group per merchant.

``list_merchants`` reads the partner's merchants from Dintero (or takes the ``merchant_ids``
param); then, for each merchant, ``merchant.wait_for_settlements`` waits for settlements
recorded since the run's window began (see :class:`SettlementSensor`), and
``merchant.copy_to_s3`` streams exactly those into S3 with a manifest per settlement.

**Outcome.** ``report`` runs once every merchant is done, whatever happened, and returns (and
logs) per merchant what was copied, that nothing new arrived, or which step failed.
``all_collected`` then fails the run when listing the merchants or any merchant's wait or copy
failed, naming them; the other merchants were collected all the same. A merchant with nothing
new within the wait (:data:`WAIT`) is *skipped*, not failed.

**Reaction time.** The sensors are deferrable by default: they wait in the triggerer, which
asks Dintero every :data:`POLL_INTERVAL` (60 s), so a new settlement is copied about one to two
minutes after Dintero records it (one poll interval plus the time the scheduler takes to
resume the task). Waiting holds no worker slot.

**Overlapping runs.** Copies are idempotent (deterministic keys; objects already in S3 are
skipped), so runs may overlap: a manual run never queues behind the scheduled one. A wait lasts
at most :data:`WAIT` (1 h).

**Configuration errors** (no bucket, a bad key template, malformed merchant ids) fail at once,
without retries; only transient errors (Dintero or S3 unreachable) are retried.

Params: ``merchant_ids`` (optional list; default all of the partner's merchants), ``s3_bucket``
(default ``$DINTERO_DEMO_BUCKET`` or ``dintero-settlements``), ``deferrable`` (default true:
wait in the triggerer; false: reschedule mode). The Asset event names the bucket written
(``s3://<s3_bucket>/dintero/settlements``), through the ``dintero-settlements`` asset alias.
Triggered without a logical date (Airflow 3's default for manual runs), the window is the day
before the run.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    AssetAlias,
    dag,
    task,
    task_group,
)

from airflow_provider_dintero.sensors.settlements import SettlementSensor
from airflow_provider_dintero.transfers.settlements_to_s3 import SettlementsToS3Operator, settlements_asset

BUCKET = os.environ.get("DINTERO_DEMO_BUCKET", "dintero-settlements")
DINTERO_CONN_ID = "dintero_default"
AWS_CONN_ID = "aws_default"
#: Seconds between two checks for new settlements (in the triggerer when deferrable).
POLL_INTERVAL = 60
#: How long a merchant's wait lasts before it ends as "nothing new" (skipped).
WAIT = timedelta(hours=1)
#: The alias through which the run's Asset event names the bucket actually written.
ASSET_ALIAS = "dintero-settlements"

log = logging.getLogger(__name__)


class WaitForNewSettlements(SettlementSensor):
    """
    :class:`SettlementSensor` whose wait, when it runs out, ends *skipped* (nothing new).

    Errors (no access, Dintero unreachable, bad input) still fail the task; ``soft_fail`` is
    not used because it would turn those into skips too.
    """

    def execute(self, context: Any) -> Any:
        """Wait as :class:`SettlementSensor` does; a timeout means nothing new arrived."""
        try:
            return super().execute(context)
        except AirflowSensorTimeout as exc:
            raise AirflowSkipException(self._nothing_new()) from exc

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        """Resume after the trigger; its timeout (deferrable mode) means nothing new arrived."""
        error = str((next_kwargs or {}).get("error", ""))
        if next_method == "__fail__" and "timeout" in error.lower():
            raise AirflowSkipException(self._nothing_new())
        return super().resume_execution(next_method, next_kwargs, context)

    def _nothing_new(self) -> str:
        return (
            f"No new settlements for account {self.account_id} within {self.timeout:.0f} s: nothing to copy"
        )


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
    wait = WaitForNewSettlements(
        task_id="wait_for_settlements",
        account_id=account_id,
        deferrable="{{ params.deferrable }}",
        mode="reschedule",
        poll_interval=POLL_INTERVAL,
        timeout=WAIT.total_seconds(),
        dintero_conn_id=DINTERO_CONN_ID,
    )
    copy = SettlementsToS3Operator(
        task_id="copy_to_s3",
        account_id=account_id,
        s3_bucket="{{ params.s3_bucket }}",
        settlement_ids=wait.output,  # type: ignore[arg-type]  # the sensor's find, at run time
        aws_conn_id=AWS_CONN_ID,
        dintero_conn_id=DINTERO_CONN_ID,
        outlets=[],  # the bucket is a param: ``report`` emits the Asset event for it
        retries=2,
        retry_delay=timedelta(minutes=2),
    )
    return copy.output


# The default bucket's Asset is also an inlet (what the report reads back): that registers it when
# the DAG is parsed, so two runs reporting at once never race Airflow 3.3's first creation of it
# (one of them would be failed with a database integrity error). Inlets emit no events.
@task(
    trigger_rule="all_done",
    outlets=[AssetAlias(name=ASSET_ALIAS)],
    inlets=[settlements_asset(BUCKET)],
)
def report(**context: Any) -> dict[str, dict[str, Any]]:
    """
    Per merchant: copied (counts), nothing new, or the step that failed and its state.

    Emits one Asset event for ``s3://<s3_bucket>/dintero/settlements`` when anything was written.
    """
    ti = context["ti"]
    states = _task_states(context)
    if states.get(("list_merchants", -1)) != "success":
        raise AirflowFailException("Listing the merchants failed: no merchant was collected")
    merchant_ids = ti.xcom_pull(task_ids="list_merchants") or []
    summary: dict[str, dict[str, Any]] = {}
    for index, account_id in enumerate(merchant_ids):
        wait = states.get(("merchant.wait_for_settlements", index))
        copy = states.get(("merchant.copy_to_s3", index))
        if copy == "success":
            r = ti.xcom_pull(task_ids="merchant.copy_to_s3", map_indexes=index)
            summary[account_id] = {
                "status": "copied",
                "settlements": len(r["settlement_ids"]),
                "written": len(r["written"]),
                "skipped": len(r["skipped"]),
            }
        elif wait == "skipped":
            summary[account_id] = {"status": "nothing new"}
        else:
            step = "wait_for_settlements" if wait != "success" else "copy_to_s3"
            summary[account_id] = {
                "status": "failed",
                "step": step,
                "state": wait if wait != "success" else copy,
            }
    for account_id, line in summary.items():
        log.info("Merchant %s: %s", account_id, line)
    written = sum(line.get("written", 0) for line in summary.values())
    if written:
        bucket = context["params"]["s3_bucket"]
        extra = {"merchants": sum(1 for v in summary.values() if v.get("written")), "written": written}
        context["outlet_events"][AssetAlias(name=ASSET_ALIAS)].add(settlements_asset(bucket), extra=extra)
    return summary


@task
def all_collected(summary: dict[str, dict[str, Any]]) -> None:
    """Fail the run, naming them, when any merchant's wait or copy failed."""
    failed = {m: v for m, v in summary.items() if v.get("status") == "failed"}
    if failed:
        names = ", ".join(f"{m} ({v['step']}: {v['state']})" for m, v in failed.items())
        raise AirflowFailException(
            f"{len(failed)} of {len(summary)} merchant(s) were not collected: {names}; "
            "the others were (see the report task)"
        )


def _task_states(context: dict[str, Any]) -> dict[tuple[str, int], str | None]:
    """The state of ``list_merchants`` and of each mapped merchant task in this run."""
    ti = context["ti"]
    states: dict[tuple[str, int], str | None] = {}
    if hasattr(ti, "get_task_states"):  # Airflow 3: ask the API server
        run_id = context["run_id"]
        found = ti.get_task_states(
            dag_id=ti.dag_id,
            task_ids=["list_merchants", "merchant.wait_for_settlements", "merchant.copy_to_s3"],
            run_ids=[run_id],
        )
        for key, state in (found.get(run_id) or {}).items():
            task_id, _, index = key.rpartition("_")
            if index.isdigit():
                states[(task_id, int(index))] = state
            else:
                states[(key, -1)] = state
        return states
    for other in context["dag_run"].get_task_instances():  # Airflow 2.11: the metadata DB
        states[(other.task_id, other.map_index)] = other.state
    return states


@dag(
    dag_id="dintero_settlements_to_s3",
    schedule="@daily",
    start_date=datetime(2026, 11, 1, tzinfo=timezone.utc),
    catchup=False,
    tags=["dintero", "settlements", "s3"],
    params={"merchant_ids": None, "s3_bucket": BUCKET, "deferrable": True},
    doc_md=__doc__,
)
def dintero_settlements_to_s3() -> None:
    """One run per day: every merchant's new settlement files into S3."""
    merchants = list_merchants()
    results = collect_merchant.expand(account_id=merchants)
    summary = report()
    [merchants, results] >> summary  # type: ignore[operator]
    all_collected(summary)  # type: ignore[arg-type]  # XComArgs resolve at run time


settlements_to_s3_dag = dintero_settlements_to_s3()
