"""
Hook for Dintero's Partner API, and the API's vocabulary (errors, typed dicts, enums).

The hook holds one pooled :class:`requests.Session`, mints and caches access tokens (the
connection's own account by client credentials, a partner's merchants through the exchange
token flow), retries what is safe to retry, and exposes one method per API operation.

Example::

    from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook

    hook = DinteroPartnerHook(dintero_conn_id="dintero_default")
    for merchant in hook.list_merchants():
        for settlement in hook.list_settlements(merchant["account_id"], item_created_at_gte="2026-11-01"):
            print(settlement["id"], settlement["provider"])
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import ipaddress
import json
import logging
import random
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from enum import Enum
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, TypedDict
from urllib.parse import parse_qsl, urljoin, urlsplit

import requests
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, BaseHook
from requests.auth import HTTPBasicAuth

from airflow_provider_dintero import __version__

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Connection

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.dintero.com"
DEFAULT_CHECKOUT_BASE_URL = "https://checkout.dintero.com"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_RETRY_BACKOFF = 1.0
DEFAULT_RETRY_MAX_WAIT = 60.0
DEFAULT_TOKEN_REFRESH_MARGIN = 300.0
USER_AGENT = f"airflow-provider-dintero/{__version__}"

ACCOUNT_ID_PATTERN = re.compile(r"^[PT][0-9]{8}$")  # ASCII digits only; used with fullmatch
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_SIGNED_QUERY_KEYS = ("signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token", "sig")


# --------------------------------------------------------------------------------------------
# Vocabulary: enums and typed dicts
# --------------------------------------------------------------------------------------------


class PayoutProvider(str, Enum):
    """Payout providers whose settlements Dintero collects (the ``provider`` field)."""

    DINTERO_PAYOUT = "dintero_psp"
    VIPPS = "vipps"
    SWEDBANK_PAY = "payex"
    BAMBORA = "bambora"
    WALLEY = "collector"
    KLARNA = "klarna"

    @classmethod
    def parse(cls, value: str, *, field: str = "payment_providers") -> PayoutProvider:
        """
        Turn an API value or a friendly name (``"swedbank_pay"``, ``"Walley"``) into a member.

        :param value: the provider as the API spells it, or its product name.
        :param field: the parameter name used in the error message.
        """
        key = str(value).strip().lower().replace(" ", "_").replace("-", "_")
        for member in cls:
            if key in (member.value, member.name.lower()):
                return member
        raise DinteroInputError(field, f"a payout provider, one of {', '.join(m.value for m in cls)}", value)


class AttachmentKind(str, Enum):
    """Which settlement attachments to copy: the provider's own files, Dintero's, or both."""

    ALL = "all"
    SOURCE = "source"
    NORMALIZED = "normalized"


#: Scope names Dintero documents for API client grants (docs.dintero.com/docs/clients and the
#: endpoint pages of the operations this provider calls).
KNOWN_SCOPES: frozenset[str] = frozenset(
    [
        f"{level}:{area}"
        for level in ("admin", "write", "read")
        for area in (
            "accounts",
            "automations",
            "billing",
            "checkout",
            "customers",
            "discounts",
            "hooks",
            "insight",
            "locations",
            "receipts",
            "reports",
            "settlements",
        )
    ]
    + [
        "admin:account",
        "write:accounts:/auth/users",
        "create:account",
        "create:applicant",
        "create:accounts:auth:refresh_token",
        "create:customers:/users",
        "public:customers",
        "user:customers",
        "user:receipts",
        "admin:shopping",
        "write:checkout:/admin/session/profiles",
    ]
)

#: Webhook events this provider works with (Dintero documents about 40; the API validates).
WEBHOOK_EVENTS: frozenset[str] = frozenset(
    [
        "settlement_add",
        "account_add",
        "account_update",
        "checkout_transaction",
        "checkout_authorization",
        "approval_payout_destination_update",
        "cdd_case_update",
    ]
)


class AccessToken(TypedDict, total=False):
    """Response of the token endpoints."""

    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str


class SettlementAttachment(TypedDict, total=False):
    """One file of a settlement: the provider's source report or Dintero's normalized one."""

    id: str
    key: str
    content_type: str
    extension: str
    created_by: str


class SettlementAmount(TypedDict, total=False):
    """Amounts of a settlement per currency, in the currency's smallest unit."""

    amount: int
    capture: int
    refund: int
    fee: int
    currency: str


class Settlement(TypedDict, total=False):
    """A settlement report from a payout provider (``GET /v1/accounts/{aid}/settlements``)."""

    id: str
    start_at: str
    end_at: str
    created_at: str
    updated_at: str
    settled_at: str
    email_received_at: str
    provider: str
    provider_reference: str
    attachments: list[SettlementAttachment]
    amounts: list[SettlementAmount]
    payment_status: str
    store_id: str
    payout_destination_id: str


class ReportMetadata(TypedDict, total=False):
    """A generated insight report (``GET /v1/accounts/{aid}/reports/metadata``)."""

    id: str
    report_job_id: str
    account_id: str
    content_type: str
    created_at: str
    data_from: str
    data_to: str
    schedule: str
    report_file_name: str
    custom_report_name: str
    report_config_id: str
    data_type: str
    signed_url: str


class Account(TypedDict, total=False):
    """Account settings (``GET /v1/accounts/{aid}/management/settings``) or a partner's merchant."""

    account_id: str
    partner_id: str
    active: bool
    livemode: bool
    company: dict[str, Any]
    applicant: dict[str, Any]
    paging_token: str


class ApiClient(TypedDict, total=False):
    """An API client. ``client_secret`` is present only in create and rotate responses."""

    id: str
    client_id: str
    name: str
    description: str
    callbacks: list[str]
    created_at: str
    updated_at: str
    client_secret: str


class ClientGrant(TypedDict, total=False):
    """A grant of scopes on an audience to an API client (by the client's UUID ``id``)."""

    id: str
    client_id: str
    audience: str
    scope: list[str]
    type: str
    created_at: str


class WebhookSubscription(TypedDict, total=False):
    """A webhook subscription (``/v1/accounts/{aid}/hooks/subscriptions``)."""

    id: str
    config: dict[str, Any]
    events: list[str]
    active: bool
    created_at: str


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class DinteroInputError(AirflowFailException, ValueError):
    """
    A parameter or connection field is not what Dintero accepts; raised before any request.

    A configuration error: the task fails at once, without using its retries (it is an
    ``AirflowFailException``, hence still an ``AirflowException``).

    :param field: the parameter or connection field at fault.
    :param expected: what was expected, in words.
    :param value: the value received (never a secret: callers pass ``None`` for those).
    """

    def __init__(self, field: str, expected: str, value: Any = None) -> None:
        self.field = field
        self.expected = expected
        shown = "" if value is None else f", got {value!r}"
        super().__init__(f"{field}: expected {expected}{shown}")


class DinteroApiError(AirflowException):
    """
    Dintero answered with an error, or could not be reached.

    The message names the operation, the account, the HTTP status, Dintero's error code and
    message, and the request id when one is returned. It never carries a credential.

    :param message: what went wrong, in words.
    :param status: the HTTP status (``None`` when no response arrived).
    :param code: Dintero's ``error.code``.
    :param api_message: Dintero's ``error.message``.
    :param errors: Dintero's ``error.errors`` (field-level details), if any.
    :param account_id: the account the call was made for.
    :param request_id: the response's request id header, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        api_message: str | None = None,
        errors: list[Any] | None = None,
        account_id: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.api_message = api_message
        self.errors = errors or []
        self.account_id = account_id
        self.request_id = request_id
        super().__init__(message)


class DinteroAuthError(DinteroApiError):
    """Dintero refused the credentials or the token (401), or the grant lacks a scope (403)."""


class DinteroNotFoundError(DinteroApiError):
    """The account or resource does not exist, or is not visible to these credentials (404)."""


class DinteroStreamError(DinteroApiError):
    """A download ended before the announced number of bytes arrived."""


# --------------------------------------------------------------------------------------------
# Validation helpers (shared by the hook and the operators)
# --------------------------------------------------------------------------------------------


def validate_account_id(value: Any, field: str = "account_id") -> str:
    """
    Return ``value`` if it is a Dintero account id, else raise :class:`DinteroInputError`.

    :param value: the candidate account id.
    :param field: the parameter name for the error message.
    """
    if not isinstance(value, str) or not ACCOUNT_ID_PATTERN.fullmatch(value):
        raise DinteroInputError(
            field, "a Dintero account id: T or P followed by 8 digits, e.g. T11200001", value
        )
    return value


def is_partner_account(account_id: str) -> bool:
    """
    Tell whether ``account_id`` is a partner account (its id ends in five zeros).

    :param account_id: a valid account id.
    """
    return account_id.endswith("00000")


def validate_base_url(value: Any, field: str = "host") -> str:
    """
    Return the URL without a trailing slash if it is https, or http to a loopback host.

    :param value: the candidate base URL.
    :param field: the connection field or parameter name for the error message.
    """
    if not isinstance(value, str) or not value.strip():
        raise DinteroInputError(field, "a base URL such as https://api.dintero.com", value)
    parts = urlsplit(value.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise DinteroInputError(field, "an https:// URL such as https://api.dintero.com", value)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise DinteroInputError(
            field, "https (plain http is allowed only to a loopback host such as 127.0.0.1)", value
        )
    return value.strip().rstrip("/")


def is_loopback_host(hostname: str) -> bool:
    """
    Tell whether ``hostname`` is ``localhost`` or a loopback IP address.

    :param hostname: a host name or IP literal.
    """
    if hostname.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False


def format_timestamp(value: Any, field: str) -> str:
    """
    Render a date or datetime as Dintero's query parameters take it (ISO-8601 UTC).

    :param value: a :class:`datetime.datetime`, :class:`datetime.date` or ISO-8601 string.
    :param field: the parameter name for the error message.
    """
    import pendulum

    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        try:  # isoformat, not strftime: strftime("%Y") does not pad years before 1000
            utc = aware.astimezone(timezone.utc).replace(tzinfo=None)
        except (OverflowError, ValueError):
            raise DinteroInputError(field, "a timestamp Dintero can take (out of range)", value) from None
        return utc.isoformat(timespec="microseconds") + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and value.strip():
        try:
            parsed = pendulum.parse(value.strip())
        except (ValueError, pendulum.parsing.exceptions.ParserError):
            parsed = None
        if isinstance(parsed, datetime):
            return format_timestamp(parsed, field)
        if isinstance(parsed, date):
            return parsed.isoformat()
    raise DinteroInputError(field, "a date or ISO-8601 timestamp such as 2026-11-01T00:00:00Z", value)


def _refuse_insecure_redirect(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """
    A ``requests`` response hook: refuse to follow a redirect to plain http on a non-loopback host.

    :param response: a response; redirects are checked before ``requests`` follows them.
    """
    if response.is_redirect:
        target = urljoin(response.url, response.headers.get("location", ""))
        try:
            validate_base_url(target, "redirect")
        except DinteroInputError as exc:
            response.close()
            raise DinteroInputError("redirect", f"a redirect to {exc.expected}", redact_url(target)) from None
    return response


def redact_url(url: str) -> str:
    """
    Return ``url`` without its query string, for logs: signed URLs carry credentials there.

    :param url: any URL.
    """
    parts = urlsplit(url)
    shown = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return f"{shown}?<redacted>" if parts.query else shown


def mask_secret(value: str | None) -> None:
    """
    Register ``value`` with Airflow's secrets masker so that it is redacted from every log.

    For a pre-signed URL only its signature parameters are registered: they are what makes
    the URL a credential, and with them redacted the URL can never appear whole. (Each
    registration makes the masker's pattern longer, so one per report rather than two.)

    :param value: a token, client secret or signed URL.
    """
    if not value:
        return
    from airflow.providers.common.compat.sdk import mask_secret as _airflow_mask_secret

    signatures = []
    if "://" in value and "?" in value:
        signatures = [
            item
            for key, item in parse_qsl(urlsplit(value).query)
            if key.lower() in _SIGNED_QUERY_KEYS and len(item) >= 8
        ]
    for secret in signatures or [value]:
        _airflow_mask_secret(secret)


class _SignedQueryLogFilter(logging.Filter):
    """
    Redact signed-URL credentials from urllib3's request log lines.

    At DEBUG level urllib3 logs every request's path with its query string, which for a
    pre-signed URL is the credential; Airflow's masker only guards its own handlers.
    """

    _pattern = re.compile(
        r"(?i)([?&](?:" + "|".join(re.escape(k) for k in _SIGNED_QUERY_KEYS) + r")=)[^&\s\"']+"
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._pattern.sub(r"\1<redacted>", a) if isinstance(a, str) else a for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = self._pattern.sub(r"\1<redacted>", record.msg)
        return True


_URLLIB3_LOGGER = logging.getLogger("urllib3.connectionpool")
if not any(isinstance(f, _SignedQueryLogFilter) for f in _URLLIB3_LOGGER.filters):
    _URLLIB3_LOGGER.addFilter(_SignedQueryLogFilter())


# --------------------------------------------------------------------------------------------
# Token cache
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CachedToken:
    access_token: str
    expires_at: float  # epoch seconds


class TokenCache:
    """
    Process-wide cache of access tokens, keyed by (base URL, client id, account id).

    Safe under threads: one lock guards the map, and one lock per key makes concurrent
    callers for the same account wait for a single mint instead of minting in parallel.
    """

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, str], _CachedToken] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str, str], threading.Lock] = {}

    def key_lock(self, key: tuple[str, str, str]) -> threading.Lock:
        """
        Return the lock serialising mints for ``key``.

        :param key: (base URL, client id, account id).
        """
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def get(self, key: tuple[str, str, str], margin: float) -> str | None:
        """
        Return a cached token that is valid for at least ``margin`` more seconds.

        :param key: (base URL, client id, account id).
        :param margin: seconds before expiry from which a token counts as stale.
        """
        with self._lock:
            cached = self._tokens.get(key)
        if cached and cached.expires_at - margin > time.time():
            return cached.access_token
        return None

    def put(self, key: tuple[str, str, str], token: str, expires_at: float) -> None:
        """
        Store a token.

        :param key: (base URL, client id, account id).
        :param token: the access token.
        :param expires_at: epoch seconds at which it expires.
        """
        with self._lock:
            self._tokens[key] = _CachedToken(token, expires_at)

    def drop(self, key: tuple[str, str, str], token: str | None = None) -> None:
        """
        Forget the token for ``key`` (only if it is still ``token``, when given).

        :param key: (base URL, client id, account id).
        :param token: the token known to be bad; a newer one is kept.
        """
        with self._lock:
            cached = self._tokens.get(key)
            if cached and (token is None or cached.access_token == token):
                del self._tokens[key]

    def clear(self) -> None:
        """Forget every token."""
        with self._lock:
            self._tokens.clear()


#: The cache shared by every hook instance in this process.
TOKEN_CACHE = TokenCache()


# --------------------------------------------------------------------------------------------
# Streaming download
# --------------------------------------------------------------------------------------------


class DownloadStream:
    """
    A file-like, read-only view of a streamed HTTP response body.

    ``read()`` raises :class:`DinteroStreamError` when the connection ends before
    ``Content-Length`` bytes arrived, so a truncated file is never mistaken for a whole one.

    :param response: a ``requests`` response opened with ``stream=True``.
    :param description: what is being downloaded, for error messages (no credentials).
    :param account_id: the account, for error messages.
    """

    def __init__(self, response: requests.Response, description: str, account_id: str | None) -> None:
        self._response = response
        self._raw = response.raw
        self.description = description
        self.account_id = account_id
        length = response.headers.get("Content-Length")
        self.content_length: int | None = int(length) if length and length.isdigit() else None
        self.content_type: str = response.headers.get("Content-Type", "application/octet-stream")
        self.bytes_read = 0
        self._sha256 = hashlib.sha256()

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the bytes read so far."""
        return self._sha256.hexdigest()

    def readable(self) -> bool:
        """Tell io-aware callers (boto3) that this object can be read."""
        return True

    def read(self, size: int = -1) -> bytes:
        """
        Read up to ``size`` bytes (all remaining when negative).

        :param size: the maximum number of bytes to return.
        """
        try:
            chunk = self._raw.read(None if size is None or size < 0 else size, decode_content=True)
        except Exception as exc:  # urllib3 ProtocolError / IncompleteRead / ReadTimeout
            raise DinteroStreamError(
                f"Download of {self.description} for account {self.account_id} broke off after "
                f"{self.bytes_read} bytes: {type(exc).__name__}",
                account_id=self.account_id,
            ) from None
        if chunk:
            self.bytes_read += len(chunk)
            self._sha256.update(chunk)
        elif self.content_length is not None and self.bytes_read < self.content_length:
            raise DinteroStreamError(
                f"Download of {self.description} for account {self.account_id} ended after "
                f"{self.bytes_read} of {self.content_length} bytes",
                account_id=self.account_id,
            )
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(1024 * 1024):
            yield chunk

    def close(self) -> None:
        """Release the connection."""
        self._response.close()


# --------------------------------------------------------------------------------------------
# The hook
# --------------------------------------------------------------------------------------------


class DinteroPartnerHook(BaseHook):
    """
    Talk to Dintero's API as a partner (or a merchant) account.

    The connection (type ``dintero``) holds the API client: *Client ID* (login), *Client
    secret* (password), *Base URL* (host, default ``https://api.dintero.com``) and, in its
    extra, ``account_id`` plus optional ``checkout_base_url``, ``timeout``, ``max_retries``,
    ``retry_backoff``, ``retry_max_wait``, ``token_cache`` (``memory`` or ``variable``),
    ``token_refresh_margin`` and ``verify``.

    Every method takes the ``account_id`` it acts on. ``None`` means the connection's own
    account; a merchant of a partner connection is reached through the exchange token flow.

    :param dintero_conn_id: the Airflow connection id.

    Example::

        hook = DinteroPartnerHook()
        account = hook.get_account("T11200001")
        print(account["company"]["business_name"])
    """

    conn_name_attr = "dintero_conn_id"
    default_conn_name = "dintero_default"
    conn_type = "dintero"
    hook_name = "Dintero"

    def __init__(self, dintero_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.dintero_conn_id = dintero_conn_id

    # ---------------------------------------------------------------- connection form

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Return the extra fields of the connection form (Airflow 2.11's UI)."""
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import IntegerField, StringField
        from wtforms.validators import AnyOf, NumberRange, Optional, Regexp

        return {
            "account_id": StringField(
                lazy_gettext("Account ID"),
                widget=BS3TextFieldWidget(),
                validators=[Optional(), Regexp(ACCOUNT_ID_PATTERN.pattern, message="T or P and 8 digits")],
                description="Partner (ends in 00000) or merchant account, e.g. T11200000",
            ),
            "checkout_base_url": StringField(
                lazy_gettext("Checkout base URL"),
                widget=BS3TextFieldWidget(),
                default=DEFAULT_CHECKOUT_BASE_URL,
            ),
            "timeout": IntegerField(
                lazy_gettext("Request timeout (seconds)"),
                widget=BS3TextFieldWidget(),
                validators=[Optional(), NumberRange(min=1)],
                default=int(DEFAULT_TIMEOUT),
            ),
            "max_retries": IntegerField(
                lazy_gettext("Retries on 429/5xx/connection errors"),
                widget=BS3TextFieldWidget(),
                validators=[Optional(), NumberRange(min=0, max=20)],
                default=DEFAULT_MAX_RETRIES,
            ),
            "cache_mode": StringField(
                lazy_gettext("Token cache (memory or variable)"),
                widget=BS3TextFieldWidget(),
                validators=[Optional(), AnyOf(["memory", "variable"])],
                default="memory",
            ),
        }

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Return how the standard connection fields are shown (Airflow 2.11's UI)."""
        return {
            "hidden_fields": ["schema", "port"],
            "relabeling": {"host": "Base URL", "login": "Client ID", "password": "Client secret"},
            "placeholders": {
                "host": DEFAULT_BASE_URL,
                "login": "API client id",
                "password": "API client secret",
                "account_id": "T11200000",
            },
        }

    # ---------------------------------------------------------------- configuration

    @cached_property
    def connection(self) -> Connection:
        """The Airflow connection, read once per hook."""
        return self.get_connection(self.dintero_conn_id)

    @cached_property
    def _extra(self) -> dict[str, Any]:
        extra = self.connection.extra_dejson
        return extra if isinstance(extra, dict) else {}

    def _extra_number(self, key: str, default: float, minimum: float = 0.0) -> float:
        raw = self._extra.get(key, default)
        if raw in (None, ""):
            return default
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise DinteroInputError(f"extra.{key}", f"a number >= {minimum:g}", raw) from None
        if value < minimum:
            raise DinteroInputError(f"extra.{key}", f"a number >= {minimum:g}", raw)
        return value

    @cached_property
    def account_id(self) -> str:
        """The connection's own account id (``extra.account_id``)."""
        return validate_account_id(self._extra.get("account_id"), "extra.account_id")

    @cached_property
    def client_id(self) -> str:
        """The API client id (the connection's login)."""
        login = self.connection.login
        if not login or not str(login).strip():
            raise DinteroInputError("login", "the Dintero API client id (Client ID)")
        return str(login).strip()

    @property
    def _client_secret(self) -> str:
        secret = self.connection.password
        if not secret:
            raise DinteroInputError("password", "the Dintero API client secret (Client secret)")
        mask_secret(secret)
        return str(secret)

    @cached_property
    def base_url(self) -> str:
        """The API base URL, e.g. ``https://api.dintero.com`` (no trailing slash)."""
        conn = self.connection
        host = (conn.host or "").strip()
        if not host:
            return DEFAULT_BASE_URL
        if "://" not in host:
            scheme = str(self._extra.get("scheme") or "https")
            port = f":{conn.port}" if conn.port else ""
            host = f"{scheme}://{host}{port}"
        elif conn.port and urlsplit(host).port is None:
            host = f"{host.rstrip('/')}:{conn.port}"
        return validate_base_url(host, "host")

    @cached_property
    def checkout_base_url(self) -> str:
        """The checkout API base URL (payment profiles), default ``https://checkout.dintero.com``."""
        raw = self._extra.get("checkout_base_url") or DEFAULT_CHECKOUT_BASE_URL
        return validate_base_url(raw, "extra.checkout_base_url")

    @cached_property
    def timeout(self) -> float:
        """Seconds to wait for a connection or a read, per request."""
        return self._extra_number("timeout", DEFAULT_TIMEOUT, minimum=0.1)

    @cached_property
    def max_retries(self) -> int:
        """How many times a request is retried on 429, 5xx or a connection error."""
        return int(self._extra_number("max_retries", DEFAULT_MAX_RETRIES))

    @cached_property
    def retry_backoff(self) -> float:
        """First back-off in seconds; doubles on each retry, with jitter."""
        return self._extra_number("retry_backoff", DEFAULT_RETRY_BACKOFF)

    @cached_property
    def retry_max_wait(self) -> float:
        """The longest single wait between retries, including a server's ``Retry-After``."""
        return self._extra_number("retry_max_wait", DEFAULT_RETRY_MAX_WAIT)

    @cached_property
    def token_refresh_margin(self) -> float:
        """Seconds before expiry at which a cached token is replaced."""
        return self._extra_number("token_refresh_margin", DEFAULT_TOKEN_REFRESH_MARGIN)

    @cached_property
    def token_cache_mode(self) -> Literal["memory", "variable"]:
        """``memory`` (per process) or ``variable`` (shared through an Airflow Variable)."""
        key = "cache_mode" if self._extra.get("cache_mode") else "token_cache"  # token_cache: the old name
        mode = str(self._extra.get(key) or "memory").lower()
        if mode not in ("memory", "variable"):
            raise DinteroInputError(f"extra.{key}", "'memory' or 'variable'", mode)
        return "variable" if mode == "variable" else "memory"

    @cached_property
    def verify(self) -> bool | str:
        """TLS verification: on by default; a CA bundle path may be given in ``extra.verify``."""
        raw = self._extra.get("verify", True)
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        return raw if isinstance(raw, (bool, str)) else True

    def validate_connection(self) -> None:
        """Check every connection field before any request; raise :class:`DinteroInputError`."""
        _ = (self.account_id, self.client_id, self._client_secret, self.base_url, self.checkout_base_url)
        _ = (self.timeout, self.max_retries, self.retry_backoff, self.retry_max_wait, self.token_cache_mode)
        _ = self.token_refresh_margin

    @cached_property
    def _connection_checked(self) -> bool:
        """Every connection field checked once, before this hook's first request."""
        self.validate_connection()
        return True

    @property
    def is_partner(self) -> bool:
        """Whether the connection's account is a partner account."""
        return is_partner_account(self.account_id)

    def resolve_account_id(self, account_id: str | None, field: str = "account_id") -> str:
        """
        Return the account a call acts on, checking that this connection can reach it.

        :param account_id: a merchant or the connection's own account; ``None`` for the latter.
        :param field: the parameter name for error messages.
        """
        own = self.account_id
        if account_id is None:
            return own
        account_id = validate_account_id(account_id, field)
        if account_id != own and not is_partner_account(own):
            raise DinteroInputError(
                field,
                f"the connection's own account {own}: a merchant connection cannot act on other "
                "accounts (use a partner connection, whose account id ends in 00000)",
                account_id,
            )
        return account_id

    # ---------------------------------------------------------------- HTTP session

    def get_conn(self) -> requests.Session:
        """Return the hook's pooled HTTP session (one per hook instance)."""
        return self._session

    @cached_property
    def _session(self) -> requests.Session:
        session = requests.Session()
        session.headers.update(
            {
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
                "Dintero-System-Name": "apache-airflow",
                "Dintero-System-Version": _airflow_version(),
                "Dintero-System-Plugin-Name": "airflow-provider-dintero",
                "Dintero-System-Plugin-Version": __version__,
            }
        )
        session.verify = self.verify
        session.hooks["response"].append(_refuse_insecure_redirect)
        return session

    def close(self) -> None:
        """Close the pooled connections."""
        if "_session" in self.__dict__:
            self._session.close()
            del self.__dict__["_session"]

    # ---------------------------------------------------------------- tokens

    def _cache_key(self, account_id: str) -> tuple[str, str, str]:
        return (self.base_url, self.client_id, account_id)

    def audience(self, account_id: str) -> str:
        """
        Return the token audience for an account: ``<base URL>/v1/accounts/<account_id>``.

        :param account_id: the account the token is for.
        """
        return f"{self.base_url}/v1/accounts/{account_id}"

    def get_token(self, account_id: str | None = None) -> str:
        """
        Return a valid access token for ``account_id``, minting one only when needed.

        ``None`` means the connection's own account (client credentials). A merchant of a
        partner connection is reached through the exchange token flow. Tokens are cached per
        (base URL, client id, account) across hook instances in this process, and, with
        ``token_cache: variable``, shared through an Airflow Variable.

        :param account_id: the account to act on.
        """
        account_id = self.resolve_account_id(account_id)
        key = self._cache_key(account_id)
        margin = self.token_refresh_margin
        token = TOKEN_CACHE.get(key, margin)
        if token:
            return token
        with TOKEN_CACHE.key_lock(key):
            token = TOKEN_CACHE.get(key, margin)
            if token:
                return token
            shared = self._read_shared_token(key, margin)
            if shared:
                TOKEN_CACHE.put(key, *shared)
                return shared[0]
            minted = self._mint_token(account_id)
            expires_at = time.time() + float(minted.get("expires_in") or 0)
            TOKEN_CACHE.put(key, minted["access_token"], expires_at)
            self._write_shared_token(key, minted["access_token"], expires_at)
            return minted["access_token"]

    def invalidate_token(self, account_id: str | None = None, token: str | None = None) -> None:
        """
        Forget the cached token for an account (after Dintero rejected it).

        :param account_id: the account; ``None`` for the connection's own.
        :param token: only forget it if the cache still holds this token.
        """
        key = self._cache_key(self.resolve_account_id(account_id))
        TOKEN_CACHE.drop(key, token)
        if self.token_cache_mode == "variable":
            self._delete_shared_token(key)

    def _mint_token(self, account_id: str) -> AccessToken:
        own = self.account_id
        if account_id == own:
            log.info("Requesting an access token for Dintero account %s", account_id)
            return self._token_request(
                account_id,
                auth=HTTPBasicAuth(self.client_id, self._client_secret),
                audience=self.audience(account_id),
            )
        log.info("Requesting an access token for merchant %s through partner %s", account_id, own)
        exchange = self._call(
            "POST",
            f"/v1/accounts/{own}/auth/exchange_token",
            account_id=account_id,
            token_account=own,
            json={"account_id": account_id},
            operation=f"exchange a token for merchant {account_id} through partner {own}",
        )
        exchange_token = self._token_from(exchange, account_id)
        return self._token_request(account_id, bearer=exchange_token, audience=self.audience(own))

    def _token_request(
        self, account_id: str, *, audience: str, auth: HTTPBasicAuth | None = None, bearer: str | None = None
    ) -> AccessToken:
        response = self._send(
            "POST",
            f"{self.base_url}/v1/accounts/{account_id}/auth/token",
            account_id=account_id,
            operation=f"get an access token for account {account_id}",
            json={"grant_type": "client_credentials", "audience": audience},
            auth=auth,
            headers={"Authorization": f"Bearer {bearer}"} if bearer else None,
        )
        token = self._token_from(response, account_id)
        payload = response.json()
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(payload.get("expires_in") or 0),
        }

    @staticmethod
    def _token_from(response: requests.Response, account_id: str) -> str:
        try:
            payload = response.json()
            token = payload["access_token"]
        except (ValueError, KeyError, TypeError):
            raise DinteroApiError(
                f"Dintero's token response for account {account_id} had no access_token",
                status=response.status_code,
                account_id=account_id,
            ) from None
        mask_secret(token)
        for extra_secret in ("refresh_token",):
            mask_secret(payload.get(extra_secret))
        return str(token)

    # shared cache through an Airflow Variable --------------------------------------------

    @staticmethod
    def _variable_key(key: tuple[str, str, str]) -> str:
        digest = hashlib.sha256("|".join(key).encode()).hexdigest()[:24]
        return f"dintero_token_{key[2]}_{digest}"

    def _read_shared_token(self, key: tuple[str, str, str], margin: float) -> tuple[str, float] | None:
        if self.token_cache_mode != "variable":
            return None
        Variable = variable_api()

        try:
            raw = Variable.get(self._variable_key(key), None)
        except Exception as exc:  # a missing Variable backend must not stop the task
            log.warning("Could not read the shared Dintero token cache: %s", type(exc).__name__)
            return None
        if not raw:
            return None
        try:
            data = json.loads(raw)
            token, expires_at = str(data["access_token"]), float(data["expires_at"])
        except (ValueError, KeyError, TypeError):
            return None
        mask_secret(token)
        if expires_at - margin <= time.time():
            return None
        log.info("Reusing the shared Dintero token for account %s", key[2])
        return token, expires_at

    def _write_shared_token(self, key: tuple[str, str, str], token: str, expires_at: float) -> None:
        if self.token_cache_mode != "variable":
            return
        Variable = variable_api()

        value = json.dumps({"access_token": token, "expires_at": expires_at})
        try:
            Variable.set(self._variable_key(key), value, description="Dintero access token cache")
        except Exception as exc:
            log.warning("Could not write the shared Dintero token cache: %s", type(exc).__name__)

    def _delete_shared_token(self, key: tuple[str, str, str]) -> None:
        Variable = variable_api()

        try:
            Variable.delete(self._variable_key(key))
        except Exception as exc:
            log.debug("Could not delete the shared Dintero token: %s", type(exc).__name__)

    # ---------------------------------------------------------------- requests

    def _call(
        self,
        method: str,
        path: str,
        *,
        account_id: str,
        operation: str,
        base: Literal["api", "checkout"] = "api",
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        json: Any = None,
        stream: bool = False,
        token_account: str | None = None,
    ) -> requests.Response:
        """
        Send an authenticated request; on a 401 with a cached token, re-mint once and retry.

        :param method: HTTP method.
        :param path: path below the base URL, starting with ``/v1``.
        :param account_id: the account the call is about (for errors and logs).
        :param operation: what the call does, in words, for error messages.
        :param base: ``api`` or ``checkout`` host.
        :param params: query parameters.
        :param json: JSON body.
        :param stream: stream the response body.
        :param token_account: the account whose token to send (default ``account_id``).
        """
        root = self.checkout_base_url if base == "checkout" else self.base_url
        token_for = token_account or account_id
        for attempt in (1, 2):
            token = self.get_token(token_for)
            try:
                return self._send(
                    method,
                    f"{root}{path}",
                    account_id=account_id,
                    operation=operation,
                    params=params,
                    json=json,
                    stream=stream,
                    headers={"Authorization": f"Bearer {token}"},
                )
            except DinteroAuthError as exc:
                if exc.status != 401 or attempt == 2:
                    raise
                log.warning(
                    "Dintero rejected the cached token for account %s; minting a new one, retrying once",
                    token_for,
                )
                self.invalidate_token(token_for, token)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self,
        method: str,
        url: str,
        *,
        account_id: str | None,
        operation: str,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        json: Any = None,
        stream: bool = False,
        auth: HTTPBasicAuth | None = None,
        headers: Mapping[str, str] | None = None,
        session: requests.Session | None = None,
    ) -> requests.Response:
        """
        Send one request with bounded retries on 429 (honouring ``Retry-After``), 5xx and
        connection errors; raise :class:`DinteroApiError` on any other failure.
        """
        _ = self._connection_checked
        http = session or self._session
        attempts = self.max_retries + 1
        shown_url = redact_url(url)
        for attempt in range(1, attempts + 1):
            try:
                response = http.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    stream=stream,
                    auth=auth,
                    headers=dict(headers) if headers else None,
                    timeout=self.timeout,
                    # explicit: requests lets REQUESTS_CA_BUNDLE override a session's verify
                    verify=self.verify,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                kind = "timed out" if isinstance(exc, requests.Timeout) else "could not connect"
                if attempt >= attempts:
                    raise DinteroApiError(
                        f"Could not {operation}: {method} {shown_url} {kind} "
                        f"after {attempt} attempt(s) ({type(exc).__name__})",
                        account_id=account_id,
                    ) from None
                wait = self._backoff(attempt)
                log.warning(
                    "Dintero request %s %s %s; retrying in %.1f s (attempt %s of %s)",
                    method,
                    shown_url,
                    kind,
                    wait,
                    attempt + 1,
                    attempts,
                )
                time.sleep(wait)
                continue
            if response.status_code < 400:
                return response
            if response.status_code in _RETRYABLE_STATUS and attempt < attempts:
                wait = self._retry_wait(response.headers, attempt)
                log.warning(
                    "Dintero answered %s to %s %s; retrying in %.1f s (attempt %s of %s)",
                    response.status_code,
                    method,
                    shown_url,
                    wait,
                    attempt + 1,
                    attempts,
                )
                response.close()
                time.sleep(wait)
                continue
            raise self._error(response, operation, account_id, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int) -> float:
        base = self.retry_backoff * (2 ** (attempt - 1))
        return min(self.retry_max_wait, base * (0.5 + random.random()))

    def _retry_wait(self, headers: Mapping[str, str], attempt: int) -> float:
        """Seconds to wait before retry ``attempt + 1``: ``Retry-After`` when readable, else back-off."""
        header = headers.get("Retry-After")
        if header:
            wait = parse_retry_after(header)
            if wait is not None:
                return min(self.retry_max_wait, wait)
        return self._backoff(attempt)

    @staticmethod
    def _error(
        response: requests.Response, operation: str, account_id: str | None, attempts: int
    ) -> DinteroApiError:
        status = response.status_code
        code = api_message = None
        errors: list[Any] = []
        try:
            body = response.json()
            err = body.get("error") if isinstance(body, dict) else None
            if isinstance(err, dict):
                code = err.get("code")
                api_message = err.get("message")
                errors = err.get("errors") or []
        except ValueError:
            api_message = (response.text or "")[:200] or None
        finally:
            response.close()
        request_id = response.headers.get("Request-Id") or response.headers.get("X-Request-Id")
        details = "; ".join(
            f"{e.get('field') or e.get('path') or e.get('name')}: {e.get('message') or e.get('reason') or e}"
            if isinstance(e, dict)
            else str(e)
            for e in errors
        )
        parts = [f"Could not {operation}: Dintero answered {status}"]
        if code:
            parts.append(f"[{code}]")
        if api_message:
            parts.append(f"{api_message}")
        if details:
            parts.append(f"({details})")
        if account_id:
            parts.append(f"for account {account_id}")
        if request_id:
            parts.append(f"(request id {request_id})")
        if attempts > 1:
            parts.append(f"after {attempts} attempts")
        if status == 403 and operation.startswith("exchange a token"):
            parts.append("- check that the merchant belongs to this partner")
        elif status == 403:
            parts.append("- check that the API client's grant includes the scope this call needs")
        message = " ".join(parts)
        cls: type[DinteroApiError] = DinteroApiError
        if status in (401, 403):
            cls = DinteroAuthError
        elif status == 404:
            cls = DinteroNotFoundError
        return cls(
            message,
            status=status,
            code=code,
            api_message=api_message,
            errors=errors,
            account_id=account_id,
            request_id=request_id,
        )

    def _json(self, method: str, path: str, *, account_id: str, operation: str, **kwargs: Any) -> Any:
        response = self._call(method, path, account_id=account_id, operation=operation, **kwargs)
        try:
            if not response.content:
                return None
            return response.json()
        except ValueError:
            raise DinteroApiError(
                f"Could not {operation}: Dintero's answer was not JSON",
                status=response.status_code,
                account_id=account_id,
            ) from None

    # ---------------------------------------------------------------- pagination

    def _paginate_settlements(self, account_id: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        by_created = any(k.startswith("item_created_at.") for k in params)
        cursor: dict[str, str] = {}
        seen_cursors: set[tuple[str, str]] = set()
        while True:
            page = (
                self._json(
                    "GET",
                    f"/v1/accounts/{account_id}/settlements",
                    account_id=account_id,
                    operation="list settlements",
                    params=_query({**params, **cursor}),
                )
                or {}
            )
            yield from page.get("items") or []
            marker = _settlements_cursor(page.get("last_evaluated_key"), by_created)
            if marker is None:
                return
            if marker in seen_cursors:
                raise DinteroApiError(
                    f"Dintero returned the same settlements page cursor twice for account {account_id}",
                    account_id=account_id,
                )
            seen_cursors.add(marker)
            cursor = {"starting_after_id": marker[0], "starting_after_date": marker[1]}

    def _paginate_cursor(
        self,
        path: str,
        *,
        account_id: str,
        operation: str,
        items_key: str,
        params: dict[str, Any],
    ) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            query = dict(params)
            if cursor:
                query["starting_after"] = cursor
            page = self._json("GET", path, account_id=account_id, operation=operation, params=_query(query))
            items = (page or {}).get(items_key) or [] if isinstance(page, dict) else (page or [])
            yield from items
            cursor = page.get("starting_after") if isinstance(page, dict) else None
            if not items or not cursor:
                return
            if cursor in seen:
                raise DinteroApiError(
                    f"Dintero returned the same page cursor twice while trying to {operation}",
                    account_id=account_id,
                )
            seen.add(cursor)

    # ---------------------------------------------------------------- connection test

    def test_connection(self) -> tuple[bool, str]:
        """Mint a token for the connection's account and say which account was reached."""
        try:
            self.validate_connection()
        except DinteroInputError as exc:
            return False, f"Connection is misconfigured: {exc}"
        try:
            self.invalidate_token(None)
            self.get_token(None)
        except DinteroAuthError as exc:
            return False, f"Dintero rejected the client credentials for account {self.account_id}: {exc}"
        except DinteroApiError as exc:
            if exc.status is None:
                return False, f"Cannot reach Dintero at {self.base_url}: {exc}"
            return False, str(exc)
        kind = "partner" if self.is_partner else "merchant"
        env = "test" if self.account_id.startswith("T") else "production"
        return True, f"Connected to Dintero {env} {kind} account {self.account_id} at {self.base_url}"

    # ---------------------------------------------------------------- accounts

    def list_merchants(self, *, limit: int = 100, **filters: Any) -> Iterator[Account]:
        """
        Iterate over the partner's merchant accounts (all pages).

        :param limit: page size, 1 to 100.
        :param filters: documented filters passed through, e.g. ``country="NO"``.
        """
        partner = self.account_id
        if not self.is_partner:
            raise DinteroInputError("extra.account_id", "a partner account id ending in 00000", partner)
        limit = _check_limit(limit, 100)
        after: str | None = None
        while True:
            params = {**filters, "limit": limit}
            if after:
                params["starting_after"] = after
            page = (
                self._json(
                    "GET",
                    f"/v1/accounts/{partner}/management/accounts",
                    account_id=partner,
                    operation="list the partner's merchants",
                    params=_query(params),
                )
                or []
            )
            yield from page
            if len(page) < limit or not page[-1].get("paging_token"):
                return
            after = page[-1]["paging_token"]

    def get_account(self, account_id: str | None = None) -> Account:
        """
        Return an account's details (``GET /v1/accounts/{aid}/management/settings``).

        :param account_id: the merchant, or ``None`` for the connection's own account.
        """
        aid = self.resolve_account_id(account_id)
        return self._json(
            "GET",
            f"/v1/accounts/{aid}/management/settings",
            account_id=aid,
            operation="read the account details",
        )

    # ---------------------------------------------------------------- settlements

    def list_settlements(
        self,
        account_id: str | None = None,
        *,
        limit: int = 100,
        created_at_gte: Any = None,
        created_at_lte: Any = None,
        item_created_at_gte: Any = None,
        item_created_at_lte: Any = None,
        payment_providers: Sequence[str] | None = None,
        payout_destination_id: str | None = None,
        search: str | None = None,
    ) -> Iterator[Settlement]:
        """
        Iterate over an account's settlements, newest first, across all pages.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param limit: page size, 1 to 1000.
        :param created_at_gte: settled on or after (filters ``settled_at``).
        :param created_at_lte: settled on or before (filters ``settled_at``).
        :param item_created_at_gte: recorded on or after (filters ``created_at``).
        :param item_created_at_lte: recorded on or before (filters ``created_at``).
        :param payment_providers: only these payout providers (API names or product names).
        :param payout_destination_id: only this seller.
        :param search: matches the settlement id.
        """
        aid = self.resolve_account_id(account_id)
        params = settlement_query(
            limit=limit,
            created_at_gte=created_at_gte,
            created_at_lte=created_at_lte,
            item_created_at_gte=item_created_at_gte,
            item_created_at_lte=item_created_at_lte,
            payment_providers=payment_providers,
            payout_destination_id=payout_destination_id,
            search=search,
        )
        return self._paginate_settlements(aid, params)  # type: ignore[return-value]

    def get_settlement(self, account_id: str | None, settlement_id: str) -> Settlement:
        """
        Return one settlement by id (the list endpoint, searched by id).

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param settlement_id: the settlement's id.
        """
        aid = self.resolve_account_id(account_id)
        if not settlement_id:
            raise DinteroInputError("settlement_id", "a settlement id", settlement_id)
        for item in self.list_settlements(aid, search=settlement_id, limit=100):
            if item.get("id") == settlement_id:
                return item
        raise DinteroNotFoundError(
            f"Settlement {settlement_id} was not found for account {aid}", status=404, account_id=aid
        )

    @contextlib.contextmanager
    def stream_settlement_attachment(
        self, account_id: str | None, settlement_id: str, attachment_id: str
    ) -> Iterator[DownloadStream]:
        """
        Open a settlement attachment as a stream (``with`` block); memory stays flat.

        Redirects are followed without sending the ``Authorization`` header to another host.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param settlement_id: the settlement's id.
        :param attachment_id: the attachment's id.
        """
        aid = self.resolve_account_id(account_id)
        response = self._call(
            "GET",
            f"/v1/accounts/{aid}/settlements/{settlement_id}/attachments/{attachment_id}",
            account_id=aid,
            operation=f"download attachment {attachment_id} of settlement {settlement_id}",
            stream=True,
        )
        stream = DownloadStream(response, f"attachment {attachment_id} of settlement {settlement_id}", aid)
        try:
            yield stream
        finally:
            stream.close()

    # ---------------------------------------------------------------- reports

    def list_report_metadata(
        self, account_id: str | None = None, *, limit: int = 100
    ) -> Iterator[ReportMetadata]:
        """
        Iterate over the generated insight reports of an account (all pages).

        Each item's ``signed_url`` is registered with the secrets masker as it arrives.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param limit: page size, 1 to 100.
        """
        aid = self.resolve_account_id(account_id)
        limit = _check_limit(limit, 100)
        for report in self._paginate_cursor(
            f"/v1/accounts/{aid}/reports/metadata",
            account_id=aid,
            operation="list report metadata",
            items_key="reports",
            params={"limit": limit},
        ):
            mask_secret(report.get("signed_url"))
            yield report  # type: ignore[misc]

    @contextlib.contextmanager
    def stream_signed_url(
        self, url: str, *, account_id: str | None, description: str
    ) -> Iterator[DownloadStream]:
        """
        Download a pre-signed URL (an insight report) as a stream, with no Authorization header.

        :param url: the signed URL (a credential: it is masked and never logged whole).
        :param account_id: the account the file belongs to, for errors.
        :param description: what is downloaded, for errors and logs.
        """
        mask_secret(url)
        try:
            validate_base_url(url, "signed_url")
        except DinteroInputError as exc:  # the message would carry the whole signed URL
            raise DinteroInputError("signed_url", exc.expected, redact_url(str(url))) from None
        with requests.Session() as plain:
            plain.headers["User-Agent"] = USER_AGENT
            plain.verify = self.verify
            plain.hooks["response"].append(_refuse_insecure_redirect)
            response = self._send(
                "GET",
                url,
                account_id=account_id,
                operation=f"download {description}",
                stream=True,
                session=plain,
            )
            stream = DownloadStream(response, description, account_id)
            try:
                yield stream
            finally:
                stream.close()

    def list_report_configurations(self, account_id: str | None = None) -> list[dict[str, Any]]:
        """
        List the insight (scheduled) report configurations of an account.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        """
        aid = self.resolve_account_id(account_id)
        body = self._json(
            "GET",
            f"/v1/accounts/{aid}/insight/reports/configuration",
            account_id=aid,
            operation="list insight report configurations",
        )
        return _items(body)

    def get_report_configuration(self, account_id: str | None, config_id: str) -> dict[str, Any]:
        """
        Return one insight report configuration.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param config_id: the configuration's id.
        """
        aid = self.resolve_account_id(account_id)
        return self._json(
            "GET",
            f"/v1/accounts/{aid}/insight/reports/configuration/{config_id}",
            account_id=aid,
            operation=f"read insight report configuration {config_id}",
        )

    def create_report_configuration(self, account_id: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        """
        Create an insight report schedule (camelCase body: dataType, schedule, language, name...).

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param body: the configuration.
        """
        aid = self.resolve_account_id(account_id)
        return self._json(
            "POST",
            f"/v1/accounts/{aid}/insight/reports/configuration",
            account_id=aid,
            operation="create an insight report configuration",
            json=dict(body),
        )

    def update_report_configuration(
        self, account_id: str | None, config_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """
        Replace an insight report configuration.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param config_id: the configuration's id.
        :param body: the full configuration.
        """
        aid = self.resolve_account_id(account_id)
        return self._json(
            "PUT",
            f"/v1/accounts/{aid}/insight/reports/configuration/{config_id}",
            account_id=aid,
            operation=f"update insight report configuration {config_id}",
            json=dict(body),
        )

    def delete_report_configuration(self, account_id: str | None, config_id: str) -> dict[str, Any] | None:
        """
        Delete an insight report configuration.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param config_id: the configuration's id.
        """
        aid = self.resolve_account_id(account_id)
        return self._json(
            "DELETE",
            f"/v1/accounts/{aid}/insight/reports/configuration/{config_id}",
            account_id=aid,
            operation=f"delete insight report configuration {config_id}",
        )

    def list_settlement_report_configurations(
        self, account_id: str | None = None, *, limit: int = 100
    ) -> Iterator[dict[str, Any]]:
        """
        Iterate over the settlement report (email delivery) configurations of an account.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param limit: page size, 1 to 1000.
        """
        aid = self.resolve_account_id(account_id)
        return self._paginate_cursor(
            f"/v1/accounts/{aid}/settlements/reports/configuration",
            account_id=aid,
            operation="list settlement report configurations",
            items_key="items",
            params={"limit": _check_limit(limit, 1000)},
        )

    def create_settlement_report_configuration(
        self, account_id: str | None, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """
        Create a settlement report configuration (filetypes, destinations, providers).

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param body: the configuration.
        """
        aid = self.resolve_account_id(account_id)
        return self._json(
            "POST",
            f"/v1/accounts/{aid}/settlements/reports/configuration",
            account_id=aid,
            operation="create a settlement report configuration",
            json=dict(body),
        )

    def update_settlement_report_configuration(
        self, account_id: str | None, config_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """
        Replace a settlement report configuration.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param config_id: the configuration's id.
        :param body: the full configuration.
        """
        aid = self.resolve_account_id(account_id)
        return self._json(
            "PUT",
            f"/v1/accounts/{aid}/settlements/reports/configuration/{config_id}",
            account_id=aid,
            operation=f"update settlement report configuration {config_id}",
            json=dict(body),
        )

    def delete_settlement_report_configuration(
        self, account_id: str | None, config_id: str
    ) -> dict[str, Any] | None:
        """
        Delete a settlement report configuration.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param config_id: the configuration's id.
        """
        aid = self.resolve_account_id(account_id)
        return self._json(
            "DELETE",
            f"/v1/accounts/{aid}/settlements/reports/configuration/{config_id}",
            account_id=aid,
            operation=f"delete settlement report configuration {config_id}",
        )

    # ---------------------------------------------------------------- API clients and grants

    def list_api_clients(self, account_id: str | None = None) -> list[ApiClient]:
        """
        List the API clients of an account (never with secrets).

        :param account_id: the merchant, or ``None`` for the connection's own account.
        """
        aid = self.resolve_account_id(account_id)
        return _items(
            self._json(
                "GET", f"/v1/accounts/{aid}/auth/clients", account_id=aid, operation="list API clients"
            )
        )  # type: ignore[return-value]

    def get_api_client(self, account_id: str | None, client_uuid: str) -> ApiClient:
        """
        Return one API client by its UUID ``id``.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param client_uuid: the client's UUID ``id`` (not its ``client_id``).
        """
        aid = self.resolve_account_id(account_id)
        return self._json(
            "GET",
            f"/v1/accounts/{aid}/auth/clients/{client_uuid}",
            account_id=aid,
            operation=f"read API client {client_uuid}",
        )

    def create_api_client(
        self,
        account_id: str | None,
        *,
        name: str | None = None,
        description: str | None = None,
        client_id: str | None = None,
        callbacks: Sequence[str] | None = None,
    ) -> ApiClient:
        """
        Create an API client. The answer holds ``client_secret``, shown by Dintero only once;
        it is registered with the secrets masker before this method returns.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param name: the client's name.
        :param description: a description.
        :param client_id: the login name to use (Dintero generates one when omitted).
        :param callbacks: callback URLs.
        """
        aid = self.resolve_account_id(account_id)
        body: dict[str, Any] = {
            k: v for k, v in {"name": name, "description": description, "client_id": client_id}.items() if v
        }
        if callbacks is not None:
            body["callbacks"] = list(callbacks)
        created = self._json(
            "POST",
            f"/v1/accounts/{aid}/auth/clients",
            account_id=aid,
            operation="create an API client",
            json=body,
        )
        mask_secret((created or {}).get("client_secret"))
        return created

    def rotate_api_client_secret(self, account_id: str | None, client_uuid: str) -> ApiClient:
        """
        Give an API client a new secret (the old one stops working). Returns the client with
        its new ``client_secret``, registered with the secrets masker.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param client_uuid: the client's UUID ``id``.
        """
        aid = self.resolve_account_id(account_id)
        body = (
            self._json(
                "POST",
                f"/v1/accounts/{aid}/auth/clients/{client_uuid}/rotate-secret",
                account_id=aid,
                operation=f"rotate the secret of API client {client_uuid}",
            )
            or {}
        )
        client: ApiClient = body.get("client", body) if isinstance(body, dict) else {}
        mask_secret(client.get("client_secret"))
        return client

    def delete_api_client(self, account_id: str | None, client_uuid: str) -> ApiClient | None:
        """
        Delete an API client and its grants.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param client_uuid: the client's UUID ``id``.
        """
        aid = self.resolve_account_id(account_id)
        return self._json(
            "DELETE",
            f"/v1/accounts/{aid}/auth/clients/{client_uuid}",
            account_id=aid,
            operation=f"delete API client {client_uuid}",
        )

    def list_client_grants(
        self, account_id: str | None = None, *, client_uuid: str | None = None, audience: str | None = None
    ) -> list[ClientGrant]:
        """
        List client grants, optionally for one client or audience.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param client_uuid: only grants of this client (its UUID ``id``).
        :param audience: only grants on this audience.
        """
        aid = self.resolve_account_id(account_id)
        params = {k: v for k, v in {"client_id": client_uuid, "audience": audience}.items() if v}
        return _items(
            self._json(
                "GET",
                f"/v1/accounts/{aid}/auth/client-grants",
                account_id=aid,
                operation="list client grants",
                params=params,
            )
        )  # type: ignore[return-value]

    def create_client_grant(
        self,
        account_id: str | None,
        *,
        client_uuid: str,
        audience: str,
        scope: Sequence[str],
        grant_type: str = "any",
    ) -> ClientGrant:
        """
        Grant scopes on an audience to an API client.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param client_uuid: the client's UUID ``id`` (Dintero requires the UUID here).
        :param audience: e.g. ``https://api.dintero.com/v1/accounts/T11200001``.
        :param scope: scope names, e.g. ``["read:settlements"]``.
        :param grant_type: ``any``, ``client_credentials``, ``authorization_code`` or ``password``.
        """
        aid = self.resolve_account_id(account_id)
        body = {"client_id": client_uuid, "audience": audience, "scope": list(scope), "type": grant_type}
        return self._json(
            "POST",
            f"/v1/accounts/{aid}/auth/client-grants",
            account_id=aid,
            operation="create a client grant",
            json=body,
        )

    def delete_client_grant(self, account_id: str | None, grant_id: str) -> ClientGrant | None:
        """
        Delete a client grant.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param grant_id: the grant's id.
        """
        aid = self.resolve_account_id(account_id)
        return self._json(
            "DELETE",
            f"/v1/accounts/{aid}/auth/client-grants/{grant_id}",
            account_id=aid,
            operation=f"delete client grant {grant_id}",
        )

    # ---------------------------------------------------------------- payment profiles

    def list_payment_profiles(self, account_id: str | None = None) -> list[dict[str, Any]]:
        """
        List the checkout payment profiles of an account (checkout host, merchant token).

        :param account_id: the merchant, or ``None`` for the connection's own account.
        """
        aid = self.resolve_account_id(account_id)
        return _items(
            self._json(
                "GET",
                "/v1/admin/session/profiles",
                account_id=aid,
                base="checkout",
                operation="list payment profiles",
            )
        )

    def get_payment_profile(self, account_id: str | None, profile_id: str) -> dict[str, Any]:
        """
        Return one payment profile.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param profile_id: the profile's id.
        """
        aid = self.resolve_account_id(account_id)
        return self._json(
            "GET",
            f"/v1/admin/session/profiles/{profile_id}",
            account_id=aid,
            base="checkout",
            operation=f"read payment profile {profile_id}",
        )

    def create_payment_profile(self, account_id: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        """
        Create a payment profile (``description`` and ``configuration``; ``profile_id`` optional).

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param body: the profile.
        """
        aid = self.resolve_account_id(account_id)
        return self._json(
            "POST",
            "/v1/admin/session/profiles",
            account_id=aid,
            base="checkout",
            operation="create a payment profile",
            json=dict(body),
        )

    def update_payment_profile(
        self, account_id: str | None, profile_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """
        Replace a payment profile (Dintero's PUT takes the full profile).

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param profile_id: the profile's id.
        :param body: the full profile.
        """
        aid = self.resolve_account_id(account_id)
        return self._json(
            "PUT",
            f"/v1/admin/session/profiles/{profile_id}",
            account_id=aid,
            base="checkout",
            operation=f"update payment profile {profile_id}",
            json=dict(body),
        )

    # ---------------------------------------------------------------- webhooks

    def list_webhook_subscriptions(self, account_id: str | None = None) -> list[WebhookSubscription]:
        """
        List the webhook subscriptions of an account.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        """
        aid = self.resolve_account_id(account_id)
        return _items(
            self._json(
                "GET",
                f"/v1/accounts/{aid}/hooks/subscriptions",
                account_id=aid,
                operation="list webhook subscriptions",
            )
        )  # type: ignore[return-value]

    def create_webhook_subscription(
        self, account_id: str | None, body: Mapping[str, Any]
    ) -> WebhookSubscription:
        """
        Create a webhook subscription, e.g. ``{"config": {"url": ...}, "events": ["settlement_add"]}``.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param body: the subscription.
        """
        aid = self.resolve_account_id(account_id)
        return self._json(
            "POST",
            f"/v1/accounts/{aid}/hooks/subscriptions",
            account_id=aid,
            operation="create a webhook subscription",
            json=dict(body),
        )

    def delete_webhook_subscription(
        self, account_id: str | None, subscription_id: str
    ) -> WebhookSubscription | None:
        """
        Delete a webhook subscription.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param subscription_id: the subscription's id.
        """
        aid = self.resolve_account_id(account_id)
        return self._json(
            "DELETE",
            f"/v1/accounts/{aid}/hooks/subscriptions/{subscription_id}",
            account_id=aid,
            operation=f"delete webhook subscription {subscription_id}",
        )


# --------------------------------------------------------------------------------------------
# Async access for triggers
# --------------------------------------------------------------------------------------------


class DinteroAsyncHook(DinteroPartnerHook):
    """
    Async access for triggers: the same connection, token cache and error vocabulary, with
    requests sent through :mod:`httpx`.

    :param dintero_conn_id: the Airflow connection id.
    """

    async def async_list_settlements(self, account_id: str | None, **filters: Any) -> list[Settlement]:
        """
        Return every settlement matching the filters (see :meth:`list_settlements`).

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param filters: keyword filters of :meth:`list_settlements`.
        """
        import asyncio

        import httpx

        aid = await asyncio.to_thread(self.resolve_account_id, account_id)
        params = settlement_query(**filters)
        by_created = any(k.startswith("item_created_at.") for k in params)
        url = f"{self.base_url}/v1/accounts/{aid}/settlements"
        found: list[Settlement] = []
        cursor: dict[str, str] = {}
        async with httpx.AsyncClient(
            timeout=self.timeout,
            verify=self.verify,
            headers={k: str(v) for k, v in self._session.headers.items()},
        ) as client:
            while True:
                body = await self._async_get_json(client, url, aid, _query({**params, **cursor}))
                found.extend(body.get("items") or [])
                marker = _settlements_cursor(body.get("last_evaluated_key"), by_created)
                if marker is None:
                    return found
                cursor = {"starting_after_id": marker[0], "starting_after_date": marker[1]}

    async def _async_get_json(
        self, client: Any, url: str, account_id: str, params: list[tuple[str, str]]
    ) -> dict[str, Any]:
        import asyncio

        import httpx

        attempts = self.max_retries + 1
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            token = await asyncio.to_thread(self.get_token, account_id)
            try:
                response = await client.get(url, params=params, headers={"Authorization": f"Bearer {token}"})
            except httpx.TransportError as exc:
                if attempt >= attempts:
                    raise DinteroApiError(
                        f"Could not list settlements: GET {redact_url(url)} failed after {attempt} tries "
                        f"({type(exc).__name__})",
                        account_id=account_id,
                    ) from None
                await asyncio.sleep(self._backoff(attempt))
                continue
            if response.status_code == 401 and not refreshed:
                refreshed = True
                await asyncio.to_thread(self.invalidate_token, account_id, token)
                continue
            if response.status_code in _RETRYABLE_STATUS and attempt < attempts:
                await asyncio.sleep(self._retry_wait(response.headers, attempt))
                continue
            if response.status_code >= 400:
                raise self._error(_HttpxResponseAdapter(response), "list settlements", account_id, attempt)  # type: ignore[arg-type]
            return response.json()


class _HttpxResponseAdapter:
    """Lets :meth:`DinteroPartnerHook._error` read an httpx response."""

    def __init__(self, response: Any) -> None:
        self._response = response
        self.status_code = response.status_code
        self.headers = response.headers
        self.text = response.text

    def json(self) -> Any:
        return self._response.json()

    def close(self) -> None:
        return None


# --------------------------------------------------------------------------------------------
# Module helpers
# --------------------------------------------------------------------------------------------


def parse_retry_after(value: str) -> float | None:
    """
    Parse a ``Retry-After`` header: delta seconds or an HTTP date. ``None`` if unreadable.

    :param value: the header's value.
    """
    value = value.strip()
    if value.isascii() and value.isdigit():  # not "²" or other Unicode digits float() refuses
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _settlements_cursor(key: Any, by_created: bool) -> tuple[str, str] | None:
    """
    The next settlements page's ``(starting_after_id, starting_after_date)`` from a
    ``last_evaluated_key``, or ``None`` on the last page. The date is the key's ``created_at``
    when filtering on ``item_created_at``, else its ``settled_at`` (either as a fallback).
    """
    if not isinstance(key, dict) or not key.get("id"):
        return None
    preferred = key.get("created_at") if by_created else key.get("settled_at")
    return str(key["id"]), str(preferred or key.get("settled_at") or key.get("created_at"))


def settlement_query(
    *,
    limit: int = 100,
    created_at_gte: Any = None,
    created_at_lte: Any = None,
    item_created_at_gte: Any = None,
    item_created_at_lte: Any = None,
    payment_providers: Sequence[str] | None = None,
    payout_destination_id: str | None = None,
    search: str | None = None,
) -> dict[str, Any]:
    """
    Build and check the query of the settlements list; raise :class:`DinteroInputError`.

    :param limit: page size, 1 to 1000.
    :param created_at_gte: settled on or after.
    :param created_at_lte: settled on or before.
    :param item_created_at_gte: recorded on or after.
    :param item_created_at_lte: recorded on or before.
    :param payment_providers: payout providers.
    :param payout_destination_id: seller id.
    :param search: settlement id search.
    """
    params: dict[str, Any] = {"limit": _check_limit(limit, 1000)}
    if created_at_gte is not None and item_created_at_gte is not None:
        raise DinteroInputError(
            "created_at_gte", "not to be combined with item_created_at_gte (Dintero refuses both)"
        )
    if created_at_lte is not None and item_created_at_lte is not None:
        raise DinteroInputError(
            "created_at_lte", "not to be combined with item_created_at_lte (Dintero refuses both)"
        )
    for name, value in (
        ("created_at.gte", created_at_gte),
        ("created_at.lte", created_at_lte),
        ("item_created_at.gte", item_created_at_gte),
        ("item_created_at.lte", item_created_at_lte),
    ):
        if value is not None:
            params[name] = format_timestamp(value, name.replace(".", "_"))
    if payment_providers is not None:
        if isinstance(payment_providers, str):
            payment_providers = [payment_providers]
        params["payment_provider"] = [PayoutProvider.parse(p).value for p in payment_providers]
    if payout_destination_id:
        params["payout_destination_id"] = payout_destination_id
    if search:
        params["search"] = search
    return params


def _check_limit(limit: Any, maximum: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise DinteroInputError("limit", f"a whole number from 1 to {maximum}", limit)
    return limit


def _query(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Flatten a query: lists become repeated parameters (``?a=1&a=2``)."""
    out: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            out.extend((key, str(v)) for v in value)
        elif isinstance(value, bool):
            out.append((key, "true" if value else "false"))
        else:
            out.append((key, str(value)))
    return out


def _items(body: Any) -> list[Any]:
    """A list response, whether bare or wrapped in ``items``."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in ("items", "configurations", "subscriptions", "clients", "grants"):
            if isinstance(body.get(key), list):
                return body[key]
    return []


def variable_api() -> Any:
    """
    The Variable API that works where the hook runs: the Task SDK's inside an Airflow 3 task
    (or triggerer), the metadata DB's outside one (scripts, Airflow 2.11 everywhere).
    """
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:  # Airflow 2.11
        from airflow.models.variable import Variable as DbVariable

        return DbVariable
    if getattr(task_runner, "SUPERVISOR_COMMS", None) is not None:
        from airflow.sdk import Variable as SdkVariable

        return SdkVariable
    from airflow.models.variable import Variable as DbVariable

    return DbVariable


def _airflow_version() -> str:
    try:
        from airflow import __version__ as airflow_version
    except ImportError:  # pragma: no cover
        return "unknown"
    return str(airflow_version)
