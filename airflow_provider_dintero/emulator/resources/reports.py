"""Reports: settlement and insight report configurations, generated report metadata and downloads."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_dintero.emulator import signing
from airflow_provider_dintero.emulator.collection import (
    Collection,
    Paging,
    Record,
    list_response,
    replace_fields,
)
from airflow_provider_dintero.emulator.core import (
    Request,
    Route,
    after_cursor,
    as_datetime,
    enum,
    filter_list,
    limit_arg,
    now,
    project,
    require_str,
    str_list,
)
from airflow_provider_dintero.emulator.models import Response, field_error
from airflow_provider_dintero.emulator.resources.settlements import SETTLEMENTS_READ
from airflow_provider_dintero.emulator.seed import content_stream, iso, make_report

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_dintero.emulator.app import EmulatorApp

SRC_CREATE = ("admin:billing", "admin:reports", "admin:settlements", "write:settlements")
SRC_WRITE = ("admin:billing", "write:billing", "admin:settlements", "write:settlements")
REPORTS_READ = ("read:reports", "admin:reports")
INSIGHT_READ = ("read:insight", "admin:insight")
INSIGHT_WRITE = ("write:insight", "admin:insight")

INSIGHT_DATA_TYPES = ("checkout/transactions",)
INSIGHT_SCHEDULES = ("monthly", "weekly", "daily")
INSIGHT_LANGUAGES = ("no", "en")
INSIGHT_CONTENT_TYPES = ("application/pdf", "text/csv")

_SRC_FIELDS = ("filetypes", "destinations", "providers", "filters", "send_every")
_INSIGHT_FIELDS = ("dataType", "schedule", "language", "name", "emails", "reportFilters", "contentTypes")


# --- settlement report configurations (5.4) ----------------------------------------------------
def _validate_src(body: Record) -> None:
    str_list(body, "filetypes", required=True)
    str_list(body, "providers", required=True)
    if "destinations" not in body:
        raise field_error("destinations", "is required")
    dests = body["destinations"]
    if not isinstance(dests, list):
        raise field_error("destinations", "must be an array")
    for i, dest in enumerate(dests):
        if not isinstance(dest, dict):
            raise field_error(f"destinations[{i}]", "must be an object")
        if dest.get("destination_type") not in ("account_email", "email"):
            raise field_error(f"destinations[{i}].destination_type", "must be account_email or email")
        if dest["destination_type"] == "email" and not isinstance(dest.get("destination_value"), str):
            raise field_error(f"destinations[{i}].destination_value", "is required for email")
    filter_list(body, "filters", ("payout_destination_id",))
    if "send_every" in body and not isinstance(body["send_every"], (int, float)):
        raise field_error("send_every", "must be a number")


def _build_src(app: EmulatorApp, req: Request, body: Record) -> Record:
    item = project(body, _SRC_FIELDS)
    item["destinations"] = [
        {**d, "id": d.get("id") or app.next_id("destination")} for d in item["destinations"]
    ]
    created = iso(now())
    item.update(id=app.next_id("src"), created_at=created, updated_at=created, account_id=req.account)
    return item


SETTLEMENT_REPORT_CONFIGS = Collection(
    endpoint="settlement_report_configs",
    label="settlement report configuration",
    path="/v1/accounts/{aid}/settlements/reports/configuration",
    store="src_configs",
    read_scopes=SETTLEMENTS_READ,
    write_scopes=SRC_WRITE,
    create_scopes=SRC_CREATE,
    validate=_validate_src,
    build=_build_src,
    replace=lambda app, req, old, body: replace_fields(old, body, _SRC_FIELDS),
    paging=Paging(default=100, maximum=1000, cursor_in_body=True),
)


# --- insight report configurations (6.1) ------------------------------------------------------
def _validate_insight(body: Record) -> None:
    enum(body, "dataType", INSIGHT_DATA_TYPES)
    enum(body, "schedule", INSIGHT_SCHEDULES)
    enum(body, "language", INSIGHT_LANGUAGES)
    require_str(body, "name", max_len=64)
    str_list(body, "emails", required=False)
    str_list(body, "contentTypes", required=False, allowed=INSIGHT_CONTENT_TYPES)
    filter_list(body, "reportFilters", None)


def _build_insight(app: EmulatorApp, req: Request, body: Record) -> Record:
    item = project(body, _INSIGHT_FIELDS)
    item.update(
        id=app.next_id("insight"), accountId=req.account, created_at=iso(now()), created_by="emulator"
    )
    return item


INSIGHT_CONFIGS = Collection(
    endpoint="insight_configs",
    label="insight report configuration",
    path="/v1/accounts/{aid}/insight/reports/configuration",
    store="insight_configs",
    read_scopes=INSIGHT_READ,
    write_scopes=INSIGHT_WRITE,
    validate=_validate_insight,
    build=_build_insight,
    replace=lambda app, req, old, body: replace_fields(old, body, _INSIGHT_FIELDS),
)


# --- generated reports (6.2) --------------------------------------------------------------------
def list_reports(app: EmulatorApp, req: Request) -> Response:
    """``GET /v1/accounts/{aid}/reports/metadata`` (newest first, ``starting_after`` cursor).

    :param app: the emulator.
    :param req: the request.
    """
    aid = req.params["aid"]
    limit = limit_arg(req, 10, 100)
    with app.lock:
        items = sorted(app.reports.get(aid, []), key=lambda r: (r["created_at"], r["id"]), reverse=True)
    items = after_cursor(items, req.arg("starting_after"), lambda r: str(r["id"]))
    page = items[:limit]
    out = [
        {
            **{k: v for k, v in r.items() if k != "size"},
            "signed_url": signing.sign_url(app, req.base_url, f"/_emulator/signed/{aid}/{r['id']}"),
        }
        for r in page
    ]
    extra: dict[str, Any] = {}
    full = app.settings.reports_cursor_mode == "when_full" and len(page) == limit
    if page and (len(items) > limit or full):
        extra["starting_after"] = page[-1]["id"]
    return list_response(app, "reports", out, extra)


def report_bytes_key(aid: str, rid: str) -> str:
    """Content key of a report file.

    :param aid: account id.
    :param rid: report id.
    """
    return f"report:{aid}:{rid}"


def find_report(app: EmulatorApp, aid: str, rid: str) -> dict[str, Any] | None:
    """A report's internal metadata (with ``size``), or ``None``.

    :param app: the emulator.
    :param aid: account id.
    :param rid: report id.
    """
    with app.lock:
        return next((r for r in app.reports.get(aid, []) if r["id"] == rid), None)


def report_stream(aid: str, report: dict[str, Any]) -> Iterator[bytes]:
    """The bytes of a report file, generated while read.

    :param aid: account id.
    :param report: the report metadata.
    """
    ext = "pdf" if report["content_type"] == "application/pdf" else "csv"
    return content_stream(report_bytes_key(aid, report["id"]), report["size"], ext)


def signed_download(app: EmulatorApp, req: Request) -> Response:
    """A report's ``signed_url``: bytes without auth (rejects Authorization and expired links).

    :param app: the emulator.
    :param req: the request.
    """
    aid = req.params["aid"]

    def find() -> tuple[dict[str, Any], Iterator[bytes], str] | None:
        report = find_report(app, aid, req.params["rid"])
        return None if report is None else (report, report_stream(aid, report), report["report_file_name"])

    return signing.serve(app, req, find)


def add_report(
    app: EmulatorApp,
    account_id: str,
    *,
    report_config_id: str | None = None,
    data_from: datetime | str | None = None,
    data_to: datetime | str | None = None,
    content_type: str = "application/pdf",
    size: int = 2048,
) -> dict[str, Any]:
    """Add a generated report and return its metadata (without ``signed_url``).

    :param app: the emulator.
    :param account_id: merchant id.
    :param report_config_id: insight configuration id (default: the account's first).
    :param data_from: start of the data interval (default: start of last month).
    :param data_to: end of the data interval (default: end of last month).
    :param content_type: ``application/pdf`` or ``text/csv``.
    :param size: file size in bytes.
    """
    if account_id not in app.accounts:
        raise KeyError(f"unknown account {account_id}")
    if size < 0:
        raise ValueError("size must not be negative")
    moment = now()
    this_month = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = (
        as_datetime(data_from) if data_from is not None else (this_month - timedelta(days=1)).replace(day=1)
    )
    end = as_datetime(data_to) if data_to is not None else this_month - timedelta(milliseconds=1)
    with app.lock:
        if report_config_id is None:
            configs = list(app.insight_configs.get(account_id, {}))
            report_config_id = configs[0] if configs else None
    report = make_report(
        app.seed,
        account_id,
        report_config_id=report_config_id,
        data_from=start,
        data_to=end,
        content_type=content_type,
        size=size,
        salt=app.next_id("report"),
    )
    report["created_at"] = iso(moment)
    with app.lock:
        app.reports.setdefault(account_id, []).append(report)
    return {k: v for k, v in report.items() if k != "size"}


ROUTES = [
    *SETTLEMENT_REPORT_CONFIGS.routes(),
    *INSIGHT_CONFIGS.routes(),
    Route("GET", "/v1/accounts/{aid}/reports/metadata", list_reports, REPORTS_READ),
    Route("GET", "/_emulator/signed/{aid}/{rid}", signed_download, None),
]
