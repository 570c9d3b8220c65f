"""What every resource module of the emulator shares: the request, routes, scopes, validation.

Nothing here holds state; :class:`~airflow_provider_dintero.emulator.app.EmulatorApp` does.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_dintero.emulator.models import ApiError, Response, field_error

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from airflow_provider_dintero.emulator.app import EmulatorApp

DINTERO_API_BASE = "https://api.dintero.com"
ACCOUNT_RE = re.compile(r"^[PT]\d{8}$")
PARTNER_RE = re.compile(r"^[PT]\d{3}00000$")
AUDIENCE_RE = re.compile(r"^(?P<base>https?://[^/]+)/v1/accounts/(?P<aid>[PT]\d{8})/?$")
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")

ACCOUNTS_READ = ("admin:accounts", "read:accounts")
ACCOUNTS_WRITE = ("admin:accounts", "write:accounts")

#: Scopes of a merchant token minted with a partner's exchange token, and of seeded merchant clients.
MERCHANT_ADMIN_SCOPES: tuple[str, ...] = (
    "admin:accounts",
    "admin:billing",
    "admin:checkout",
    "admin:hooks",
    "admin:insight",
    "admin:reports",
    "admin:settlements",
)
PARTNER_SCOPES: tuple[str, ...] = ("admin:accounts", "read:accounts", "write:accounts")


def now() -> datetime:
    """The current time in UTC."""
    return datetime.now(timezone.utc)


def parse_timestamp(value: str, name: str, end_of_day: bool = False) -> datetime:
    """Parse ``YYYY-MM-DD`` or ISO-8601 (``Z`` or offset; naive means UTC); 400 otherwise.

    :param value: the text.
    :param name: parameter name for the error.
    :param end_of_day: a bare date means the end of that day (for ``.lte`` filters).
    """
    try:
        if DATE_RE.fullmatch(value):
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=timezone.utc)
            return day + timedelta(days=1, microseconds=-1) if end_of_day else day
        text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"invalid date in {name}: {value!r}", code="INVALID_FILTER") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def as_datetime(value: datetime | str) -> datetime:
    """A timezone-aware datetime from a datetime or ISO text (naive means UTC).

    :param value: the value.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return parse_timestamp(value, "timestamp")


@dataclass
class TokenInfo:
    """What the emulator knows about an issued token.

    :param account_id: the account the token acts on.
    :param scopes: granted scopes.
    :param kind: ``access`` or ``exchange``.
    :param expires_at: epoch seconds.
    :param partner_id: for exchange tokens, the partner that exchanged.
    """

    account_id: str
    scopes: frozenset[str]
    kind: str
    expires_at: float
    partner_id: str | None = None

    def is_expired(self) -> bool:
        """Whether the token can no longer be used."""
        return time.time() >= self.expires_at


@dataclass
class Request:
    """A parsed HTTP request as the handlers see it.

    :param method: HTTP method (upper case).
    :param path: path without query.
    :param query: parsed query (repeated keys keep every value).
    :param headers: request headers, lower-cased names.
    :param body: raw body.
    :param host: the ``Host`` header (or the server address).
    :param params: named groups of the matched route.
    :param token: the authenticated bearer token, once checked.
    :param scheme: ``https`` when the emulator serves TLS, else ``http``.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    host: str
    params: dict[str, str] = field(default_factory=dict)
    token: TokenInfo | None = None
    scheme: str = "http"

    @property
    def base_url(self) -> str:
        """``http://<host>`` (``https://`` under TLS) as the client addressed the emulator."""
        return f"{self.scheme}://{self.host}"

    @property
    def account(self) -> str:
        """The account the request acts on: the path's ``{aid}``, else the token's account."""
        aid = self.params.get("aid")
        if aid is not None:
            return aid
        if self.token is None:
            raise ApiError(401, "missing bearer token", code="UNAUTHORIZED")
        return self.token.account_id

    def arg(self, name: str) -> str | None:
        """The first value of a query parameter.

        :param name: parameter name.
        """
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        """The body parsed as JSON; 400 when malformed or empty."""
        if not self.body.strip():
            raise ApiError(400, "request body is required", code="BAD_REQUEST")
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"malformed JSON body: {exc}", code="INVALID_JSON") from None

    def json_object(self) -> dict[str, Any]:
        """The body parsed as a JSON object; 400 otherwise."""
        data = self.json()
        if not isinstance(data, dict):
            raise ApiError(400, "request body must be a JSON object", code="BAD_REQUEST")
        return data


@dataclass
class Route:
    """One route of the emulator.

    :param method: HTTP method.
    :param path: path template with ``{name}`` parameters.
    :param handler: the endpoint function ``(app, request) -> response``.
    :param scopes: any of these scopes is required (``None`` = no bearer auth).
    :param control: a ``/_emulator`` control route (not logged, no faults).
    :param allow_partner_on_merchant: a partner token may call it on the partner's merchants
        (when ``settings.partner_token_on_merchant_settings``).
    """

    method: str
    path: str
    handler: Callable[[EmulatorApp, Request], Response]
    scopes: tuple[str, ...] | None
    control: bool = False
    allow_partner_on_merchant: bool = False
    pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.pattern = re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path))


# --- query parameters ---------------------------------------------------------------------------
def limit_arg(req: Request, default: int, maximum: int) -> int:
    """The ``limit`` query parameter, checked against ``1..maximum``.

    :param req: the request.
    :param default: value when absent.
    :param maximum: largest allowed value.
    """
    raw = req.arg("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"limit must be an integer, got {raw!r}", code="INVALID_FILTER") from None
    if not 1 <= value <= maximum:
        raise ApiError(400, f"limit must be between 1 and {maximum}", code="INVALID_FILTER")
    return value


def after_cursor(
    items: Sequence[dict[str, Any]], cursor: str | None, key: Callable[[dict[str, Any]], str]
) -> list[dict[str, Any]]:
    """The items after the one whose ``key`` is ``cursor`` (all when no cursor); 400 if unknown.

    :param items: the ordered items.
    :param cursor: the ``starting_after`` value.
    :param key: the cursor value of an item.
    """
    if not cursor:
        return list(items)
    keys = [key(item) for item in items]
    if cursor not in keys:
        raise ApiError(400, f"unknown cursor {cursor!r}", code="INVALID_FILTER")
    return list(items[keys.index(cursor) + 1 :])


# --- body validation ----------------------------------------------------------------------------
def require_str(body: dict[str, Any], name: str, max_len: int | None = None) -> str:
    """A required non-empty string field.

    :param body: the JSON object.
    :param name: the field.
    :param max_len: longest allowed value.
    """
    value = body.get(name)
    if value is None:
        raise field_error(name, "is required")
    if not isinstance(value, str) or not value:
        raise field_error(name, "must be a non-empty string")
    if max_len is not None and len(value) > max_len:
        raise field_error(name, f"must be at most {max_len} characters")
    return value


def optional_str(body: dict[str, Any], name: str) -> None:
    """An optional string field (``null`` allowed).

    :param body: the JSON object.
    :param name: the field.
    """
    if name in body and body[name] is not None and not isinstance(body[name], str):
        raise field_error(name, "must be a string")


def str_list(body: dict[str, Any], name: str, required: bool, allowed: tuple[str, ...] | None = None) -> None:
    """An array-of-strings field, optionally limited to ``allowed`` values.

    :param body: the JSON object.
    :param name: the field.
    :param required: whether the field must be present.
    :param allowed: the only values accepted.
    """
    if name not in body:
        if required:
            raise field_error(name, "is required")
        return
    value = body[name]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise field_error(name, "must be an array of strings")
    if allowed is not None:
        for v in value:
            if v not in allowed:
                raise field_error(name, f"{v!r} is not one of {', '.join(allowed)}")


def enum(body: dict[str, Any], name: str, allowed: tuple[str, ...]) -> None:
    """A required string field with one of ``allowed`` values.

    :param body: the JSON object.
    :param name: the field.
    :param allowed: the accepted values.
    """
    value = require_str(body, name)
    if value not in allowed:
        raise field_error(name, f"{value!r} is not one of {', '.join(allowed)}")


def filter_list(body: dict[str, Any], name: str, allowed: tuple[str, ...] | None) -> None:
    """An optional ``[{"filter": ..., "value": ...}]`` field.

    :param body: the JSON object.
    :param name: the field.
    :param allowed: the accepted filter names (``None`` = any).
    """
    if name not in body:
        return
    value = body[name]
    if not isinstance(value, list):
        raise field_error(name, "must be an array")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise field_error(f"{name}[{i}]", "must be an object")
        filt = item.get("filter")
        if not isinstance(filt, str) or (allowed is not None and filt not in allowed):
            raise field_error(f"{name}[{i}].filter", "is missing or not a supported filter")
        if not isinstance(item.get("value"), str):
            raise field_error(f"{name}[{i}].value", "must be a string")


def project(body: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The fields of ``body`` among ``names`` (the writable fields of a resource).

    :param body: the JSON object.
    :param names: the field names kept.
    """
    return {k: body[k] for k in names if k in body}
