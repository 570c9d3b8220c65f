"""The partner's merchants and account settings (``/management/...``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from airflow_provider_dintero.emulator.collection import list_response
from airflow_provider_dintero.emulator.core import ACCOUNTS_READ, Request, Route, after_cursor, limit_arg
from airflow_provider_dintero.emulator.models import ApiError, Response

if TYPE_CHECKING:
    from airflow_provider_dintero.emulator.app import EmulatorApp

_ACC = "/v1/accounts/{aid}/management"


def list_accounts(app: EmulatorApp, req: Request) -> Response:
    """``GET /v1/accounts/{partner}/management/accounts`` (bare array, ``paging_token``).

    :param app: the emulator.
    :param req: the request.
    """
    aid = req.params["aid"]
    limit = limit_arg(req, 10, 100)
    search = (req.arg("search") or "").lower()
    country = req.arg("country")
    with app.lock:
        merchants = [
            {**a, "paging_token": f"pt_{mid}"}
            for mid, a in sorted(app.accounts.items())
            if app.owner_of(mid) == aid
            and (not search or search in json.dumps(a).lower())
            and (not country or a.get("company", {}).get("address", {}).get("country") == country)
        ]  # search before the token is added: it matches the account only
    merchants = after_cursor(merchants, req.arg("starting_after"), lambda a: str(a["paging_token"]))
    return list_response(app, "accounts", merchants[:limit])


def get_account(app: EmulatorApp, req: Request) -> Response:
    """``GET /v1/accounts/{partner}/management/accounts/{mid}``: one merchant of the partner.

    :param app: the emulator.
    :param req: the request.
    """
    mid = req.params["mid"]
    with app.lock:
        if app.owner_of(mid) != req.params["aid"]:
            raise ApiError(404, f"account {mid} not found")
        return Response.json(app.accounts[mid])


def account_settings(app: EmulatorApp, req: Request) -> Response:
    """``GET /v1/accounts/{aid}/management/settings``.

    :param app: the emulator.
    :param req: the request.
    """
    with app.lock:
        return Response.json(app.accounts[req.params["aid"]])


ROUTES = [
    Route("GET", f"{_ACC}/accounts", list_accounts, ACCOUNTS_READ),
    Route("GET", f"{_ACC}/accounts/{{mid}}", get_account, ACCOUNTS_READ),
    Route("GET", f"{_ACC}/settings", account_settings, ACCOUNTS_READ, allow_partner_on_merchant=True),
]
