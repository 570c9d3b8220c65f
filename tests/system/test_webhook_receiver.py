"""
The webhook receiver in real api-servers (Airflow 3.3): closed unless asked (a second api-server
with the default configuration mounts no route and looks nothing up), a bad ``[dintero]`` value
stops an api-server's start-up, Dintero's documented ping body is answered, 1,000 requests for
unlisted accounts cost no secrets-backend call and one log line per account, a settlement_add the
receiver cannot read still wakes a run that copies the settlement, and a rotation loses no
delivery signed with the old secret inside its window.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from typing import Any

import pytest

from .conftest import task_instances
from .deployment import Deployment, wait_until

ROTATE_DAG = "dintero_rotate_webhook_secret"
WATCH_DAG = "dintero_settlements_on_event"


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        raw = error.read() or b"{}"
        try:
            return error.code, json.loads(raw)
        except ValueError:
            return error.code, {"raw": raw.decode(errors="replace")[:200]}


def _signed(
    body: bytes, secret: str, event: str = "settlement_add", delivery_id: str | None = None
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "event": event,
        "event-delivery": delivery_id or str(uuid.uuid4()),
        "event-signature": hmac.new(secret.encode(), body, hashlib.sha1).hexdigest(),
    }


def _settlement_add(account_id: str, settlement_id: str) -> tuple[bytes, str]:
    delivery_id = str(uuid.uuid4())
    body = {
        "account_id": account_id,
        "event": "settlement_add",
        "event_delivery": delivery_id,
        "settlement": {"id": settlement_id, "provider": "vipps"},
    }
    return json.dumps(body).encode(), delivery_id


def _parsed(deployment: Deployment, dag_id: str) -> None:
    def found() -> bool:
        try:
            return bool(deployment.api(f"/dags/{dag_id}"))
        except urllib.error.HTTPError:
            return False

    wait_until(found, 240, f"DAG {dag_id} to be parsed", 2)


def _variable(deployment: Deployment, key: str) -> str | None:
    result = deployment.airflow("variables", "get", key, keep=False)
    return result.stdout.strip() or None if result.returncode == 0 else None


@pytest.fixture(scope="module")
def partner_secret(deployment: Deployment, emulator: Any) -> str:
    """The partner's signing secret (the one the provisioning scenario stored, else a new one)."""
    key = f"dintero_webhook_secret_{emulator.partner_id}"
    secret = _variable(deployment, key)
    if secret is None:
        secret = f"system-webhook-secret-{uuid.uuid4().hex}"
        assert deployment.airflow("variables", "set", key, secret, keep=False).returncode == 0
    return secret


@pytest.fixture(scope="module")
def receiver(deployment: Deployment, emulator: Any) -> str:
    """The receiver's URL for the partner on the deployment's api-server (switched on there)."""
    return f"{deployment.api_url}/dintero-webhooks/{emulator.partner_id}"


def test_a_second_api_server_with_the_default_configuration_mounts_no_receiver(
    deployment: Deployment, emulator: Any, partner_secret: str
) -> None:
    before = len(deployment.secret_lookups("variable:dintero_webhook_secret_"))
    defaults = {
        "AIRFLOW__DINTERO__WEBHOOK_RECEIVER_ENABLED": None,
        "AIRFLOW__DINTERO__WEBHOOK_ACCOUNTS": None,
        "AIRFLOW__DINTERO__WEBHOOK_MAX_BODY_BYTES": None,
    }
    _, url = deployment.start_api_server("api-server-defaults", defaults)
    try:
        body, _ = _settlement_add(emulator.partner_id, "s-closed")
        answers = [
            _post(f"{url}/dintero-webhooks/{emulator.partner_id}", body, _signed(body, partner_secret))
            for _ in range(20)
        ]
    finally:
        deployment.forget("api-server-defaults")

    # Airflow's own answer to a path nothing serves: its UI catch-all route takes only GET (405)
    assert {status for status, _ in answers} <= {404, 405}
    assert not [a for _, a in answers if a.get("status") == "refused"]  # never the receiver's
    assert len(deployment.secret_lookups("variable:dintero_webhook_secret_")) == before
    assert "Dintero webhook receiver is off" in deployment.output("api-server-defaults")


@pytest.mark.parametrize(
    ("option", "value"),
    [("WEBHOOK_MAX_BODY_BYTES", "256 kilobytes"), ("WEBHOOK_REPLAY_WINDOW_DAYS", "a month")],
)
def test_a_bad_option_value_stops_the_api_server_with_a_clear_message(
    deployment: Deployment, option: str, value: str
) -> None:
    name = f"api-server-bad-{option.lower()}"
    proc, _ = deployment.start_api_server(name, {f"AIRFLOW__DINTERO__{option}": value}, wait=False)
    try:
        code = proc.wait(timeout=180)
    finally:
        deployment.forget(name)

    output = deployment.output(name)
    assert code != 0
    assert f"[dintero] {option.lower()} (env AIRFLOW__DINTERO__{option})" in output
    assert "is not valid: expected" in output


def test_dinteros_documented_ping_body_is_answered_200(receiver: str, partner_secret: str) -> None:
    bare_subscription = {
        "id": str(uuid.uuid4()),
        "created_at": "2026-12-06T10:00:00Z",
        "config": {"url": receiver, "content_type": "application/json", "secret": {"type": "HMAC-SHA1"}},
        "events": ["settlement_add"],
        "active": True,
    }
    body = json.dumps(bare_subscription).encode()

    assert _post(receiver, body, _signed(body, partner_secret, event="ping")) == (200, {"status": "pong"})


def test_a_thousand_requests_for_unlisted_accounts_cost_no_look_up_and_one_line_per_account(
    deployment: Deployment, emulator: Any, partner_secret: str
) -> None:
    unlisted = [f"{emulator.partner_id[0]}9990{i:04d}" for i in range(10)]
    api_server = deployment.profile.names("api-server")[0]  # the one behind deployment.api_url
    before = deployment.output(api_server).count("Refused a Dintero webhook delivery for")
    body, _ = _settlement_add(emulator.partner_id, "s-unlisted")
    headers = _signed(body, partner_secret)

    answers = Counter(
        _post(f"{deployment.api_url}/dintero-webhooks/{unlisted[i % 10]}", body, headers)[0]
        for i in range(1000)
    )

    time.sleep(1)  # let the api-server flush its log
    lines = deployment.output(api_server).split("Refused a Dintero webhook delivery for")[before + 1 :]
    refused_accounts = Counter(line.split()[0] for line in lines)
    assert answers == Counter({404: 1000})
    assert [k for k in deployment.secret_lookups() if any(a in k for a in unlisted)] == []
    assert refused_accounts == Counter({a: 1 for a in unlisted})


def _woken_copies(deployment: Deployment, event: dict[str, Any]) -> list[str]:
    """
    The settlement ids the runs an asset event created copied or found already copied, once
    they finished (a run queued just before the event may have copied it first: ``run_events``).
    """
    written: list[str] = []
    for run in event["created_dagruns"]:
        run_id = run["run_id"]
        wait_until(
            lambda run_id=run_id: (
                deployment.api(f"/dags/{WATCH_DAG}/dagRuns/{run_id}")["state"] in ("success", "failed")
            ),
            300,
            f"run {run_id}",
            2,
        )
        for ti in task_instances(deployment, WATCH_DAG, run_id, "copy_to_s3"):
            if ti["state"] == "success":
                result = deployment.xcom(WATCH_DAG, run_id, "copy_to_s3", ti["map_index"])
                for line in result["merchants"].values():
                    written.extend(line.get("settlement_ids", []))
    return written


def _events_for_delivery(deployment: Deployment, partner: str, delivery_id: str) -> list[dict[str, Any]]:
    from airflow_provider_dintero.webhooks import settlement_events_asset

    name = settlement_events_asset(partner).name
    try:
        found = deployment.api(f"/assets/events?name_pattern={name}&limit=1000&order_by=-timestamp")
    except urllib.error.HTTPError as error:
        # Airflow 3.3 answers 500 while an event's run is queued (its start_date is still None)
        if error.code != 500:
            raise
        return []
    return [e for e in found["asset_events"] if (e.get("extra") or {}).get("event_delivery") == delivery_id]


@pytest.fixture(scope="module")
def subscribed_merchant(
    deployment: Deployment, emulator: Any, receiver: str, partner_secret: str, ui_connection: dict[str, Any]
) -> dict[str, Any]:
    """
    A merchant subscribed to the receiver by the rotation example DAG, with deliveries signed
    with the old secret sent all through the rotation and after it (inside the window).
    """
    merchant = emulator.merchant_ids[-1]
    # a real settlement (added before the merchant is subscribed: no delivery) that every
    # delivery below names, so that the consumer runs they wake find it at Dintero
    real = str(emulator.add_settlement(merchant, provider="vipps")["id"])
    _parsed(deployment, ROTATE_DAG)
    deployment.api(f"/dags/{ROTATE_DAG}", "PATCH", {"is_paused": False})
    run_id = deployment.api(
        f"/dags/{ROTATE_DAG}/dagRuns",
        "POST",
        {"logical_date": None, "conf": {"webhook_url": receiver, "merchant_ids": [merchant]}},
    )["dag_run_id"]
    sent: list[tuple[str, int]] = []

    def state() -> str:
        return str(deployment.api(f"/dags/{ROTATE_DAG}/dagRuns/{run_id}")["state"])

    while state() not in ("success", "failed"):
        body, delivery_id = _settlement_add(merchant, real)
        sent.append(
            (delivery_id, _post(receiver, body, _signed(body, partner_secret, delivery_id=delivery_id))[0])
        )
        time.sleep(0.5)
    for _ in range(5):  # after the rotation, still signed with the old secret
        body, delivery_id = _settlement_add(merchant, real)
        sent.append(
            (delivery_id, _post(receiver, body, _signed(body, partner_secret, delivery_id=delivery_id))[0])
        )
    return {"merchant": merchant, "run_state": state(), "sent": sent}


def test_a_rotation_loses_no_delivery_signed_with_the_old_secret_inside_the_window(
    deployment: Deployment, emulator: Any, subscribed_merchant: dict[str, Any], partner_secret: str
) -> None:
    sent = subscribed_merchant["sent"]
    new_secret = _variable(deployment, f"dintero_webhook_secret_{emulator.partner_id}")

    assert subscribed_merchant["run_state"] == "success"
    assert new_secret and new_secret != partner_secret
    assert len(sent) >= 6 and {status for _, status in sent} == {202}
    recorded = [d for d, _ in sent if _events_for_delivery(deployment, emulator.partner_id, d)]
    assert recorded == [d for d, _ in sent]


@pytest.mark.parametrize("shape", ["settlements", "data", "ids", "other"])
def test_a_settlement_add_of_any_shape_wakes_a_run_that_copies_the_settlement(
    deployment: Deployment, emulator: Any, subscribed_merchant: dict[str, Any], shape: str
) -> None:
    merchant = subscribed_merchant["merchant"]
    _parsed(deployment, WATCH_DAG)
    deployment.api(f"/dags/{WATCH_DAG}", "PATCH", {"is_paused": False})
    emulator.settings.webhook_payload_shape = shape
    try:
        delivered_before = len(emulator.deliveries)
        settlement = emulator.add_settlement(merchant, provider="vipps")
        delivery = wait_until(
            lambda: next(
                (
                    d
                    for d in emulator.deliveries[delivered_before:]
                    if d.event == "settlement_add" and d.url.startswith(deployment.api_url)
                ),
                None,
            ),
            60,
            "the settlement_add delivery",
            0.2,
        )
    finally:
        emulator.settings.webhook_payload_shape = "settlement"
    (event,) = wait_until(
        lambda: [
            e
            for e in _events_for_delivery(deployment, emulator.partner_id, delivery.headers["event-delivery"])
            if e["created_dagruns"]
        ],
        180,
        "the webhook's asset event and the run it woke",
        1,
    )

    assert delivery.status == 202
    assert (event["extra"].get("shape") == "unrecognised") is (shape == "other")
    assert settlement["id"] in _woken_copies(deployment, event)
