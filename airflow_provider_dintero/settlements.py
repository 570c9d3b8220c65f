"""
Settlement helpers shared by the hook, the sensor, the trigger and the transfers: the run's time
window, payout provider filters, timestamps (one parser, one formatter, one date part), the
settlements list query, its pager, and the exact window applied to what it returns.

Dintero's 2024 payments spec types the settlements list's date filters ``format: date`` while
the docs describe them as timestamps. The query therefore sends whole days (``YYYY-MM-DD``, a
window widened to the days it touches, which every reading accepts) and
:class:`SettlementWindow` keeps exactly the settlements inside the asked window, judged on the
settlement's own timestamps: the hook's list (sync and async) and so the sensor, the trigger and
the transfer find the same settlements whichever way Dintero reads the filters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_dintero import pipeline
from airflow_provider_dintero.exceptions import DinteroInputError
from airflow_provider_dintero.validation import check_limit
from airflow_provider_dintero.vocabulary import payout_provider_names

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


def parse_timestamp(value: Any) -> datetime | None:
    """
    Read an ISO-8601 date or timestamp as an aware UTC datetime; ``None`` when unreadable.

    A date alone means midnight UTC; a timestamp without an offset is taken as UTC.

    :param value: a :class:`datetime.datetime`, :class:`datetime.date` or ISO-8601 string.
    """
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        try:
            return aware.astimezone(timezone.utc)
        except (OverflowError, ValueError):
            return None
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if not isinstance(value, str) or not value.strip():
        return None
    if len(value) > 10:  # Dintero's form takes the fast path (a sweep reads every listed timestamp)
        try:
            fast = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return parse_timestamp(fast)
    import pendulum

    try:
        parsed = pendulum.parse(value.strip())
    except (ValueError, OverflowError, pendulum.parsing.exceptions.ParserError):
        return None
    if isinstance(parsed, datetime | date):
        return parse_timestamp(parsed)
    return None


def format_timestamp(value: Any, field: str) -> str:
    """
    Render a date or datetime as Dintero's query parameters take it (ISO-8601 UTC).

    :param value: a :class:`datetime.datetime`, :class:`datetime.date` or ISO-8601 string.
    :param field: the parameter name for the error message.
    """
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    parsed = parse_timestamp(value)
    if parsed is None:
        if isinstance(value, datetime):
            raise DinteroInputError(field, "a timestamp Dintero can take (out of range)", value)
        raise DinteroInputError(field, "a date or ISO-8601 timestamp such as 2026-11-01T00:00:00Z", value)
    # isoformat, not strftime: strftime("%Y") does not pad years before 1000
    return parsed.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _is_date_only(value: Any) -> bool:
    if isinstance(value, date) and not isinstance(value, datetime):
        return True
    return isinstance(value, str) and _DATE_ONLY.fullmatch(value.strip()) is not None


def filter_date(value: Any, field: str) -> str:
    """
    The UTC date (``YYYY-MM-DD``) of a filter bound, as the settlements list's date filters take
    it; raise :class:`DinteroInputError` naming ``field`` when it is not a date or timestamp.

    :param value: a :class:`datetime.datetime`, :class:`datetime.date` or ISO-8601 string.
    :param field: the parameter name for the error message.
    """
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    return format_timestamp(value, field)[:10]  # "YYYY-MM-DDT...Z": years are padded to 4 digits


def date_part(value: Any) -> str:
    """
    The UTC date (``YYYY-MM-DD``) of a timestamp, or ``"unknown"`` when it is unreadable.

    :param value: an ISO-8601 timestamp as Dintero returns it.
    """
    parsed = parse_timestamp(value)
    return parsed.date().isoformat() if parsed else "unknown"


def run_window(context: Context) -> tuple[datetime, datetime]:
    """
    Return the run's ``(start, end)`` window: its data interval, when it has a non-empty one.

    An empty interval (Airflow 3's default ``CronTriggerTimetable`` gives ``start == end``) or
    none (a manual run) becomes the day that ends at the interval end, the logical date, or now.

    :param context: the task context.
    """
    from airflow.providers.common.compat.sdk import timezone as airflow_timezone

    start: datetime | None = context.get("data_interval_start")
    end: datetime | None = context.get("data_interval_end")
    if start is not None and end is not None and end > start:
        return start, end
    until: datetime = end or context.get("logical_date") or airflow_timezone.utcnow()
    return until - timedelta(days=1), until


def parse_payment_providers(value: Any, field: str = "payment_providers") -> list[str] | None:
    """
    Normalise a payout provider filter to API names; ``None`` or empty means every provider.

    :param value: ``None``, one provider, or a list; API names of the documented shape or product
        names (``"Walley"``; ``"Dintero Payout"`` gives two API names, see
        :func:`~airflow_provider_dintero.vocabulary.payout_provider_names`).
    :param field: the parameter name for error messages.
    """
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple | set):
        raise DinteroInputError(field, "a list of payout providers", value)
    out: list[str] = []
    for item in value:
        for name in payout_provider_names(item, field=field):
            if name not in out:
                out.append(name)
    return out


#: The settlements list's filters, as the hook's ``list_settlements`` takes them.
SETTLEMENT_FILTERS = (
    "created_at_gte",
    "created_at_lte",
    "item_created_at_gte",
    "item_created_at_lte",
    "payment_providers",
    "payout_destination_id",
    "search",
)


def settlement_query(*, limit: int = 100, **filters: Any) -> dict[str, Any]:
    """
    Build and check the query of the settlements list; raise :class:`DinteroInputError`.

    :param limit: page size, 1 to 1000.
    :param filters: any of :data:`SETTLEMENT_FILTERS` (see ``DinteroPartnerHook.list_settlements``);
        ``created_at_*`` filter the settlement date, ``item_created_at_*`` when it was recorded.
    """
    unknown = sorted(set(filters) - set(SETTLEMENT_FILTERS))
    if unknown:
        raise DinteroInputError(
            ", ".join(unknown), f"one of the settlement filters {', '.join(SETTLEMENT_FILTERS)}"
        )
    params: dict[str, Any] = {"limit": check_limit(limit, 1000)}
    for bound in ("gte", "lte"):
        if (
            filters.get(f"created_at_{bound}") is not None
            and filters.get(f"item_created_at_{bound}") is not None
        ):
            raise DinteroInputError(
                f"created_at_{bound}",
                f"not to be combined with item_created_at_{bound} (Dintero refuses both)",
            )
    for name in _WINDOW_FILTERS:
        value = filters.get(name.replace(".", "_"))
        if value is not None:
            params[name] = filter_date(value, name.replace(".", "_"))
    if filters.get("payment_providers") is not None:
        params["payment_provider"] = parse_payment_providers(filters["payment_providers"]) or []
    for name in ("payout_destination_id", "search"):
        if filters.get(name):
            params[name] = filters[name]
    return params


#: Date filter -> the settlement field it bounds (``created_at.*`` filter the settlement date).
_WINDOW_FILTERS: dict[str, str] = {
    "created_at.gte": "settled_at",
    "created_at.lte": "settled_at",
    "item_created_at.gte": "created_at",
    "item_created_at.lte": "created_at",
}

S = TypeVar("S", bound=Mapping[str, Any])


@dataclass(frozen=True)
class SettlementWindow:
    """
    The exact time window of a settlements query, applied to the settlements it returns.

    Each bound is ``(settlement field, lower, instant)``: a lower bound keeps settlements at or
    after the instant, an upper bound those at or before it (a date alone as an upper bound
    means through the end of that day). A settlement whose field is missing or unreadable is
    kept: Dintero's own filter already selected it and nothing here can judge it.

    :param bounds: the bounds, empty for no window.
    """

    bounds: tuple[tuple[str, bool, datetime], ...] = ()

    @classmethod
    def of(cls, **filters: Any) -> SettlementWindow:
        """
        The window of the hook's ``list_settlements`` keyword filters (others are ignored).

        :param filters: ``created_at_gte``, ``created_at_lte``, ``item_created_at_gte``,
            ``item_created_at_lte`` (dates, timestamps or ISO-8601 strings), checked already.
        """
        bounds: list[tuple[str, bool, datetime]] = []
        for name, fld in _WINDOW_FILTERS.items():
            value = filters.get(name.replace(".", "_"))
            instant = parse_timestamp(value) if value is not None else None
            if instant is None:
                continue
            lower = name.endswith(".gte")
            if not lower and _is_date_only(value):  # the whole day (stdlib: pendulum's + drops the zone)
                instant = datetime.combine(instant.date(), time.max, tzinfo=timezone.utc)
            bounds.append((fld, lower, instant))
        return cls(tuple(bounds))

    def contains(self, settlement: Mapping[str, Any]) -> bool:
        """
        Whether a settlement lies inside the window.

        :param settlement: a settlement as the list returns it.
        """
        for fld, lower, instant in self.bounds:
            seen = parse_timestamp(settlement.get(fld))
            if seen is not None and (seen < instant if lower else seen > instant):
                return False
        return True

    def select(self, settlements: Iterable[S]) -> Iterator[S]:
        """
        The settlements inside the window, lazily and in their order.

        :param settlements: settlements as the list returns them.
        """
        return (s for s in settlements if not self.bounds or self.contains(s))


def settlements_cursor(key: Any, by_created: bool) -> tuple[str, str] | None:
    """
    The next settlements page's ``(starting_after_id, starting_after_date)`` from a
    ``last_evaluated_key``, or ``None`` on the last page. The date is the key's ``created_at``
    when filtering on ``item_created_at``, else its ``settled_at`` (either as a fallback).

    :param key: the page's ``last_evaluated_key``.
    :param by_created: whether the list is filtered on ``item_created_at``.
    """
    if not isinstance(key, dict) or not key.get("id"):
        return None
    preferred = key.get("created_at") if by_created else key.get("settled_at")
    return str(key["id"]), str(preferred or key.get("settled_at") or key.get("created_at"))


def paged_settlements(
    request: pipeline.Request, limits: pipeline.Limits, params: Mapping[str, Any]
) -> pipeline.Flow[None]:
    """
    List settlements page by page (``last_evaluated_key`` -> ``starting_after_id`` and
    ``starting_after_date``); emit each page's items.

    :param request: the first page's request.
    :param limits: the connection's limits.
    :param params: the checked settlements query.
    """
    by_created = any(k.startswith("item_created_at.") for k in params)
    guard = pipeline.CursorGuard(request, limits.max_pages)
    cursor: dict[str, str] = {}
    while True:
        guard.page()
        page = pipeline.with_params(request, {**params, **cursor})
        body = yield from pipeline.call_json(page, limits)
        yield pipeline.Emit(pipeline.items_of(body, page))
        marker = settlements_cursor(
            body.get("last_evaluated_key") if isinstance(body, dict) else None, by_created
        )
        if marker is None:
            return
        guard.check(marker)
        cursor = {"starting_after_id": marker[0], "starting_after_date": marker[1]}
