"""
Benchmarks for airflow-provider-dintero, in one run, side by side with what a user would pick
instead. Prints a table of ratios, counts and peak memory; asserts nothing about wall-clock
time (the machines are shared and noisy). Run with ``bash bench/run.sh``.

Sections (``--only`` picks some): ``copy`` (streaming an attachment to S3 vs a bare
requests->boto3 baseline and the amazon provider's HttpToS3Operator), ``tokens`` (token
endpoint calls for many API calls; the shared Variable cache across processes), ``import``
(import cost over ``import airflow``), ``merchants`` (the settlements example DAG for 10, 100
and 1,000 merchants), ``deferrable`` (worker slots and requests while a sensor waits).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ROWS: list[tuple[str, str, str, str]] = []


def row(section: str, measure: str, value: str, target: str) -> None:
    """Record one line of the result table and echo it."""
    ROWS.append((section, measure, value, target))
    print(f"  {section:<10} {measure:<58} {value:>16}   {target}", flush=True)


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
        t1 = time.perf_counter()
        for name in {PUBLIC_MODULES!r}:
            importlib.import_module(name)
        t2 = time.perf_counter()
        heavy = sorted(m for m in ("boto3", "botocore", "httpx", "airflow_provider_dintero.emulator",
                                   "airflow.providers.amazon.aws.hooks.s3") if m in sys.modules)
        print(json.dumps({{"airflow": t1 - t0, "provider": t2 - t1, "heavy": heavy}}))
    """
    with tempfile.TemporaryDirectory() as home:
        samples = [json.loads(run_python(code, airflow_env(Path(home))).strip().splitlines()[-1])
                   for _ in range(runs)]
    airflow_ms = statistics.median(s["airflow"] for s in samples) * 1000
    provider_ms = statistics.median(s["provider"] for s in samples) * 1000
    row("import", f"import airflow (median of {runs})", f"{airflow_ms:.0f} ms", "reference")
    row("import", "every public provider module on top (median)", f"{provider_ms:.1f} ms", "< 50 ms")
    heavy = samples[0]["heavy"]
    row("import", "boto3 / httpx / emulator imported at module load", ", ".join(heavy) or "none", "none")


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
    row("tokens", f"API calls made (10 merchants, one process)", str(counts["calls"]), "1000")
    row("tokens", "token endpoint calls: partner + exchange + merchant",
        f"{counts['partner']} + {counts['exchange']} + {counts['merchant']}", "<= 1 + 10 + 10")
    bench_shared_variable_cache()


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
                done = subprocess.run([sys.executable, "-c", {textwrap.dedent(worker)!r}], env=env, capture_output=True,
                                      text=True)
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
    row("tokens", f"shared Variable cache: {processes} processes, API calls", str(counts["calls"]), str(processes))
    row("tokens", "  token endpoint calls (partner + merchant) / exchanges",
        f"{counts['tokens']} / {counts['exchange']}", "2 / 1 (vs 40 / 20 uncached)")


# ------------------------------------------------------------------------------------ main


SECTIONS: dict[str, Callable[[], None]] = {
    "import": bench_import,
    "tokens": bench_tokens,
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
