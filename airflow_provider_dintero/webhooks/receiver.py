"""
The FastAPI app that receives Dintero webhook deliveries inside Airflow 3's api-server.

Mounted only when ``[dintero] webhook_receiver_enabled = True`` (see
:mod:`airflow_provider_dintero.webhooks.plugin`), at
:data:`~airflow_provider_dintero.webhooks.assets.URL_PREFIX`. ``POST /dintero-webhooks/<account_id>``
answers, in this order:

====== =====================================================================================
Status When
====== =====================================================================================
404    the path is not an account id, the account is not in ``[dintero] webhook_accounts``
       (refused before any Variable or secrets-backend look-up), or no signing secret is
       stored for it
413    the body is larger than the cap (``Content-Length`` checked before reading; the
       stream is cut at the cap when the length is not declared)
401    ``event-signature`` is missing, not 40 hex digits, or not the HMAC-SHA1 of the raw body
       under the account's secret (or under its previous secret, until that one expires)
415    ``Content-Type`` is not ``application/json``
400    the body is not one JSON object, or the ``event``/``event-delivery`` headers contradict it
200    a signed ``ping``, whatever its body (``pong``), another event (``ignored``), a
       ``settlement_add`` whose delivery id was recorded before (``duplicate``), or one for an
       account no DAG schedules on (``no-asset``)
202    a new ``settlement_add``: one asset event was recorded on
       :func:`~airflow_provider_dintero.webhooks.assets.settlement_events_asset` (with the
       settlements it names, or as a wake-up without ids when its body shape is not read)
====== =====================================================================================

Refusals are logged at most once per account path per minute (a flood of requests for
unlisted accounts costs neither look-ups nor log lines). Replays are refused across every
api-server on the metadata DB through :mod:`airflow_provider_dintero.webhooks.replay`: the
delivery id's row and the asset event are written in one transaction, and a second writer of
the same id is refused by the database's key. A duplicate answers 200, not an error: Dintero
retries a delivery whose answer it did not see, and deletes a subscription after consecutive
failures.

This module imports FastAPI only inside :func:`create_app`; on Airflow 2.11 (no FastAPI app in
the webserver) :func:`create_app` raises :class:`RuntimeError` with that explanation.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_dintero.validation import ACCOUNT_ID_PATTERN
from airflow_provider_dintero.webhooks import replay
from airflow_provider_dintero.webhooks.assets import (
    previous_secret_variable,
    settlement_events_asset,
    webhook_secret_variable,
)
from airflow_provider_dintero.webhooks.delivery import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    Delivery,
    DeliveryRefused,
    check_content_type,
    check_signature,
    parse_delivery,
)
from airflow_provider_dintero.webhooks.settings import ReceiverSettings, load_settings

try:  # FastAPI resolves the endpoint's annotations from this module's globals
    from fastapi import Request
    from fastapi.responses import JSONResponse
except ImportError:  # Airflow 2.11: no FastAPI; create_app() explains
    Request = JSONResponse = None  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)

AIRFLOW_3_ONLY = (
    "The Dintero webhook receiver runs in Airflow 3's api-server (a FastAPI plugin app); "
    "Airflow 2.11 has no FastAPI app to mount it in. On 2.11 use the settlement sensor DAG "
    "(SettlementSensor) instead."
)

#: Seconds during which further refusals for the same account path are not logged.
REFUSAL_LOG_INTERVAL = 60.0


class RefusalLog:
    """
    Logs a refusal at most once per key (the account in the path) per :data:`REFUSAL_LOG_INTERVAL`.

    At most ``capacity`` keys are remembered; beyond that (a flood of distinct paths within one
    interval) refusals are not logged until the oldest keys age out.

    :param capacity: the most keys remembered at once.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def should_log(self, key: str, now: float | None = None) -> bool:
        """
        Whether a refusal for ``key`` is logged now (and note that it was).

        :param key: the account in the path (or a fixed word for a path that is not one).
        :param now: a monotonic time (default: now).
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < REFUSAL_LOG_INTERVAL:
                return False
            if last is None and len(self._last) >= self.capacity:
                self._last = {k: t for k, t in self._last.items() if now - t < REFUSAL_LOG_INTERVAL}
                if len(self._last) >= self.capacity:
                    return False
            self._last[key] = now
            return True

    def clear(self) -> None:
        """Forget every key (the next refusal of each is logged)."""
        with self._lock:
            self._last.clear()


#: The refusal log of this process's receiver.
REFUSAL_LOG = RefusalLog()


def _variable(key: str) -> str | None:
    from airflow.models.variable import Variable

    value = Variable.get(key, default_var=None)
    return value if isinstance(value, str) and value else None


def load_secret(account_id: str) -> str | None:
    """
    The signing secret stored for ``account_id`` (Variable ``dintero_webhook_secret_<aid>``).

    Read through Airflow's secrets backends and the metadata DB; the value is never logged.

    :param account_id: a valid account id.
    """
    return _variable(webhook_secret_variable(account_id))


def load_previous_secret(account_id: str, now: datetime | None = None) -> str | None:
    """
    The account's previous signing secret while its rotation window lasts, else ``None``.

    Variable ``dintero_webhook_secret_<aid>_previous`` holds ``{"secret": ..., "expires_at":
    <ISO 8601>}`` (written by
    :class:`~airflow_provider_dintero.operators.webhooks.RotateWebhookSecretOperator`); read only
    when a delivery does not verify under the current secret.

    :param account_id: a valid account id.
    :param now: the time to compare the expiry with (default: now).
    """
    raw = _variable(previous_secret_variable(account_id))
    if raw is None:
        return None
    try:
        record = json.loads(raw)
        secret, expires = record["secret"], datetime.fromisoformat(record["expires_at"])
    except (ValueError, KeyError, TypeError):
        log.warning(
            "Variable %s is not a previous webhook secret record; ignored",
            previous_secret_variable(account_id),
        )
        return None
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=timezone.utc)
    if not isinstance(secret, str) or not secret or (now or datetime.now(timezone.utc)) >= expires:
        return None
    return secret


def verify(body: bytes, signature: str | None, account_id: str, secret: str) -> None:
    """
    Check the signature under the account's secret, then under its previous one (rotation window).

    :param body: the raw body.
    :param signature: the ``event-signature`` header.
    :param account_id: the account in the path.
    :param secret: the current secret.
    """
    try:
        check_signature(body, signature, secret)
    except DeliveryRefused as refused:
        if signature is None or "does not match" not in refused.reason:
            raise
        previous = load_previous_secret(account_id)
        if previous is None:
            raise
        check_signature(body, signature, previous)
        log.info(
            "A Dintero webhook delivery for %s was signed with the previous secret (still inside its "
            "rotation window)",
            account_id,
        )


#: Attempts at recording one delivery when the database reports a lock or serialization conflict.
RECORD_ATTEMPTS = 5


def record_settlement_event(
    receiver_account: str, delivery: Delivery, settings: ReceiverSettings
) -> tuple[str, int | None]:
    """
    Record one asset event for a verified ``settlement_add``, unless its delivery id has one.

    A transaction the database aborts for a conflict with another api-server's (SQLite's
    "database is locked", a serialization failure) is tried again, up to
    :data:`RECORD_ATTEMPTS` times; the delivery id's key decides who records the event.

    :param receiver_account: the account in the receiver's path (the asset's account).
    :param delivery: the verified delivery.
    :param settings: the receiver's settings (the replay window).
    :return: ``("accepted", event id)``, ``("duplicate", existing id)`` or ``("no-asset", None)``.
    """
    from sqlalchemy.exc import OperationalError

    for attempt in range(1, RECORD_ATTEMPTS + 1):
        try:
            return _record_once(receiver_account, delivery, settings)
        except OperationalError:
            if attempt == RECORD_ATTEMPTS:
                raise
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _record_once(
    receiver_account: str, delivery: Delivery, settings: ReceiverSettings
) -> tuple[str, int | None]:
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    asset = settlement_events_asset(receiver_account)
    with create_session() as session:
        model = session.scalar(
            select(AssetModel).where(AssetModel.name == asset.name, AssetModel.uri == asset.uri)
        )
        if model is None:
            return "no-asset", None
        seen = replay.claim(session, receiver_account, delivery.event_delivery, settings.replay_window)
        if seen is not None:
            return "duplicate", seen
        event = asset_manager.register_asset_change(
            asset=model, extra=delivery.asset_extra(), session=session, source_is_api=True
        )
        if event is None:  # pragma: no cover - the model was found above in the same session
            session.rollback()
            return "no-asset", None
        session.flush()
        replay.attach(session, receiver_account, delivery.event_delivery, int(event.id))
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


def create_app(settings: ReceiverSettings | None = None) -> FastAPI:
    """
    Build the receiver app (Airflow 3 only): one route, ``POST /{account_id}``, no docs pages.

    Raises :class:`RuntimeError` on Airflow 2.11, which has no FastAPI app to mount it in.

    :param settings: the receiver's settings (default: read from ``[dintero]``).
    """
    try:
        from fastapi import FastAPI
        from starlette.concurrency import run_in_threadpool
    except ImportError as exc:
        raise RuntimeError(AIRFLOW_3_ONLY) from exc

    config = settings if settings is not None else load_settings()
    app = FastAPI(
        title="Dintero webhook receiver",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    def answer(status: int, outcome: str, **fields: Any) -> JSONResponse:
        headers = {"Connection": "close"} if status == 413 else None
        return JSONResponse({"status": outcome, **fields}, status_code=status, headers=headers)

    def refuse(account_id: str, client: str, refused: DeliveryRefused) -> JSONResponse:
        key = account_id if ACCOUNT_ID_PATTERN.fullmatch(account_id) else "<not an account id>"
        if REFUSAL_LOG.should_log(key):
            log.warning(
                "Refused a Dintero webhook delivery for %s from %s: %s (further refusals for this "
                "path are not logged for %d s)",
                key,
                client,
                refused.reason,
                REFUSAL_LOG_INTERVAL,
            )
        return answer(refused.status, "refused", detail=refused.reason)

    @app.post("/{account_id}")
    async def receive(account_id: str, request: Request) -> JSONResponse:
        """Verify one delivery and turn a ``settlement_add`` into an asset event."""
        client = request.client.host if request.client else "?"
        try:
            if not ACCOUNT_ID_PATTERN.fullmatch(account_id) or account_id not in config.accounts:
                raise DeliveryRefused(404, "no webhook receiver at this path")
            secret = await run_in_threadpool(load_secret, account_id)
            if secret is None:
                raise DeliveryRefused(404, "no webhook receiver at this path")
            body = await _read_capped(request, config.max_body_bytes)
            signature = request.headers.get(SIGNATURE_HEADER)
            await run_in_threadpool(verify, body, signature, account_id, secret)
            check_content_type(request.headers.get("content-type"))
            delivery = parse_delivery(
                body, request.headers.get(EVENT_HEADER), request.headers.get(DELIVERY_HEADER), account_id
            )
        except DeliveryRefused as refused:
            return refuse(account_id, client, refused)
        if delivery.event == "ping":
            log.info("Dintero webhook ping for account %s answered", account_id)
            return answer(200, "pong")
        if delivery.event != "settlement_add":
            log.info(
                "Ignored Dintero webhook event %s (delivery %s): only settlement_add wakes a DAG",
                delivery.event,
                delivery.event_delivery,
            )
            return answer(200, "ignored", event=delivery.event)
        outcome, event_id = await run_in_threadpool(record_settlement_event, account_id, delivery, config)
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
            "Dintero settlement_add delivery %s: asset event %s for %s %s",
            delivery.event_delivery,
            event_id,
            delivery.account_id,
            f"naming settlements {', '.join(delivery.settlement_ids)}"
            if delivery.recognised
            else "(a wake-up: the body named no settlement this provider could read)",
        )
        return answer(202, "accepted", asset_event_id=event_id)

    return app
