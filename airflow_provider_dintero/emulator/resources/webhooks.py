"""Webhook subscriptions (``/hooks/subscriptions``) and their outbound deliveries."""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_dintero.emulator import webhooks as delivery
from airflow_provider_dintero.emulator.collection import Collection, Record
from airflow_provider_dintero.emulator.core import Request, Route, now
from airflow_provider_dintero.emulator.models import ApiError, Response, field_error
from airflow_provider_dintero.emulator.seed import iso

if TYPE_CHECKING:
    from airflow_provider_dintero.emulator.app import EmulatorApp

HOOKS_READ = ("admin:hooks", "read:hooks")
HOOKS_WRITE = ("admin:hooks", "write:hooks")

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


#: The documented shape of an event name.
EVENT_NAME = re.compile(r"[a-z0-9_]+")


def view(sub: Record) -> Record:
    """The public form of a subscription: the secret's ``value`` is write-only.

    :param sub: the stored subscription.
    """
    out = copy.deepcopy(sub)
    secret = out["config"].get("secret")
    if isinstance(secret, dict):
        out["config"]["secret"] = {"type": secret.get("type", "HMAC-SHA1")}
    return out


def _validate(body: Record) -> None:
    config = body.get("config")
    if config is None:
        raise field_error("config", "is required")
    if not isinstance(config, dict):
        raise field_error("config", "must be an object")
    url = config.get("url")
    if url is None:
        raise field_error("config.url", "is required")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise field_error("config.url", "must be an http(s) URL")
    secret = config.get("secret")
    if isinstance(secret, dict) and secret.get("type", "HMAC-SHA1") != "HMAC-SHA1":
        raise field_error("config.secret.type", "must be HMAC-SHA1")
    events = body.get("events")
    if events is None:
        raise field_error("events", "is required")
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise field_error("events", "must be a non-empty array of event names")
    # Dintero documents about 40 events; any name of their shape is taken (WEBHOOK_EVENTS are the
    # ones the emulator itself sends or that the provider's tests name)
    malformed = [e for e in events if not EVENT_NAME.fullmatch(e)]
    if malformed:
        raise field_error("events", f"not an event name: {', '.join(malformed)}")
    if "active" in body and not isinstance(body["active"], bool):
        raise field_error("active", "must be a boolean")


#: The forms of ``config.secret`` (``settings.subscription_secret_form``) and how each is described.
SECRET_FORMS = {
    "value": '{"type": "HMAC-SHA1", "value": "<secret>"}',
    "secret": '{"type": "HMAC-SHA1", "secret": "<secret>"}',
    "string": "a string",
}


def _secret_value(app: EmulatorApp, secret: Any) -> str | None:
    """The signing secret of a create body in the configured form (400, or ``None`` when dropped)."""
    form = app.settings.subscription_secret_form
    if form == "string":
        value = secret if isinstance(secret, str) else None
    else:
        value = secret.get(form) if isinstance(secret, dict) else None
        value = value if isinstance(value, str) else None
    if value:
        return value
    if app.settings.subscription_secret_mismatch == "drop":
        return None
    raise field_error("config.secret", f"must be {SECRET_FORMS[form]}")


def _config(app: EmulatorApp, body: Record, old: Record | None) -> Record:
    config = {"content_type": "application/json", "insecure_ssl": 0, **body["config"]}
    if config.get("secret") is not None:
        value = _secret_value(app, config["secret"])
        config["secret"] = {"type": "HMAC-SHA1", "value": value}  # stored as the emulator signs
        if value is None:
            del config["secret"]
    elif old is not None and "secret" in old["config"]:
        config["secret"] = old["config"]["secret"]  # PUT without a secret keeps the old one
    return config


def _build(app: EmulatorApp, req: Request, body: Record) -> Record:
    created = iso(now())
    sub = {
        "id": app.next_id("subscription"),
        "config": _config(app, body, None),
        "events": list(body["events"]),
        "active": body.get("active", True),
        "created_at": created,
        "created_by": "emulator",
        "updated_at": created,
    }
    sub.update({opt: body[opt] for opt in ("fields", "exclude_fields") if opt in body})
    return sub


def _replace(app: EmulatorApp, req: Request, old: Record, body: Record) -> Record:
    return {
        **old,
        "config": _config(app, body, old),
        "events": list(body["events"]),
        "active": body.get("active", old["active"]),
    }


def _answer_create(app: EmulatorApp, req: Request, sub: Record) -> Record:
    public = view(sub)
    if app.settings.ping_on_subscription_create:
        send(app, req.account, sub, "ping", public)
    return public


SUBSCRIPTIONS = Collection(
    endpoint="subscriptions",
    label="subscription",
    path="/v1/accounts/{aid}/hooks/subscriptions",
    store="subscriptions",
    read_scopes=HOOKS_READ,
    write_scopes=HOOKS_WRITE,
    validate=_validate,
    build=_build,
    replace=_replace,
    view=view,
    duplicate_kind="subscription",
    duplicate_key=lambda r: r["config"]["url"],
    duplicate_code="DUPLICATE_SUBSCRIPTION",
    answer_create=_answer_create,
    stamp_delete=True,
)


def ping(app: EmulatorApp, req: Request) -> Response:
    """``POST /v1/accounts/{aid}/hooks/subscriptions/{id}/ping`` -> 204 and a ``ping`` delivery.

    :param app: the emulator.
    :param req: the request.
    """
    with app.lock:
        sub = SUBSCRIPTIONS.find(app, req)
        public = view(sub)
    send(app, req.account, sub, "ping", public)
    return Response.empty(204)


def payload(app: EmulatorApp, aid: str, event: str, delivery_id: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The body of one delivery.

    ``ping`` is Dintero's documented body, the bare subscription object. Any other event is the
    envelope ``{"account_id", "event", "event_delivery", <object>}``; for ``settlement_add`` the
    object's place is ``settings.webhook_payload_shape`` ([I]: Dintero publishes no example).

    :param app: the emulator.
    :param aid: the account the event concerns.
    :param event: event name.
    :param delivery_id: the ``event-delivery`` id.
    :param obj: the event's object (the public subscription for ``ping``).
    """
    if event == "ping":
        return dict(obj)
    envelope: dict[str, Any] = {"account_id": aid, "event": event, "event_delivery": delivery_id}
    if event != "settlement_add":
        return {**envelope, event.split("_", 1)[0]: obj}
    shape = app.settings.webhook_payload_shape
    placed: dict[str, dict[str, Any]] = {
        "settlement": {"settlement": obj},
        "settlements": {"settlements": [obj]},
        "data": {"data": obj},
        "ids": {"settlement_ids": [obj.get("id")]},
        "other": {"payout": obj},
    }
    return {**envelope, **placed[shape]}


def send(app: EmulatorApp, aid: str, sub: Record, event: str, obj: dict[str, Any]) -> None:
    """Deliver one event to a subscription in the background (recorded in ``app.deliveries``).

    The body is :func:`payload`'s; the headers carry ``event``, ``event-delivery`` and, with a
    secret, ``event-signature`` (hex HMAC-SHA1 of the raw body).

    :param app: the emulator.
    :param aid: the account the event concerns.
    :param sub: the subscription.
    :param event: event name.
    :param obj: the event's object (the subscription for ``ping``).
    """
    delivery_id = str(uuid.uuid4())
    body = json.dumps(payload(app, aid, event, delivery_id, obj)).encode()
    secret = sub["config"].get("secret")
    secret_value = secret.get("value") if isinstance(secret, dict) else None
    headers = delivery.build_headers(event, delivery_id, body, secret_value)
    url = sub["config"]["url"]
    timeout = float(app.settings.webhook_timeout)
    generation = app.generation

    def run() -> None:
        result = delivery.deliver(url, event, body, headers, timeout, subscription_id=sub["id"])
        with app.deliveries_cond:
            if generation != app.generation:
                return  # the emulator was reset meanwhile: do not leak into the new state
            app.deliveries.append(result)
            app.deliveries_cond.notify_all()

    threading.Thread(target=run, name="dintero-emulator-webhook", daemon=True).start()


def notify(app: EmulatorApp, aid: str, event: str, obj: dict[str, Any]) -> None:
    """Send ``event`` to every active subscription of the account that asked for it.

    :param app: the emulator.
    :param aid: account id.
    :param event: event name.
    :param obj: the event's object.
    """
    with app.lock:
        subs = [
            s
            for s in app.subscriptions.get(aid, {}).values()
            if s.get("active", True) and event in s["events"]
        ]
    for sub in subs:
        send(app, aid, sub, event, obj)


def list_subscriptions(app: EmulatorApp, req: Request) -> Response:
    """``GET /v1/accounts/{aid}/hooks/subscriptions``, or 404/405 as ``subscription_list_status`` says.

    :param app: the emulator.
    :param req: the request.
    """
    status = app.settings.subscription_list_status
    if status == 404:
        raise ApiError(404, "Not Found")
    if status == 405:
        raise ApiError(405, "Method Not Allowed")
    return SUBSCRIPTIONS.list(app, req)


ROUTES = [
    *(
        Route(r.method, r.path, list_subscriptions, r.scopes)
        if r.method == "GET" and r.path == SUBSCRIPTIONS.path
        else r
        for r in SUBSCRIPTIONS.routes()
    ),
    Route("POST", "/v1/accounts/{aid}/hooks/subscriptions/{id}/ping", ping, HOOKS_WRITE),
]
