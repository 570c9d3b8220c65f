"""
Real local servers for every object store the transfers write to, and one ``store`` fixture that
runs a test against each:

- S3: moto's server (``s3_server`` in ``tests/conftest.py``).
- GCS: ``gcp-storage-emulator`` (PyPI) served in-process on 127.0.0.1, port chosen at run time,
  its handler recording every request (method, path, headers) so tests can see what reached the
  server; the google provider's ``GCSHook`` reaches it through ``STORAGE_EMULATOR_HOST`` and an
  anonymous ``google_cloud_platform`` connection.
- Azure: Azurite's blob service (npm ``azurite``, :data:`AZURITE_VERSION`), installed by this
  fixture into ``.azurite/`` of the repository (``npm install --prefix .azurite``) and started with
  Node on 127.0.0.1 with a port chosen at run time, its debug log recording every request; the
  microsoft-azure provider's ``WasbHook`` reaches it through a ``wasb`` connection string. When
  npm or Node is missing the Azure tests are skipped, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_dintero.emulator.pytest_plugin import connection_json
from tests.conftest import REPO

#: The Azurite release the suite installs (npm).
AZURITE_VERSION = "3.37.0"
#: Azurite's well-known development account and key (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
STORES = ("s3", "gcs", "azure")


@pytest.fixture
def emu(dintero_emulator: Any, dintero_connection: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The reset emulator behind ``dintero_default``, with fast retries."""
    conn = json.loads(connection_json(dintero_emulator))
    conn["extra"].update({"max_retries": 1, "retry_backoff": 0.01, "retry_max_wait": 0.05})
    monkeypatch.setenv("AIRFLOW_CONN_DINTERO_DEFAULT", json.dumps(conn))
    return dintero_emulator


# ------------------------------------------------------------------------------------- GCS


@dataclass
class GcsServer:
    """The running GCS emulator: its endpoint and every request it received."""

    endpoint: str
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GcsServer]:
    """``gcp-storage-emulator`` on 127.0.0.1 (in memory), recording each request."""
    from http.server import ThreadingHTTPServer

    from gcp_storage_emulator.server import RequestHandler
    from gcp_storage_emulator.storage import Storage

    recorded: list[tuple[str, str, dict[str, str]]] = []

    class RecordingHandler(RequestHandler):  # type: ignore[misc]
        def parse_request(self) -> bool:
            ok = bool(super().parse_request())
            if ok:
                recorded.append((self.command, self.path, dict(self.headers)))
            return ok

    storage = Storage(use_memory_fs=True)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(RecordingHandler, storage))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    server = GcsServer(endpoint=f"http://127.0.0.1:{httpd.server_address[1]}", requests=recorded)
    yield server
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def gcs_connection(gcs_server: GcsServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """``google_cloud_default``: anonymous credentials, the emulator as the storage endpoint."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.endpoint)
    conn = {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True, "project": "dintero-test"}}
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps(conn))
    return "google_cloud_default"


@pytest.fixture
def gcs_client(gcs_connection: str) -> Any:
    """A ``google.cloud.storage`` client of the emulator, for set-up and assertions."""
    from airflow.providers.google.cloud.hooks.gcs import GCSHook

    return GCSHook(gcp_conn_id=gcs_connection).get_conn()


@pytest.fixture
def gcs_bucket(gcs_client: Any) -> str:
    """A new, empty bucket on the GCS emulator."""
    name = f"dintero-test-{uuid.uuid4().hex[:12]}"
    gcs_client.create_bucket(name)
    return name


# ------------------------------------------------------------------------------------- Azure


@dataclass
class Azurite:
    """The running Azurite blob service: its endpoint and its debug log (every request)."""

    endpoint: str
    debug_log: Path

    @property
    def connection_string(self) -> str:
        """The connection string of the development account on this server."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.endpoint}/{AZURITE_ACCOUNT};"
        )

    def requests_log(self) -> str:
        """What Azurite logged so far (request lines and headers)."""
        return self.debug_log.read_text(errors="replace")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Azurite is required in CI: {reason}")
    pytest.skip(f"Azurite unavailable: {reason}")


def azurite_binary() -> Path:
    """Install Azurite (pinned) into ``.azurite/`` once; return the ``azurite-blob`` path."""
    prefix = REPO / ".azurite"
    binary = prefix / "node_modules" / ".bin" / "azurite-blob"
    stamp = prefix / "version"
    if binary.exists() and stamp.exists() and stamp.read_text().strip() == AZURITE_VERSION:
        return binary
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        _unavailable("node and npm are needed (npm install azurite)")
    result = subprocess.run(
        [
            str(npm),
            "install",
            "--prefix",
            str(prefix),
            "--no-audit",
            "--no-fund",
            f"azurite@{AZURITE_VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0 or not binary.exists():
        _unavailable(f"npm install azurite@{AZURITE_VERSION} failed: {result.stderr[-500:]}")
    stamp.write_text(AZURITE_VERSION)
    return binary


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite's blob service on 127.0.0.1, a port chosen at run time, in a throw-away workspace."""
    binary = azurite_binary()
    workspace = Path(tempfile.mkdtemp(prefix="dintero-azurite-"))
    debug_log = workspace / "debug.log"
    output = workspace / "out.log"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [
                str(binary),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                "0",
                "--location",
                str(workspace),
                "--debug",
                str(debug_log),
                "--disableTelemetry",
                "--skipApiVersionCheck",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workspace,
        )
    try:
        deadline = time.monotonic() + 60
        port = None
        while port is None:
            found = re.search(r"listens on http://127\.0\.0\.1:(\d+)", output.read_text(errors="replace"))
            if found:
                port = int(found.group(1))
            elif process.poll() is not None or time.monotonic() > deadline:
                _unavailable(f"azurite-blob did not start: {output.read_text(errors='replace')[-500:]}")
            else:
                time.sleep(0.1)
        yield Azurite(endpoint=f"http://127.0.0.1:{port}", debug_log=debug_log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(workspace, ignore_errors=True)


@pytest.fixture
def wasb_connection(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> str:
    """``wasb_default``: the development account on Azurite, by connection string."""
    conn = {"conn_type": "wasb", "extra": {"connection_string": azurite.connection_string}}
    monkeypatch.setenv("AIRFLOW_CONN_WASB_DEFAULT", json.dumps(conn))
    return "wasb_default"


@pytest.fixture
def azure_service(wasb_connection: str) -> Any:
    """A ``BlobServiceClient`` of Azurite, for set-up and assertions."""
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

    return WasbHook(wasb_conn_id=wasb_connection).get_conn()


@pytest.fixture
def azure_container(azure_service: Any) -> str:
    """A new, empty container on Azurite."""
    name = f"dintero-test-{uuid.uuid4().hex[:12]}"
    azure_service.create_container(name)
    return name


# ------------------------------------------------------------------------------------- any store


@dataclass
class StoreUnderTest:
    """One store's destination URI and what a test needs to look inside it."""

    name: str
    destination: str
    namespace: str
    lineage_namespace: str
    list_keys: Callable[[], set[str]]
    read: Callable[[str], bytes]
    metadata: Callable[[str], dict[str, str]]
    versions: Callable[[], dict[str, str]]
    """Each object's version as the store keeps it (S3 ETag and time, GCS generation, Azure ETag)."""
    encryption: dict[str, Any]
    encryption_reached: Callable[[], bool]

    def uri(self, key: str) -> str:
        """The URI the transfers give the object at ``key``."""
        return f"{self.namespace}/{key}"


def _s3_store(request: pytest.FixtureRequest) -> StoreUnderTest:
    bucket = request.getfixturevalue("s3_bucket")
    client = request.getfixturevalue("s3_client")
    kms_key = request.getfixturevalue("kms_key_id")

    def keys() -> set[str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {o["Key"] for page in pages for o in page.get("Contents", [])}

    def encrypted() -> bool:
        heads = [client.head_object(Bucket=bucket, Key=k) for k in keys()]
        return bool(heads) and all(h.get("SSEKMSKeyId", "").endswith(kms_key) for h in heads)

    return StoreUnderTest(
        name="s3",
        destination=f"s3://{bucket}",
        namespace=f"s3://{bucket}",
        lineage_namespace=f"s3://{bucket}",
        list_keys=keys,
        read=lambda key: client.get_object(Bucket=bucket, Key=key)["Body"].read(),
        metadata=lambda key: client.head_object(Bucket=bucket, Key=key)["Metadata"],
        versions=lambda: {
            o["Key"]: f"{o['ETag']}@{o['LastModified'].isoformat()}"
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])
        },
        encryption={"s3_extra_args": {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key}},
        encryption_reached=encrypted,
    )


KMS_KEY = "projects/dintero-test/locations/europe-north1/keyRings/finance/cryptoKeys/dintero"


def _gcs_store(request: pytest.FixtureRequest) -> StoreUnderTest:
    bucket = request.getfixturevalue("gcs_bucket")
    client = request.getfixturevalue("gcs_client")
    server: GcsServer = request.getfixturevalue("gcs_server")
    start = len(server.requests)

    def encrypted() -> bool:
        # The emulator ignores CMEK; what matters is that each upload session asked for the key.
        from urllib.parse import parse_qs, urlsplit

        sessions = [
            parse_qs(urlsplit(path).query)
            for method, path, _ in server.requests[start:]
            if method == "POST" and f"/upload/storage/v1/b/{bucket}/o" in path
        ]
        return bool(sessions) and all(q.get("kmsKeyName") == [KMS_KEY] for q in sessions)

    return StoreUnderTest(
        name="gcs",
        destination=f"gs://{bucket}",
        namespace=f"gs://{bucket}",
        lineage_namespace=f"gs://{bucket}",
        list_keys=lambda: {b.name for b in client.list_blobs(bucket)},
        read=lambda key: client.bucket(bucket).blob(key).download_as_bytes(),
        metadata=lambda key: dict(client.bucket(bucket).get_blob(key).metadata or {}),
        versions=lambda: {b.name: str(b.generation) for b in client.list_blobs(bucket)},
        encryption={"kms_key_name": KMS_KEY},
        encryption_reached=encrypted,
    )


def _azure_store(request: pytest.FixtureRequest, scheme: str = "wasbs") -> StoreUnderTest:
    container = request.getfixturevalue("azure_container")
    service = request.getfixturevalue("azure_service")
    server: Azurite = request.getfixturevalue("azurite")
    domain = "dfs" if scheme.startswith("abfs") else "blob"
    named = "abfss" if scheme.startswith("abfs") else "wasbs"
    client = service.get_container_client(container)

    def encrypted() -> bool:
        # Azurite ignores encryption scopes; its debug log shows each block and commit asked for it.
        writes = [
            line
            for line in server.requests_log().splitlines()
            if "RequestMethod=PUT" in line and f"/{container}/" in line and "comp=block" in line
        ]
        return bool(writes) and all('"x-ms-encryption-scope":"finance"' in line for line in writes)

    return StoreUnderTest(
        name="azure",
        destination=f"{scheme}://{container}@{AZURITE_ACCOUNT}.{domain}.core.windows.net",
        namespace=f"{named}://{AZURITE_ACCOUNT}.{domain}.core.windows.net/{container}",
        lineage_namespace=f"{named}://{container}@{AZURITE_ACCOUNT}.{domain}.core.windows.net",
        list_keys=lambda: {b.name for b in client.list_blobs()},
        read=lambda key: client.get_blob_client(key).download_blob().readall(),
        metadata=lambda key: dict(client.get_blob_client(key).get_blob_properties().metadata or {}),
        versions=lambda: {b.name: str(b.etag) for b in client.list_blobs()},
        encryption={"encryption_scope": "finance"},
        encryption_reached=encrypted,
    )


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> StoreUnderTest:
    """Each store in turn (S3 on moto, GCS on its emulator, Azure Blob on Azurite), empty."""
    return {"s3": _s3_store, "gcs": _gcs_store, "azure": _azure_store}[request.param](request)


@pytest.fixture
def adls_store(request: pytest.FixtureRequest) -> StoreUnderTest:
    """An ADLS Gen2 style destination (``abfss://container@account.dfs.core.windows.net``) on Azurite."""
    return _azure_store(request, scheme="abfss")
