"""Webhook subscriptions and outbound deliveries."""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_dintero.emulator.webhooks import is_loopback_url

if TYPE_CHECKING:
    from airflow_provider_dintero.emulator import DinteroEmulator
    from tests.emulator.conftest import Api, Receiver


def _hooks(emu: DinteroEmulator) -> str:
    return f"/v1/accounts/{emu.merchant_ids[0]}/hooks/subscriptions"


def _body(url: str, secret: str | None = "s3cret", events: list[str] | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"url": url}
    if secret:
        config["secret"] = {"type": "HMAC-SHA1", "value": secret}
    return {"config": config, "events": events or ["settlement_add"]}


def test_subscription_crud_and_secret_is_write_only(
    api: Api, emu: DinteroEmulator, mtoken: str, receiver: Receiver
) -> None:
    created = api.call("POST", _hooks(emu), mtoken, json=_body(receiver.url))
    assert created.status_code == 200
    sub = created.json()
    assert sub["config"]["secret"] == {"type": "HMAC-SHA1"}
    assert sub["active"] is True and sub["id"]
    assert api.call("GET", f"{_hooks(emu)}/{sub['id']}", mtoken).json()["config"]["url"] == receiver.url
    assert [s["id"] for s in api.call("GET", _hooks(emu), mtoken).json()] == [sub["id"]]
    put = api.call(
        "PUT", f"{_hooks(emu)}/{sub['id']}", mtoken, json={**_body(receiver.url, None), "active": False}
    )
    assert put.json()["active"] is False and put.json()["config"]["secret"] == {"type": "HMAC-SHA1"}
    assert api.call("DELETE", f"{_hooks(emu)}/{sub['id']}", mtoken).status_code == 200
    assert api.call("GET", f"{_hooks(emu)}/{sub['id']}", mtoken).status_code == 404


def test_create_sends_signed_ping(api: Api, emu: DinteroEmulator, mtoken: str, receiver: Receiver) -> None:
    api.call("POST", _hooks(emu), mtoken, json=_body(receiver.url))
    deliveries = emu.wait_for_deliveries(1)
    assert deliveries[0].event == "ping" and deliveries[0].status == 200
    headers, raw = receiver.received[0]
    assert headers["event"] == "ping"
    assert headers["event-signature"] == hmac.new(b"s3cret", raw, hashlib.sha1).hexdigest()


def test_ping_endpoint_is_204(api: Api, emu: DinteroEmulator, mtoken: str, receiver: Receiver) -> None:
    emu.settings.ping_on_subscription_create = False
    sub = api.call("POST", _hooks(emu), mtoken, json=_body(receiver.url, None)).json()
    resp = api.call("POST", f"{_hooks(emu)}/{sub['id']}/ping", mtoken)
    assert resp.status_code == 204
    emu.wait_for_deliveries(1)
    headers, _ = receiver.received[0]
    assert "event-signature" not in headers
    ping = receiver.payloads()[0]  # Dintero's documented ping body: the bare subscription
    assert ping["id"] == sub["id"] and "event" not in ping and "account_id" not in ping


def test_settlement_add_delivery(api: Api, emu: DinteroEmulator, mtoken: str, receiver: Receiver) -> None:
    emu.settings.ping_on_subscription_create = False
    api.call("POST", _hooks(emu), mtoken, json=_body(receiver.url))
    item = emu.add_settlement(emu.merchant_ids[0], provider="klarna")
    delivery = emu.wait_for_deliveries(1)[0]
    assert delivery.event == "settlement_add" and delivery.status == 200
    headers, raw = receiver.received[0]
    payload = receiver.payloads()[0]
    assert payload["event"] == "settlement_add"
    assert payload["account_id"] == emu.merchant_ids[0]
    assert payload["settlement"] == item
    assert headers["event-delivery"] == payload["event_delivery"]
    assert headers["event-signature"] == hmac.new(b"s3cret", raw, hashlib.sha1).hexdigest()


def test_no_delivery_for_other_events_or_inactive(
    api: Api, emu: DinteroEmulator, mtoken: str, receiver: Receiver
) -> None:
    emu.settings.ping_on_subscription_create = False
    api.call("POST", _hooks(emu), mtoken, json=_body(receiver.url, events=["account_update"]))
    api.call("POST", _hooks(emu), mtoken, json={**_body(receiver.url), "active": False})
    emu.add_settlement(emu.merchant_ids[0])
    assert emu.wait_for_deliveries(1, timeout=0.3) == []


def test_non_loopback_targets_are_never_contacted(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    emu.settings.ping_on_subscription_create = False
    api.call("POST", _hooks(emu), mtoken, json=_body("https://example.com/hook"))
    emu.add_settlement(emu.merchant_ids[0])
    delivery = emu.wait_for_deliveries(1)[0]
    assert delivery.status is None
    assert delivery.error is not None and "loopback" in delivery.error


def test_failed_receiver_is_recorded(api: Api, emu: DinteroEmulator, mtoken: str, receiver: Receiver) -> None:
    receiver.status = 500
    api.call("POST", _hooks(emu), mtoken, json=_body(receiver.url))
    delivery = emu.wait_for_deliveries(1)[0]
    assert delivery.status == 500 and delivery.error


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["settlement_add"]}, "config"),
        ({"config": {}, "events": ["settlement_add"]}, "config.url"),
        ({"config": {"url": "ftp://x"}, "events": ["settlement_add"]}, "config.url"),
        ({"config": {"url": "http://127.0.0.1/x"}}, "events"),
        ({"config": {"url": "http://127.0.0.1/x"}, "events": []}, "events"),
        ({"config": {"url": "http://127.0.0.1/x"}, "events": ["Settlement Added"]}, "events"),
        ({"config": {"url": "http://127.0.0.1/x", "secret": "plain"}, "events": ["ping"]}, "config.secret"),
    ],
    ids=[
        "no-config",
        "no-url",
        "bad-url",
        "no-events",
        "empty-events",
        "malformed-event",
        "secret-not-object",
    ],
)
def test_subscription_validation(
    api: Api, emu: DinteroEmulator, mtoken: str, body: dict[str, Any], field: str
) -> None:
    resp = api.call("POST", _hooks(emu), mtoken, json=body)
    assert resp.status_code == 400
    assert resp.json()["error"]["errors"][0]["field"] == field


@pytest.mark.parametrize("event", ["payout_transfer", "settlement_update", "v2_checkout_event"])
def test_any_event_of_the_documented_shape_is_accepted(
    api: Api, emu: DinteroEmulator, mtoken: str, event: str
) -> None:
    body = {"config": {"url": "http://127.0.0.1:9/x"}, "events": ["settlement_add", event]}
    emu.settings.ping_on_subscription_create = False

    resp = api.call("POST", _hooks(emu), mtoken, json=body)

    assert resp.status_code in (200, 201), resp.text
    assert resp.json()["events"] == ["settlement_add", event]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "POST"])
def test_unknown_subscription_is_404(api: Api, emu: DinteroEmulator, mtoken: str, method: str) -> None:
    suffix = "/ping" if method == "POST" else ""
    kwargs = {"json": _body("http://127.0.0.1:9/x")} if method == "PUT" else {}
    assert api.call(method, f"{_hooks(emu)}/nope{suffix}", mtoken, **kwargs).status_code == 404


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://127.0.0.1:8080/x", True),
        ("http://localhost/x", True),
        ("http://[::1]:80/x", True),
        ("http://127.5.5.5/x", True),
        ("https://example.com/x", False),
        ("http://10.0.0.1/x", False),
        ("http://localhost.example.com/x", False),
        ("file:///etc/passwd", False),
    ],
)
def test_loopback_check(url: str, ok: bool) -> None:
    assert is_loopback_url(url) is ok
