"""
Every example DAG, run end to end on the emulator and moto with DEBUG HTTP logging, leaks no
credential: not the partner's client secret (nor its Basic header), no access or exchange token,
no secret of a client the run created, no signed-URL signature, in task logs, stdout/stderr,
log files, XCom, rendered template fields or exception text.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AIRFLOW_V3, REPO
from tests.provisioning.helpers import settle as settled
from tests.reliability.conftest import STATS, first_trigger_event

LOGICAL_DATE = datetime(2026, 11, 24, tzinfo=timezone.utc)
EXAMPLE_DAGS = sorted(p.name for p in (REPO / "example_dags").glob("*.py") if not p.name.startswith("_"))


def _prepare_settlements(emu: Any, bucket: str) -> dict[str, Any]:
    good = emu.merchant_ids[:2]
    for mid in good:
        emu.add_settlement(mid, provider="payex", created_at=LOGICAL_DATE - timedelta(minutes=30))
    # the foreign merchant fails: its exception text is scanned too
    return {"merchant_ids": [*good, emu.foreign_merchant_id], "s3_bucket": bucket}


def _prepare_partner_settlements(emu: Any, bucket: str) -> dict[str, Any]:
    good, unreadable = emu.merchant_ids[:2], emu.merchant_ids[2]
    for mid in good:
        emu.add_settlement(mid, provider="payex", created_at=LOGICAL_DATE - timedelta(minutes=30))
    # every merchant of the partner in one sweep; one refused (403): skipped, its error logged and scanned
    emu.inject_fault(status=403, path_regex=rf"/accounts/{unreadable}/settlements$", count=1)
    return {"s3_bucket": bucket}


def _prepare_insight(emu: Any, bucket: str) -> dict[str, Any]:
    return {"merchant_id": emu.merchant_ids[0], "s3_bucket": bucket}


def _prepare_provisioning(emu: Any, bucket: str) -> dict[str, Any]:
    from tests.provisioning.helpers import delete_variable

    delete_variable(f"dintero_client_secret_{emu.merchant_ids[0]}")
    return {"merchant_id": emu.merchant_ids[0]}


def _prepare_rotation(emu: Any, bucket: str) -> dict[str, Any]:
    # one merchant to re-sign: the old and the new webhook secrets are both scanned for
    return {"webhook_url": "https://example.com/hooks/dintero", "merchant_ids": emu.merchant_ids[:1]}


#: How to run each example DAG; a new example without an entry fails the test (add it here).
RUNS: dict[str, Callable[[Any, str], dict[str, Any]]] = {
    "settlements_to_s3.py": _prepare_partner_settlements,
    "insight_reports_to_s3.py": _prepare_insight,
    "provision_merchant.py": _prepare_provisioning,
    "rotate_webhook_secret.py": _prepare_rotation,
    # a manual run (no asset events) copies the given merchants' window, the foreign one failing
    "settlements_on_event.py": _prepare_settlements,
}


#: Loggers that can print request lines or headers, at DEBUG level during the scans.
DEBUG_LOGGERS = ("urllib3", "httpx", "httpcore", "airflow_provider_dintero")


def _canaries(emu: Any) -> dict[str, str]:
    """Every credential that existed during the run, by a name that says what it is."""
    found: dict[str, str] = {"partner client secret": emu.partner_client_secret}
    basic = f"{emu.partner_client_id}:{emu.partner_client_secret}".encode()
    found["partner Basic credentials"] = base64.b64encode(basic).decode()
    for mid in [*emu.merchant_ids, emu.foreign_merchant_id]:
        found[f"seeded secret of {mid}"] = emu.merchant_credentials(mid)[1]
    for i, token in enumerate(emu.issued_tokens()):
        found[f"token #{i}"] = token
        found[f"token #{i} signature"] = token.rsplit(".", 1)[-1]
    for i, secret in enumerate(emu.issued_secrets()):
        found[f"client or webhook secret #{i}"] = secret
    for record in settled(emu).requests:
        for signature in record.query.get("signature", []):
            found[f"signed URL signature of {record.path}"] = signature
    return found


def _xcom_and_rendered(dag_id: str, run_id: str) -> str:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    if AIRFLOW_V3:
        from airflow.models.xcom import XComModel as XCom
    else:
        from airflow.models.xcom import XCom  # type: ignore[no-redef]

    with create_session() as session:
        xcoms = session.query(XCom).filter(XCom.dag_id == dag_id, XCom.run_id == run_id).all()
        rendered = (
            session.query(RenderedTaskInstanceFields)
            .filter(RenderedTaskInstanceFields.dag_id == dag_id, RenderedTaskInstanceFields.run_id == run_id)
            .all()
        )
        parts = [f"XCOM {x.task_id}[{x.map_index}] {x.key}: {x.value!s}" for x in xcoms]
        parts += [f"RENDERED {r.task_id}: {json.dumps(r.rendered_fields, default=str)}" for r in rendered]
    return "\n".join(parts)


def _log_files() -> str:
    root = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    if not root.exists():
        return ""
    return "\n".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("dag_file", EXAMPLE_DAGS)
def test_example_dag_leaks_no_credential(
    dag_file: str,
    emu: Any,
    s3_bucket: str,
    run_dag: Callable[..., Any],
    load_example_dag: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if dag_file == "settlements_on_event.py" and not AIRFLOW_V3:
        pytest.skip("asset watchers need Airflow 3: the file defines no DAG on 2.11")
    caplog.set_level(logging.INFO)
    for name in DEBUG_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    conf = RUNS[dag_file](emu, s3_bucket)
    dag = load_example_dag(dag_file)

    dag_run = run_dag(dag, conf=conf, logical_date=LOGICAL_DATE)

    captured = capsys.readouterr()
    tis = dag_run.get_task_instances()
    corpus = "\n".join(
        [
            caplog.text,
            captured.out,
            captured.err,
            _log_files(),
            _xcom_and_rendered(dag_run.dag_id, dag_run.run_id),
            *(str(getattr(ti, "exception", "") or "") for ti in tis),
        ]
    )
    canaries = _canaries(emu)
    assert len(emu.issued_tokens()) >= 2  # the run did authenticate: there was something to leak
    assert "GET /v1/accounts/" in corpus  # urllib3's DEBUG request lines were captured and scanned
    assert "XCOM " in corpus and "RENDERED " in corpus  # so were XCom values and rendered fields
    leaks = sorted(name for name, value in canaries.items() if value and value in corpus)
    STATS["canaries"] += len(leaks)
    assert leaks == []


def test_signed_urls_are_redacted_in_urllib3_debug_lines(
    emu: Any,
    s3_bucket: str,
    run_dag: Callable[..., Any],
    load_example_dag: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="urllib3")
    run_dag(load_example_dag("insight_reports_to_s3.py"), conf=_prepare_insight(emu, s3_bucket))

    signed_lines = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("urllib3") and "/_emulator/signed/" in r.getMessage()
    ]

    assert signed_lines, "the report downloads must appear in urllib3's request log"
    assert all("signature=<redacted>" in line for line in signed_lines), signed_lines


@pytest.mark.parametrize("merchant", ["with-settlements", "foreign"])
def test_the_trigger_leaks_no_merchant_token_in_logs_or_events(
    emu: Any, merchant: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:

    from airflow_provider_dintero.triggers.settlements import SettlementTrigger

    for name in DEBUG_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    mid = emu.merchant_ids[0] if merchant == "with-settlements" else emu.foreign_merchant_id
    if merchant == "with-settlements":
        emu.add_settlement(mid, provider="vipps", created_at=LOGICAL_DATE)
    emu.inject_fault(status=401, path_regex=r"/settlements$", count=1)  # a re-mint: more tokens to leak
    trigger = SettlementTrigger(account_id=mid, since="2026-11-24T00:00:00Z", poll_interval=0.01)

    event = first_trigger_event(trigger)

    captured = capsys.readouterr()
    corpus = "\n".join([caplog.text, captured.out, captured.err, json.dumps(event)])
    canaries = _canaries(emu)
    merchant_tokens = [name for name in canaries if name.startswith("token #")]
    assert len(merchant_tokens) >= 2  # at least the partner token and its signature
    if merchant == "with-settlements":  # httpx's request lines were captured and scanned
        assert "HTTP Request: GET" in corpus
    leaks = sorted(name for name, value in canaries.items() if value and value in corpus)
    STATS["canaries"] += len(leaks)
    assert leaks == []
