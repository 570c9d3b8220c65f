"""
A real Airflow deployment on 127.0.0.1 for the system suite: ``airflow api-server``,
``scheduler``, ``dag-processor`` and ``triggerer`` as separate processes (LocalExecutor, SQLite,
their own ``AIRFLOW_HOME``), moto's S3 server as another process, and the REST API client the
tests drive it with. :class:`Deployment2` is the Airflow 2.11 profile: ``airflow webserver``,
``scheduler`` and ``triggerer``, REST API v1.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "system-artifacts"
VENV_BIN = Path(sys.executable).parent
FERNET_KEY = "fwWeVJ0xjE3cDzbIEYYbYbrV24bDyG63uDORbXapXTU="
BUCKET = "dintero-system"
AIRFLOW_PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")
#: the file mark of an example DAG that defines its DAG on Airflow 3 only (asset watchers)
AIRFLOW_3_ONLY_MARK = "# example DAG: Airflow 3 only"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 1.0) -> Any:
    """
    Call ``check`` until it returns something truthy, or fail after ``timeout`` seconds.

    :param check: returns a truthy value when the wait is over.
    :param timeout: seconds.
    :param what: what is awaited, for the error message.
    :param interval: seconds between two checks.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def http_json(
    url: str,
    method: str = "GET",
    body: Any = None,
    token: str | None = None,
    authorization: str | None = None,
) -> Any:
    """
    One JSON request; returns the parsed answer (``None`` when empty).

    :param url: the full URL (always on 127.0.0.1).
    :param method: the HTTP method.
    :param body: a JSON-serialisable body, or ``None``.
    :param token: a bearer token, or ``None``.
    :param authorization: a whole ``Authorization`` header value instead (basic auth), or ``None``.
    """
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if authorization:
        headers["Authorization"] = authorization
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # it answers
    except OSError:
        return False


@dataclass
class Deployment:
    """
    The processes of one deployment and how to reach them.

    :param home: the ``AIRFLOW_HOME``.
    :param emulator_url: the Dintero emulator's base URL.
    :param extra_env: more environment for every Airflow process (``AIRFLOW__DINTERO__*``...).
    """

    #: the Airflow processes, each started as ``airflow <name>``
    airflow_processes: ClassVar[tuple[str, ...]] = AIRFLOW_PROCESSES
    #: answers once the web process serves
    health_path: ClassVar[str] = "/api/v2/monitor/health"

    home: Path
    emulator_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    api_port: int = field(default_factory=free_port)
    s3_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _token: str | None = None
    _s3: Any = None

    @property
    def api_url(self) -> str:
        """The api-server's base URL."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def s3_url(self) -> str:
        """moto's S3 endpoint."""
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def output_dir(self) -> Path:
        """Where each process's stdout and stderr go (scanned for secrets)."""
        return ARTIFACTS / "process-output"

    @property
    def env(self) -> dict[str, str]:
        """The environment of every Airflow process (and of the CLI calls)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DINTERO_"))}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
                "AIRFLOW__CORE__FERNET_KEY": FERNET_KEY,
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home}/airflow.db",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
                    {
                        "conn_type": "aws",
                        "login": "testing",
                        "password": "testing",
                        "extra": {"endpoint_url": self.s3_url, "region_name": "us-east-1"},
                    }
                ),
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
                "DINTERO_DEMO_BUCKET": BUCKET,
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
                # a pass-through secrets backend that counts look-ups (tests/webhooks/counting_backend.py)
                "PYTHONPATH": str(REPO),
                "AIRFLOW__SECRETS__BACKEND": "tests.webhooks.counting_backend.CountingSecretsBackend",
                "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({"path": str(self.secret_lookups_file)}),
            }
        )
        env.update(self.extra_env)
        return env

    @property
    def secret_lookups_file(self) -> Path:
        """Where the counting secrets backend of every process appends each key it was asked for."""
        return self.home / "secret-lookups.txt"

    def secret_lookups(self, prefix: str = "") -> list[str]:
        """
        The secrets-backend look-ups so far (``variable:<key>``, ``connection:<id>``), optionally
        only those starting with ``prefix``.

        :param prefix: e.g. ``variable:dintero_webhook_secret_``.
        """
        if not self.secret_lookups_file.exists():
            return []
        return [k for k in self.secret_lookups_file.read_text().splitlines() if k.startswith(prefix)]

    def start_api_server(
        self, name: str, env: Mapping[str, str | None], wait: bool = True
    ) -> tuple[subprocess.Popen[bytes], str]:
        """
        Start one more ``airflow api-server`` on the same metadata DB with ``env`` on top of the
        deployment's (values ``None`` remove a variable); returns the process and its base URL.

        :param name: the process name (its output file).
        :param env: environment changes.
        :param wait: wait until it answers its health endpoint.
        """
        port = free_port()
        changes: dict[str, str | None] = {
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            **env,
        }
        full = {k: v for k, v in {**self.env, **changes}.items() if v is not None}
        out = (self.output_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [str(VENV_BIN / "airflow"), "api-server"],
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = proc
        url = f"http://127.0.0.1:{port}"
        if wait:
            wait_until(
                lambda: proc.poll() is None and _up(f"{url}/api/v2/monitor/health"), 180, f"api-server {name}"
            )
        return proc, url

    def forget(self, name: str) -> None:
        """
        Stop a process started with :meth:`start_api_server` and drop it from the deployment.

        :param name: the process name.
        """
        self.stop(name)
        self.processes.pop(name, None)

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """``db migrate``, then moto and the four Airflow processes; returns once the API answers."""
        shutil.rmtree(self.home, ignore_errors=True)
        shutil.rmtree(self.output_dir, ignore_errors=True)
        self.home.mkdir(parents=True)
        self.output_dir.mkdir(parents=True)
        self._spawn("moto", [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.s3_port)])
        self.airflow("db", "migrate")
        self._before_start()
        for name in self.airflow_processes:
            self._spawn(name, [str(VENV_BIN / "airflow"), name])
        wait_until(lambda: self._alive() and _up(f"{self.api_url}{self.health_path}"), 180, "the web server")
        wait_until(lambda: _up(self.s3_url), 30, "moto's S3 server")

    def _before_start(self) -> None:
        """What must exist before the processes start (nothing on Airflow 3)."""

    def example_dag_files(self) -> list[Path]:
        """The example DAG files that define a DAG on this Airflow line."""
        files = sorted(Path(self.env["AIRFLOW__CORE__DAGS_FOLDER"]).glob("*.py"))
        return [f for f in files if self.is_airflow_3 or AIRFLOW_3_ONLY_MARK not in f.read_text()]

    is_airflow_3: ClassVar[bool] = True

    def trigger(self, dag_id: str) -> str:
        """
        Trigger a manual run through the REST API (no logical date on Airflow 3); return its id.

        :param dag_id: the DAG id.
        """
        return str(self.api(f"/dags/{dag_id}/dagRuns", "POST", {"logical_date": None})["dag_run_id"])

    def _spawn(self, name: str, cmd: list[str]) -> None:
        out = (self.output_dir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def _alive(self) -> bool:
        dead = {n: p.returncode for n, p in self.processes.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"deployment process(es) exited: {dead}; see {self.output_dir}")
        return True

    def stop(self, *names: str) -> None:
        """
        SIGTERM the process groups started (all, or those named), then SIGKILL what remains.

        :param names: which processes (``"triggerer"``...); none means every one.
        """
        chosen = [p for n, p in self.processes.items() if not names or n in names]
        for proc in chosen:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in chosen:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def restart(self, name: str, while_down: Callable[[], Any] | None = None) -> None:
        """
        Stop one Airflow process gracefully (SIGTERM, as a deploy does) and start it again.

        :param name: ``"triggerer"``, ``"scheduler"``...
        :param while_down: called once the process has exited, before it starts again.
        """
        self.stop(name)
        if while_down is not None:
            while_down()
        self._spawn(name, [str(VENV_BIN / "airflow"), name])

    def output(self, name: str) -> str:
        """
        What one process has written so far (stdout and stderr, across restarts).

        :param name: the process name.
        """
        return (self.output_dir / f"{name}.log").read_text(errors="replace")

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        """
        A task's return value, deserialized.

        :param dag_id: the DAG id.
        :param run_id: the run id.
        :param task_id: the task id.
        :param map_index: the map index (``-1`` for an unmapped task).
        """
        value = self.api(
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
            f"?map_index={map_index}&deserialize=true"
        )["value"]
        return json.loads(value) if isinstance(value, str) else value

    def manifest_in_s3(self, account_id: str, settlement_id: str) -> bool:
        """
        Whether a settlement's manifest (written after all its files) is in the bucket.

        :param account_id: the merchant.
        :param settlement_id: the settlement.
        """
        found = self.s3().list_objects_v2(Bucket=BUCKET, Prefix=f"dintero/settlements/account={account_id}/")
        return any(o["Key"].endswith(f"/{settlement_id}/manifest.json") for o in found.get("Contents", []))

    def s3(self) -> Any:
        """The deployment's boto3 S3 client on moto's server (made once)."""
        if self._s3 is not None:
            return self._s3
        import boto3

        self._s3 = boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        return self._s3

    # ------------------------------------------------------------------ clients

    def airflow(
        self, *args: str, timeout: float = 180, keep: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """
        Run an ``airflow`` CLI command with the deployment's environment.

        :param args: the command's arguments.
        :param timeout: seconds.
        :param keep: keep the output with the processes' (scanned for secrets); ``False`` for
            commands that print a secret on purpose (``connections get``).
        """
        result = subprocess.run(
            [str(VENV_BIN / "airflow"), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if not keep:
            return result
        name = "cli-" + "-".join(a for a in args[:3] if a.replace("_", "").replace("-", "").isalnum())
        with (self.output_dir / f"{name}.log").open("a") as out:
            out.write(f"$ airflow {' '.join(args)}\n{result.stdout}{result.stderr}\n")
        return result

    @property
    def admin_password(self) -> str:
        """The simple auth manager's generated password for ``admin``."""
        path = self.home / "simple_auth_manager_passwords.json.generated"
        passwords = json.loads(wait_until(lambda: path.exists() and path.read_text(), 60, str(path)))
        return str(passwords["admin"])

    @property
    def token(self) -> str:
        """A JWT for the REST API, from ``POST /auth/token``."""
        if self._token is None:
            answer = http_json(
                f"{self.api_url}/auth/token", "POST", {"username": "admin", "password": self.admin_password}
            )
            self._token = str(answer["access_token"])
        return self._token

    def api(self, path: str, method: str = "GET", body: Any = None) -> Any:
        """
        Call the REST API (``/api/v2`` + ``path``) as the admin.

        :param path: the path after ``/api/v2``.
        :param method: the HTTP method.
        :param body: a JSON body, or ``None``.
        """
        return http_json(f"{self.api_url}/api/v2{path}", method, body, token=self.token)


@dataclass
class Deployment2(Deployment):
    """
    The Airflow 2.11 profile: ``airflow webserver`` (one gunicorn worker), ``scheduler`` (which
    parses the DAG files itself) and ``triggerer``; SQLite, so the SequentialExecutor (2.11
    refuses the LocalExecutor on SQLite): one task at a time, a deferred sensor frees its slot.
    The REST API v1 with basic auth as an ``admin`` user made by ``airflow users create``.
    """

    airflow_processes: ClassVar[tuple[str, ...]] = ("webserver", "scheduler", "triggerer")
    health_path: ClassVar[str] = "/health"
    is_airflow_3: ClassVar[bool] = False
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))

    @property
    def env(self) -> dict[str, str]:
        """The environment of every Airflow 2.11 process (and of the CLI calls)."""
        env = {k: v for k, v in super().env.items() if not k.startswith(("AIRFLOW__API__", "AIRFLOW__DAG_P"))}
        env.pop("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", None)
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "SequentialExecutor",
                # the executor runs each task as `airflow tasks run ...`, found on PATH
                "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                "AIRFLOW__WEBSERVER__WEB_SERVER_HOST": "127.0.0.1",
                "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(self.api_port),
                "AIRFLOW__WEBSERVER__BASE_URL": self.api_url,
                "AIRFLOW__WEBSERVER__WORKERS": "1",
                "AIRFLOW__WEBSERVER__WORKER_REFRESH_BATCH_SIZE": "0",
                "AIRFLOW__WEBSERVER__SECRET_KEY": FERNET_KEY,
                "AIRFLOW__API__AUTH_BACKENDS": (
                    "airflow.api.auth.backend.session,airflow.api.auth.backend.basic_auth"
                ),
                "AIRFLOW__API__ENABLE_XCOM_DESERIALIZE_SUPPORT": "True",  # the tests read XComs as JSON
                # only the runs the tests trigger (no scheduled run of each DAG once unpaused)
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "600",
                "AIRFLOW__SCHEDULER__PARSING_PROCESSES": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            }
        )
        return env

    def _before_start(self) -> None:
        """The admin user of the web server and the REST API."""
        result = self.airflow(
            "users", "create", "--username", "admin", "--password", self.password, "--role", "Admin",
            "--email", "admin@example.invalid", "--firstname", "Ada", "--lastname", "Admin", keep=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"airflow users create failed: {result.stderr[-2000:]}")

    @property
    def admin_password(self) -> str:
        """The password of ``admin``, made by this profile."""
        return self.password

    def api(self, path: str, method: str = "GET", body: Any = None) -> Any:
        """
        Call the REST API v1 (``/api/v1`` + ``path``) as the admin, with basic auth.

        :param path: the path after ``/api/v1``.
        :param method: the HTTP method.
        :param body: a JSON body, or ``None``.
        """
        basic = base64.b64encode(f"admin:{self.password}".encode()).decode()
        return http_json(f"{self.api_url}/api/v1{path}", method, body, authorization=f"Basic {basic}")

    def trigger(self, dag_id: str) -> str:
        """
        Trigger a manual run through the REST API v1 (2.11 gives it the current logical date).

        :param dag_id: the DAG id.
        """
        return str(self.api(f"/dags/{dag_id}/dagRuns", "POST", {"conf": {}})["dag_run_id"])

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        """
        A task's return value as JSON (not 2.11's default ``str()`` of it).

        :param dag_id: the DAG id.
        :param run_id: the run id.
        :param task_id: the task id.
        :param map_index: the map index (``-1`` for an unmapped task).
        """
        value = self.api(
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
            f"?map_index={map_index}&deserialize=true&stringify=false"
        )["value"]
        return json.loads(value) if isinstance(value, str) else value


# ---------------------------------------------------------------------- the leak scan


def emulator_canaries(emulator: Any) -> dict[str, set[str]]:
    """
    Every client secret, token and download signature the emulator handed out.

    :param emulator: the session's :class:`DinteroEmulator`.
    """
    signatures = {
        value
        for record in emulator.requests
        if record.path.startswith("/_emulator/")
        for name, value in _pairs(record.query)
        if name == "signature" and value
    }
    return {
        "client secret": {s for s in emulator.issued_secrets() if len(s) >= 12},
        "token": {t for t in emulator.issued_tokens() if len(t) >= 12},
        "signature": {s for s in signatures if len(s) >= 12},
    }


def _pairs(query: Any) -> list[tuple[str, str]]:
    if isinstance(query, dict):
        return [(k, v) for k, vs in query.items() for v in (vs if isinstance(vs, list) else [vs])]
    if isinstance(query, str):
        return parse_qsl(query)
    return [tuple(pair) for pair in query or []]  # type: ignore[misc]


def written_files(deployment: Deployment) -> list[Path]:
    """
    Every task log under ``AIRFLOW_HOME`` and every process's output.

    :param deployment: the deployment.
    """
    files = [
        p
        for p in deployment.home.rglob("*")
        if p.is_file() and ("logs" in p.relative_to(deployment.home).parts or p.suffix == ".log")
    ]
    return files + [p for p in deployment.output_dir.rglob("*") if p.is_file()]


def leaks(deployment: Deployment, canaries: dict[str, set[str]]) -> list[str]:
    """
    ``"<kind> in <file>"`` for every canary value found in a log or process output.

    :param deployment: the deployment.
    :param canaries: values that must appear nowhere, by kind.
    """
    return [
        f"{kind} in {path}"
        for path in written_files(deployment)
        for text in [path.read_text(errors="replace")]
        for kind, values in canaries.items()
        if any(value in text for value in values)
    ]
