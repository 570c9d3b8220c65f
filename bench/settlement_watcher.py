"""
Settlement added -> files in S3, live: ``example_dags/settlements_on_event.py`` alone in a real
Airflow 3.3 deployment (api-server with the webhook receiver, scheduler, dag-processor,
triggerer, LocalExecutor; moto S3 and the emulator on 127.0.0.1).

Three paths, each timed from the emulator recording the settlement to its manifest in S3:

* **watcher**: ``DinteroSettlementEventTrigger`` polling every ``--poll-interval`` seconds
  (default 30, the example's default; the target is 60 s);
* **restart**: a settlement added while the triggerer is stopped (SIGTERM), timed until its
  files are in S3 after the triggerer is started again (start-up included);
* **webhook**: a merchant subscribed to ``settlement_add`` at the receiver
  (``/dintero-webhooks/<partner>``, signed with the Variable's secret); the emulator delivers at
  once (the target is 15 s).

Then it waits one more poll interval and checks, from the metadata DB, that every settlement was
reported by the watcher exactly once and every file written exactly once. Prints a table; asserts
nothing about time. Run: ``.venv-af3/bin/python bench/settlement_watcher.py [--samples 3]``
(about 5 minutes; writes under ``$TMPDIR/dintero-watcher``).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from airflow_provider_dintero.emulator import DinteroEmulator  # noqa: E402
from airflow_provider_dintero.emulator.pytest_plugin import connection_json  # noqa: E402
from airflow_provider_dintero.events import raw_extra  # noqa: E402
from tests.system import deployment as system  # noqa: E402

WORK = Path(tempfile.gettempdir()) / "dintero-watcher"
DAG_FILE = "settlements_on_event.py"


def _deployment(emu: DinteroEmulator, poll_interval: float) -> system.Deployment:
    class Watched(system.Deployment):
        @property
        def env(self) -> dict[str, str]:
            env = super().env
            env.update(
                {
                    "AIRFLOW__CORE__DAGS_FOLDER": str(WORK / "dags"),
                    # watchers are registered only for unpaused DAGs, when the file is parsed
                    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                    "AIRFLOW_CONN_DINTERO_DEFAULT": connection_json(emu),
                    "DINTERO_POLL_INTERVAL": str(poll_interval),
                    "DINTERO_PARTNER_ID": emu.partner_id,
                }
            )
            return env

        @property
        def output_dir(self) -> Path:
            return WORK / "out"

    return Watched(home=WORK / "home", emulator_url=emu.base_url)


def _time(dep: system.Deployment, emu: DinteroEmulator, account_id: str, provider: str) -> tuple[str, float]:
    """Add a settlement; return its id and the seconds until its files are in S3."""
    start = time.monotonic()
    sid = str(emu.add_settlement(account_id, provider=provider)["id"])
    system.wait_until(lambda: dep.manifest_in_s3(account_id, sid), 300, f"settlement {sid} in S3", 0.2)
    return sid, time.monotonic() - start


def _summary(db: Path) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """Per settlement id: watcher events, webhook events, and copies that wrote its objects."""
    conn = sqlite3.connect(db)
    polled: Counter[str] = Counter()
    hooked: Counter[str] = Counter()
    for (extra,) in conn.execute("select extra from asset_event"):
        part = raw_extra(SimpleNamespace(extra=json.loads(extra))) or {}
        target = hooked if part.get("source") == "webhook" else polled
        target.update(part.get("settlement_ids") or [])
    writes: Counter[str] = Counter()
    for (value,) in conn.execute(
        "select value from xcom where task_id = 'copy_to_s3' and key = 'return_value'"
    ):
        data = json.loads(value)
        data = json.loads(data) if isinstance(data, str) else data
        for line in (data.get("merchants") or {}).values():  # the example's batched copies
            if line.get("written"):
                writes.update(line.get("settlement_ids") or [])
    return polled, hooked, writes


def main() -> None:
    """Run the scenario and print what happened."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--poll-interval", type=float, default=30.0)
    parser.add_argument(
        "--samples", type=int, default=3, help="settlements timed per path (watcher, webhook)"
    )
    args = parser.parse_args()
    (WORK / "dags").mkdir(parents=True, exist_ok=True)
    (WORK / "dags" / DAG_FILE).write_text((REPO / "example_dags" / DAG_FILE).read_text())
    times: dict[str, list[float]] = {"watcher": [], "restart": [], "webhook": []}
    added: list[str] = []
    with DinteroEmulator() as emu:
        dep = _deployment(emu, args.poll_interval)
        try:
            dep.start()
            dep.s3().create_bucket(Bucket=system.BUCKET)
            system.wait_until(
                lambda: "Watching Dintero settlements" in dep.output("triggerer"), 240, "the watcher", 1
            )
            m1, m2, m3 = emu.merchant_ids[:3]
            for n in range(args.samples):
                sid, seconds = _time(dep, emu, m1, ("vipps", "klarna", "walley")[n % 3])
                added.append(sid)
                times["watcher"].append(seconds)

            down: list[tuple[str, float]] = []

            def add_while_down() -> None:
                down.append((str(emu.add_settlement(m2, provider="vipps")["id"]), time.monotonic()))

            dep.restart("triggerer", while_down=add_while_down)
            ((sid, at),) = down
            system.wait_until(
                lambda: dep.manifest_in_s3(m2, sid), 300, "the settlement added while down", 0.2
            )
            times["restart"].append(time.monotonic() - at)
            added.append(sid)

            partner = emu.partner_id
            secret = secrets.token_urlsafe(32)
            dep.airflow("variables", "set", f"dintero_webhook_secret_{partner}", secret, keep=False)
            os.environ["AIRFLOW_CONN_DINTERO_DEFAULT"] = connection_json(emu)
            from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook

            DinteroPartnerHook().create_webhook_subscription(
                m3,
                {
                    "config": {
                        "url": f"{dep.api_url}/dintero-webhooks/{partner}",
                        "secret": {"value": secret},
                    },
                    "events": ["settlement_add"],
                },
            )
            for _ in range(args.samples):
                sid, seconds = _time(dep, emu, m3, "klarna")
                added.append(sid)
                times["webhook"].append(seconds)
                time.sleep(2)  # let the run finish before the next one: each sample starts quiet
            statuses = Counter(d.status for d in emu.deliveries if d.event == "settlement_add")

            time.sleep(args.poll_interval + 15)  # a repeat, if any, would show now
            polled, hooked, writes = _summary(dep.home / "airflow.db")
        finally:
            dep.stop()
    print(f"poll interval {args.poll_interval:.0f} s, {args.samples} sample(s) per path; Airflow 3.3 live")
    print("| path | samples | median s | max s |")
    print("|---|---|---|---|")
    for path, values in times.items():
        print(f"| {path} | {len(values)} | {statistics.median(values):.1f} | {max(values):.1f} |")
    per_settlement = {sid: writes[sid] for sid in added}
    print("webhook deliveries by receiver status:", dict(statuses))
    print(
        "watcher events per settlement:",
        sorted(polled[sid] for sid in added),
        "(each 1 = none lost or repeated)",
    )
    print("webhook events per webhook settlement:", [hooked[sid] for sid in added[-args.samples :]])
    print("each settlement written by one copy:", all(n == 1 for n in per_settlement.values()))


if __name__ == "__main__":
    main()
