"""
Copy new settlements into S3 as soon as Dintero records them: a DAG scheduled on an asset that a
:class:`~airflow_provider_dintero.triggers.settlement_events.DinteroSettlementEventTrigger`
watches (Airflow 3 only).

The watcher polls every merchant of the partner in one loop (at most 16 at a time) and records
one asset event per merchant batch of new settlements, with the settlement event of
``airflow_provider_dintero.events`` as extra (``source: "poll"``); the webhook receiver records
the same shape on the same asset (``source: "webhook"``; an event naming no settlement is a
wake-up: the copy then collects what is new for that account since its last collection).
Each run reads its events once, in its first task: its triggering events and those recorded
after the run was queued (``airflow_provider_dintero.events.run_events``: Airflow hands such an
event to no run). That task hands each mapped copy what the events ask of 100 accounts
(``events.event_selection_batches``: the ids, or a wake-up), so a run naming 10,000 accounts
makes 100 copies (under Airflow's ``max_map_length``) and reads its events once, not once per
copy. Each copy re-reads exactly those settlements from Dintero, 4 accounts at a time, each
ending copied, could not be read or failed on its own. Ids
Dintero does not confirm (404) are named in the copy's result under ``unconfirmed`` and the
others are copied.

A manual run (no asset events) copies, for the merchants in the ``merchant_ids`` param, the
settlements recorded in the run's window: the way to re-run a merchant by hand. Params:
``merchant_ids`` (default none), ``s3_bucket``.

Environment: ``DINTERO_PARTNER_ID`` (default ``T11200000``, the emulator's partner),
``DINTERO_DEMO_BUCKET`` (default ``dintero-settlements``), ``DINTERO_POLL_INTERVAL`` (seconds,
default 30).

**Airflow 2.11** has no asset watchers, and **Airflow 3.0 to 3.2** no asset state store for the
watcher's watermark: this file then defines no DAG (DAG parsing is not broken);
use ``example_dags/settlements_to_s3.py``, whose sensor waits for the merchants' settlements on
a schedule.
"""

# example DAG: Airflow 3 only
# example DAG: Airflow 3.3 only
from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow_provider_dintero.triggers.settlement_events import EVENT_TRIGGERS, WATERMARK_STORE

PARTNER_ID = os.environ.get("DINTERO_PARTNER_ID", "T11200000")
BUCKET = os.environ.get("DINTERO_DEMO_BUCKET", "dintero-settlements")
POLL_INTERVAL = float(os.environ.get("DINTERO_POLL_INTERVAL", "30"))

if EVENT_TRIGGERS and WATERMARK_STORE:  # Airflow 3.3: the watcher keeps its watermark there
    from airflow.sdk import DAG, Asset, AssetWatcher, task

    from airflow_provider_dintero.events import batches, event_selection_batches, run_events
    from airflow_provider_dintero.transfers.settlements_to_s3 import SettlementsToS3Operator
    from airflow_provider_dintero.triggers.settlement_events import DinteroSettlementEventTrigger
    from airflow_provider_dintero.webhooks import settlement_events_asset

    # [START howto_settlements_on_event]
    _asset = settlement_events_asset(PARTNER_ID)
    watched = Asset(
        name=_asset.name,
        uri=_asset.uri,
        watchers=[
            AssetWatcher(
                name=f"{_asset.name}_poll",
                trigger=DinteroSettlementEventTrigger(account_id=PARTNER_ID, poll_interval=POLL_INTERVAL),
            )
        ],
    )

    with DAG(
        dag_id="dintero_settlements_on_event",
        schedule=[watched],
        start_date=datetime(2026, 11, 1),
        catchup=False,
        # One run at a time: a settlement reported twice (a triggerer killed before Airflow
        # confirmed its event) or named by a late event would otherwise be copied by two runs
        # at once, and "skip what is already in S3" (a HEAD, then a PUT) is exact only when no
        # other copy writes the same key meanwhile. Events arriving during a run wait for the
        # next one, which takes them all.
        max_active_runs=1,
        tags=["dintero", "settlements", "event-driven"],
        doc_md=__doc__,
        params={"merchant_ids": [], "s3_bucket": BUCKET},
    ) as settlements_on_event:

        @task
        def account_batches(**context: Any) -> list[Any]:
            """
            What this run's events ask of each account, 100 accounts per mapped copy; a manual
            run: the param's merchants (their copies then select by the run's window).
            """
            from airflow_provider_dintero.validation import validate_account_id

            named = event_selection_batches(run_events(context))
            manual = [validate_account_id(m) for m in context["params"].get("merchant_ids") or []]
            return named or batches(manual)

        SettlementsToS3Operator.partial(
            task_id="copy_to_s3",
            s3_bucket="{{ params.s3_bucket }}",
            use_triggering_events=True,
            max_concurrency=4,
        ).expand(merchants=account_batches())
        # [END howto_settlements_on_event]
