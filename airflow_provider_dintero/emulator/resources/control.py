"""The out-of-process control API (``/_emulator/...``): not logged, never faulted, no auth."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from airflow_provider_dintero.emulator import signing
from airflow_provider_dintero.emulator.core import Request, Route, require_str
from airflow_provider_dintero.emulator.models import ApiError, Fault, Response
from airflow_provider_dintero.emulator.resources.reports import add_report
from airflow_provider_dintero.emulator.resources.settlements import add_settlement

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_dintero.emulator.app import EmulatorApp


def _adder(
    add: Callable[..., dict[str, Any]], fields: tuple[str, ...]
) -> Callable[[EmulatorApp, Request], Response]:
    def handler(app: EmulatorApp, req: Request) -> Response:
        body = req.json_object()
        account_id = require_str(body, "account_id")
        try:
            return Response.json(add(app, account_id, **{k: body[k] for k in fields if k in body}))
        except KeyError:
            raise ApiError(404, f"account {account_id} not found") from None
        except (ValueError, TypeError) as exc:
            raise ApiError(400, str(exc)) from None

    handler.__doc__ = f"``{add.__name__}`` with the JSON body's ``account_id`` and {', '.join(fields)}."
    return handler


def _fault(app: EmulatorApp, req: Request) -> Response:
    try:
        fault = Fault(**req.json_object())
    except (TypeError, ValueError, re.error) as exc:
        raise ApiError(400, f"invalid fault: {exc}") from None
    with app.lock:
        app.faults.append(fault)
    return Response.json({"status": "injected"})


def _set_settings(app: EmulatorApp, req: Request) -> Response:
    body = req.json_object()
    try:
        with app.lock:
            app.settings.update(body)
    except (TypeError, ValueError) as exc:
        raise ApiError(400, str(exc)) from None
    return Response.json(app.settings.as_dict())


def _read(view: Callable[[EmulatorApp], Any]) -> Callable[[EmulatorApp, Request], Response]:
    def handler(app: EmulatorApp, req: Request) -> Response:
        with app.lock:
            return Response.json(view(app))

    return handler


def _do(action: Callable[[EmulatorApp], object]) -> Callable[[EmulatorApp, Request], Response]:
    def handler(app: EmulatorApp, req: Request) -> Response:
        with app.lock:
            action(app)
        return Response.empty(204)

    return handler


def _reset(app: EmulatorApp, req: Request) -> Response:
    app.reset()
    return Response.json({"status": "reset"})


_SETTLEMENT_FIELDS = ("provider", "created_at", "settled_at", "attachment_sizes")
_REPORT_FIELDS = ("report_config_id", "data_from", "data_to", "content_type", "size")

_CONTROL: list[tuple[str, str, Callable[[EmulatorApp, Request], Response]]] = [
    ("POST", "reset", _reset),
    ("POST", "settlements", _adder(add_settlement, _SETTLEMENT_FIELDS)),
    ("POST", "reports", _adder(add_report, _REPORT_FIELDS)),
    ("POST", "faults", _fault),
    ("DELETE", "faults", _do(lambda app: app.faults.clear())),
    ("POST", "expire-tokens", _do(lambda app: app.expire_tokens())),
    ("POST", "expire-signed-urls", _do(signing.expire_signed_urls)),
    ("GET", "requests", _read(lambda app: [r.as_dict() for r in app.requests])),
    ("DELETE", "requests", _do(lambda app: app.requests.clear())),
    ("GET", "state", _read(lambda app: app.state_summary())),
    ("GET", "settings", _read(lambda app: app.settings.as_dict())),
    ("POST", "settings", _set_settings),
    ("GET", "deliveries", _read(lambda app: [d.as_dict() for d in app.deliveries])),
]

ROUTES = [
    Route(method, f"/_emulator/{name}", handler, None, control=True) for method, name, handler in _CONTROL
]
