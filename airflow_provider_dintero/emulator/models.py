"""Value types shared by the emulator modules: settings, request records, faults, responses."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, SupportsIndex, overload

if TYPE_CHECKING:
    from collections.abc import Iterable

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


@dataclass
class RateLimitRule:
    """Answer 429 once more than ``max_requests`` matching requests arrive within ``per_seconds``.

    :param path_regex: regular expression searched in the request path.
    :param max_requests: requests allowed per window.
    :param per_seconds: length of the sliding window.
    :param retry_after: value of the ``Retry-After`` header on the 429 answer.
    :param method: only count requests with this method (``None`` = all).
    """

    path_regex: str = ".*"
    max_requests: int = 10
    per_seconds: float = 1.0
    retry_after: int | str = 1
    method: str | None = None


@dataclass
class EmulatorSettings:
    """Runtime behaviour switches; mutate ``emu.settings`` directly (``reset()`` restores defaults).

    Switches marked [I] cover behaviour the Dintero docs leave open.

    :param token_lifetime: ``expires_in`` of issued tokens, seconds.
    :param attachment_redirect: [I] attachment downloads answer 302 to an unauthenticated URL on
        ``alt_base_url`` instead of serving the bytes.
    :param redirect_base_url: where attachment redirects point; ``None`` means ``alt_base_url``
        (to test a client against a redirect off loopback or to plain http).
    :param signed_url_lifetime: lifetime of report ``signed_url`` links, seconds.
    :param accept_dintero_audience: also accept ``https://api.dintero.com/v1/accounts/<aid>`` as
        token audience (besides the emulator's own base URLs).
    :param exchange_audience: [I] audience accepted when minting a merchant token with an exchange
        token: ``partner`` (documented), ``merchant`` or ``either``.
    :param exchange_token_is_access_token: [I] let the exchange token itself call merchant APIs.
    :param partner_token_on_merchant_settings: [I] let a partner token read its merchants'
        ``/management/settings``.
    :param last_page_key_mode: [I] ``absent``: settlements ``last_evaluated_key`` only when more items
        follow; ``when_full``: DynamoDB style, a key whenever the page is full (the next page may
        then be empty).
    :param reports_cursor_mode: [I] same choice for the report metadata ``starting_after`` cursor.
    :param rate_limits: automatic 429 rules.
    :param webhook_timeout: timeout of outbound webhook deliveries, seconds.
    :param ping_on_subscription_create: send a ``ping`` delivery when a subscription is created.
    :param webhook_payload_shape: [I] where a ``settlement_add`` delivery carries the settlement:
        ``settlement`` (an object, the guess), ``settlements`` (a list), ``data`` (an object),
        ``ids`` (``settlement_ids`` only) or ``other`` (a key no receiver knows: ``payout``).
        A ``ping`` is always Dintero's documented body, the bare subscription object.
    :param subscription_secret_form: [I] the form of ``config.secret`` a create accepts:
        ``value`` (``{"type": "HMAC-SHA1", "value": ...}``), ``secret`` (``{"type", "secret"}``)
        or ``string`` (a bare string, as GitHub's hooks take it).
    :param subscription_secret_mismatch: [I] what a create does with another form: ``refuse``
        (400 naming ``config.secret``) or ``drop`` (create the subscription unsigned, its answer
        without ``config.secret``).
    :param subscription_list_status: [I] ``200`` serves the subscription list; ``404`` or
        ``405`` answer as if Dintero had no list endpoint.
    :param strict_dates: [I] date-typed settlement filters: ``off`` accepts dates and timestamps;
        ``spec`` answers 400 to anything but ``YYYY-MM-DD`` in ``created_at.gte/.lte`` (typed
        ``format: date`` in the 2024 payments spec); ``all`` also in ``item_created_at.gte/.lte``.
    :param list_envelopes: [I] per list endpoint (a key of ``LIST_ENDPOINTS``): ``documented``
        (default), ``array`` (a bare array), ``items`` (``{"items": [...]}``) or the endpoint's
        own wrapper key where it has one (``reports``).
    :param duplicate_status: [I] status of a refused duplicate create: 400 or 409.
    :param refuse_duplicates: [I] which creates refuse a duplicate: ``client`` (same
        ``client_id``), ``grant`` (same client and audience), ``subscription`` (same
        ``config.url``), ``profile`` (same ``profile_id``).
    :param profiles_paging: the payment-profile list pages with ``limit`` (1-100, default 10)
        and ``starting_after`` (the last ``profile_id``), as Dintero's checkout client does;
        ``False`` answers every profile at once and ignores both.
    :param exchange_audience_status: [I] status when a merchant-token request names an audience
        ``exchange_audience`` refuses: 400 or 403.
    """

    token_lifetime: int = 14400
    attachment_redirect: bool = False
    redirect_base_url: str | None = None
    signed_url_lifetime: int = 3600
    accept_dintero_audience: bool = True
    exchange_audience: str = "partner"  # partner | merchant | either
    exchange_token_is_access_token: bool = False
    partner_token_on_merchant_settings: bool = True
    last_page_key_mode: str = "absent"
    reports_cursor_mode: str = "absent"
    rate_limits: list[RateLimitRule] = field(default_factory=list)
    webhook_timeout: float = 5.0
    ping_on_subscription_create: bool = True
    webhook_payload_shape: str = "settlement"
    subscription_secret_form: str = "value"
    subscription_secret_mismatch: str = "refuse"
    subscription_list_status: int = 200
    strict_dates: str = "off"
    list_envelopes: dict[str, str] = field(default_factory=dict)
    duplicate_status: int = 400
    refuse_duplicates: list[str] = field(default_factory=lambda: ["client", "profile"])
    profiles_paging: bool = True
    exchange_audience_status: int = 403

    def update(self, values: dict[str, Any]) -> None:
        """Set attributes from a JSON object (control API); unknown names raise ``ValueError``.

        :param values: attribute names and new values.
        """
        for name, value in values.items():
            if name not in self.__dataclass_fields__:
                raise ValueError(f"unknown setting {name!r}")
            if name == "rate_limits":
                if not isinstance(value, list) or not all(
                    isinstance(rule, (dict, RateLimitRule)) for rule in value
                ):
                    raise ValueError("rate_limits must be a list of objects")
                value = [rule if isinstance(rule, RateLimitRule) else RateLimitRule(**rule) for rule in value]
            elif name == "list_envelopes":
                value = _check_envelopes(value)
            elif name == "refuse_duplicates":
                if not isinstance(value, list) or not set(value) <= set(DUPLICATE_KINDS):
                    raise ValueError(f"refuse_duplicates must be a list of {', '.join(DUPLICATE_KINDS)}")
                value = list(value)
            else:
                current = getattr(self, name)
                expected: tuple[type, ...] = (int, float) if isinstance(current, float) else (type(current),)
                if not isinstance(value, expected) or (
                    isinstance(value, bool) and not isinstance(current, bool)
                ):
                    raise ValueError(f"setting {name!r} must be of type {type(current).__name__}")
                choices = _SETTING_CHOICES.get(name)
                if choices is not None and value not in choices:
                    raise ValueError(f"setting {name!r} must be one of {', '.join(map(str, choices))}")
            setattr(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        """The settings as a JSON-able dict."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "rate_limits":
                value = [vars(rule).copy() for rule in value]
            elif isinstance(value, (dict, list)):
                value = type(value)(value)
            out[name] = value
        return out


_SETTING_CHOICES: dict[str, tuple[Any, ...]] = {
    "exchange_audience": ("partner", "merchant", "either"),
    "last_page_key_mode": ("absent", "when_full"),
    "reports_cursor_mode": ("absent", "when_full"),
    "strict_dates": ("off", "spec", "all"),
    "duplicate_status": (400, 409),
    "exchange_audience_status": (400, 403),
    "webhook_payload_shape": ("settlement", "settlements", "data", "ids", "other"),
    "subscription_secret_form": ("value", "secret", "string"),
    "subscription_secret_mismatch": ("refuse", "drop"),
    "subscription_list_status": (200, 404, 405),
}

#: The list endpoints and their documented wrapper key (``None``: a bare array).
LIST_ENDPOINTS: dict[str, str | None] = {
    "accounts": None,
    "clients": None,
    "grants": None,
    "profiles": None,
    "settlements": "items",
    "settlement_report_configs": "items",
    "insight_configs": None,
    "reports": "reports",
    "subscriptions": None,
}

#: The creates that can refuse a duplicate (``settings.refuse_duplicates``).
DUPLICATE_KINDS = ("client", "grant", "subscription", "profile")


def _check_envelopes(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError("list_envelopes must be an object of endpoint: envelope")
    for endpoint, mode in value.items():
        if endpoint not in LIST_ENDPOINTS:
            raise ValueError(
                f"list_envelopes: unknown endpoint {endpoint!r} (one of {', '.join(LIST_ENDPOINTS)})"
            )
        allowed = ["documented", "array", "items"]
        own = LIST_ENDPOINTS[endpoint]
        if own is not None and own not in allowed:
            allowed.append(own)
        if mode not in allowed:
            raise ValueError(f"list_envelopes[{endpoint!r}] must be one of {', '.join(allowed)}")
    return dict(value)


class QueryPairs(list[tuple[str, str]]):
    """The query string of a logged request: ``(name, value)`` pairs in the order sent.

    A plain list of pairs (repeated parameters appear once per value); for convenience it also
    answers by name: ``"limit" in q``, ``q["payment_provider"]`` and ``q.get("limit", [])`` give
    every value of that name, in order.

    :param pairs: the decoded ``(name, value)`` pairs.
    """

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__((str(name), str(value)) for name, value in pairs)

    def values(self, name: str) -> list[str]:
        """Every value sent for ``name``, in order (empty when absent).

        :param name: the parameter name.
        """
        return [value for key, value in self if key == name]

    def get(self, name: str, default: Any = None) -> Any:
        """Every value of ``name`` as a list, or ``default`` when the parameter was not sent.

        :param name: the parameter name.
        :param default: returned when absent.
        """
        found = self.values(name)
        return found if found else default

    def as_dict(self) -> dict[str, list[str]]:
        """The pairs grouped by name (``parse_qs`` form); order across names is lost."""
        out: dict[str, list[str]] = {}
        for key, value in self:
            out.setdefault(key, []).append(value)
        return out

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return any(key == item for key, _ in self)
        return super().__contains__(item)

    @overload
    def __getitem__(self, index: SupportsIndex) -> tuple[str, str]: ...
    @overload
    def __getitem__(self, index: slice) -> list[tuple[str, str]]: ...
    @overload
    def __getitem__(self, index: str) -> list[str]: ...
    def __getitem__(self, index: SupportsIndex | slice | str) -> Any:
        if isinstance(index, str):
            found = self.values(index)
            if not found:
                raise KeyError(index)
            return found
        return super().__getitem__(index)


#: What replaces a secret in the request log.
REDACTED = "<redacted>"
_SECRET_NAMES = frozenset({"password", "secret", "token", "api_key", "apikey", "authorization"})
_SECRET_SUFFIXES = ("_token", "_secret", "_password", "-token", "-secret")
_TEXT_SECRET_RE = re.compile(
    r"(?i)((?:^|[&\s;,?])[\w.-]*(?:password|secret|token|api_?key)[\w.-]*\s*[=:]\s*)([^&\s;,]+)"
)


def is_secret_name(name: str) -> bool:
    """Whether a body field of this name holds a secret (client secrets, tokens, passwords).

    :param name: the field name.
    """
    lowered = name.lower()
    return lowered in _SECRET_NAMES or lowered.endswith(_SECRET_SUFFIXES)


def redact(value: Any) -> Any:
    """A copy of a parsed JSON value with every secret-named field's value replaced.

    :param value: parsed JSON.
    """
    if isinstance(value, dict):
        return {
            key: REDACTED if is_secret_name(str(key)) and item is not None else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def logged_body(raw: bytes) -> Any:
    """The form of a request body kept in the request log, secrets redacted.

    :param raw: the raw body.
    :returns: the parsed JSON value, else the text (secret-named ``name=value`` pairs
        redacted), ``None`` when the body is empty.
    """
    if not raw.strip():
        return None
    text = raw.decode("utf-8", "replace")
    try:
        return redact(json.loads(text))
    except ValueError:
        return _TEXT_SECRET_RE.sub(lambda m: m.group(1) + REDACTED, text)


class RequestRecord(NamedTuple):
    """One request the emulator answered.

    :param method: HTTP method.
    :param path: path without the query string.
    :param status: status code answered.
    :param account_id: account from the path, or else from the bearer token (``None`` if neither).
    :param query: the query string as ``(name, value)`` pairs in the order sent (:class:`QueryPairs`).
    :param host: the ``Host`` header.
    :param body: the body: parsed JSON, else text, ``None`` when empty; secrets (fields named
        ``password``, ``secret``, ``token``, ``*_secret``, ``*_token``) read ``"<redacted>"``.
    :param client_port: the TCP port the request came from (which connection carried it; a
        proxy's log names the ports of the connections it opened).
    """

    method: str
    path: str
    status: int
    account_id: str | None
    query: QueryPairs
    host: str
    body: Any = None
    client_port: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The record as a JSON-able dict (``query`` as a list of ``[name, value]`` pairs)."""
        out = self._asdict()
        out["query"] = [list(pair) for pair in self.query]
        return out


@dataclass
class Fault:
    """An injected fault; see ``DinteroEmulator.inject_fault``.

    :param path_regex: regular expression searched in the request path.
    :param method: only for this method (``None`` = any).
    :param status: answer with this status and a Dintero error body.
    :param retry_after: ``Retry-After`` header value (seconds or an HTTP-date).
    :param delay: sleep this many seconds before answering.
    :param cut_after_bytes: send the full ``Content-Length`` but only this many body bytes.
    :param count: how many matching requests the fault applies to.
    """

    path_regex: str = ".*"
    method: str | None = None
    status: int | None = None
    retry_after: int | float | str | None = None
    delay: float | None = None
    cut_after_bytes: int | None = None
    count: int = 1

    def __post_init__(self) -> None:
        re.compile(self.path_regex)
        if self.count < 1:
            raise ValueError("count must be at least 1")
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error status")
        if self.cut_after_bytes is not None and self.cut_after_bytes < 0:
            raise ValueError("cut_after_bytes must not be negative")

    def matches(self, method: str, path: str) -> bool:
        """Whether the fault applies to a request.

        :param method: the request method.
        :param path: the request path.
        """
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return re.search(self.path_regex, path) is not None


@dataclass
class WebhookDelivery:
    """An outbound webhook delivery attempt.

    :param url: target URL.
    :param event: the ``event`` header (``settlement_add``, ``ping``).
    :param status: HTTP status the receiver answered, ``None`` when not delivered.
    :param headers: headers sent.
    :param body: raw body sent.
    :param error: why the delivery failed, if it did.
    :param subscription_id: the subscription delivered for.
    """

    url: str
    event: str
    status: int | None
    headers: dict[str, str]
    body: bytes
    error: str | None = None
    subscription_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The delivery as a JSON-able dict (body decoded as UTF-8)."""
        return {
            "url": self.url,
            "event": self.event,
            "status": self.status,
            "headers": dict(self.headers),
            "body": self.body.decode("utf-8", "replace"),
            "error": self.error,
            "subscription_id": self.subscription_id,
        }


class ApiError(Exception):
    """Raised by handlers; rendered as a Dintero error body.

    :param status: HTTP status.
    :param message: ``error.message``.
    :param code: ``error.code``.
    :param errors: ``error.errors`` (validation details).
    :param headers: extra response headers.
    """

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _DEFAULT_CODES.get(status, "ERROR")
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The Dintero error body."""
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.errors:
            err["errors"] = self.errors
        return {"error": err}


_DEFAULT_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    429: "TOO_MANY_REQUESTS",
    500: "INTERNAL_SERVER_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
}


def field_error(field_name: str, message: str) -> ApiError:
    """A 400 naming the offending field in ``error.errors``.

    :param field_name: dotted name of the field.
    :param message: what is wrong.
    """
    return ApiError(
        400,
        f"{field_name}: {message}",
        code="VALIDATION_ERROR",
        errors=[{"field": field_name, "message": message}],
    )


@dataclass
class Response:
    """A handler's answer. ``body`` is bytes, or an iterable of chunks with ``length`` set.

    :param status: HTTP status.
    :param body: the body bytes or chunk iterable.
    :param content_type: ``Content-Type`` header (``None`` for no body).
    :param headers: extra headers.
    :param length: ``Content-Length`` when ``body`` is an iterable.
    """

    status: int = 200
    body: bytes | Iterable[bytes] = b""
    content_type: str | None = JSON_CONTENT_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    length: int | None = None

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        """A JSON response.

        :param data: JSON-able value.
        :param status: HTTP status.
        :param headers: extra headers.
        """
        return cls(status=status, body=json.dumps(data).encode(), headers=headers or {})

    @classmethod
    def error(cls, err: ApiError) -> Response:
        """Render an :class:`ApiError`.

        :param err: the error.
        """
        return cls.json(err.body(), status=err.status, headers=err.headers)

    @classmethod
    def empty(cls, status: int = 204, headers: dict[str, str] | None = None) -> Response:
        """A response without a body.

        :param status: HTTP status.
        :param headers: extra headers.
        """
        return cls(status=status, body=b"", content_type=None, headers=headers or {})
