"""
A real Airflow deployment on 127.0.0.1 for the system suite, in one of two profiles
(``DINTERO_SYSTEM_PROFILE``, default ``sqlite``):

- ``sqlite``: ``airflow api-server``, ``scheduler``, ``dag-processor`` and ``triggerer`` as
  separate processes, LocalExecutor, SQLite;
- ``production``: PostgreSQL (a throwaway cluster in a temporary directory), Redis,
  CeleryExecutor with two workers of concurrency 4, two triggerers, two api-servers, the
  scheduler and the dag-processor; the Dintero emulator serves TLS under names that resolve
  nowhere, reachable only through a CONNECT proxy given to every process as ``HTTPS_PROXY``.

Both have their own ``AIRFLOW_HOME``, moto's S3 server as another process, and the REST API client
the tests drive them with. :class:`Deployment2` is the Airflow 2.11 profile: ``airflow webserver``,
``scheduler`` and ``triggerer``, SQLite, REST API v1. In the production profile a supervisor
thread restarts a process that exits (as systemd or Kubernetes would), unless the test stopped
it on purpose.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
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
#: DAGs only the production profile runs (chaos and token economy), next to the examples.
SYSTEM_DAGS = Path(__file__).resolve().parent / "dags"
#: The pass-through secrets backend in front of every process's (it counts look-ups), and its file.
COUNTING_BACKEND = "tests.webhooks.counting_backend.CountingSecretsBackend"
COUNTING_BACKEND_FILE = Path("tests", "webhooks", "counting_backend.py")
#: Who tells two processes of one kind apart on one host (``[core] hostname_callable``).
HOSTNAME_MODULE = """import os
import socket


def hostname() -> str:
    return os.environ.get("DINTERO_SYSTEM_HOSTNAME") or socket.getfqdn()
"""


@dataclass(frozen=True)
class Profile:
    """
    The shape of a deployment.

    :param name: ``sqlite`` or ``production``.
    :param executor: Airflow's executor.
    :param postgres: a PostgreSQL metadata DB (else SQLite).
    :param api_servers: how many ``airflow api-server`` processes.
    :param triggerers: how many ``airflow triggerer`` processes.
    :param celery_workers: how many ``airflow celery worker`` processes (CeleryExecutor).
    :param worker_concurrency: task slots per Celery worker.
    :param proxy: the emulator serves TLS behind a CONNECT proxy (``HTTPS_PROXY``).
    :param merchants: how many merchants the emulator seeds for the partner.
    :param supervise: restart a process that exits, as a supervisor would.
    """

    name: str
    executor: str = "LocalExecutor"
    postgres: bool = False
    api_servers: int = 1
    triggerers: int = 1
    celery_workers: int = 0
    worker_concurrency: int = 0
    proxy: bool = False
    merchants: int = 3
    supervise: bool = False

    def names(self, kind: str) -> list[str]:
        """
        The process names of one kind: ``triggerer`` alone, else ``triggerer-1``, ``triggerer-2``...

        :param kind: ``api-server``, ``triggerer`` or ``worker``.
        """
        count = {"api-server": self.api_servers, "triggerer": self.triggerers, "worker": self.celery_workers}[
            kind
        ]
        return [kind] if count == 1 and kind != "worker" else [f"{kind}-{i}" for i in range(1, count + 1)]


PROFILES = {
    "sqlite": Profile("sqlite"),
    "production": Profile(
        "production",
        executor="CeleryExecutor",
        postgres=True,
        api_servers=2,
        triggerers=2,
        celery_workers=2,
        worker_concurrency=4,
        proxy=True,
        # CI runs the quick cases on few merchants; --all (the token economy, the other chaos
        # cases) on the 20 README's figures were measured with
        merchants=20 if os.environ.get("DINTERO_PRODUCTION_ALL") == "1" else 4,
        supervise=True,
    ),
}


def active_profile() -> Profile:
    """The profile named by ``DINTERO_SYSTEM_PROFILE`` (``sqlite`` when unset)."""
    name = os.environ.get("DINTERO_SYSTEM_PROFILE") or "sqlite"
    if name not in PROFILES:
        raise ValueError(f"DINTERO_SYSTEM_PROFILE must be one of {sorted(PROFILES)}, not {name!r}")
    return PROFILES[name]


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


class PostgresCluster:
    """
    A throwaway PostgreSQL cluster (Debian's ``initdb``/``pg_ctl``) on a loopback port, in a
    temporary directory; trust authentication for the ``airflow`` user, database ``airflow``.
    As root, every command runs as the ``postgres`` user (``initdb`` refuses root).
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dintero-system-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.started = False

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the ``airflow`` database."""
        return f"postgresql+psycopg2://airflow@127.0.0.1:{self.port}/airflow"

    def _run(self, *cmd: str, timeout: float = 120) -> None:
        as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        full = ["runuser", "-u", "postgres", "--", *cmd] if as_root else list(cmd)
        result = subprocess.run(full, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {result.stdout}{result.stderr}")

    def create(self) -> None:
        """``initdb``, start, ``createdb airflow``."""
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "airflow", "--auth=trust", "-E", "UTF8")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "airflow", "airflow")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-k {self.root} -h 127.0.0.1 -p {self.port} -c max_connections=300 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")
        self.started = True

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are cut, as an outage would)."""
        if self.started:
            self._run("pg_ctl", "-D", str(self.data), "stop", "-m", "fast", "-w")
            self.started = False

    def remove(self) -> None:
        """Stop the server if it runs and delete its directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Deployment:
    """
    The processes of one deployment and how to reach them.

    :param home: the ``AIRFLOW_HOME``.
    :param emulator_url: the Dintero emulator's base URL.
    :param profile: its shape (:data:`PROFILES`).
    :param proxy_url: ``HTTPS_PROXY`` of every Airflow process (the production profile's).
    :param extra_env: more environment for every Airflow process (``AIRFLOW__DINTERO__*``...).
    """

    #: answers once the web process serves
    health_path: ClassVar[str] = "/api/v2/monitor/health"

    home: Path
    emulator_url: str
    profile: Profile = field(default_factory=active_profile)
    proxy_url: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    s3_port: int = field(default_factory=free_port)
    redis_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    _api_ports: dict[str, int] = field(default_factory=dict)
    _log_ports: dict[str, int] = field(default_factory=dict)
    _specs: dict[str, list[str]] = field(default_factory=dict)
    _down: set[str] = field(default_factory=set)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _supervisor: threading.Thread | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    _token: str | None = None
    _s3: Any = None
    postgres: PostgresCluster | None = None

    def __post_init__(self) -> None:
        for name in self.profile.names("api-server"):
            self._api_ports[name] = free_port()

    @property
    def api_urls(self) -> list[str]:
        """Every api-server's base URL."""
        return [f"http://127.0.0.1:{port}" for port in self._api_ports.values()]

    @property
    def api_url(self) -> str:
        """The first api-server's base URL (the one the tests and the workers use)."""
        return self.api_urls[0]

    @property
    def api_port(self) -> int:
        """The first api-server's port."""
        return next(iter(self._api_ports.values()))

    @property
    def s3_url(self) -> str:
        """moto's S3 endpoint."""
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def output_dir(self) -> Path:
        """Where each process's stdout and stderr go (scanned for secrets)."""
        return ARTIFACTS / "process-output"

    @property
    def dags_folder(self) -> Path:
        """The DAGs folder: ``example_dags``, or (production) a copy of it plus :data:`SYSTEM_DAGS`."""
        if self.profile.name == "sqlite":
            return REPO / "example_dags"
        return self.home / "dags"

    @property
    def env(self) -> dict[str, str]:
        """The environment of every Airflow process (and of the CLI calls)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DINTERO_"))}
        env = {k: v for k, v in env.items() if k.lower() not in ("https_proxy", "http_proxy", "all_proxy")}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__FERNET_KEY": FERNET_KEY,
                "AIRFLOW__CORE__EXECUTOR": self.profile.executor,
                "AIRFLOW__CORE__PARALLELISM": "4" if not self.profile.celery_workers else "16",
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "dintero_system_hostname.hostname",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
                    self.postgres.url if self.postgres else f"sqlite:///{self.home}/airflow.db"
                ),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": self._jwt_secret,
                "AIRFLOW__API_AUTH__JWT_SECRET": self._jwt_secret,
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
                # the provider from the installed package only (in the production profile the
                # built wheel), never the source tree: PYTHONPATH holds only what start() writes
                "PYTHONPATH": str(self.home / "pythonpath"),
                # a pass-through secrets backend that counts look-ups (tests/webhooks/counting_backend.py,
                # copied there alone by start())
                "AIRFLOW__SECRETS__BACKEND": COUNTING_BACKEND,
                "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({"path": str(self.secret_lookups_file)}),
            }
        )
        if self.profile.celery_workers:
            env.update(
                {
                    "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                    "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.postgres.url if self.postgres else "",
                    "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.profile.worker_concurrency),
                    "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
                }
            )
        if self.profile.supervise:
            env.update(
                {
                    # a dead triggerer's triggers move after ~10 s, a killed worker's task after ~30 s
                    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
                    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
                    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
                    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                    # as a production deployment does: a task failed by the platform (its
                    # api-server answering "Database error" during an outage) runs again
                    "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "2",
                    "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "10",
                    # a task queued while the DB was down may never reach a worker: requeue it
                    # after 60 s, not Airflow's default 600 s
                    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "60",
                }
            )
        if self.proxy_url:
            env.update({"HTTPS_PROXY": self.proxy_url, "https_proxy": self.proxy_url})
        env.update(self.extra_env)
        return env

    def process_env(self, name: str) -> dict[str, str]:
        """
        One process's environment: :attr:`env`, its own api port, log-server port and host name.

        :param name: the process name (``api-server-2``, ``worker-1``...).
        """
        env = self.env
        env["DINTERO_SYSTEM_HOSTNAME"] = f"{socket.gethostname()}-{name}"
        if name in self._api_ports:
            env["AIRFLOW__API__PORT"] = str(self._api_ports[name])
        port = str(self._log_ports.setdefault(name, free_port()))
        env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = port
        env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = port
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
        full = {k: v for k, v in {**self.process_env(name), **changes}.items() if v is not None}
        out = (self.output_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [str(VENV_BIN / "airflow"), "api-server"],
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with self._lock:  # never in _specs: the supervisor leaves it alone
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
        """``db migrate``, then moto (Redis, PostgreSQL) and the Airflow processes, until the APIs answer."""
        shutil.rmtree(self.home, ignore_errors=True)
        shutil.rmtree(self.output_dir, ignore_errors=True)
        self.home.mkdir(parents=True)
        self.output_dir.mkdir(parents=True)
        (self.home / "pythonpath").mkdir()
        (self.home / "pythonpath" / "dintero_system_hostname.py").write_text(HOSTNAME_MODULE)
        self._install_counting_backend()
        if self.dags_folder != REPO / "example_dags":
            self.dags_folder.mkdir()
            for path in [*(REPO / "example_dags").glob("*.py"), *SYSTEM_DAGS.glob("*.py")]:
                shutil.copy(path, self.dags_folder / path.name)
        self._spawn("moto", [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.s3_port)])
        if self.profile.postgres:
            self.postgres = PostgresCluster()
            self.postgres.create()
        if self.profile.celery_workers:
            redis = ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", ""]
            self._spawn("redis", [*redis, "--appendonly", "no", "--daemonize", "no"])
        migrated = self.airflow("db", "migrate", timeout=600)
        if migrated.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed: {migrated.stdout}{migrated.stderr}")
        self._before_start()
        for name, cmd in self._commands().items():
            self._specs[name] = cmd
            self._spawn(name, cmd)
            if name == self.profile.names("api-server")[0] and self.profile.api_servers > 1:
                # the first writes the admin password file; the others read it
                wait_until(lambda: self.admin_password, 120, "the admin password")
        for url in self.api_urls:
            wait_until(lambda url=url: self._alive() and _up(f"{url}{self.health_path}"), 240, url)
        wait_until(lambda: _up(self.s3_url), 30, "moto's S3 server")
        if self.profile.supervise:
            self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
            self._supervisor.start()

    def _install_counting_backend(self) -> None:
        """
        Copy the counting secrets backend alone under ``<home>/pythonpath`` at its module path, so
        that :data:`COUNTING_BACKEND` imports without the source tree (the repo's
        ``airflow_provider_dintero``) on any process's ``sys.path``.
        """
        target = self.home / "pythonpath" / COUNTING_BACKEND_FILE
        target.parent.mkdir(parents=True)
        for package in (target.parent.parent, target.parent):
            (package / "__init__.py").write_text("")
        shutil.copy(REPO / COUNTING_BACKEND_FILE, target)

    def _commands(self) -> dict[str, list[str]]:
        """The command of each Airflow process of the profile, by process name."""
        airflow = str(VENV_BIN / "airflow")
        commands = {name: [airflow, "api-server"] for name in self.profile.names("api-server")}
        commands |= {"scheduler": [airflow, "scheduler"], "dag-processor": [airflow, "dag-processor"]}
        commands |= {name: [airflow, "triggerer"] for name in self.profile.names("triggerer")}
        for name in self.profile.names("worker") if self.profile.celery_workers else []:
            worker = [airflow, "celery", "worker", "--celery-hostname", f"{name}@%h", "--skip-serve-logs"]
            commands[name] = [*worker, "--concurrency", str(self.profile.worker_concurrency)]
        return commands

    def _before_start(self) -> None:
        """What must exist before the processes start (nothing on Airflow 3)."""

    def example_dag_files(self) -> list[Path]:
        """The example DAG files that define a DAG on this Airflow line (not the system DAGs)."""
        files = sorted((REPO / "example_dags").glob("*.py"))
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
        with self._lock:
            self.processes[name] = subprocess.Popen(
                cmd, env=self.process_env(name), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def _alive(self) -> bool:
        with self._lock:
            dead = {n: p.returncode for n, p in self.processes.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"deployment process(es) exited: {dead}; see {self.output_dir}")
        return True

    def _supervise(self) -> None:
        """Restart any Airflow process that exited and was not stopped on purpose (every second)."""
        while not self._stopping.wait(1.0):
            with self._lock:
                for name, cmd in self._specs.items():
                    proc = self.processes.get(name)
                    if name in self._down or proc is None or proc.poll() is None:
                        continue
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                    with (self.output_dir / f"{name}.log").open("a") as out:
                        out.write(f"\n[supervisor] exited with {proc.returncode}; restarting\n")
                    self._spawn(name, cmd)

    def stop(self, *names: str) -> None:
        """
        SIGTERM the process groups started (all, or those named), then SIGKILL what remains.
        Stopped processes stay down (the supervisor leaves them) until :meth:`start_process`.

        :param names: which processes (``"triggerer"``...); none means every one.
        """
        if not names:
            self._stopping.set()
        with self._lock:
            self._down.update(names or self.processes)
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
        if not names and self.postgres is not None:
            self.postgres.remove()

    def kill(self, name: str, *, restart: bool = True) -> None:
        """
        SIGKILL a process's whole group (the process, its children, their tasks): a machine lost.

        :param name: the process name.
        :param restart: let the supervisor start it again (else it stays down until
            :meth:`start_process`).
        """
        import psutil

        with self._lock:
            if not restart:
                self._down.add(name)
            proc = self.processes[name]
            try:
                family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                family = []
            os.killpg(proc.pid, signal.SIGKILL)
            for member in family:  # a task may run in its own process group
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.kill()
            proc.wait(timeout=10)

    def start_process(self, name: str) -> None:
        """
        Start a stopped or killed process again.

        :param name: the process name.
        """
        with self._lock:
            self._down.discard(name)
            if self.processes[name].poll() is not None:
                self._spawn(name, self._specs[name])

    def restart(self, name: str, while_down: Callable[[], Any] | None = None) -> None:
        """
        Stop one Airflow process gracefully (SIGTERM, as a deploy does) and start it again.

        :param name: ``"triggerer"``, ``"scheduler"``...
        :param while_down: called once the process has exited, before it starts again.
        """
        self.stop(name)
        if while_down is not None:
            while_down()
        self.start_process(name)

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

    def _commands(self) -> dict[str, list[str]]:
        """``airflow webserver``, ``scheduler`` (which parses the DAGs) and ``triggerer``."""
        return {name: [str(VENV_BIN / "airflow"), name] for name in ("webserver", "scheduler", "triggerer")}

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
