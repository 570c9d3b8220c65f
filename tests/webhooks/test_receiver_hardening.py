"""
The receiver as Dintero and an attacker see it, over real HTTP: the documented ping body, a
wake-up for any settlement_add shape, unlisted accounts refused without a secrets-backend call,
the previous secret inside its rotation window only, and one asset event per delivery id when two
processes record the same delivery at the same instant.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.webhooks.conftest import SECRET, airflow3_only, asset_event_extras, delivery, hmac_sha1, signed
from tests.webhooks.counting_backend import CountingSecretsBackend
from tests.webhooks.test_delivery import BARE_PING

pytestmark = [airflow3_only, pytest.mark.usefixtures("secret_variable", "consumer_dag")]


def _path(account_id: str) -> str:
    from airflow_provider_dintero.webhooks import receiver_path

    return receiver_path(account_id)


def test_dinteros_documented_ping_body_is_answered_200(post: Callable[..., Any], partner: str) -> None:
    body = json.dumps(BARE_PING).encode()
    headers = {
        "Content-Type": "application/json",
        "event": "ping",
        "event-delivery": str(uuid.uuid4()),
        "event-signature": hmac_sha1(body, SECRET),
    }

    response = post(_path(partner), body, headers)

    assert (response.status_code, response.json()) == (200, {"status": "pong"})
    assert asset_event_extras(partner) == []


UNRECOGNISED = [
    ("payout-key", {"payout": {"id": "s-1"}}),
    ("settlement-without-id", {"settlement": {"provider": "vipps"}}),
    ("no-payload", {}),
]


@pytest.mark.parametrize("payload", [u[1] for u in UNRECOGNISED], ids=[u[0] for u in UNRECOGNISED])
def test_a_signed_settlement_add_of_an_unknown_shape_records_a_wake_up(
    post: Callable[..., Any], partner: str, payload: dict[str, Any]
) -> None:
    envelope = {k: v for k, v in delivery(partner).items() if k != "settlement"} | payload
    body, headers = signed(envelope)

    response = post(_path(partner), body, headers)

    assert response.status_code == 202, response.text
    (extra,) = asset_event_extras(partner)
    assert (extra["settlement_ids"], extra["shape"], extra["event_delivery"]) == (
        [],
        "unrecognised",
        envelope["event_delivery"],
    )


@pytest.fixture
def counting_backend(monkeypatch: pytest.MonkeyPatch) -> CountingSecretsBackend:
    """A counting secrets backend in front of Airflow's own, as a configured Vault would be."""
    from airflow import configuration

    backend = CountingSecretsBackend()
    monkeypatch.setattr(
        configuration, "secrets_backend_list", [backend, *configuration.ensure_secrets_loaded()]
    )
    return backend


def test_a_listed_account_costs_one_secret_look_up(
    post: Callable[..., Any], partner: str, counting_backend: CountingSecretsBackend
) -> None:
    body, headers = signed(delivery(partner))

    assert post(_path(partner), body, headers).status_code == 202
    assert counting_backend.calls[f"variable:dintero_webhook_secret_{partner}"] == 1


def test_a_thousand_requests_for_unlisted_accounts_cost_no_look_up_and_one_line_per_account(
    post: Callable[..., Any],
    partner: str,
    counting_backend: CountingSecretsBackend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import httpx

    from airflow_provider_dintero.webhooks.receiver import REFUSAL_LOG

    REFUSAL_LOG.clear()
    unlisted = [f"{partner[0]}9990{i:04d}" for i in range(10)]
    body, headers = signed(delivery(partner))
    statuses: Counter[int] = Counter()
    with caplog.at_level("INFO"), httpx.Client(timeout=30) as client:
        base = _base(post)
        for i in range(1000):
            statuses[
                client.post(f"{base}{_path(unlisted[i % 10])}", content=body, headers=headers).status_code
            ] += 1

    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Refused a Dintero webhook")]
    assert statuses == Counter({404: 1000})
    assert sum(counting_backend.calls.values()) == 0
    assert sorted(line.split()[6] for line in lines) == sorted(unlisted)


def _base(post: Callable[..., Any]) -> str:
    return str(post.base_url)  # type: ignore[attr-defined]


@pytest.fixture
def rotated(airflow_db: None, partner: str) -> Iterator[Callable[[timedelta], None]]:
    """Rotate the partner's secret: a new current one, ``SECRET`` kept as the previous for ``window``."""
    from airflow.models.variable import Variable

    from airflow_provider_dintero.webhooks.assets import previous_secret_variable, webhook_secret_variable

    def rotate(window: timedelta) -> None:
        Variable.set(webhook_secret_variable(partner), "the-new-secret-after-rotation")
        expires = (datetime.now(timezone.utc) + window).isoformat()
        Variable.set(previous_secret_variable(partner), json.dumps({"secret": SECRET, "expires_at": expires}))

    yield rotate
    Variable.delete(previous_secret_variable(partner))


@pytest.mark.parametrize(
    ("window", "status"),
    [(timedelta(hours=1), 202), (timedelta(seconds=-1), 401)],
    ids=["inside-the-window", "after-the-window"],
)
def test_a_delivery_signed_with_the_previous_secret_is_accepted_only_inside_its_window(
    post: Callable[..., Any],
    partner: str,
    rotated: Callable[[timedelta], None],
    window: timedelta,
    status: int,
) -> None:
    rotated(window)
    body, headers = signed(delivery(partner))

    assert post(_path(partner), body, headers).status_code == status
    assert (
        post(_path(partner), *signed(delivery(partner), secret="the-new-secret-after-rotation")).status_code
        == 202
    )


def test_two_processes_recording_the_same_deliveries_at_the_same_instant_record_each_once(
    partner: str,
) -> None:
    import multiprocessing

    from tests.webhooks._replay_worker import record_many

    ids = [f"race-{uuid.uuid4()}" for _ in range(20)]
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=record_many, args=(partner, ids, barrier, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=300) for _ in range(2 * len(ids))]
    for worker in workers:
        worker.join(60)

    per_id: dict[str, list[str]] = {}
    for delivery_id, outcome in outcomes:
        per_id.setdefault(delivery_id, []).append(outcome)
    assert {d: sorted(o) for d, o in per_id.items()} == {d: ["accepted", "duplicate"] for d in ids}
    assert Counter(e["event_delivery"] for e in asset_event_extras(partner)) == Counter({d: 1 for d in ids})
