"""
Test set-up shared by the whole suite: a throw-away Airflow home with a SQLite metadata DB,
moto's S3 server on 127.0.0.1, Airflow connections as ``AIRFLOW_CONN_*`` variables, and a
``run_dag`` helper that runs a DAG with ``dag.test()`` on Airflow 3.x and 2.11 alike.

The Dintero emulator fixtures (``dintero_emulator``, ``dintero_connection``) come from the
package's own pytest plugin (``airflow_provider_dintero.emulator.pytest_plugin``).
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
AIRFLOW_VERSION = version("apache-airflow")
AIRFLOW_V3 = int(AIRFLOW_VERSION.split(".")[0]) >= 3

# Airflow reads its configuration at import time: set it up before anything imports airflow.
_HOME = tempfile.mkdtemp(prefix="dintero-airflow-home-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "example_dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
os.environ["AIRFLOW__CORE__FERNET_KEY"] = "fwWeVJ0xjE3cDzbIEYYbYbrV24bDyG63uDORbXapXTU="
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
if not AIRFLOW_V3:
    os.environ["AIRFLOW__CORE__EXECUTOR"] = "SequentialExecutor"


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[None]:
    """A fresh Airflow metadata database for the test session."""
    from airflow.utils import db

    db.resetdb()
    if AIRFLOW_V3:
        from airflow.dag_processing.bundles.manager import DagBundlesManager

        DagBundlesManager().sync_bundles_to_db()
    yield


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (a real S3 API over HTTP); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_connection(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``aws_default`` pointing at moto's S3 server."""
    conn = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": s3_server, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
    return "aws_default"


def moto_client(service: str, endpoint: str) -> Any:
    """A boto3 client of ``service`` on moto's server at ``endpoint``."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


@pytest.fixture
def s3_client(s3_server: str) -> Any:
    """A boto3 S3 client on moto's server, for assertions."""
    return moto_client("s3", s3_server)


@pytest.fixture
def s3_bucket(s3_client: Any, aws_connection: str) -> str:
    """A new, empty bucket on moto's S3 server."""
    name = f"dintero-test-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def kms_key_id(s3_server: str) -> str:
    """A new KMS key in moto's KMS (served by the same server as S3), for SSE-KMS tests."""
    kms = moto_client("kms", s3_server)
    return str(kms.create_key(Description="dintero copies")["KeyMetadata"]["KeyId"])


@pytest.fixture
def run_dag(airflow_db: None) -> Callable[..., Any]:
    """
    Run a DAG object end to end with ``dag.test()`` and return the DagRun.

    On Airflow 3 the DAG is first serialized to the metadata DB, as ``dag.test()`` requires.
    ``no_logical_date=True`` makes a run without a logical date or data interval on Airflow 3
    (a manual run's default there); Airflow 2.11 always gives one.
    """

    def _run(
        dag: Any,
        conf: dict[str, Any] | None = None,
        logical_date: Any = None,
        *,
        no_logical_date: bool = False,
    ) -> Any:
        if AIRFLOW_V3:
            from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

            bag = DagBag(dag_folder=os.devnull, collect_dags=False)
            bag.bag_dag(dag)
            sync_bag_to_db(bag, "dags-folder", None)
            kwargs: dict[str, Any] = {"run_conf": conf}
            if no_logical_date:  # as the REST API's {"logical_date": null} and `airflow dags trigger`
                kwargs["logical_date"] = None
            elif logical_date is not None:
                kwargs["logical_date"] = logical_date
            return dag.test(**kwargs)
        dag.sync_to_db()  # asset (dataset) outlets need the DAG row on 2.11 too
        kwargs = {"run_conf": conf}
        if logical_date is not None:
            kwargs["execution_date"] = logical_date
        return dag.test(**kwargs)

    return _run


@pytest.fixture
def load_example_dag() -> Callable[[str], Any]:
    """Import a DAG from ``example_dags/`` by file name and return it."""
    import importlib.util

    def _load(file_name: str, dag_id: str | None = None) -> Any:
        path = REPO / "example_dags" / file_name
        spec = importlib.util.spec_from_file_location(f"example_{path.stem}_{uuid.uuid4().hex[:6]}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        from airflow.providers.common.compat.sdk import DAG

        dags = [v for v in vars(module).values() if isinstance(v, DAG)]
        if dag_id:
            dags = [d for d in dags if d.dag_id == dag_id]
        assert len(dags) == 1, f"expected one DAG in {file_name}, found {[d.dag_id for d in dags]}"
        return dags[0]

    return _load


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> Iterator[None]:
    """Every test starts with an empty process token cache."""
    from airflow_provider_dintero.auth import TOKEN_CACHE

    TOKEN_CACHE.clear()
    yield
    TOKEN_CACHE.clear()


@pytest.fixture(autouse=True)
def _fresh_secrets_masker() -> Iterator[None]:
    """
    Start each test with an empty secrets masker, as each task process does on Airflow 3.

    Every token and signed URL the hook sees is registered with the masker, and Airflow 3's masker
    recompiles one regex over all registered secrets on each registration; in one long test
    process that cost grows with every test.
    """
    try:
        from airflow.sdk._shared.secrets_masker import reset_secrets_masker
    except ImportError:  # Airflow 2.11: one masker, cheap enough
        yield
        return
    reset_secrets_masker()
    yield
    reset_secrets_masker()
