"""
The demo: every DAG in example_dags/ on a real Airflow, against the Dintero emulator and
moto's S3 server, both on 127.0.0.1. Prints what was provisioned and a short table of what
landed in S3 (per merchant and payout provider: settlements, files, bytes) with the S3
prefix, then stops what it started. Run through ``bash scripts/demo.sh`` (which builds the
environment).

``DINTERO_DEMO_STORE=gcs`` or ``DINTERO_DEMO_STORE=azure`` sends the example DAGs' files to
gcp-storage-emulator or Azurite (from ``.azurite/``, installed by the test suite) on 127.0.0.1
instead, through their ``destination`` param (``DINTERO_DEMO_DESTINATION``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
BUCKET = "dintero-demo"
#: Where the example DAGs write: s3 (moto, the default), gcs (gcp-storage-emulator) or azure (Azurite).
STORE = os.environ.get("DINTERO_DEMO_STORE", "s3")
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
PREFIX = "dintero/"  # every example DAG writes under this prefix
# Today: the settlements example waits for settlements recorded in the run's window.
LOGICAL_DATE = time.strftime("%Y-%m-%d", time.gmtime())
# New settlements that "arrive" before the settlements DAG runs, one per payout provider.
ARRIVING_PROVIDERS = ("dintero_psp", "vipps", "payex", "bambora", "collector", "klarna")
# Per-DAG run configuration; DAGs not listed run with their defaults.
DAG_CONF: dict[str, dict[str, Any]] = {
    "dintero_provision_merchant": {"merchant_id": "T11200001"},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"demo: {url} did not come up within {timeout:.0f} s")


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _post_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="dintero-demo-"))
    emulator_port, s3_port = _free_port(), _free_port()
    base_url = f"http://127.0.0.1:{emulator_port}"
    s3_url = f"http://127.0.0.1:{s3_port}"
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(work / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
            "AIRFLOW__CORE__FERNET_KEY": "fwWeVJ0xjE3cDzbIEYYbYbrV24bDyG63uDORbXapXTU=",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "DINTERO_DEMO_BUCKET": BUCKET,
        }
    )
    started: list[subprocess.Popen[bytes]] = []
    try:
        print(f"demo: starting the Dintero emulator on {base_url} and moto's S3 on {s3_url}", flush=True)
        started.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "airflow_provider_dintero.emulator",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(emulator_port),
                ],
                stdout=subprocess.DEVNULL,
                stderr=(work / "emulator.log").open("wb"),
                env=env,
            )
        )
        started.append(
            subprocess.Popen(
                [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)],
                stdout=subprocess.DEVNULL,
                stderr=(work / "moto.log").open("wb"),
                env=env,
            )
        )
        _wait_for(f"{base_url}/_emulator/state")
        _wait_for(s3_url)
        state = _get_json(f"{base_url}/_emulator/state")
        env["AIRFLOW_CONN_DINTERO_DEFAULT"] = json.dumps(
            {
                "conn_type": "dintero",
                "host": base_url,
                "login": state["partner_client_id"],
                "password": state["partner_client_secret"],
                "extra": {
                    "account_id": state["partner_id"],
                    "checkout_base_url": base_url,
                    "retry_backoff": 0.2,
                },
            }
        )
        env["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": s3_url, "region_name": "us-east-1"},
            }
        )
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=s3_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        s3.create_bucket(Bucket=BUCKET)
        listing = lambda: [(o["Key"], o["Size"]) for o in _s3_objects(s3)]  # noqa: E731
        if STORE != "s3":
            listing = _start_store(work, env, started)

        for merchant in state["merchant_ids"]:
            for provider in ARRIVING_PROVIDERS:
                _post_json(
                    f"{base_url}/_emulator/settlements", {"account_id": merchant, "provider": provider}
                )
        print(
            f"demo: {len(ARRIVING_PROVIDERS) * len(state['merchant_ids'])} new settlements arrived "
            f"({', '.join(ARRIVING_PROVIDERS)}) for {', '.join(state['merchant_ids'])}",
            flush=True,
        )

        airflow = str(VENV_BIN / "airflow")
        print("demo: airflow db migrate (SQLite)", flush=True)
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
        if _airflow_major() >= 3:
            # `airflow dags test` registers neither the DAGs nor their assets on Airflow 3.0 (a
            # task whose outlet is an asset then fails: AirflowInactiveAssetInInletOrOutletException):
            # register them first, as the dag-processor of a deployment does
            print("demo: airflow dags reserialize (registers the DAGs and their assets)", flush=True)
            subprocess.run([airflow, "dags", "reserialize"], env=env, check=True, capture_output=True)
        dag_ids = _dag_ids(env)
        if os.environ.get("DINTERO_DEMO_DAGS"):  # a comma-separated choice (the wheel check's)
            dag_ids = [d for d in dag_ids if d in os.environ["DINTERO_DEMO_DAGS"].split(",")]
        failures = []
        for dag_id in dag_ids:
            cmd = [airflow, "dags", "test", dag_id, LOGICAL_DATE]
            if dag_id in DAG_CONF:
                cmd += ["--conf", json.dumps(DAG_CONF[dag_id])]
            print(f"demo: airflow dags test {dag_id} {LOGICAL_DATE}", flush=True)
            result = subprocess.run(cmd, env=env, capture_output=True, text=True)
            log_path = work / f"{dag_id}.log"
            log_path.write_text(result.stdout + result.stderr)
            ok = result.returncode == 0 and "state=failed" not in result.stdout + result.stderr
            print(f"demo:   {'ok' if ok else 'FAILED'} (log: {log_path})", flush=True)
            if not ok:
                failures.append(dag_id)

        _report(base_url, listing, state)
        if failures:
            print(f"demo: these DAGs failed: {', '.join(failures)}", flush=True)
            return 1
        print("demo: all example DAGs succeeded", flush=True)
        return 0
    finally:
        for proc in started:
            proc.send_signal(signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if os.environ.get("DINTERO_DEMO_KEEP") != "1":
            shutil.rmtree(work / "airflow", ignore_errors=True)


def _airflow_major() -> int:
    from importlib.metadata import version

    return int(version("apache-airflow").split(".")[0])


def _dag_ids(env: dict[str, str]) -> list[str]:
    code = (
        "import json, os\n"
        "try:\n"
        "    from airflow.dag_processing.dagbag import DagBag\n"
        "except ImportError:\n"
        "    from airflow.models.dagbag import DagBag\n"
        "bag = DagBag(dag_folder=os.environ['AIRFLOW__CORE__DAGS_FOLDER'])\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "print(json.dumps(sorted(bag.dag_ids)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def _s3_objects(s3: Any) -> list[dict[str, Any]]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX)
    return [obj for page in pages for obj in page.get("Contents", [])]


def _start_store(work: Path, env: dict[str, str], started: list[subprocess.Popen[bytes]]) -> Any:
    """Start the GCS or Azure server, point the DAGs at it; return a listing of (key, size)."""
    if STORE == "gcs":
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        started.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gcp_storage_emulator",
                    "start",
                    "-H",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "-M",
                ],
                stdout=subprocess.DEVNULL,
                stderr=(work / "gcs.log").open("wb"),
            )
        )
        _wait_for(f"{url}/storage/v1/b")
        env["STORAGE_EMULATOR_HOST"] = url
        env["AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT"] = json.dumps(
            {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True, "project": "demo"}}
        )
        env["DINTERO_DEMO_DESTINATION"] = f"gs://{BUCKET}"
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(
            project="demo", credentials=AnonymousCredentials(), client_options={"api_endpoint": url}
        )
        client.create_bucket(BUCKET)
        print(f"demo: files go to gs://{BUCKET} on gcp-storage-emulator at {url}", flush=True)
        return lambda: [(b.name, b.size) for b in client.list_blobs(BUCKET, prefix=PREFIX)]
    if STORE != "azure":
        raise SystemExit(f"demo: DINTERO_DEMO_STORE must be s3, gcs or azure, not {STORE!r}")
    binary = REPO / ".azurite" / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        raise SystemExit("demo: Azurite is not installed (npm install --prefix .azurite azurite)")
    out = work / "azurite.log"
    started.append(
        subprocess.Popen(
            [
                str(binary),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                "0",
                "--location",
                str(work / "azurite"),
                "--disableTelemetry",
                "--skipApiVersionCheck",
            ],
            stdout=out.open("wb"),
            stderr=subprocess.STDOUT,
        )
    )
    deadline = time.monotonic() + 60
    while "listens on" not in (out.read_text() if out.exists() else ""):
        if time.monotonic() > deadline:
            raise SystemExit("demo: Azurite did not start")
        time.sleep(0.2)
    url = out.read_text().split("listens on ", 1)[1].split()[0]
    conn = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={url}/devstoreaccount1;"
    )
    env["AIRFLOW_CONN_WASB_DEFAULT"] = json.dumps({"conn_type": "wasb", "extra": {"connection_string": conn}})
    env["DINTERO_DEMO_DESTINATION"] = f"wasbs://{BUCKET}@devstoreaccount1.blob.core.windows.net"
    from azure.storage.blob import BlobServiceClient

    container = BlobServiceClient.from_connection_string(conn).create_container(BUCKET)
    print(f"demo: files go to {env['DINTERO_DEMO_DESTINATION']} on Azurite at {url}", flush=True)
    return lambda: [(b.name, b.size) for b in container.list_blobs(name_starts_with=PREFIX)]


def _report(base_url: str, listing: Any, state: dict[str, Any]) -> None:
    records = _get_json(f"{base_url}/_emulator/requests")
    writes = [
        r
        for r in records
        if r["method"] in ("POST", "PUT")
        and "/auth/token" not in r["path"]
        and "/exchange_token" not in r["path"]
        and r["status"] < 300
    ]
    print("\ndemo: provisioned in Dintero (emulator):", flush=True)
    for record in writes:
        print(f"  {record['method']:4} {record['path']} -> {record['status']}")
    if not writes:
        print("  (nothing)")
    rows = _landed(listing())
    where = {"s3": f"s3://{BUCKET}", "gcs": f"gs://{BUCKET}"}.get(
        STORE, f"wasbs://devstoreaccount1.blob.core.windows.net/{BUCKET}"
    )
    print(f"\ndemo: landed in {where}/{PREFIX} ({STORE})", flush=True)
    print(f"  {'merchant':<10} {'source':<18} {'settlements':>11} {'files':>6} {'bytes':>10}")
    for (merchant, source), row in sorted(rows.items()):
        count = str(len(row["settlements"])) if row["settlements"] else "-"
        print(f"  {merchant:<10} {source:<18} {count:>11} {row['files']:>6} {row['bytes']:>10}")
    files = sum(r["files"] for r in rows.values())
    print(f"  {files} files, {sum(r['bytes'] for r in rows.values())} bytes (manifests not counted)")


def _landed(objects: list[tuple[str, int]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per merchant and payout provider (or insight reports): settlements, files and bytes."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for key, size in objects:
        parts = dict(p.split("=", 1) for p in key.split("/") if "=" in p)
        merchant = parts.get("account", "?")
        source = parts.get("provider") or ("insight reports" if "/insight/" in key else "other")
        row = rows.setdefault((merchant, source), {"settlements": set(), "files": 0, "bytes": 0})
        if "provider" in parts:  # .../settled_date=.../<settlement id>/<file>
            row["settlements"].add(key.split("/")[-2])
        if key.endswith("/manifest.json"):
            continue
        row["files"] += 1
        row["bytes"] += size
    return rows


if __name__ == "__main__":
    sys.exit(main())
