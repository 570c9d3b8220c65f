"""Fault injection, rate limits, the request log, concurrency and keep-alive."""

from __future__ import annotations

import http.client
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest
import requests

from airflow_provider_dintero.emulator import RateLimitRule

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_dintero.emulator import DinteroEmulator
    from tests.emulator.conftest import Api


def _settlements(emu: DinteroEmulator) -> str:
    return f"/v1/accounts/{emu.merchant_ids[0]}/settlements"


@pytest.mark.parametrize("retry_after", [3, "Wed, 25 Nov 2026 18:00:00 GMT"], ids=["seconds", "http-date"])
def test_429_with_retry_after(api: Api, emu: DinteroEmulator, mtoken: str, retry_after: int | str) -> None:
    emu.inject_fault(path_regex="/settlements$", status=429, retry_after=retry_after)
    resp = api.call("GET", _settlements(emu), mtoken)
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == str(retry_after)
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert resp.json()["error"]["message"]
    assert api.call("GET", _settlements(emu), mtoken).status_code == 200


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_faults(api: Api, emu: DinteroEmulator, mtoken: str, status: int) -> None:
    emu.inject_fault(path_regex="/settlements$", status=status)
    resp = api.call("GET", _settlements(emu), mtoken)
    assert resp.status_code == status
    assert "error" in resp.json()


def test_fault_count_and_method(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    emu.inject_fault(path_regex="/settlements$", method="GET", status=503, count=2)
    statuses = [api.call("GET", _settlements(emu), mtoken).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]


def test_fault_on_token_endpoint(api: Api, emu: DinteroEmulator) -> None:
    emu.inject_fault(path_regex="/auth/token$", status=429, retry_after=1)
    resp = api.basic_token(emu.partner_id, emu.partner_client_id, emu.partner_client_secret)
    assert resp.status_code == 429


def test_delay_fault(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    emu.inject_fault(path_regex="/settlements$", delay=0.3)
    start = time.monotonic()
    resp = api.call("GET", _settlements(emu), mtoken)
    assert resp.status_code == 200
    assert time.monotonic() - start >= 0.3
    with pytest.raises(requests.exceptions.ReadTimeout):
        emu.inject_fault(path_regex="/settlements$", delay=0.5)
        api.call("GET", _settlements(emu), mtoken, timeout=0.1)


def test_cut_stream_fault(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    item = emu.settlements(emu.merchant_ids[0])[0]
    path = f"{_settlements(emu)}/{item['id']}/attachments/{item['attachments'][0]['id']}"
    emu.inject_fault(path_regex="/attachments/", cut_after_bytes=100)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        api.call("GET", path, mtoken)
    assert api.call("GET", path, mtoken).content == emu.attachment_bytes(
        emu.merchant_ids[0], item["id"], item["attachments"][0]["id"]
    )


def test_cut_stream_headers_promise_full_length(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    item = emu.settlements(emu.merchant_ids[0])[0]
    path = f"{_settlements(emu)}/{item['id']}/attachments/{item['attachments'][0]['id']}"
    emu.inject_fault(path_regex="/attachments/", cut_after_bytes=10)
    with api.call("GET", path, mtoken, stream=True) as resp:
        assert resp.headers["Content-Length"] == "4096"
        data = resp.raw.read(10)
        assert len(data) == 10


def test_cut_signed_report_download(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    url = api.call("GET", f"/v1/accounts/{emu.merchant_ids[0]}/reports/metadata", mtoken).json()["reports"][
        0
    ]["signed_url"]
    emu.inject_fault(path_regex="^/_emulator/signed/", cut_after_bytes=5)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(url)


def test_faults_are_cleared_by_reset(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    emu.inject_fault(status=500, count=5)
    emu.reset()
    assert api.call("GET", _settlements(emu), api.merchant_token()).status_code == 200


def test_invalid_fault_is_rejected(emu: DinteroEmulator) -> None:
    with pytest.raises(ValueError):
        emu.inject_fault(status=200)
    with pytest.raises(ValueError):
        emu.inject_fault(count=0)


def test_rate_limit_rule(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    emu.settings.rate_limits.append(RateLimitRule(path_regex="/settlements$", max_requests=2, per_seconds=60))
    statuses = [api.call("GET", _settlements(emu), mtoken).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_request_log_records_fields(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    emu.clear_requests()
    api.call("GET", _settlements(emu), mtoken, params={"payment_provider": ["a", "b"], "limit": 5})
    api.call("GET", "/v1/admin/session/profiles", mtoken)
    records = emu.requests
    assert len(records) == 2, records
    first, second = records
    assert first.method == "GET" and first.path == _settlements(emu) and first.status == 200
    assert first.account_id == emu.merchant_ids[0]
    assert first.query == {"payment_provider": ["a", "b"], "limit": ["5"]}
    assert first.host == emu.base_url.removeprefix("http://")
    assert second.account_id == emu.merchant_ids[0]


def test_count_filters(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    api.call("GET", _settlements(emu), mtoken)
    api.call("GET", _settlements(emu), "bad")
    assert emu.count(path_regex="/settlements$") == 2
    assert emu.count(method="get", path_regex="/settlements$", status=401) == 1
    assert emu.count(method="POST", path_regex="/auth/token$") >= 1
    emu.clear_requests()
    assert emu.count() == 0


def test_unknown_route_is_404_and_wrong_method_405(api: Api) -> None:
    assert api.call("GET", "/v1/nothing").status_code == 404
    resp = api.call("PATCH", "/v1/admin/session/profiles")
    assert resp.status_code == 405
    assert resp.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_concurrent_requests(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    emu.inject_fault(path_regex="/settlements$", delay=0.2, count=8)
    url = f"{emu.base_url}{_settlements(emu)}"

    def get(_: int) -> int:
        return requests.get(url, headers={"Authorization": f"Bearer {mtoken}"}, timeout=5).status_code

    start = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(get, range(8)))
    assert statuses == [200] * 8
    assert time.monotonic() - start < 1.2


def test_keep_alive_reuses_one_connection(emu: DinteroEmulator, mtoken: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    try:
        sockets = set()
        for _ in range(5):
            conn.request("GET", _settlements(emu), headers={"Authorization": f"Bearer {mtoken}"})
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.getheader("Connection") != "close"
            resp.read()
            sockets.add(id(conn.sock))
        assert len(sockets) == 1
    finally:
        conn.close()


def test_chunked_request_body_is_read(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    def gen() -> Iterator[bytes]:
        yield b'{"description": "chunked", '
        yield b'"configuration": {}}'

    resp = api.call("POST", "/v1/admin/session/profiles", mtoken, data=gen())
    assert resp.status_code == 200, resp.text
    assert resp.json()["description"] == "chunked"
    assert api.call("GET", "/v1/admin/session/profiles", mtoken).status_code == 200


def test_stop_closes_keep_alive_connections() -> None:
    from airflow_provider_dintero.emulator import DinteroEmulator as Emu

    emu = Emu().start()
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    conn.request("GET", "/_emulator/state")
    conn.getresponse().read()
    emu.stop()
    with pytest.raises((http.client.HTTPException, OSError)):
        conn.auto_open = 0
        conn.request("GET", "/_emulator/state")
        conn.getresponse()
    conn.close()
