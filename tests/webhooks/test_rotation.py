"""
Rotating, recovering and sending the webhook signing secret (Airflow 2.11 and 3): every merchant's
subscription is re-signed, the previous secret is kept for a bounded window, a subscription is
found by its remembered id where Dintero has no list, and the secret reaches Dintero in whichever
form it reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_dintero.operators.webhooks import (
    CreateWebhookSubscriptionOperator,
    RotateWebhookSecretOperator,
)
from tests.provisioning.helpers import clear_log, settle, writes
from tests.webhooks.conftest import hmac_sha1

URL = "http://127.0.0.1:9/dintero-webhooks/T11200000"


def _variable(key: str) -> str | None:
    from airflow.models.variable import Variable

    return Variable.get(key, None)


@pytest.fixture
def secret_key(airflow_db: None, dintero_emulator: Any) -> Iterator[str]:
    """The partner's secret Variable, its previous-secret Variable and the subscription memos, cleared."""
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    from airflow_provider_dintero.webhooks.assets import previous_secret_variable, webhook_secret_variable

    def clear() -> None:
        with create_session() as session:
            session.query(Variable).filter(Variable.key.like("dintero_webhook_%")).delete(
                synchronize_session=False
            )

    partner = dintero_emulator.partner_id
    clear()
    yield webhook_secret_variable(partner)
    assert previous_secret_variable(partner).startswith(webhook_secret_variable(partner))
    clear()


def _subscribe(merchant: str, **kwargs: Any) -> Any:
    kwargs.setdefault("generate_secret", True)
    return CreateWebhookSubscriptionOperator(
        task_id="subscribe", account_id=merchant, url=URL, **kwargs
    ).execute({})


def _signing_secret(emulator: Any, merchant: str) -> str:
    """What the emulator signs the merchant's deliveries with (one subscription expected)."""
    (subscription,) = emulator._app.subscriptions.get(merchant, {}).values()
    return str(subscription["config"]["secret"]["value"])


def test_a_rotation_re_signs_every_merchants_subscription(
    dintero_emulator: Any, dintero_connection: str, secret_key: str
) -> None:
    merchants = dintero_emulator.merchant_ids[:2]
    for merchant in merchants:
        _subscribe(merchant)
    old = _variable(secret_key)

    RotateWebhookSecretOperator(task_id="rotate").execute({"run_id": "rotation-1"})
    for merchant in merchants:
        _subscribe(merchant)

    new = _variable(secret_key)
    assert new and new != old
    assert [_signing_secret(dintero_emulator, m) for m in merchants] == [new, new]


def test_a_lost_secret_is_recovered_for_every_merchant_by_one_run(
    dintero_emulator: Any, dintero_connection: str, secret_key: str
) -> None:
    from airflow.models.variable import Variable

    merchants = dintero_emulator.merchant_ids[:2]
    for merchant in merchants:
        _subscribe(merchant)
    Variable.delete(secret_key)  # the secret is lost

    for merchant in merchants:
        _subscribe(merchant)

    recovered = _variable(secret_key)
    assert recovered is not None
    assert [_signing_secret(dintero_emulator, m) for m in merchants] == [recovered, recovered]


def test_the_previous_secret_is_kept_with_an_expiry(
    dintero_emulator: Any, dintero_connection: str, secret_key: str
) -> None:
    _subscribe(dintero_emulator.merchant_ids[0])
    old = _variable(secret_key)

    result = RotateWebhookSecretOperator(task_id="rotate", previous_valid_for=timedelta(hours=6)).execute(
        {"run_id": "rotation-1"}
    )

    kept = json.loads(_variable(f"{secret_key}_previous") or "{}")
    expires = datetime.fromisoformat(kept["expires_at"])
    assert kept["secret"] == old
    assert timedelta(hours=5, minutes=59) < expires - datetime.now(timezone.utc) <= timedelta(hours=6)
    assert result == {
        "secret_variable": secret_key,
        "previous_valid_until": kept["expires_at"],
        "recovered": False,
    }
    assert old not in json.dumps(result)


def test_a_retried_rotation_in_the_same_run_rotates_once(
    dintero_emulator: Any, dintero_connection: str, secret_key: str
) -> None:
    _subscribe(dintero_emulator.merchant_ids[0])
    old = _variable(secret_key)
    rotate = RotateWebhookSecretOperator(task_id="rotate")
    rotate.execute({"run_id": "rotation-1"})
    new = _variable(secret_key)

    rotate.execute({"run_id": "rotation-1"})

    assert _variable(secret_key) == new
    assert json.loads(_variable(f"{secret_key}_previous") or "{}")["secret"] == old


@pytest.mark.parametrize("status", [404, 405])
def test_without_a_list_endpoint_a_rerun_finds_the_remembered_subscription(
    dintero_emulator: Any, dintero_connection: str, secret_key: str, status: int
) -> None:
    dintero_emulator.settings.subscription_list_status = status
    merchant = dintero_emulator.merchant_ids[0]
    first = _subscribe(merchant)
    clear_log(dintero_emulator)

    again = _subscribe(merchant)

    assert again["id"] == first["id"]
    assert writes(dintero_emulator) == []
    assert len(dintero_emulator._app.subscriptions[merchant]) == 1


@pytest.mark.parametrize("status", [404, 405])
def test_without_a_list_endpoint_a_subscription_deleted_at_dintero_is_created_again(
    dintero_emulator: Any, dintero_connection: str, secret_key: str, status: int
) -> None:
    dintero_emulator.settings.subscription_list_status = status
    merchant = dintero_emulator.merchant_ids[0]
    first = _subscribe(merchant)
    dintero_emulator._app.subscriptions[merchant].clear()

    again = _subscribe(merchant)

    assert again["id"] != first["id"]
    assert list(dintero_emulator._app.subscriptions[merchant]) == [again["id"]]


@pytest.mark.parametrize("mismatch", ["refuse", "drop"])
@pytest.mark.parametrize("form", ["value", "secret", "string"])
def test_the_secret_reaches_dintero_whichever_field_it_reads(
    dintero_emulator: Any, dintero_connection: str, secret_key: str, form: str, mismatch: str
) -> None:
    dintero_emulator.settings.subscription_secret_form = form
    dintero_emulator.settings.subscription_secret_mismatch = mismatch
    merchant = dintero_emulator.merchant_ids[0]

    created = _subscribe(merchant)

    secret = _variable(secret_key)
    assert secret is not None
    assert list(dintero_emulator._app.subscriptions[merchant]) == [created["id"]]
    assert _signing_secret(dintero_emulator, merchant) == secret
    pings = [d for d in dintero_emulator.wait_for_deliveries(1) if d.subscription_id == created["id"]]
    assert pings and pings[-1].headers["event-signature"] == hmac_sha1(pings[-1].body, secret)


def test_a_chosen_secret_form_is_the_only_one_sent(
    dintero_emulator: Any, dintero_connection: str, secret_key: str
) -> None:
    from airflow_provider_dintero.exceptions import DinteroApiError

    dintero_emulator.settings.subscription_secret_form = "string"

    with pytest.raises(DinteroApiError, match=r"config\.secret"):
        _subscribe(dintero_emulator.merchant_ids[0], secret_form="value")

    posts = [r for r in settle(dintero_emulator).requests if r.method == "POST" and "hooks" in r.path]
    assert len(posts) == 1


def test_the_example_dag_rotates_and_re_signs_every_listed_merchant_in_one_run(
    dintero_emulator: Any,
    dintero_connection: str,
    secret_key: str,
    run_dag: Any,
    load_example_dag: Any,
) -> None:
    from tests.provisioning.helpers import task_state

    merchants = dintero_emulator.merchant_ids[:2]
    for merchant in merchants:
        _subscribe(merchant)
    old = _variable(secret_key)

    dagrun = run_dag(
        load_example_dag("rotate_webhook_secret.py"), conf={"webhook_url": URL, "merchant_ids": merchants}
    )

    new = _variable(secret_key)
    assert task_state(dagrun, "rotate") == "success"
    assert new and new != old
    assert json.loads(_variable(f"{secret_key}_previous") or "{}")["secret"] == old
    assert [_signing_secret(dintero_emulator, m) for m in merchants] == [new, new]
