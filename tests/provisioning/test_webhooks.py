"""CreateWebhookSubscriptionOperator: idempotency, event and URL checks, secret handling."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from airflow_provider_dintero.exceptions import DinteroInputError
from airflow_provider_dintero.operators.webhooks import CreateWebhookSubscriptionOperator
from tests.provisioning.helpers import clear_log, rendered_fields, settle, task_result, writes

URL = "https://example.com/hooks/dintero"


def test_subscribes_to_settlement_add_by_default(dintero_emulator: Any, dintero_connection: str) -> None:
    merchant = dintero_emulator.merchant_ids[0]

    subscription = CreateWebhookSubscriptionOperator(task_id="hook", account_id=merchant, url=URL).execute({})

    assert subscription["events"] == ["settlement_add"]
    assert subscription["config"]["url"] == URL
    assert subscription["active"] is True
    assert writes(dintero_emulator) == [("POST", f"/v1/accounts/{merchant}/hooks/subscriptions")]


@pytest.mark.parametrize(
    ("second_events", "creates"),
    [(["settlement_add"], False), (["settlement_add", "account_update"], True)],
    ids=["same-url-and-events-reused", "other-events-created"],
)
def test_second_run_reuses_only_the_same_url_and_event_set(
    dintero_emulator: Any, dintero_connection: str, second_events: list[str], creates: bool
) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    first = CreateWebhookSubscriptionOperator(task_id="hook", account_id=merchant, url=URL).execute({})
    clear_log(dintero_emulator)

    second = CreateWebhookSubscriptionOperator(
        task_id="hook", account_id=merchant, url=URL, events=second_events
    ).execute({})

    assert bool(writes(dintero_emulator)) is creates
    assert (second["id"] == first["id"]) is not creates


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"events": ["Settlement-Created"]}, "events"),
        ({"events": []}, "events"),
        ({"events": None}, "events"),
        ({"url": "http://example.com/hooks"}, "url"),
        ({"url": "ftp://example.com/hooks"}, "url"),
        ({"url": ""}, "url"),
        ({"account_id": ""}, "account_id"),
        ({"account_id": "P123"}, "account_id"),
        ({"secret": ""}, "secret"),
        ({"active": "yes"}, "active"),
    ],
    ids=[
        "malformed-event",
        "no-events",
        "events-none",
        "plain-http",
        "ftp",
        "empty-url",
        "empty-account",
        "bad-account",
        "empty-secret",
        "active-type",
    ],
)
def test_bad_input_is_refused_before_any_request(
    dintero_emulator: Any, dintero_connection: str, overrides: dict[str, Any], field: str
) -> None:
    kwargs: dict[str, Any] = {"account_id": dintero_emulator.merchant_ids[0], "url": URL}
    kwargs.update(overrides)

    with pytest.raises(DinteroInputError, match=rf"^{field}:"):
        CreateWebhookSubscriptionOperator(task_id="hook", **kwargs).execute({})
    assert settle(dintero_emulator).requests == []


@pytest.mark.parametrize("event", ["payout_transfer", "checkout_capture", "settlement_update", "v2_event"])
def test_any_event_of_the_documented_shape_is_subscribed_an_unknown_one_with_a_warning(
    dintero_emulator: Any, dintero_connection: str, event: str, caplog: pytest.LogCaptureFixture
) -> None:
    subscription = CreateWebhookSubscriptionOperator(
        task_id="hook", account_id=dintero_emulator.merchant_ids[0], url=URL, events=["settlement_add", event]
    ).execute({})

    assert subscription["events"] == ["settlement_add", event]
    warnings = [
        r.getMessage() for r in caplog.records if r.levelname == "WARNING" and event in r.getMessage()
    ]
    assert len(warnings) == 1 and "settlement_add" in warnings[0]  # names the known ones


def test_a_known_event_logs_no_warning(
    dintero_emulator: Any, dintero_connection: str, caplog: pytest.LogCaptureFixture
) -> None:
    CreateWebhookSubscriptionOperator(
        task_id="hook", account_id=dintero_emulator.merchant_ids[0], url=URL, events=["account_update"]
    ).execute({})

    assert not [r for r in caplog.records if r.levelname == "WARNING" and "Webhook event" in r.getMessage()]


def test_malformed_event_error_names_it(dintero_emulator: Any, dintero_connection: str) -> None:
    with pytest.raises(DinteroInputError, match="not: settlement created") as info:
        CreateWebhookSubscriptionOperator(
            task_id="hook",
            account_id=dintero_emulator.merchant_ids[0],
            url=URL,
            events=["settlement created"],
        ).execute({})
    assert info.value.field == "events"


def test_plain_http_to_loopback_is_allowed(dintero_emulator: Any, dintero_connection: str) -> None:
    subscription = CreateWebhookSubscriptionOperator(
        task_id="hook", account_id=dintero_emulator.merchant_ids[0], url="http://127.0.0.1:9/hooks"
    ).execute({})

    assert subscription["config"]["url"] == "http://127.0.0.1:9/hooks"


def test_signing_secret_is_sent_but_never_returned_logged_or_rendered(
    run_tasks: Any, dintero_emulator: Any, dintero_connection: str, caplog: Any, capsys: Any
) -> None:
    secret = "whsec-4f1d2c9a8b7e6d5c"
    merchant = dintero_emulator.merchant_ids[0]
    receiver = "http://127.0.0.1:9/hooks"  # loopback: the emulator signs and attempts the ping

    dagrun = run_tasks(
        lambda: CreateWebhookSubscriptionOperator(
            task_id="hook", account_id=merchant, url=receiver, secret="{{ dag_run.conf['secret'] }}"
        ),
        conf={"secret": secret},
    )

    result = task_result(dagrun, "hook")
    assert result["config"]["secret"] == {"type": "HMAC-SHA1"}
    ping = dintero_emulator.wait_for_deliveries(1)[0]
    expected = hmac.new(secret.encode(), ping.body, hashlib.sha1).hexdigest()
    assert ping.headers["event-signature"] == expected, "Dintero should sign with the given secret"
    captured = capsys.readouterr()
    for place, text in {
        "caplog": caplog.text,
        "stdout": captured.out,
        "stderr": captured.err,
        "xcom": json.dumps(result),
        "rendered fields": rendered_fields(dagrun, "hook"),
    }.items():
        assert secret not in text, f"the webhook secret leaked into {place}"


def test_merchant_connection_subscribes_itself(
    dintero_emulator: Any, merchant_connection: tuple[str, str]
) -> None:
    conn_id, merchant = merchant_connection

    CreateWebhookSubscriptionOperator(
        task_id="hook", account_id=merchant, url=URL, dintero_conn_id=conn_id
    ).execute({})

    assert writes(dintero_emulator) == [("POST", f"/v1/accounts/{merchant}/hooks/subscriptions")]
    assert settle(dintero_emulator).count(path_regex="exchange_token") == 0
