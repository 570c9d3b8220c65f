"""
One 300 MiB settlement attachment copied from the Dintero emulator into each store's local server
(S3: moto; GCS: gcp-storage-emulator; Azure Blob Storage: Azurite), each method in a fresh
process: a bare client of the store (requests' raw stream straight into the store SDK's own
streaming upload) and ``SettlementsToStorageOperator`` with a destination URI. Prints, per store,
the peak RSS over the process baseline (target: under 150 MiB) and the throughput ratio to the
bare client. Asserts nothing about wall-clock time. Every server runs in its own process on
127.0.0.1 (its memory is not ours).

Run: ``.venv-af3/bin/python bench/destinations.py [--size-mib 300] [--only s3,gcs,azure]``;
Azurite comes from ``.azurite/`` (installed by the test suite's fixture, or
``npm install --prefix .azurite azurite@<AZURITE_VERSION>``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.run import (  # noqa: E402
    _COPY_PRELUDE,
    _stop,
    airflow_env,
    connections,
    control,
    emulator_process,
    free_port,
    moto_server,
    run_python,
    s3_client,
)
from tests.destinations.conftest import AZURITE_ACCOUNT, AZURITE_KEY  # noqa: E402

MIB = 1024 * 1024
TARGET_MIB = 150


@contextlib.contextmanager
def gcs_server() -> Iterator[str]:
    """gcp-storage-emulator in its own process, in memory, on 127.0.0.1; yields its URL."""
    import socket

    port = free_port()
    proc = subprocess.Popen(
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
            "-q",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("gcp-storage-emulator did not start") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


@contextlib.contextmanager
def azurite_server() -> Iterator[str]:
    """Azurite's blob service from ``.azurite/`` on 127.0.0.1 (port chosen at run time)."""
    binary = REPO / ".azurite" / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        raise RuntimeError(
            "Azurite is not installed: npm install --prefix .azurite azurite (or run the tests)"
        )
    workspace = Path(tempfile.mkdtemp(prefix="dintero-bench-azurite-"))
    out = workspace / "out.log"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [
                str(binary),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                "0",
                "--location",
                str(workspace),
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--silent",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=workspace,
        )
    try:
        deadline = time.monotonic() + 60
        while not (
            found := re.search(r"listens on http://127\.0\.0\.1:(\d+)", out.read_text(errors="replace"))
        ):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"azurite did not start: {out.read_text(errors='replace')[-300:]}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{found.group(1)}"
    finally:
        _stop(proc)
        shutil.rmtree(workspace, ignore_errors=True)


_BARE: dict[str, str] = {
    "s3": """
        import boto3
        from boto3.s3.transfer import TransferConfig
        client = boto3.client("s3", endpoint_url=E["S3_URL"], region_name="us-east-1")

        def upload(raw, key):
            client.upload_fileobj(raw, BUCKET, key, Config=TransferConfig())
    """,
    "gcs": """
        from airflow.providers.google.cloud.hooks.gcs import GCSHook
        bucket = GCSHook().get_conn().bucket(BUCKET)

        def upload(raw, key):
            bucket.blob(key, chunk_size=8 * 1024 * 1024).upload_from_file(raw, content_type="application/pdf")
    """,
    "azure": """
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook
        container = WasbHook().get_conn().get_container_client(BUCKET)

        def upload(raw, key):
            container.get_blob_client(key).upload_blob(raw, overwrite=True)
    """,
}

_BARE_COPY = """
    import requests
    from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
    token = DinteroPartnerHook().get_token(MERCHANT)
    session = requests.Session()

    def copy(item, label):
        with session.get(E["EMU_URL"] + url(item), headers={"Authorization": f"Bearer {token}"},
                         stream=True, timeout=60) as response:
            response.raise_for_status()
            response.raw.decode_content = True
            upload(response.raw, s3_key(item, label))

    measure(copy)
"""

_OPERATOR = """
    from airflow_provider_dintero.transfers.settlements_to_storage import SettlementsToStorageOperator

    def copy(item, label):
        SettlementsToStorageOperator(
            task_id="copy", account_id=MERCHANT, destination=E["DESTINATION"], settlement_ids=[item["sid"]],
            replace=True, key=f"bench/{label}/{{settlement_id}}/{{attachment_id}}.{{extension}}",
        ).execute({})

    measure(copy)
"""


def azurite_connection_string(url: str) -> str:
    """The development account's connection string on the Azurite at ``url``."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={url}/{AZURITE_ACCOUNT};"
    )


def store_env(store: str, url: str) -> tuple[dict[str, str], str]:
    """The connection variables of a store's server, and the destination URI of bucket ``bench``."""
    if store == "s3":
        return {}, "s3://bench"
    if store == "gcs":
        conn = {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True, "project": "bench"}}
        return {
            "STORAGE_EMULATOR_HOST": url,
            "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps(conn),
        }, "gs://bench"
    conn = {"conn_type": "wasb", "extra": {"connection_string": azurite_connection_string(url)}}
    return {
        "AIRFLOW_CONN_WASB_DEFAULT": json.dumps(conn)
    }, f"wasbs://bench@{AZURITE_ACCOUNT}.blob.core.windows.net"


def stored_size(store: str, url: str, key: str) -> int:
    """The size the store holds at ``key`` of bucket ``bench``."""
    if store == "s3":
        return int(s3_client(url).head_object(Bucket="bench", Key=key)["ContentLength"])
    if store == "gcs":
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(
            project="bench", credentials=AnonymousCredentials(), client_options={"api_endpoint": url}
        )
        return int(client.bucket("bench").get_blob(key).size)
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite_connection_string(url))
    return int(service.get_blob_client("bench", key).get_blob_properties().size)


def create_bucket(store: str, url: str) -> None:
    """Create bucket/container ``bench`` on the store's server."""
    if store == "s3":
        s3_client(url).create_bucket(Bucket="bench")
    elif store == "gcs":
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        storage.Client(
            project="bench", credentials=AnonymousCredentials(), client_options={"api_endpoint": url}
        ).create_bucket("bench")
    else:
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient.from_connection_string(azurite_connection_string(url)).create_container("bench")


@contextlib.contextmanager
def server(store: str) -> Iterator[str]:
    """The store's local server, in its own process."""
    factory = {"s3": moto_server, "gcs": gcs_server, "azure": azurite_server}[store]
    with factory() as url:
        yield url


def run(
    store: str, method: str, emu: dict[str, Any], home: Path, big: dict[str, str], warm: dict[str, str]
) -> dict[str, Any]:
    """One method into one store, in a fresh interpreter against a fresh server."""
    with server(store) as url:
        create_bucket(store, url)
        extra_env, destination = store_env(store, url)
        env = {
            **airflow_env(home),
            **connections(emu, url if store == "s3" else "http://127.0.0.1:9"),
            **extra_env,
            "MERCHANT": emu["merchant_ids"][0],
            "BUCKET": "bench",
            "BIG": json.dumps(big),
            "WARM": json.dumps(warm),
            "S3_URL": url,
            "EMU_URL": emu["base_url"],
            "DESTINATION": destination,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        parts = (_COPY_PRELUDE, _BARE[store], _BARE_COPY) if method == "bare" else (_COPY_PRELUDE, _OPERATOR)
        code = "".join(textwrap.dedent(part) for part in parts)
        result: dict[str, Any] = json.loads(run_python(code, env).strip().splitlines()[-1])
        result["stored"] = stored_size(store, url, f"bench/big/{big['sid']}/{big['att']}.pdf")
    return result


def main() -> None:
    """Parse arguments, run every store and method, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=300)
    parser.add_argument("--only", default="s3,gcs,azure")
    args = parser.parse_args()
    size = args.size_mib * MIB
    stores = [s.strip() for s in args.only.split(",") if s.strip()]
    rows = []
    with (
        emulator_process({"merchants": 1, "reports_per_merchant": 0}) as emu,
        tempfile.TemporaryDirectory() as home,
    ):
        merchant = emu["merchant_ids"][0]

        def add(n: int) -> dict[str, str]:
            item = control(
                emu, "POST", "settlements", {"account_id": merchant, "attachment_sizes": {"pdf": n}}
            )
            return {"sid": item["id"], "att": item["attachments"][0]["id"]}

        warm = add(64 * 1024)
        big = add(size)
        for store in stores:
            results = {m: run(store, m, emu, Path(home), big, warm) for m in ("bare", "operator")}
            for method, r in results.items():
                ok = "ok" if r["stored"] == size else f"STORED {r['stored']}"
                rows.append((store, method, r["over"] / MIB, size / MIB / r["seconds"], r["seconds"], ok))
            ratio = results["operator"]["seconds"] / results["bare"]["seconds"]
            rows.append((store, "operator time / bare time", ratio, 0.0, 0.0, ""))
    print(f"\n{args.size_mib} MiB attachment, emulator -> store (target: < {TARGET_MIB} MiB over baseline)")
    print(f"{'store':<6} {'method':<28} {'peak over base MiB':>18} {'MiB/s':>8} {'s':>8}  size")
    for store, method, over, rate, seconds, ok in rows:
        if method.startswith("operator time"):
            print(f"{store:<6} {method:<28} {over:>18.2f}")
        else:
            print(f"{store:<6} {method:<28} {over:>18.1f} {rate:>8.1f} {seconds:>8.1f}  {ok}")


if __name__ == "__main__":
    main()
