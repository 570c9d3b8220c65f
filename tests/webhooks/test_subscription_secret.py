"""CreateWebhookSubscriptionOperator(generate_secret=True): the secret the receiver reads (2.11 and 3)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_provider_dintero.exceptions import DinteroInputError
from airflow_provider_dintero.operators.webhooks import CreateWebhookSubscriptionOperator
from tests.provisioning.helpers import clear_log, rendered_fields, settle, task_result, writes
from tests.webhooks.conftest import hmac_sha1

#: A loopback URL nothing listens on: the emulator signs and attempts each delivery there.
URL = "http://127.0.0.1:9/dintero-webhooks/T11200000"


@pytest.fixture
def secret_key(airflow_db: None, dintero_emulator: Any) -> Iterator[str]:
    """The default Variable key (of the partner connection's account), empty before and after."""
    from airflow.models.variable import Variable

    from airflow_provider_dintero.webhooks import webhook_secret_variable

    key = webhook_secret_variable(dintero_emulator.partner_id)
    Variable.delete(key)
    yield key
    Variable.delete(key)


def _stored(key: str) -> str | None:
    from airflow.models.variable import Variable

    return Variable.get(key, None)


def _subscribe(merchant: str, **kwargs: Any) -> Any:
    return CreateWebhookSubscriptionOperator(
        task_id="subscribe", account_id=merchant, url=URL, **kwargs
    ).execute({})


def _ping_signed_with(emulator: Any, count: int, secret: str) -> bool:
    ping = emulator.wait_for_deliveries(count)[count - 1]
    return bool(ping.headers.get("event-signature") == hmac_sha1(ping.body, secret))


def test_generates_stores_and_signs_with_a_new_secret(
    dintero_emulator: Any, dintero_connection: str, secret_key: str
) -> None:
    _subscribe(dintero_emulator.merchant_ids[0], generate_secret=True)

    secret = _stored(secret_key)
    assert secret is not None and len(secret) >= 43  # token_urlsafe(32)
    assert _ping_signed_with(dintero_emulator, 1, secret)


def test_a_rerun_with_the_secret_stored_changes_nothing(
    dintero_emulator: Any, dintero_connection: str, secret_key: str
) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    first = _subscribe(merchant, generate_secret=True)
    secret = _stored(secret_key)
    clear_log(dintero_emulator)

    again = _subscribe(merchant, generate_secret=True)

    assert writes(dintero_emulator) == []
    assert again["id"] == first["id"]
    assert _stored(secret_key) == secret


def test_another_merchant_is_signed_with_the_same_stored_secret(
    dintero_emulator: Any, dintero_connection: str, secret_key: str
) -> None:
    first, second = dintero_emulator.merchant_ids[:2]
    _subscribe(first, generate_secret=True)
    secret = _stored(secret_key)
    assert secret is not None

    _subscribe(second, generate_secret=True)

    assert _stored(secret_key) == secret
    assert _ping_signed_with(dintero_emulator, 2, secret)


def test_a_subscription_signed_with_an_unknown_secret_is_replaced(
    dintero_emulator: Any, dintero_connection: str, secret_key: str
) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    old = _subscribe(merchant, secret="a-secret-nobody-stored")
    clear_log(dintero_emulator)

    new = _subscribe(merchant, generate_secret=True)

    path = f"/v1/accounts/{merchant}/hooks/subscriptions"
    assert writes(dintero_emulator) == [("POST", path), ("DELETE", f"{path}/{old['id']}")]
    assert new["id"] != old["id"]
    secret = _stored(secret_key)
    assert secret is not None and _ping_signed_with(dintero_emulator, 2, secret)


def test_secret_variable_names_where_the_secret_goes(
    dintero_emulator: Any, dintero_connection: str, secret_key: str
) -> None:
    from airflow.models.variable import Variable

    key = f"webhook_secret_{uuid.uuid4().hex[:8]}"
    try:
        _subscribe(dintero_emulator.merchant_ids[0], generate_secret=True, secret_variable=key)
        assert _stored(key) and _stored(secret_key) is None
    finally:
        Variable.delete(key)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"generate_secret": True, "secret": "given"}, "secret"),
        ({"secret_variable": "dintero_webhook_secret_x"}, "secret_variable"),
        ({"generate_secret": True, "secret_variable": "bad key!"}, "secret_variable"),
        ({"generate_secret": True, "secret_variable": ""}, "secret_variable"),
        ({"generate_secret": "yes"}, "generate_secret"),
    ],
    ids=["secret-and-generate", "variable-without-generate", "bad-variable-key", "empty-key", "flag-type"],
)
def test_bad_secret_options_are_refused_before_any_request(
    dintero_emulator: Any, dintero_connection: str, secret_key: str, overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(DinteroInputError, match=rf"^{field}:"):
        _subscribe(dintero_emulator.merchant_ids[0], **overrides)

    assert settle(dintero_emulator).requests == []
    assert _stored(secret_key) is None


def test_the_generated_secret_is_never_logged_returned_or_rendered(
    run_dag: Any, dintero_emulator: Any, dintero_connection: str, secret_key: str, caplog: Any, capsys: Any
) -> None:
    from airflow.providers.common.compat.sdk import DAG

    with DAG(
        dag_id=f"webhook_secret_{uuid.uuid4().hex[:8]}",
        schedule=None,
        start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    ) as dag:
        CreateWebhookSubscriptionOperator(
            task_id="subscribe", account_id=dintero_emulator.merchant_ids[0], url=URL, generate_secret=True
        )

    dagrun = run_dag(dag)

    secret = _stored(secret_key)
    assert secret is not None
    result = task_result(dagrun, "subscribe")
    assert result["config"]["secret"] == {"type": "HMAC-SHA1"}
    captured = capsys.readouterr()
    for text in (repr(result), rendered_fields(dagrun, "subscribe"), caplog.text, captured.out, captured.err):
        assert secret not in text


def test_a_secret_stored_by_a_concurrent_run_meanwhile_is_the_one_signed_with(
    dintero_emulator: Any, dintero_connection: str, secret_key: str
) -> None:
    import threading
    import time

    from airflow.models.variable import Variable

    merchant = dintero_emulator.merchant_ids[0]
    dintero_emulator.inject_fault(path_regex=r"/hooks/subscriptions$", method="POST", delay=1.5)
    other_run_secret = "stored-by-another-run-9d8c7b6a"

    def other_run() -> None:  # stores its own secret while this run's create is in flight
        deadline = time.monotonic() + 10
        while _stored(secret_key) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        Variable.set(secret_key, other_run_secret)

    racer = threading.Thread(target=other_run)
    racer.start()
    final = _subscribe(merchant, generate_secret=True)
    racer.join()

    subscriptions = [
        (r.method, r.path) for r in settle(dintero_emulator).requests if "/hooks/subscriptions" in r.path
    ]
    assert subscriptions.count(("POST", f"/v1/accounts/{merchant}/hooks/subscriptions")) == 2
    pings = [d for d in dintero_emulator.wait_for_deliveries(2) if d.subscription_id == final["id"]]
    assert [p.headers["event-signature"] for p in pings] == [hmac_sha1(pings[0].body, other_run_secret)]
