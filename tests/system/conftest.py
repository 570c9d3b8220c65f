"""
Fixtures of the system suite: one real deployment per session (see :mod:`.deployment`, in the
profile ``DINTERO_SYSTEM_PROFILE`` names), the Dintero emulator it talks to, headless Chromium,
the connection (created through the UI; through the REST API in the production profile) and
every example DAG triggered through the REST API.

Two Airflow lines, chosen by the Airflow installed. Airflow 3.3 (api-server, REST API v2) in
one of two profiles (``sqlite``; ``production``, which runs ``test_deployment.py`` without the
browser tests and ``test_production.py``, the SQLite profile the others); Airflow 2.11 (webserver,
REST API v1, :class:`~.deployment.Deployment2`, SQLite only). On 2.11 a test module runs only if
it says ``RUNS_ON_AIRFLOW_2 = True``; the others need Airflow 3 (asset watchers, the webhook
receiver) and are skipped there.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import CHROMIUM_ARGS, chromium_path
from tests.conftest import AIRFLOW_V3

from .deployment import ARTIFACTS, BUCKET, Deployment, Deployment2, active_profile, wait_until
from .proxy import ConnectProxy

CONN_ID = "dintero_default"
SETTLEMENTS_DAG = "dintero_settlements_to_s3"
SENSOR = "wait_for_settlements"
#: Names under which the production profile's emulator serves TLS: they resolve nowhere, so only
#: the proxy reaches it.
API_NAME = "api.dintero.test"
FILES_NAME = "files.dintero.test"
MEMORY_NAME = "memory.dintero.test"
#: Test modules of one profile only.
PRODUCTION_ONLY = ("test_production.py",)
SQLITE_ONLY = ("test_settlement_events.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """
    On Airflow 2.11, skip the modules that need Airflow 3; on 3.3, each profile's tests in the other
    profile.
    """
    profile = active_profile()
    for item in items:
        path = str(item.fspath).replace(os.sep, "/")
        if "tests/system/" not in path:
            continue
        name = path.rsplit("/", 1)[-1]
        if not AIRFLOW_V3:
            if getattr(item.module, "RUNS_ON_AIRFLOW_2", False):
                continue
            reason = "system suite: this module needs Airflow 3 (not RUNS_ON_AIRFLOW_2)"
        elif profile.name == "production" and (
            name in SQLITE_ONLY or {"ui_connection", "browser"} & set(getattr(item, "fixturenames", ()))
        ):
            reason = "the production profile makes its connection through the REST API, not the form"
        elif profile.name != "production" and name in PRODUCTION_ONLY:
            reason = (
                "production profile only (DINTERO_SYSTEM_PROFILE=production, scripts/system_production.sh)"
            )
        else:
            continue
        item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium, installed with apt-get when missing and we are root (never downloaded)."""
    return chromium_path()


@pytest.fixture(scope="session")
def tls_ca() -> Any:
    """A private CA made for this session (``trustme``); its certificate is ``ca_path``."""
    import trustme

    ca = trustme.CA()
    path = ARTIFACTS / "tls" / "ca.pem"
    path.parent.mkdir(parents=True, exist_ok=True)
    ca.cert_pem.write_to_path(str(path))
    ca.ca_path = str(path)
    return ca


@pytest.fixture(scope="session")
def emulator(request: pytest.FixtureRequest) -> Iterator[Any]:
    """
    The Dintero emulator, served on 127.0.0.1 from this process: plain HTTP in the SQLite
    profile; in the production profile TLS from the session's private CA, advertised as
    ``https://api.dintero.test:PORT`` (a name that resolves nowhere: only the proxy reaches it)
    with the profile's number of merchants.

    In this process (not ``python -m ...emulator``) so that the leak scan can ask it for every
    token it issued (:meth:`DinteroEmulator.issued_tokens`); the deployment reaches it over
    real HTTP like any other server.
    """
    import ssl

    from airflow_provider_dintero.emulator import DinteroEmulator, EmulatorSeed

    profile = active_profile()
    if not profile.proxy:
        with DinteroEmulator() as emu:
            yield emu
        return
    ca = request.getfixturevalue("tls_ca")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(API_NAME, FILES_NAME, MEMORY_NAME).configure_cert(context)
    seed = EmulatorSeed(merchants=profile.merchants)
    with DinteroEmulator(seed, tls=context, name=API_NAME) as emu:
        yield emu


@pytest.fixture(scope="session")
def proxy() -> Iterator[ConnectProxy | None]:
    """The production profile's CONNECT proxy (to the emulator's names only); ``None`` otherwise."""
    if not active_profile().proxy:
        yield None
        return
    with ConnectProxy(dict.fromkeys((API_NAME, FILES_NAME, MEMORY_NAME), "127.0.0.1")) as instance:
        yield instance


@pytest.fixture(scope="session")
def deployment(emulator: Any, proxy: ConnectProxy | None) -> Iterator[Deployment]:
    """
    The processes of this line's profile and moto, started once per session; every one stopped
    at the end.
    """
    if not AIRFLOW_V3 and active_profile().name != "sqlite":
        raise pytest.UsageError("the production profile needs Airflow 3.3 (Deployment2 is SQLite only)")
    kind = Deployment if AIRFLOW_V3 else Deployment2
    deploy = kind(
        home=ARTIFACTS / "airflow-home",
        emulator_url=emulator.base_url,
        proxy_url=proxy and proxy.url,
        extra_env={  # the webhook receiver is off by default: this deployment switches it on
            "AIRFLOW__DINTERO__WEBHOOK_RECEIVER_ENABLED": "True",
            "AIRFLOW__DINTERO__WEBHOOK_ACCOUNTS": emulator.partner_id,
            "AIRFLOW__DINTERO__WEBHOOK_MAX_BODY_BYTES": "256k",  # nginx's spelling, understood
        },
    )
    try:
        deploy.start()
        deploy.s3().create_bucket(Bucket=BUCKET)
        # every overwrite shows as a second version
        deploy.s3().put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield deploy
    finally:
        deploy.stop()


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[Any]:
    """Headless Chromium driven by playwright; only requests to 127.0.0.1 leave it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


def screenshot(page: Any, name: str) -> Path:
    """
    Save a full-page screenshot under ``build/system-artifacts/`` and return its path.

    :param page: the playwright page.
    :param name: the file name without extension.
    """
    path = ARTIFACTS / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(scope="session")
def ui_connection(deployment: Deployment, browser: Any, emulator: Any) -> dict[str, Any]:
    """
    Create ``dintero_default`` in the connection form as a new user would.

    Fills only what a user must (Base URL, Client ID, Client secret, Account ID) plus the
    checkout base URL (the emulator serves both APIs); timeout, retries and the token cache stay
    at the form's defaults. Returns what the form showed and what Airflow saved.
    """
    if not AIRFLOW_V3:
        return _ui_connection_airflow_2(deployment, browser, emulator)
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    blocked: list[str] = []
    page.route("**/*", _only_loopback(blocked))
    page.goto(f"{deployment.api_url}/")
    page.locator("input[name=username]").fill("admin")
    page.locator("input[name=password]").fill(deployment.admin_password)
    page.locator("button[type=submit]").click()
    page.wait_for_url(lambda url: "/auth/login" not in url, timeout=60_000)
    page.wait_for_load_state("networkidle")
    page.goto(f"{deployment.api_url}/connections")
    page.get_by_role("button", name="Add Connection").click()
    page.locator("input[name=connection_id]").fill(CONN_ID)
    page.get_by_label("Connection Type").fill("Dintero")
    page.keyboard.press("Enter")
    page.locator("input[name=host]").fill(emulator.base_url)
    placeholders = {
        name: page.locator(f"input[name={name}]").get_attribute("placeholder") for name in ("host", "login")
    }
    page.locator("input[name=login]").fill(emulator.partner_client_id)
    page.locator("input[name=password]").fill(emulator.partner_client_secret)
    page.get_by_role("button", name="Extra Fields", exact=True).click()
    page.locator("input[name=element_account_id]").fill(emulator.partner_id)
    page.locator("input[name=element_checkout_base_url]").fill(emulator.base_url)
    shots = [screenshot(page, "1-connection-form")]
    page.get_by_role("button", name="Extra Fields JSON").click()
    page.wait_for_timeout(500)
    extra_shown = page.locator(".monaco-editor .view-lines").inner_text().replace("\xa0", " ")
    shots.append(screenshot(page, "2-connection-extra-json"))
    page.get_by_role("button", name="Save").click()
    wait_until(lambda: _saved(deployment), 30, f"connection {CONN_ID} to be saved", interval=0.5)
    page.wait_for_load_state("networkidle")
    shots.append(screenshot(page, "3-connection-saved"))
    page.close()
    return {
        "placeholders": placeholders,
        "extra_shown": extra_shown,
        "saved": deployment.airflow("connections", "get", CONN_ID, "-o", "json", keep=False).stdout,
        "blocked": blocked,
        "screenshots": shots,
    }


def connection_body(emulator: Any, conn_id: str, **extra: Any) -> dict[str, Any]:
    """
    A Dintero connection to the emulator as the REST API takes it (partner credentials).

    :param emulator: the session's emulator.
    :param conn_id: the connection id.
    :param extra: extra fields (``verify``, ``cache_mode``...).
    """
    return {
        "connection_id": conn_id,
        "conn_type": "dintero",
        "host": extra.pop("host", emulator.base_url),
        "login": emulator.partner_client_id,
        "password": emulator.partner_client_secret,
        "extra": json.dumps(
            {"account_id": emulator.partner_id, "checkout_base_url": emulator.base_url, **extra}
        ),
    }


@pytest.fixture(scope="session")
def dintero_connection(request: pytest.FixtureRequest, deployment: Deployment, emulator: Any) -> str:
    """
    ``dintero_default``: made in the form (SQLite profile), or through the REST API with the
    private CA in ``verify`` and ``cache_mode: variable`` (production profile).
    """
    if deployment.profile.name != "production":
        request.getfixturevalue("ui_connection")
        return CONN_ID
    ca = request.getfixturevalue("tls_ca")
    deployment.api(
        "/connections", "POST", connection_body(emulator, CONN_ID, verify=ca.ca_path, cache_mode="variable")
    )
    return CONN_ID


def _only_loopback(blocked: list[str]) -> Any:
    """A playwright route handler: requests to 127.0.0.1 go on, the others are recorded and aborted."""

    def route(request_route: Any) -> None:
        if request_route.request.url.startswith("http://127.0.0.1"):
            request_route.continue_()
        else:
            blocked.append(request_route.request.url)
            request_route.abort()

    return route


#: every Dintero field of the form README's connection table lists (Airflow 2.11's element ids)
FORM_FIELDS_2 = ("account_id", "checkout_base_url", "timeout", "max_retries", "cache_mode", "refresh_margin")


def _ui_connection_airflow_2(deployment: Deployment, browser: Any, emulator: Any) -> dict[str, Any]:
    """
    Airflow 2.11's form (Flask AppBuilder): log in, add a connection, choose Dintero in the
    connection type's list, fill only Base URL, Client ID, Client secret, Account ID and the
    checkout base URL, press Test, then Save. Returns what the form showed, the test's answer
    and what Airflow saved.
    """
    page = browser.new_page(viewport={"width": 1400, "height": 2200})
    blocked: list[str] = []
    page.route("**/*", _only_loopback(blocked))
    page.goto(f"{deployment.api_url}/login/")
    page.locator("input[name=username]").fill("admin")
    page.locator("input[name=password]").fill(deployment.admin_password)
    page.locator("input[type=submit], button[type=submit]").first.click()
    page.wait_for_url(lambda url: "/login" not in url, timeout=60_000)
    page.goto(f"{deployment.api_url}/connection/add")
    page.locator("input[name=conn_id]").fill(CONN_ID)
    # the list is a select2 widget over a <select>: choose in the <select>, as select2 itself does
    page.locator("#conn_type").select_option(label="Dintero", force=True)
    page.wait_for_function("document.getElementById('conn_type').value === 'dintero'", timeout=10_000)
    page.locator("#extra__dintero__account_id").wait_for(state="visible", timeout=10_000)

    def shown(element_id: str) -> bool:
        return bool(page.locator(f"#{element_id}").is_visible())

    def label(element_id: str) -> str:
        return str(page.locator(f"label[for='{element_id}']").inner_text()).strip()

    fields = {name: f"extra__dintero__{name}" for name in FORM_FIELDS_2}
    form = {
        "visible": {name: shown(element) for name, element in fields.items()},
        "hidden": {name: not shown(name) for name in ("schema", "port")},
        "labels": {name: label(name) for name in ("host", "login", "password")}
        | {name: label(element) for name, element in fields.items()},
        "placeholders": {
            name: page.locator(f"#{element}").get_attribute("placeholder")
            for name, element in {"host": "host", "login": "login", **fields}.items()
        },
    }
    page.locator("#host").fill(emulator.base_url)
    page.locator("#login").fill(emulator.partner_client_id)
    page.locator("#password").fill(emulator.partner_client_secret)
    page.locator(f"#{fields['account_id']}").fill(emulator.partner_id)
    page.locator(f"#{fields['checkout_base_url']}").fill(emulator.base_url)
    shots = [screenshot(page, "1-connection-form")]
    page.locator("#test-connection").click()
    alert = page.locator(".alert-success, .alert-error").first
    alert.wait_for(timeout=60_000)
    tested = str(alert.inner_text())
    shots.append(screenshot(page, "2-connection-tested"))
    page.locator("form#model_form button[type=submit], form#model_form input[type=submit]").first.click()
    wait_until(lambda: _saved(deployment), 30, f"connection {CONN_ID} to be saved", interval=0.5)
    shots.append(screenshot(page, "3-connection-saved"))
    page.close()
    return {
        "form": form,
        "tested": tested,
        "saved": deployment.airflow("connections", "get", CONN_ID, "-o", "json", keep=False).stdout,
        "blocked": blocked,
        "screenshots": shots,
    }


def _saved(deployment: Deployment) -> bool:
    try:
        return bool(deployment.api(f"/connections/{CONN_ID}"))
    except OSError:
        return False


def example_dags(deployment: Deployment) -> list[dict[str, Any]]:
    """
    The example DAGs (``dintero_*``; the production profile's own DAGs are ``system_*``).

    :param deployment: the deployment.
    """
    found = deployment.api("/dags?limit=100")["dags"]
    return [d for d in found if d["dag_id"].startswith("dintero_")]


def _run_state(deployment: Deployment, dag_id: str, run_id: str) -> str:
    deployment._alive()  # a dead scheduler or triggerer fails the wait at once
    return str(deployment.api(f"/dags/{dag_id}/dagRuns/{run_id}")["state"])


def task_instances(
    deployment: Deployment, dag_id: str, run_id: str, task_id: str | None = None
) -> list[dict[str, Any]]:
    """
    The task instances of a run (every map index), optionally of one task.

    :param deployment: the deployment.
    :param dag_id: the DAG id.
    :param run_id: the run id.
    :param task_id: only this task.
    """
    found = deployment.api(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]
    return [ti for ti in found if task_id is None or ti["task_id"] == task_id]


@pytest.fixture(scope="session")
def example_runs(deployment: Deployment, dintero_connection: str, emulator: Any) -> dict[str, Any]:
    """
    Unpause and trigger every example DAG through the REST API without a logical date.

    While the settlements run's one partner-wide sensor waits (deferred), one settlement per
    merchant is added through the emulator's control API; then every run is awaited. Returns the
    runs, when the settlements were added and which.

    The settlements are added as soon as the sensor is seen deferred: its trigger's first sweep
    comes one poll interval (60 s) after the deferral, so that sweep finds every merchant's
    settlement (the trigger fires once, with what one sweep found).
    """
    expected = len(deployment.example_dag_files())
    dags = wait_until(
        lambda: (found := example_dags(deployment)) and len(found) >= expected and found,
        180,
        f"{expected} example DAGs to be parsed",
    )
    errors = deployment.api("/importErrors")["import_errors"]
    runs: dict[str, str] = {}
    for dag in dags:
        dag_id = dag["dag_id"]
        deployment.api(f"/dags/{dag_id}", "PATCH", {"is_paused": False})
        runs[dag_id] = deployment.trigger(dag_id)

    settlements_run = runs[SETTLEMENTS_DAG]
    merchants = list(emulator.merchant_ids)

    def sensor_deferred() -> bool:
        deployment._alive()
        sensors = task_instances(deployment, SETTLEMENTS_DAG, settlements_run, SENSOR)
        states = [ti["state"] for ti in sensors]
        if any(s in ("failed", "upstream_failed", "success", "skipped") for s in states):
            raise AssertionError(f"the sensor stopped waiting before any settlement arrived: {states}")
        return states == ["deferred"]

    wait_until(sensor_deferred, 240, "the partner-wide sensor to be deferred", interval=2)
    added_at = time.time()
    added = {m: emulator.add_settlement(m, provider="vipps") for m in merchants}
    finished = {
        dag_id: wait_until(
            lambda dag_id=dag_id, run_id=run_id: (
                (s := _run_state(deployment, dag_id, run_id)) in ("success", "failed") and s
            ),
            300,
            f"run {run_id} of {dag_id} to finish",
            interval=2,
        )
        for dag_id, run_id in runs.items()
    }
    return {
        "dags": [d["dag_id"] for d in dags],
        "import_errors": errors,
        "runs": runs,
        "states": finished,
        "added_at": added_at,
        "added": added,
    }
