"""
Copy Dintero insight reports (the files its scheduled custom reports produce) into S3.

Example::

    from airflow_provider_dintero.transfers.insight_report_to_s3 import InsightReportToS3Operator

    copy_reports = InsightReportToS3Operator(
        task_id="copy_insight_reports",
        account_id="T11200001",
        s3_bucket="dintero-reports",
    )
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AssetAlias

from airflow_provider_dintero.exceptions import (
    DinteroApiError,
    DinteroAuthError,
    DinteroInputError,
    DinteroNotFoundError,
)
from airflow_provider_dintero.redaction import redact_url
from airflow_provider_dintero.settlements import date_part as _date_part
from airflow_provider_dintero.settlements import format_timestamp
from airflow_provider_dintero.settlements import parse_timestamp as _parse_time
from airflow_provider_dintero.transfers._base import DinteroToS3BaseOperator, api_id, check_owner
from airflow_provider_dintero.validation import validate_account_id
from airflow_provider_dintero.vocabulary import ReportMetadata

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: Where each report lands unless ``s3_key`` says otherwise: one folder per account, report
#: configuration and reporting period, then Dintero's own file name.
DEFAULT_KEY_TEMPLATE = (
    "dintero/insight/account={account_id}/config={report_config_id}/"
    "period={data_from_date}_{data_to_date}/{report_file_name}"
)

#: The fields an ``s3_key`` template may use, each taken from the report's metadata.
KEY_FIELDS: dict[str, str] = {
    "account_id": "the operator's own (checked) merchant account id, e.g. T11200001",
    "report_id": "the report's id",
    "report_job_id": "the id of the run that produced the report (shared by its pdf and csv files)",
    "report_config_id": "the insight report configuration's id ('none' when the report has none)",
    "report_file_name": "Dintero's file name for the report",
    "custom_report_name": "the configuration's name",
    "schedule": "monthly, weekly or daily",
    "extension": "pdf or csv, from the content type",
    "data_from_date": "first day of the reporting period, YYYY-MM-DD",
    "data_to_date": "last day of the reporting period, YYYY-MM-DD",
    "created_date": "the day Dintero generated the report, YYYY-MM-DD",
}

#: The asset alias the operator emits through by default: one event per run that copied
#: something, for the asset ``s3://<bucket>/<the key template's fixed prefix for the account>``.
DEFAULT_ASSET_ALIAS = "dintero_insight_reports"

_EXTENSIONS = {"application/pdf": "pdf", "text/csv": "csv"}
_S3_ERROR_PART = re.compile(r"<(Code|Message)>([^<]{1,120})</\1>")


class InsightReportToS3Operator(DinteroToS3BaseOperator):
    """
    Copy the insight reports Dintero generated for an account in a time window into S3.

    The report metadata is read page by page; each report created in ``[since, until)``
    (default: the run's data interval; an empty interval, as Airflow 3's trigger timetables
    give, means everything created before its end), optionally only one configuration's, is
    downloaded through its signed URL and streamed into S3 with a multipart upload, so memory
    stays flat and a broken download never leaves a partial object. Keys are deterministic, so
    reports already in S3 are skipped unless ``replace`` is set, and a re-run copies nothing
    new. A signed URL refused with 403 (expired) is replaced by a fresh one from the metadata
    and retried once. Signed URLs are credentials: they are masked and only logged redacted.

    ``{account_id}`` in keys is always the operator's own checked account: a report whose
    metadata names another account fails the task before anything is written. Every other key
    value comes from the metadata and is made safe with
    :func:`~airflow_provider_dintero.transfers._s3_stream.key_part` (``/``, ``%``, control
    characters percent-encoded, ``.``/``..`` escaped); a report without an id, or two reports
    the template would put on one key, fail the task before anything is written.

    Everything goes through the amazon provider's ``S3Hook`` of ``aws_conn_id`` (its transfer
    config and ``extra_args``), with ``s3_extra_args``, ``encrypt`` and ``acl_policy`` applied
    to every object; multipart uploads left open by an earlier killed copy of a key are aborted
    before that key is uploaded. With the OpenLineage provider installed,
    :meth:`get_openlineage_facets_on_complete` reports the input ``dintero://<API host>`` /
    ``accounts/<account_id>/reports`` and every object written (``s3://<bucket>`` / key, with
    its size and SHA-256).

    Returns the ``s3://`` URIs of every selected report (copied now or already there). When
    something was copied, an asset event is emitted through each :class:`AssetAlias` outlet
    (default: ``dintero_insight_reports``) for ``s3://<bucket>/<fixed key prefix>``; a plain
    :class:`Asset` outlet gets the same ``extra``. Airflow 2.11 does the same with datasets.

    :param account_id: the merchant account whose reports to copy, e.g. ``T11200001``.
    :param s3_bucket: the destination bucket.
    :param s3_key: key template; the fields are listed in :data:`KEY_FIELDS`. Default
        :data:`DEFAULT_KEY_TEMPLATE`.
    :param report_config_id: copy only the reports of this insight report configuration.
    :param since: copy reports created at or after this time (default: data interval start).
    :param until: copy reports created before this time (default: data interval end).
    :param replace: overwrite reports already in S3 instead of skipping them.
    :param aws_conn_id: the AWS connection for S3.
    :param encrypt: server-side encryption with S3-managed keys (SSE-S3, ``AES256``) for every
        object, as the amazon transfers' ``encrypt``.
    :param acl_policy: a canned ACL for every object, e.g. ``"bucket-owner-full-control"``.
    :param s3_extra_args: more upload arguments for every object (boto3's upload ``ExtraArgs``),
        e.g. ``{"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "<key id or ARN>"}``. Templated.
    :param dintero_conn_id: the Dintero connection (a partner or the merchant itself).

    Example::

        InsightReportToS3Operator(
            task_id="copy_insight_reports",
            account_id="{{ params.merchant_id }}",
            s3_bucket="dintero-reports",
            report_config_id="{{ ti.xcom_pull(task_ids='ensure_schedule')['id'] }}",
        )
    """

    template_fields: Sequence[str] = (
        "account_id",
        "s3_bucket",
        "s3_key",
        "report_config_id",
        "since",
        "until",
        "s3_extra_args",
    )
    ui_color = "#e6f0ff"

    def __init__(
        self,
        *,
        account_id: str,
        s3_bucket: str,
        s3_key: str = DEFAULT_KEY_TEMPLATE,
        report_config_id: str | None = None,
        since: Any = None,
        until: Any = None,
        replace: bool = False,
        aws_conn_id: str | None = "aws_default",
        encrypt: bool = False,
        acl_policy: str | None = None,
        s3_extra_args: dict[str, Any] | None = None,
        dintero_conn_id: str = "dintero_default",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", [AssetAlias(name=DEFAULT_ASSET_ALIAS)])
        super().__init__(dintero_conn_id=dintero_conn_id, **kwargs)
        self.account_id = account_id
        self.s3_bucket = s3_bucket
        self.s3_key = s3_key
        self.report_config_id = report_config_id
        self.since = since
        self.until = until
        self.replace = replace
        self.aws_conn_id = aws_conn_id
        self.encrypt = encrypt
        self.acl_policy = acl_policy
        self.s3_extra_args = s3_extra_args

    # ------------------------------------------------------------------------------ execute

    def execute(self, context: Context) -> list[str]:
        """Copy the selected reports; return their ``s3://`` URIs."""
        from airflow_provider_dintero.transfers._s3_stream import check_unique_keys

        account_id = validate_account_id(self.account_id)
        template = self._key_template()
        check_key_template(template, field=self._key_param)
        since, until = self._window(context)
        store = self.store
        store.check()
        self._lineage_inputs = [f"accounts/{account_id}/reports"]
        self._lineage_outputs = []
        config_id = self._check_report_config(account_id) if self.report_config_id else None

        selected: list[ReportMetadata] = []
        seen_ids: set[str] = set()
        for report in self._select(account_id, since, until, config_id):
            report_id = api_id(report, "insight report", account_id)
            check_owner(report, f"insight report {report_id}", account_id)
            if report_id not in seen_ids:
                seen_ids.add(report_id)
                selected.append(report)
        keys = [
            store.object_key(report_key(template, report, account_id, field=self._key_param))
            for report in selected
        ]
        check_unique_keys(
            (
                (key, str(report.get("id")), f"report {report.get('id')}")
                for key, report in zip(keys, selected, strict=True)
            ),
            field=self._key_param,
            hint="add {report_file_name} or {report_id}",
        )
        self.log.info(
            "Found %s insight report(s) of account %s created in [%s, %s)%s",
            len(selected),
            account_id,
            since.isoformat() if since else "the beginning",
            until.isoformat() if until else "now",
            f" for report configuration {config_id}" if config_id else "",
        )

        uris: list[str] = []
        copied: list[str] = []
        for report, key in zip(selected, keys, strict=True):
            uri = store.uri(key)
            uris.append(uri)
            if not self.replace and store.exists(key):
                self.log.info("Insight report %s is already at %s; skipping it", report.get("id"), uri)
                continue
            self._copy(account_id, report, key)
            copied.append(uri)

        self.log.info(
            "Copied %s new insight report(s) of account %s to %s; %s were already there",
            len(copied),
            account_id,
            store.describe(),
            len(uris) - len(copied),
        )
        if copied:
            self._emit_asset_events(context, account_id, copied)
        return uris

    # ------------------------------------------------------------------------------ steps

    def _window(self, context: Context) -> tuple[datetime | None, datetime | None]:
        interval_start = _as_datetime(context.get("data_interval_start"), "data_interval_start")
        interval_end = _as_datetime(context.get("data_interval_end"), "data_interval_end")
        if interval_start is not None and interval_start == interval_end:
            # Airflow 3's trigger timetables give runs an empty interval: look back without limit
            # (reports already in S3 are skipped anyway).
            interval_start = None
        given_since = self.since not in (None, "")
        given_until = self.until not in (None, "")
        start = _as_datetime(self.since, "since") if given_since else interval_start
        end = _as_datetime(self.until, "until") if given_until else interval_end
        if start is not None and end is not None and start >= end:
            field = "until" if given_until or not given_since else "since"
            raise DinteroInputError(
                field, f"a window where since is before until ({start.isoformat()} >= {end.isoformat()})"
            )
        return start, end

    def _check_report_config(self, account_id: str) -> str:
        wanted = str(self.report_config_id).strip()
        configs = self.hook.list_report_configurations(account_id)
        if any(str(c.get("id")) == wanted for c in configs):
            return wanted
        known = ", ".join(f"{c.get('id')} ({c.get('name')})" for c in configs) or "none"
        raise DinteroInputError(
            "report_config_id",
            f"an insight report configuration of account {account_id} (it has: {known})",
            wanted,
        )

    def _select(
        self, account_id: str, since: datetime | None, until: datetime | None, config_id: str | None
    ) -> Iterator[ReportMetadata]:
        for report in self.hook.list_report_metadata(account_id):
            if config_id is not None and report.get("report_config_id") != config_id:
                continue
            if since is None and until is None:
                yield report
                continue
            created = _parse_time(report.get("created_at"))
            if created is None:
                self.log.warning(
                    "Insight report %s of account %s has no readable created_at; leaving it out",
                    report.get("id"),
                    account_id,
                )
                continue
            if (since is None or created >= since) and (until is None or created < until):
                yield report

    def _copy(self, account_id: str, report: ReportMetadata, key: str) -> None:
        report_id = str(report.get("id"))
        url = report.get("signed_url")
        for attempt in (1, 2):
            if not url:
                raise DinteroApiError(
                    f"Insight report {report_id} of account {account_id} has no download link (signed_url)",
                    account_id=account_id,
                )
            self.log.info(
                "Copying insight report %s of account %s from %s to %s",
                report_id,
                account_id,
                redact_url(url),
                self.store.uri(key),
            )
            try:
                with self.hook.stream_signed_url(
                    url, account_id=account_id, description=f"insight report {report_id}"
                ) as stream:
                    content_type = report.get("content_type") or stream.content_type
                    size = self.store.put_stream(
                        stream,
                        key,
                        content_type=content_type,
                        expected_size=stream.content_length,
                        metadata={"dintero-account-id": account_id, "dintero-report-id": report_id},
                    )
                    self._record_output(key, size, stream.sha256, content_type)
                self.log.info(
                    "Copied insight report %s (%s bytes) to %s", report_id, size, self.store.uri(key)
                )
                return
            except DinteroAuthError as exc:
                if exc.status != 403:
                    raise
                reason = _s3_reason(exc.api_message)
                if attempt == 2:
                    raise DinteroApiError(
                        f"Could not download insight report {report_id} of account {account_id}: "
                        f"its signed download link was refused ({reason}) again after a fresh link was "
                        "fetched from the report metadata; check the clock of this worker and retry later",
                        status=exc.status,
                        account_id=account_id,
                    ) from None
                self.log.warning(
                    "The download link of insight report %s of account %s was refused (%s); "
                    "fetching a fresh link from the report metadata and retrying once",
                    report_id,
                    account_id,
                    reason,
                )
                url = self._fresh_signed_url(account_id, report_id)

    def _fresh_signed_url(self, account_id: str, report_id: str) -> str | None:
        for report in self.hook.list_report_metadata(account_id):
            if report.get("id") == report_id:
                return report.get("signed_url")
        raise DinteroNotFoundError(
            f"Insight report {report_id} is no longer listed in the report metadata of account {account_id}",
            status=404,
            account_id=account_id,
        )

    def _emit_asset_events(self, context: Context, account_id: str, copied: list[str]) -> None:
        from airflow.providers.common.compat.sdk import Asset

        outlet_events = context.get("outlet_events")
        if outlet_events is None:
            return
        store = self.store
        prefix = store.object_key(key_prefix(self._key_template(), account_id)).rstrip("/")
        # flat values only: Airflow 2.11 hashes the extra of alias events
        extra: dict[str, Any] = {
            "account_id": account_id,
            "bucket": store.container,
            "prefix": prefix,
            "copied": len(copied),
        }
        target = Asset(uri=store.asset_uri(prefix) if prefix else f"{store.base_uri}/")
        for outlet in self.outlets or []:
            if isinstance(outlet, AssetAlias):
                outlet_events[outlet].add(target, extra=extra)
            elif isinstance(outlet, Asset):
                outlet_events[outlet].extra.update(extra)


# ---------------------------------------------------------------------------------- helpers


def check_key_template(template: Any, *, field: str = "s3_key") -> list[str]:
    """
    Check a key template (fields from :data:`KEY_FIELDS` only); return the fields used.

    Raises :class:`DinteroInputError` listing the allowed fields.

    :param template: e.g. :data:`DEFAULT_KEY_TEMPLATE`.
    :param field: the parameter name for error messages.
    """
    from airflow_provider_dintero.transfers._s3_stream import key_template_fields

    return key_template_fields(template, KEY_FIELDS, field=field)


def report_key(template: str, report: ReportMetadata, account_id: str, *, field: str = "s3_key") -> str:
    """
    Render an ``s3_key`` template for one report of ``account_id``.

    Values from the metadata are made safe with
    :func:`~airflow_provider_dintero.transfers._s3_stream.key_part`; ``{account_id}`` is
    ``account_id``, never the metadata's.

    :param template: a template checked by :func:`check_key_template`.
    :param report: the report's metadata.
    :param account_id: the operator's own checked account id.
    :param field: the parameter name for error messages.
    """
    from airflow_provider_dintero.transfers._s3_stream import key_part, render_key

    fields = {k: key_part(v) for k, v in key_values(report, account_id).items()}
    fields["account_id"] = account_id
    return render_key(template, fields, field=field)


def key_values(report: ReportMetadata, account_id: str) -> dict[str, str]:
    """
    Return the values of :data:`KEY_FIELDS` for one report (as the metadata gives them).

    :param report: the report's metadata.
    :param account_id: the operator's own checked account id.
    """
    report_id = str(report.get("id") or "")
    extension = _EXTENSIONS.get(str(report.get("content_type") or ""), "bin")
    return {
        "account_id": account_id,
        "report_id": report_id,
        "report_job_id": str(report.get("report_job_id") or ""),
        "report_config_id": str(report.get("report_config_id") or "none"),
        "report_file_name": str(report.get("report_file_name") or f"{report_id}.{extension}"),
        "custom_report_name": str(report.get("custom_report_name") or ""),
        "schedule": str(report.get("schedule") or ""),
        "extension": extension,
        "data_from_date": _date_part(report.get("data_from")),
        "data_to_date": _date_part(report.get("data_to")),
        "created_date": _date_part(report.get("created_at")),
    }


def key_prefix(template: str, account_id: str) -> str:
    """
    Return the fixed folder of ``template`` for an account (up to its first other field).

    :param template: a template checked by :func:`check_key_template`.
    :param account_id: the account.
    """
    prefix = ""
    for literal, name, _, _ in string.Formatter().parse(template):
        prefix += literal
        if name is None:
            continue
        if name != "account_id":
            break
        prefix += account_id
    return prefix.rsplit("/", 1)[0] if "/" in prefix else ""


def _as_datetime(value: Any, field: str) -> datetime | None:
    if value is None or value == "":
        return None
    parsed = _parse_time(format_timestamp(value, field))
    if parsed is None:  # pragma: no cover - format_timestamp already raised
        raise DinteroInputError(field, "a date or ISO-8601 timestamp", value)
    return parsed


def _s3_reason(body: str | None) -> str:
    """The S3 error code and message of a refused signed URL, e.g. ``AccessDenied: Request has expired``."""
    parts = dict(_S3_ERROR_PART.findall(body or ""))
    if parts:
        return ": ".join(v for k, v in sorted(parts.items()) if v)
    return "HTTP 403"
