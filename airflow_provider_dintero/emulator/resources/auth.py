"""Tokens: ``POST /v1/accounts/{oid}/auth/token`` and the partner's exchange token."""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import TYPE_CHECKING

from airflow_provider_dintero.emulator.core import (
    ACCOUNT_RE,
    ACCOUNTS_READ,
    MERCHANT_ADMIN_SCOPES,
    PARTNER_RE,
    Request,
    Route,
    require_str,
)
from airflow_provider_dintero.emulator.models import ApiError, Response, field_error

if TYPE_CHECKING:
    from airflow_provider_dintero.emulator.app import EmulatorApp


def token(app: EmulatorApp, req: Request) -> Response:
    """``POST /v1/accounts/{oid}/auth/token`` (client_credentials, Basic or exchange Bearer).

    :param app: the emulator.
    :param req: the request.
    """
    oid = req.params["oid"]
    scheme, _, value = req.headers.get("authorization", "").partition(" ")
    if scheme.lower() not in ("basic", "bearer") or not value.strip():
        raise ApiError(401, "missing client credentials", code="UNAUTHORIZED")
    body = req.json_object()
    grant_type = require_str(body, "grant_type")
    if grant_type != "client_credentials":
        raise field_error("grant_type", f"unsupported grant_type {grant_type!r}")
    if "audience" not in body:
        raise field_error("audience", "is required")
    aud_account = app.audience_account(body["audience"], req)
    if aud_account is None:
        raise field_error("audience", "must be <base url>/v1/accounts/<account id>")
    if scheme.lower() == "bearer":
        return _token_from_exchange(app, req, oid, aud_account, str(body["audience"]))
    try:
        login, _, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError(401, "malformed Basic credentials", code="UNAUTHORIZED") from None
    with app.lock:
        client = next((c for c in app.clients.get(oid, {}).values() if c["client_id"] == login), None)
        if client is None or not hmac.compare_digest(client["_secret"].encode(), secret.encode()):
            raise ApiError(401, "invalid client credentials", code="INVALID_CLIENT")
        scopes: set[str] = set()
        for grant in app.grants.get(oid, {}).values():
            if (
                grant["client_id"] == client["id"]
                and grant["_audience_account"] == aud_account
                and grant["type"] in ("any", "client_credentials")
            ):
                scopes.update(grant["scope"])
    if not scopes:
        raise ApiError(403, f"the client has no grant for audience {body['audience']}", code="ACCESS_DENIED")
    return Response.json(app.issue_token(aud_account, frozenset(scopes)))


def _token_from_exchange(
    app: EmulatorApp, req: Request, oid: str, aud_account: str, audience: str
) -> Response:
    info = app.bearer(req)
    if info.kind != "exchange" or info.account_id != oid:
        raise ApiError(401, f"token cannot mint tokens for account {oid}", code="INVALID_TOKEN")
    mode = app.settings.exchange_audience
    choices: dict[str, set[str | None]] = {"partner": {info.partner_id}, "merchant": {oid}}
    allowed = choices.get(mode, {info.partner_id, oid})
    if aud_account not in allowed:
        wanted = " or ".join(f"/v1/accounts/{a}" for a in sorted(a for a in allowed if a))
        raise ApiError(
            app.settings.exchange_audience_status,
            f"invalid audience {audience}: a merchant token from an exchange token needs the audience "
            f"<base url>{wanted}",
            code="INVALID_AUDIENCE",
        )
    return Response.json(app.issue_token(oid, frozenset(MERCHANT_ADMIN_SCOPES)))


def exchange_token(app: EmulatorApp, req: Request) -> Response:
    """``POST /v1/accounts/{partner_id}/auth/exchange_token``.

    :param app: the emulator.
    :param req: the request.
    """
    pid = req.params["pid"]
    info = app.bearer(req)
    if not PARTNER_RE.match(pid):
        raise ApiError(400, f"{pid} is not a partner account id", code="BAD_REQUEST")
    if info.kind != "access" or info.account_id != pid:
        raise ApiError(401, f"token is not valid for account {pid}", code="INVALID_TOKEN")
    if not info.scopes.intersection(ACCOUNTS_READ):
        raise ApiError(403, "missing scope: admin:accounts or read:accounts", code="FORBIDDEN")
    body = req.json_object()
    account_id = require_str(body, "account_id")
    if not ACCOUNT_RE.match(account_id):
        raise field_error("account_id", "must match ^[PT]\\d{8}$")
    if account_id not in app.accounts:
        raise ApiError(404, f"account {account_id} not found")
    if app.owner_of(account_id) != pid:
        raise ApiError(403, f"account {account_id} does not belong to partner {pid}", code="FORBIDDEN")
    scopes = frozenset(MERCHANT_ADMIN_SCOPES)
    return Response.json(app.issue_token(account_id, scopes, kind="exchange", partner_id=pid))


ROUTES = [
    Route("POST", "/v1/accounts/{oid}/auth/token", token, None),
    Route("POST", "/v1/accounts/{pid}/auth/exchange_token", exchange_token, None),
]
