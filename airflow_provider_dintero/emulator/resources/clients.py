"""API clients and their grants (``/auth/clients``, ``/auth/client-grants``)."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from airflow_provider_dintero.emulator.collection import Collection, Record, public
from airflow_provider_dintero.emulator.core import (
    ACCOUNTS_READ,
    ACCOUNTS_WRITE,
    Request,
    Route,
    now,
    optional_str,
    require_str,
    str_list,
)
from airflow_provider_dintero.emulator.models import ApiError, Response, field_error
from airflow_provider_dintero.emulator.seed import iso

if TYPE_CHECKING:
    from airflow_provider_dintero.emulator.app import EmulatorApp

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
#: The scope catalogue (dintero-api.md 3.3).
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
        "checkout:admin",
        "admin:payout",
        "read:payout",
        "write:payout",
    ]
)
GRANT_TYPES = ("any", "authorization_code", "client_credentials", "password")


def new_client_record(account_id: str, body: dict[str, Any], cid: str, secret: str, created: str) -> Record:
    """A stored client record (``_secret`` and ``_account_id`` never leave the emulator).

    :param account_id: the account the client lives on.
    :param body: the create body.
    :param cid: the client's id (UUID).
    :param secret: its secret.
    :param created: creation timestamp.
    """
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


def _validate_client(body: Record) -> None:
    for name in ("name", "description", "client_id"):
        optional_str(body, name)
    str_list(body, "callbacks", required=False)


def _build_client(app: EmulatorApp, req: Request, body: Record) -> Record:
    return new_client_record(req.account, body, app.next_id("client"), secrets.token_urlsafe(32), iso(now()))


def _answer_client(app: EmulatorApp, req: Request, record: Record) -> Record:
    return {**public(record), "client_secret": record["_secret"]}


def _drop_grants(app: EmulatorApp, client: Record) -> None:
    grants = app.grants.get(client["_account_id"], {})
    for gid in [gid for gid, g in grants.items() if g["client_id"] == client["id"]]:
        del grants[gid]


CLIENTS = Collection(
    endpoint="clients",
    label="client",
    path="/v1/accounts/{aid}/auth/clients",
    store="clients",
    read_scopes=ACCOUNTS_READ,
    write_scopes=ACCOUNTS_WRITE,
    validate=_validate_client,
    build=_build_client,
    duplicate_kind="client",
    duplicate_key=lambda r: r["client_id"],
    duplicate_code="DUPLICATE_CLIENT_ID",
    answer_create=_answer_client,
    on_delete=_drop_grants,
    stamp_delete=True,
)


def rotate_secret(app: EmulatorApp, req: Request) -> Response:
    """``POST /v1/accounts/{aid}/auth/clients/{id}/rotate-secret`` -> ``{"client": {...}}``.

    :param app: the emulator.
    :param req: the request.
    """
    with app.lock:
        client = CLIENTS.find(app, req)
        client["_secret"] = secrets.token_urlsafe(32)
        client["updated_at"] = iso(now())
        return Response.json({"client": _answer_client(app, req, client)})


def _validate_grant(body: Record) -> None:
    require_str(body, "client_id")
    require_str(body, "audience")
    scope = body.get("scope")
    if scope is None:
        raise field_error("scope", "is required")
    if not isinstance(scope, list) or not scope or not all(isinstance(s, str) for s in scope):
        raise field_error("scope", "must be a non-empty array of strings")
    unknown = [s for s in scope if s not in KNOWN_SCOPES]
    if unknown:
        raise field_error("scope", f"unknown scope(s): {', '.join(unknown)}")
    if body.get("type", "any") not in GRANT_TYPES:
        raise field_error("type", f"must be {', '.join(GRANT_TYPES[:-1])} or {GRANT_TYPES[-1]}")


def _build_grant(app: EmulatorApp, req: Request, body: Record) -> Record:
    aid = req.account
    aud_account = app.audience_account(body["audience"], req)
    if aud_account is None:
        raise field_error("audience", "must be <base url>/v1/accounts/<account id>")
    if aud_account != aid:
        raise field_error("audience", f"must name this account ({aid})")
    client_uuid = body["client_id"]
    if client_uuid not in app.clients.get(aid, {}):
        if any(c["client_id"] == client_uuid for clients in app.clients.values() for c in clients.values()):
            raise field_error("client_id", "must be the client's id (UUID), not its client_id")
        raise ApiError(404, f"client {client_uuid} not found")
    created = iso(now())
    return {
        "id": app.next_id("grant"),
        "client_id": client_uuid,
        "audience": body["audience"],
        "scope": list(body["scope"]),
        "type": body.get("type", "any"),
        "created_at": created,
        "created_by": "emulator",
        "updated_at": created,
        "_audience_account": aud_account,
    }


def _grant_matches(req: Request, grant: Record) -> bool:
    audience, client_id = req.arg("audience"), req.arg("client_id")
    return (audience is None or grant["audience"].rstrip("/") == audience.rstrip("/")) and (
        client_id is None or grant["client_id"] == client_id
    )


GRANTS = Collection(
    endpoint="grants",
    label="grant",
    path="/v1/accounts/{aid}/auth/client-grants",
    store="grants",
    read_scopes=ACCOUNTS_READ,
    write_scopes=ACCOUNTS_WRITE,
    validate=_validate_grant,
    build=_build_grant,
    duplicate_kind="grant",
    duplicate_key=lambda r: (r["client_id"], r["_audience_account"]),
    duplicate_code="DUPLICATE_GRANT",
    list_filter=_grant_matches,
    stamp_delete=True,
    get=False,
)

ROUTES = [
    *CLIENTS.routes(),
    Route("POST", "/v1/accounts/{aid}/auth/clients/{id}/rotate-secret", rotate_secret, ACCOUNTS_WRITE),
    *GRANTS.routes(),
]
