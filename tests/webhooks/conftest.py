"""
Fixtures for the webhook receiver tests: the receiver served over real HTTP on 127.0.0.1 (uvicorn
in a thread, mounted through Airflow's own plugin loading), the signing secret in a real Airflow
Variable, a consumer DAG scheduled on the settlement asset in the real metadata DB, and readers
of the asset events recorded there.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from tests.conftest import AIRFLOW_V3

#: Skip marker for tests of the receiver itself.
airflow3_only = pytest.mark.skipif(
    not AIRFLOW_V3,
    reason="the webhook receiver is an Airflow 3 api-server plugin (FastAPI); Airflow 2.11 has no "
    "FastAPI app to mount it in",
)

SECRET = "test-signing-secret-7c1e5a9f2b"


def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread; yield its base URL; stop it afterwards."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    sock.close()


#: The config that switches the receiver on for the emulator's partner and the "lonely" account.
def receiver_env(partner: str) -> dict[str, str]:
    """``AIRFLOW__DINTERO__*`` enabling the receiver for ``partner`` and :func:`lonely_account`."""
    return {
        "AIRFLOW__DINTERO__WEBHOOK_RECEIVER_ENABLED": "True",
        "AIRFLOW__DINTERO__WEBHOOK_ACCOUNTS": f"{partner}, {lonely_account(partner)}",
    }


def lonely_account(partner: str) -> str:
    """A listed account of the partner that no DAG schedules on."""
    return partner[:4] + "99999"


@pytest.fixture(scope="session")
def receiver_base_url(airflow_db: None, dintero_emulator_server: Any) -> Iterator[str]:
    """
    The api-server's plugin apps, mounted by Airflow's own ``init_plugins`` (so through the
    package's ``airflow.plugins`` entry point) on a bare FastAPI app, served on 127.0.0.1, with
    the receiver enabled for the emulator's partner through ``AIRFLOW__DINTERO__*``.
    """
    if not AIRFLOW_V3:
        pytest.skip("the webhook receiver is an Airflow 3 api-server plugin")
    from airflow.api_fastapi.app import init_plugins
    from fastapi import FastAPI

    env = receiver_env(str(dintero_emulator_server.partner_id))
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        root = FastAPI()
        init_plugins(root)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield from serve(root)


@pytest.fixture
def partner(dintero_emulator: Any) -> str:
    """The emulator's partner id: the account in the receiver's path and of the asset."""
    return str(dintero_emulator.partner_id)


@pytest.fixture
def secret_variable(airflow_db: None, partner: str) -> Iterator[str]:
    """The partner's signing secret stored in its Variable (deleted afterwards)."""
    from airflow.models.variable import Variable

    from airflow_provider_dintero.webhooks import webhook_secret_variable

    key = webhook_secret_variable(partner)
    Variable.set(key, SECRET)
    yield SECRET
    Variable.delete(key)


#: the consumer DAGs these tests create (other suites serialize example DAGs on the same asset)
CONSUMER_PREFIX = "settlements_on_webhook_"


@pytest.fixture
def consumer_dag(airflow_db: None, partner: str) -> Iterator[str]:
    """
    An unpaused DAG scheduled on ``settlement_events_asset(partner)``, written to the metadata DB
    (which registers the asset); the asset's events are cleared before and after. Yields the dag id.
    """
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.providers.common.compat.sdk import DAG
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.utils.session import create_session

    from airflow_provider_dintero.webhooks import settlement_events_asset

    dag_id = f"{CONSUMER_PREFIX}{uuid.uuid4().hex[:8]}"
    with DAG(
        dag_id=dag_id,
        schedule=[settlement_events_asset(partner)],
        start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    ) as dag:
        EmptyOperator(task_id="copy_settlements")
    bag = DagBag(dag_folder=os.devnull, collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    with create_session() as session:
        session.query(DagModel).filter(DagModel.dag_id == dag_id).update({"is_paused": False})
    clear_events(partner)
    yield dag_id
    with create_session() as session:
        session.query(DagModel).filter(DagModel.dag_id == dag_id).update({"is_paused": True})
    clear_events(partner)


def _asset_id(session: Any, account_id: str) -> int | None:
    from airflow.models.asset import AssetModel
    from sqlalchemy import select

    from airflow_provider_dintero.webhooks import settlement_events_asset

    asset = settlement_events_asset(account_id)
    return session.scalar(select(AssetModel.id).where(AssetModel.uri == asset.uri))


def clear_events(account_id: str) -> None:
    """Delete the asset events (and queued runs) of ``settlement_events_asset(account_id)``."""
    from airflow.models.asset import AssetDagRunQueue, AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        asset_id = _asset_id(session, account_id)
        if asset_id is not None:
            session.query(AssetEvent).filter(AssetEvent.asset_id == asset_id).delete()
            session.query(AssetDagRunQueue).filter(AssetDagRunQueue.asset_id == asset_id).delete()


def asset_event_extras(account_id: str) -> list[dict[str, Any]]:
    """The extras of the asset events recorded on ``settlement_events_asset(account_id)``, oldest first."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        asset_id = _asset_id(session, account_id)
        if asset_id is None:
            return []
        rows = session.query(AssetEvent).filter(AssetEvent.asset_id == asset_id).order_by(AssetEvent.id)
        return [dict(row.extra) for row in rows]


def queued_dag_ids(account_id: str) -> list[str]:
    """
    This suite's consumer DAGs that the asset's events queued a run for (``AssetDagRunQueue``).

    Example DAGs that other tests serialized into the same metadata DB (such as
    ``dintero_settlements_on_event``, which watches the same partner's asset) are left out.
    """
    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session

    with create_session() as session:
        asset_id = _asset_id(session, account_id)
        rows = session.query(AssetDagRunQueue).filter(AssetDagRunQueue.asset_id == asset_id)
        return sorted(r.target_dag_id for r in rows if r.target_dag_id.startswith(CONSUMER_PREFIX))


@pytest.fixture
def post(receiver_base_url: str) -> Callable[..., Any]:
    """POST raw bytes to the receiver over HTTP; returns the ``httpx.Response``."""
    import httpx

    def _post(path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{receiver_base_url}{path}", content=body, headers=headers, timeout=30)

    _post.base_url = receiver_base_url  # type: ignore[attr-defined]
    return _post


def delivery(
    account_id: str,
    *,
    event: str = "settlement_add",
    delivery_id: str | None = None,
    settlement: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A delivery envelope shaped like Dintero's (and the emulator's)."""
    envelope: dict[str, Any] = {
        "account_id": account_id,
        "event": event,
        "event_delivery": delivery_id or str(uuid.uuid4()),
    }
    if event == "settlement_add":
        envelope["settlement"] = settlement or {"id": str(uuid.uuid4()), "provider": "vipps"}
    return envelope


def hmac_sha1(body: bytes, secret: str) -> str:
    """Hex HMAC-SHA1 of ``body`` (computed here, independently of the receiver's code)."""
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def signed(envelope: dict[str, Any], secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    """The body and headers Dintero would send for ``envelope`` signed with ``secret``."""
    body = json.dumps(envelope).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Dintero-Hook/test",
        "event": envelope.get("event"),
        "event-delivery": envelope.get("event_delivery"),
        "event-signature": hmac_sha1(body, secret),
    }
    return body, {k: str(v) for k, v in headers.items() if v is not None}
