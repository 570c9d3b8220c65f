"""
Collect a merchant's Dintero insight reports into S3, every day.

1. ``ensure_monthly_schedule`` makes sure the merchant has a monthly "Monthly transactions"
   report schedule (idempotent: an existing configuration with that name is reused).
2. ``copy_new_reports`` copies the reports that schedule produced into S3. Monthly reports
   appear after their month ends, so each run looks back 35 days; keys are deterministic and
   reports already in S3 are skipped, so nothing is ever copied twice. A run triggered
   without a logical date (Airflow 3's default for manual runs) looks back from the moment
   it was triggered.

One run at a time (``max_active_runs=1``): a run takes seconds, so a manual run waits at most
that long behind a scheduled one, and two runs never copy the same reports at once. (Two runs
finishing together can also race Airflow 3.3 when it first creates the report Asset that the
copy names at run time: one of them is failed with a database integrity error.)

Configuration errors (no bucket, an unknown report configuration, a malformed merchant id)
fail at once, without retries.

Params: ``merchant_id`` (default ``T11200001``), ``s3_bucket`` (default: the
``DINTERO_DEMO_BUCKET`` environment variable, else ``dintero-reports``) and ``destination`` (a
destination URI such as ``gs://bucket/reports`` or ``abfss://container@account.dfs.core.windows.net``;
default: the ``DINTERO_DEMO_DESTINATION`` environment variable, else ``s3://<s3_bucket>``): the
same DAG runs on MWAA, Cloud Composer and Azure. Connections: ``dintero_default`` (a partner API
client) and, by the destination's scheme, ``aws_default``, ``google_cloud_default`` or
``wasb_default``.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_dintero.operators.report_configurations import CreateReportConfigurationOperator
from airflow_provider_dintero.transfers.insight_report_to_storage import InsightReportToStorageOperator

#: 35 days before the run's data interval end, or before the run itself when it has none
#: (triggered without a logical date, Airflow 3's default for manual runs: no ``ds`` then).
SINCE = (
    "{{ macros.ds_add((data_interval_end if data_interval_end is defined and data_interval_end"
    " else dag_run.run_after) | ds, -35) }}"
)

MONTHLY_SCHEDULE = {
    "name": "Monthly transactions",
    "dataType": "checkout/transactions",
    "schedule": "monthly",
    "language": "en",
    "contentTypes": ["application/pdf", "text/csv"],
}

with DAG(
    dag_id="dintero_insight_reports_to_s3",
    description="Copy new Dintero insight reports of a merchant into S3",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    params={
        "merchant_id": "T11200001",
        "s3_bucket": os.environ.get("DINTERO_DEMO_BUCKET", "dintero-reports"),
        "destination": os.environ.get("DINTERO_DEMO_DESTINATION") or None,
    },
    tags=["dintero", "example"],
    doc_md=__doc__,
) as dag:
    ensure_monthly_schedule = CreateReportConfigurationOperator(
        task_id="ensure_monthly_schedule",
        account_id="{{ params.merchant_id }}",
        configuration=MONTHLY_SCHEDULE,
        if_exists="reuse",
    )

    copy_new_reports = InsightReportToStorageOperator(
        task_id="copy_new_reports",
        account_id="{{ params.merchant_id }}",
        destination="{{ params.destination or 's3://' ~ params.s3_bucket }}",
        report_config_id="{{ ti.xcom_pull(task_ids='ensure_monthly_schedule')['id'] }}",
        since=SINCE,
    )

    ensure_monthly_schedule >> copy_new_reports
