"""
Triggerer benchmark: N deferred settlement triggers in Airflow 3.3's real triggerer.

For each size N (default 10, 100, 300, 1,000 merchants), one run, bounded in time:

1. the emulator (``python -m airflow_provider_dintero.emulator``, own process, 127.0.0.1) seeded
   with N merchants and no settlements;
2. a triggerer process: the ``airflow triggerer --skip-serve-logs`` command itself (its
   ``TriggererJobRunner``, a real Job row and heartbeat in a SQLite metadata DB, the
   ``TriggerRunnerSupervisor`` and the forked ``TriggerRunner`` process, the secrets masker and
   log forwarding as in production), with only the trigger table replaced: the supervisor's
   ``load_triggers`` / ``build_trigger_workloads`` feed the N triggers in (each with a task
   instance and its own trigger log file, as ``_create_workload`` builds them) and
   ``on_trigger_event`` / ``on_trigger_failure`` / ``clean_unused`` record instead of writing
   to the DB. A 50 ms ticker coroutine inside the runner's event loop measures its lag;
3. this process watches from outside: the emulator's request log (first settlements list per
   merchant), CPU and peak RSS of both triggerer processes (/proc), and, once every merchant was
   polled once (and a steady window), adds one settlement per merchant through the emulator's
   control API and waits for each merchant's TriggerEvent.

Which triggers are built is a parameter: ``--mode per-merchant`` builds one ``--trigger-class``
per merchant with ``--trigger-kwargs`` plus ``{--account-kwarg: merchant}`` (default: the
sensor's own ``SettlementTrigger`` kwargs with ``poll_interval=5``); ``--mode partner`` builds one
trigger with ``{--accounts-kwarg: [every merchant]}``. A merchant counts as reported when an
event's payload names it (``account_id`` or a key) with a non-empty ``settlements`` list (or
without one).

Airflow 3.3 only (2.11's triggerer has no supervisor/runner split). Figures are from a shared
machine: read them with the load-average and CPU-share rows.

Prints a table (ratios, counts, peak memory; no wall-clock assertion) and writes it to
``--markdown`` (default ``bench/RESULTS-triggerer.md``). Run: ``bash bench/run.sh --only triggerer``
or ``.venv-af3/bin/python bench/triggerer.py --sizes 10 100``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import REPO, control, emulator_process  # bench/run.py: the shared service helpers

DEFAULT_CLASS = "airflow_provider_dintero.triggers.settlements.SettlementTrigger"
SIZES = (10, 100, 300, 1000)
TICK = 0.05  # the event-loop ticker's period, seconds
FERNET_KEY = "fwWeVJ0xjE3cDzbIEYYbYbrV24bDyG63uDORbXapXTU="
MB = 1_000_000
TOKEN_KINDS = ("partner token", "exchange", "merchant token")


# ------------------------------------------------------------------ the triggerer process
#
# Everything below until the orchestrator runs inside ``bench/triggerer.py _triggerer WORKDIR``:
# patches installed before Airflow's CLI starts, so the forked runner inherits them.


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _masker_patterns() -> dict[str, int]:
    """Patterns registered in this process's secrets maskers (the SDK's and core's copies)."""
    out = {}
    for label, module in (
        ("sdk", "airflow.sdk._shared.secrets_masker.secrets_masker"),
        ("core", "airflow._shared.secrets_masker.secrets_masker"),
    ):
        mod = sys.modules.get(module)  # a copy this process never imported has no patterns
        out[label] = len(mod._secrets_masker().patterns) if mod is not None else 0
    return out


def _percentile(hist: Counter[int], q: float) -> int:
    """The ``q`` quantile (0..1) of a histogram of integer milliseconds."""
    total = sum(hist.values())
    if not total:
        return 0
    rank, seen = q * total, 0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= rank:
            return value
    return max(hist)


async def _ticker(stats_path: Path) -> None:
    """Every 50 ms: how late the event loop woke us (lag, 1 ms buckets); dump stats every second."""
    import asyncio

    hist: Counter[int] = Counter()
    last_dump = time.monotonic()
    try:
        while True:
            start = time.monotonic()
            await asyncio.sleep(TICK)
            now = time.monotonic()
            hist[int((now - start - TICK) * 1000)] += 1
            if now - last_dump >= 1.0:
                last_dump = now
                _dump_runner(stats_path, hist, final=False)
    finally:
        _dump_runner(stats_path, hist, final=True)


def _dump_runner(path: Path, hist: Counter[int], final: bool) -> None:
    _write_json(
        path,
        {
            "pid": os.getpid(),
            "t": time.monotonic(),
            "final": final,
            "lag_ms": {str(k): v for k, v in hist.items()},
            "patterns": _masker_patterns(),
        },
    )


def _triggerer_process(workdir: Path) -> None:
    """Run ``airflow triggerer`` with the trigger table replaced (see the module docstring)."""
    import asyncio
    import uuid

    spec = json.loads((workdir / "spec.json").read_text())
    events_file = (workdir / "events.jsonl").open("a", buffering=1)
    sup_stats = workdir / "supervisor.json"
    runner_stats = workdir / "runner.json"

    from airflow._shared.module_loading import import_string
    from airflow.executors.workloads import RunTrigger
    from airflow.executors.workloads.task import TaskInstanceDTO
    from airflow.jobs import triggerer_job_runner as tjr
    from airflow.models.trigger import Trigger
    from airflow.utils.helpers import log_filename_template_renderer

    trigger_class = import_string(spec["trigger_class"])
    dag_version = uuid.uuid4()
    timeout_after = datetime.now(timezone.utc) + timedelta(days=7)  # a sensor's default timeout
    # Built as the sensor's defer() builds them: the trigger object, then Trigger.from_object
    # (serialize() + encrypted kwargs), as the scheduler stores them.
    rows = {i + 1: Trigger.from_object(trigger_class(**kw)) for i, kw in enumerate(spec["kwargs"])}
    pending = set(rows)
    state: dict[str, Any] = {"fed_at": None, "last_dump": 0.0}

    sup = tjr.TriggerRunnerSupervisor

    def load_triggers(self: Any) -> None:  # replaces Trigger.assign_unassigned + ids_for_triggerer
        self.update_triggers(set(pending))

    def build_trigger_workloads(self: Any, new_ids: set[int]) -> list[Any]:  # replaces the DB read
        render = log_filename_template_renderer()
        out = []
        for trigger_id in sorted(new_ids):
            ti = TaskInstanceDTO(
                id=uuid.uuid4(),
                dag_id="bench_triggerer",
                task_id="wait_for_settlements",
                run_id="bench",
                try_number=1,
                map_index=trigger_id - 1,
                dag_version_id=dag_version,
                pool_slots=1,
                priority_weight=1,
            )
            log_path = render(ti=ti)
            self.logger_cache[trigger_id] = tjr.TriggerLoggingFactory(
                log_path=f"{log_path}.trigger.{self.job.id}.log", ti=ti
            )
            row = rows[trigger_id]
            out.append(
                RunTrigger(
                    id=trigger_id,
                    classpath=row.classpath,
                    encrypted_kwargs=row.encrypted_kwargs,
                    ti=ti,
                    timeout_after=timeout_after,
                )
            )
        if out and state["fed_at"] is None:
            state["fed_at"] = time.monotonic()
        return out

    def on_trigger_event(self: Any, trigger_id: int, event: Any) -> None:  # replaces submit_event
        pending.discard(trigger_id)
        record = {"id": trigger_id, "t": time.monotonic(), "payload": event.payload}
        events_file.write(json.dumps(record) + "\n")

    def on_trigger_failure(self: Any, trigger_id: int, exc: Any) -> None:  # replaces submit_failure
        pending.discard(trigger_id)
        events_file.write(json.dumps({"id": trigger_id, "t": time.monotonic(), "failure": exc}) + "\n")

    def clean_unused(self: Any) -> None:  # replaces Trigger.clean_unused (nothing to delete)
        return None

    original_metrics = sup.emit_metrics

    def emit_metrics(self: Any) -> None:  # the real metrics, plus our stats every second
        original_metrics(self)
        now = time.monotonic()
        if now - state["last_dump"] >= 1.0:
            state["last_dump"] = now
            _write_json(
                sup_stats,
                {
                    "pid": os.getpid(),
                    "t": now,
                    "fed_at": state["fed_at"],
                    "patterns": _masker_patterns(),
                    "pending": len(pending),
                },
            )

    sup.load_triggers = load_triggers
    sup.build_trigger_workloads = build_trigger_workloads
    sup.on_trigger_event = on_trigger_event
    sup.on_trigger_failure = on_trigger_failure
    sup.clean_unused = clean_unused
    sup.emit_metrics = emit_metrics

    original_arun = tjr.TriggerRunner.arun

    async def arun(self: Any) -> None:  # the runner's own loop, plus the lag ticker
        ticker = asyncio.create_task(_ticker(runner_stats), name="bench-ticker")
        try:
            await original_arun(self)
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)

    tjr.TriggerRunner.arun = arun

    from airflow.cli.cli_parser import get_parser

    args = get_parser().parse_args(
        ["triggerer", "--skip-serve-logs", "--capacity", str(max(1000, len(rows)))]
    )
    try:
        args.func(args)
    finally:
        _write_json(
            sup_stats,
            {
                "pid": os.getpid(),
                "t": time.monotonic(),
                "fed_at": state["fed_at"],
                "patterns": _masker_patterns(),
                "pending": len(pending),
                "final": True,
            },
        )


# ------------------------------------------------------------------ the orchestrator


def _proc_figures(pid: int | None) -> dict[str, float]:
    """CPU seconds (user + system) and peak RSS (VmHWM) of a live process, from /proc."""
    if not pid:
        return {"cpu": float("nan"), "peak_rss": float("nan")}
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks
        peak = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
        return {"cpu": cpu, "peak_rss": peak}
    except OSError:
        return {"cpu": float("nan"), "peak_rss": float("nan")}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def request_kind(record: dict[str, Any], partner_id: str) -> str:
    """Classify one emulator request-log record: partner token, exchange, merchant token, list, ..."""
    path = record["path"]
    if path.endswith("/auth/exchange_token"):
        return "exchange"
    if path.endswith("/auth/token"):
        return "partner token" if record.get("account_id") == partner_id else "merchant token"
    if record["method"] == "GET" and path.endswith("/settlements"):
        return "list"
    return "other"


def reported_merchants(payload: Any, merchants: set[str]) -> set[str]:
    """
    The merchants an event reports: mappings naming a merchant (``account_id``, or a key) with a
    non-empty ``settlements`` list, or without that key. Error events report none.
    """
    found: set[str] = set()

    def has_settlements(node: dict[str, Any]) -> bool:
        return bool(node.get("settlements", [None]))

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("status") == "error":
                return
            aid = node.get("account_id")
            if isinstance(aid, str) and aid in merchants and has_settlements(node):
                found.add(aid)
            for key, value in node.items():
                if key in merchants and value and (not isinstance(value, dict) or has_settlements(value)):
                    found.add(key)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(payload)
    return found


def build_kwargs(args: argparse.Namespace, merchants: list[str]) -> list[dict[str, Any]]:
    """The kwargs of every trigger to feed in (the sensor's own by default)."""
    since = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    base: dict[str, Any] = {
        "since": since,
        "payment_providers": None,
        "dintero_conn_id": "dintero_default",
        "poll_interval": 5.0,
    }
    base.update(json.loads(args.trigger_kwargs))
    if args.mode == "partner":
        return [{**base, args.accounts_kwarg: list(merchants)}]
    return [{**base, args.account_kwarg: merchant} for merchant in merchants]


class Run:
    """One size: the emulator, the triggerer process, and what was seen of them."""

    def __init__(self, args: argparse.Namespace, size: int, template_db: Path, workdir: Path) -> None:
        self.args, self.size, self.workdir = args, size, workdir
        self.template_db = template_db
        self.first_list: dict[str, float] = {}
        self.added: dict[str, float] = {}
        self.reported: dict[str, float] = {}
        self.events = 0
        self.errors: list[Any] = []
        self.log_seen = 0
        self.kinds: Counter[str] = Counter()
        self.lists_in_window = 0
        self.lists_at_polled = 0
        self.marks: dict[str, float] = {}
        self.cpu: dict[str, dict[str, dict[str, float]]] = {}
        self.lag_at_polled: dict[int, int] = {}

    # ---------------------------------------------------------------- helpers

    def _env(self, state: dict[str, Any]) -> dict[str, str]:
        home = self.workdir / "home"
        dags = self.workdir / "dags"
        dags.mkdir(exist_ok=True)
        env = dict(os.environ)
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                "AIRFLOW__CORE__FERNET_KEY": FERNET_KEY,
                "AIRFLOW_CONN_DINTERO_DEFAULT": json.dumps(
                    {
                        "conn_type": "dintero",
                        "host": state["base_url"],
                        "login": state["partner_client_id"],
                        "password": state["partner_client_secret"],
                        "extra": {"account_id": state["partner_id"]},
                    }
                ),
            }
        )
        return env

    def _scan_log(self, state: dict[str, Any], now: float) -> None:
        """New emulator log records since the last scan: first list per merchant, kinds."""
        log = control(state, "GET", "requests")
        for record in log[self.log_seen :]:
            kind = request_kind(record, state["partner_id"])
            self.kinds[kind] += 1
            if record["status"] >= 400:
                self.kinds["answered >= 400"] += 1
            if kind == "list":
                aid = record.get("account_id") or record["path"].split("/")[3]
                self.first_list.setdefault(aid, now)
        self.log_seen = len(log)

    def _scan_events(self, merchants: set[str]) -> None:
        path = self.workdir / "events.jsonl"
        if not path.exists():
            return
        lines = path.read_text().splitlines()
        for line in lines[self.events :]:
            try:
                event = json.loads(line)
            except ValueError:
                break  # a line being written
            self.events += 1
            if "failure" in event:
                self.errors.append(event["failure"])
                continue
            payload = event.get("payload")
            if isinstance(payload, dict) and payload.get("status") == "error":
                self.errors.append(payload.get("message"))
            for merchant in reported_merchants(payload, merchants):
                self.reported.setdefault(merchant, event["t"])

    def _snapshot(self, label: str, sup_pid: int, runner_pid: int | None) -> None:
        self.cpu[label] = {"supervisor": _proc_figures(sup_pid), "runner": _proc_figures(runner_pid)}

    # ---------------------------------------------------------------- the run

    def execute(self) -> dict[str, Any]:
        args, size = self.args, self.size
        seed = {"merchants": size, "settlements_per_provider": 0, "reports_per_merchant": 0}
        load_start = os.getloadavg()
        with emulator_process(seed) as state:
            merchants = list(state["merchant_ids"])
            merchant_set = set(merchants)
            (self.workdir / "home").mkdir(parents=True)
            shutil.copy(self.template_db, self.workdir / "home" / "airflow.db")
            kwargs = build_kwargs(args, merchants)
            spec = {"trigger_class": args.trigger_class, "kwargs": kwargs}
            (self.workdir / "spec.json").write_text(json.dumps(spec))
            out = (self.workdir / "triggerer.out").open("wb")
            t_start = time.monotonic()
            proc = subprocess.Popen(
                [sys.executable, __file__, "_triggerer", str(self.workdir)],
                env=self._env(state),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            deadline = t_start + args.budget
            add_deadline = t_start + args.budget * args.add_after
            runner_pid: int | None = None
            fed_at: float | None = None
            phase = "first polls"
            try:
                while time.monotonic() < deadline and proc.poll() is None:
                    time.sleep(args.sample)
                    now = time.monotonic()
                    runner = _read_json(self.workdir / "runner.json")
                    runner_pid = runner.get("pid", runner_pid)
                    fed_at = _read_json(self.workdir / "supervisor.json").get("fed_at") or fed_at
                    if phase == "first polls":
                        self._scan_log(state, now)
                        if len(self.first_list) >= size:
                            self.marks["all polled"] = now
                            self._snapshot("all polled", proc.pid, runner_pid)
                            self.lag_at_polled = {int(k): int(v) for k, v in runner.get("lag_ms", {}).items()}
                            self.lists_at_polled = self.kinds["list"]
                            phase = "steady"
                        elif now >= add_deadline:
                            phase = "add"
                    if phase == "steady" and now - self.marks["all polled"] >= args.steady:
                        self._scan_log(state, now)
                        self.lists_in_window = self.kinds["list"] - self.lists_at_polled
                        self.marks["steady end"] = now
                        self._snapshot("steady end", proc.pid, runner_pid)
                        phase = "add"
                    if phase == "add":
                        self.marks["first add"] = time.monotonic()
                        for merchant in merchants:
                            body = {"account_id": merchant, "provider": "vipps"}
                            control(state, "POST", "settlements", body)
                            self.added[merchant] = time.monotonic()
                        self.marks["last add"] = time.monotonic()
                        phase = "reports"
                    if phase == "reports":
                        if len(self.first_list) < size:
                            self._scan_log(state, now)
                        self._scan_events(merchant_set)
                        if len(self.reported) >= size:
                            break
                if proc.poll() is not None:
                    tail = (self.workdir / "triggerer.out").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"the triggerer process exited ({proc.returncode}):\n{tail}")
                self._scan_events(merchant_set)
                self.marks["end"] = time.monotonic()
                self._snapshot("end", proc.pid, runner_pid)
                runner_final = _read_json(self.workdir / "runner.json")
                sup_final = _read_json(self.workdir / "supervisor.json")
            finally:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait()
                out.close()
            self.log_seen = 0
            self.kinds = Counter()
            self._scan_log(state, time.monotonic())
        after_stop = _read_json(self.workdir / "supervisor.json")
        return self._figures(
            t_start, fed_at, runner_final, sup_final, after_stop, load_start, os.getloadavg(), proc.returncode
        )

    def _figures(
        self,
        t_start: float,
        fed_at: float | None,
        runner: dict[str, Any],
        sup: dict[str, Any],
        after_stop: dict[str, Any],
        load_start: tuple[float, float, float],
        load_end: tuple[float, float, float],
        returncode: int | None,
    ) -> dict[str, Any]:
        size, poll_interval = self.size, float(json.loads(self.args.trigger_kwargs).get("poll_interval", 5.0))
        ref = fed_at or t_start
        first = sorted(t - ref for t in self.first_list.values())
        latencies = sorted(self.reported[m] - self.added[m] for m in self.reported if m in self.added)
        lag: Counter[int] = Counter({int(k): v for k, v in runner.get("lag_ms", {}).items()})
        lag_after: Counter[int] = lag - Counter(self.lag_at_polled) if self.lag_at_polled else Counter()
        end = self.cpu.get("end", {})
        window = None
        if "steady end" in self.cpu and "all polled" in self.cpu and self.lists_in_window:
            spent = sum(
                self.cpu["steady end"][p]["cpu"] - self.cpu["all polled"][p]["cpu"]
                for p in ("runner", "supervisor")
            )
            window = {
                "cpu_ms_per_list": spent * 1000 / self.lists_in_window,
                "lists_per_merchant_cycle": self.lists_in_window
                / size
                / ((self.marks["steady end"] - self.marks["all polled"]) / poll_interval),
            }
        return {
            "size": size,
            "triggers": 1 if self.args.mode == "partner" else size,
            "load_start": load_start,
            "load_end": load_end,
            "startup": (fed_at - t_start) if fed_at else None,
            "polled": len(first),
            "all_polled": first[-1] if len(first) >= size else None,
            "elapsed": self.marks["end"] - ref,
            "wall": self.marks["end"] - t_start,
            "added": len(self.added),
            "reported": len(self.reported),
            "all_reported": (max(self.reported.values()) - self.marks["first add"])
            if self.added and len(self.reported) >= size
            else None,
            "after_add": (self.marks["end"] - self.marks["first add"]) if self.added else None,
            "add_seconds": (self.marks["last add"] - self.marks["first add"]) if self.added else None,
            "latency_max": latencies[-1] if latencies else None,
            "latency_median": latencies[len(latencies) // 2] if latencies else None,
            "within_two_polls": sum(1 for x in latencies if x <= 2 * poll_interval),
            "errors": len(self.errors),
            "lag_max": max(lag) if lag else None,
            "lag_p99": _percentile(lag, 0.99),
            "lag_samples": sum(lag.values()),
            "lag_after_max": max(lag_after) if lag_after else None,
            "lag_after_p99": _percentile(lag_after, 0.99) if lag_after else None,
            "lag_after_samples": sum(lag_after.values()),
            "cpu_polled": (
                self.cpu["all polled"]["runner"]["cpu"],
                self.cpu["all polled"]["supervisor"]["cpu"],
            )
            if "all polled" in self.cpu
            else None,
            "cpu_runner": end.get("runner", {}).get("cpu"),
            "cpu_supervisor": end.get("supervisor", {}).get("cpu"),
            "rss_runner": end.get("runner", {}).get("peak_rss"),
            "rss_supervisor": end.get("supervisor", {}).get("peak_rss"),
            "window": window,
            "kinds": dict(self.kinds),
            "patterns_runner": runner.get("patterns", {}),
            "patterns_supervisor": after_stop.get("patterns") or sup.get("patterns", {}),
            "returncode": returncode,
        }


def migrate_template(workdir: Path) -> Path:
    """``airflow db migrate`` once, into a template SQLite file copied for every size."""
    home = workdir / "template"
    home.mkdir()
    env = dict(os.environ, AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    env["AIRFLOW__CORE__FERNET_KEY"] = FERNET_KEY
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], env=env, check=True, capture_output=True)
    return home / "airflow.db"


# ------------------------------------------------------------------ the table


def _s(value: float | None, unit: str = " s", fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value) + unit


def _mb(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value / MB:,.0f}"


def table(results: list[dict[str, Any]], budget: float) -> list[tuple[str, list[str], str]]:
    """Rows: (measure, one value per size, target)."""
    rows: list[tuple[str, list[str], str]] = []

    def add(measure: str, target: str, fn: Callable[[dict[str, Any]], str]) -> None:
        rows.append((measure, [fn(r) for r in results], target))

    add("triggers in the triggerer", "-", lambda r: str(r["triggers"]))
    add(
        "load average (1 min) at start / end",
        "-",
        lambda r: f"{r['load_start'][0]:.1f} / {r['load_end'][0]:.1f}",
    )
    add("triggerer start until the triggers were handed over", "-", lambda r: _s(r["startup"]))
    add(
        "every merchant polled once (after hand-over)",
        "< 60 s",
        lambda r: (
            _s(r["all_polled"])
            if r["all_polled"] is not None
            else f"{r['polled']} of {r['size']} in {r['elapsed']:.0f} s"
        ),
    )
    add(
        "every new settlement reported (after the first was added)",
        "< 2 polls",
        lambda r: (
            _s(r["all_reported"])
            if r["all_reported"] is not None
            else (
                "not added" if not r["added"] else f"{r['reported']} of {r['size']} in {r['after_add']:.0f} s"
            )
        ),
    )
    add(
        "  per merchant, added -> event: median / max",
        "-",
        lambda r: f"{_s(r['latency_median'])} / {_s(r['latency_max'])}",
    )
    add(
        "  reported within two poll intervals of being added",
        "all",
        lambda r: f"{r['within_two_polls']} of {r['size']}",
    )
    add("  (adding them through the control API took)", "-", lambda r: _s(r["add_seconds"]))
    add("error events or trigger failures", "0", lambda r: str(r["errors"]))
    add(
        "event-loop lag p99 / max (whole run)",
        "p99 < 100 ms",
        lambda r: f"{r['lag_p99']} / {r['lag_max']} ms" if r["lag_samples"] else "no samples",
    )
    add(
        "event-loop lag p99 / max (after all were polled)",
        "p99 < 100 ms",
        lambda r: "-" if r["lag_after_p99"] is None else f"{r['lag_after_p99']} / {r['lag_after_max']} ms",
    )
    add(
        "CPU s runner + supervisor (whole run)",
        "-",
        lambda r: f"{r['cpu_runner']:.1f} + {r['cpu_supervisor']:.1f}",
    )
    add(
        "CPU s runner + supervisor until every merchant was polled once",
        "-",
        lambda r: "-" if r["cpu_polled"] is None else f"{r['cpu_polled'][0]:.1f} + {r['cpu_polled'][1]:.1f}",
    )
    add(
        "  CPU share they got (CPU s / wall s from triggerer start; 2 cores = 2.0)",
        "-",
        lambda r: f"{(r['cpu_runner'] + r['cpu_supervisor']) / r['wall']:.2f}",
    )
    add(
        "steady CPU ms per settlements list (both processes)",
        "flat in N",
        lambda r: "-" if not r["window"] else f"{r['window']['cpu_ms_per_list']:.1f}",
    )
    add(
        "steady list requests per merchant per poll interval",
        "~1",
        lambda r: "-" if not r["window"] else f"{r['window']['lists_per_merchant_cycle']:.2f}",
    )
    add(
        "peak RSS runner / supervisor (MB)",
        "< 500 each",
        lambda r: f"{_mb(r['rss_runner'])} / {_mb(r['rss_supervisor'])}",
    )
    add(
        "requests: partner token / exchange / merchant token",
        "1 / N / N",
        lambda r: " / ".join(str(r["kinds"].get(k, 0)) for k in TOKEN_KINDS),
    )
    add(
        "requests: settlements lists / other / answered >= 400",
        "-",
        lambda r: " / ".join(str(r["kinds"].get(k, 0)) for k in ("list", "other", "answered >= 400")),
    )
    add(
        "token requests per merchant",
        "~2 (+1)",
        lambda r: f"{sum(r['kinds'].get(k, 0) for k in TOKEN_KINDS) / r['size']:.2f}",
    )
    add(
        "masker patterns runner / supervisor (SDK masker)",
        "flat in N",
        lambda r: f"{r['patterns_runner'].get('sdk', '?')} / {r['patterns_supervisor'].get('sdk', '?')}",
    )
    base = results[0]
    for r in results[1:]:
        ratio_rows = []
        if r["window"] and base["window"]:
            ratio_rows.append(
                (
                    f"steady CPU per list at {r['size']} / at {base['size']}",
                    f"{r['window']['cpu_ms_per_list'] / base['window']['cpu_ms_per_list']:.2f}x",
                    "<= 1.2x",
                )
            )
        if r["all_polled"] is not None and base["all_polled"]:
            ratio_rows.append(
                (
                    f"time to poll every merchant once, per merchant, at {r['size']} / at {base['size']}",
                    f"{(r['all_polled'] / r['size']) / (base['all_polled'] / base['size']):.2f}x",
                    "~1x (linear)",
                )
            )
        for measure, value, target in ratio_rows:
            rows.append((measure, [value if x is r else "" for x in results], target))
    rows.append(("size bound (seconds from triggerer start)", [f"{budget:.0f}" for _ in results], "-"))
    return rows


def render(results: list[dict[str, Any]], rows: list[tuple[str, list[str], str]], command: str) -> str:
    """Markdown: machine, load, command, the table."""
    import platform

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    head = "| measure | " + " | ".join(f"N = {r['size']}" for r in results) + " | target |"
    lines = [
        "# Triggerer benchmark",
        "",
        f"Machine: {machine}; run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; command: `{command}`.",
        "The machine is shared: see the load average row (2 cores; above 2 the figures are slowed).",
        "",
        head,
        "|---|" + "---|" * len(results) + "---|",
    ]
    lines += [f"| {m} | " + " | ".join(vals) + f" | {t} |" for m, vals, t in rows]
    return "\n".join(lines) + "\n"


def parse_args(argv: Iterable[str] | None) -> argparse.Namespace:
    """Command line of the benchmark."""
    parser = argparse.ArgumentParser(description="Settlement triggers at scale in Airflow's real triggerer.")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="merchant counts")
    parser.add_argument("--budget", type=float, default=240.0, help="seconds per size from triggerer start")
    parser.add_argument(
        "--add-after",
        type=float,
        default=0.5,
        help="add the settlements at this fraction of the budget if not every merchant was polled by then",
    )
    parser.add_argument("--steady", type=float, default=20.0, help="steady window after all were polled, s")
    parser.add_argument("--sample", type=float, default=1.0, help="seconds between two looks")
    parser.add_argument("--mode", choices=("per-merchant", "partner"), default="per-merchant")
    parser.add_argument("--trigger-class", default=DEFAULT_CLASS, help="dotted path of the trigger class")
    parser.add_argument(
        "--trigger-kwargs", default="{}", help="JSON merged over the sensor's kwargs (poll_interval 5)"
    )
    parser.add_argument("--account-kwarg", default="account_id", help="per-merchant: the merchant's kwarg")
    parser.add_argument("--accounts-kwarg", default="account_ids", help="partner: the merchant list's kwarg")
    parser.add_argument("--markdown", type=Path, default=REPO / "bench" / "RESULTS-triggerer.md")
    parser.add_argument("--keep", action="store_true", help="keep the work directories (logs, events)")
    return parser.parse_args(list(argv) if argv is not None else None)


def run(
    argv: Iterable[str] | None = None, row: Callable[[str, str, str, str], None] | None = None
) -> list[dict[str, Any]]:
    """Run every size; print the table, write the Markdown; also feed ``row`` (bench/run.py)."""
    args = parse_args(argv)
    command = "python bench/triggerer.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results = []
    root = Path(tempfile.mkdtemp(prefix="bench-triggerer-"))
    try:
        template = migrate_template(root)
        for size in args.sizes:
            print(f"triggerer: {size} merchants ({args.mode}, {args.trigger_class})", flush=True)
            result = Run(args, size, template, root / f"n{size}").execute()
            print(json.dumps(result), flush=True)
            results.append(result)
    finally:
        if args.keep:
            print(f"work directories kept in {root}", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
    rows = table(results, args.budget)
    text = render(results, rows, command.strip())
    print(text, flush=True)
    if args.markdown:
        args.markdown.write_text(text)
    if row is not None:
        for measure, values, target in rows:
            shown = "; ".join(f"N={r['size']}: {v}" for r, v in zip(results, values, strict=True) if v)
            row("triggerer", measure, shown, target)
    return results


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "_triggerer":
        _triggerer_process(Path(sys.argv[2]))
    else:
        run()
