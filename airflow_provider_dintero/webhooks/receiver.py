"""
The FastAPI app that receives Dintero webhook deliveries inside Airflow 3's api-server.

``POST /dintero-webhooks/<account_id>`` (the plugin mounts this app at
:data:`~airflow_provider_dintero.webhooks.assets.URL_PREFIX`) answers, in this order:

====== =====================================================================================
Status When
====== =====================================================================================
404    the path is not an account id, or no signing secret is stored for the account
413    the body is larger than the cap (``Content-Length`` checked before reading; the
       stream is cut at the cap when the length is not declared)
401    ``event-signature`` is missing, not 40 hex digits, or not the HMAC-SHA1 of the raw body
415    ``Content-Type`` is not ``application/json``
400    the JSON envelope is malformed, or its ``event``/``event_delivery`` disagree with the
       ``event``/``event-delivery`` headers
200    a signed ``ping`` (``pong``), another event (``ignored``), a ``settlement_add`` whose
       ``event_delivery`` already has an asset event (``duplicate``), or a ``settlement_add``
       for an account no DAG schedules on (``no-asset``)
202    a new ``settlement_add``: one asset event was recorded on
       :func:`~airflow_provider_dintero.webhooks.assets.settlement_events_asset`
====== =====================================================================================

Replays are refused without a table of our own: every asset event the receiver records carries
the delivery id in its extra (``event_delivery``), and before recording the receiver looks for an
event of the same asset with that id recorded in the replay window (default 30 days,
``[dintero] webhook_replay_window_days``; the look-up uses the ``(asset_id, timestamp)`` index,
so its cost is bounded by the window, not by the history). The record is as durable as the asset
events themselves (it survives restarts and is shared by every api-server on the same DB) and
needs no cleanup of its own. A process-wide lock serialises look-up and insert, so one api-server
process never records a delivery twice; two processes receiving the same delivery in the same
instant could both record it, which costs one extra DAG run that finds the files already copied.
A delivery replayed after the window (or after ``airflow db clean`` removed its event) is taken
as a new wake-up, which is harmless for the same reason. A duplicate answers 200, not an error:
Dintero retries a delivery whose answer it did not see, and counts non-2xx answers toward
deleting the subscription.

This module imports FastAPI only inside :func:`create_app`; on Airflow 2.11 (no FastAPI app in
the webserver) :func:`create_app` raises :class:`RuntimeError` with that explanation.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_dintero.validation import ACCOUNT_ID_PATTERN
from airflow_provider_dintero.webhooks.assets import settlement_events_asset, webhook_secret_variable
from airflow_provider_dintero.webhooks.delivery import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    MAX_BODY_BYTES,
    SIGNATURE_HEADER,
    Delivery,
    DeliveryRefused,
    check_content_type,
    check_signature,
    parse_delivery,
)

try:  # FastAPI resolves the endpoint's annotations from this module's globals
    from fastapi import Request
    from fastapi.responses import JSONResponse
except ImportError:  # Airflow 2.11: no FastAPI; create_app() explains
    Request = JSONResponse = None  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)

#: Default replay window in days (Dintero's retries of one delivery span minutes to hours).
REPLAY_WINDOW_DAYS = 30

#: Serialises the replay look-up and the insert of one asset event within a process.
_RECORD_LOCK = threading.Lock()

AIRFLOW_3_ONLY = (
    "The Dintero webhook receiver runs in Airflow 3's api-server (a FastAPI plugin app); "
    "Airflow 2.11 has no FastAPI app to mount it in. On 2.11 use the settlement sensor DAG "
    "(SettlementSensor) instead."
)


def max_body_bytes() -> int:
    """The body cap: ``[dintero] webhook_max_body_bytes`` in Airflow's config, default 256 KiB."""
    from airflow.configuration import conf

    value = conf.getint("dintero", "webhook_max_body_bytes", fallback=MAX_BODY_BYTES)
    return value if value > 0 else MAX_BODY_BYTES


def replay_window() -> timedelta:
    """How far back replays are looked for: ``[dintero] webhook_replay_window_days``, default 30."""
    from airflow.configuration import conf

    days = conf.getint("dintero", "webhook_replay_window_days", fallback=REPLAY_WINDOW_DAYS)
    return timedelta(days=days if days > 0 else REPLAY_WINDOW_DAYS)


def load_secret(account_id: str) -> str | None:
    """
    The signing secret stored for ``account_id`` (Variable ``dintero_webhook_secret_<aid>``).

    Read through Airflow's secrets backends and the metadata DB; the value is never logged.

    :param account_id: a valid account id.
    """
    from airflow.models.variable import Variable

    value = Variable.get(webhook_secret_variable(account_id), default_var=None)
    if not isinstance(value, str) or not value:
        return None
    return value


def record_settlement_event(receiver_account: str, delivery: Delivery) -> tuple[str, int | None]:
    """
    Record one asset event for a verified ``settlement_add``, unless its delivery id has one.

    :param receiver_account: the account in the receiver's path (the asset's account).
    :param delivery: the verified delivery.
    :return: ``("accepted", event id)``, ``("duplicate", existing id)`` or ``("no-asset", None)``.
    """
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    asset = settlement_events_asset(receiver_account)
    with _RECORD_LOCK, create_session() as session:
        model = session.scalar(
            select(AssetModel).where(AssetModel.name == asset.name, AssetModel.uri == asset.uri)
        )
        if model is None:
            return "no-asset", None
        seen = session.scalar(
            select(AssetEvent.id)
            .where(
                AssetEvent.asset_id == model.id,
                AssetEvent.timestamp >= datetime.now(timezone.utc) - replay_window(),
                AssetEvent.extra["event_delivery"].as_string() == delivery.event_delivery,
            )
            .limit(1)
        )
        if seen is not None:
            return "duplicate", int(seen)
        event = asset_manager.register_asset_change(
            asset=model, extra=delivery.asset_extra(), session=session, source_is_api=True
        )
        if event is None:  # pragma: no cover - the model was found above in the same session
            return "no-asset", None
        session.flush()
        return "accepted", int(event.id)


async def _read_capped(request: Request, cap: int) -> bytes:
    """The body, refusing (413) a declared or streamed length above ``cap`` before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise DeliveryRefused(400, "Content-Length is not a number")
        if int(declared) > cap:
            raise DeliveryRefused(413, f"body larger than {cap} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise DeliveryRefused(413, f"body larger than {cap} bytes")
    return bytes(body)


def create_app() -> FastAPI:
    """
    Build the receiver app (Airflow 3 only): one route, ``POST /{account_id}``, no docs pages.

    Raises :class:`RuntimeError` on Airflow 2.11, which has no FastAPI app to mount it in.
    """
    try:
        from fastapi import FastAPI
        from starlette.concurrency import run_in_threadpool
    except ImportError as exc:
        raise RuntimeError(AIRFLOW_3_ONLY) from exc

    app = FastAPI(
        title="Dintero webhook receiver",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    def answer(status: int, outcome: str, **fields: Any) -> JSONResponse:
        headers = {"Connection": "close"} if status == 413 else None
        return JSONResponse({"status": outcome, **fields}, status_code=status, headers=headers)

    @app.post("/{account_id}")
    async def receive(account_id: str, request: Request) -> JSONResponse:
        """Verify one delivery and turn a ``settlement_add`` into an asset event."""
        client = request.client.host if request.client else "?"
        try:
            if not ACCOUNT_ID_PATTERN.fullmatch(account_id):
                raise DeliveryRefused(404, "no webhook receiver at this path")
            secret = await run_in_threadpool(load_secret, account_id)
            if secret is None:
                raise DeliveryRefused(404, "no webhook receiver at this path")
            body = await _read_capped(request, max_body_bytes())
            check_signature(body, request.headers.get(SIGNATURE_HEADER), secret)
            check_content_type(request.headers.get("content-type"))
            delivery = parse_delivery(
                body, request.headers.get(EVENT_HEADER), request.headers.get(DELIVERY_HEADER)
            )
        except DeliveryRefused as refused:
            log.warning("Refused a Dintero webhook delivery from %s: %s", client, refused.reason)
            return answer(refused.status, "refused", detail=refused.reason)
        if delivery.event == "ping":
            log.info("Dintero webhook ping for account %s answered", delivery.account_id)
            return answer(200, "pong")
        if delivery.event != "settlement_add":
            log.info(
                "Ignored Dintero webhook event %s (delivery %s): only settlement_add wakes a DAG",
                delivery.event,
                delivery.event_delivery,
            )
            return answer(200, "ignored", event=delivery.event)
        outcome, event_id = await run_in_threadpool(record_settlement_event, account_id, delivery)
        if outcome == "duplicate":
            log.info(
                "Dintero webhook delivery %s was received before (asset event %s); nothing recorded",
                delivery.event_delivery,
                event_id,
            )
            return answer(200, "duplicate", asset_event_id=event_id)
        if outcome == "no-asset":
            log.warning(
                "No DAG schedules on %s: settlement_add delivery %s for %s woke nothing",
                settlement_events_asset(account_id).uri,
                delivery.event_delivery,
                delivery.account_id,
            )
            return answer(200, "no-asset")
        log.info(
            "Dintero settlement_add delivery %s: asset event %s for %s naming settlements %s",
            delivery.event_delivery,
            event_id,
            delivery.account_id,
            ", ".join(delivery.settlement_ids),
        )
        return answer(202, "accepted", asset_event_id=event_id)

    return app
