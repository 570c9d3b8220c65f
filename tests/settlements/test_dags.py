"""DAG runs: the sensor in poke and deferrable modes, and the example DAG end to end."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_dintero.sensors.settlements import SettlementSensor
from airflow_provider_dintero.triggers.settlements import SettlementTrigger

from ..conftest import AIRFLOW_V3
from .conftest import LIST_PATH, settled_count

LOGICAL_DATE = datetime(2026, 11, 24, tzinfo=timezone.utc)


def _ti(dag_run: Any, task_id: str, map_index: int = -1) -> Any:
    return next(t for t in dag_run.get_task_instances() if t.task_id == task_id and t.map_index == map_index)


@pytest.fixture
def add_when_polled(emu: Any) -> Iterator[Callable[..., dict[str, Any]]]:
    """Add a settlement from a thread once the account's settlements were listed ``polls`` times."""
    threads: list[threading.Thread] = []

    def start(account_id: str, created_at: datetime, polls: int) -> dict[str, Any]:
        added: dict[str, Any] = {}

        def run() -> None:
            deadline = time.monotonic() + 60
            while emu.count("GET", LIST_PATH) < polls and time.monotonic() < deadline:
                time.sleep(0.02)
            added.update(emu.add_settlement(account_id, provider="vipps", created_at=created_at))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return added

    yield start
    for thread in threads:
        thread.join(timeout=5)


@pytest.mark.parametrize(
    ("mode", "deferrable"),
    [("poke", False), ("reschedule", False), ("poke", True)],
    ids=["poke", "reschedule", "deferrable"],
)
def test_sensor_picks_up_a_settlement_added_while_waiting(
    emu: Any,
    run_dag: Callable[..., Any],
    add_when_polled: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    deferrable: bool,
) -> None:
    from airflow.providers.common.compat.sdk import DAG

    trigger_polls: list[str] = []
    original_poll = SettlementTrigger._poll

    async def counting_poll(self: SettlementTrigger, hook: Any) -> Any:
        trigger_polls.append(self.since)
        return await original_poll(self, hook)

    monkeypatch.setattr(SettlementTrigger, "_poll", counting_poll)

    mid = emu.merchant_ids[0]
    since = datetime(2027, 1, 1, tzinfo=timezone.utc)
    with DAG(
        dag_id=f"test_settlement_sensor_{'deferrable' if deferrable else mode}",
        schedule=None,
        start_date=datetime(2026, 11, 1, tzinfo=timezone.utc),
        catchup=False,
    ) as dag:
        SettlementSensor(
            task_id="wait",
            account_id=mid,
            since=since.isoformat(),
            deferrable=deferrable,
            mode=mode,
            poll_interval=0.2,
            timeout=120,
        )
    # Wait for two empty checks: the first check (both modes) and a second one, which in
    # deferrable mode can only come from the trigger, since the task checks once then defers.
    added = add_when_polled(mid, since + timedelta(hours=2), polls=2)

    dag_run = run_dag(dag, logical_date=LOGICAL_DATE)

    ti = _ti(dag_run, "wait")
    assert ti.state == "success"
    value = ti.xcom_pull(task_ids="wait")
    assert value["settlement_ids"] == [added["id"]]
    polls = settled_count(emu, len(trigger_polls) + 1 if deferrable else 3, "GET", LIST_PATH)
    assert polls >= 3
    if deferrable:  # one check in the task, every later poll in the trigger
        assert len(trigger_polls) == polls - 1
        assert trigger_polls[0] == since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    else:
        assert trigger_polls == []


def test_example_dag_parses(load_example_dag: Callable[..., Any]) -> None:
    dag = load_example_dag("settlements_to_s3.py")

    assert dag.dag_id == "dintero_settlements_to_s3"
    assert set(dag.task_ids) == {
        "list_merchants",
        "wait_for_settlements",
        "copy_to_s3",
        "report",
        "all_collected",
    }
    wait = dag.get_task("wait_for_settlements")
    assert wait.all_merchants is True  # one sensor for every merchant of the partner
    assert not hasattr(wait, "expand_input")  # not mapped: one task, one trigger
    assert hasattr(dag.get_task("copy_to_s3"), "expand_input")  # mapped over the merchants found
    assert dag.get_task("report").trigger_rule == "all_done"
    assert not dag.catchup


def test_example_dag_never_queues_a_manual_run_behind_a_long_wait(
    load_example_dag: Callable[..., Any],
) -> None:
    dag = load_example_dag("settlements_to_s3.py")
    wait = dag.get_task("wait_for_settlements")

    assert dag.max_active_runs > 1  # copies are idempotent: runs may overlap
    assert wait.deferrable is True  # waits in the triggerer, holding no worker slot
    assert wait.poll_interval <= 60  # a new settlement is picked up within minutes
    assert wait.poke_interval <= 60
    assert wait.timeout <= 3600


def _example_dag(
    load_example_dag: Callable[..., Any],
    poke_interval: float = 0.2,
    timeout: float = 60,
    deferrable: bool = True,
) -> Any:
    """The settlements example with a short poll interval and wait, and copies not retried."""
    dag = load_example_dag("settlements_to_s3.py")
    wait = dag.get_task("wait_for_settlements")
    wait.deferrable = deferrable
    wait.poke_interval = wait.poll_interval = poke_interval
    wait.timeout = timeout
    dag.get_task("copy_to_s3").retries = 0  # a failing copy fails now, not after minutes of retries
    return dag


def _copied(added: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": "copied",
        "settlement_ids": [added["id"]],
        "settlements": 1,
        "written": len(added["attachments"]) + 1,
        "skipped": 0,
    }


NOTHING_NEW = {"status": "nothing new"}


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "reschedule"])
def test_example_dag_copies_the_merchants_with_something_new_and_reports_the_others_nothing_new(
    emu: Any,
    s3_bucket: str,
    s3_client: Any,
    run_dag: Callable[..., Any],
    load_example_dag: Callable[..., Any],
    deferrable: bool,
) -> None:
    busy, *quiet = emu.merchant_ids
    created = LOGICAL_DATE - timedelta(minutes=30)  # inside the run's window on 3.x and 2.11
    added = emu.add_settlement(busy, provider="payex", created_at=created)

    dag_run = run_dag(
        _example_dag(load_example_dag, deferrable=deferrable),
        conf={"s3_bucket": s3_bucket},  # no merchant_ids: every merchant
        logical_date=LOGICAL_DATE,
    )

    assert dag_run.state == "success"
    found = _ti(dag_run, "wait_for_settlements").xcom_pull(task_ids="wait_for_settlements")
    assert found == [{busy: [added["id"]]}]  # one batch: ids only
    assert [ti.map_index for ti in dag_run.get_task_instances() if ti.task_id == "copy_to_s3"] == [0]
    summary = _ti(dag_run, "report").xcom_pull(task_ids="report")
    assert summary == {busy: _copied(added), **dict.fromkeys(quiet, NOTHING_NEW)}
    keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket).get("Contents", [])}
    prefix = f"dintero/settlements/account={busy}/provider=payex/settled_date={added['settled_at'][:10]}"
    assert f"{prefix}/{added['id']}/manifest.json" in keys
    assert not [k for k in keys if any(f"account={m}/" in k for m in quiet)]


def test_example_dag_the_partner_trigger_finds_a_settlement_added_while_the_sensor_waits(
    emu: Any,
    s3_bucket: str,
    run_dag: Callable[..., Any],
    load_example_dag: Callable[..., Any],
    add_when_polled: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_dintero.poller import SettlementPoller
    from airflow_provider_dintero.triggers.settlements import PartnerSettlementTrigger

    triggers: list[dict[str, Any]] = []
    original = PartnerSettlementTrigger.poller

    def recording_poller(self: PartnerSettlementTrigger) -> SettlementPoller:
        triggers.append(self.serialize()[1])
        return original(self)

    monkeypatch.setattr(PartnerSettlementTrigger, "poller", recording_poller)
    merchants = emu.merchant_ids
    late = merchants[-1]
    # the task's own sweep and the trigger's first sweep find nothing; then the settlement arrives
    added = add_when_polled(late, LOGICAL_DATE - timedelta(minutes=30), polls=2 * len(merchants))

    dag_run = run_dag(
        _example_dag(load_example_dag),
        conf={"s3_bucket": s3_bucket},
        logical_date=LOGICAL_DATE,
    )

    assert dag_run.state == "success"
    assert len(triggers) == 1  # one trigger for every merchant of the partner
    assert triggers[0]["account_ids"] is None
    wait = _ti(dag_run, "wait_for_settlements")
    assert wait.try_number == 1
    found = wait.xcom_pull(task_ids="wait_for_settlements")
    assert found == [{late: [added["id"]]}]
    summary = _ti(dag_run, "report").xcom_pull(task_ids="report")
    assert summary == {**dict.fromkeys(merchants[:-1], NOTHING_NEW), late: _copied(added)}


def test_example_dag_nothing_new_for_anyone_ends_skipped_not_failed(
    emu: Any, s3_bucket: str, run_dag: Callable[..., Any], load_example_dag: Callable[..., Any]
) -> None:
    # reschedule mode: dag.test() does not time deferred tasks out (the scheduler does); the
    # deferred timeout's skip is the resume_execution test below
    dag = _example_dag(load_example_dag, timeout=1, deferrable=False)

    dag_run = run_dag(dag, conf={"s3_bucket": s3_bucket}, logical_date=LOGICAL_DATE)

    assert dag_run.state == "success"
    assert _ti(dag_run, "wait_for_settlements").state == "skipped"
    assert {ti.state for ti in dag_run.get_task_instances() if ti.task_id == "copy_to_s3"} == {"skipped"}
    summary = _ti(dag_run, "report").xcom_pull(task_ids="report")
    assert summary == dict.fromkeys(emu.merchant_ids, NOTHING_NEW)


def test_example_dag_fails_the_run_naming_the_merchant_whose_copy_failed_after_copying_the_others(
    emu: Any,
    s3_bucket: str,
    s3_client: Any,
    run_dag: Callable[..., Any],
    load_example_dag: Callable[..., Any],
) -> None:
    good, broken, quiet = emu.merchant_ids[:3]
    created = LOGICAL_DATE - timedelta(minutes=30)
    added = {mid: emu.add_settlement(mid, provider="payex", created_at=created) for mid in (good, broken)}
    # the broken merchant's settlement can be listed, never read: its copy fails, the others not
    emu.inject_fault(status=500, path_regex=rf"/accounts/{broken}/settlements/.", count=1000)

    dag_run = run_dag(
        _example_dag(load_example_dag), conf={"s3_bucket": s3_bucket}, logical_date=LOGICAL_DATE
    )

    assert dag_run.state == "failed"
    copies = [ti.state for ti in dag_run.get_task_instances() if ti.task_id == "copy_to_s3"]
    assert copies == ["failed"]  # one batch: failed after copying every merchant it could
    summary = _ti(dag_run, "report").xcom_pull(task_ids="report")
    assert summary[good] == _copied(added[good])
    assert (summary[broken]["status"], summary[broken]["step"]) == ("failed", "copy_to_s3")
    assert "500" in summary[broken]["error"]
    assert summary[quiet] == NOTHING_NEW
    assert _ti(dag_run, "all_collected").state == "failed"
    keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket).get("Contents", [])}
    assert any(f"account={good}/" in k and k.endswith("/manifest.json") for k in keys)
    assert not [k for k in keys if f"account={broken}/" in k]  # nothing half-written


def test_example_dag_a_merchant_the_partner_may_not_read_in_the_list_fails_the_run_after_the_others(
    emu: Any, s3_bucket: str, run_dag: Callable[..., Any], load_example_dag: Callable[..., Any]
) -> None:
    good, foreign = emu.merchant_ids[0], emu.foreign_merchant_id  # not this partner's merchant: 403
    added = emu.add_settlement(good, provider="payex", created_at=LOGICAL_DATE - timedelta(minutes=30))

    dag_run = run_dag(
        _example_dag(load_example_dag),
        conf={"merchant_ids": [good, foreign], "s3_bucket": s3_bucket},
        logical_date=LOGICAL_DATE,
    )

    assert dag_run.state == "failed"
    summary = _ti(dag_run, "report").xcom_pull(task_ids="report")
    assert summary[good] == _copied(added)
    assert summary[foreign]["status"] == "could not be read"
    assert foreign in summary[foreign]["reason"]
    assert _ti(dag_run, "all_collected").state == "failed"


def test_example_dag_partner_wide_names_a_merchant_whose_access_was_revoked_and_fails_the_run(
    emu: Any, s3_bucket: str, run_dag: Callable[..., Any], load_example_dag: Callable[..., Any]
) -> None:
    good, revoked, *quiet = emu.merchant_ids
    added = emu.add_settlement(good, provider="payex", created_at=LOGICAL_DATE - timedelta(minutes=30))
    emu.inject_fault(status=403, path_regex=rf"/accounts/{revoked}/settlements$", count=1000)

    dag_run = run_dag(
        _example_dag(load_example_dag), conf={"s3_bucket": s3_bucket}, logical_date=LOGICAL_DATE
    )

    assert dag_run.state == "failed"
    summary = _ti(dag_run, "report").xcom_pull(task_ids="report")
    assert summary[good] == _copied(added)
    assert summary[revoked]["status"] == "could not be read"  # not "nothing new"
    assert all(summary[m] == NOTHING_NEW for m in quiet)
    assert _ti(dag_run, "all_collected").state == "failed"


@pytest.mark.skipif(
    not AIRFLOW_V3, reason="2.11's dag.test() does not register datasets, so it records no events"
)
def test_example_dag_asset_event_names_the_bucket_written(
    emu: Any, s3_bucket: str, run_dag: Callable[..., Any], load_example_dag: Callable[..., Any]
) -> None:
    mid = emu.merchant_ids[0]
    added = emu.add_settlement(mid, provider="vipps", created_at=LOGICAL_DATE - timedelta(minutes=30))

    dag_run = run_dag(
        _example_dag(load_example_dag),
        conf={"merchant_ids": [mid], "s3_bucket": s3_bucket},
        logical_date=LOGICAL_DATE,
    )

    assert dag_run.state == "success"
    extras = _asset_event_extras(f"s3://{s3_bucket}/dintero/settlements", dag_run.run_id)
    assert extras == [{"merchants": 1, "written": len(added["attachments"]) + 1}]


@pytest.mark.parametrize(
    ("error", "skipped"),
    [("Trigger timeout", True), ("Trigger/execution timeout", True), ("Trigger failure", False)],
    ids=["airflow-3-timeout", "airflow-2-timeout", "trigger-failure"],
)
def test_example_sensor_ends_skipped_only_when_its_wait_times_out(
    load_example_dag: Callable[..., Any], error: str, skipped: bool
) -> None:
    from airflow.providers.common.compat.sdk import AirflowException, AirflowSkipException

    dag = load_example_dag("settlements_to_s3.py")
    sensor = type(dag.get_task("wait_for_settlements"))(task_id="wait", all_merchants=True)

    with pytest.raises(AirflowSkipException if skipped else AirflowException) as raised:
        sensor.resume_execution("__fail__", {"error": error}, {})

    assert isinstance(raised.value, AirflowSkipException) is skipped


def test_example_dag_a_missing_bucket_fails_at_once_without_retries(
    emu: Any, aws_connection: str, run_dag: Callable[..., Any], load_example_dag: Callable[..., Any]
) -> None:
    mid = emu.merchant_ids[0]
    emu.add_settlement(mid, provider="vipps", created_at=LOGICAL_DATE - timedelta(minutes=30))
    dag = _example_dag(load_example_dag)
    dag.get_task("copy_to_s3").retries = 2  # as shipped: a configuration error does not use them

    dag_run = run_dag(
        dag,
        conf={"merchant_ids": [mid], "s3_bucket": "no-such-bucket-here"},
        logical_date=LOGICAL_DATE,
    )

    copy = _ti(dag_run, "copy_to_s3", 0)
    assert copy.state == "failed"  # not up_for_retry: the task's retries are not used
    assert copy.try_number == 1
    assert dag_run.state == "failed"
    assert _ti(dag_run, "report").xcom_pull(task_ids="report") == {
        mid: {"status": "failed", "step": "copy_to_s3", "state": "failed"}
    }


@pytest.mark.parametrize("cause", ["malformed-merchant-id", "dintero-refuses-the-list"])
def test_example_dag_fails_when_listing_the_merchants_fails(
    emu: Any,
    s3_bucket: str,
    run_dag: Callable[..., Any],
    load_example_dag: Callable[..., Any],
    cause: str,
) -> None:
    conf: dict[str, Any] = {"s3_bucket": s3_bucket}
    if cause == "malformed-merchant-id":
        conf["merchant_ids"] = ["not-an-account"]
    else:
        emu.inject_fault(status=403, path_regex=r"/management/accounts$", count=1000)

    dag_run = run_dag(_example_dag(load_example_dag), conf=conf, logical_date=LOGICAL_DATE)

    listing = _ti(dag_run, "list_merchants")
    assert (listing.state, listing.try_number) == ("failed", 1)
    assert _ti(dag_run, "wait_for_settlements").state == "upstream_failed"
    assert _ti(dag_run, "report").state == "failed"
    assert dag_run.state == "failed"


@pytest.mark.skipif(not AIRFLOW_V3, reason="Airflow 2.11 gives every run a logical date")
def test_example_dag_succeeds_without_a_logical_date(
    emu: Any, s3_bucket: str, run_dag: Callable[..., Any], load_example_dag: Callable[..., Any]
) -> None:
    mid = emu.merchant_ids[0]
    added = emu.add_settlement(mid, provider="klarna")  # recorded now

    dag_run = run_dag(
        _example_dag(load_example_dag),
        conf={"merchant_ids": [mid], "s3_bucket": s3_bucket},
        no_logical_date=True,
    )

    assert dag_run.logical_date is None
    assert dag_run.state == "success"
    summary = _ti(dag_run, "report").xcom_pull(task_ids="report")
    assert summary == {mid: _copied(added)}


def _asset_event_extras(uri: str, run_id: str) -> list[dict[str, Any]]:
    """The extra of every asset (2.11: dataset) event the run ``run_id`` recorded for ``uri``."""
    from airflow.utils.session import create_session

    try:
        from airflow.models.asset import AssetEvent as Event
        from airflow.models.asset import AssetModel as Model
    except ImportError:  # Airflow 2.11
        from airflow.models.dataset import DatasetEvent as Event  # type: ignore[no-redef]
        from airflow.models.dataset import DatasetModel as Model  # type: ignore[no-redef]

    with create_session() as session:
        model = session.query(Model).filter(Model.uri == uri).one()
        key = Event.asset_id if hasattr(Event, "asset_id") else Event.dataset_id
        events = session.query(Event).filter(key == model.id, Event.source_run_id == run_id)
        return [e.extra for e in events]
