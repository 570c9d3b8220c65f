"""Settlement report configurations, insight report configurations and report metadata."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import requests

if TYPE_CHECKING:
    from airflow_provider_dintero.emulator import DinteroEmulator
    from tests.emulator.conftest import Api

SRC_BODY = {
    "filetypes": ["pdf", "csv"],
    "destinations": [{"destination_type": "email", "destination_value": "a@example.com"}],
    "providers": ["vipps"],
    "filters": [{"filter": "payout_destination_id", "value": "s1"}],
}
INSIGHT_BODY = {
    "dataType": "checkout/transactions",
    "schedule": "monthly",
    "language": "en",
    "name": "Monthly",
    "emails": ["a@example.com"],
    "contentTypes": ["application/pdf", "text/csv"],
    "reportFilters": [{"filter": "store_id", "value": "s1"}],
}


def _src(emu: DinteroEmulator) -> str:
    return f"/v1/accounts/{emu.merchant_ids[0]}/settlements/reports/configuration"


def _ins(emu: DinteroEmulator) -> str:
    return f"/v1/accounts/{emu.merchant_ids[0]}/insight/reports/configuration"


def _meta(emu: DinteroEmulator) -> str:
    return f"/v1/accounts/{emu.merchant_ids[0]}/reports/metadata"


# --- settlement report configurations -----------------------------------------------------------


def test_src_crud(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    created = api.call("POST", _src(emu), mtoken, json=SRC_BODY)
    assert created.status_code == 200
    item = created.json()
    assert item["account_id"] == emu.merchant_ids[0] and item["id"] and item["created_at"]
    assert item["destinations"][0]["id"]
    assert api.call("GET", f"{_src(emu)}/{item['id']}", mtoken).json()["providers"] == ["vipps"]
    updated = api.call("PUT", f"{_src(emu)}/{item['id']}", mtoken, json={**SRC_BODY, "providers": []})
    assert updated.status_code == 200 and updated.json()["providers"] == []
    assert api.call("DELETE", f"{_src(emu)}/{item['id']}", mtoken).json()["id"] == item["id"]
    assert api.call("GET", f"{_src(emu)}/{item['id']}", mtoken).status_code == 404


def test_src_list_empty(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    assert api.call("GET", _src(emu), mtoken).json() == {"items": []}


@pytest.mark.parametrize(("count", "limit", "pages"), [(3, 3, 1), (3, 2, 2), (4, 2, 2), (1, 100, 1)])
def test_src_paging(api: Api, emu: DinteroEmulator, mtoken: str, count: int, limit: int, pages: int) -> None:
    ids = [api.call("POST", _src(emu), mtoken, json=SRC_BODY).json()["id"] for _ in range(count)]
    seen: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    n = 0
    while True:
        body = api.call("GET", _src(emu), mtoken, params=params).json()
        n += 1
        seen += [i["id"] for i in body["items"]]
        if not body.get("starting_after"):
            break
        params["starting_after"] = body["starting_after"]
    assert seen == ids
    assert n == pages


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"filetypes": None}, "filetypes"),
        ({"destinations": None}, "destinations"),
        ({"providers": None}, "providers"),
        ({"filetypes": "pdf"}, "filetypes"),
        ({"destinations": [{"destination_type": "fax"}]}, "destinations[0].destination_type"),
        ({"filters": [{"filter": "store_id", "value": "x"}]}, "filters[0].filter"),
    ],
    ids=[
        "no-filetypes",
        "no-destinations",
        "no-providers",
        "filetypes-string",
        "bad-destination",
        "bad-filter",
    ],
)
def test_src_validation(
    api: Api, emu: DinteroEmulator, mtoken: str, change: dict[str, Any], field: str
) -> None:
    body = {k: v for k, v in {**SRC_BODY, **change}.items() if v is not None}
    resp = api.call("POST", _src(emu), mtoken, json=body)
    assert resp.status_code == 400
    assert resp.json()["error"]["errors"][0]["field"] == field


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "1001"}, {"starting_after": "nope"}])
def test_src_list_bad_params(api: Api, emu: DinteroEmulator, mtoken: str, params: dict[str, str]) -> None:
    assert api.call("GET", _src(emu), mtoken, params=params).status_code == 400


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_src_unknown_id_is_404(api: Api, emu: DinteroEmulator, mtoken: str, method: str) -> None:
    kwargs = {"json": SRC_BODY} if method == "PUT" else {}
    assert api.call(method, f"{_src(emu)}/nope", mtoken, **kwargs).status_code == 404


# --- insight report configurations --------------------------------------------------------------


def test_insight_seeded_config(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    body = api.call("GET", _ins(emu), mtoken).json()
    assert isinstance(body, list) and len(body) == 1
    assert body[0]["accountId"] == emu.merchant_ids[0]


def test_insight_crud(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    created = api.call("POST", _ins(emu), mtoken, json=INSIGHT_BODY)
    assert created.status_code == 200
    item = created.json()
    assert (
        item["id"] and item["accountId"] == emu.merchant_ids[0] and item["created_at"] and item["created_by"]
    )
    assert api.call("GET", f"{_ins(emu)}/{item['id']}", mtoken).json()["name"] == "Monthly"
    put = api.call("PUT", f"{_ins(emu)}/{item['id']}", mtoken, json={**INSIGHT_BODY, "schedule": "weekly"})
    assert put.json()["schedule"] == "weekly"
    assert len(api.call("GET", _ins(emu), mtoken).json()) == 2
    assert api.call("DELETE", f"{_ins(emu)}/{item['id']}", mtoken).status_code == 200
    assert api.call("GET", f"{_ins(emu)}/{item['id']}", mtoken).status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"dataType": None}, "dataType"),
        ({"dataType": "checkout/sessions"}, "dataType"),
        ({"schedule": None}, "schedule"),
        ({"schedule": "hourly"}, "schedule"),
        ({"language": "sv"}, "language"),
        ({"name": None}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"contentTypes": ["application/zip"]}, "contentTypes"),
        ({"emails": "a@example.com"}, "emails"),
        ({"data_type": "checkout/transactions", "dataType": None}, "dataType"),
    ],
    ids=[
        "no-dataType",
        "bad-dataType",
        "no-schedule",
        "bad-schedule",
        "bad-language",
        "no-name",
        "long-name",
        "bad-contentTypes",
        "emails-string",
        "snake-case",
    ],
)
def test_insight_validation(
    api: Api, emu: DinteroEmulator, mtoken: str, change: dict[str, Any], field: str
) -> None:
    body = {k: v for k, v in {**INSIGHT_BODY, **change}.items() if v is not None}
    resp = api.call("POST", _ins(emu), mtoken, json=body)
    assert resp.status_code == 400
    assert resp.json()["error"]["errors"][0]["field"] == field


def test_insight_malformed_json_is_400(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    assert api.call("POST", _ins(emu), mtoken, data=b"nope").status_code == 400


# --- report metadata ----------------------------------------------------------------------------


def test_report_metadata_seeded(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    body = api.call("GET", _meta(emu), mtoken).json()
    reports = body["reports"]
    assert len(reports) == 4
    assert "starting_after" not in body
    assert {r["content_type"] for r in reports} == {"application/pdf", "text/csv"}
    assert len({r["report_job_id"] for r in reports}) == 2
    config_id = api.call("GET", _ins(emu), mtoken).json()[0]["id"]
    assert {r["report_config_id"] for r in reports} == {config_id}
    assert all(r["signed_url"].startswith(f"{emu.base_url}/_emulator/signed/") for r in reports)


@pytest.mark.parametrize(("limit", "pages"), [(1, 4), (2, 2), (3, 2), (4, 1), (100, 1)])
def test_report_metadata_paging(api: Api, emu: DinteroEmulator, mtoken: str, limit: int, pages: int) -> None:
    seen: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    n = 0
    while True:
        body = api.call("GET", _meta(emu), mtoken, params=params).json()
        n += 1
        seen += [r["id"] for r in body["reports"]]
        if not body.get("starting_after") or not body["reports"]:
            break
        params["starting_after"] = body["starting_after"]
    assert len(seen) == len(set(seen)) == 4
    assert n == pages


def test_report_metadata_when_full_cursor_mode(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    emu.settings.reports_cursor_mode = "when_full"
    body = api.call("GET", _meta(emu), mtoken, params={"limit": 4}).json()
    nxt = api.call("GET", _meta(emu), mtoken, params={"limit": 4, "starting_after": body["starting_after"]})
    assert nxt.json() == {"reports": []}


@pytest.mark.parametrize(
    "params", [{"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"starting_after": "nope"}]
)
def test_report_metadata_bad_params(
    api: Api, emu: DinteroEmulator, mtoken: str, params: dict[str, str]
) -> None:
    assert api.call("GET", _meta(emu), mtoken, params=params).status_code == 400


def test_add_report_is_listed_first(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    added = emu.add_report(emu.merchant_ids[0], content_type="text/csv", size=10)
    first = api.call("GET", _meta(emu), mtoken, params={"limit": 1}).json()["reports"][0]
    assert first["id"] == added["id"]
    assert requests.get(first["signed_url"]).content == emu.report_bytes(emu.merchant_ids[0], added["id"])


def test_signed_url_download_without_auth(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    report = api.call("GET", _meta(emu), mtoken).json()["reports"][0]
    resp = requests.get(report["signed_url"])
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == report["content_type"]
    assert resp.content == emu.report_bytes(emu.merchant_ids[0], report["id"])


def test_signed_url_with_authorization_header_is_400(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    report = api.call("GET", _meta(emu), mtoken).json()["reports"][0]
    resp = requests.get(report["signed_url"], headers={"Authorization": f"Bearer {mtoken}"})
    assert resp.status_code == 400
    assert resp.headers["Content-Type"] == "application/xml"


def test_expired_signed_url_is_403_access_denied(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    report = api.call("GET", _meta(emu), mtoken).json()["reports"][0]
    emu.expire_signed_urls()
    resp = requests.get(report["signed_url"])
    assert resp.status_code == 403
    assert b"<Code>AccessDenied</Code>" in resp.content and b"Request has expired" in resp.content
    fresh = api.call("GET", _meta(emu), mtoken).json()["reports"][0]
    assert requests.get(fresh["signed_url"]).status_code == 200


def test_signed_url_lifetime_setting(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    emu.settings.signed_url_lifetime = -1
    report = api.call("GET", _meta(emu), mtoken).json()["reports"][0]
    assert b"Request has expired" in requests.get(report["signed_url"]).content


def test_signed_url_uses_request_host(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    resp = api.session.get(f"{emu.alt_base_url}{_meta(emu)}", headers={"Authorization": f"Bearer {mtoken}"})
    assert resp.json()["reports"][0]["signed_url"].startswith(emu.alt_base_url)
