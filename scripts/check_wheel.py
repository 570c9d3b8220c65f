"""Checks of the built distributions, and of the wheel once installed in a clean virtualenv.

Standard library only: ``dist`` runs with any Python, ``installed`` runs with the clean
virtualenv's Python (which holds the wheel, its declared dependencies and nothing else).

``python scripts/check_wheel.py dist DIST_DIR``
    The wheel holds every file of the package that git knows (and nothing outside the package),
    the sdist holds them too, the metadata has its version, project URLs, classifiers and a lower
    bound on every requirement, and the provider entry point is declared.

``python scripts/check_wheel.py installed --example-dags DIR`` (run outside the checkout)
    The package comes from site-packages (not a checkout, not editable); every third-party module
    it imports belongs to a distribution it declares (``Requires-Dist``, extras included); every
    module imports; ``airflow providers list`` shows the provider and Airflow's providers manager
    its ``dintero`` connection type; the emulator's CLI starts and answers a real request on
    127.0.0.1 (a token, then the hook's connection test); the example DAGs parse without import
    errors.

Exit status 1 and one line per problem (``check_wheel: ...``) when anything is wrong.
"""

from __future__ import annotations

import argparse
import ast
import base64
import email.parser
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PACKAGE = "airflow_provider_dintero"
DISTRIBUTION = "airflow-provider-dintero"
CONN_TYPE = "dintero"
HOOK_CLASS = f"{PACKAGE}.hooks.dintero.DinteroPartnerHook"
ENTRY_POINT = f"provider_info = {PACKAGE}.get_provider_info:get_provider_info"
REPO = Path(__file__).resolve().parent.parent
PROJECT_URLS = ("Source", "Documentation", "Changelog", "Issues")
#: the Python versions the wheel is checked on (scripts/check_wheel.sh), each a classifier
PYTHON_CLASSIFIERS = ("Programming Language :: Python :: 3.11", "Programming Language :: Python :: 3.12")
SDIST_EXTRAS = ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md")

# Airflow 3 ships the ``airflow`` package as apache-airflow-core and apache-airflow-task-sdk;
# the apache-airflow distribution (the one providers declare) pins both.
DISTRIBUTION_ALIASES = {"apache-airflow-core": "apache-airflow", "apache-airflow-task-sdk": "apache-airflow"}
# Modules that the Airflow component loading a piece of code provides, allowed in that code only.
# Declaring them would install one Airflow line's web stack into the other line's deployments.
# - Airflow 2.11's webserver (Flask AppBuilder; 3.0 and 3.1's api-server too) builds the connection
#   form's widgets (connection.py's connection_form_widgets and the validators it makes), nothing
#   else does (the pattern of every Airflow provider).
# - Airflow 3's api-server (apache-airflow-core requires FastAPI) mounts the webhook receiver;
#   webhooks/plugin.py imports it only when fastapi imports.
_FORM_FUNCTIONS = frozenset({"connection_form_widgets", "_form_check"})
HOST_PROVIDED_IN_FUNCTION = {
    "flask_appbuilder": _FORM_FUNCTIONS,
    "flask_babel": _FORM_FUNCTIONS,
    "wtforms": _FORM_FUNCTIONS,
}
HOST_PROVIDED_IN_PACKAGE = {"fastapi": f"{PACKAGE}/webhooks/", "starlette": f"{PACKAGE}/webhooks/"}


class Problems:
    """Collects problems; :meth:`exit` prints them and sets the exit status."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, message: str) -> None:
        """Record one problem.

        :param message: what is wrong and where.
        """
        self.items.append(message)

    def exit(self, what: str) -> int:
        """Print the problems (or a success line) and return the exit status.

        :param what: the name of the check, for the success line.
        """
        for item in self.items:
            print(f"check_wheel: {item}", file=sys.stderr)
        if self.items:
            print(f"check_wheel: {what}: {len(self.items)} problem(s)", file=sys.stderr)
            return 1
        print(f"check_wheel: {what}: ok")
        return 0


def canonical(name: str) -> str:
    """A distribution name normalized as PEP 503 does.

    :param name: a distribution name.
    """
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The distribution name of one ``Requires-Dist`` value.

    :param requirement: e.g. ``boto3>=1.34.90; extra == "amazon"``.
    """
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"unparsable requirement {requirement!r}")
    return canonical(match.group(1))


def same_release(a: str, b: str) -> bool:
    """Whether two plain versions are equal, ignoring trailing zeros (``7.0`` == ``7.0.0``).

    :param a: a version such as ``7.0.0``.
    :param b: another version.
    """

    def release(v: str) -> tuple[str, ...]:
        parts = v.split(".")
        while len(parts) > 1 and parts[-1] == "0":
            parts.pop()
        return tuple(parts)

    return release(a) == release(b)


# ------------------------------------------------------------------------------------------ dist


def package_files_in_git() -> set[str]:
    """Files of the package in the checkout: tracked, or new and not ignored."""
    out = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard", "--", PACKAGE],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {line for line in out.splitlines() if line and (REPO / line).is_file()}


def source_version() -> str:
    """``__version__`` of the package in the checkout, read without importing it."""
    tree = ast.parse((REPO / PACKAGE / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            return str(ast.literal_eval(node.value))
    raise SystemExit(f"check_wheel: no __version__ in {PACKAGE}/__init__.py")


def check_requirements(requires: list[str], problems: Problems) -> None:
    """Every requirement has a lower bound.

    :param requires: the ``Requires-Dist`` values.
    :param problems: where problems go.
    """
    if not requires:
        problems.add("the wheel declares no Requires-Dist at all")
    for req in requires:
        spec = req.split(";", 1)[0]
        if not re.search(r"(>=|==|~=)\s*\d", spec):
            problems.add(f"requirement without a lower bound (>=): {req!r}")


def check_dist(dist_dir: Path) -> int:
    """Check the wheel and sdist in ``dist_dir`` against the checkout.

    :param dist_dir: the directory ``uv build`` wrote to.
    """
    problems = Problems()
    wheels = sorted(dist_dir.glob("*.whl"))
    sdists = sorted(dist_dir.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        problems.add(f"expected one wheel and one sdist in {dist_dir}, found {wheels + sdists}")
        return problems.exit("dist")
    expected = package_files_in_git()
    version = source_version()

    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
        info_dir = f"{PACKAGE}-{version}.dist-info"
        metadata = email.parser.Parser().parsestr(whl.read(f"{info_dir}/METADATA").decode())
        entry_points = whl.read(f"{info_dir}/entry_points.txt").decode()
    for missing in sorted(expected - names):
        problems.add(f"wheel {wheels[0].name} misses {missing}")
    for extra in sorted(n for n in names - expected if not n.startswith(f"{info_dir}/")):
        problems.add(f"wheel {wheels[0].name} holds {extra}, which is not a file of the package in git")

    if metadata["Name"] != DISTRIBUTION or metadata["Version"] != version:
        problems.add(
            f"wheel metadata says {metadata['Name']} {metadata['Version']}, "
            f"the checkout says {DISTRIBUTION} {version}"
        )
    check_requirements(metadata.get_all("Requires-Dist") or [], problems)
    urls = {u.split(",", 1)[0].strip() for u in metadata.get_all("Project-URL") or []}
    for label in PROJECT_URLS:
        if label not in urls:
            problems.add(f"wheel metadata has no Project-URL {label!r} (has {sorted(urls)})")
    classifiers = metadata.get_all("Classifier") or []
    declared = {c for c in classifiers if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)}
    if declared != set(PYTHON_CLASSIFIERS):
        problems.add(
            f"wheel metadata declares Pythons {sorted(declared)}, checked are {list(PYTHON_CLASSIFIERS)}"
        )
    section = re.search(r"\[apache_airflow_provider\]\n([^\[]*)", entry_points)
    if not section or ENTRY_POINT not in section.group(1):
        problems.add(f"wheel entry_points.txt has no [apache_airflow_provider] {ENTRY_POINT!r}")

    with tarfile.open(sdists[0]) as sdist:
        top = f"{PACKAGE}-{version}/"
        members = {m.name.removeprefix(top) for m in sdist.getmembers() if m.isfile()}
    for missing in sorted((expected | set(SDIST_EXTRAS)) - members):
        problems.add(f"sdist {sdists[0].name} misses {missing}")
    return problems.exit(f"dist ({wheels[0].name}: {len(expected)} package files)")


# ------------------------------------------------------------------------------------- installed


def airflow_env(home: Path) -> dict[str, str]:
    """Environment for Airflow commands: a throwaway home, no examples, no checkout on the path.

    :param home: the AIRFLOW_HOME to use.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__UNIT_TEST_MODE="True",
    )
    return env


def installed_files() -> tuple[Any, list[Path]]:
    """The installed distribution and the absolute paths of its Python files."""
    from importlib.metadata import distribution

    dist = distribution(DISTRIBUTION)
    files = [Path(str(dist.locate_file(f))) for f in dist.files or [] if f.suffix == ".py"]
    return dist, files


def check_origin(dist: Any, problems: Problems) -> None:
    """The package is imported from site-packages, from a non-editable install.

    :param dist: the installed distribution.
    :param problems: where problems go.
    """
    import sysconfig

    import airflow_provider_dintero

    where = Path(airflow_provider_dintero.__file__).resolve()
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    if site not in where.parents:
        problems.add(f"{PACKAGE} was imported from {where}, not from the virtualenv's {site}")
    direct = dist.read_text("direct_url.json")
    if direct and json.loads(direct).get("dir_info", {}).get("editable"):
        problems.add(f"{DISTRIBUTION} is installed in editable mode: {direct}")
    if dist.version != airflow_provider_dintero.__version__:
        problems.add(
            f"installed {dist.version} but {PACKAGE}.__version__ is {airflow_provider_dintero.__version__}"
        )


def imports_of(path: Path) -> Iterator[tuple[str, int, tuple[str, ...]]]:
    """Absolute module names imported by one file, with line and enclosing functions.

    :param path: a Python file of the package.
    """

    def walk(node: ast.AST, scope: tuple[str, ...]) -> Iterator[tuple[str, int, tuple[str, ...]]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child.lineno, scope
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                for alias in child.names:
                    yield f"{child.module}.{alias.name}", child.lineno, scope
            inner = (
                (*scope, child.name) if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else scope
            )
            yield from walk(child, inner)

    yield from walk(ast.parse(path.read_text(), str(path)), ())


def file_owners() -> dict[str, set[str]]:
    """Installed file (path relative to its site directory) -> canonical distribution names."""
    from importlib.metadata import distributions

    owners: dict[str, set[str]] = {}
    for dist in distributions():
        name = canonical(dist.metadata["Name"])
        for f in dist.files or []:
            if f.suffix == ".py":
                owners.setdefault(f.as_posix(), set()).add(DISTRIBUTION_ALIASES.get(name, name))
    return owners


def owner_of(module: str, owners: dict[str, set[str]]) -> tuple[str, set[str]]:
    """The deepest installed module of ``module``'s dotted path and the distributions shipping it.

    :param module: e.g. ``airflow.providers.amazon.aws.hooks.s3.S3Hook``.
    :param owners: from :func:`file_owners`.
    """
    parts = module.split(".")
    while parts:
        base = "/".join(parts)
        for candidate in (f"{base}.py", f"{base}/__init__.py"):
            if candidate in owners:
                return ".".join(parts), owners[candidate]
        parts.pop()
    return module, set()


def check_declared_imports(dist: Any, files: list[Path], problems: Problems) -> int:
    """Every third-party module imported by the package belongs to a declared distribution.

    :param dist: the installed distribution.
    :param files: its Python files.
    :param problems: where problems go.
    """
    declared = {requirement_name(r) for r in dist.requires or []}
    owners = file_owners()
    root = Path(str(dist.locate_file("")))
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    checked = 0
    for path in files:
        for module, line, scope in imports_of(path):
            top = module.split(".", 1)[0]
            if top in stdlib or top == PACKAGE:
                continue
            where = path.relative_to(root).as_posix()
            if HOST_PROVIDED_IN_FUNCTION.get(top, frozenset()) & set(scope):
                continue
            if top in HOST_PROVIDED_IN_PACKAGE and where.startswith(HOST_PROVIDED_IN_PACKAGE[top]):
                continue
            checked += 1
            found, dists = owner_of(module, owners)
            if not dists:
                problems.add(
                    f"{where}:{line} imports {module}, which no installed distribution provides "
                    f"(declare the distribution that ships it in pyproject.toml)"
                )
            elif not dists & declared:
                problems.add(
                    f"{where}:{line} imports {found} from {'/'.join(sorted(dists))}, "
                    f"which is not a declared dependency or extra (declared: {', '.join(sorted(declared))})"
                )
    return checked


def check_modules_import(dist: Any, files: list[Path], problems: Problems) -> int:
    """Every module of the package imports, and pkgutil finds every ``.py`` file of the wheel.

    :param dist: the installed distribution.
    :param files: the package's Python files.
    :param problems: where problems go.
    """
    import importlib
    import pkgutil

    import airflow_provider_dintero

    found = [PACKAGE] + [
        m.name
        for m in pkgutil.walk_packages(
            airflow_provider_dintero.__path__,
            f"{PACKAGE}.",
            onerror=lambda n: problems.add(f"cannot walk {n}"),
        )
    ]
    for name in found:
        try:
            importlib.import_module(name)
        except Exception as exc:
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            problems.add(f"import {name} failed: {last}")
    root = Path(str(dist.locate_file("")))
    for path in files:
        parts = path.relative_to(root).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if module not in found:
            problems.add(f"{module} is in the wheel but pkgutil does not find it (a missing __init__.py?)")
    return len(found)


def airflow_json(args: list[str], env: dict[str, str], problems: Problems) -> list[dict[str, Any]]:
    """Run ``airflow <args> -o json`` and return its rows.

    :param args: the CLI arguments.
    :param env: the environment.
    :param problems: where problems go.
    """
    airflow = Path(sys.executable).with_name("airflow")
    proc = subprocess.run(
        [str(airflow), *args, "-o", "json"], env=env, capture_output=True, text=True, timeout=240
    )
    if proc.returncode != 0:
        tail = " | ".join(line.strip() for line in proc.stderr.strip().splitlines()[-3:])
        problems.add(f"airflow {' '.join(args)} failed (exit {proc.returncode}): {tail}")
        return []
    rows: Any = None
    for line in proc.stdout.splitlines():  # log lines may precede the JSON
        if line.startswith("["):
            try:
                rows = json.loads(line)
                break
            except ValueError:
                continue
    if not isinstance(rows, list):
        problems.add(f"airflow {' '.join(args)} printed no JSON list: {proc.stdout[-2000:]}")
        return []
    for line in proc.stderr.splitlines():
        if DISTRIBUTION in line or PACKAGE in line:
            problems.add(f"airflow {' '.join(args)} complained about the provider: {line.strip()}")
    return rows


def check_registration(version: str, env: dict[str, str], light: bool, problems: Problems) -> None:
    """``airflow providers list`` shows the provider; the providers manager has its connection type.

    :param version: the installed version.
    :param env: the Airflow environment.
    :param light: skip the CLI (``airflow providers list``), read the providers manager.
    :param problems: where problems go.
    """
    import importlib

    from airflow_provider_dintero.get_provider_info import get_provider_info

    info = get_provider_info()
    if info.get("package-name") != DISTRIBUTION or info.get("versions", [None])[0] != version:
        problems.add(f"get_provider_info() says {info.get('package-name')} {info.get('versions')}")
    named = {
        m
        for kind in ("hooks", "operators", "sensors", "triggers")
        for i in info.get(kind, [])
        for m in i["python-modules"]
    }
    named |= {t["python-module"] for t in info.get("transfers", [])}
    named |= {c["hook-class-name"].rsplit(".", 1)[0] for c in info.get("connection-types", [])}
    for module in sorted(named):
        try:
            importlib.import_module(module)
        except Exception as exc:
            problems.add(f"get_provider_info() names {module}, which does not import: {exc}")
    # the CLI (a fresh process, 10-50 s here); the light check reads the providers manager only
    rows = [] if light else airflow_json(["providers", "list"], env, problems)
    ours = [r for r in rows if r.get("package_name") == DISTRIBUTION]
    if light:
        from airflow.providers_manager import ProvidersManager

        listed = ProvidersManager().providers.get(DISTRIBUTION)
        ours = [{"package_name": DISTRIBUTION, "version": listed.version}] if listed else []
    if not ours:
        names = sorted(str(r.get("package_name")) for r in rows)
        problems.add(f"`airflow providers list` does not show {DISTRIBUTION} (it shows {names})")
    elif ours[0].get("version") != version:
        problems.add(
            f"`airflow providers list` shows {DISTRIBUTION} {ours[0].get('version')}, installed {version}"
        )
    # The connection type as `airflow providers hooks` and the connection form see it, from the
    # same ProvidersManager, which imports only our hook (the CLI imports every provider's hooks:
    # ~18 s per environment here).
    import warnings

    from airflow.providers_manager import ProvidersManager

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 3.x: ProvidersManager.hooks is deprecated for task code
        hook = ProvidersManager().hooks.get(CONN_TYPE)  # type: ignore[no-untyped-call]
    if hook is None:
        problems.add(f"Airflow's providers manager has no connection type {CONN_TYPE!r}")
    elif (hook.hook_class_name, hook.package_name) != (HOOK_CLASS, DISTRIBUTION):
        problems.add(
            f"connection type {CONN_TYPE!r} is {hook.hook_class_name} from {hook.package_name}, "
            f"expected {HOOK_CLASS} from {DISTRIBUTION}"
        )
    check_connection_form(env, problems)


def served_form() -> dict[str, Any]:
    """The Dintero connection form as this line's UI gets it (run in a fresh process: ``form``).

    Airflow 3.x: what the api-server's ``/ui/connections/hook_meta`` serves (``HookMetaService``:
    3.2+ reads ``conn-fields``; 3.0 and 3.1 call the hook class's own ``get_connection_form_widgets``
    with wtforms mocked, and only when wtforms imports, i.e. with the FAB provider installed).
    Airflow 2.11: the providers manager that the webserver's form reads (it drops every widget of a
    hook when one is of an unsupported class).
    """
    from airflow.providers_manager import ProvidersManager

    try:
        from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
    except ImportError:  # Airflow 2.11
        manager = ProvidersManager()
        prefix = f"extra__{CONN_TYPE}__"
        fields = [n.removeprefix(prefix) for n in manager.connection_form_widgets if n.startswith(prefix)]
        labels = (manager.field_behaviours.get(CONN_TYPE) or {}).get("relabeling") or {}
    else:
        meta = [m for m in HookMetaService.hook_meta_data() if m.connection_type == CONN_TYPE]
        fields = list((meta[0].extra_fields or {}) if meta else {})
        standard = meta[0].standard_fields if meta else None
        labels = {
            name: getattr(standard, name).title
            for name in ("host", "login", "password")
            if standard is not None and getattr(standard, name) is not None
        }
    return {"fields": sorted(fields), "labels": labels}


def check_connection_form(env: dict[str, str], problems: Problems) -> None:
    """The connection form as a fresh web server process of this line serves it.

    In a fresh process: a providers manager that has already loaded the hooks unmocked (as this
    process's other checks do) makes 3.1's ``HookMetaService`` skip their widgets.

    :param env: the Airflow environment.
    :param problems: where problems go.
    """
    from airflow_provider_dintero.get_provider_info import CONNECTION_FIELDS, UI_FIELD_BEHAVIOUR

    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "form"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        problems.add(f"reading the connection form failed ({proc.returncode}): {proc.stderr.strip()[-1000:]}")
        return
    form = json.loads(lines[-1])
    where = "the connection form"
    if form["fields"] != sorted(CONNECTION_FIELDS):
        problems.add(f"{where} shows the fields {form['fields']}, expected {sorted(CONNECTION_FIELDS)}")
    if form["labels"] != UI_FIELD_BEHAVIOUR["relabeling"]:
        expected = UI_FIELD_BEHAVIOUR["relabeling"]
        problems.add(f"{where} labels the standard fields {form['labels']}, expected {expected}")


def check_emulator(env: dict[str, str], problems: Problems) -> None:
    """The emulator CLI prints help, starts on 127.0.0.1 and serves a token and the hook's test.

    :param env: the environment.
    :param problems: where problems go.
    """
    import urllib.request

    cmd = [sys.executable, "-m", f"{PACKAGE}.emulator"]
    proc = subprocess.run([*cmd, "--help"], env=env, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 or "usage:" not in proc.stdout:
        problems.add(f"emulator --help failed ({proc.returncode}): {proc.stderr.strip()[-1000:]}")
        return
    server = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()
        state = json.loads(server.stdout.readline() or "null")
        if not banner.startswith("Dintero emulator listening on http://127.0.0.1:") or not state:
            problems.add(
                f"emulator did not start: {banner!r} {server.stderr.read() if server.stderr else ''}"
            )
            return
        base, partner = state["base_url"], state["partner_id"]
        credentials = f"{state['partner_client_id']}:{state['partner_client_secret']}".encode()
        request = urllib.request.Request(
            f"{base}/v1/accounts/{partner}/auth/token",
            data=json.dumps(
                {"grant_type": "client_credentials", "audience": f"{base}/v1/accounts/{partner}"}
            ).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": "Basic " + base64.b64encode(credentials).decode(),
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
        if not body.get("access_token"):
            problems.add(f"emulator token response has no access_token (keys: {sorted(body)})")
        conn = {
            "conn_type": CONN_TYPE,
            "host": base,
            "login": state["partner_client_id"],
            "password": state["partner_client_secret"],
            "extra": {"account_id": partner},
        }
        os.environ["AIRFLOW_CONN_DINTERO_WHEEL_CHECK"] = json.dumps(conn)
        from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook

        ok, message = DinteroPartnerHook("dintero_wheel_check").test_connection()
        if not ok:
            problems.add(f"the hook's connection test against the emulator failed: {message}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            problems.add("emulator did not stop on SIGTERM within 30 s")
        if server.returncode not in (0, None):
            problems.add(f"emulator exited with {server.returncode} on SIGTERM")


#: the line an example DAG file carries when it defines its DAG on Airflow 3 only
AIRFLOW_3_ONLY_MARK = "# example DAG: Airflow 3 only"


def check_example_dags(folder: Path, problems: Problems) -> int:
    """Every example DAG file parses, without import errors, into at least one DAG.

    :param folder: the example_dags directory.
    :param problems: where problems go.
    """
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3
    except ImportError:
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]  # Airflow 2.11

    bag = DagBag(dag_folder=str(folder))
    for file, error in sorted(bag.import_errors.items()):
        problems.add(f"example DAG {file} does not import: {error.strip().splitlines()[-1]}")
    files = {str(p.resolve()) for p in folder.glob("*.py")}
    from importlib.metadata import version

    if int(version("apache-airflow").split(".")[0]) < 3:
        # a file whose DAG needs Airflow 3 says so (asset watchers do not exist on 2.11)
        files = {f for f in files if AIRFLOW_3_ONLY_MARK not in Path(f).read_text(encoding="utf-8")}
    with_dags = {str(Path(d.fileloc).resolve()) for d in bag.dags.values()}
    for file in sorted(files - with_dags - {str(Path(f).resolve()) for f in bag.import_errors}):
        problems.add(f"example DAG file {file} defines no DAG")
    return len(bag.dags)


def check_lower_bounds(dist: Any, problems: Problems) -> None:
    """Every declared requirement (extras included) is installed at exactly its lower bound.

    :param dist: the installed distribution.
    :param problems: where problems go.
    """
    from importlib.metadata import PackageNotFoundError, version

    for req in dist.requires or []:
        name = requirement_name(req)
        bound = re.search(r">=\s*([0-9][^,;\s]*)", req.split(";", 1)[0])
        try:
            have = version(name)
        except PackageNotFoundError:
            problems.add(f"{name} ({req!r}) is not installed in the lower-bounds environment")
            continue
        if bound and not same_release(have, bound.group(1)):
            problems.add(
                f"{name} {have} is installed where the declared lower bound is {bound.group(1)}: "
                f"raise the bound to what resolves, or recompile requirements/min-airflow-2.11.txt"
            )


def check_installed(example_dags: Path, lower_bounds: bool, light: bool = False) -> int:
    """Run every check of the installed wheel.

    :param example_dags: the example_dags directory of the checkout.
    :param lower_bounds: also check that every requirement is installed at its lower bound.
    :param light: read the providers manager instead of running ``airflow providers list``.
    """
    problems = Problems()
    with tempfile.TemporaryDirectory(prefix="check-wheel-") as tmp:
        home = Path(tmp)
        (home / "dags").mkdir()
        env = airflow_env(home)
        for key in list(os.environ):
            if key.startswith("AIRFLOW"):
                del os.environ[key]
        os.environ.update({k: v for k, v in env.items() if k.startswith("AIRFLOW")})
        dist, files = installed_files()

        def step(name: str, check: Any, *args: Any) -> Any:
            started = time.monotonic()
            try:
                return check(*args, problems)
            except Exception as exc:  # a crash in one check must not hide the others' findings
                last = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                problems.add(f"{name} check crashed: {last}")
                return "?"
            finally:
                print(f"   {name}: {time.monotonic() - started:.1f} s", flush=True)

        step("origin", check_origin, dist)
        if lower_bounds:
            step("lower bounds", check_lower_bounds, dist)
        imported = step("declared imports", check_declared_imports, dist, files)
        modules = step("module imports", check_modules_import, dist, files)
        step("registration", check_registration, dist.version, env, light)
        step("emulator", check_emulator, env)
        dags = step("example DAGs", check_example_dags, example_dags.resolve())
    bounds = " at its lower bounds" if lower_bounds else ""
    return problems.exit(
        f"installed {DISTRIBUTION} {dist.version}{bounds} on Airflow {airflow_version()}: "
        f"{imported} third-party imports checked, {modules} modules, registration, emulator, "
        f"{dags} example DAGs"
    )


def airflow_version() -> str:
    """The installed Airflow version (from metadata: importing airflow may be what broke)."""
    from importlib.metadata import version

    return version("apache-airflow")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point.

    :param argv: arguments (default ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    dist = sub.add_parser("dist", help="check the built wheel and sdist against the checkout")
    dist.add_argument("dist_dir", type=Path)
    installed = sub.add_parser("installed", help="check the installed wheel (run in the clean virtualenv)")
    installed.add_argument("--example-dags", type=Path, required=True)
    installed.add_argument(
        "--light",
        action="store_true",
        help="the providers manager instead of `airflow providers list` (for the extra lines)",
    )
    installed.add_argument(
        "--at-lower-bounds",
        action="store_true",
        help="every requirement must be installed at its lower bound",
    )
    sub.add_parser("form", help="print the Dintero connection form as this line's UI gets it (JSON)")
    args = parser.parse_args(argv)
    if args.command == "form":
        print(json.dumps(served_form()))
        return 0
    if args.command == "dist":
        return check_dist(args.dist_dir)
    return check_installed(args.example_dags, args.at_lower_bounds, args.light)


if __name__ == "__main__":
    sys.exit(main())
