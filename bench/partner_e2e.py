"""
The partner-wide path end to end, in real Airflow 3.3 processes (``tests/system/deployment.py``'s
SQLite profile: api-server, scheduler with the LocalExecutor, dag-processor, triggerer; moto's
S3 server; the emulator over HTTP on 127.0.0.1), at N merchants.

Two scenarios:

* ``copy``: ``example_dags/settlements_to_s3.py`` triggered over REST. Once its partner-wide
  sensor is deferred, one new settlement (two small attachments) is added for each of the N
  merchants; the trigger's next sweep finds them, the sensor returns batches of 100 and the
  mapped ``copy_to_s3`` tasks copy them into S3 (bucket versioning on: an overwrite shows as a
  second version). Measured: wall time of each phase, the emulator's requests by kind, peak RSS
  of the triggerer's processes and of the scheduler's executor workers and task processes
  (psutil over both process trees, sampled every 0.5 s), the triggerer's event-loop lag during
  the sweep (a probe trigger in the same triggerer sleeps 50 ms in a loop and records how late
  it wakes), the objects in S3 and the per-merchant report.
* ``restart``: ``example_dags/settlements_on_event.py``'s watcher over the N merchants (the
  consuming DAG paused once its watcher is registered: only the watcher is measured). After
  its first sweep, one new settlement per merchant; once part of that sweep's asset events
  are recorded, the triggerer is SIGKILLed (its whole process group; ``--stop term``: SIGTERMed,
  as a deploy stops it), one settlement is added
  for every tenth merchant while it is down, a new triggerer is started, and one more for
  every tenth merchant (offset 5) during its first sweep. Then asset events are counted per
  settlement id from the metadata DB after two more full sweeps: lost (0 events), repeated
  (more than 1).

``[core] parallelism`` is left at Airflow's default (32); the other settings are the system
suite's. Nothing is asserted; every figure is printed with the load average (the machine is
shared). Run (not in CI)::

    .venv-af3/bin/python bench/partner_e2e.py --merchants 1000 --scenario copy
    .venv-af3/bin/python bench/partner_e2e.py --merchants 10000 --scenario restart

Add ``--markdown FILE`` to append the result as a section of FILE (``bench/RESULTS-partner-e2e.md``
holds the figures of the runs reported). Work files go under ``$TMPDIR/dintero-partner-e2e``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from airflow_provider_dintero.emulator import DinteroEmulator, EmulatorSeed  # noqa: E402
from airflow_provider_dintero.emulator.pytest_plugin import connection_json  # noqa: E402
from airflow_provider_dintero.events import raw_extra  # noqa: E402
from tests.system import deployment as system  # noqa: E402

WORK = Path(tempfile.gettempdir()) / "dintero-partner-e2e"
COPY_DAG = "dintero_settlements_to_s3"
WATCH_DAG = "dintero_settlements_on_event"
PROBE_DAG = "bench_lag_probe"
SENSOR = "wait_for_settlements"
#: Two small attachments per settlement: the provider's file and Dintero's csv.
ATTACHMENTS = {"source": 2048, "csv": 2048}
#: The probe's sleep (seconds): the harness of ``bench/triggerer.py`` ticks every 50 ms too.
TICK = 0.05

#: The lag probe: a trigger, importable by the triggerer from ``<AIRFLOW_HOME>/pythonpath``.
PROBE_MODULE = '''"""Measures the event-loop lag of the triggerer it runs in (bench/partner_e2e.py)."""
import asyncio
import time

from airflow.triggers.base import BaseTrigger, TriggerEvent


class LagProbeTrigger(BaseTrigger):
    def __init__(self, path, seconds, interval=0.05):
        super().__init__()
        self.path, self.seconds, self.interval = path, float(seconds), float(interval)

    def serialize(self):
        kwargs = {"path": self.path, "seconds": self.seconds, "interval": self.interval}
        return ("dintero_bench_probe.LagProbeTrigger", kwargs)

    async def run(self):
        end = time.monotonic() + self.seconds
        lines, flushed = [], time.monotonic()
        while time.monotonic() < end:
            before = time.monotonic()
            await asyncio.sleep(self.interval)
            late = (time.monotonic() - before - self.interval) * 1000
            lines.append(f"{time.time():.3f} {late:.1f}\\n")
            if time.monotonic() - flushed > 1:
                with open(self.path, "a") as out:
                    out.writelines(lines)
                lines, flushed = [], time.monotonic()
        with open(self.path, "a") as out:
            out.writelines(lines)
        yield TriggerEvent({"status": "done"})
'''

#: The DAG that defers to the probe (its file and duration come from the environment).
PROBE_DAG_FILE = '''"""bench/partner_e2e.py: a deferred task whose trigger measures the triggerer's lag."""
import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, BaseOperator

from dintero_bench_probe import LagProbeTrigger

SECONDS = float(os.environ.get("DINTERO_BENCH_LAG_SECONDS", "600"))


class LagProbe(BaseOperator):
    def execute(self, context):
        trigger = LagProbeTrigger(os.environ["DINTERO_BENCH_LAG_FILE"], SECONDS)
        self.defer(trigger=trigger, method_name="done", timeout=timedelta(seconds=SECONDS + 600))

    def done(self, context, event=None):
        return event


with DAG("bench_lag_probe", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    LagProbe(task_id="probe")
'''


def load() -> str:
    """The 1 / 5 / 15 minute load averages."""
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())


def log(message: str) -> None:
    """Print a progress line with the time and the load average."""
    print(f"[{datetime.now(timezone.utc):%H:%M:%S} load {load()}] {message}", flush=True)


def make_deployment(
    emu: DinteroEmulator,
    work: Path,
    dag_files: list[str],
    poll_interval: float,
    lag_seconds: float,
    config: list[str] | None = None,
    asset_runs: bool = False,
) -> system.Deployment:
    """
    The system suite's deployment with this bench's DAGs folder, connection and probe, and
    ``[core] parallelism`` at Airflow's default.

    :param emu: the started emulator.
    :param work: the work directory.
    :param dag_files: example DAG files copied into the DAGs folder (the probe's is added).
    :param poll_interval: the watcher's poll interval (``DINTERO_POLL_INTERVAL``).
    :param lag_seconds: how long the lag probe runs.
    :param config: Airflow settings ``section.key=value`` on top (``AIRFLOW__SECTION__KEY``).
    :param asset_runs: let the scheduler create runs from schedules (the asset-scheduled DAG's
        runs too); otherwise only the runs the bench triggers.
    """
    overrides = {}
    for item in config or []:
        name, _, value = item.partition("=")
        section, _, key = name.partition(".")
        overrides[f"AIRFLOW__{section.upper()}__{key.upper()}"] = value
    dags = work / "dags"
    dags.mkdir(parents=True)
    for name in dag_files:
        shutil.copy(REPO / "example_dags" / name, dags / name)
    (dags / "bench_lag_probe.py").write_text(PROBE_DAG_FILE)

    class Bench(system.Deployment):
        @property
        def env(self) -> dict[str, str]:
            env = super().env
            env.pop("AIRFLOW__CORE__PARALLELISM", None)  # Airflow's default (32)
            env.update(
                {
                    "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                    # only the runs the bench triggers (no scheduled run of the @daily example)
                    "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(asset_runs),
                    # never parsed again during the run (a paused watcher's DAG would lose it)
                    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "86400",
                    # a killed triggerer's triggers move to the new one after about 10 s
                    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
                    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
                    "AIRFLOW_CONN_DINTERO_DEFAULT": connection_json(emu),
                    "DINTERO_PARTNER_ID": emu.partner_id,
                    "DINTERO_POLL_INTERVAL": str(poll_interval),
                    "DINTERO_BENCH_LAG_FILE": str(work / "lag.txt"),
                    "DINTERO_BENCH_LAG_SECONDS": str(lag_seconds),
                    **overrides,
                }
            )
            return env

        @property
        def output_dir(self) -> Path:
            return work / "out"

        def _install_counting_backend(self) -> None:
            super()._install_counting_backend()
            (self.home / "pythonpath" / "dintero_bench_probe.py").write_text(PROBE_MODULE)

    return Bench(home=work / "home", emulator_url=emu.base_url)


def request_kind(record: Any, partner_id: str) -> str:
    """
    What one emulator request was: ``partner token``, ``merchant token``, ``exchange``,
    ``merchants``, ``list``, ``detail`` (the list searched by id), ``attachment``, ``download``.

    :param record: a :class:`RequestRecord`.
    :param partner_id: the partner's account id.
    """
    path = record.path
    if path.endswith("/auth/token"):
        return "partner token" if f"/accounts/{partner_id}/" in path else "merchant token"
    if path.endswith("/auth/exchange_token"):
        return "exchange"
    if "/attachments/" in path:
        return "attachment"
    if path.startswith("/_emulator/blobs/"):
        return "download"
    if path.endswith("/settlements"):
        return "detail" if any(name == "search" for name, _ in record.query) else "list"
    if path.endswith("/accounts"):
        return "merchants"
    return "other"


class Sampler(threading.Thread):
    """
    Every ``interval`` seconds: the RSS of every process of the triggerer's and the scheduler's
    process trees, and the emulator's requests by kind (cumulative, with the time).

    :param deployment: the deployment.
    :param emu: the emulator.
    :param interval: seconds between samples.
    """

    def __init__(self, deployment: system.Deployment, emu: DinteroEmulator, interval: float = 0.5) -> None:
        super().__init__(name="sampler", daemon=True)
        self.deployment = deployment
        self.emu = emu
        self.interval = interval
        self.stopping = threading.Event()
        self.peak: dict[tuple[str, int], int] = {}
        self.title: dict[tuple[str, int], str] = {}
        self.peak_tree: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.timeline: list[tuple[float, dict[str, int]]] = []
        self.loads: list[tuple[float, float]] = []
        self.seen = 0
        self.cpu: dict[tuple[str, int], float] = {}

    def _tree(self, name: str) -> None:
        proc = self.deployment.processes.get(name)
        if proc is None or proc.poll() is not None:
            return
        try:
            root = psutil.Process(proc.pid)
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        total = 0
        for member in family:
            try:
                times = member.cpu_times()
                self.cpu[(name, member.pid)] = times.user + times.system
                rss = member.memory_info().rss
                key = (name, member.pid)
                if key not in self.title:
                    self.title[key] = "root" if member.pid == proc.pid else " ".join(member.cmdline())[:90]
            except psutil.Error:
                continue
            total += rss
            self.peak[key] = max(self.peak.get(key, 0), rss)
        self.peak_tree[name] = max(self.peak_tree[name], total)

    def sample(self) -> None:
        """Take one sample."""
        for name in list(self.deployment.processes):
            self._tree(name)
        times = psutil.Process().cpu_times()
        self.cpu[("bench process: the emulator", os.getpid())] = times.user + times.system
        records = self.emu.requests
        for record in records[self.seen :]:
            self.kinds[request_kind(record, self.emu.partner_id)] += 1
        self.seen = len(records)
        now = time.time()
        self.timeline.append((now, dict(self.kinds)))
        self.loads.append((now, os.getloadavg()[0]))

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            self.sample()

    def stop(self, path: Path | None = None) -> None:
        """
        Stop sampling (after one last sample).

        :param path: write the request timeline and the load averages there (JSON).
        """
        self.stopping.set()
        self.join(timeout=10)
        self.sample()
        if path is not None:
            path.write_text(json.dumps({"requests": self.timeline, "load": self.loads}))

    def count_at(self, kind: str, at: float) -> int:
        """How many requests of ``kind`` had been answered by time ``at``."""
        found = 0
        for when, kinds in self.timeline:
            if when > at:
                break
            found = kinds.get(kind, 0)
        return found

    def first_after(self, kind: str, after: float, above: int) -> float | None:
        """When the count of ``kind`` first exceeded ``above`` after time ``after``."""
        return next((t for t, k in self.timeline if t >= after and k.get(kind, 0) > above), None)

    def last_change(self, kind: str, start: float, end: float) -> float | None:
        """The last sample time in ``[start, end]`` at which the count of ``kind`` grew."""
        last, previous = None, None
        for when, kinds in self.timeline:
            value = kinds.get(kind, 0)
            if start <= when <= end and previous is not None and value > previous:
                last = when
            previous = value
        return last

    def mean_load(self, start: float, end: float) -> float:
        """The mean 1-minute load average sampled in ``[start, end]``."""
        values = [v for t, v in self.loads if start <= t <= end]
        return statistics.mean(values) if values else os.getloadavg()[0]

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system) per process tree, largest first (processes seen while sampled)."""
        totals: Counter[str] = Counter()
        for (name, _pid), seconds in self.cpu.items():
            totals[name] += seconds
        return {name: round(seconds) for name, seconds in totals.most_common()}

    def memory(self) -> dict[str, str]:
        """
        Peak RSS (MB): each triggerer process, the scheduler, the largest processes under it
        (LocalExecutor workers and the task processes they start), and the peak sums of RSS of each
        tree (pages shared between forked processes are counted once per process: an upper bound).
        """
        mb = 1024 * 1024
        roles: dict[str, list[tuple[int, str]]] = {"triggerer": [], "scheduler": [], "under": []}
        for (name, _pid), value in self.peak.items():
            if name not in ("triggerer", "scheduler"):
                continue
            title = self.title[(name, _pid)]
            role = name if title == "root" or name == "triggerer" else "under"
            roles[role].append((value, title))
        for values in roles.values():
            values.sort(reverse=True)
        under = roles["under"]
        return {
            "triggerer processes, peak RSS each (MB)": ", ".join(
                f"{v / mb:.0f}" for v, _ in roles["triggerer"][:4]
            )
            or "-",
            "triggerer tree, peak RSS sum (MB)": f"{self.peak_tree['triggerer'] / mb:.0f}",
            "scheduler process, peak RSS (MB)": f"{roles['scheduler'][0][0] / mb:.0f}"
            if roles["scheduler"]
            else "-",
            "largest processes under the scheduler (workers/tasks), peak RSS (MB)": "; ".join(
                f"{v / mb:.0f} ({title.split(' -- ')[0][:40]})" for v, title in under[:3]
            )
            or "-",
            "processes seen under the scheduler": str(len(under)),
            "scheduler tree, peak RSS sum (MB, shared pages counted per process)": (
                f"{self.peak_tree['scheduler'] / mb:.0f}"
            ),
        }


def lag_figures(path: Path, start: float, end: float) -> dict[str, Any]:
    """
    The probe's lateness in ``[start, end]``: samples, max, p99, median (ms).

    :param path: the probe's file (``epoch lag_ms`` per line).
    :param start: epoch seconds.
    :param end: epoch seconds.
    """
    if not path.exists():
        return {"samples": 0}
    lags = sorted(
        float(ms)
        for when, ms in (line.split() for line in path.read_text().splitlines() if line.strip())
        if start <= float(when) <= end
    )
    if not lags:
        return {"samples": 0}
    return {
        "samples": len(lags),
        "max_ms": round(lags[-1], 1),
        "p99_ms": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))], 1),
        "median_ms": round(statistics.median(lags), 1),
        "over_100ms": sum(1 for v in lags if v > 100),
    }


def parse_time(value: str | None) -> float | None:
    """An API timestamp as epoch seconds."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def task_instances(dep: system.Deployment, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """Every task instance of a run (paged: the REST API answers at most 100 per page)."""
    found: list[dict[str, Any]] = []
    while True:
        page = dep.api(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100&offset={len(found)}")
        found += page["task_instances"]
        if not page["task_instances"] or len(found) >= page["total_entries"]:
            return found


def wait_parsed(dep: system.Deployment, dag_ids: list[str]) -> None:
    """Wait until the dag-processor has parsed every DAG named (and none failed to import)."""

    def parsed() -> bool:
        dep._alive()
        errors = dep.api("/importErrors")["import_errors"]
        if errors:
            raise RuntimeError(f"DAG import errors: {errors}")
        found = {d["dag_id"] for d in dep.api("/dags?limit=100")["dags"]}
        return set(dag_ids) <= found

    system.wait_until(parsed, 300, f"DAGs {dag_ids} to be parsed", 2)


def versioned_bucket(dep: system.Deployment) -> None:
    """Create the bucket the copies write to, with versioning on (an overwrite shows as a version)."""
    dep.s3().create_bucket(Bucket=system.BUCKET)
    dep.s3().put_bucket_versioning(Bucket=system.BUCKET, VersioningConfiguration={"Status": "Enabled"})


def s3_check(dep: system.Deployment, expected: dict[str, str]) -> dict[str, Any]:
    """
    The objects under ``dintero/settlements/`` against the settlements added: attachments and
    manifests found, settlements missing a file, keys with more than one version (written twice).

    :param dep: the deployment.
    :param expected: settlement id -> account id.
    """
    versions: Counter[str] = Counter()
    for page in (
        dep.s3()
        .get_paginator("list_object_versions")
        .paginate(Bucket=system.BUCKET, Prefix="dintero/settlements/")
    ):
        for version in page.get("Versions", []):
            versions[version["Key"]] += 1
    attachments: Counter[str] = Counter()
    manifests: Counter[str] = Counter()
    foreign = 0
    for key in versions:
        parts = key.split("/")
        sid = parts[-2] if len(parts) >= 2 else ""
        if sid not in expected or f"account={expected[sid]}" not in parts:
            foreign += 1
        elif parts[-1] == "manifest.json":
            manifests[sid] += 1
        else:
            attachments[sid] += 1
    return {
        "objects": len(versions),
        "attachments": sum(attachments.values()),
        "manifests": sum(manifests.values()),
        "settlements missing a file": sum(
            1 for sid in expected if attachments[sid] != len(ATTACHMENTS) or manifests[sid] != 1
        ),
        "objects written more than once": sum(1 for v in versions.values() if v > 1),
        "objects of no added settlement": foreign,
    }


def _phase(ti: list[dict[str, Any]], task_id: str) -> tuple[float | None, float | None]:
    mine = [t for t in ti if t["task_id"] == task_id]
    starts = [s for s in (parse_time(t.get("start_date")) for t in mine) if s]
    ends = [e for e in (parse_time(t.get("end_date")) for t in mine) if e]
    return (min(starts) if starts else None, max(ends) if ends else None)


def run_copy(n: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The ``copy`` scenario at ``n`` merchants; returns its figures."""
    seed = EmulatorSeed(merchants=n, settlements_per_provider=0, reports_per_merchant=0)
    figures: dict[str, Any] = {
        "scenario": "copy",
        "merchants": n,
        "Airflow settings changed": ", ".join(args.config) or "none",
    }
    with DinteroEmulator(seed) as emu:
        dep = make_deployment(emu, work, ["settlements_to_s3.py"], 30.0, args.lag_seconds, args.config)
        sampler = Sampler(dep, emu)
        try:
            began = time.time()
            dep.start()
            log(f"deployment up in {time.time() - began:.0f} s")
            versioned_bucket(dep)
            wait_parsed(dep, [COPY_DAG, PROBE_DAG])
            sampler.start()
            dep.trigger(PROBE_DAG)
            triggered = time.time()
            run_id = dep.trigger(COPY_DAG)
            log(f"triggered {COPY_DAG} ({run_id})")

            def deferred() -> bool:
                dep._alive()
                states = [t["state"] for t in task_instances(dep, COPY_DAG, run_id) if t["task_id"] == SENSOR]
                if any(s in ("failed", "upstream_failed", "success", "skipped") for s in states):
                    raise RuntimeError(f"the sensor ended before any settlement was added: {states}")
                return states == ["deferred"]

            system.wait_until(deferred, args.timeout, "the partner-wide sensor to be deferred", 1)
            deferred_at = time.time()
            log(f"sensor deferred {deferred_at - triggered:.0f} s after the trigger; adding {n} settlements")
            expected = {
                str(emu.add_settlement(m, provider="vipps", attachment_sizes=ATTACHMENTS)["id"]): m
                for m in emu.merchant_ids
            }
            added_at = time.time()
            list_before = sum(1 for r in emu.requests if request_kind(r, emu.partner_id) == "list")
            log(f"added in {added_at - deferred_at:.1f} s; waiting for the run")

            def finished() -> str | bool:
                dep._alive()
                state = str(dep.api(f"/dags/{COPY_DAG}/dagRuns/{run_id}")["state"])
                return state if state in ("success", "failed") else False

            state = system.wait_until(finished, args.timeout, f"run {run_id}", 5)
            ended = time.time()
            log(f"run ended {state}")
            sampler.stop(work / "timeline.json")
            tis = task_instances(dep, COPY_DAG, run_id)
            report = (
                dep.xcom(COPY_DAG, run_id, "report")
                if any(t["task_id"] == "report" and t["state"] == "success" for t in tis)
                else {}
            )
            s3 = s3_check(dep, expected)
        finally:
            sampler.stopping.set()
            dep.stop()
    _, sensor_end = _phase(tis, SENSOR)
    copy_start, copy_end = _phase(tis, "copy_to_s3")
    sweep_start = sampler.first_after("list", added_at, list_before) or added_at
    sweep_end = sampler.last_change("list", sweep_start, sensor_end or ended) or sweep_start
    copies = [t for t in tis if t["task_id"] == "copy_to_s3"]
    durations = [
        parse_time(t["end_date"]) - parse_time(t["start_date"])  # type: ignore[operator]
        for t in copies
        if t.get("start_date") and t.get("end_date")
    ]
    kinds = sampler.kinds
    figures.update(
        {
            "run state": state,
            "first check in the worker (nothing new yet), trigger -> deferred (s)": round(
                deferred_at - triggered
            ),
            "settlements added (s)": round(added_at - deferred_at, 1),
            "sweep in the triggerer: first -> last list request (s)": round(sweep_end - sweep_start, 1),
            "sweep -> sensor resumed and done (s)": round((sensor_end or sweep_end) - sweep_end, 1),
            "copy: sensor done -> last copy done (s)": round((copy_end or ended) - (sensor_end or ended)),
            "total: settlements added -> run ended (s)": round(ended - added_at),
            "copy tasks (mapped) by state": dict(Counter(t["state"] for t in copies)),
            "copy tasks retried": sum(1 for t in copies if (t.get("try_number") or 1) > 1),
            "copy task duration median / max (s)": (
                f"{statistics.median(durations):.0f} / {max(durations):.0f}" if durations else "-"
            ),
            "first copy started after the sensor (s)": (
                round(copy_start - sensor_end) if copy_start and sensor_end else "-"
            ),
            "requests by kind": dict(sorted(kinds.items())),
            "token calls (partner + merchant tokens + exchanges)": (
                kinds["partner token"] + kinds["merchant token"] + kinds["exchange"]
            ),
            "requests per merchant": round(sum(kinds.values()) / n, 2),
            "report statuses": dict(Counter(v.get("status") for v in report.values())) if report else "-",
            "S3": s3,
            "event-loop lag during the sweep (probe, 50 ms ticks)": lag_figures(
                work / "lag.txt", sweep_start, sweep_end
            ),
            "event-loop lag over the whole run": lag_figures(work / "lag.txt", triggered, ended),
            "memory": sampler.memory(),
            "CPU seconds by process tree": sampler.cpu_seconds(),
            "load average: at the end; mean during the sweep; mean during the copy": (
                f"{load()}; {sampler.mean_load(sweep_start, sweep_end):.1f}; "
                f"{sampler.mean_load(sensor_end or ended, copy_end or ended):.1f}"
            ),
        }
    )
    return figures


def asset_events(db: Path) -> Counter[str]:
    """Per settlement id: the watcher's (``source: poll``) asset events naming it."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        counts: Counter[str] = Counter()
        for (extra,) in conn.execute("select extra from asset_event"):
            part = raw_extra(SimpleNamespace(extra=json.loads(extra) if extra else None)) or {}
            if part.get("source") == "poll":
                counts.update(part.get("settlement_ids") or [])
        return counts
    finally:
        conn.close()


def event_rows(db: Path) -> int:
    """How many asset events the metadata DB holds."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute("select count(*) from asset_event").fetchone()[0])
    finally:
        conn.close()


def stored_watermarks(db: Path) -> int:
    """
    How many merchants' watermarks the watcher has stored in the asset state store (the merchants
    in its ``watermarks:<n>`` keys; one ``watermark:<merchant>`` key each in the earlier layout).
    """
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        merchants = 0
        for key, value in conn.execute(
            "select key, value from asset_state_store where key like 'watermark%:%'"
        ):
            merchants += len(json.loads(value)) if key.startswith("watermarks:") else 1
        return merchants
    finally:
        conn.close()


def dag_runs(dep: system.Deployment, dag_id: str) -> list[dict[str, Any]]:
    """Every run of ``dag_id`` (REST API)."""
    return list(dep.api(f"/dags/{dag_id}/dagRuns?limit=1000")["dag_runs"])


def unfinished_runs(dep: system.Deployment, dag_id: str) -> int:
    """How many runs of ``dag_id`` are queued or running."""
    return sum(1 for r in dag_runs(dep, dag_id) if r["state"] in ("queued", "running"))


def time_a_sweep(sampler: Sampler, n: int, timeout: float) -> float:
    """
    Wait for the watcher's current sweep to end (no list request for 3 s), then time its next
    sweep: from its first list request to its ``n``-th (every merchant listed once).
    """

    def idle() -> bool:
        before = sampler.kinds["list"]
        time.sleep(3)
        return sampler.kinds["list"] == before

    system.wait_until(idle, timeout, "the end of a sweep", 0.1)
    listed = sampler.kinds["list"]
    system.wait_until(lambda: sampler.kinds["list"] > listed, timeout, "the next sweep", 0.05)
    began = time.time()
    system.wait_until(lambda: sampler.kinds["list"] >= listed + n, timeout, "a whole sweep", 0.05)
    return time.time() - began


def run_restart(n: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The ``restart`` scenario at ``n`` merchants; returns its figures."""
    seed = EmulatorSeed(merchants=n, settlements_per_provider=0, reports_per_merchant=0)
    figures: dict[str, Any] = {
        "scenario": "restart",
        "merchants": n,
        "poll interval (s)": args.poll_interval,
        "triggerer stopped by": f"SIG{args.stop.upper()}"
        + (" (its process group)" if args.stop == "kill" else ""),
        "Airflow settings changed": ", ".join(args.config) or "none",
        "the consuming DAG": "copies (two 2 KiB attachments per settlement)" if args.copy else "paused",
        "merchants failing (settlement list answers 500 until the others are reported)": (
            f"{args.failing:.0%}" if args.failing else "none"
        ),
    }
    files: dict[str, Any] = {"attachment_sizes": ATTACHMENTS} if args.copy else {}
    failing_figures: dict[str, Any] = {}
    copied: dict[str, Any] = {}
    with DinteroEmulator(seed) as emu:
        dep = make_deployment(
            emu,
            work,
            ["settlements_on_event.py"],
            args.poll_interval,
            args.lag_seconds,
            args.config,
            asset_runs=args.copy,
        )
        sampler = Sampler(dep, emu)
        db = dep.home / "airflow.db"
        try:
            dep.start()
            versioned_bucket(dep)
            wait_parsed(dep, [WATCH_DAG, PROBE_DAG])
            system.wait_until(
                lambda: "Watching Dintero settlements" in dep.output("triggerer"), 300, "the watcher", 1
            )
            if not args.copy:  # the watcher stays registered (no re-parse); only the watcher runs
                dep.api(f"/dags/{WATCH_DAG}", "PATCH", {"is_paused": True})
            sampler.start()
            dep.trigger(PROBE_DAG)
            started = time.time()
            log("watcher started; waiting for its first sweep (nothing new)")
            system.wait_until(lambda: sampler.kinds["list"] >= n, args.timeout, "the first sweep", 1)
            first_sweep = time.time() - started
            failing = set(emu.merchant_ids[:: round(1 / args.failing)]) if args.failing else set()
            if failing:  # their settlement lists answer 500 until every other settlement is reported
                pattern = "/accounts/(" + "|".join(sorted(failing)) + ")/settlements$"
                emu.inject_fault(path_regex=pattern, status=500, count=10**9)
            wave_a = {
                str(emu.add_settlement(m, provider="vipps", **files)["id"]): m for m in emu.merchant_ids
            }
            added_a = time.time()
            log(f"first sweep done in {first_sweep:.0f} s; added {n} settlements; waiting to kill mid-sweep")
            lists_at_add = sampler.kinds["list"]
            target = max(1, int(n * args.kill_at))
            system.wait_until(lambda: event_rows(db) >= target, args.timeout, f"{target} asset events", 0.1)
            if args.stop == "kill":
                dep.kill("triggerer", restart=False)
            else:
                dep.stop("triggerer")
            killed = time.time()
            recorded_at_kill = event_rows(db)
            stored_at_kill = stored_watermarks(db)
            listed_at_kill = sampler.kinds["list"] - lists_at_add
            log(f"stopped the triggerer (SIG{args.stop.upper()}): {recorded_at_kill} of {n} events recorded")
            wave_b = {
                str(emu.add_settlement(m, provider="klarna", **files)["id"]): m
                for m in emu.merchant_ids[::10]
            }
            before = dep.output("triggerer").count("Watching Dintero settlements")
            dep.start_process("triggerer")
            restarted = time.time()
            system.wait_until(
                lambda: dep.output("triggerer").count("Watching Dintero settlements") > before,
                300,
                "the new triggerer's watcher",
                0.5,
            )
            watching_again = time.time()
            lists_at_watch = sampler.kinds["list"]
            wave_c = {
                str(emu.add_settlement(m, provider="walley", **files)["id"]): m
                for m in emu.merchant_ids[5::10]
            }
            expected = wave_a | wave_b | wave_c
            log(f"new triggerer watching after {watching_again - restarted:.0f} s; waiting for every event")

            def all_reported(which: dict[str, str]) -> bool:
                dep._alive()
                counts = asset_events(db)
                return all(counts[sid] for sid in which)

            system.wait_until(lambda: sampler.kinds["list"] > lists_at_watch, args.timeout, "a listing", 0.2)
            listing_again = time.time()
            if failing:
                healthy = {sid: m for sid, m in expected.items() if m not in failing}
                system.wait_until(lambda: all_reported(healthy), args.timeout, "the healthy merchants", 5)
                counts = asset_events(db)
                failing_figures["healthy merchants: kill -> every settlement reported (s)"] = round(
                    time.time() - killed
                )
                failing_figures["failing merchants' settlements reported while failing"] = sum(
                    1 for sid, m in expected.items() if m in failing and counts[sid]
                )
                emu.clear_faults()
                cleared = time.time()
                log(f"every healthy merchant's settlement reported; the {len(failing)} failing ones recover")
            system.wait_until(
                lambda: all_reported(expected), args.timeout, "an event for every settlement", 5
            )
            complete = time.time()
            if failing:
                failing_figures["failing merchants: recovered -> every settlement reported (s)"] = round(
                    complete - cleared
                )
            lists = sampler.kinds["list"]
            log("every settlement reported; timing a steady sweep, then waiting for repeats")
            steady_sweep = time_a_sweep(sampler, n, args.timeout)
            system.wait_until(lambda: sampler.kinds["list"] >= lists + 2 * n, args.timeout, "two sweeps", 2)
            counts = asset_events(db)
            if args.copy:
                log("waiting for every settlement's files in S3 and the runs to end")
                system.wait_until(
                    lambda: s3_check(dep, expected)["settlements missing a file"] == 0, args.timeout, "S3", 30
                )
                system.wait_until(lambda: not unfinished_runs(dep, WATCH_DAG), args.timeout, "the runs", 10)
                copied = {
                    "every file in S3 (s after the kill)": round(time.time() - killed),
                    **s3_check(dep, expected),
                }
                copied["runs of the consuming DAG by state"] = dict(
                    Counter(r["state"] for r in dag_runs(dep, WATCH_DAG))
                )
            sampler.stop(work / "timeline.json")
        finally:
            sampler.stopping.set()
            dep.stop()
    lost = [sid for sid in expected if counts[sid] == 0]
    repeated = [sid for sid in expected if counts[sid] > 1]
    figures.update(
        {
            "first sweep, nothing new (s)": round(first_sweep),
            "settlements: before the kill / while down / during the new first sweep": (
                f"{len(wave_a)} / {len(wave_b)} / {len(wave_c)}"
            ),
            "at the kill: merchants listed in that sweep / events recorded / watermarks stored": (
                f"{listed_at_kill} / {recorded_at_kill} / {stored_at_kill}"
            ),
            "added -> kill (s)": round(killed - added_a),
            "kill -> new triggerer watching (s)": round(watching_again - killed),
            "new watcher: watching -> first merchant listed (s)": round(listing_again - watching_again),
            "kill -> every settlement reported (s)": round(complete - killed),
            "steady sweep after the restart: first -> last list request (s)": round(steady_sweep, 1),
            **failing_figures,
            "settlements lost (0 events)": len(lost),
            "settlements repeated (> 1 event)": len(repeated),
            "repeated, examples": repeated[:5],
            "events naming no added settlement": sum(v for sid, v in counts.items() if sid not in expected),
            "requests by kind": dict(sorted(sampler.kinds.items())),
            "S3": copied or "not copied (the consuming DAG paused)",
            "event-loop lag, whole run (probe)": lag_figures(work / "lag.txt", started, complete),
            "memory": sampler.memory(),
            "CPU seconds by process tree": sampler.cpu_seconds(),
            "load average at the end; mean over the run": (
                f"{load()}; {sampler.mean_load(started, complete):.1f}"
            ),
        }
    )
    return figures


def markdown(figures: dict[str, Any]) -> str:
    """One result as a markdown section."""
    lines = [
        f"## {figures['scenario']}, {figures['merchants']:,} merchants "
        f"({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs shared)",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    for key, value in figures.items():
        if key in ("scenario", "merchants"):
            continue
        if isinstance(value, dict) and (key in ("S3", "memory") or key.startswith("event-loop")):
            lines += [f"| {key}: {k} | {v} |" for k, v in value.items()]
        else:
            text = json.dumps(value) if isinstance(value, dict | list) else str(value)
            lines.append(f"| {key} | {text} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the chosen scenario at each size and print (and optionally append) the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--merchants", type=int, nargs="+", default=[1000])
    parser.add_argument("--scenario", choices=("copy", "restart"), default="copy")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per wait")
    parser.add_argument("--poll-interval", type=float, default=30.0, help="the watcher's (restart)")
    parser.add_argument("--kill-at", type=float, default=0.3, help="fraction of events recorded (restart)")
    parser.add_argument(
        "--failing",
        type=float,
        default=0.0,
        help="restart: this fraction of merchants fails (500) until every other settlement is reported",
    )
    parser.add_argument(
        "--copy",
        action="store_true",
        help="restart: leave the consuming DAG on, so the settlements are copied (S3 checked at the end)",
    )
    parser.add_argument(
        "--stop",
        choices=("kill", "term"),
        default="kill",
        help="how the triggerer is stopped (restart): SIGKILL its process group, or SIGTERM it (a deploy)",
    )
    parser.add_argument("--lag-seconds", type=float, default=3600, help="how long the lag probe runs")
    parser.add_argument("--markdown", help="append each result to this file")
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="an Airflow setting for every process, e.g. triggerer.shared_stream_subscriber_queue_size=20000",
    )
    args = parser.parse_args()
    for n in args.merchants:
        work = WORK / f"{args.scenario}-{n}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        log(f"{args.scenario} at {n} merchants; work files in {work}")
        run = run_copy if args.scenario == "copy" else run_restart
        figures = run(n, args, work)
        (work / "figures.json").write_text(json.dumps(figures, indent=2, default=str))
        text = markdown(figures)
        print(text, flush=True)
        if args.markdown:
            with open(args.markdown, "a") as out:
                out.write("\n" + text)


if __name__ == "__main__":
    main()
