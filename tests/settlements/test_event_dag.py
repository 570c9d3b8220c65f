"""
The event-driven example DAG (``example_dags/settlements_on_event.py``): a run that consumed the
watcher's asset events maps the copy over the accounts they name and copies exactly the named
settlements (a dag.test() run whose DagRun carries real asset events in the metadata DB).
"""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_dintero.events import event_account_batches, event_accounts, poll_extra
from airflow_provider_dintero.triggers.settlement_events import EVENT_TRIGGERS, WATERMARK_STORE

WATCHERS = EVENT_TRIGGERS and WATERMARK_STORE

REPO_DAG = "settlements_on_event.py"


def _watcher_extra(emu: Any, account_id: str, *settlements: dict[str, Any]) -> dict[str, Any]:
    """What the triggerer stores for one watcher event: the trigger's payload under ``payload``."""
    return {"from_trigger": True, "payload": poll_extra(account_id, list(settlements))}


@pytest.mark.skipif(not WATCHERS, reason="the settlement watcher needs Airflow 3.3")
def test_event_run_copies_exactly_the_named_settlements(
    emu: Any,
    s3_bucket: str,
    s3_client: Any,
    run_dag: Any,
    load_example_dag: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import airflow.models.dagrun as dagrun_module
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from sqlalchemy import select

    monkeypatch.setenv("DINTERO_PARTNER_ID", emu.partner_id)
    monkeypatch.setenv("DINTERO_DEMO_BUCKET", s3_bucket)
    dag = load_example_dag(REPO_DAG)
    m1, m2, m3 = emu.merchant_ids[:3]
    a = emu.add_settlement(m1, provider="vipps", created_at="2027-07-01T00:00:00Z")
    b = emu.add_settlement(m1, provider="klarna", created_at="2027-07-01T00:00:00Z")
    c = emu.add_settlement(m2, provider="walley", created_at="2027-07-01T00:00:00Z")
    unnamed = emu.add_settlement(m3, provider="vipps", created_at="2027-07-01T00:00:00Z")
    extras = [
        _watcher_extra(emu, m1, a),
        _watcher_extra(emu, m2, c),
        _watcher_extra(emu, m1, b, a),  # a second batch naming one again: copied once
        {"account_id": m1, "written": 3},  # another producer's event: ignored
    ]
    real = dagrun_module.get_or_create_dagrun

    def with_events(*args: Any, **kwargs: Any) -> Any:
        run = real(*args, **kwargs)
        session = kwargs["session"]
        model = session.scalar(
            select(AssetModel).where(AssetModel.name == f"dintero_settlements_{emu.partner_id}")
        )
        for extra in extras:
            event = asset_manager.register_asset_change(asset=model, extra=extra, session=session)
            run.consumed_asset_events.append(event)
        session.flush()
        return run

    monkeypatch.setattr(dagrun_module, "get_or_create_dagrun", with_events)

    run = run_dag(dag)

    assert "success" in str(run.state).lower()
    copies = [ti for ti in run.get_task_instances() if ti.task_id == "copy_to_s3"]
    assert [ti.map_index for ti in copies] == [0]  # one batch of the two named accounts
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    named = {a["id"], b["id"], c["id"]}
    assert {sid for sid in named if any(sid in k for k in keys)} == named
    assert not any(unnamed["id"] in k for k in keys)
    assert not any(m3 in k for k in keys)


def test_event_accounts_reads_watcher_and_webhook_extras() -> None:
    class Event:
        def __init__(self, extra: Any) -> None:
            self.extra = extra

    events = {
        "asset": [
            Event({"from_trigger": True, "payload": {"account_id": "T11200002", "settlement_ids": ["s1"]}}),
            Event({"account_id": "T11200001", "settlement_ids": ["s2"], "source": "webhook"}),
            Event({"account_id": "T11200002", "settlement_ids": ["s3"]}),
            Event({"account_id": "../etc", "settlement_ids": ["s4"]}),
            Event({"from_trigger": True, "payload": {"status": "other"}}),
            Event(None),
        ]
    }

    assert event_accounts(events) == ["T11200002", "T11200001"]
    assert event_accounts(None) == []


def test_example_dag_module_parses_on_this_line() -> None:
    from tests.conftest import REPO

    path = REPO / "example_dags" / REPO_DAG
    spec = importlib.util.spec_from_file_location("settlements_on_event_parse", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    from airflow.providers.common.compat.sdk import DAG

    dags = [v for v in vars(module).values() if isinstance(v, DAG)]
    assert [d.dag_id for d in dags] == (["dintero_settlements_on_event"] if WATCHERS else [])


@pytest.mark.parametrize(
    ("accounts", "size", "batches"),
    [(0, 100, 0), (1, 100, 1), (100, 100, 1), (101, 100, 2), (10_000, 100, 100)],
)
def test_event_account_batches_stay_under_max_map_length(accounts: int, size: int, batches: int) -> None:
    events = [
        SimpleNamespace(extra={"account_id": f"T{11200001 + i}", "settlement_ids": ["s"]})
        for i in range(accounts)
    ]

    found = event_account_batches(events, size)

    assert len(found) == batches
    assert [a for batch in found for a in batch] == event_accounts(events)
    assert all(len(batch) <= size for batch in found)


def test_event_selection_batches_carry_each_accounts_ids_and_wake_up() -> None:
    from airflow_provider_dintero.events import event_selection_batches

    a, b, c = "T11200001", "T11200002", "T11200003"
    events = [
        SimpleNamespace(extra={"account_id": a, "settlement_ids": ["s1"]}),
        SimpleNamespace(extra={"account_id": b, "settlement_ids": []}),  # a wake-up
        SimpleNamespace(extra={"account_id": a, "settlement_ids": ["s2", "s1"]}),
        SimpleNamespace(extra={"account_id": c, "settlement_ids": ["s3"]}),
        SimpleNamespace(extra={"note": "not a settlement event"}),
    ]

    batches = event_selection_batches(events, size=2)

    assert batches == [
        {
            a: {"settlement_ids": ["s1", "s2"], "wake_up": False},
            b: {"settlement_ids": [], "wake_up": True},
        },
        {c: {"settlement_ids": ["s3"], "wake_up": False}},
    ]


@pytest.mark.parametrize(
    ("consumers", "consumed"),
    [
        ([], False),  # recorded while its run was being queued: this run acts on it
        (["dintero_settlements_on_event"], True),  # a later run of this DAG acts on it
        (["another_dag"], False),
    ],
)
def test_a_late_event_a_later_run_consumed_is_left_to_that_run(consumers: list[str], consumed: bool) -> None:
    from airflow_provider_dintero.events import _consumed_by

    event = SimpleNamespace(created_dagruns=[SimpleNamespace(dag_id=d) for d in consumers])

    assert _consumed_by(event, "dintero_settlements_on_event") is consumed
