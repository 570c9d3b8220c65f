"""
Copy Dintero insight reports into S3, GCS or Azure Blob Storage / ADLS Gen2, named by a
destination URI.

Example::

    from airflow_provider_dintero.transfers.insight_report_to_storage import InsightReportToStorageOperator

    copy_reports = InsightReportToStorageOperator(
        task_id="copy_insight_reports",
        account_id="T11200001",
        destination="abfss://reports@financelake.dfs.core.windows.net/dintero",
        encryption_scope="finance",
    )
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_dintero.transfers.insight_report_to_s3 import (
    DEFAULT_KEY_TEMPLATE,
    InsightReportToS3Operator,
)

if TYPE_CHECKING:
    from airflow_provider_dintero.transfers.destinations._base import Destination


class InsightReportToStorageOperator(InsightReportToS3Operator):
    """
    Copy the insight reports Dintero generated for an account in a time window into the object
    store named by ``destination``: ``s3://bucket[/folder]``, ``gs://bucket[/folder]``,
    ``wasbs://container@account.blob.core.windows.net[/folder]`` or
    ``abfss://container@account.dfs.core.windows.net[/folder]``.

    Everything :class:`~airflow_provider_dintero.transfers.insight_report_to_s3.InsightReportToS3Operator`
    documents holds for every store (window, key layout and escaping with ``key`` put after the
    URI's folder, skipping what is there unless ``replace``, streamed atomic uploads, refreshed
    signed URLs, the asset event through the ``dintero_insight_reports`` alias and OpenLineage
    outputs named by the real destination). Returns the URIs of every selected report.

    :param account_id: the merchant account whose reports to copy. Templated.
    :param destination: the destination URI. Templated.
    :param key: key template (fields: ``KEY_FIELDS`` of ``insight_report_to_s3``). Templated.
    :param destination_conn_id: the store's connection (default ``aws_default``,
        ``google_cloud_default`` or ``wasb_default`` by scheme).
    :param kms_key_name: GCS only: a customer-managed Cloud KMS key for every object. Templated.
    :param encryption_scope: Azure only: an encryption scope for every object. Templated.
    :param report_config_id: copy only this configuration's reports. Templated.
    :param since: copy reports created at or after this time. Templated.
    :param until: copy reports created before this time. Templated.
    :param replace: overwrite reports already there.
    :param kwargs: more arguments of ``InsightReportToS3Operator`` (``encrypt``, ``acl_policy``,
        ``s3_extra_args`` for S3, ``dintero_conn_id``) and ``BaseOperator``.
    """

    template_fields: Sequence[str] = (
        "account_id",
        "destination",
        "key",
        "report_config_id",
        "since",
        "until",
        "s3_extra_args",
        "kms_key_name",
        "encryption_scope",
    )
    _key_param = "key"

    def __init__(
        self,
        *,
        account_id: str,
        destination: str,
        key: str = DEFAULT_KEY_TEMPLATE,
        destination_conn_id: str | None = None,
        kms_key_name: str | None = None,
        encryption_scope: str | None = None,
        report_config_id: str | None = None,
        since: Any = None,
        until: Any = None,
        replace: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            account_id=account_id,
            s3_bucket="",
            s3_key=key,
            report_config_id=report_config_id,
            since=since,
            until=until,
            replace=replace,
            aws_conn_id=None,
            **kwargs,
        )
        self.destination = destination
        self.key = key
        self.destination_conn_id = destination_conn_id
        self.kms_key_name = kms_key_name
        self.encryption_scope = encryption_scope

    def _key_template(self) -> str:
        return str(self.key)

    def _destination(self) -> Destination:
        from airflow_provider_dintero.transfers.destinations import open_destination

        return open_destination(
            self.destination,
            conn_id=self.destination_conn_id,
            encrypt=self.encrypt,
            acl_policy=self.acl_policy,
            s3_extra_args=self.s3_extra_args,
            kms_key_name=self.kms_key_name,
            encryption_scope=self.encryption_scope,
        )
