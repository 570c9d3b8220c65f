"""
Event-driven settlements in the live deployment: settlements added to the emulator reach S3
through the polling watcher of ``example_dags/settlements_on_event.py`` and through Dintero's
``settlement_add`` webhook, delivered by the emulator to the receiver in the api-server; a
triggerer restart between two settlements neither loses nor repeats one; forged, replayed,
unsigned and oversized deliveries are refused and record no asset event.

Timings are written to ``build/system-artifacts/settlement-events.json``, never asserted (the
benchmark, ``bench/settlement_watcher.py``, measures them for the README).
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
from dataclasses import asdict, dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest

from .conftest import task_instances
from .deployment import ARTIFACTS, BUCKET, Deployment, emulator_canaries, leaks, wait_until

WATCH_DAG = "dintero_settlements_on_event"
PROVISION_DAG = "dintero_provision_merchant"
#: The example's default poll interval (seconds): the target is files in S3 within 60 s.
POLL_INTERVAL = 30.0
TWO_MB = 2 * 1024 * 1024


@dataclass
class Arrival:
    """One settlement added to the emulator and when its manifest was in S3 (epoch seconds)."""

    settlement_id: str
    account_id: str
    added: float
    landed: float

    @property
    def seconds(self) -> float:
        """From the addition to the settlement's files in S3."""
        return round(self.landed - self.added, 1)


def _unfinished(deployment: Deployment, dag_id: str) -> list[str]:
    runs = deployment.api(f"/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]
    return [r["dag_run_id"] for r in runs if r["state"] in ("queued", "running")]


def _quiet_others(deployment: Deployment) -> None:
    """Pause every other example DAG and let their runs finish: only the watcher copies now."""
    others = [d["dag_id"] for d in deployment.api("/dags")["dags"] if d["dag_id"] != WATCH_DAG]
    for dag_id in others:
        if dag_id != PROVISION_DAG:
            deployment.api(f"/dags/{dag_id}", "PATCH", {"is_paused": True})
    wait_until(
        lambda: not any(_unfinished(deployment, d) for d in others), 300, "the other runs to finish", 2
    )


def _watching(deployment: Deployment) -> int:
    return deployment.output("triggerer").count("Watching Dintero settlements")


def _start_watcher(deployment: Deployment) -> None:
    """
    Have the DAG file parsed again now that the DAG is unpaused: Airflow registers an asset
    watcher only for a DAG that is unpaused when its file is parsed.
    """
    before = _watching(deployment)
    token = deployment.api(f"/dags/{WATCH_DAG}")["file_token"]
    deployment.api(f"/parseDagFile/{token}", "PUT")
    wait_until(lambda: _watching(deployment) > before, 240, "the settlement watcher to start", 1)


def _add(emulator: Any, account_id: str, provider: str) -> tuple[str, float]:
    added = time.time()
    return str(emulator.add_settlement(account_id, provider=provider)["id"]), added


def _landed(deployment: Deployment, account_id: str, settlement: tuple[str, float]) -> Arrival:
    sid, added = settlement
    wait_until(
        lambda: deployment.manifest_in_s3(account_id, sid), 300, f"settlement {sid}'s files in S3", 0.5
    )
    return Arrival(sid, account_id, added, time.time())


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def _signed(body: bytes, secret: str, event_delivery: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "event": "settlement_add",
        "event-delivery": event_delivery,
        "event-signature": hmac.new(secret.encode(), body, hashlib.sha1).hexdigest(),
    }


def _delivery(account_id: str, settlement_id: str, padding: int = 0) -> tuple[bytes, str]:
    delivery_id = str(uuid.uuid4())
    body = {
        "account_id": account_id,
        "event": "settlement_add",
        "event_delivery": delivery_id,
        "settlement": {"id": settlement_id, "provider": "vipps", "note": "x" * padding},
    }
    return json.dumps(body).encode(), delivery_id


def _refusals(url: str, secret: str, real: Any, account_id: str, settlement_id: str) -> dict[str, Any]:
    """Send what the receiver must refuse; return each case's status and answer."""
    forged, forged_id = _delivery(account_id, settlement_id)
    unsigned, unsigned_id = _delivery(account_id, settlement_id)
    large, large_id = _delivery(account_id, settlement_id, padding=TWO_MB)
    cases = {
        "forged signature": (forged, _signed(forged, "not-" + secret, forged_id)),
        "unsigned": (unsigned, _signed(unsigned, secret, unsigned_id)),
        "replayed delivery": (real.body, dict(real.headers)),
        "2 MB body": (large, _signed(large, secret, large_id)),
    }
    del cases["unsigned"][1]["event-signature"]
    return {name: _post(url, body, headers) for name, (body, headers) in cases.items()}


def _asset_events(deployment: Deployment, partner: str) -> list[dict[str, Any]]:
    from airflow_provider_dintero.webhooks import settlement_events_asset

    name = settlement_events_asset(partner).name
    found = deployment.api(f"/assets/events?name_pattern={name}&limit=1000&order_by=timestamp")
    return [e for e in found["asset_events"] if e.get("name") == name]


def _webhook_events(deployment: Deployment, partner: str) -> int:
    events = _asset_events(deployment, partner)
    return sum(1 for e in events if _settlement_part(e).get("source") == "webhook")


def _settlement_part(event: dict[str, Any]) -> dict[str, Any]:
    """The settlement fields of an event's extra, read as the consumer reads them."""
    from airflow_provider_dintero.events import raw_extra

    return dict(raw_extra(SimpleNamespace(extra=event.get("extra"))) or {})


def _batch_lines(deployment: Deployment) -> dict[str, dict[str, Any]]:
    """Per run of the watched DAG: its copies' line for each merchant (status, ids, counts)."""
    runs = deployment.api(f"/dags/{WATCH_DAG}/dagRuns?limit=100")["dag_runs"]
    lines: dict[str, dict[str, Any]] = {}
    for run in runs:
        run_id = run["dag_run_id"]
        for ti in task_instances(deployment, WATCH_DAG, run_id, "copy_to_s3"):
            if ti["state"] == "success":
                value = deployment.xcom(WATCH_DAG, run_id, "copy_to_s3", ti["map_index"])
                lines.setdefault(run_id, {}).update(value["merchants"])
    return lines


def _copies(deployment: Deployment) -> Counter[str]:
    """Every settlement object in S3 and how many versions of it were written (one: written once)."""
    pages = (
        deployment.s3()
        .get_paginator("list_object_versions")
        .paginate(Bucket=BUCKET, Prefix="dintero/settlements/")
    )
    return Counter(v["Key"] for page in pages for v in page.get("Versions", []))


@pytest.fixture(scope="module")
def scenario(deployment: Deployment, emulator: Any, example_runs: dict[str, Any]) -> dict[str, Any]:
    """
    The whole story, once: the watcher finds a settlement; the triggerer restarts while a
    second one is added; a merchant provisioned with a signed webhook to the receiver gets a
    third, delivered by the emulator; refused deliveries are sent; then one more poll interval
    passes so that any repeat would show. Returns what happened, for the tests to check.
    """
    partner = emulator.partner_id
    m1, m2 = emulator.merchant_ids[:2]
    receiver = f"{deployment.api_url}/dintero-webhooks/{partner}"
    _quiet_others(deployment)
    provision = deployment.api(
        f"/dags/{PROVISION_DAG}/dagRuns",
        "POST",
        {"logical_date": None, "conf": {"merchant_id": m2, "webhook_url": receiver}},
    )["dag_run_id"]
    _start_watcher(deployment)

    watched = _landed(deployment, m1, _add(emulator, m1, "vipps"))

    during_restart: list[tuple[str, float]] = []
    deployment.restart("triggerer", while_down=lambda: during_restart.append(_add(emulator, m1, "walley")))
    restarted = _landed(deployment, m1, during_restart[0])

    def provisioned() -> str:
        return str(deployment.api(f"/dags/{PROVISION_DAG}/dagRuns/{provision}")["state"])

    wait_until(lambda: provisioned() in ("success", "failed"), 180, "the provisioning run", 2)
    delivered_before = len(emulator.deliveries)
    webhooked = _landed(deployment, m2, _add(emulator, m2, "klarna"))
    deliveries = [
        d for d in emulator.deliveries[delivered_before:] if webhooked.settlement_id.encode() in d.body
    ]

    secret = deployment.airflow("variables", "get", f"dintero_webhook_secret_{partner}", keep=False)
    secret = secret.stdout.strip()
    before = _webhook_events(deployment, partner)
    refused = _refusals(receiver, secret, deliveries[0], m2, webhooked.settlement_id) if deliveries else {}
    recorded_by_refusals = _webhook_events(deployment, partner) - before

    quiet_until = max(a.added for a in (watched, restarted, webhooked)) + POLL_INTERVAL + 15
    time.sleep(max(0.0, quiet_until - time.time()))
    wait_until(lambda: not _unfinished(deployment, WATCH_DAG), 300, "the watched DAG's runs to finish", 2)

    result = {
        "provisioning": provisioned(),
        "watched": watched,
        "restarted": restarted,
        "webhooked": webhooked,
        "deliveries": deliveries,
        "refused": refused,
        "recorded_by_refusals": recorded_by_refusals,
        "events": _asset_events(deployment, partner),
        "copies": _copies(deployment),
        "lines": _batch_lines(deployment),
        "secret": secret,
    }
    arrivals = ("watched", "restarted", "webhooked")
    timings = {name: asdict(result[name]) | {"seconds": result[name].seconds} for name in arrivals}
    (ARTIFACTS / "settlement-events.json").write_text(json.dumps(timings, indent=2))
    return result


def _events_naming(scenario: dict[str, Any], settlement_id: str, source: str) -> list[dict[str, Any]]:
    return [
        e
        for e in scenario["events"]
        if _settlement_part(e).get("source") == source
        and settlement_id in (_settlement_part(e).get("settlement_ids") or [])
    ]


def _writes(scenario: dict[str, Any], settlement_id: str) -> Counter[str]:
    return Counter({k: n for k, n in scenario["copies"].items() if f"/{settlement_id}/" in k})


@pytest.mark.parametrize("arrival", ["watched", "restarted", "webhooked"])
def test_each_settlement_files_are_written_once(scenario: dict[str, Any], arrival: str) -> None:
    settlement = scenario[arrival]
    writes = _writes(scenario, settlement.settlement_id)

    assert any(uri.endswith("/manifest.json") for uri in writes)
    assert len(writes) >= 2  # the attachments, then the manifest
    assert set(writes.values()) == {1}, writes


@pytest.mark.parametrize("arrival", ["watched", "restarted", "webhooked"])
def test_the_watcher_reports_each_settlement_exactly_once(scenario: dict[str, Any], arrival: str) -> None:
    settlement = scenario[arrival]

    events = _events_naming(scenario, settlement.settlement_id, "poll")

    assert len(events) == 1, [e["id"] for e in events]
    assert _settlement_part(events[0])["account_id"] == settlement.account_id


def test_the_settlement_added_while_the_triggerer_was_down_is_found_after_the_restart(
    scenario: dict[str, Any], deployment: Deployment
) -> None:
    restarted = scenario["restarted"]
    (event,) = _events_naming(scenario, restarted.settlement_id, "poll")

    assert deployment.output("triggerer").count("Watching Dintero settlements") >= 2
    assert datetime.fromisoformat(event["timestamp"]).timestamp() > restarted.added


def test_the_webhook_delivery_is_accepted_and_wakes_the_dag(scenario: dict[str, Any]) -> None:
    webhooked = scenario["webhooked"]
    (delivery,) = scenario["deliveries"]
    (event,) = _events_naming(scenario, webhooked.settlement_id, "webhook")
    woken = {run["run_id"] for run in event["created_dagruns"]}
    writers = {
        run
        for run, lines in scenario["lines"].items()
        if (line := lines.get(webhooked.account_id))
        and webhooked.settlement_id in line.get("settlement_ids", [])
        and line["written"]
    }

    assert scenario["provisioning"] == "success"
    assert delivery.status == 202
    assert _settlement_part(event)["event_delivery"] == delivery.headers["event-delivery"]
    assert writers and writers <= woken, (writers, woken)  # the copy ran in a run the webhook woke


@pytest.mark.parametrize(
    ("case", "status", "outcome"),
    [
        ("forged signature", 401, "refused"),
        ("unsigned", 401, "refused"),
        ("replayed delivery", 200, "duplicate"),
        ("2 MB body", 413, "refused"),
    ],
)
def test_a_bad_delivery_is_refused(scenario: dict[str, Any], case: str, status: int, outcome: str) -> None:
    answered, body = scenario["refused"][case]

    assert (answered, body.get("status")) == (status, outcome)


def test_refused_deliveries_record_no_asset_event(scenario: dict[str, Any]) -> None:
    assert len(scenario["refused"]) == 4
    assert scenario["recorded_by_refusals"] == 0


def test_no_webhook_secret_token_or_signature_in_any_log(
    scenario: dict[str, Any], deployment: Deployment, emulator: Any
) -> None:
    canaries = emulator_canaries(emulator) | {"webhook signing secret": {scenario["secret"]}}

    assert len(scenario["secret"]) >= 20
    assert leaks(deployment, canaries) == []


# ------------------------------------------------ an event that arrives while its run is queued


@pytest.fixture(scope="module")
def queued_twice(deployment: Deployment, emulator: Any, scenario: dict[str, Any]) -> dict[str, Any]:
    """
    Two settlement events recorded while the scheduler is down (the watcher's triggerer too, so
    that only these events name the two settlements): the first queues a run of the watched DAG,
    the second finds it queued. Airflow then gives the run only the first (those stamped up to
    its queue entry) and the second to no run: only ``run_events`` copies it.
    """
    from airflow_provider_dintero.events import poll_extra
    from airflow_provider_dintero.webhooks import settlement_events_asset

    m1, m2 = emulator.merchant_ids[:2]
    name = settlement_events_asset(emulator.partner_id).name
    (asset,) = [a for a in deployment.api(f"/assets?name_pattern={name}")["assets"] if a["name"] == name]
    deployment.stop("triggerer", "scheduler")
    listed = deployment.api(f"/dags/{WATCH_DAG}/dagRuns?limit=100")["dag_runs"]
    runs_before = {r["dag_run_id"] for r in listed}
    added = []
    for merchant in (m1, m2):
        settlement = emulator.add_settlement(merchant, provider="vipps")
        added.append((merchant, str(settlement["id"])))
        extra = poll_extra(merchant, [settlement])
        deployment.api("/assets/events", "POST", {"asset_id": asset["id"], "extra": extra})
        time.sleep(1)
    deployment.start_process("scheduler")

    def new_runs() -> list[dict[str, Any]]:
        runs = deployment.api(f"/dags/{WATCH_DAG}/dagRuns?limit=100")["dag_runs"]
        return [r for r in runs if r["dag_run_id"] not in runs_before]

    wait_until(lambda: new_runs() and not _unfinished(deployment, WATCH_DAG), 300, "the queued run", 2)
    # the second settlement in S3, or 60 s more: its absence is the test's failure
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(deployment.manifest_in_s3(m, s) for m, s in added):
        time.sleep(2)
    landed = {sid: deployment.manifest_in_s3(m, sid) for m, sid in added}
    runs = new_runs()
    deployment.start_process("triggerer")
    return {"added": added, "landed": landed, "runs": runs}


def test_an_event_recorded_while_its_run_was_queued_is_copied(queued_twice: dict[str, Any]) -> None:
    assert queued_twice["landed"] == {sid: True for _, sid in queued_twice["added"]}
    assert len(queued_twice["runs"]) == 1  # one run did both: the second event queued none
