"""
Collect every merchant's new settlement reports into S3: one sensor for all of the partner's
merchants, then one mapped copy per **batch** of merchants that have something new.

``list_merchants`` takes the ``merchant_ids`` param, or lists the partner's (active) merchants:
the merchants this run answers for. ``wait_for_settlements`` is **one** sensor for all of them
(:class:`SettlementSensor` with ``all_merchants=True``, or ``account_ids=<merchant_ids>``): each
sweep polls every merchant, 16 at a time, each with its own deadline, for settlements recorded
since the run's window began, and the sensor succeeds as soon as **one** sweep finds something
for **at least one** merchant. It returns the merchants found in that sweep grouped into
batches of at most :data:`BATCH_SIZE` (``[{account id: [settlement ids]}, ...]``: ids only,
small in XCom); ``copy_to_s3`` is mapped over the batches
(``.expand(merchants=wait.output)``), and each mapped task copies its batch's merchants
:data:`COPY_CONCURRENCY` at a time, each on its own, with a manifest per settlement.

**Why batches.** Airflow refuses to map a task over more than ``[core] max_map_length`` items
(1,024 by default): one copy task per merchant stops at 1,024 merchants with new settlements.
Batches of 100 keep a 10,000-merchant partner at 100 mapped tasks, with no change to the
user's config, and each batch still runs in parallel with the others (up to ``parallelism``).
What still limits it: 102,400 merchants with new settlements in one sweep (1,024 batches of
100; raise :data:`BATCH_SIZE`); a batch retries as a whole (its merchants already copied are
skipped by HEAD requests, nothing is downloaded again); and the copy's throughput, bound by the
workers' slots times :data:`COPY_CONCURRENCY` streams.

**Some merchants, not all.** Merchants without new settlements in that sweep are left out of
the sensor's result: they get no copy and the report says "nothing new" (they were read). The
sensor does not wait for the others: it fires once, with what that sweep found. A settlement
recorded after that sweep (for any merchant) has a ``created_at`` after this run's interval
ended, so it is inside the next run's window (which starts at its interval start minus the
one-hour ``lookback``) and is collected by the next run; nothing falls between two runs.
Overlapping windows are harmless: copies are idempotent.

**Outcome.** ``report`` runs once the copies are done, whatever happened, and returns (and logs)
per merchant exactly one of: ``copied`` (settlements, objects written and skipped, and any ids
Dintero did not confirm), ``nothing new`` (read, nothing to copy), ``could not be read``
(403/404: the reason names the grant that is missing), or ``failed`` with the step
(``wait_for_settlements`` or ``copy_to_s3``) and its state or error. It emits the Asset event
when anything was written. ``all_collected`` then fails the run naming the merchants that could
not be read or failed; every other merchant was copied all the same. A wait that ends
(:data:`WAIT`) with nothing new for anyone is *skipped*, not failed, and the run succeeds. A
merchant the partner may not read, or whose listing fails, is named by the sensor (XCom
``not_collected``) and delays no other; only a sensor that fails outright (the merchants cannot
be listed, or no merchant at all can be read) leaves every merchant "failed" at
``wait_for_settlements``.

**Reaction time.** The sensor is deferrable by default: it checks once in the worker, then waits
in the triggerer as one :class:`PartnerSettlementTrigger`, which sweeps every
:data:`POLL_INTERVAL` (60 s); a new settlement is copied about one to two minutes after Dintero
records it (up to one poll interval, plus the sweep, plus the time the scheduler takes to resume
the task). Waiting holds no worker slot.

**How many merchants.** One run is one trigger in the triggerer, whatever the number of
merchants: the per-merchant cost is one settlements list request per sweep and, per token
lifetime, one exchange and one merchant token. Measured with Airflow 3.3's real triggerer
(README, "Many merchants in one triggerer"; ``bench/RESULTS-triggerer-partner.md``, 5 s polls):
1,000 merchants were all polled once 7.7 s after the hand-over, event-loop lag p99 14 ms, peak
RSS 173 / 176 MB (runner / supervisor), 6 masker patterns, 3.6 ms CPU per settlements list. One
sensor per merchant (this example's earlier shape) now copes too (1,000 polled once in 13.4 s),
but holds a thousand triggers and task instances where this holds one.

**Overlapping runs.** Copies are idempotent (deterministic keys; objects already in S3 are
skipped), so runs may overlap: a manual run never queues behind the scheduled one. A wait lasts
at most :data:`WAIT` (1 h).

**Configuration errors** (no bucket, a bad key template, malformed merchant ids) fail at once,
without retries; only transient errors (Dintero or S3 unreachable) are retried.

Params: ``merchant_ids`` (optional list; default all of the partner's merchants), ``s3_bucket``
(default ``$DINTERO_DEMO_BUCKET`` or ``dintero-settlements``), ``destination`` (a destination URI
such as ``gs://bucket`` or ``abfss://container@account.dfs.core.windows.net``, default
``$DINTERO_DEMO_DESTINATION``; without one, ``s3://<s3_bucket>``: the connections
``aws_default``, ``google_cloud_default`` or ``wasb_default`` are used by scheme). The Asset event
names the destination written (e.g. ``s3://<s3_bucket>/dintero/settlements``), through the
``dintero-settlements`` asset alias. Triggered without a logical date (Airflow 3's default for
manual runs), the window is the day before the run.
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
)

from airflow_provider_dintero.sensors.settlements import NOT_COLLECTED, SettlementSensor
from airflow_provider_dintero.transfers.settlements_to_s3 import MERCHANTS_XCOM, settlements_asset
from airflow_provider_dintero.transfers.settlements_to_storage import (
    SettlementsToStorageOperator,
    destination_asset,
)

BUCKET = os.environ.get("DINTERO_DEMO_BUCKET", "dintero-settlements")
#: Where the files go: a destination URI (``s3://``, ``gs://``, ``wasbs://``/``abfss://``); without
#: one, ``s3://<s3_bucket>``. The same DAG runs on MWAA, Cloud Composer and Azure.
DESTINATION = os.environ.get("DINTERO_DEMO_DESTINATION") or None
DINTERO_CONN_ID = "dintero_default"
AWS_CONN_ID = "aws_default"
#: Seconds between two sweeps of every merchant (in the triggerer when deferrable).
POLL_INTERVAL = 60
#: How long the wait lasts before it ends as "nothing new" (skipped).
WAIT = timedelta(hours=1)
#: The alias through which the run's Asset event names the bucket actually written.
ASSET_ALIAS = "dintero-settlements"
#: Merchants named in the failure message of ``all_collected`` (the report has them all).
NAMED = 20
#: Merchants per mapped copy task (see "Why batches").
BATCH_SIZE = 100
#: Merchants of one batch copied at the same time.
COPY_CONCURRENCY = 4

log = logging.getLogger(__name__)


class WaitForNewSettlements(SettlementSensor):
    """
    :class:`SettlementSensor` for the ``merchant_ids`` param (``account_ids``) or, without it,
    every merchant of the partner (``all_merchants``); when its wait runs out, it ends *skipped*.

    Errors (no access, Dintero unreachable, bad input) still fail the task; ``soft_fail`` is
    not used because it would turn those into skips too.
    """

    def execute(self, context: Any) -> Any:
        """
        Wait as :class:`SettlementSensor` does, for the run's merchants; a timeout means nothing
        new arrived.

        :param context: the task context (its ``merchant_ids`` param chooses the merchants).
        """
        chosen = (context.get("params") or {}).get("merchant_ids")
        self.account_ids = chosen or None
        self.all_merchants = not chosen
        try:
            return super().execute(context)
        except AirflowSensorTimeout as exc:
            raise AirflowSkipException(self._nothing_new()) from exc

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        """
        Resume after the trigger; its timeout (deferrable mode) means nothing new arrived.

        :param next_method: the method to resume in (``__fail__`` when Airflow ended the wait).
        :param next_kwargs: its arguments (``error`` names a timeout).
        :param context: the task context.
        """
        error = str((next_kwargs or {}).get("error", ""))
        if next_method == "__fail__" and "timeout" in error.lower():
            raise AirflowSkipException(self._nothing_new())
        return super().resume_execution(next_method, next_kwargs, context)

    def _nothing_new(self) -> str:
        return f"No new settlements for any merchant within {self.timeout:.0f} s: nothing to copy"


@task
def list_merchants(params: dict[str, Any] | None = None) -> list[str]:
    """The merchants this run answers for: the ``merchant_ids`` param, or the partner's active ones."""
    from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
    from airflow_provider_dintero.poller import check_account_ids, listed_account_ids

    chosen = (params or {}).get("merchant_ids")
    if chosen:
        return check_account_ids(chosen, "merchant_ids") or []
    merchants = DinteroPartnerHook(dintero_conn_id=DINTERO_CONN_ID).list_merchants()
    return listed_account_ids(m for m in merchants if m.get("active", True))  # as the sweep reads them


# The default bucket's Asset is also an inlet (what the report reads back): that registers it when
# the DAG is parsed, so two runs reporting at once never race Airflow 3.3's first creation of it
# (one of them would be failed with a database integrity error). Inlets emit no events.
@task(
    trigger_rule="all_done",
    multiple_outputs=False,  # one XCom, not one per merchant
    outlets=[AssetAlias(name=ASSET_ALIAS)],
    inlets=[settlements_asset(BUCKET)],
)
def report(**context: Any) -> dict[str, dict[str, Any]]:
    """
    Per merchant, exactly one of: copied (counts), nothing new (read, nothing to copy), could
    not be read (403/404: the grant is missing; the reason names it), or failed (the step and
    its state or error).

    Emits one Asset event for ``s3://<s3_bucket>/dintero/settlements`` when anything was written.
    """
    ti = context["ti"]
    states = _task_states(context)
    if states.get(("list_merchants", -1)) != "success":
        raise AirflowFailException("Listing the merchants failed: no merchant was collected")
    roster = list(ti.xcom_pull(task_ids="list_merchants") or [])
    wait = states.get(("wait_for_settlements", -1))
    found = (ti.xcom_pull(task_ids="wait_for_settlements") or []) if wait == "success" else []
    not_read = (
        (ti.xcom_pull(task_ids="wait_for_settlements", key=NOT_COLLECTED) or {}) if wait == "success" else {}
    )
    summary: dict[str, dict[str, Any]] = {}
    for index, batch in enumerate(found):  # the copy's map index is the batch's place in the list
        copy = states.get(("copy_to_s3", index))
        lines = ti.xcom_pull(task_ids="copy_to_s3", map_indexes=index, key=MERCHANTS_XCOM) or {}
        for account_id in batch:
            line = lines.get(account_id)
            summary[account_id] = line or {"status": "failed", "step": "copy_to_s3", "state": copy}
    for account_id, line in not_read.items():  # the sweep that fired could not read these
        if line.get("status") == "could not be read":
            summary[account_id] = {"status": "could not be read", "reason": line.get("reason")}
        else:
            summary[account_id] = {
                "status": "failed",
                "step": "wait_for_settlements",
                "error": line.get("reason"),
            }
    for account_id in roster:
        if account_id in summary:
            continue
        if wait in ("success", "skipped"):  # read in the sweep that fired, or nothing within the wait
            summary[account_id] = {"status": "nothing new"}
        else:
            summary[account_id] = {"status": "failed", "step": "wait_for_settlements", "state": wait}
    summary = {m: summary[m] for m in [*roster, *(m for m in summary if m not in roster)]}
    for account_id, line in summary.items():
        log.info("Merchant %s: %s", account_id, line)
    written = sum(line.get("written", 0) for line in summary.values())
    if written:
        params = context["params"]
        destination = params.get("destination") or f"s3://{params['s3_bucket']}"
        extra = {"merchants": sum(1 for v in summary.values() if v.get("written")), "written": written}
        context["outlet_events"][AssetAlias(name=ASSET_ALIAS)].add(
            destination_asset(destination), extra=extra
        )
    return summary


@task
def all_collected(summary: dict[str, dict[str, Any]]) -> None:
    """Fail the run, naming them, when any merchant could not be read or its wait or copy failed."""
    failed = {m: v for m, v in summary.items() if v.get("status") in ("failed", "could not be read")}
    if failed:
        names = ", ".join(
            f"{m} ({v['status']}: {v.get('step') or v.get('reason')})"
            for m, v in list(failed.items())[:NAMED]
        )
        more = f" and {len(failed) - NAMED} more" if len(failed) > NAMED else ""
        raise AirflowFailException(
            f"{len(failed)} of {len(summary)} merchant(s) were not collected: {names}{more}; "
            "the others were (see the report task)"
        )


def _task_states(context: dict[str, Any]) -> dict[tuple[str, int], str | None]:
    """The state of each task (and map index) of this run: ``{(task_id, map_index): state}``."""
    ti = context["ti"]
    states: dict[tuple[str, int], str | None] = {}
    if hasattr(ti, "get_task_states"):  # Airflow 3: ask the API server
        run_id = context["run_id"]
        found = ti.get_task_states(
            dag_id=ti.dag_id,
            task_ids=["list_merchants", "wait_for_settlements", "copy_to_s3"],
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
    params={"merchant_ids": None, "s3_bucket": BUCKET, "destination": DESTINATION},
    doc_md=__doc__,
)
def dintero_settlements_to_s3() -> None:
    """One run per day: every merchant's new settlement files into S3."""
    merchants = list_merchants()
    wait = WaitForNewSettlements(
        task_id="wait_for_settlements",
        all_merchants=True,  # or the merchant_ids param, chosen when the task runs
        batch_size=BATCH_SIZE,
        deferrable=True,  # waits in the triggerer; False: reschedule mode, the same sweep in a worker
        mode="reschedule",
        poll_interval=POLL_INTERVAL,
        timeout=WAIT.total_seconds(),
        dintero_conn_id=DINTERO_CONN_ID,
    )
    copy = SettlementsToStorageOperator.partial(
        task_id="copy_to_s3",
        destination="{{ params.destination or 's3://' ~ params.s3_bucket }}",
        dintero_conn_id=DINTERO_CONN_ID,
        max_concurrency=COPY_CONCURRENCY,
        outlets=[],  # the bucket is a param: ``report`` emits the Asset event for it
        retries=2,
        retry_delay=timedelta(minutes=2),
    ).expand(merchants=wait.output)  # one mapped task per batch of BATCH_SIZE merchants
    summary = report()
    merchants >> wait
    [merchants, wait, copy] >> summary  # type: ignore[operator]
    all_collected(summary)  # type: ignore[arg-type]  # XComArgs resolve at run time


settlements_to_s3_dag = dintero_settlements_to_s3()
