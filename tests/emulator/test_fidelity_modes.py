"""The emulator's switchable readings of points Dintero's docs leave open ([I] in dintero-api.md).

Each mode is an ``EmulatorSettings`` field; the defaults keep the documented behaviour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import requests

if TYPE_CHECKING:
    from airflow_provider_dintero.emulator import DinteroEmulator
    from tests.emulator.conftest import Api


def _settlements(emu: DinteroEmulator) -> str:
    return f"/v1/accounts/{emu.merchant_ids[0]}/settlements"


# --- strict dates -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "name", "value", "status"),
    [
        ("off", "created_at.gte", "2026-10-05T00:00:00Z", 200),
        ("off", "created_at.gte", "2026-10-05", 200),
        ("spec", "created_at.gte", "2026-10-05", 200),
        ("spec", "created_at.lte", "2026-10-05", 200),
        ("spec", "created_at.gte", "2026-10-05T00:00:00Z", 400),
        ("spec", "created_at.lte", "2026-10-05T23:59:59.999999+00:00", 400),
        ("spec", "created_at.gte", "20261005", 400),
        ("spec", "item_created_at.gte", "2026-10-05T00:00:00Z", 200),
        ("all", "item_created_at.gte", "2026-10-05T00:00:00Z", 400),
        ("all", "item_created_at.lte", "2026-10-05", 200),
        ("all", "created_at.lte", "2026-10-05T00:00:00Z", 400),
    ],
)
def test_strict_dates_modes(
    api: Api, emu: DinteroEmulator, mtoken: str, mode: str, name: str, value: str, status: int
) -> None:
    emu.settings.strict_dates = mode
    resp = api.call("GET", _settlements(emu), mtoken, params={name: value})
    assert resp.status_code == status, resp.text


def test_strict_dates_refusal_is_a_dintero_error_naming_the_filter(
    api: Api, emu: DinteroEmulator, mtoken: str
) -> None:
    emu.settings.strict_dates = "spec"
    resp = api.call("GET", _settlements(emu), mtoken, params={"created_at.gte": "2026-10-05T00:00:00Z"})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "INVALID_FILTER"
    assert "created_at.gte" in error["message"] and "YYYY-MM-DD" in error["message"]
    assert error["errors"] == [{"field": "created_at.gte", "message": error["errors"][0]["message"]}]


def test_strict_dates_give_the_same_settlements_for_dates(
    api: Api, emu: DinteroEmulator, mtoken: str
) -> None:
    params = {"created_at.gte": "2026-10-05", "created_at.lte": "2026-10-12", "limit": 1000}
    lenient = api.call("GET", _settlements(emu), mtoken, params=params).json()["items"]
    emu.settings.strict_dates = "all"
    strict = api.call("GET", _settlements(emu), mtoken, params=params).json()["items"]
    assert strict == lenient and strict


# --- list envelopes -----------------------------------------------------------------------------


#: List endpoint -> (whose token, path, the documented wrapper key or ``None`` for a bare array).
LISTS: dict[str, tuple[str, str, str | None]] = {
    "accounts": ("partner", "/v1/accounts/{partner}/management/accounts", None),
    "clients": ("merchant", "/v1/accounts/{mid}/auth/clients", None),
    "grants": ("merchant", "/v1/accounts/{mid}/auth/client-grants", None),
    "profiles": ("merchant", "/v1/admin/session/profiles", None),
    "settlements": ("merchant", "/v1/accounts/{mid}/settlements", "items"),
    "settlement_report_configs": (
        "merchant",
        "/v1/accounts/{mid}/settlements/reports/configuration",
        "items",
    ),
    "insight_configs": ("merchant", "/v1/accounts/{mid}/insight/reports/configuration", None),
    "reports": ("merchant", "/v1/accounts/{mid}/reports/metadata", "reports"),
    "subscriptions": ("merchant", "/v1/accounts/{mid}/hooks/subscriptions", None),
}


def _get_list(api: Api, emu: DinteroEmulator, endpoint: str) -> Any:
    who, template, _ = LISTS[endpoint]
    path = template.format(partner=emu.partner_id, mid=emu.merchant_ids[0])
    token = api.partner_token() if who == "partner" else api.merchant_token()
    resp = api.call("GET", path, token)
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.mark.parametrize("endpoint", sorted(LISTS))
def test_lists_answer_their_documented_envelope_by_default(
    api: Api, emu: DinteroEmulator, endpoint: str
) -> None:
    body = _get_list(api, emu, endpoint)
    key = LISTS[endpoint][2]
    assert isinstance(body, list) if key is None else isinstance(body[key], list)


def _unsigned(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items without ``signed_url`` (signed anew on every list)."""
    return [{k: v for k, v in item.items() if k != "signed_url"} for item in items]


@pytest.mark.parametrize("endpoint", sorted(LISTS))
@pytest.mark.parametrize("mode", ["array", "items"])
def test_list_envelope_modes(api: Api, emu: DinteroEmulator, endpoint: str, mode: str) -> None:
    documented = _get_list(api, emu, endpoint)
    key = LISTS[endpoint][2]
    items = documented if key is None else documented[key]
    emu.settings.update({"list_envelopes": {endpoint: mode}})
    body = _get_list(api, emu, endpoint)
    if mode == "items":
        assert isinstance(body, dict)
        body = body["items"]
    assert _unsigned(body) == _unsigned(items)
    assert items or endpoint in ("grants", "settlement_report_configs", "subscriptions")


def test_reports_envelope_keeps_its_cursor_under_items(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    path = f"/v1/accounts/{emu.merchant_ids[0]}/reports/metadata"
    emu.settings.update({"list_envelopes": {"reports": "items"}})
    body = api.call("GET", path, mtoken, params={"limit": 1}).json()
    assert set(body) == {"items", "starting_after"} and len(body["items"]) == 1


@pytest.mark.parametrize(
    "value",
    [{"nope": "array"}, {"clients": "reports"}, {"settlements": "data"}, ["clients"]],
    ids=["unknown-endpoint", "foreign-key", "unknown-mode", "not-an-object"],
)
def test_list_envelopes_setting_is_validated(emu: DinteroEmulator, value: object) -> None:
    resp = requests.post(f"{emu.base_url}/_emulator/settings", json={"list_envelopes": value}, timeout=5)
    assert resp.status_code == 400
    with pytest.raises(ValueError, match="list_envelopes"):
        emu.settings.update({"list_envelopes": value})


# --- duplicate creates --------------------------------------------------------------------------


def _create_twice(api: Api, emu: DinteroEmulator, kind: str) -> tuple[requests.Response, requests.Response]:
    mid = emu.merchant_ids[0]
    token = api.merchant_token()
    if kind == "client":
        path, body = f"/v1/accounts/{mid}/auth/clients", {"client_id": "dup-client", "name": "x"}
    elif kind == "grant":
        client = api.call("POST", f"/v1/accounts/{mid}/auth/clients", token, json={"name": "g"}).json()
        path = f"/v1/accounts/{mid}/auth/client-grants"
        body = {"client_id": client["id"], "audience": api.audience(mid), "scope": ["read:settlements"]}
    elif kind == "subscription":
        emu.settings.ping_on_subscription_create = False
        path = f"/v1/accounts/{mid}/hooks/subscriptions"
        body = {"config": {"url": "http://127.0.0.1:9/hook"}, "events": ["settlement_add"]}
    else:
        path, body = (
            "/v1/admin/session/profiles",
            {"profile_id": "dup", "description": "d", "configuration": {}},
        )
    return api.call("POST", path, token, json=body), api.call("POST", path, token, json=body)


@pytest.mark.parametrize("status", [400, 409])
@pytest.mark.parametrize("kind", ["client", "grant", "subscription", "profile"])
def test_duplicate_create_status(api: Api, emu: DinteroEmulator, kind: str, status: int) -> None:
    emu.settings.update({"duplicate_status": status, "refuse_duplicates": [kind]})
    first, second = _create_twice(api, emu, kind)
    assert first.status_code == 200, first.text
    assert second.status_code == status, second.text
    assert "already exists" in second.json()["error"]["message"]


@pytest.mark.parametrize(
    ("kind", "status"), [("client", 400), ("profile", 400), ("grant", 200), ("subscription", 200)]
)
def test_duplicate_defaults(api: Api, emu: DinteroEmulator, kind: str, status: int) -> None:
    _, second = _create_twice(api, emu, kind)
    assert second.status_code == status, second.text


def test_duplicates_accepted_when_not_refused(api: Api, emu: DinteroEmulator) -> None:
    emu.settings.refuse_duplicates = []
    _, second = _create_twice(api, emu, "profile")
    assert second.status_code == 200, second.text


@pytest.mark.parametrize(("name", "value"), [("duplicate_status", 418), ("refuse_duplicates", ["account"])])
def test_duplicate_settings_are_validated(emu: DinteroEmulator, name: str, value: object) -> None:
    with pytest.raises(ValueError, match=name):
        emu.settings.update({name: value})


# --- payment-profile paging ---------------------------------------------------------------------


@pytest.fixture
def many_profiles(api: Api, mtoken: str) -> list[str]:
    """Twelve more profiles beside the seeded ``default`` (thirteen in all)."""
    for i in range(12):
        body = {"profile_id": f"p{i:02d}", "description": f"profile {i}", "configuration": {}}
        assert api.call("POST", "/v1/admin/session/profiles", mtoken, json=body).status_code == 200
    return ["default", *[f"p{i:02d}" for i in range(12)]]


def _profiles(api: Api, token: str, **params: object) -> requests.Response:
    return api.call("GET", "/v1/admin/session/profiles", token, params=params)


def test_profile_list_default_limit_is_10(api: Api, mtoken: str, many_profiles: list[str]) -> None:
    body = _profiles(api, mtoken).json()
    assert isinstance(body, list)
    assert [p["profile_id"] for p in body] == many_profiles[:10]


@pytest.mark.parametrize("limit", [1, 4, 10, 13, 100])
def test_profile_list_pages_with_starting_after(
    api: Api, mtoken: str, many_profiles: list[str], limit: int
) -> None:
    seen: list[str] = []
    after: str | None = None
    while True:
        params: dict[str, object] = {"limit": limit}
        if after:
            params["starting_after"] = after
        page = _profiles(api, mtoken, **params).json()
        seen += [p["profile_id"] for p in page]
        if len(page) < limit:
            break
        after = page[-1]["profile_id"]
    assert seen == many_profiles


@pytest.mark.parametrize(
    ("params", "status"), [({"limit": 0}, 400), ({"limit": 101}, 400), ({"starting_after": "nope"}, 400)]
)
def test_profile_list_paging_errors(api: Api, mtoken: str, params: dict[str, object], status: int) -> None:
    assert _profiles(api, mtoken, **params).status_code == status


def test_profile_list_paging_can_be_switched_off(
    api: Api, emu: DinteroEmulator, mtoken: str, many_profiles: list[str]
) -> None:
    emu.settings.profiles_paging = False
    assert [p["profile_id"] for p in _profiles(api, mtoken, limit=2).json()] == many_profiles


# --- exchange-token audience --------------------------------------------------------------------


def _mint(api: Api, emu: DinteroEmulator, audience_is: str) -> requests.Response:
    mid = emu.merchant_ids[0]
    aud = api.audience(emu.partner_id if audience_is == "partner" else mid)
    return api.call(
        "POST",
        f"/v1/accounts/{mid}/auth/token",
        api.exchange_token(mid),
        json={"grant_type": "client_credentials", "audience": aud},
    )


@pytest.mark.parametrize(
    ("mode", "refusal", "audience_is", "status"),
    [
        ("partner", 403, "partner", 200),
        ("partner", 403, "merchant", 403),
        ("partner", 400, "merchant", 400),
        ("merchant", 403, "partner", 403),
        ("merchant", 400, "partner", 400),
        ("merchant", 400, "merchant", 200),
        ("either", 400, "partner", 200),
        ("either", 400, "merchant", 200),
    ],
)
def test_exchange_audience_modes_and_refusal_status(
    api: Api, emu: DinteroEmulator, mode: str, refusal: int, audience_is: str, status: int
) -> None:
    emu.settings.update({"exchange_audience": mode, "exchange_audience_status": refusal})
    resp = _mint(api, emu, audience_is)
    assert resp.status_code == status, resp.text
    if status != 200:
        assert "audience" in resp.json()["error"]["message"]


def test_exchange_audience_refusal_names_the_wanted_audience(api: Api, emu: DinteroEmulator) -> None:
    emu.settings.exchange_audience = "merchant"
    message = _mint(api, emu, "partner").json()["error"]["message"]
    assert f"/v1/accounts/{emu.merchant_ids[0]}" in message


def test_new_settings_over_the_control_api(emu: DinteroEmulator) -> None:
    values = {
        "strict_dates": "spec",
        "list_envelopes": {"clients": "items"},
        "duplicate_status": 409,
        "refuse_duplicates": ["grant"],
        "profiles_paging": False,
        "exchange_audience_status": 400,
    }
    resp = requests.post(f"{emu.base_url}/_emulator/settings", json=values, timeout=5)
    assert resp.status_code == 200, resp.text
    assert {k: resp.json()[k] for k in values} == values
    assert emu.settings.refuse_duplicates == ["grant"]
    emu.reset()
    assert emu.settings.strict_dates == "off" and emu.settings.list_envelopes == {}
