"""The emulator's state, authentication and routing; the endpoints live in :mod:`.resources`.

The module knows nothing about sockets; :mod:`airflow_provider_dintero.emulator.server` feeds it
:class:`~airflow_provider_dintero.emulator.core.Request` objects and writes the returned
:class:`~airflow_provider_dintero.emulator.models.Response`.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import secrets
import threading
import time
from datetime import datetime, timezone
from typing import Any

from airflow_provider_dintero.emulator.core import (
    AUDIENCE_RE,
    DINTERO_API_BASE,
    MERCHANT_ADMIN_SCOPES,
    PARTNER_RE,
    PARTNER_SCOPES,
    Request,
    Route,
    TokenInfo,
)
from airflow_provider_dintero.emulator.models import (
    ApiError,
    EmulatorSettings,
    Fault,
    RateLimitRule,
    RequestRecord,
    Response,
    WebhookDelivery,
)
from airflow_provider_dintero.emulator.resources import ROUTES
from airflow_provider_dintero.emulator.resources.clients import new_client_record
from airflow_provider_dintero.emulator.seed import EmulatorSeed, build_seed_data, iso

__all__ = ["EmulatorApp", "Request", "request_account"]

Records = dict[str, dict[str, dict[str, Any]]]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class EmulatorApp:
    """All emulator state plus authentication and dispatch; thread-safe (one re-entrant lock).

    Collections are kept as ``{account: {id: record}}`` in creation order: ``clients``,
    ``grants``, ``profiles``, ``src_configs``, ``insight_configs``, ``subscriptions``.

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
        self.settings: EmulatorSettings = EmulatorSettings()
        self.signing_key = seed.derive("url-signing").encode()
        self.routes: list[Route] = list(ROUTES)
        self.generation = 0
        self.reset()

    # --- state ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Restore the seed state, default settings; clear log, faults, tokens and deliveries."""
        with self.lock:
            data = build_seed_data(self.seed)
            self.accounts: dict[str, dict[str, Any]] = data.accounts
            self.settlements: dict[str, list[dict[str, Any]]] = data.settlements
            self.reports: dict[str, list[dict[str, Any]]] = data.reports
            self.insight_configs: Records = _by_id(data.insight_configs, "id")
            self.profiles: Records = _by_id(data.profiles, "profile_id")
            self.src_configs: Records = {}
            self.subscriptions: Records = {}
            self.clients: Records = {}
            self.grants: Records = {}
            self.collections: dict[str, Records] = {}  # stores of collections without an attribute
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
        client = new_client_record(
            account_id,
            {"client_id": login, "name": f"Seeded client {login}", "description": "emulator seed"},
            self.seed.uuid("client", account_id, login),
            self.seed.secret("client", account_id, login),
            created,
        )
        self.clients.setdefault(account_id, {})[client["id"]] = client
        grant_id = self.seed.uuid("grant", account_id, login)
        self.grants.setdefault(account_id, {})[grant_id] = {
            "id": grant_id,
            "client_id": client["id"],
            "audience": f"{DINTERO_API_BASE}/v1/accounts/{account_id}",
            "scope": list(scopes),
            "type": "any",
            "created_at": created,
            "created_by": "emulator",
            "updated_at": created,
            "_audience_account": account_id,
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
        issued = int(time.time())
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "emulator"}).encode())
        claims = {
            "iss": "https://api.dintero.com/v1/accounts/emulator",
            "sub": account_id,
            "aud": f"{DINTERO_API_BASE}/v1/accounts/{account_id}",
            "scope": " ".join(sorted(scopes)),
            "iat": issued,
            "exp": issued + lifetime,
            "jti": secrets.token_hex(12),
            "typ": kind,
        }
        payload = _b64url(json.dumps(claims).encode())
        signature = _b64url(hmac.new(self.signing_key, f"{header}.{payload}".encode(), "sha256").digest())
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

    def rate_limited(self, method: str, path: str, generation: int | None = None) -> RateLimitRule | None:
        """The first rate-limit rule this request exceeds, if any (and count the request).

        :param method: request method.
        :param path: request path.
        :param generation: :attr:`generation` when the request arrived; a request from before the
            last reset (e.g. one held by a ``delay`` fault) is neither counted nor limited.
        """
        moment = time.monotonic()
        with self.lock:
            if generation is not None and generation != self.generation:
                return None
            for rule in self.settings.rate_limits:
                if rule.method and rule.method.upper() != method:
                    continue
                if not re.search(rule.path_regex, path):
                    continue
                hits = [t for t in self._rate_hits.get(id(rule), []) if moment - t < rule.per_seconds]
                if len(hits) >= rule.max_requests:
                    self._rate_hits[id(rule)] = hits
                    return rule
                hits.append(moment)
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

    def handle(self, route: Route, req: Request) -> Response:
        """Authorize and run a matched route.

        :param route: the matched route.
        :param req: the request (``params`` set).
        """
        self.authorize(route, req)
        return route.handler(self, req)

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


def _by_id(lists: dict[str, list[dict[str, Any]]], id_field: str) -> Records:
    return {aid: {item[id_field]: item for item in items} for aid, items in lists.items()}


def request_account(req: Request) -> str | None:
    """The account a request concerns: from the path, else from its bearer token.

    :param req: the request.
    """
    m = re.match(r"^/(?:v1/accounts|_emulator/(?:signed|blobs))/([PT]\d+)", req.path)
    if m:
        return m.group(1)
    return req.token.account_id if req.token else None
