"""
The settlement watcher live: ``DinteroSettlementEventTrigger`` in a real Airflow 3.3 deployment
(api-server, scheduler, dag-processor, triggerer, LocalExecutor; moto S3 and the emulator on
127.0.0.1), running ``example_dags/settlements_on_event.py`` alone.

Adds one settlement to each of two merchants, waits for their files in S3, stops the triggerer
(SIGTERM), adds a third settlement while it is down, starts it again and waits for that file.
Prints the seconds from each addition to its files in S3, the asset events recorded, which run
consumed which event, and the watermarks in the asset state store. A settlement reported twice or
never shows as ``each once: False``. Asserts nothing about time. Run: ``.venv-af3/bin/python
bench/settlement_watcher.py`` (about 3 minutes; writes under ``$TMPDIR/dintero-watcher``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from airflow_provider_dintero.emulator import DinteroEmulator  # noqa: E402
from airflow_provider_dintero.emulator.pytest_plugin import connection_json  # noqa: E402
from tests.system import deployment as system  # noqa: E402

WORK = Path(tempfile.gettempdir()) / "dintero-watcher"
DAG_ID = "dintero_settlements_on_event"
POLL_INTERVAL = "5"


def main() -> None:
    """Run the scenario and print what happened."""
    (WORK / "dags").mkdir(parents=True, exist_ok=True)
    (WORK / "dags" / "settlements_on_event.py").write_text(
        (REPO / "example_dags" / "settlements_on_event.py").read_text()
    )
    with DinteroEmulator() as emu:

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
                        "DINTERO_POLL_INTERVAL": POLL_INTERVAL,
                        "DINTERO_PARTNER_ID": emu.partner_id,
                    }
                )
                return env

            @property
            def output_dir(self) -> Path:
                return WORK / "out"

        dep = Watched(home=WORK / "home", emulator_url=emu.base_url)
        try:
            dep.start()
            import boto3

            s3 = boto3.client(
                "s3",
                endpoint_url=dep.s3_url,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            s3.create_bucket(Bucket=system.BUCKET)

            def landed(ids: list[str]) -> bool:
                keys = [o["Key"] for o in s3.list_objects_v2(Bucket=system.BUCKET).get("Contents", [])]
                return all(any(sid in k for k in keys) for sid in ids)

            log = dep.output_dir / "triggerer.log"
            system.wait_until(
                lambda: "Watching Dintero settlements" in log.read_text(errors="replace"),
                240,
                "the watcher",
                1,
            )
            m1, m2 = emu.merchant_ids[:2]
            first = [
                emu.add_settlement(m1, provider="vipps")["id"],
                emu.add_settlement(m2, provider="klarna")["id"],
            ]
            start = time.monotonic()
            system.wait_until(lambda: landed(first[:1]), 240, "the first files", 0.5)
            print(
                f"added -> first merchant's files in S3: {time.monotonic() - start:.1f} s "
                f"(poll interval {POLL_INTERVAL} s)"
            )
            triggerer = dep.processes["triggerer"]
            os.killpg(triggerer.pid, 15)
            triggerer.wait(60)
            second = [emu.add_settlement(m1, provider="walley")["id"]]
            dep._spawn("triggerer", [str(system.VENV_BIN / "airflow"), "triggerer"])
            start = time.monotonic()
            system.wait_until(lambda: landed(first + second), 300, "the files after the restart", 0.5)
            print(
                f"added while the triggerer was down -> files in S3: {time.monotonic() - start:.1f} s "
                "(incl. start-up)"
            )
            time.sleep(3 * float(POLL_INTERVAL))  # a repeat, if any, would show now
            db = sqlite3.connect(dep.home / "airflow.db")
            events = db.execute("select id, extra from asset_event order by id").fetchall()
            named = [sid for _, extra in events for sid in json.loads(extra)["payload"]["settlement_ids"]]
            print(
                "asset events:",
                len(events),
                "consumed (run, event):",
                db.execute("select * from dagrun_asset_event").fetchall(),
            )
            print("state store:", db.execute("select key, value from asset_state_store").fetchall())
            print("each once:", sorted(named) == sorted(first + second))
        finally:
            dep.stop()


if __name__ == "__main__":
    main()
