"""The /_emulator control API, the CLI, the pytest plugin fixtures and seed determinism."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
import requests

from airflow_provider_dintero.emulator import DinteroEmulator, EmulatorSeed
from airflow_provider_dintero.emulator.__main__ import main

if TYPE_CHECKING:
    from pathlib import Path

    from tests.emulator.conftest import Api


def _ctl(emu: DinteroEmulator, method: str, path: str, **kwargs: object) -> requests.Response:
    return requests.request(method, f"{emu.base_url}/_emulator/{path}", timeout=5, **kwargs)  # type: ignore[arg-type]


def test_state_lists_ids_and_credentials(emu: DinteroEmulator) -> None:
    state = _ctl(emu, "GET", "state").json()
    assert state["partner_id"] == emu.partner_id
    assert state["partner_client_id"] == emu.partner_client_id
    assert state["partner_client_secret"] == emu.partner_client_secret
    assert state["merchant_ids"] == emu.merchant_ids
    mid = emu.merchant_ids[0]
    assert tuple(state["merchant_credentials"][mid].values()) == emu.merchant_credentials(mid)


def test_control_add_settlement_and_report(emu: DinteroEmulator) -> None:
    mid = emu.merchant_ids[0]
    settlement = _ctl(
        emu,
        "POST",
        "settlements",
        json={"account_id": mid, "provider": "payex", "attachment_sizes": {"csv": 10}},
    )
    assert settlement.status_code == 200
    assert settlement.json()["id"] in {s["id"] for s in emu.settlements(mid)}
    report = _ctl(emu, "POST", "reports", json={"account_id": mid, "content_type": "text/csv", "size": 5})
    assert report.status_code == 200 and report.json()["content_type"] == "text/csv"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("settlements", {"account_id": "T00000000"}, 404),
        ("settlements", {}, 400),
        ("settlements", {"account_id": "T11200001", "attachment_sizes": {"exe": 1}}, 400),
        ("reports", {"account_id": "T00000000"}, 404),
        ("faults", {"status": 200}, 400),
        ("faults", {"bogus": 1}, 400),
        ("settings", {"bogus": 1}, 400),
        ("settings", {"token_lifetime": "long"}, 400),
        ("settings", {"attachment_redirect": 1}, 400),
        ("settings", {"last_page_key_mode": "sometimes"}, 400),
        ("settings", {"rate_limits": [{"nope": 1}]}, 400),
    ],
)
def test_control_validation(emu: DinteroEmulator, path: str, body: dict[str, object], status: int) -> None:
    assert _ctl(emu, "POST", path, json=body).status_code == status


def test_control_faults_and_requests(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    assert _ctl(emu, "POST", "faults", json={"path_regex": "/settlements$", "status": 503}).status_code == 200
    assert api.call("GET", f"/v1/accounts/{emu.merchant_ids[0]}/settlements", mtoken).status_code == 503
    records = _ctl(emu, "GET", "requests").json()
    assert records[-1]["status"] == 503 and records[-1]["path"].endswith("/settlements")
    assert not any(r["path"].startswith("/_emulator/") for r in records)
    assert _ctl(emu, "DELETE", "requests").status_code == 204
    assert _ctl(emu, "GET", "requests").json() == []


def test_control_expire_tokens(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    assert _ctl(emu, "POST", "expire-tokens").status_code == 204
    assert api.call("GET", f"/v1/accounts/{emu.merchant_ids[0]}/settlements", mtoken).status_code == 401


def test_control_settings_and_reset(emu: DinteroEmulator) -> None:
    body = _ctl(emu, "POST", "settings", json={"token_lifetime": 5, "attachment_redirect": True}).json()
    assert body["token_lifetime"] == 5 and emu.settings.attachment_redirect is True
    emu.add_settlement(emu.merchant_ids[0])
    assert _ctl(emu, "POST", "reset").status_code == 200
    assert emu.settings.token_lifetime == 14400
    assert len(emu.settlements(emu.merchant_ids[0])) == 6
    assert _ctl(emu, "GET", "settings").json()["attachment_redirect"] is False


def test_control_deliveries_listing(emu: DinteroEmulator) -> None:
    assert _ctl(emu, "GET", "deliveries").json() == []


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_non_loopback_hosts_are_refused(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        DinteroEmulator(host=host)


def test_localhost_host_binds_loopback() -> None:
    with DinteroEmulator(host="localhost") as emu:
        assert emu.base_url.startswith("http://127.0.0.1:")


def test_cli_refuses_non_loopback_host(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--host", "0.0.0.0"]) == 2
    assert "loopback" in capsys.readouterr().err


def test_cli_prints_url_and_credentials_and_stops_on_sigterm(tmp_path: Path) -> None:
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps({"merchants": 2, "random_seed": "cli"}))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_dintero.emulator",
            "--port",
            "0",
            "--seed-file",
            str(seed_file),
            "--token-lifetime",
            "77",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first.startswith("Dintero emulator listening on http://127.0.0.1:")
        base = first.rsplit(" ", 1)[1]
        creds = json.loads(proc.stdout.readline())
        assert creds["merchant_ids"] == ["T11200001", "T11200002"]
        resp = requests.post(
            f"{base}/v1/accounts/{creds['partner_id']}/auth/token",
            auth=(creds["partner_client_id"], creds["partner_client_secret"]),
            json={
                "grant_type": "client_credentials",
                "audience": f"{base}/v1/accounts/{creds['partner_id']}",
            },
            timeout=5,
        )
        assert resp.json()["expires_in"] == 77
        requests.post(f"{base}/_emulator/reset", timeout=5)
        assert requests.get(f"{base}/_emulator/settings", timeout=5).json()["token_lifetime"] == 77
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_connection_fixture_sets_airflow_env(
    dintero_connection: str, dintero_emulator: DinteroEmulator
) -> None:
    assert dintero_connection == "dintero_default"
    conn = json.loads(os.environ["AIRFLOW_CONN_DINTERO_DEFAULT"])
    assert conn == {
        "conn_type": "dintero",
        "login": dintero_emulator.partner_client_id,
        "password": dintero_emulator.partner_client_secret,
        "host": dintero_emulator.base_url,
        "extra": {"account_id": dintero_emulator.partner_id, "checkout_base_url": dintero_emulator.base_url},
    }


def test_plugin_does_not_import_airflow() -> None:
    code = (
        "import sys, airflow_provider_dintero.emulator.pytest_plugin, "
        "airflow_provider_dintero.emulator.__main__;"
        "sys.exit(1 if 'airflow' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


_UNUSED_PLUGIN_TEST = """
import sys
import threading


def test_nothing_loaded():
    loaded = sorted(m for m in sys.modules if m.startswith("airflow_provider_dintero.emulator."))
    assert loaded == ["airflow_provider_dintero.emulator.pytest_plugin"], loaded
    assert [t.name for t in threading.enumerate()] == ["MainThread"]
"""


def test_plugin_costs_nothing_when_its_fixtures_are_unused(tmp_path: Path) -> None:
    (tmp_path / "test_unused.py").write_text(_UNUSED_PLUGIN_TEST)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (
        "dintero_emulator"
        in subprocess.run(
            [sys.executable, "-m", "pytest", "--fixtures", "-q", str(tmp_path)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.dintero_emulator(strict_dates="spec", duplicate_status=409)
def test_marker_sets_settings_after_reset(dintero_emulator: DinteroEmulator) -> None:
    assert dintero_emulator.settings.strict_dates == "spec"
    assert dintero_emulator.settings.duplicate_status == 409
    assert dintero_emulator.settings.token_lifetime == 14400  # everything else as after reset


def test_settings_without_marker_are_the_defaults(dintero_emulator: DinteroEmulator) -> None:
    assert dintero_emulator.settings.strict_dates == "off"
    assert dintero_emulator.settings.duplicate_status == 400


def test_seed_is_deterministic() -> None:
    with DinteroEmulator() as a, DinteroEmulator() as b:
        mid = a.merchant_ids[0]
        assert a.settlements(mid) == b.settlements(mid)
        s = a.settlements(mid)[0]
        att = s["attachments"][0]["id"]
        assert a.attachment_sha256(mid, s["id"], att) == b.attachment_sha256(mid, s["id"], att)
        assert a.partner_client_secret == b.partner_client_secret
    with DinteroEmulator(EmulatorSeed(random_seed="other")) as c:
        assert c.settlements(mid)[0]["id"] != s["id"]


def test_seed_options() -> None:
    seed = EmulatorSeed(merchants=5, settlements_per_provider=3, attachment_size=10, reports_per_merchant=0)
    with DinteroEmulator(seed) as emu:
        assert emu.merchant_ids[-1] == "T11200005"
        assert len(emu.settlements("T11200005")) == 18
    with pytest.raises(ValueError):
        EmulatorSeed.from_dict({"merchants": 1, "unknown": 2})


def test_attachment_helpers_agree(emu: DinteroEmulator) -> None:
    import hashlib

    mid = emu.merchant_ids[0]
    s = emu.settlements(mid)[0]
    att = s["attachments"][1]["id"]
    assert hashlib.sha256(emu.attachment_bytes(mid, s["id"], att)).hexdigest() == emu.attachment_sha256(
        mid, s["id"], att
    )
