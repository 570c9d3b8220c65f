"""Outbound webhook deliveries, restricted to loopback receivers."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
from urllib.parse import urlsplit

from airflow_provider_dintero.emulator.models import WebhookDelivery

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` is an http(s) URL whose host is a loopback name or address.

    :param url: the URL to check.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    host = parts.hostname.lower()
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sign(body: bytes, secret: str) -> str:
    """The ``event-signature`` header value: hex HMAC-SHA1 of the raw body.

    :param body: the raw request body.
    :param secret: the subscription secret.
    """
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def build_headers(event: str, delivery_id: str, body: bytes, secret: str | None) -> dict[str, str]:
    """Headers of a delivery as Dintero documents them.

    :param event: event name.
    :param delivery_id: the ``event-delivery`` id.
    :param body: raw body (signed when ``secret`` is set).
    :param secret: subscription secret or ``None``.
    """
    headers = {
        "User-Agent": "Dintero-Hook/emulator",
        "Content-Type": "application/json",
        "event": event,
        "event-delivery": delivery_id,
    }
    if secret:
        headers["event-signature"] = sign(body, secret)
    return headers


def deliver(
    url: str,
    event: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    subscription_id: str | None = None,
) -> WebhookDelivery:
    """POST one delivery (no redirects followed; non-loopback targets are refused, not contacted).

    :param url: receiver URL.
    :param event: event name (for the record).
    :param body: raw body.
    :param headers: headers to send.
    :param timeout: connect/read timeout in seconds.
    :param subscription_id: recorded on the result.
    """
    record = WebhookDelivery(
        url=url, event=event, status=None, headers=headers, body=body, subscription_id=subscription_id
    )
    if not is_loopback_url(url):
        record.error = "refused: the emulator only delivers to loopback hosts"
        return record
    parts = urlsplit(url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    conn = conn_cls(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        record.status = resp.status
        if not 200 <= resp.status < 300:
            record.error = f"receiver answered {resp.status}"
    except (OSError, http.client.HTTPException) as exc:
        record.error = f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    return record
