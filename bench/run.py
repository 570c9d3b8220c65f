"""
Benchmarks for airflow-provider-dintero, in one run, side by side with what a user would pick
instead. Prints a table of ratios, counts and peak memory; asserts nothing about wall-clock
time (the machines are shared and noisy). Run with ``bash bench/run.sh``.

Sections (``--only`` picks some): ``copy`` (one 100 MiB and one 1 GiB attachment, emulator ->
moto S3, each method in a fresh process: a bare requests->boto3 baseline, the amazon provider's
HttpToS3Operator, SettlementsToS3Operator; peak RSS over the process baseline, throughput ratio),
``tokens`` (token endpoint calls for many API calls; the shared Variable cache across
processes), ``masking`` (secrets-masker patterns and registration cost after 10, 100 and 1,000
merchants' tokens in one process), ``import`` (import cost over ``import airflow``),
``merchants`` (the settlements example DAG through dag.test for 10 and 100 merchants, and its
per-merchant path, sensor poke + copy operator, for 10, 100 and 1,000 merchants: API calls and
time per merchant),
``deferrable`` (the task's state and list requests per poll while a deferrable sensor waits),
``triggerer`` (10 to 1,000 deferred settlement triggers in Airflow's real triggerer processes:
``bench/triggerer.py``, which also writes ``bench/RESULTS-triggerer.md``; run it directly for
other sizes, modes or trigger classes).

The emulator and moto run in their own processes (``python -m airflow_provider_dintero.emulator``,
``moto_server -H 127.0.0.1``), on loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ROWS: list[tuple[str, str, str, str]] = []


def row(section: str, measure: str, value: str, target: str) -> None:
    """Record one line of the result table and echo it."""
    ROWS.append((section, measure, value, target))
    print(f"  {section:<10} {measure:<74} {value:>16}   {target}", flush=True)


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    """Run ``code`` in a fresh interpreter of this venv and return its stdout."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"benchmark step failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def airflow_env(home: Path) -> dict[str, str]:
    """Environment for a throw-away Airflow home on SQLite."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
        "AIRFLOW__CORE__FERNET_KEY": "fwWeVJ0xjE3cDzbIEYYbYbrV24bDyG63uDORbXapXTU=",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


# ------------------------------------------------------------------------------------ import


PUBLIC_MODULES = [
    "airflow_provider_dintero.get_provider_info",
    "airflow_provider_dintero.hooks.dintero",
    "airflow_provider_dintero.operators.accounts",
    "airflow_provider_dintero.operators.api_clients",
    "airflow_provider_dintero.operators.payment_profiles",
    "airflow_provider_dintero.operators.webhooks",
    "airflow_provider_dintero.operators.report_configurations",
    "airflow_provider_dintero.sensors.settlements",
    "airflow_provider_dintero.triggers.settlements",
    "airflow_provider_dintero.transfers.settlements_to_s3",
    "airflow_provider_dintero.transfers.insight_report_to_s3",
]


def bench_import(runs: int = 9) -> None:
    """Median time to import every public module after ``import airflow``; heavy imports seen."""
    code = f"""
        import importlib, json, sys, time
        t0 = time.perf_counter()
        import airflow
        import airflow.providers.common.compat.sdk
        import airflow_provider_dintero  # the package root (and, for an editable install, its finder)
        t1 = time.perf_counter()
        before = set(sys.modules)  # what Airflow itself loaded (Airflow 3's SDK brings httpx)
        for name in {PUBLIC_MODULES!r}:
            importlib.import_module(name)
        t2 = time.perf_counter()
        heavy = sorted(m for m in ("boto3", "botocore", "httpx", "airflow_provider_dintero.emulator",
                                   "airflow.providers.amazon.aws.hooks.s3")
                       if m in sys.modules and m not in before)
        print(json.dumps({{"airflow": t1 - t0, "provider": t2 - t1, "heavy": heavy}}))
    """
    with tempfile.TemporaryDirectory() as home, tempfile.TemporaryDirectory() as pycache:
        # As from a wheel: bytecode cached. This machine sets PYTHONDONTWRITEBYTECODE and the
        # package is installed editable, so without this every run compiles the provider's source.
        env = {**airflow_env(Path(home)), "PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": pycache}
        run_python(code, env)  # writes the bytecode
        samples = [json.loads(run_python(code, env).strip().splitlines()[-1]) for _ in range(runs)]
    airflow_ms = statistics.median(s["airflow"] for s in samples) * 1000
    provider_ms = statistics.median(s["provider"] for s in samples) * 1000
    row("import", f"import airflow (median of {runs})", f"{airflow_ms:.0f} ms", "reference")
    shown_ms = f"{provider_ms:.1f} ms"
    row("import", "every public provider module on top (median, bytecode cached)", shown_ms, "< 50 ms")
    heavy = samples[0]["heavy"]
    shown = ", ".join(heavy) or "none"
    row("import", "boto3 / httpx / emulator newly imported by the provider's modules", shown, "none")


# ------------------------------------------------------------------------------------ tokens


def bench_tokens() -> None:
    """Token endpoint calls for 1,000 API calls over 10 merchants; the shared Variable cache."""
    code = """
        import json, os
        from airflow_provider_dintero.emulator import DinteroEmulator, EmulatorSeed
        from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
        with DinteroEmulator(EmulatorSeed(merchants=10)) as emu:
            os.environ["AIRFLOW_CONN_DINTERO_DEFAULT"] = json.dumps({
                "conn_type": "dintero", "host": emu.base_url, "login": emu.partner_client_id,
                "password": emu.partner_client_secret, "extra": {"account_id": emu.partner_id}})
            for i in range(1000):
                DinteroPartnerHook().get_account(emu.merchant_ids[i % 10])
            print(json.dumps({
                "calls": emu.count(path_regex=r".*/management/settings$"),
                "partner": emu.count(path_regex=r"^/v1/accounts/T11200000/auth/token$"),
                "exchange": emu.count(path_regex=r".*/exchange_token$"),
                "merchant": emu.count(path_regex=r"^/v1/accounts/T112000(0[1-9]|10)/auth/token$"),
            }))
    """
    with tempfile.TemporaryDirectory() as home:
        counts = json.loads(run_python(code, airflow_env(Path(home))).strip().splitlines()[-1])
    row("tokens", "API calls made (10 merchants, one process)", str(counts["calls"]), "1000")
    row(
        "tokens",
        "token endpoint calls: partner + exchange + merchant",
        f"{counts['partner']} + {counts['exchange']} + {counts['merchant']}",
        "<= 1 + 10 + 10",
    )
    bench_shared_variable_cache()


def bench_masking() -> None:
    """
    Secrets-masker patterns after 10, 100 and 1,000 merchants' tokens in one process (the
    triggerer's case), with the provider's policy (only the partner's credentials registered) and
    with the old one (every access and exchange token registered), and the cost of one more
    registration at that size (Airflow recompiles one regex over every pattern on each).
    """
    code = """
        import json, os, sys, time
        sys.path.insert(0, REPO_PATH)
        from tests.reliability.hostile import HostileServer  # JWT-shaped tokens for every account
        from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
        from airflow_provider_dintero.redaction import masker_pattern_count, _masker
        from airflow.providers.common.compat.sdk import mask_secret

        calls = []
        masker = _masker()
        original = masker.add_mask
        def counting(secret, *a, **k):
            calls.append(secret)
            return original(secret, *a, **k)
        masker.add_mask = counting

        def one_more_ms():
            start = time.perf_counter()
            original(f"probe-{time.perf_counter_ns()}-0123456789abcdef")
            return (time.perf_counter() - start) * 1000

        out = {}
        with HostileServer() as server:
            os.environ["AIRFLOW_CONN_DINTERO_DEFAULT"] = json.dumps({
                "conn_type": "dintero", "host": server.url, "login": "bench-client",
                "password": "bench-secret-0123456789", "extra": {"account_id": "T11200000"}})
            done = 0
            for n in (10, 100, 1000):
                for i in range(done + 1, n + 1):
                    DinteroPartnerHook().get_token(f"T112{i:05d}")
                done = n
                probes = len(out)  # each earlier probe left one pattern
                out[n] = {"patterns": masker_pattern_count() - probes, "registrations": len(calls)}
                out[n]["ms"] = one_more_ms()
            masker.add_mask = original
            # the old policy registered every access and exchange token: 100 merchants' worth
            # (the cost grows with N squared, so 1,000 would take tens of minutes here)
            for token in server.issued_tokens[:201]:
                mask_secret(token)
            out["old"] = {"patterns": masker_pattern_count(), "ms": one_more_ms()}
        print(json.dumps(out))
    """.replace("REPO_PATH", repr(str(REPO)))
    with tempfile.TemporaryDirectory() as home:
        result = json.loads(run_python(code, airflow_env(Path(home)), timeout=900).strip().splitlines()[-1])
    for n in ("10", "100", "1000"):
        r = result[n]
        row(
            "masking",
            f"masker patterns / add_mask calls (Airflow's connection reads) / ms per new one, {n} merchants",
            f"{r['patterns']} / {r['registrations']} / {r['ms']:.2f}",
            "flat in N",
        )
    old = result["old"]
    row(
        "masking",
        "old policy (every access and exchange token registered), 100 merchants",
        f"{old['patterns']} / - / {old['ms']:.2f}",
        "",
    )


def bench_shared_variable_cache(processes: int = 20) -> None:
    """20 separate processes (as 20 mapped task instances) with ``token_cache: variable``."""
    worker = """
        import json, os
        from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
        hook = DinteroPartnerHook()
        hook.get_account(os.environ["MERCHANT"])
    """
    driver = f"""
        import json, os, subprocess, sys
        from airflow_provider_dintero.emulator import DinteroEmulator
        with DinteroEmulator() as emu:
            conn = json.dumps({{
                "conn_type": "dintero", "host": emu.base_url, "login": emu.partner_client_id,
                "password": emu.partner_client_secret,
                "extra": {{"account_id": emu.partner_id, "token_cache": "variable"}}}})
            env = dict(os.environ, AIRFLOW_CONN_DINTERO_DEFAULT=conn, MERCHANT=emu.merchant_ids[0])
            for _ in range({processes}):
                done = subprocess.run([sys.executable, "-c", {textwrap.dedent(worker)!r}], env=env,
                                      capture_output=True, text=True)
                if done.returncode:
                    raise SystemExit(done.stderr[-3000:])
            print(json.dumps({{
                "calls": emu.count(path_regex=r".*/management/settings$"),
                "tokens": emu.count(path_regex=r".*/auth/token$"),
                "exchange": emu.count(path_regex=r".*/exchange_token$")}}))
    """
    with tempfile.TemporaryDirectory() as home:
        env = airflow_env(Path(home))
        run_python("from airflow.utils import db; db.resetdb()", env)
        counts = json.loads(run_python(driver, env).strip().splitlines()[-1])
    row(
        "tokens",
        f"shared Variable cache: {processes} processes, API calls",
        str(counts["calls"]),
        str(processes),
    )
    row(
        "tokens",
        "  token endpoint calls (partner + merchant) / exchanges",
        f"{counts['tokens']} / {counts['exchange']}",
        "2 / 1 (vs 40 / 20 uncached)",
    )


# ------------------------------------------------------------------------------------ services


MIB = 1024 * 1024


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 server in its own process on 127.0.0.1 (its memory is not ours); yields its URL."""
    port = free_port()
    binary = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
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
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


@contextlib.contextmanager
def emulator_process(seed: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """
    The Dintero emulator in its own process (``python -m airflow_provider_dintero.emulator``),
    seeded with ``seed`` (``EmulatorSeed`` fields); yields its state (ids, credentials, ``base_url``).
    """
    seed_file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115
    with seed_file:
        json.dump(seed or {}, seed_file)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_dintero.emulator",
            "--port",
            "0",
            "--seed-file",
            seed_file.name,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "Dintero emulator listening on ..."
        state = json.loads(proc.stdout.readline())
        # Keep draining stdout so the emulator never blocks on a full pipe.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield state
    finally:
        _stop(proc)
        os.unlink(seed_file.name)


def control(state: dict[str, Any], method: str, route: str, body: Any = None) -> Any:
    """Call the emulator's out-of-process control API (``/_emulator/...``)."""
    import requests

    response = requests.request(method, f"{state['base_url']}/_emulator/{route}", json=body, timeout=60)
    response.raise_for_status()
    return response.json() if response.content else None


def connections(state: dict[str, Any], s3_url: str) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` variables: Dintero on the emulator (partner credentials), AWS on moto."""
    return {
        "AIRFLOW_CONN_DINTERO_DEFAULT": json.dumps(
            {
                "conn_type": "dintero",
                "host": state["base_url"],
                "login": state["partner_client_id"],
                "password": state["partner_client_secret"],
                "extra": {"account_id": state["partner_id"], "checkout_base_url": state["base_url"]},
            }
        ),
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": s3_url, "region_name": "us-east-1"},
            }
        ),
        "AIRFLOW_CONN_HTTP_DINTERO": json.dumps({"conn_type": "http", "host": state["base_url"]}),
    }


def s3_client(s3_url: str) -> Any:
    """A boto3 client on moto, for set-up and checks."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


# ------------------------------------------------------------------------------------ copy


#: Shared by every copy worker: memory probes. VmHWM (peak RSS) is reset through
#: /proc/self/clear_refs right before the copy, so the peak is the copy's own.
_COPY_PRELUDE = """
    import json, os, resource, time
    E = os.environ
    MERCHANT, BUCKET = E["MERCHANT"], E["BUCKET"]
    BIG, WARM = json.loads(E["BIG"]), json.loads(E["WARM"])

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def reset_peak():
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def peak(resettable):
        if resettable:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def url(item):
        return f"/v1/accounts/{MERCHANT}/settlements/{item['sid']}/attachments/{item['att']}"

    def s3_key(item, label):  # the same key for every method (the operator's template renders it)
        return f"bench/{label}/{item['sid']}/{item['att']}.pdf"

    def measure(copy):
        copy(WARM, "warm")  # imports, clients, thread pools, tokens: not the copy's cost
        base = rss()
        resettable = reset_peak()
        t0 = time.perf_counter()
        copy(BIG, "big")
        seconds = time.perf_counter() - t0
        print(json.dumps({"seconds": seconds, "over": peak(resettable) - base, "base": base}))
"""

_COPY_METHODS: dict[str, str] = {
    # (a) the bare baseline: requests' raw stream straight into boto3 with TransferConfig defaults.
    "bare": """
        import boto3, requests
        from boto3.s3.transfer import TransferConfig
        from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
        token = DinteroPartnerHook().get_token(MERCHANT)
        s3 = boto3.client("s3", endpoint_url=E["S3_URL"], region_name="us-east-1")
        session = requests.Session()

        def copy(item, label):
            key = s3_key(item, label)
            with session.get(E["EMU_URL"] + url(item), headers={"Authorization": f"Bearer {token}"},
                             stream=True, timeout=60) as response:
                response.raise_for_status()
                response.raw.decode_content = True
                s3.upload_fileobj(response.raw, BUCKET, key, Config=TransferConfig())

        measure(copy)
    """,
    # (b) the amazon provider's HttpToS3Operator on the same URL.
    "http_to_s3": """
        from airflow.providers.amazon.aws.transfers.http_to_s3 import HttpToS3Operator
        from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
        token = DinteroPartnerHook().get_token(MERCHANT)

        def copy(item, label):
            HttpToS3Operator(task_id="http_to_s3", http_conn_id="http_dintero", endpoint=url(item),
                             method="GET",
                             headers={"Authorization": f"Bearer {token}"}, s3_bucket=BUCKET,
                             s3_key=s3_key(item, label), replace=True).execute({})

        measure(copy)
    """,
    # (c) this provider's operator, as a task runs it.
    "operator": """
        from airflow_provider_dintero.transfers.settlements_to_s3 import SettlementsToS3Operator

        def copy(item, label):
            SettlementsToS3Operator(task_id="copy", account_id=MERCHANT, s3_bucket=BUCKET,
                                    settlement_ids=[item["sid"]], replace=True,
                                    s3_key=f"bench/{label}/{{settlement_id}}/{{attachment_id}}.{{extension}}",
                                    ).execute({})

        measure(copy)
    """,
}


COPY_SIZES = {"100 MiB": 100 * MIB, "1 GiB": 1024 * MIB}
#: HttpToS3Operator holds the whole body (response.content, then a BytesIO copy for boto3):
#: above this size it is not run, its memory is known to be a multiple of the file size.
HTTP_TO_S3_LIMIT = 256 * MIB
COPY_LABELS = {
    "bare": "(a) bare requests -> boto3 upload_fileobj",
    "http_to_s3": "(b) amazon HttpToS3Operator",
    "operator": "(c) SettlementsToS3Operator.execute",
}


def copy_once(
    emu: dict[str, Any], home: Path, method: str, big: dict[str, str], warm: dict[str, str]
) -> dict[str, Any]:
    """One copy method in a fresh interpreter, against a fresh moto server; checks the stored size."""
    with moto_server() as s3_url:
        client = s3_client(s3_url)
        client.create_bucket(Bucket="bench")
        env = {
            **airflow_env(home),
            **connections(emu, s3_url),
            "MERCHANT": emu["merchant_ids"][0],
            "BUCKET": "bench",
            "BIG": json.dumps(big),
            "WARM": json.dumps(warm),
            "S3_URL": s3_url,
            "EMU_URL": emu["base_url"],
        }
        code = textwrap.dedent(_COPY_PRELUDE) + textwrap.dedent(_COPY_METHODS[method])
        result: dict[str, Any] = json.loads(run_python(code, env).strip().splitlines()[-1])
        key = f"bench/big/{big['sid']}/{big['att']}.pdf"
        result["stored"] = int(client.head_object(Bucket="bench", Key=key)["ContentLength"])
        client.delete_object(Bucket="bench", Key=key)
    return result


def bench_copy() -> None:
    """One big attachment, emulator -> moto S3, by three methods; peak memory and throughput."""
    results: dict[tuple[str, str], dict[str, Any]] = {}
    sizes_ok = True
    with (
        emulator_process({"merchants": 1, "reports_per_merchant": 0}) as emu,
        tempfile.TemporaryDirectory() as home,
    ):
        merchant = emu["merchant_ids"][0]

        def add(size: int) -> dict[str, str]:
            body = {"account_id": merchant, "attachment_sizes": {"pdf": size}}
            item = control(emu, "POST", "settlements", body)
            return {"sid": item["id"], "att": item["attachments"][0]["id"]}

        warm = add(64 * 1024)
        for label, size in COPY_SIZES.items():
            big = add(size)
            for method, name in COPY_LABELS.items():
                if method == "http_to_s3" and size > HTTP_TO_S3_LIMIT:
                    row(
                        "copy",
                        f"{label} {name}",
                        "not run",
                        f"buffers the body; > {HTTP_TO_S3_LIMIT // MIB} MiB",
                    )
                    continue
                res = copy_once(emu, Path(home), method, big, warm)
                results[(label, method)] = res
                sizes_ok = sizes_ok and res["stored"] == size
                mib_s = size / MIB / res["seconds"]
                target = "< 150 MB" if method == "operator" else "reference"
                row("copy", f"{label} {name}: peak RSS over baseline", f"{res['over'] / 1e6:.0f} MB", target)
                if method == "bare":
                    row("copy", f"{label} {name}: throughput", f"{mib_s:.0f} MiB/s", "reference")
                else:
                    ratio = results[(label, "bare")]["seconds"] / res["seconds"]
                    target = ">= 0.8x" if method == "operator" else "reference"
                    row("copy", f"{label} {name}: throughput vs (a)", f"{ratio:.2f}x", target)
    first, last = list(COPY_SIZES)
    growth = results[(last, "operator")]["over"] / max(results[(first, "operator")]["over"], 1)
    row("copy", f"(c) peak memory at {last} / at {first}", f"{growth:.2f}x", "~1.0x (flat in file size)")
    row("copy", "every copy's object size in S3 equals the attachment", "yes" if sizes_ok else "NO", "yes")


# ------------------------------------------------------------------------------------ merchants


MERCHANT_COUNTS = (10, 100, 1000)
#: dag.test runs tasks one by one through Airflow's scheduling loop; 1,000 merchants take too long.
DAG_MERCHANT_COUNTS = (10, 100)
SETTLEMENTS_PER_MERCHANT = 3
#: Each added settlement: the provider's own file and Dintero's normalized pdf (small).
SMALL_ATTACHMENTS = {"source": 4096, "pdf": 4096}

#: One process, one metadata DB: a warm-up run of the example DAG (pays Airflow's one-off
#: start-up), then one run per merchant count, each on its own merchants.
_MERCHANTS_COMMON = """
    import collections, json, os, time
    from datetime import datetime, timedelta, timezone
    import boto3, requests

    EMU = os.environ["EMU_URL"]
    s3 = boto3.client("s3", endpoint_url=os.environ["S3_URL"], region_name="us-east-1")
    slices = json.loads(os.environ["SLICES"])
    now = datetime.now(timezone.utc)
    out = {}

    def objects_of(ids):
        wanted, n = set(ids), 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="bench"):
            keys = [o["Key"] for o in page.get("Contents", [])]
            n += sum(1 for k in keys if k.split("account=")[1].split("/")[0] in wanted)
        return n

    def api_log():
        log = requests.get(EMU + "/_emulator/requests", timeout=60).json()
        kinds = collections.Counter(
            "token" if r["path"].endswith("/token") else "attachment" if "/attachments/" in r["path"]
            else "settlements list" if r["path"].endswith("/settlements") else r["path"] for r in log)
        return len(log), dict(kinds)
"""

#: The whole example DAG through dag.test (one metadata DB): a warm-up run, then one per count.
_MERCHANTS_DAG_WORKER = """
    import importlib.util
    from airflow.utils import db
    db.resetdb()
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    DagBundlesManager().sync_bundles_to_db()
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    path = os.path.join(os.environ["AIRFLOW__CORE__DAGS_FOLDER"], "settlements_to_s3.py")
    spec = importlib.util.spec_from_file_location("bench_settlements_dag", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.settlements_to_s3_dag
    bag = DagBag(dag_folder=os.devnull, collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)

    for i, (name, ids) in enumerate(slices.items()):
        requests.delete(EMU + "/_emulator/requests", timeout=30)
        t0 = time.perf_counter()
        dr = dag.test(run_conf={"merchant_ids": ids, "s3_bucket": "bench"},
                      logical_date=now - timedelta(minutes=len(slices) - i))
        seconds = time.perf_counter() - t0
        tis = dr.get_task_instances()
        task_seconds = sum((ti.end_date - ti.start_date).total_seconds() for ti in tis
                           if ti.task_id in ("wait_for_settlements", "copy_to_s3")
                           and ti.end_date and ti.start_date)
        calls, kinds = api_log()
        out[name] = {"seconds": seconds, "task_seconds": task_seconds, "calls": calls, "kinds": kinds,
                     "ok": str(dr.state) == "success" and all(str(ti.state) == "success" for ti in tis),
                     "objects": objects_of(ids)}
    print(json.dumps(out))
"""

#: The per-merchant path of the DAG without the scheduler: the sensor's poke, then the copy
#: operator on the sensor's find, fresh operators (and Dintero hooks) per merchant, in one
#: process. Two things a task process would not share are made per merchant: Airflow's secrets
#: masker is reset (each task instance has its own process and masker; one masker collecting
#: every merchant's tokens recompiles an ever longer regex per new token, measured apart), and
#: the S3 hook is shared (creating a boto3 client is the amazon provider's constant per-task cost).
_MERCHANTS_DIRECT_WORKER = """
    import uuid
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.sdk._shared.secrets_masker.secrets_masker import _secrets_masker
    from airflow_provider_dintero.sensors.settlements import SettlementSensor
    from airflow_provider_dintero.transfers.settlements_to_s3 import SettlementsToS3Operator

    since = (now - timedelta(days=1)).isoformat()
    s3_hook = S3Hook(aws_conn_id="aws_default")
    masker = _secrets_masker()
    seen = []
    for name, ids in slices.items():
        requests.delete(EMU + "/_emulator/requests", timeout=30)
        ok = True
        t0 = time.perf_counter()
        for merchant in ids:
            masker.reset_masker()
            found = SettlementSensor(task_id="wait", account_id=merchant, since=since).poke({})
            ok = ok and found.is_done
            copy = SettlementsToS3Operator(task_id="copy", account_id=merchant, s3_bucket="bench",
                                           settlement_ids=found.xcom_value)
            copy.__dict__["s3_hook"] = s3_hook
            result = copy.execute({})
            ok = ok and len(result["settlement_ids"]) == int(os.environ["PER_MERCHANT"])
            seen.append(set(masker.patterns))
        seconds = time.perf_counter() - t0
        calls, kinds = api_log()
        out[name] = {"seconds": seconds, "calls": calls, "kinds": kinds, "ok": ok, "objects": objects_of(ids)}

    def add_mask_cost(pattern_sets):
        # One long-lived process (a triggerer, or dag.test) that masked these merchants' tokens.
        masker.reset_masker()
        masker.patterns = set().union(*pattern_sets)
        t0 = time.perf_counter()
        masker.add_mask(uuid.uuid4().hex * 4)
        return {"seconds": time.perf_counter() - t0, "patterns": len(masker.patterns)}

    out["masker"] = {str(n): add_mask_cost(seen[:n]) for n in (10, 100, 1000) if n <= len(seen)}
    print(json.dumps(out))
"""


def _slices(ids: list[str], counts: tuple[int, ...]) -> tuple[dict[str, list[str]], list[str]]:
    """Disjoint merchant lists: one for a warm-up run, then one per count; and the rest."""
    slices = {"warm": ids[:1]}
    start = 1
    for count in counts:
        slices[str(count)] = ids[start : start + count]
        start += count
    return slices, ids[start:]


def bench_merchants() -> None:
    """
    The settlements example DAG through dag.test for 10 and 100 merchants, and its per-merchant
    path (sensor poke + copy operator, no scheduler) for 10, 100 and 1,000 merchants.
    """
    total = 2 + sum(DAG_MERCHANT_COUNTS) + sum(MERCHANT_COUNTS)
    seed = {"merchants": total, "settlements_per_provider": 0, "reports_per_merchant": 0}
    per_object = len(SMALL_ATTACHMENTS) + 1  # the attachments and the manifest
    with emulator_process(seed) as emu, moto_server() as s3_url, tempfile.TemporaryDirectory() as home:
        s3_client(s3_url).create_bucket(Bucket="bench")
        for merchant in emu["merchant_ids"]:
            for _ in range(SETTLEMENTS_PER_MERCHANT):
                control(
                    emu,
                    "POST",
                    "settlements",
                    {"account_id": merchant, "attachment_sizes": SMALL_ATTACHMENTS},
                )
        dag_slices, rest = _slices(list(emu["merchant_ids"]), DAG_MERCHANT_COUNTS)
        direct_slices, _ = _slices(rest, MERCHANT_COUNTS)
        env = {
            **airflow_env(Path(home)),
            **connections(emu, s3_url),
            "EMU_URL": emu["base_url"],
            "S3_URL": s3_url,
            "DINTERO_DEMO_BUCKET": "bench",
            "PER_MERCHANT": str(SETTLEMENTS_PER_MERCHANT),
        }
        common = textwrap.dedent(_MERCHANTS_COMMON)
        dag_runs = json.loads(
            run_python(
                common + textwrap.dedent(_MERCHANTS_DAG_WORKER),
                {**env, "SLICES": json.dumps(dag_slices)},
                1800,
            )
            .strip()
            .splitlines()[-1]
        )
        direct_runs = json.loads(
            run_python(
                common + textwrap.dedent(_MERCHANTS_DIRECT_WORKER),
                {**env, "SLICES": json.dumps(direct_slices)},
                1800,
            )
            .strip()
            .splitlines()[-1]
        )
    print(json.dumps({"dag": dag_runs, "direct": direct_runs}), flush=True)
    for label, runs, counts in (
        ("dag.test", dag_runs, DAG_MERCHANT_COUNTS),
        ("direct", direct_runs, MERCHANT_COUNTS),
    ):
        first = runs[str(counts[0])]
        all_ok = True
        for count in counts:
            run = runs[str(count)]
            all_ok = all_ok and run["ok"] and run["objects"] == count * SETTLEMENTS_PER_MERCHANT * per_object
            kinds = run["kinds"]
            row(
                "merchants",
                f"{label} {count}: API calls per merchant (token/list/attachment)",
                f"{run['calls'] / count:.1f} ({kinds.get('token', 0) / count:.0f}/"
                f"{kinds.get('settlements list', 0) / count:.0f}/{kinds.get('attachment', 0) / count:.0f})",
                "constant",
            )
            row(
                "merchants",
                f"{label} {count}: seconds per merchant",
                f"{run['seconds'] / count:.3f} s",
                "reference",
            )
            if "task_seconds" in run:
                row(
                    "merchants",
                    f"{label} {count}: task seconds per merchant",
                    f"{run['task_seconds'] / count:.3f} s",
                    "reference",
                )
        last = runs[str(counts[-1])]
        ratio = (last["seconds"] / counts[-1]) / (first["seconds"] / counts[0])
        target = "<= ~1.x (linear)" if label == "direct" else "reference (scheduler loop)"
        row(
            "merchants",
            f"{label}: per-merchant time at {counts[-1]} / at {counts[0]}",
            f"{ratio:.2f}x",
            target,
        )
        if "task_seconds" in last:
            task_ratio = (last["task_seconds"] / counts[-1]) / (first["task_seconds"] / counts[0])
            row(
                "merchants",
                f"{label}: per-merchant task time at {counts[-1]} / at {counts[0]}",
                f"{task_ratio:.2f}x",
                "<= ~1.x (linear)",
            )
        row(
            "merchants", f"{label}: every run succeeded, every object in S3", "yes" if all_ok else "NO", "yes"
        )
    for count, cost in direct_runs["masker"].items():
        row(
            "merchants",
            f"one process masking {count} merchants' tokens: next add_mask ({cost['patterns']} patterns)",
            f"{cost['seconds'] * 1000:.1f} ms",
            "~flat",
        )


# ------------------------------------------------------------------------------------ deferrable


DEFER_POLL_INTERVAL = 0.5
DEFER_POLLS_BEFORE_MATCH = 4

#: A DAG with one deferrable SettlementSensor through dag.test (the trigger runs inline). A
#: thread samples the task instance's state in the metadata DB while the trigger polls, then
#: adds a matching settlement after a few polls. Polls are counted by wrapping the trigger's
#: ``_poll``; list requests are counted by the emulator.
_DEFERRABLE_WORKER = """
    import collections, json, os, threading, time
    from datetime import datetime, timedelta, timezone
    from airflow.utils import db
    db.resetdb()
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    DagBundlesManager().sync_bundles_to_db()
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.taskinstance import TaskInstance
    from airflow.providers.common.compat.sdk import DAG
    from airflow.utils.session import create_session
    from sqlalchemy import select
    from airflow_provider_dintero.emulator import DinteroEmulator, EmulatorSeed
    from airflow_provider_dintero.sensors.settlements import SettlementSensor
    from airflow_provider_dintero.triggers.settlements import SettlementTrigger

    POLLS_BEFORE = int(os.environ["POLLS_BEFORE"])
    polls = []
    original_poll = SettlementTrigger._poll

    async def counted_poll(self, hook):
        found = await original_poll(self, hook)
        polls.append(time.monotonic())  # counted once answered: the watcher adds after a miss
        return found

    SettlementTrigger._poll = counted_poll

    # What each run of the task itself ended in, and whether a task run is in progress (a worker
    # slot held) while the trigger polls. (dag.test re-queues a deferred task instance in the DB
    # before it runs the trigger inline, so the DB shows "queued" there, not "deferred".)
    from airflow.sdk.execution_time import supervisor
    task_runs, active = [], []
    original_run = supervisor.run_task_in_process

    def recorded_run(*args, **kwargs):
        active.append(1)
        try:
            result = original_run(*args, **kwargs)
        finally:
            active.pop()
        task_runs.append([str(getattr(result.ti.state, "value", result.ti.state)), type(result.msg).__name__])
        return result

    supervisor.run_task_in_process = recorded_run

    with DinteroEmulator(EmulatorSeed(merchants=1, reports_per_merchant=0)) as emu:
        os.environ["AIRFLOW_CONN_DINTERO_DEFAULT"] = json.dumps({
            "conn_type": "dintero", "host": emu.base_url, "login": emu.partner_client_id,
            "password": emu.partner_client_secret, "extra": {"account_id": emu.partner_id}})
        merchant = emu.merchant_ids[0]
        since = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
        with DAG("bench_deferrable", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
                 catchup=False) as dag:
            SettlementSensor(task_id="wait", account_id=merchant, since=since, deferrable=True,
                             poll_interval=float(os.environ["POLL_INTERVAL"]), timeout=300)
        bag = DagBag(dag_folder=os.devnull, collect_dags=False)
        bag.bag_dag(dag)
        sync_bag_to_db(bag, "dags-folder", None)
        states = collections.Counter()
        busy = []
        added = {}

        def watch():
            deadline = time.monotonic() + 120
            while len(polls) < POLLS_BEFORE and time.monotonic() < deadline:
                if polls:  # the trigger is running: the task has handed back its slot
                    with create_session() as session:
                        found = session.scalars(select(TaskInstance.state).where(
                            TaskInstance.dag_id == "bench_deferrable", TaskInstance.task_id == "wait")).all()
                    states.update(str(s) for s in found)
                    busy.append(len(active))
                time.sleep(0.1)
            added["polls"] = len(polls)
            added["lists"] = emu.count(method="GET", path_regex=r"/settlements$")
            emu.add_settlement(merchant, provider="vipps", attachment_sizes={"pdf": 1024})

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        dr = dag.test()
        watcher.join(timeout=30)
        ti = dr.get_task_instances()[0]
        print(json.dumps({
            "run_state": str(dr.state), "ti_state": str(ti.state), "states": dict(states),
            "polls": len(polls), "lists": emu.count(method="GET", path_regex=r"/settlements$"),
            "added_after_polls": added.get("polls"), "lists_at_add": added.get("lists"),
            "found": (ti.xcom_pull(task_ids="wait") or {}).get("settlement_ids", []),
            "task_runs": task_runs, "busy_samples": sum(busy),
        }))
"""


def bench_deferrable() -> None:
    """A deferrable SettlementSensor waiting: the task's state, and list requests per poll."""
    env = {"POLL_INTERVAL": str(DEFER_POLL_INTERVAL), "POLLS_BEFORE": str(DEFER_POLLS_BEFORE_MATCH)}
    with tempfile.TemporaryDirectory() as home:
        res = json.loads(
            run_python(_DEFERRABLE_WORKER, {**airflow_env(Path(home)), **env}).strip().splitlines()[-1]
        )
    print(json.dumps(res), flush=True)
    samples = sum(res["states"].values())
    first = res["task_runs"][0] if res["task_runs"] else ["none", ""]
    row("deferrable", "first task run (check, then defer) ended as", f"{first[0]} ({first[1]})", "deferred")
    row(
        "deferrable",
        f"task runs in progress (worker slot held) while polling, {samples} samples",
        str(res["busy_samples"]),
        "0",
    )
    shown = ", ".join(f"{state} {n}" for state, n in sorted(res["states"].items())) or "no samples"
    row("deferrable", "  TI state in the DB meanwhile (dag.test re-queues it)", shown, "reference")
    row(
        "deferrable",
        f"trigger polls (match added after poll {res['added_after_polls']}, every {DEFER_POLL_INTERVAL} s)",
        str(res["polls"]),
        f"{res['added_after_polls'] + 1}",
    )
    # One list request is the sensor's own check before it defers; the rest are the trigger's.
    per_poll = (res["lists"] - 1) / max(res["polls"], 1)
    row("deferrable", "settlements list requests per trigger poll", f"{per_poll:.2f}", "1")
    ok = res["run_state"] == "success" and len(res["found"]) == 1
    row("deferrable", "run succeeded with the added settlement in XCom", "yes" if ok else "NO", "yes")


# ------------------------------------------------------------------------------------ triggerer


def bench_triggerer() -> None:
    """Deferred settlement triggers at scale in Airflow's real triggerer: see ``bench/triggerer.py``."""
    import triggerer  # bench/triggerer.py, beside this file

    triggerer.run([], row=row)


# ------------------------------------------------------------------------------------ main


SECTIONS: dict[str, Callable[[], None]] = {
    "copy": bench_copy,
    "tokens": bench_tokens,
    "masking": bench_masking,
    "import": bench_import,
    "merchants": bench_merchants,
    "deferrable": bench_deferrable,
    "triggerer": bench_triggerer,
}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--only", nargs="*", choices=sorted(SECTIONS), help="sections to run")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown to this file")
    args = parser.parse_args(argv)
    import platform

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"airflow-provider-dintero benchmarks on {machine}", flush=True)
    for name in args.only or list(SECTIONS):
        SECTIONS[name]()
    if args.markdown:
        lines = ["| section | measure | value | target |", "|---|---|---|---|"]
        lines += [f"| {a} | {b.strip()} | {c} | {d} |" for a, b, c, d in ROWS]
        args.markdown.write_text(f"Machine: {machine}\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
