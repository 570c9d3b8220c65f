"""
Checks of one Dintero webhook delivery, independent of any web framework: the HMAC-SHA1
``event-signature`` over the raw body, the content type, and the JSON envelope
``{"account_id", "event", "event_delivery", "<object>": {...}}``. Every refusal is a
:class:`DeliveryRefused` carrying the HTTP status to answer with.

Nothing here trusts the wire: the signature is checked (in constant time) before the body is
parsed, ids are matched against strict patterns before they are used, and no refusal echoes the
body or the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_dintero.events import build_extra
from airflow_provider_dintero.hooks.dintero import ACCOUNT_ID_PATTERN

#: Largest body accepted (256 KiB). A ``settlement_add`` delivery is a few KiB; anything larger
#: is refused with 413 before it is read whole.
MAX_BODY_BYTES = 256 * 1024

#: Most settlements one delivery may name.
MAX_SETTLEMENTS = 100

SIGNATURE_HEADER = "event-signature"
EVENT_HEADER = "event"
DELIVERY_HEADER = "event-delivery"

_SIGNATURE = re.compile(r"^[0-9a-fA-F]{40}$")
_DELIVERY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_EVENT = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SETTLEMENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_PROVIDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class DeliveryRefused(Exception):
    """
    A delivery the receiver refuses, with the HTTP status to answer.

    :param status: the HTTP status code (400, 401, 404, 413 or 415).
    :param reason: a short reason for the sender and the log; never contains the body or secret.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Delivery:
    """
    A verified, parsed delivery.

    :param account_id: the envelope's ``account_id``.
    :param event: the event name, e.g. ``settlement_add``.
    :param event_delivery: the delivery id Dintero assigned (the same on its retries).
    :param settlement_ids: ids of the settlements a ``settlement_add`` names.
    :param providers: their payout providers (distinct, in order of first appearance).
    """

    account_id: str
    event: str
    event_delivery: str
    settlement_ids: tuple[str, ...] = field(default_factory=tuple)
    providers: tuple[str, ...] = field(default_factory=tuple)

    def asset_extra(self) -> dict[str, Any]:
        """The asset event's extra (:mod:`airflow_provider_dintero.events`): ids only, never a credential."""
        return build_extra(
            self.account_id,
            self.settlement_ids,
            self.providers,
            source="webhook",
            event_delivery=self.event_delivery,
        )


def sign(body: bytes, secret: str) -> str:
    """
    The hex HMAC-SHA1 of ``body`` keyed with ``secret``: what Dintero sends as ``event-signature``.

    :param body: the raw request body.
    :param secret: the subscription's signing secret.
    """
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha1).hexdigest()


def check_signature(body: bytes, signature: str | None, secret: str) -> None:
    """
    Raise :class:`DeliveryRefused` (401) unless ``signature`` is the HMAC-SHA1 of ``body``.

    :param body: the raw body bytes, exactly as received.
    :param signature: the ``event-signature`` header, or ``None`` when absent.
    :param secret: the subscription's signing secret.
    """
    if signature is None or not signature.strip():
        raise DeliveryRefused(401, f"unsigned delivery: the {SIGNATURE_HEADER} header is missing")
    if not _SIGNATURE.fullmatch(signature.strip()):
        raise DeliveryRefused(401, f"{SIGNATURE_HEADER} is not a hex HMAC-SHA1 (40 hex digits)")
    expected = sign(body, secret).encode("ascii")
    if not hmac.compare_digest(expected, signature.strip().lower().encode("ascii")):
        raise DeliveryRefused(401, f"{SIGNATURE_HEADER} does not match the body")


def check_content_type(content_type: str | None) -> None:
    """
    Raise :class:`DeliveryRefused` (415) unless the media type is ``application/json``.

    :param content_type: the ``Content-Type`` header, or ``None``.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise DeliveryRefused(415, "Content-Type must be application/json")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key")
    return dict(pairs)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _text(envelope: dict[str, Any], name: str, pattern: re.Pattern[str], expected: str) -> str:
    value = envelope.get(name)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise DeliveryRefused(400, f"malformed delivery: {name} must be {expected}")
    return value


def _settlements(envelope: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Settlement ids and providers of a ``settlement_add``: its ``settlement`` object (or list)."""
    raw = envelope.get("settlement", envelope.get("settlements"))
    raw_items: list[Any] = raw if isinstance(raw, list) else [raw]
    items = [i for i in raw_items if isinstance(i, dict)]
    if not items or len(items) > MAX_SETTLEMENTS or len(items) != len(raw_items):
        raise DeliveryRefused(
            400, f"malformed delivery: settlement must be an object (or a list of 1 to {MAX_SETTLEMENTS})"
        )
    ids: list[str] = []
    providers: list[str] = []
    for item in items:
        sid = item.get("id")
        if not isinstance(sid, str) or not _SETTLEMENT_ID.fullmatch(sid):
            raise DeliveryRefused(400, "malformed delivery: settlement.id must be a settlement id")
        if sid not in ids:
            ids.append(sid)
        provider = item.get("provider")
        if provider is not None:
            if not isinstance(provider, str) or not _PROVIDER.fullmatch(provider):
                raise DeliveryRefused(400, "malformed delivery: settlement.provider must be a provider name")
            if provider not in providers:
                providers.append(provider)
    return tuple(ids), tuple(providers)


def parse_delivery(body: bytes, event_header: str | None, delivery_header: str | None) -> Delivery:
    """
    Parse a delivery whose signature was already checked.

    The ``event`` and ``event-delivery`` headers, when present, must agree with the envelope.

    :param body: the raw body.
    :param event_header: the ``event`` header, or ``None``.
    :param delivery_header: the ``event-delivery`` header, or ``None``.
    """
    try:
        envelope = json.loads(
            body.decode("utf-8"), object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise DeliveryRefused(400, "malformed delivery: the body is not a UTF-8 JSON document") from None
    if not isinstance(envelope, dict):
        raise DeliveryRefused(400, "malformed delivery: the body must be a JSON object")
    account_id = _text(envelope, "account_id", ACCOUNT_ID_PATTERN, "a Dintero account id")
    event = _text(envelope, "event", _EVENT, "an event name")
    delivery_id = _text(envelope, "event_delivery", _DELIVERY_ID, "a delivery id")
    if event_header is not None and event_header.strip() != event:
        raise DeliveryRefused(400, f"malformed delivery: the {EVENT_HEADER} header differs from the body")
    if delivery_header is not None and delivery_header.strip() != delivery_id:
        raise DeliveryRefused(400, f"malformed delivery: the {DELIVERY_HEADER} header differs from the body")
    if event != "settlement_add":
        return Delivery(account_id=account_id, event=event, event_delivery=delivery_id)
    ids, providers = _settlements(envelope)
    return Delivery(
        account_id=account_id,
        event=event,
        event_delivery=delivery_id,
        settlement_ids=ids,
        providers=providers,
    )
