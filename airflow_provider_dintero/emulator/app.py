"""Request handling of the Dintero emulator: state, authentication, routing and every endpoint.

The module knows nothing about sockets; :mod:`airflow_provider_dintero.emulator.server` feeds it
:class:`Request` objects and writes the returned :class:`Response`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from airflow_provider_dintero.emulator import webhooks
from airflow_provider_dintero.emulator.models import (
    ApiError,
    EmulatorSettings,
    Fault,
    RateLimitRule,
    RequestRecord,
    Response,
    WebhookDelivery,
    field_error,
)
from airflow_provider_dintero.emulator.seed import (
    CONTENT_TYPES,
    EmulatorSeed,
    build_seed_data,
    content_sha256,
    content_stream,
    iso,
    make_report,
    make_settlement,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

DINTERO_API_BASE = "https://api.dintero.com"
ACCOUNT_RE = re.compile(r"^[PT]\d{8}$")
PARTNER_RE = re.compile(r"^[PT]\d{3}00000$")
AUDIENCE_RE = re.compile(r"^(?P<base>https?://[^/]+)/v1/accounts/(?P<aid>[PT]\d{8})/?$")

# --- scope catalogue (dintero-api.md 3.3) -------------------------------------------------------
_AREAS = (
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
    "shopping",
    "payouts",
    "wallets",
)
KNOWN_SCOPES: frozenset[str] = frozenset(
    [f"{level}:{area}" for level in ("admin", "write", "read") for area in _AREAS]
    + [
        "admin:account",
        "write:accounts:/auth/users",
        "write:accounts:/auth/users/no-mfa",
        "create:account",
        "create:applicant",
        "create:accounts:auth:refresh_token",
        "create:customers:/users",
        "public:customers",
        "user:customers",
        "user:receipts",
        "write:checkout:/admin/session/profiles",
    ]
)

ACCOUNTS_READ = ("admin:accounts", "read:accounts")
ACCOUNTS_WRITE = ("admin:accounts", "write:accounts")
SETTLEMENTS_READ = (
    "admin:billing",
    "read:billing",
    "admin:reports",
    "read:reports",
    "admin:settlements",
    "read:settlements",
)
SRC_CREATE = ("admin:billing", "admin:reports", "admin:settlements", "write:settlements")
SRC_WRITE = ("admin:billing", "write:billing", "admin:settlements", "write:settlements")
REPORTS_READ = ("read:reports", "admin:reports")
INSIGHT_READ = ("read:insight", "admin:insight")
INSIGHT_WRITE = ("write:insight", "admin:insight")
HOOKS_READ = ("admin:hooks", "read:hooks")
HOOKS_WRITE = ("admin:hooks", "write:hooks")
PROFILES_READ = ("admin:checkout", "read:checkout", "write:checkout")
PROFILES_WRITE = ("admin:checkout", "write:checkout", "write:checkout:/admin/session/profiles")

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

#: Top-level keys of a payment profile ``configuration`` (checkout PaymentConfiguration and friends).
PROFILE_CONFIGURATION_KEYS = frozenset(
    {
        "auto_capture",
        "channel",
        "publish",
        "active_payment_types",
        "default_payment_type",
        "bambora",
        "dintero",
        "dintero_psp",
        "instabank",
        "netaxept",
        "payex",
        "vipps",
        "collector",
        "klarna",
        "santander",
        "swish",
        "payout",
        "discounts",
        "theme",
        "countries",
        "default_customer_type",
        "allow_different_billing_shipping_address",
    }
)

WEBHOOK_EVENTS = frozenset(
    {
        "settlement_add",
        "account_add",
        "account_update",
        "checkout_transaction",
        "checkout_authorization",
        "checkout_capture",
        "checkout_refund",
        "checkout_void",
        "checkout_session",
        "approval_payout_destination_update",
        "cdd_case_update",
        "payout_transfer",
        "ping",
    }
)

INSIGHT_DATA_TYPES = ("checkout/transactions",)
INSIGHT_SCHEDULES = ("monthly", "weekly", "daily")
INSIGHT_LANGUAGES = ("no", "en")
INSIGHT_CONTENT_TYPES = ("application/pdf", "text/csv")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parse_timestamp(value: str, name: str, end_of_day: bool = False) -> datetime:
    """Parse ``YYYY-MM-DD`` or ISO-8601 (``Z`` or offset; naive means UTC).

    :param value: the text.
    :param name: parameter name for the error.
    :param end_of_day: a bare date means the end of that day (for ``.lte`` filters).
    """
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=timezone.utc)
            return day + timedelta(days=1, microseconds=-1) if end_of_day else day
        text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"invalid date in {name}: {value!r}", code="INVALID_FILTER") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


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
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    host: str
    params: dict[str, str] = field(default_factory=dict)
    token: TokenInfo | None = None

    @property
    def base_url(self) -> str:
        """``http://<host>`` as the client addressed the emulator."""
        return f"http://{self.host}"

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


def _limit(req: Request, default: int, maximum: int) -> int:
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


def _require_str(body: dict[str, Any], name: str, max_len: int | None = None) -> str:
    value = body.get(name)
    if value is None:
        raise field_error(name, "is required")
    if not isinstance(value, str) or not value:
        raise field_error(name, "must be a non-empty string")
    if max_len is not None and len(value) > max_len:
        raise field_error(name, f"must be at most {max_len} characters")
    return value


def _optional_str(body: dict[str, Any], name: str) -> None:
    if name in body and body[name] is not None and not isinstance(body[name], str):
        raise field_error(name, "must be a string")


def _str_list(
    body: dict[str, Any], name: str, required: bool, allowed: tuple[str, ...] | None = None
) -> None:
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


def _enum(body: dict[str, Any], name: str, allowed: tuple[str, ...]) -> None:
    value = _require_str(body, name)
    if value not in allowed:
        raise field_error(name, f"{value!r} is not one of {', '.join(allowed)}")


def _filter_list(body: dict[str, Any], name: str, allowed: tuple[str, ...] | None) -> None:
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


@dataclass
class Route:
    """One route of the emulator.

    :param method: HTTP method.
    :param pattern: compiled full-match path regex with named groups.
    :param handler: the endpoint function.
    :param scopes: any of these scopes is required (``None`` = no bearer auth).
    :param control: a ``/_emulator`` control route (not logged, no faults).
    :param allow_partner_on_merchant: a partner token may call it on the partner's merchants
        (when ``settings.partner_token_on_merchant_settings``).
    """

    method: str
    pattern: re.Pattern[str]
    handler: Callable[[Request], Response]
    scopes: tuple[str, ...] | None
    control: bool = False
    allow_partner_on_merchant: bool = False


class EmulatorApp:
    """All emulator state plus the endpoint implementations; thread-safe.

    :param seed: the deterministic start state.
    :param settings_defaults: settings values restored by :meth:`reset`.
    """

    def __init__(self, seed: EmulatorSeed, settings_defaults: dict[str, Any] | None = None) -> None:
        self.seed = seed
        self.settings_defaults = dict(settings_defaults or {})
        EmulatorSettings().update(self.settings_defaults)  # fail early on unknown names
        self.lock = threading.RLock()
        self.deliveries_cond = threading.Condition(self.lock)
        self.base_url = "http://127.0.0.1"
        self.alt_base_url = "http://localhost"
        self.settings = EmulatorSettings()
        self._signing_key = seed.derive("url-signing").encode()
        self.routes: list[Route] = []
        self.generation = 0
        self._register_routes()
        self.reset()

    # --- state ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Restore the seed state, default settings; clear log, faults, tokens and deliveries."""
        with self.lock:
            data = build_seed_data(self.seed)
            self.accounts: dict[str, dict[str, Any]] = data.accounts
            self.settlements: dict[str, list[dict[str, Any]]] = data.settlements
            self.insight_configs: dict[str, list[dict[str, Any]]] = data.insight_configs
            self.reports: dict[str, list[dict[str, Any]]] = data.reports
            self.profiles: dict[str, dict[str, dict[str, Any]]] = {
                aid: {p["profile_id"]: p for p in plist} for aid, plist in data.profiles.items()
            }
            self.src_configs: dict[str, list[dict[str, Any]]] = {aid: [] for aid in self.accounts}
            self.subscriptions: dict[str, list[dict[str, Any]]] = {aid: [] for aid in self.accounts}
            self.clients: dict[str, dict[str, Any]] = {}
            self.grants: list[dict[str, Any]] = []
            self.tokens: dict[str, TokenInfo] = {}
            self.requests: list[RequestRecord] = []
            self.faults: list[Fault] = []
            self.deliveries: list[WebhookDelivery] = []
            self.generation += 1
            self._rate_hits: dict[int, list[float]] = {}
            self.settings = EmulatorSettings()
            self.settings.update(self.settings_defaults)
            self.signed_urls_valid_after_ms = 0
            self._counter = 0
            created = iso(datetime(2026, 9, 1, tzinfo=timezone.utc))
            self._seed_client(self.seed.partner_id, self.seed.partner_client_id, PARTNER_SCOPES, created)
            self._seed_client(self.seed.foreign_partner_id, "foreign-partner-client", PARTNER_SCOPES, created)
            for mid in [*self.seed.merchant_ids, self.seed.foreign_merchant_id]:
                self._seed_client(mid, f"merchant-{mid}", MERCHANT_ADMIN_SCOPES, created)

    def _seed_client(self, account_id: str, login: str, scopes: tuple[str, ...], created: str) -> None:
        client = self._new_client_record(
            account_id,
            {"client_id": login, "name": f"Seeded client {login}", "description": "emulator seed"},
            self.seed.uuid("client", account_id, login),
            self.seed.secret("client", account_id, login),
            created,
        )
        self.clients[client["id"]] = client
        self.grants.append(
            {
                "id": self.seed.uuid("grant", account_id, login),
                "account_id": account_id,
                "client_id": client["id"],
                "audience": f"{DINTERO_API_BASE}/v1/accounts/{account_id}",
                "audience_account": account_id,
                "scope": list(scopes),
                "type": "any",
                "created_at": created,
                "created_by": "emulator",
                "updated_at": created,
            }
        )

    def _new_client_record(
        self, account_id: str, body: dict[str, Any], cid: str, secret: str, created: str
    ) -> dict[str, Any]:
        return {
            "id": cid,
            "created_at": created,
            "created_by": "emulator",
            "updated_at": created,
            "name": body.get("name") or "",
            "description": body.get("description") or "",
            "client_id": body.get("client_id") or cid,
            "callbacks": list(body.get("callbacks") or []),
            "_account_id": account_id,
            "_secret": secret,
        }

    def next_id(self, kind: str) -> str:
        """A deterministic uuid: the n-th id minted since the last reset.

        :param kind: namespace of the id.
        """
        with self.lock:
            self._counter += 1
            return self.seed.uuid("runtime", kind, self._counter)

    def client_credentials(self, account_id: str) -> tuple[str, str]:
        """``(client_id, secret)`` of the seeded client on ``account_id``.

        :param account_id: partner or merchant id.
        """
        login = self.seed.partner_client_id if account_id == self.seed.partner_id else None
        if account_id == self.seed.foreign_partner_id:
            login = "foreign-partner-client"
        if login is None:
            if account_id not in self.seed.merchant_ids and account_id != self.seed.foreign_merchant_id:
                raise KeyError(account_id)
            login = f"merchant-{account_id}"
        return login, self.seed.secret("client", account_id, login)

    def owner_of(self, account_id: str) -> str | None:
        """The partner account id owning a merchant (``None`` for unknown or partner accounts).

        :param account_id: a merchant id.
        """
        acct = self.accounts.get(account_id)
        if acct is None or PARTNER_RE.match(account_id):
            return None
        return f"{acct['partner_id']}00000"

    # --- tokens --------------------------------------------------------------------------------
    def issue_token(
        self, account_id: str, scopes: frozenset[str], kind: str = "access", partner_id: str | None = None
    ) -> dict[str, Any]:
        """Mint a JWT-shaped token and remember it.

        :param account_id: account the token acts on.
        :param scopes: scopes granted.
        :param kind: ``access`` or ``exchange``.
        :param partner_id: partner behind an exchange token.
        """
        lifetime = int(self.settings.token_lifetime)
        now = int(time.time())
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "emulator"}).encode())
        payload = _b64url(
            json.dumps(
                {
                    "iss": "https://api.dintero.com/v1/accounts/emulator",
                    "sub": account_id,
                    "aud": f"{DINTERO_API_BASE}/v1/accounts/{account_id}",
                    "scope": " ".join(sorted(scopes)),
                    "iat": now,
                    "exp": now + lifetime,
                    "jti": secrets.token_hex(12),
                    "typ": kind,
                }
            ).encode()
        )
        signature = _b64url(hmac.new(self._signing_key, f"{header}.{payload}".encode(), "sha256").digest())
        token = f"{header}.{payload}.{signature}"
        with self.lock:
            self.tokens[token] = TokenInfo(account_id, scopes, kind, time.time() + lifetime, partner_id)
        return {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}

    def expire_tokens(self) -> None:
        """Treat every token issued so far as expired."""
        with self.lock:
            for info in self.tokens.values():
                info.expires_at = 0.0

    def bearer(self, req: Request) -> TokenInfo:
        """The valid bearer token of a request, else 401.

        :param req: the request.
        """
        auth = req.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(401, "missing bearer token", code="UNAUTHORIZED")
        with self.lock:
            info = self.tokens.get(value.strip())
        if info is None:
            raise ApiError(401, "Access forbidden, invalid JWT token was used", code="INVALID_TOKEN")
        if info.is_expired():
            raise ApiError(401, "Access forbidden, the JWT token has expired", code="TOKEN_EXPIRED")
        return info

    def audience_account(self, audience: Any, req: Request) -> str | None:
        """The account id an audience URL names, if its base is acceptable.

        :param audience: the audience value from a body.
        :param req: the request (its ``Host`` is an accepted base).
        """
        if not isinstance(audience, str):
            return None
        match = AUDIENCE_RE.match(audience.strip())
        if match is None:
            return None
        base = match["base"].rstrip("/")
        accepted = {req.base_url, self.base_url, self.alt_base_url}
        if self.settings.accept_dintero_audience:
            accepted.add(DINTERO_API_BASE)
        return match["aid"] if base in accepted else None

    # --- request log / faults ------------------------------------------------------------------
    def record(self, rec: RequestRecord, generation: int | None = None) -> None:
        """Append to the request log, unless the emulator was reset since the request arrived.

        :param rec: the record.
        :param generation: :attr:`generation` when the request arrived.
        """
        with self.lock:
            if generation is None or generation == self.generation:
                self.requests.append(rec)

    def take_fault(self, method: str, path: str) -> Fault | None:
        """Consume one use of the first fault matching a request.

        :param method: request method.
        :param path: request path.
        """
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def rate_limited(self, method: str, path: str) -> RateLimitRule | None:
        """The first rate-limit rule this request exceeds, if any (and count the request).

        :param method: request method.
        :param path: request path.
        """
        now = time.monotonic()
        with self.lock:
            for rule in self.settings.rate_limits:
                if rule.method and rule.method.upper() != method:
                    continue
                if not re.search(rule.path_regex, path):
                    continue
                hits = [t for t in self._rate_hits.get(id(rule), []) if now - t < rule.per_seconds]
                if len(hits) >= rule.max_requests:
                    self._rate_hits[id(rule)] = hits
                    return rule
                hits.append(now)
                self._rate_hits[id(rule)] = hits
        return None

    # --- dispatch ------------------------------------------------------------------------------
    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """Find the route for a request.

        :param method: request method.
        :param path: request path.
        :returns: ``(route, path params, path_exists)``; ``path_exists`` tells 405 from 404.
        """
        path_exists = False
        for route in self.routes:
            m = route.pattern.fullmatch(path)
            if m is None:
                continue
            path_exists = True
            if route.method == method:
                return route, m.groupdict(), True
        return None, {}, path_exists

    def authorize(self, route: Route, req: Request) -> None:
        """Check bearer token, account and scopes for a route (raises 401/403).

        :param route: the matched route.
        :param req: the request; ``req.token`` is set on success.
        """
        if route.scopes is None:
            return
        info = self.bearer(req)
        req.token = info
        if info.kind == "exchange" and not self.settings.exchange_token_is_access_token:
            raise ApiError(
                401, "exchange tokens can only be used to get a merchant token", code="INVALID_TOKEN"
            )
        aid = req.params.get("aid")
        if aid is not None and info.account_id != aid:
            partner_ok = (
                route.allow_partner_on_merchant
                and self.settings.partner_token_on_merchant_settings
                and self.owner_of(aid) == info.account_id
            )
            if not partner_ok:
                raise ApiError(401, f"token is not valid for account {aid}", code="INVALID_TOKEN")
        if route.scopes and not info.scopes.intersection(route.scopes):
            raise ApiError(
                403,
                f"missing scope: one of {', '.join(route.scopes)} is required",
                code="FORBIDDEN",
            )
        if aid is not None and aid not in self.accounts:
            raise ApiError(404, f"account {aid} not found")

    def _add(
        self,
        method: str,
        path: str,
        handler: Callable[[Request], Response],
        scopes: tuple[str, ...] | None,
        *,
        control: bool = False,
        allow_partner_on_merchant: bool = False,
    ) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
        self.routes.append(
            Route(method, re.compile(regex), handler, scopes, control, allow_partner_on_merchant)
        )

    def _register_routes(self) -> None:
        acc = "/v1/accounts/{aid}"
        add = self._add
        add("POST", "/v1/accounts/{oid}/auth/token", self.h_token, None)
        add("POST", "/v1/accounts/{pid}/auth/exchange_token", self.h_exchange, None)
        add("GET", f"{acc}/management/accounts", self.h_list_accounts, ACCOUNTS_READ)
        add("GET", f"{acc}/management/accounts/{{mid}}", self.h_get_account, ACCOUNTS_READ)
        add(
            "GET",
            f"{acc}/management/settings",
            self.h_settings,
            ACCOUNTS_READ,
            allow_partner_on_merchant=True,
        )
        add("POST", f"{acc}/auth/clients", self.h_client_create, ACCOUNTS_WRITE)
        add("GET", f"{acc}/auth/clients", self.h_client_list, ACCOUNTS_READ)
        add("GET", f"{acc}/auth/clients/{{cid}}", self.h_client_get, ACCOUNTS_READ)
        add("DELETE", f"{acc}/auth/clients/{{cid}}", self.h_client_delete, ACCOUNTS_WRITE)
        add("POST", f"{acc}/auth/clients/{{cid}}/rotate-secret", self.h_client_rotate, ACCOUNTS_WRITE)
        add("POST", f"{acc}/auth/client-grants", self.h_grant_create, ACCOUNTS_WRITE)
        add("GET", f"{acc}/auth/client-grants", self.h_grant_list, ACCOUNTS_READ)
        add("DELETE", f"{acc}/auth/client-grants/{{gid}}", self.h_grant_delete, ACCOUNTS_WRITE)
        prof = "/v1/admin/session/profiles"
        add("POST", prof, self.h_profile_create, PROFILES_WRITE)
        add("GET", prof, self.h_profile_list, PROFILES_READ)
        add("GET", f"{prof}/{{profile_id}}", self.h_profile_get, PROFILES_READ)
        add("PUT", f"{prof}/{{profile_id}}", self.h_profile_put, PROFILES_WRITE)
        add("DELETE", f"{prof}/{{profile_id}}", self.h_profile_delete, PROFILES_WRITE)
        add("GET", f"{acc}/settlements", self.h_settlements, SETTLEMENTS_READ)
        src = f"{acc}/settlements/reports/configuration"
        add("GET", src, self.h_src_list, SETTLEMENTS_READ)
        add("POST", src, self.h_src_create, SRC_CREATE)
        add("GET", f"{src}/{{id}}", self.h_src_get, SETTLEMENTS_READ)
        add("PUT", f"{src}/{{id}}", self.h_src_put, SRC_WRITE)
        add("DELETE", f"{src}/{{id}}", self.h_src_delete, SRC_WRITE)
        add("GET", f"{acc}/settlements/{{sid}}/attachments/{{att}}", self.h_attachment, SETTLEMENTS_READ)
        ins = f"{acc}/insight/reports/configuration"
        add("POST", ins, self.h_insight_create, INSIGHT_WRITE)
        add("GET", ins, self.h_insight_list, INSIGHT_READ)
        add("GET", f"{ins}/{{id}}", self.h_insight_get, INSIGHT_READ)
        add("PUT", f"{ins}/{{id}}", self.h_insight_put, INSIGHT_WRITE)
        add("DELETE", f"{ins}/{{id}}", self.h_insight_delete, INSIGHT_WRITE)
        add("GET", f"{acc}/reports/metadata", self.h_reports, REPORTS_READ)
        hooks = f"{acc}/hooks/subscriptions"
        add("GET", hooks, self.h_hook_list, HOOKS_READ)
        add("POST", hooks, self.h_hook_create, HOOKS_WRITE)
        add("GET", f"{hooks}/{{hid}}", self.h_hook_get, HOOKS_READ)
        add("PUT", f"{hooks}/{{hid}}", self.h_hook_put, HOOKS_WRITE)
        add("DELETE", f"{hooks}/{{hid}}", self.h_hook_delete, HOOKS_WRITE)
        add("POST", f"{hooks}/{{hid}}/ping", self.h_hook_ping, HOOKS_WRITE)
        # Unauthenticated downloads (logged, subject to faults).
        add("GET", "/_emulator/signed/{aid}/{rid}", self.h_signed_download, None)
        add("GET", "/_emulator/blobs/{aid}/{sid}/{att}", self.h_blob_download, None)
        # Control API (not logged, no faults).
        add("POST", "/_emulator/reset", self.c_reset, None, control=True)
        add("POST", "/_emulator/settlements", self.c_add_settlement, None, control=True)
        add("POST", "/_emulator/reports", self.c_add_report, None, control=True)
        add("POST", "/_emulator/faults", self.c_fault, None, control=True)
        add("DELETE", "/_emulator/faults", self.c_clear_faults, None, control=True)
        add("POST", "/_emulator/expire-tokens", self.c_expire_tokens, None, control=True)
        add("POST", "/_emulator/expire-signed-urls", self.c_expire_signed, None, control=True)
        add("GET", "/_emulator/requests", self.c_requests, None, control=True)
        add("DELETE", "/_emulator/requests", self.c_clear_requests, None, control=True)
        add("GET", "/_emulator/state", self.c_state, None, control=True)
        add("GET", "/_emulator/settings", self.c_get_settings, None, control=True)
        add("POST", "/_emulator/settings", self.c_set_settings, None, control=True)
        add("GET", "/_emulator/deliveries", self.c_deliveries, None, control=True)

    # --- auth endpoints ------------------------------------------------------------------------
    def h_token(self, req: Request) -> Response:
        """``POST /v1/accounts/{oid}/auth/token`` (client_credentials, Basic or exchange Bearer).

        :param req: the request.
        """
        oid = req.params["oid"]
        auth = req.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() not in ("basic", "bearer") or not value.strip():
            raise ApiError(401, "missing client credentials", code="UNAUTHORIZED")
        body = req.json_object()
        grant_type = _require_str(body, "grant_type")
        if grant_type != "client_credentials":
            raise field_error("grant_type", f"unsupported grant_type {grant_type!r}")
        if "audience" not in body:
            raise field_error("audience", "is required")
        aud_account = self.audience_account(body["audience"], req)
        if aud_account is None:
            raise field_error("audience", "must be <base url>/v1/accounts/<account id>")
        if scheme.lower() == "bearer":
            return self._token_from_exchange(req, oid, aud_account)
        try:
            login, _, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, "malformed Basic credentials", code="UNAUTHORIZED") from None
        with self.lock:
            client = next(
                (c for c in self.clients.values() if c["client_id"] == login and c["_account_id"] == oid),
                None,
            )
            if client is None or not hmac.compare_digest(client["_secret"].encode(), secret.encode()):
                raise ApiError(401, "invalid client credentials", code="INVALID_CLIENT")
            scopes: set[str] = set()
            for grant in self.grants:
                if (
                    grant["client_id"] == client["id"]
                    and grant["audience_account"] == aud_account
                    and grant["type"] in ("any", "client_credentials")
                ):
                    scopes.update(grant["scope"])
        if not scopes:
            raise ApiError(
                403, f"the client has no grant for audience {body['audience']}", code="ACCESS_DENIED"
            )
        return Response.json(self.issue_token(aud_account, frozenset(scopes)))

    def _token_from_exchange(self, req: Request, oid: str, aud_account: str) -> Response:
        info = self.bearer(req)
        if info.kind != "exchange" or info.account_id != oid:
            raise ApiError(401, f"token cannot mint tokens for account {oid}", code="INVALID_TOKEN")
        mode = self.settings.exchange_audience
        allowed: set[str | None] = {info.partner_id, oid}
        if mode == "partner":
            allowed = {info.partner_id}
        elif mode == "merchant":
            allowed = {oid}
        if aud_account not in allowed:
            raise ApiError(403, "audience does not match the exchange token", code="ACCESS_DENIED")
        return Response.json(self.issue_token(oid, frozenset(MERCHANT_ADMIN_SCOPES)))

    def h_exchange(self, req: Request) -> Response:
        """``POST /v1/accounts/{partner_id}/auth/exchange_token``.

        :param req: the request.
        """
        pid = req.params["pid"]
        info = self.bearer(req)
        if not PARTNER_RE.match(pid):
            raise ApiError(400, f"{pid} is not a partner account id", code="BAD_REQUEST")
        if info.kind != "access" or info.account_id != pid:
            raise ApiError(401, f"token is not valid for account {pid}", code="INVALID_TOKEN")
        if not info.scopes.intersection(ACCOUNTS_READ):
            raise ApiError(403, "missing scope: admin:accounts or read:accounts", code="FORBIDDEN")
        body = req.json_object()
        account_id = _require_str(body, "account_id")
        if not ACCOUNT_RE.match(account_id):
            raise field_error("account_id", "must match ^[PT]\\d{8}$")
        if account_id not in self.accounts:
            raise ApiError(404, f"account {account_id} not found")
        if self.owner_of(account_id) != pid:
            raise ApiError(403, f"account {account_id} does not belong to partner {pid}", code="FORBIDDEN")
        scopes = frozenset(MERCHANT_ADMIN_SCOPES)
        return Response.json(self.issue_token(account_id, scopes, kind="exchange", partner_id=pid))

    # --- accounts ------------------------------------------------------------------------------
    def h_list_accounts(self, req: Request) -> Response:
        """``GET /v1/accounts/{partner}/management/accounts`` (bare array, ``paging_token``).

        :param req: the request.
        """
        aid = req.params["aid"]
        limit = _limit(req, 10, 100)
        search = (req.arg("search") or "").lower()
        country = req.arg("country")
        with self.lock:
            merchants = [
                a
                for mid, a in sorted(self.accounts.items())
                if self.owner_of(mid) == aid
                and (not search or search in json.dumps(a).lower())
                and (not country or a.get("company", {}).get("address", {}).get("country") == country)
            ]
        after = req.arg("starting_after")
        if after:
            tokens = [f"pt_{a['account_id']}" for a in merchants]
            if after not in tokens:
                raise ApiError(400, f"unknown paging token {after!r}", code="INVALID_FILTER")
            merchants = merchants[tokens.index(after) + 1 :]
        return Response.json([{**a, "paging_token": f"pt_{a['account_id']}"} for a in merchants[:limit]])

    def h_get_account(self, req: Request) -> Response:
        """``GET /v1/accounts/{partner}/management/accounts/{aid}``: one merchant of the partner.

        :param req: the request.
        """
        mid = req.params["mid"]
        with self.lock:
            if self.owner_of(mid) != req.params["aid"]:
                raise ApiError(404, f"account {mid} not found")
            return Response.json(self.accounts[mid])

    def h_settings(self, req: Request) -> Response:
        """``GET /v1/accounts/{aid}/management/settings``.

        :param req: the request.
        """
        with self.lock:
            return Response.json(self.accounts[req.params["aid"]])

    # --- clients and grants --------------------------------------------------------------------
    @staticmethod
    def _client_view(client: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in client.items() if not k.startswith("_")}

    def _find_client(self, aid: str, cid: str) -> dict[str, Any]:
        client = self.clients.get(cid)
        if client is None or client["_account_id"] != aid:
            raise ApiError(404, f"client {cid} not found")
        return client

    def h_client_create(self, req: Request) -> Response:
        """``POST /v1/accounts/{aid}/auth/clients``.

        :param req: the request.
        """
        aid = req.params["aid"]
        body = req.json_object()
        for name in ("name", "description", "client_id"):
            _optional_str(body, name)
        _str_list(body, "callbacks", required=False)
        cid = self.next_id("client")
        secret = secrets.token_urlsafe(32)
        with self.lock:
            login = body.get("client_id")
            if login and any(
                c["client_id"] == login and c["_account_id"] == aid for c in self.clients.values()
            ):
                raise ApiError(400, f"client_id {login!r} already exists", code="DUPLICATE_CLIENT_ID")
            client = self._new_client_record(aid, body, cid, secret, iso(_now()))
            self.clients[cid] = client
        return Response.json({**self._client_view(client), "client_secret": secret})

    def h_client_list(self, req: Request) -> Response:
        """``GET /v1/accounts/{aid}/auth/clients`` (array, no secrets).

        :param req: the request.
        """
        aid = req.params["aid"]
        with self.lock:
            return Response.json(
                [self._client_view(c) for c in self.clients.values() if c["_account_id"] == aid]
            )

    def h_client_get(self, req: Request) -> Response:
        """``GET /v1/accounts/{aid}/auth/clients/{id}``.

        :param req: the request.
        """
        with self.lock:
            return Response.json(self._client_view(self._find_client(req.params["aid"], req.params["cid"])))

    def h_client_delete(self, req: Request) -> Response:
        """``DELETE /v1/accounts/{aid}/auth/clients/{id}`` (also deletes its grants).

        :param req: the request.
        """
        with self.lock:
            client = self._find_client(req.params["aid"], req.params["cid"])
            del self.clients[client["id"]]
            self.grants = [g for g in self.grants if g["client_id"] != client["id"]]
            view = self._client_view(client)
        view["deleted_at"] = iso(_now())
        return Response.json(view)

    def h_client_rotate(self, req: Request) -> Response:
        """``POST /v1/accounts/{aid}/auth/clients/{id}/rotate-secret`` -> ``{"client": {...}}``.

        :param req: the request.
        """
        with self.lock:
            client = self._find_client(req.params["aid"], req.params["cid"])
            client["_secret"] = secrets.token_urlsafe(32)
            client["updated_at"] = iso(_now())
            view = {**self._client_view(client), "client_secret": client["_secret"]}
        return Response.json({"client": view})

    @staticmethod
    def _grant_view(grant: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in grant.items() if k not in ("account_id", "audience_account")}

    def h_grant_create(self, req: Request) -> Response:
        """``POST /v1/accounts/{aid}/auth/client-grants``.

        :param req: the request.
        """
        aid = req.params["aid"]
        body = req.json_object()
        client_uuid = _require_str(body, "client_id")
        audience = _require_str(body, "audience")
        scope = body.get("scope")
        if scope is None:
            raise field_error("scope", "is required")
        if not isinstance(scope, list) or not scope or not all(isinstance(s, str) for s in scope):
            raise field_error("scope", "must be a non-empty array of strings")
        unknown = [s for s in scope if s not in KNOWN_SCOPES]
        if unknown:
            raise field_error("scope", f"unknown scope(s): {', '.join(unknown)}")
        grant_type = body.get("type", "any")
        if grant_type not in ("any", "authorization_code", "client_credentials", "password"):
            raise field_error("type", "must be any, authorization_code, client_credentials or password")
        aud_account = self.audience_account(audience, req)
        if aud_account is None:
            raise field_error("audience", "must be <base url>/v1/accounts/<account id>")
        if aud_account != aid:
            raise field_error("audience", f"must name this account ({aid})")
        with self.lock:
            client = self.clients.get(client_uuid)
            if client is None or client["_account_id"] != aid:
                if any(c["client_id"] == client_uuid for c in self.clients.values()):
                    raise field_error("client_id", "must be the client's id (UUID), not its client_id")
                raise ApiError(404, f"client {client_uuid} not found")
            now = iso(_now())
            grant = {
                "id": self.next_id("grant"),
                "account_id": aid,
                "client_id": client_uuid,
                "audience": audience,
                "audience_account": aud_account,
                "scope": list(scope),
                "type": grant_type,
                "created_at": now,
                "created_by": "emulator",
                "updated_at": now,
            }
            self.grants.append(grant)
        return Response.json(self._grant_view(grant))

    def h_grant_list(self, req: Request) -> Response:
        """``GET /v1/accounts/{aid}/auth/client-grants?audience=&client_id=``.

        :param req: the request.
        """
        aid = req.params["aid"]
        audience = req.arg("audience")
        client_id = req.arg("client_id")
        with self.lock:
            out = [
                self._grant_view(g)
                for g in self.grants
                if g["account_id"] == aid
                and (audience is None or g["audience"].rstrip("/") == audience.rstrip("/"))
                and (client_id is None or g["client_id"] == client_id)
            ]
        return Response.json(out)

    def h_grant_delete(self, req: Request) -> Response:
        """``DELETE /v1/accounts/{aid}/auth/client-grants/{id}`` (returns the deleted grant).

        :param req: the request.
        """
        aid = req.params["aid"]
        with self.lock:
            grant = next(
                (g for g in self.grants if g["id"] == req.params["gid"] and g["account_id"] == aid), None
            )
            if grant is None:
                raise ApiError(404, f"grant {req.params['gid']} not found")
            self.grants.remove(grant)
        return Response.json({**self._grant_view(grant), "deleted_at": iso(_now())})

    # --- payment profiles ----------------------------------------------------------------------
    def _profile_body(self, body: dict[str, Any]) -> None:
        _require_str(body, "description")
        config = body.get("configuration")
        if config is None:
            raise field_error("configuration", "is required")
        if not isinstance(config, dict):
            raise field_error("configuration", "must be an object")
        unknown = sorted(set(config) - PROFILE_CONFIGURATION_KEYS)
        if unknown:
            raise ApiError(
                400,
                f"unknown configuration field(s): {', '.join(unknown)}",
                code="VALIDATION_ERROR",
                errors=[{"field": f"configuration.{k}", "message": "unknown field"} for k in unknown],
            )
        if "profile_id" in body and (not isinstance(body["profile_id"], str) or not body["profile_id"]):
            raise field_error("profile_id", "must be a non-empty string")

    def _profiles_of(self, req: Request) -> dict[str, dict[str, Any]]:
        assert req.token is not None
        return self.profiles.setdefault(req.token.account_id, {})

    def h_profile_create(self, req: Request) -> Response:
        """``POST /v1/admin/session/profiles``.

        :param req: the request.
        """
        body = req.json_object()
        self._profile_body(body)
        with self.lock:
            profiles = self._profiles_of(req)
            assert req.token is not None
            pid = (
                body.get("profile_id") or f"{req.token.account_id}.{self.next_id('profile').replace('-', '')}"
            )
            if pid in profiles:
                raise ApiError(400, f"profile {pid} already exists", code="DUPLICATE_PROFILE")
            now = iso(_now())
            profile = {**body, "profile_id": pid, "created_at": now, "updated_at": now}
            profiles[pid] = profile
        return Response.json(profile)

    def h_profile_list(self, req: Request) -> Response:
        """``GET /v1/admin/session/profiles`` (array).

        :param req: the request.
        """
        with self.lock:
            return Response.json(list(self._profiles_of(req).values()))

    def _profile(self, req: Request) -> dict[str, Any]:
        profile = self._profiles_of(req).get(req.params["profile_id"])
        if profile is None:
            raise ApiError(404, f"profile {req.params['profile_id']} not found")
        return profile

    def h_profile_get(self, req: Request) -> Response:
        """``GET /v1/admin/session/profiles/{profile_id}``.

        :param req: the request.
        """
        with self.lock:
            return Response.json(self._profile(req))

    def h_profile_put(self, req: Request) -> Response:
        """``PUT /v1/admin/session/profiles/{profile_id}`` (full replacement).

        :param req: the request.
        """
        body = req.json_object()
        self._profile_body(body)
        with self.lock:
            old = self._profile(req)
            pid = req.params["profile_id"]
            if body.get("profile_id", pid) != pid:
                raise field_error("profile_id", "does not match the path")
            profile = {**body, "profile_id": pid, "created_at": old["created_at"], "updated_at": iso(_now())}
            self._profiles_of(req)[pid] = profile
        return Response.json(profile)

    def h_profile_delete(self, req: Request) -> Response:
        """``DELETE /v1/admin/session/profiles/{profile_id}``.

        :param req: the request.
        """
        with self.lock:
            profile = self._profile(req)
            del self._profiles_of(req)[profile["profile_id"]]
        return Response.json(profile)

    # --- settlements ---------------------------------------------------------------------------
    @staticmethod
    def settlement_view(item: dict[str, Any]) -> dict[str, Any]:
        """The public form of a settlement record.

        :param item: the internal record.
        """
        out = {k: v for k, v in item.items() if k != "account_id"}
        out["attachments"] = [{k: v for k, v in a.items() if k != "size"} for a in item["attachments"]]
        return out

    def h_settlements(self, req: Request) -> Response:
        """``GET /v1/accounts/{aid}/settlements`` with filters and keyset paging.

        :param req: the request.
        """
        aid = req.params["aid"]
        q = req.query
        limit = _limit(req, 10, 1000)
        for a, b in (("created_at.gte", "item_created_at.gte"), ("created_at.lte", "item_created_at.lte")):
            if a in q and b in q:
                raise ApiError(400, f"{a} cannot be combined with {b}", code="INVALID_FILTER")
        if ("starting_after_id" in q) != ("starting_after_date" in q):
            raise ApiError(
                400, "starting_after_id and starting_after_date must be used together", code="INVALID_FILTER"
            )
        by_created = "item_created_at.gte" in q or "item_created_at.lte" in q
        key_field = "created_at" if by_created else "settled_at"
        bounds: list[tuple[str, datetime, bool]] = []
        for name, fld in (
            ("created_at.gte", "settled_at"),
            ("created_at.lte", "settled_at"),
            ("item_created_at.gte", "created_at"),
            ("item_created_at.lte", "created_at"),
        ):
            raw = req.arg(name)
            if raw is not None:
                upper = name.endswith(".lte")
                bounds.append((fld, parse_timestamp(raw, name, end_of_day=upper), upper))
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

        with self.lock:
            items = [i for i in self.settlements.get(aid, []) if keep(i)]
        keyed = sorted(
            ((parse_timestamp(i[key_field], key_field), i["id"], i) for i in items),
            key=lambda t: (t[0], t[1]),
            reverse=True,
        )
        if cursor is not None:
            keyed = [t for t in keyed if (t[0], t[1]) < cursor]
        page = keyed[:limit]
        body: dict[str, Any] = {"items": [self.settlement_view(t[2]) for t in page]}
        more = len(keyed) > limit
        if page and (more or (self.settings.last_page_key_mode == "when_full" and len(page) == limit)):
            last = page[-1][2]
            key = {"id": last["id"], "account_id": aid, "settled_at": last["settled_at"]}
            if by_created:
                key["created_at"] = last["created_at"]
            body["last_evaluated_key"] = key
        return Response.json(body)

    def find_attachment(self, aid: str, sid: str, att: str) -> dict[str, Any]:
        """An internal attachment record, else 404.

        :param aid: account id.
        :param sid: settlement id.
        :param att: attachment id.
        """
        with self.lock:
            settlement = next((s for s in self.settlements.get(aid, []) if s["id"] == sid), None)
            if settlement is None:
                raise ApiError(404, f"settlement {sid} not found")
            attachment = next((a for a in settlement["attachments"] if a["id"] == att), None)
            if attachment is None:
                raise ApiError(404, f"attachment {att} not found")
            return attachment

    @staticmethod
    def attachment_key(aid: str, sid: str, att: str) -> str:
        """The content key of an attachment (input of the byte generator).

        :param aid: account id.
        :param sid: settlement id.
        :param att: attachment id.
        """
        return f"attachment:{aid}:{sid}:{att}"

    def attachment_stream(self, aid: str, sid: str, att: str) -> tuple[dict[str, Any], Iterator[bytes]]:
        """The attachment record and a generator of its bytes.

        :param aid: account id.
        :param sid: settlement id.
        :param att: attachment id.
        """
        record = self.find_attachment(aid, sid, att)
        return record, content_stream(self.attachment_key(aid, sid, att), record["size"], record["extension"])

    def attachment_sha256(self, aid: str, sid: str, att: str) -> str:
        """sha256 of an attachment's content, computed by streaming.

        :param aid: account id.
        :param sid: settlement id.
        :param att: attachment id.
        """
        record = self.find_attachment(aid, sid, att)
        return content_sha256(self.attachment_key(aid, sid, att), record["size"], record["extension"])

    def _file_response(self, record: dict[str, Any], stream: Iterator[bytes], filename: str) -> Response:
        return Response(
            status=200,
            body=stream,
            content_type=record["content_type"],
            length=record["size"],
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    def h_attachment(self, req: Request) -> Response:
        """``GET /v1/accounts/{aid}/settlements/{sid}/attachments/{att}`` (bytes or 302).

        :param req: the request.
        """
        aid, sid, att = req.params["aid"], req.params["sid"], req.params["att"]
        record, stream = self.attachment_stream(aid, sid, att)
        if self.settings.attachment_redirect:
            path = f"/_emulator/blobs/{aid}/{sid}/{att}"
            target = self.settings.redirect_base_url or self.alt_base_url
            return Response.empty(302, headers={"Location": self._sign_url(target, path)})
        return self._file_response(record, stream, f"{att}.{record['extension']}")

    # --- signed URLs ---------------------------------------------------------------------------
    def _signature(self, path: str, issued: str, expires: str) -> str:
        return hmac.new(self._signing_key, f"{path}|{issued}|{expires}".encode(), "sha256").hexdigest()

    def _sign_url(self, base: str, path: str) -> str:
        issued = str(int(time.time() * 1000))
        expires = str(int(time.time()) + int(self.settings.signed_url_lifetime))
        query = urlencode(
            {"issued": issued, "expires": expires, "signature": self._signature(path, issued, expires)}
        )
        return f"{base}{path}?{query}"

    def expire_signed_urls(self) -> None:
        """Make every signed URL issued so far answer 403 ``Request has expired``."""
        with self.lock:
            self.signed_urls_valid_after_ms = int(time.time() * 1000) + 1

    def _check_signed(self, req: Request) -> Response | None:
        if "authorization" in req.headers:
            return _s3_error(
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                "Signature query string parameter or the Authorization header should be specified",
            )
        issued, expires, signature = req.arg("issued"), req.arg("expires"), req.arg("signature")
        if not (issued and expires and signature) or not hmac.compare_digest(
            signature, self._signature(req.path, issued, expires)
        ):
            return _s3_error(
                403, "SignatureDoesNotMatch", "The request signature we calculated does not match"
            )
        try:
            expired = int(expires) < time.time() or int(issued) < self.signed_urls_valid_after_ms
        except ValueError:
            expired = True
        if expired:
            return _s3_error(403, "AccessDenied", "Request has expired")
        return None

    def h_blob_download(self, req: Request) -> Response:
        """Redirect target of attachment downloads: bytes without auth (rejects Authorization).

        :param req: the request.
        """
        refused = self._check_signed(req)
        if refused is not None:
            return refused
        aid, sid, att = req.params["aid"], req.params["sid"], req.params["att"]
        try:
            record, stream = self.attachment_stream(aid, sid, att)
        except ApiError:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        return self._file_response(record, stream, f"{att}.{record['extension']}")

    def h_signed_download(self, req: Request) -> Response:
        """A report's ``signed_url``: bytes without auth (rejects Authorization and expired links).

        :param req: the request.
        """
        refused = self._check_signed(req)
        if refused is not None:
            return refused
        aid, rid = req.params["aid"], req.params["rid"]
        with self.lock:
            report = next((r for r in self.reports.get(aid, []) if r["id"] == rid), None)
        if report is None:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        ext = "pdf" if report["content_type"] == "application/pdf" else "csv"
        stream = content_stream(f"report:{aid}:{rid}", report["size"], ext)
        return self._file_response(report, stream, report["report_file_name"])

    def report_bytes_key(self, aid: str, rid: str) -> str:
        """Content key of a report file.

        :param aid: account id.
        :param rid: report id.
        """
        return f"report:{aid}:{rid}"

    # --- settlement report configurations ------------------------------------------------------
    def _validate_src(self, body: dict[str, Any]) -> None:
        _str_list(body, "filetypes", required=True)
        _str_list(body, "providers", required=True)
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
        _filter_list(body, "filters", ("payout_destination_id",))
        if "send_every" in body and not isinstance(body["send_every"], (int, float)):
            raise field_error("send_every", "must be a number")

    def _src(self, req: Request) -> dict[str, Any]:
        item = next(
            (c for c in self.src_configs.get(req.params["aid"], []) if c["id"] == req.params["id"]), None
        )
        if item is None:
            raise ApiError(404, f"settlement report configuration {req.params['id']} not found")
        return item

    _SRC_FIELDS = ("filetypes", "destinations", "providers", "filters", "send_every")

    def h_src_list(self, req: Request) -> Response:
        """``GET /v1/accounts/{aid}/settlements/reports/configuration`` (``items``/``starting_after``).

        :param req: the request.
        """
        limit = _limit(req, 100, 1000)
        with self.lock:
            items = list(self.src_configs.get(req.params["aid"], []))
        after = req.arg("starting_after")
        if after:
            ids = [c["id"] for c in items]
            if after not in ids:
                raise ApiError(400, f"unknown cursor {after!r}", code="INVALID_FILTER")
            items = items[ids.index(after) + 1 :]
        page = items[:limit]
        body: dict[str, Any] = {"items": page}
        if len(items) > limit:
            body["starting_after"] = page[-1]["id"]
        return Response.json(body)

    def h_src_create(self, req: Request) -> Response:
        """``POST /v1/accounts/{aid}/settlements/reports/configuration``.

        :param req: the request.
        """
        aid = req.params["aid"]
        body = req.json_object()
        self._validate_src(body)
        now = iso(_now())
        item = {k: body[k] for k in self._SRC_FIELDS if k in body}
        item["destinations"] = [
            {**d, "id": d.get("id") or self.next_id("destination")} for d in item["destinations"]
        ]
        item.update(id=self.next_id("src"), created_at=now, updated_at=now, account_id=aid)
        with self.lock:
            self.src_configs.setdefault(aid, []).append(item)
        return Response.json(item)

    def h_src_get(self, req: Request) -> Response:
        """``GET /v1/accounts/{aid}/settlements/reports/configuration/{id}``.

        :param req: the request.
        """
        with self.lock:
            return Response.json(self._src(req))

    def h_src_put(self, req: Request) -> Response:
        """``PUT /v1/accounts/{aid}/settlements/reports/configuration/{id}``.

        :param req: the request.
        """
        body = req.json_object()
        self._validate_src(body)
        with self.lock:
            item = self._src(req)
            for k in self._SRC_FIELDS:
                item.pop(k, None)
            item.update({k: body[k] for k in self._SRC_FIELDS if k in body})
            item["updated_at"] = iso(_now())
            return Response.json(item)

    def h_src_delete(self, req: Request) -> Response:
        """``DELETE /v1/accounts/{aid}/settlements/reports/configuration/{id}``.

        :param req: the request.
        """
        with self.lock:
            item = self._src(req)
            self.src_configs[req.params["aid"]].remove(item)
        return Response.json(item)

    # --- insight report configurations ---------------------------------------------------------
    _INSIGHT_FIELDS = ("dataType", "schedule", "language", "name", "emails", "reportFilters", "contentTypes")

    def _validate_insight(self, body: dict[str, Any]) -> None:
        _enum(body, "dataType", INSIGHT_DATA_TYPES)
        _enum(body, "schedule", INSIGHT_SCHEDULES)
        _enum(body, "language", INSIGHT_LANGUAGES)
        _require_str(body, "name", max_len=64)
        _str_list(body, "emails", required=False)
        _str_list(body, "contentTypes", required=False, allowed=INSIGHT_CONTENT_TYPES)
        _filter_list(body, "reportFilters", None)

    def _insight(self, req: Request) -> dict[str, Any]:
        items = self.insight_configs.get(req.params["aid"], [])
        item = next((c for c in items if c["id"] == req.params["id"]), None)
        if item is None:
            raise ApiError(404, f"insight report configuration {req.params['id']} not found")
        return item

    def h_insight_create(self, req: Request) -> Response:
        """``POST /v1/accounts/{aid}/insight/reports/configuration`` (camelCase body).

        :param req: the request.
        """
        aid = req.params["aid"]
        body = req.json_object()
        self._validate_insight(body)
        item = {k: body[k] for k in self._INSIGHT_FIELDS if k in body}
        item.update(id=self.next_id("insight"), accountId=aid, created_at=iso(_now()), created_by="emulator")
        with self.lock:
            self.insight_configs.setdefault(aid, []).append(item)
        return Response.json(item)

    def h_insight_list(self, req: Request) -> Response:
        """``GET /v1/accounts/{aid}/insight/reports/configuration`` (array).

        :param req: the request.
        """
        with self.lock:
            return Response.json(list(self.insight_configs.get(req.params["aid"], [])))

    def h_insight_get(self, req: Request) -> Response:
        """``GET /v1/accounts/{aid}/insight/reports/configuration/{id}``.

        :param req: the request.
        """
        with self.lock:
            return Response.json(self._insight(req))

    def h_insight_put(self, req: Request) -> Response:
        """``PUT /v1/accounts/{aid}/insight/reports/configuration/{id}``.

        :param req: the request.
        """
        body = req.json_object()
        self._validate_insight(body)
        with self.lock:
            item = self._insight(req)
            for k in self._INSIGHT_FIELDS:
                item.pop(k, None)
            item.update({k: body[k] for k in self._INSIGHT_FIELDS if k in body})
            item["updated_at"] = iso(_now())
            return Response.json(item)

    def h_insight_delete(self, req: Request) -> Response:
        """``DELETE /v1/accounts/{aid}/insight/reports/configuration/{id}``.

        :param req: the request.
        """
        with self.lock:
            item = self._insight(req)
            self.insight_configs[req.params["aid"]].remove(item)
        return Response.json(item)

    # --- report metadata -----------------------------------------------------------------------
    def h_reports(self, req: Request) -> Response:
        """``GET /v1/accounts/{aid}/reports/metadata`` (newest first, ``starting_after`` cursor).

        :param req: the request.
        """
        aid = req.params["aid"]
        limit = _limit(req, 10, 100)
        with self.lock:
            items = sorted(self.reports.get(aid, []), key=lambda r: (r["created_at"], r["id"]), reverse=True)
        after = req.arg("starting_after")
        if after:
            ids = [r["id"] for r in items]
            if after not in ids:
                raise ApiError(400, f"unknown cursor {after!r}", code="INVALID_FILTER")
            items = items[ids.index(after) + 1 :]
        page = items[:limit]
        out = []
        for r in page:
            view = {k: v for k, v in r.items() if k != "size"}
            view["signed_url"] = self._sign_url(req.base_url, f"/_emulator/signed/{aid}/{r['id']}")
            out.append(view)
        body: dict[str, Any] = {"reports": out}
        full = self.settings.reports_cursor_mode == "when_full" and len(page) == limit
        if page and (len(items) > limit or full):
            body["starting_after"] = page[-1]["id"]
        return Response.json(body)

    # --- webhook subscriptions -----------------------------------------------------------------
    @staticmethod
    def _hook_view(sub: dict[str, Any]) -> dict[str, Any]:
        view = json.loads(json.dumps(sub))
        secret = view["config"].get("secret")
        if isinstance(secret, dict):
            view["config"]["secret"] = {"type": secret.get("type", "HMAC-SHA1")}
        return dict(view)

    @staticmethod
    def _validate_hook(body: dict[str, Any]) -> None:
        config = body.get("config")
        if config is None:
            raise field_error("config", "is required")
        if not isinstance(config, dict):
            raise field_error("config", "must be an object")
        url = config.get("url")
        if url is None:
            raise field_error("config.url", "is required")
        if (
            not isinstance(url, str)
            or urlsplit(url).scheme not in ("http", "https")
            or not urlsplit(url).netloc
        ):
            raise field_error("config.url", "must be an http(s) URL")
        secret = config.get("secret")
        if secret is not None and (not isinstance(secret, dict) or not isinstance(secret.get("value"), str)):
            raise field_error("config.secret", 'must be {"type": "HMAC-SHA1", "value": "<secret>"}')
        if secret is not None and secret.get("type", "HMAC-SHA1") != "HMAC-SHA1":
            raise field_error("config.secret.type", "must be HMAC-SHA1")
        events = body.get("events")
        if events is None:
            raise field_error("events", "is required")
        if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
            raise field_error("events", "must be a non-empty array of event names")
        unknown = [e for e in events if e not in WEBHOOK_EVENTS]
        if unknown:
            raise field_error("events", f"unknown event(s): {', '.join(unknown)}")
        if "active" in body and not isinstance(body["active"], bool):
            raise field_error("active", "must be a boolean")

    def _hook(self, req: Request) -> dict[str, Any]:
        subs = self.subscriptions.get(req.params["aid"], [])
        sub = next((s for s in subs if s["id"] == req.params["hid"]), None)
        if sub is None:
            raise ApiError(404, f"subscription {req.params['hid']} not found")
        return sub

    def h_hook_list(self, req: Request) -> Response:
        """``GET /v1/accounts/{aid}/hooks/subscriptions`` (array).

        :param req: the request.
        """
        with self.lock:
            return Response.json([self._hook_view(s) for s in self.subscriptions.get(req.params["aid"], [])])

    def h_hook_create(self, req: Request) -> Response:
        """``POST /v1/accounts/{aid}/hooks/subscriptions`` (sends a ``ping``).

        :param req: the request.
        """
        aid = req.params["aid"]
        body = req.json_object()
        self._validate_hook(body)
        now = iso(_now())
        config = {"content_type": "application/json", "insecure_ssl": 0, **body["config"]}
        if isinstance(config.get("secret"), dict):
            config["secret"] = {"type": "HMAC-SHA1", **config["secret"]}
        sub = {
            "id": self.next_id("subscription"),
            "config": config,
            "events": list(body["events"]),
            "active": body.get("active", True),
            "created_at": now,
            "created_by": "emulator",
            "updated_at": now,
        }
        for opt in ("fields", "exclude_fields"):
            if opt in body:
                sub[opt] = body[opt]
        with self.lock:
            self.subscriptions.setdefault(aid, []).append(sub)
            view = self._hook_view(sub)
        if self.settings.ping_on_subscription_create:
            self._send_hook(aid, sub, "ping", view)
        return Response.json(view)

    def h_hook_get(self, req: Request) -> Response:
        """``GET /v1/accounts/{aid}/hooks/subscriptions/{hid}``.

        :param req: the request.
        """
        with self.lock:
            return Response.json(self._hook_view(self._hook(req)))

    def h_hook_put(self, req: Request) -> Response:
        """``PUT /v1/accounts/{aid}/hooks/subscriptions/{hid}`` (full replacement; secret kept if omitted).

        :param req: the request.
        """
        body = req.json_object()
        self._validate_hook(body)
        with self.lock:
            sub = self._hook(req)
            config = {"content_type": "application/json", "insecure_ssl": 0, **body["config"]}
            if "secret" not in config and "secret" in sub["config"]:
                config["secret"] = sub["config"]["secret"]
            sub.update(
                config=config,
                events=list(body["events"]),
                active=body.get("active", sub["active"]),
                updated_at=iso(_now()),
            )
            return Response.json(self._hook_view(sub))

    def h_hook_delete(self, req: Request) -> Response:
        """``DELETE /v1/accounts/{aid}/hooks/subscriptions/{hid}``.

        :param req: the request.
        """
        with self.lock:
            sub = self._hook(req)
            self.subscriptions[req.params["aid"]].remove(sub)
            view = self._hook_view(sub)
        view["deleted_at"] = iso(_now())
        return Response.json(view)

    def h_hook_ping(self, req: Request) -> Response:
        """``POST /v1/accounts/{aid}/hooks/subscriptions/{hid}/ping`` -> 204 and a ``ping`` delivery.

        :param req: the request.
        """
        with self.lock:
            sub = self._hook(req)
            view = self._hook_view(sub)
        self._send_hook(req.params["aid"], sub, "ping", view)
        return Response.empty(204)

    def _send_hook(self, aid: str, sub: dict[str, Any], event: str, obj: dict[str, Any]) -> None:
        delivery_id = str(uuid.uuid4())
        key = "subscription" if event == "ping" else event.split("_", 1)[0]
        payload = {"account_id": aid, "event": event, "event_delivery": delivery_id, key: obj}
        body = json.dumps(payload).encode()
        secret = sub["config"].get("secret")
        secret_value = secret.get("value") if isinstance(secret, dict) else None
        headers = webhooks.build_headers(event, delivery_id, body, secret_value)
        url = sub["config"]["url"]
        timeout = float(self.settings.webhook_timeout)
        generation = self.generation

        def run() -> None:
            result = webhooks.deliver(url, event, body, headers, timeout, subscription_id=sub["id"])
            with self.deliveries_cond:
                if generation != self.generation:
                    return  # the emulator was reset meanwhile: do not leak into the new state
                self.deliveries.append(result)
                self.deliveries_cond.notify_all()

        threading.Thread(target=run, name="dintero-emulator-webhook", daemon=True).start()

    def wait_for_deliveries(self, count: int, timeout: float = 5.0) -> list[WebhookDelivery]:
        """Block until at least ``count`` deliveries were attempted (or the timeout passes).

        :param count: number of deliveries to wait for.
        :param timeout: seconds.
        """
        deadline = time.monotonic() + timeout
        with self.deliveries_cond:
            while len(self.deliveries) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.deliveries_cond.wait(left)
            return list(self.deliveries)

    # --- test helpers (also behind the control API) --------------------------------------------
    def add_settlement(
        self,
        account_id: str,
        *,
        provider: str = "vipps",
        created_at: datetime | str | None = None,
        settled_at: datetime | str | None = None,
        attachment_sizes: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """Add a settlement (fires ``settlement_add`` webhooks) and return its public form.

        :param account_id: merchant id.
        :param provider: payout provider.
        :param created_at: when it was registered (default now).
        :param settled_at: settlement date (default ``created_at`` minus one day).
        :param attachment_sizes: ``{extension: size}`` of the Dintero attachments; key ``source``
            sizes the provider file. Default: every format at the seed's attachment size.
        """
        if account_id not in self.accounts:
            raise KeyError(f"unknown account {account_id}")
        if attachment_sizes is not None:
            for ext, size in attachment_sizes.items():
                if ext != "source" and ext not in CONTENT_TYPES:
                    raise ValueError(f"unknown attachment extension {ext!r}")
                if int(size) < 0:
                    raise ValueError("attachment sizes must not be negative")
        created = _as_datetime(created_at) if created_at is not None else _now()
        settled = _as_datetime(settled_at) if settled_at is not None else created - timedelta(days=1)
        salt = self.next_id("settlement")
        item = make_settlement(self.seed, account_id, provider, created, settled, attachment_sizes, salt)
        with self.lock:
            self.settlements.setdefault(account_id, []).append(item)
            subs = [
                s
                for s in self.subscriptions.get(account_id, [])
                if s.get("active", True) and "settlement_add" in s["events"]
            ]
        view = self.settlement_view(item)
        for sub in subs:
            self._send_hook(account_id, sub, "settlement_add", view)
        return view

    def add_report(
        self,
        account_id: str,
        *,
        report_config_id: str | None = None,
        data_from: datetime | str | None = None,
        data_to: datetime | str | None = None,
        content_type: str = "application/pdf",
        size: int = 2048,
    ) -> dict[str, Any]:
        """Add a generated report and return its metadata (without ``signed_url``).

        :param account_id: merchant id.
        :param report_config_id: insight configuration id (default: the account's first).
        :param data_from: start of the data interval (default: start of last month).
        :param data_to: end of the data interval (default: end of last month).
        :param content_type: ``application/pdf`` or ``text/csv``.
        :param size: file size in bytes.
        """
        if account_id not in self.accounts:
            raise KeyError(f"unknown account {account_id}")
        if size < 0:
            raise ValueError("size must not be negative")
        now = _now()
        this_month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        start = (
            _as_datetime(data_from)
            if data_from is not None
            else (this_month - timedelta(days=1)).replace(day=1)
        )
        end = _as_datetime(data_to) if data_to is not None else this_month - timedelta(milliseconds=1)
        with self.lock:
            if report_config_id is None:
                configs = self.insight_configs.get(account_id, [])
                report_config_id = configs[0]["id"] if configs else None
        report = make_report(
            self.seed,
            account_id,
            report_config_id=report_config_id,
            data_from=start,
            data_to=end,
            content_type=content_type,
            size=size,
            salt=self.next_id("report"),
        )
        report["created_at"] = iso(now)
        with self.lock:
            self.reports.setdefault(account_id, []).append(report)
        return {k: v for k, v in report.items() if k != "size"}

    # --- control API ---------------------------------------------------------------------------
    def c_reset(self, req: Request) -> Response:
        """``POST /_emulator/reset``.

        :param req: the request.
        """
        self.reset()
        return Response.json({"status": "reset"})

    def c_add_settlement(self, req: Request) -> Response:
        """``POST /_emulator/settlements``.

        :param req: the request.
        """
        body = req.json_object()
        account_id = _require_str(body, "account_id")
        try:
            item = self.add_settlement(
                account_id,
                provider=body.get("provider", "vipps"),
                created_at=body.get("created_at"),
                settled_at=body.get("settled_at"),
                attachment_sizes=body.get("attachment_sizes"),
            )
        except KeyError:
            raise ApiError(404, f"account {account_id} not found") from None
        except (ValueError, TypeError) as exc:
            raise ApiError(400, str(exc)) from None
        return Response.json(item)

    def c_add_report(self, req: Request) -> Response:
        """``POST /_emulator/reports``.

        :param req: the request.
        """
        body = req.json_object()
        account_id = _require_str(body, "account_id")
        kwargs = {
            k: body[k]
            for k in ("report_config_id", "data_from", "data_to", "content_type", "size")
            if k in body
        }
        try:
            return Response.json(self.add_report(account_id, **kwargs))
        except KeyError:
            raise ApiError(404, f"account {account_id} not found") from None
        except (ValueError, TypeError) as exc:
            raise ApiError(400, str(exc)) from None

    def c_fault(self, req: Request) -> Response:
        """``POST /_emulator/faults`` with the ``inject_fault`` keyword arguments.

        :param req: the request.
        """
        body = req.json_object()
        try:
            fault = Fault(**body)
        except (TypeError, ValueError, re.error) as exc:
            raise ApiError(400, f"invalid fault: {exc}") from None
        with self.lock:
            self.faults.append(fault)
        return Response.json({"status": "injected"})

    def c_clear_faults(self, req: Request) -> Response:
        """``DELETE /_emulator/faults``.

        :param req: the request.
        """
        with self.lock:
            self.faults.clear()
        return Response.empty(204)

    def c_expire_tokens(self, req: Request) -> Response:
        """``POST /_emulator/expire-tokens``.

        :param req: the request.
        """
        self.expire_tokens()
        return Response.empty(204)

    def c_expire_signed(self, req: Request) -> Response:
        """``POST /_emulator/expire-signed-urls``.

        :param req: the request.
        """
        self.expire_signed_urls()
        return Response.empty(204)

    def c_requests(self, req: Request) -> Response:
        """``GET /_emulator/requests``.

        :param req: the request.
        """
        with self.lock:
            return Response.json([r.as_dict() for r in self.requests])

    def c_clear_requests(self, req: Request) -> Response:
        """``DELETE /_emulator/requests``.

        :param req: the request.
        """
        with self.lock:
            self.requests.clear()
        return Response.empty(204)

    def state_summary(self) -> dict[str, Any]:
        """Ids and credentials (for out-of-process users)."""
        partner_login, partner_secret = self.client_credentials(self.seed.partner_id)
        return {
            "base_url": self.base_url,
            "alt_base_url": self.alt_base_url,
            "partner_id": self.seed.partner_id,
            "partner_client_id": partner_login,
            "partner_client_secret": partner_secret,
            "merchant_ids": self.seed.merchant_ids,
            "foreign_merchant_id": self.seed.foreign_merchant_id,
            "merchant_credentials": {
                mid: dict(zip(("client_id", "client_secret"), self.client_credentials(mid), strict=True))
                for mid in self.seed.merchant_ids
            },
        }

    def c_state(self, req: Request) -> Response:
        """``GET /_emulator/state``.

        :param req: the request.
        """
        return Response.json(self.state_summary())

    def c_get_settings(self, req: Request) -> Response:
        """``GET /_emulator/settings``.

        :param req: the request.
        """
        return Response.json(self.settings.as_dict())

    def c_set_settings(self, req: Request) -> Response:
        """``POST /_emulator/settings`` with the attributes to change.

        :param req: the request.
        """
        body = req.json_object()
        try:
            with self.lock:
                self.settings.update(body)
        except (TypeError, ValueError) as exc:
            raise ApiError(400, str(exc)) from None
        return Response.json(self.settings.as_dict())

    def c_deliveries(self, req: Request) -> Response:
        """``GET /_emulator/deliveries``.

        :param req: the request.
        """
        with self.lock:
            return Response.json([d.as_dict() for d in self.deliveries])


def _as_datetime(value: datetime | str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return parse_timestamp(value, "timestamp")


def _s3_error(status: int, code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{secrets.token_hex(8).upper()}</RequestId></Error>"
    ).encode()
    return Response(status=status, body=body, content_type="application/xml")


def request_account(req: Request) -> str | None:
    """The account a request concerns: from the path, else from its bearer token.

    :param req: the request.
    """
    m = re.match(r"^/(?:v1/accounts|_emulator/(?:signed|blobs))/([PT]\d+)", req.path)
    if m:
        return m.group(1)
    return req.token.account_id if req.token else None
