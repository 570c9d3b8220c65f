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


def test_clear_faults_disarms_every_fault(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    emu.inject_fault(path_regex="/settlements$", status=500, count=1000)

    emu.clear_faults()

    assert emu.pending_faults() == 0
    assert api.call("GET", _settlements(emu), mtoken).status_code == 200


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
    assert first.query == [("payment_provider", "a"), ("payment_provider", "b"), ("limit", "5")]
    assert first.host == emu.base_url.removeprefix("http://")
    assert second.account_id == emu.merchant_ids[0]


def test_request_log_query_keeps_order_repeats_and_blanks(
    api: Api, emu: DinteroEmulator, mtoken: str
) -> None:
    emu.clear_requests()
    query = "limit=5&payment_provider=b&search=&payment_provider=a&payment_provider=b&x=%C3%A6+1"
    api.call("GET", f"{_settlements(emu)}?{query}", mtoken)
    (record,) = emu.requests
    assert record.query == [
        ("limit", "5"),
        ("payment_provider", "b"),
        ("search", ""),
        ("payment_provider", "a"),
        ("payment_provider", "b"),
        ("x", "\u00e6 1"),
    ]


def test_request_log_query_answers_by_name(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    emu.clear_requests()
    api.call("GET", _settlements(emu), mtoken, params={"payment_provider": ["a", "b"], "limit": 5})
    (record,) = emu.requests
    assert "payment_provider" in record.query and "created_at.gte" not in record.query
    assert record.query["payment_provider"] == ["a", "b"]
    assert record.query.get("limit") == ["5"] and record.query.get("search", []) == []
    assert record.query.as_dict() == {"payment_provider": ["a", "b"], "limit": ["5"]}


def test_request_log_keeps_json_body(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    mid = emu.merchant_ids[0]
    payload = {
        "filetypes": ["csv"],
        "providers": ["vipps"],
        "destinations": [{"destination_type": "account_email"}],
        "send_every": 1,
    }
    emu.clear_requests()
    api.call("POST", f"/v1/accounts/{mid}/settlements/reports/configuration", mtoken, json=payload)
    (record,) = emu.requests
    assert record.status == 200
    assert record.body == payload


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", None),
        (b"  ", None),
        (b"not json at all", "not json at all"),
        (b"[1, 2]", [1, 2]),
        (
            b"grant_type=client_credentials&client_secret=s3cr3t",
            "grant_type=client_credentials&client_secret=<redacted>",
        ),
    ],
    ids=["empty", "blank", "text", "json-array", "form-with-secret"],
)
def test_request_log_body_forms(
    api: Api, emu: DinteroEmulator, mtoken: str, raw: bytes, expected: object
) -> None:
    emu.clear_requests()
    api.call("POST", f"/v1/accounts/{emu.merchant_ids[0]}/auth/clients", mtoken, data=raw)
    (record,) = emu.requests
    assert record.body == expected


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"client_secret": "s1", "name": "n"}, {"client_secret": "<redacted>", "name": "n"}),
        ({"password": "s1", "user": "u"}, {"password": "<redacted>", "user": "u"}),
        (
            {"refresh_token": "s1", "token_type": "Bearer"},
            {"refresh_token": "<redacted>", "token_type": "Bearer"},
        ),
        ({"access_token": "s1"}, {"access_token": "<redacted>"}),
        (
            {"config": {"url": "http://127.0.0.1/h", "secret": {"type": "HMAC-SHA1", "value": "s1"}}},
            {"config": {"url": "http://127.0.0.1/h", "secret": "<redacted>"}},
        ),
        (
            {"items": [{"Secret": "s1"}, {"api_key": "s1"}]},
            {"items": [{"Secret": "<redacted>"}, {"api_key": "<redacted>"}]},
        ),
        ({"client_secret": None}, {"client_secret": None}),
    ],
    ids=["client-secret", "password", "refresh-token", "access-token", "webhook-secret", "nested", "null"],
)
def test_request_log_redacts_secrets(
    api: Api, emu: DinteroEmulator, mtoken: str, payload: dict[str, object], expected: dict[str, object]
) -> None:
    emu.clear_requests()
    api.call("POST", f"/v1/accounts/{emu.merchant_ids[0]}/auth/clients", mtoken, json=payload)
    (record,) = emu.requests
    assert record.body == expected
    assert "sek-R3t" not in repr(record)


def test_request_log_webhook_create_hides_secret(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    emu.settings.ping_on_subscription_create = False
    secret = "whsec-very-secret-value"
    payload = {
        "config": {"url": "http://127.0.0.1:9/hook", "secret": {"type": "HMAC-SHA1", "value": secret}},
        "events": ["settlement_add"],
    }
    emu.clear_requests()
    resp = api.call("POST", f"/v1/accounts/{emu.merchant_ids[0]}/hooks/subscriptions", mtoken, json=payload)
    assert resp.status_code == 200, resp.text
    (record,) = emu.requests
    assert record.body == {
        "config": {"url": "http://127.0.0.1:9/hook", "secret": "<redacted>"},
        "events": ["settlement_add"],
    }
    assert secret in emu.issued_secrets()
    assert secret not in repr(emu.requests)


def test_request_log_control_api_has_body_and_query_pairs(
    api: Api, emu: DinteroEmulator, mtoken: str
) -> None:
    emu.clear_requests()
    api.call("POST", f"/v1/accounts/{emu.merchant_ids[0]}/auth/clients?a=1&a=2", mtoken, json={"name": "x"})
    (record,) = requests.get(f"{emu.base_url}/_emulator/requests", timeout=5).json()
    assert record["query"] == [["a", "1"], ["a", "2"]]
    assert record["body"] == {"name": "x"}


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
