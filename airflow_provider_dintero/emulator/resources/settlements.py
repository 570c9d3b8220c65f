"""Settlements: the filtered, keyset-paged list and attachment downloads."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_dintero.emulator import signing
from airflow_provider_dintero.emulator.collection import list_response
from airflow_provider_dintero.emulator.core import (
    DATE_RE,
    Request,
    Route,
    as_datetime,
    limit_arg,
    now,
    parse_timestamp,
)
from airflow_provider_dintero.emulator.models import ApiError, Response
from airflow_provider_dintero.emulator.resources.webhooks import notify
from airflow_provider_dintero.emulator.seed import (
    CONTENT_TYPES,
    content_sha256,
    content_stream,
    make_settlement,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_dintero.emulator.app import EmulatorApp

SETTLEMENTS_READ = (
    "admin:billing",
    "read:billing",
    "admin:reports",
    "read:reports",
    "admin:settlements",
    "read:settlements",
)

#: Filter name -> (settlement field it bounds, the ``strict_dates`` modes in which it takes a bare date only).
_BOUNDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "created_at.gte": ("settled_at", ("spec", "all")),
    "created_at.lte": ("settled_at", ("spec", "all")),
    "item_created_at.gte": ("created_at", ("all",)),
    "item_created_at.lte": ("created_at", ("all",)),
}


def settlement_view(item: dict[str, Any]) -> dict[str, Any]:
    """The public form of a settlement record.

    :param item: the internal record.
    """
    out = {k: v for k, v in item.items() if k != "account_id"}
    out["attachments"] = [{k: v for k, v in a.items() if k != "size"} for a in item["attachments"]]
    return out


def _bound(app: EmulatorApp, req: Request, name: str) -> tuple[str, datetime, bool] | None:
    raw = req.arg(name)
    if raw is None:
        return None
    fld, strict_in = _BOUNDS[name]
    if app.settings.strict_dates in strict_in and not DATE_RE.fullmatch(raw):
        message = f"must be a date (YYYY-MM-DD), got {raw!r}"
        raise ApiError(
            400, f"{name}: {message}", code="INVALID_FILTER", errors=[{"field": name, "message": message}]
        )
    upper = name.endswith(".lte")
    return fld, parse_timestamp(raw, name, end_of_day=upper), upper


def list_settlements(app: EmulatorApp, req: Request) -> Response:
    """``GET /v1/accounts/{aid}/settlements`` with filters and keyset paging, newest first.

    :param app: the emulator.
    :param req: the request.
    """
    aid = req.params["aid"]
    q = req.query
    limit = limit_arg(req, 10, 1000)
    for a, b in (("created_at.gte", "item_created_at.gte"), ("created_at.lte", "item_created_at.lte")):
        if a in q and b in q:
            raise ApiError(400, f"{a} cannot be combined with {b}", code="INVALID_FILTER")
    if ("starting_after_id" in q) != ("starting_after_date" in q):
        raise ApiError(
            400, "starting_after_id and starting_after_date must be used together", code="INVALID_FILTER"
        )
    by_created = "item_created_at.gte" in q or "item_created_at.lte" in q
    key_field = "created_at" if by_created else "settled_at"
    bounds = [b for b in (_bound(app, req, name) for name in _BOUNDS) if b is not None]
    providers = set(q.get("payment_provider", []))
    payout_dest = req.arg("payout_destination_id")
    search = (req.arg("search") or "").lower()
    cursor: tuple[datetime, str] | None = None
    if "starting_after_id" in q:
        cursor = (
            parse_timestamp(q["starting_after_date"][0], "starting_after_date"),
            q["starting_after_id"][0],
        )

    def keep(item: dict[str, Any]) -> bool:
        for fld, bound, upper in bounds:
            ts = parse_timestamp(item[fld], fld)
            if (ts > bound) if upper else (ts < bound):
                return False
        if providers and item["provider"] not in providers:
            return False
        if payout_dest is not None and item.get("payout_destination_id") != payout_dest:
            return False
        return not search or search in item["id"].lower()

    with app.lock:
        items = [i for i in app.settlements.get(aid, []) if keep(i)]
    keyed = sorted(
        ((parse_timestamp(i[key_field], key_field), i["id"], i) for i in items),
        key=lambda t: (t[0], t[1]),
        reverse=True,
    )
    if cursor is not None:
        keyed = [t for t in keyed if (t[0], t[1]) < cursor]
    page = keyed[:limit]
    extra: dict[str, Any] = {}
    more = len(keyed) > limit
    if page and (more or (app.settings.last_page_key_mode == "when_full" and len(page) == limit)):
        last = page[-1][2]
        key = {"id": last["id"], "account_id": aid, "settled_at": last["settled_at"]}
        if by_created:
            key["created_at"] = last["created_at"]
        extra["last_evaluated_key"] = key
    return list_response(app, "settlements", [settlement_view(t[2]) for t in page], extra)


def find_attachment(app: EmulatorApp, aid: str, sid: str, att: str) -> dict[str, Any]:
    """An internal attachment record, else 404.

    :param app: the emulator.
    :param aid: account id.
    :param sid: settlement id.
    :param att: attachment id.
    """
    with app.lock:
        settlement = next((s for s in app.settlements.get(aid, []) if s["id"] == sid), None)
        if settlement is None:
            raise ApiError(404, f"settlement {sid} not found")
        attachment = next((a for a in settlement["attachments"] if a["id"] == att), None)
        if attachment is None:
            raise ApiError(404, f"attachment {att} not found")
        return dict(attachment)


def _content_key(aid: str, sid: str, att: str) -> str:
    return f"attachment:{aid}:{sid}:{att}"


def attachment_stream(
    app: EmulatorApp, aid: str, sid: str, att: str
) -> tuple[dict[str, Any], Iterator[bytes]]:
    """The attachment record and a generator of its bytes.

    :param app: the emulator.
    :param aid: account id.
    :param sid: settlement id.
    :param att: attachment id.
    """
    record = find_attachment(app, aid, sid, att)
    return record, content_stream(_content_key(aid, sid, att), record["size"], record["extension"])


def attachment_sha256(app: EmulatorApp, aid: str, sid: str, att: str) -> str:
    """sha256 of an attachment's content, computed by streaming.

    :param app: the emulator.
    :param aid: account id.
    :param sid: settlement id.
    :param att: attachment id.
    """
    record = find_attachment(app, aid, sid, att)
    return content_sha256(_content_key(aid, sid, att), record["size"], record["extension"])


def attachment(app: EmulatorApp, req: Request) -> Response:
    """``GET /v1/accounts/{aid}/settlements/{sid}/attachments/{att}`` (bytes, or 302 when redirecting).

    :param app: the emulator.
    :param req: the request.
    """
    aid, sid, att = req.params["aid"], req.params["sid"], req.params["att"]
    record, stream = attachment_stream(app, aid, sid, att)
    if app.settings.attachment_redirect:
        target = app.settings.redirect_base_url or app.alt_base_url
        location = signing.sign_url(app, target, f"/_emulator/blobs/{aid}/{sid}/{att}")
        return Response.empty(302, headers={"Location": location})
    return signing.file_response(record, stream, f"{att}.{record['extension']}")


def blob_download(app: EmulatorApp, req: Request) -> Response:
    """Redirect target of attachment downloads: bytes without auth (rejects Authorization).

    :param app: the emulator.
    :param req: the request.
    """
    aid, sid, att = req.params["aid"], req.params["sid"], req.params["att"]

    def find() -> tuple[dict[str, Any], Iterator[bytes], str] | None:
        try:
            record, stream = attachment_stream(app, aid, sid, att)
        except ApiError:
            return None
        return record, stream, f"{att}.{record['extension']}"

    return signing.serve(app, req, find)


def add_settlement(
    app: EmulatorApp,
    account_id: str,
    *,
    provider: str = "vipps",
    created_at: datetime | str | None = None,
    settled_at: datetime | str | None = None,
    attachment_sizes: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Add a settlement (fires ``settlement_add`` webhooks) and return its public form.

    :param app: the emulator.
    :param account_id: merchant id.
    :param provider: payout provider.
    :param created_at: when it was registered (default now).
    :param settled_at: settlement date (default ``created_at`` minus one day).
    :param attachment_sizes: ``{extension: size}`` of the Dintero attachments; key ``source``
        sizes the provider file. Default: every format at the seed's attachment size.
    """
    if account_id not in app.accounts:
        raise KeyError(f"unknown account {account_id}")
    for ext, size in (attachment_sizes or {}).items():
        if ext != "source" and ext not in CONTENT_TYPES:
            raise ValueError(f"unknown attachment extension {ext!r}")
        if int(size) < 0:
            raise ValueError("attachment sizes must not be negative")
    created = as_datetime(created_at) if created_at is not None else now()
    settled = as_datetime(settled_at) if settled_at is not None else created - timedelta(days=1)
    salt = app.next_id("settlement")
    item = make_settlement(app.seed, account_id, provider, created, settled, attachment_sizes, salt)
    with app.lock:
        app.settlements.setdefault(account_id, []).append(item)
    view = settlement_view(item)
    notify(app, account_id, "settlement_add", view)
    return view


ROUTES = [
    Route("GET", "/v1/accounts/{aid}/settlements", list_settlements, SETTLEMENTS_READ),
    Route("GET", "/v1/accounts/{aid}/settlements/{sid}/attachments/{att}", attachment, SETTLEMENTS_READ),
    Route("GET", "/_emulator/blobs/{aid}/{sid}/{att}", blob_download, None),
]
