"""
End to end: the subscription operator generates and stores the secret, the emulator signs and
delivers ``ping`` and ``settlement_add`` to the receiver over real HTTP, and the settlement shows up
as one asset event in the metadata DB, queued for the consumer DAG.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.webhooks.conftest import airflow3_only, asset_event_extras, queued_dag_ids

pytestmark = [airflow3_only]


@pytest.fixture
def stored_secret_key(airflow_db: None, partner: str) -> Iterator[str]:
    """The partner's secret Variable key, removed before and after the test."""
    from airflow.models.variable import Variable

    from airflow_provider_dintero.webhooks import webhook_secret_variable

    key = webhook_secret_variable(partner)
    Variable.delete(key)
    yield key
    Variable.delete(key)


def _add_settlement_via_control_api(emulator: Any, merchant: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{emulator.base_url}/_emulator/settlements",
        data=json.dumps({"account_id": merchant, "provider": "vipps"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


def _wait_for_events(partner: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        extras = asset_event_extras(partner)
        if len(extras) >= count or time.monotonic() > deadline:
            return extras
        time.sleep(0.02)


@pytest.fixture
def subscribe(
    dintero_emulator: Any,
    dintero_connection: str,
    receiver_base_url: str,
    partner: str,
    consumer_dag: str,
    stored_secret_key: str,
) -> Callable[[], tuple[str, str]]:
    """Subscribe a merchant's ``settlement_add`` to the receiver with a generated secret; returns
    ``(merchant, receiver URL)``."""
    from airflow_provider_dintero.operators.webhooks import CreateWebhookSubscriptionOperator
    from airflow_provider_dintero.webhooks import receiver_path

    def _subscribe() -> tuple[str, str]:
        merchant = dintero_emulator.merchant_ids[0]
        url = f"{receiver_base_url}{receiver_path(partner)}"
        CreateWebhookSubscriptionOperator(
            task_id="subscribe", account_id=merchant, url=url, generate_secret=True
        ).execute({})
        return merchant, url

    return _subscribe


def test_an_emulator_settlement_add_becomes_one_asset_event(
    subscribe: Callable[[], tuple[str, str]],
    dintero_emulator: Any,
    partner: str,
    consumer_dag: str,
    stored_secret_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from airflow.models.variable import Variable

    with caplog.at_level("INFO"):
        merchant, _ = subscribe()
        ping = dintero_emulator.wait_for_deliveries(1)[0]
        settlement = _add_settlement_via_control_api(dintero_emulator, merchant)
        deliveries = dintero_emulator.wait_for_deliveries(2)
        extras = _wait_for_events(partner, 1)

    secret = Variable.get(stored_secret_key)
    assert (ping.event, ping.status) == ("ping", 200)
    assert [(d.event, d.status) for d in deliveries[1:]] == [("settlement_add", 202)]
    assert extras == [
        {
            "version": 1,
            "account_id": merchant,
            "settlement_ids": [settlement["id"]],
            "providers": ["vipps"],
            "source": "webhook",
            "event_delivery": deliveries[1].headers["event-delivery"],
        }
    ]
    assert queued_dag_ids(partner) == [consumer_dag]
    assert secret not in caplog.text


def test_a_replayed_emulator_delivery_records_nothing(
    subscribe: Callable[[], tuple[str, str]], dintero_emulator: Any, partner: str
) -> None:
    import httpx

    merchant, url = subscribe()
    dintero_emulator.add_settlement(merchant)
    original = dintero_emulator.wait_for_deliveries(2)[1]
    assert original.status == 202

    replay = httpx.post(url, content=original.body, headers=original.headers, timeout=30)

    assert (replay.status_code, replay.json()["status"]) == (200, "duplicate")
    assert len(_wait_for_events(partner, 1)) == 1


def test_the_emulators_ping_is_dinteros_documented_bare_subscription_body(
    subscribe: Callable[[], tuple[str, str]], dintero_emulator: Any
) -> None:
    subscribe()

    ping = dintero_emulator.wait_for_deliveries(1)[0]

    body = json.loads(ping.body)
    assert (ping.headers["event"], ping.status) == ("ping", 200)
    assert {"id", "config", "events", "created_at"} <= set(body)
    assert not {"account_id", "event", "event_delivery"} & set(body)
    assert "value" not in body["config"]["secret"]


@pytest.mark.parametrize(
    ("shape", "named"),
    [("settlement", True), ("settlements", True), ("data", True), ("ids", True), ("other", False)],
)
def test_every_settlement_add_shape_the_emulator_sends_wakes_the_dag(
    subscribe: Callable[[], tuple[str, str]], dintero_emulator: Any, partner: str, shape: str, named: bool
) -> None:
    dintero_emulator.settings.webhook_payload_shape = shape
    merchant, _ = subscribe()
    settlement = dintero_emulator.add_settlement(merchant)

    delivered = dintero_emulator.wait_for_deliveries(2)[1]
    (extra,) = _wait_for_events(partner, 1)

    assert delivered.status == 202
    assert extra["settlement_ids"] == ([settlement["id"]] if named else [])
    assert ("shape" in extra) is not named
