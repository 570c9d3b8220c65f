"""
Checks of one Dintero webhook delivery, independent of any web framework: the HMAC-SHA1
``event-signature`` over the raw body, the content type, and the body, read leniently.

Only what proves the delivery is not Dintero's, or cannot be read at all, is refused (each
refusal a :class:`DeliveryRefused` carrying the HTTP status): a missing or wrong signature, a
body over the cap, another content type, a body that is not one JSON object, or headers that
contradict the body. Everything else a signed delivery says is taken as well as it can be:

* ``ping`` (the ``event`` header or the body says so) is answered whatever its body: Dintero's
  documented ping body is the bare subscription object, not an event envelope;
* a ``settlement_add`` whose settlements are found (a ``settlement`` object or list, a
  ``settlements`` list, ``data``, or only ids) names them; any other shape is still a wake-up
  for the account, with no ids and ``"shape": "unrecognised"`` (a verified webhook is a
  wake-up whatever its body);
* the delivery id comes from the ``event-delivery`` header or the body's ``event_delivery``;
  a delivery with neither is identified by the SHA-256 of its body (Dintero's retries send the
  same bytes).

Nothing here trusts the wire: the signature is checked (in constant time) before the body is
parsed, every id is matched against a strict pattern before it is used, and no refusal echoes
the body or the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_dintero.events import build_extra
from airflow_provider_dintero.validation import ACCOUNT_ID_PATTERN

log = logging.getLogger(__name__)

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
    :param recognised: whether the ``settlement_add`` body had a shape the settlements were read
        from; ``False`` makes the event a wake-up for the account (no ids).
    """

    account_id: str
    event: str
    event_delivery: str
    settlement_ids: tuple[str, ...] = field(default_factory=tuple)
    providers: tuple[str, ...] = field(default_factory=tuple)
    recognised: bool = True

    def asset_extra(self) -> dict[str, Any]:
        """
        The asset event's extra (:mod:`airflow_provider_dintero.events`): ids only, never a
        credential. An unrecognised body gives no ids and ``"shape": "unrecognised"``: a wake-up,
        after which the consumer copies what is new for the account.
        """
        return build_extra(
            self.account_id,
            self.settlement_ids,
            self.providers,
            source="webhook",
            event_delivery=self.event_delivery,
            shape=None if self.recognised else "unrecognised",
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


def _text(body: dict[str, Any], name: str, pattern: re.Pattern[str]) -> str | None:
    """The body's ``name`` when it is a string of the expected shape, else ``None``."""
    value = body.get(name)
    return value if isinstance(value, str) and pattern.fullmatch(value) else None


class _Unreadable(Exception):
    """The settlements of a ``settlement_add`` body are not where, or not what, we look for."""


def _item(item: Any) -> tuple[str, str | None]:
    """One settlement's id and provider: an object with ``id`` (and ``provider``), or a bare id."""
    if isinstance(item, str):
        if _SETTLEMENT_ID.fullmatch(item):
            return item, None
        raise _Unreadable
    if not isinstance(item, dict):
        raise _Unreadable
    sid = item.get("id", item.get("settlement_id"))
    if not isinstance(sid, str) or not _SETTLEMENT_ID.fullmatch(sid):
        raise _Unreadable
    provider = item.get("provider")
    if provider is not None and not (isinstance(provider, str) and _PROVIDER.fullmatch(provider)):
        raise _Unreadable
    return sid, provider


def _items(body: dict[str, Any]) -> list[Any]:
    """The settlement items of the first key that carries them, in the order we look."""
    for key in ("settlement", "settlements", "settlement_ids", "settlement_id", "data"):
        if key not in body:
            continue
        value = body[key]
        if (
            key == "data"
            and isinstance(value, dict)
            and any(k in value for k in ("settlement", "settlements", "settlement_ids", "settlement_id"))
        ):
            return _items(value)
        return value if isinstance(value, list) else [value]
    raise _Unreadable


def read_settlements(body: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """
    The settlement ids and providers a ``settlement_add`` body names, or ``None`` when its shape
    is not one we read (then the delivery is a wake-up without ids).

    Read: ``settlement`` (an object, or a list), ``settlements`` (a list), ``settlement_ids`` /
    ``settlement_id`` (ids only), ``data`` (an object, a list, or holding one of the former).
    Every item must give an id of the expected shape, else none is taken.

    :param body: the parsed JSON object.
    """
    try:
        items = _items(body)
        if not items or len(items) > MAX_SETTLEMENTS:
            raise _Unreadable
        read = [_item(item) for item in items]
    except _Unreadable:
        return None
    ids: list[str] = []
    providers: list[str] = []
    for sid, provider in read:
        if sid not in ids:
            ids.append(sid)
        if provider is not None and provider not in providers:
            providers.append(provider)
    return tuple(ids), tuple(providers)


#: Key sets of unrecognised bodies already logged by this process (each logged once).
_LOGGED_SHAPES: set[tuple[str, ...]] = set()
_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


def _log_unrecognised(body: dict[str, Any], delivery_id: str) -> None:
    """Log an unrecognised ``settlement_add`` shape once per process, with its top-level keys only."""
    keys = tuple(sorted(k if _KEY.fullmatch(k) else "<other>" for k in list(body)[:20]))
    if keys in _LOGGED_SHAPES or len(_LOGGED_SHAPES) > 100:
        return
    _LOGGED_SHAPES.add(keys)
    log.warning(
        "A signed settlement_add delivery (%s) has a body shape this provider does not read (top-level "
        "keys: %s); it is recorded as a wake-up without settlement ids, and the consumer copies what "
        "is new for the account. Tell the provider's maintainers the keys.",
        delivery_id,
        ", ".join(keys) or "none",
    )


def parse_body(body: bytes) -> dict[str, Any]:
    """
    The body as one JSON object (duplicate keys and ``NaN``-like constants refused: 400).

    :param body: the raw body, already verified.
    """
    try:
        parsed = json.loads(
            body.decode("utf-8"), object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise DeliveryRefused(400, "malformed delivery: the body is not a UTF-8 JSON document") from None
    if not isinstance(parsed, dict):
        raise DeliveryRefused(400, "malformed delivery: the body must be a JSON object")
    return parsed


def _agreed(header: str | None, in_body: Any, name: str, header_name: str) -> str | None:
    """The header's value or the body's, refusing (400) when both are there and differ."""
    value = header.strip() if header is not None and header.strip() else None
    if value is not None and isinstance(in_body, str) and in_body != value:
        raise DeliveryRefused(
            400, f"malformed delivery: the {header_name} header differs from the body's {name}"
        )
    return value if value is not None else in_body if isinstance(in_body, str) else None


def parse_delivery(
    body: bytes, event_header: str | None, delivery_header: str | None, path_account: str
) -> Delivery:
    """
    Read a delivery whose signature was already checked.

    :param body: the raw body.
    :param event_header: the ``event`` header, or ``None``.
    :param delivery_header: the ``event-delivery`` header, or ``None``.
    :param path_account: the account in the receiver's path (used when the body names none).
    """
    parsed = parse_body(body)
    event = _agreed(event_header, parsed.get("event"), "event", EVENT_HEADER)
    if event is None and "config" in parsed and "events" in parsed:
        event = "ping"  # the documented ping body: the bare subscription object
    if event is None or not _EVENT.fullmatch(event):
        raise DeliveryRefused(
            400, f"malformed delivery: no event name in the {EVENT_HEADER} header or the body"
        )
    delivery_id = _agreed(delivery_header, parsed.get("event_delivery"), "event_delivery", DELIVERY_HEADER)
    if delivery_id is None:
        delivery_id = "sha256:" + hashlib.sha256(body).hexdigest()
    elif not _DELIVERY_ID.fullmatch(delivery_id):
        raise DeliveryRefused(400, "malformed delivery: the delivery id is not of the expected shape")
    account_id = _text(parsed, "account_id", ACCOUNT_ID_PATTERN) or path_account
    if event != "settlement_add":
        return Delivery(account_id=account_id, event=event, event_delivery=delivery_id)
    found = read_settlements(parsed)
    if found is None:
        _log_unrecognised(parsed, delivery_id)
        return Delivery(account_id=account_id, event=event, event_delivery=delivery_id, recognised=False)
    return Delivery(
        account_id=account_id,
        event=event,
        event_delivery=delivery_id,
        settlement_ids=found[0],
        providers=found[1],
    )
