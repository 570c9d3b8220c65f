"""Payment (session) profiles on the checkout routes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow_provider_dintero.emulator import DinteroEmulator
    from tests.emulator.conftest import Api

PATH = "/v1/admin/session/profiles"


def test_default_profile_is_seeded(api: Api, mtoken: str) -> None:
    resp = api.call("GET", PATH, mtoken)
    assert resp.status_code == 200
    assert [p["profile_id"] for p in resp.json()] == ["default"]


def test_profiles_are_per_account(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    api.call("POST", PATH, mtoken, json={"profile_id": "x", "description": "d", "configuration": {}})
    other = api.merchant_token(emu.merchant_ids[1])
    assert [p["profile_id"] for p in api.call("GET", PATH, other).json()] == ["default"]


def test_profile_crud(api: Api, mtoken: str) -> None:
    body = {"profile_id": "shop", "description": "Shop", "configuration": {"auto_capture": True}}
    created = api.call("POST", PATH, mtoken, json=body)
    assert created.status_code == 200
    assert created.json()["created_at"]
    assert api.call("GET", f"{PATH}/shop", mtoken).json()["description"] == "Shop"
    put = api.call("PUT", f"{PATH}/shop", mtoken, json={"description": "Shop 2", "configuration": {}})
    assert put.status_code == 200 and put.json()["description"] == "Shop 2"
    assert api.call("DELETE", f"{PATH}/shop", mtoken).status_code == 200
    assert api.call("GET", f"{PATH}/shop", mtoken).status_code == 404


def test_profile_id_is_generated_when_missing(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    created = api.call("POST", PATH, mtoken, json={"description": "d", "configuration": {}}).json()
    assert created["profile_id"].startswith(f"{emu.merchant_ids[0]}.")


def test_duplicate_profile_is_400(api: Api, mtoken: str) -> None:
    body = {"profile_id": "default", "description": "d", "configuration": {}}
    assert api.call("POST", PATH, mtoken, json=body).status_code == 400


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"configuration": {}}, "description"),
        ({"description": "d"}, "configuration"),
        ({"description": "d", "configuration": []}, "configuration"),
        ({"description": "d", "configuration": {"bogus_option": 1}}, "configuration.bogus_option"),
    ],
    ids=["missing-description", "missing-configuration", "configuration-not-object", "unknown-config-key"],
)
def test_profile_validation(api: Api, mtoken: str, body: dict[str, Any], field: str) -> None:
    resp = api.call("POST", PATH, mtoken, json=body)
    assert resp.status_code == 400
    assert resp.json()["error"]["errors"][0]["field"] == field


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_unknown_profile_is_404(api: Api, mtoken: str, method: str) -> None:
    kwargs = {"json": {"description": "d", "configuration": {}}} if method == "PUT" else {}
    assert api.call(method, f"{PATH}/missing", mtoken, **kwargs).status_code == 404


def test_profiles_require_a_token(api: Api) -> None:
    assert api.call("GET", PATH).status_code == 401


def test_profiles_malformed_json_is_400(api: Api, mtoken: str) -> None:
    assert api.call("POST", PATH, mtoken, data=b"{").status_code == 400
