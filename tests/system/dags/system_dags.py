"""
DAGs only the production profile runs (copied next to the examples into its DAGs folder):

- ``system_token_economy``: 8 mapped tasks (two Celery workers of four slots)
  that each, from the same instant (``start_at``, epoch seconds), list the settlements of every
  merchant in ``merchant_ids`` through ``conn_id``: every task needs the partner token and each
  merchant's exchange and merchant tokens at once, so the token cache is raced across processes.
- ``system_copy_large``: one :class:`SettlementsToS3Operator` copy of ``settlement_id`` for
  ``merchant_id`` with short retries, for the worker-kill case (a copy of a 200 MB attachment).
- ``system_partner_wait``: one deferrable partner-wide :class:`SettlementSensor` (one trigger for
  ``merchant_ids``) for what is new since ``since``, for the triggerer take-over case.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

from airflow.providers.common.compat.sdk import dag, task

from airflow_provider_dintero.sensors.settlements import SettlementSensor
from airflow_provider_dintero.transfers.settlements_to_s3 import SettlementsToS3Operator

BUCKET = os.environ.get("DINTERO_DEMO_BUCKET", "dintero-settlements")


@task
def list_every_merchant(copy: int, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """
    From ``start_at``, list the settlements of every merchant (one of the 8 copies).

    :param copy: which copy this is.
    :param params: ``conn_id``, ``merchant_ids``, ``start_at``.
    """
    from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook

    params = params or {}
    time.sleep(max(0.0, float(params.get("start_at") or 0) - time.time()))
    hook = DinteroPartnerHook(dintero_conn_id=params["conn_id"])
    listed = {m: len(list(hook.list_settlements(m))) for m in params["merchant_ids"]}
    return {"copy": copy, "merchants": len(listed), "settlements": sum(listed.values())}


@dag(
    dag_id="system_token_economy",
    schedule=None,
    catchup=False,
    max_active_tasks=16,
    params={"conn_id": "dintero_default", "merchant_ids": [], "start_at": 0},
    tags=["system-test"],
)
def token_economy() -> None:
    """Every copy needs every merchant's tokens at once."""
    list_every_merchant.expand(copy=list(range(8)))


@dag(
    dag_id="system_copy_large",
    schedule=None,
    catchup=False,
    params={"merchant_id": "", "settlement_id": ""},
    tags=["system-test"],
)
def copy_large() -> None:
    """One settlement's copy, retried after 5 s."""
    SettlementsToS3Operator(
        task_id="copy_to_s3",
        account_id="{{ params.merchant_id }}",
        settlement_ids=["{{ params.settlement_id }}"],
        s3_bucket=BUCKET,
        retries=3,
        retry_delay=timedelta(seconds=5),
    )


token_economy()
copy_large()


@dag(
    dag_id="system_partner_wait",
    schedule=None,
    catchup=False,
    render_template_as_native_obj=True,
    params={"merchant_ids": [], "since": ""},
    tags=["system-test"],
)
def partner_wait() -> None:
    """One partner-wide sensor for ``merchant_ids`` (one trigger), new since ``since``, 10 s sweeps."""
    SettlementSensor(
        task_id="wait_for_settlements",
        account_ids="{{ params.merchant_ids }}",
        since="{{ params.since }}",
        deferrable=True,
        poll_interval=10,
        timeout=900,
    )


partner_wait()
