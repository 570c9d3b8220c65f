"""Partner merchant listing, account settings, API clients and grants."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow_provider_dintero.emulator import DinteroEmulator
    from tests.emulator.conftest import Api


def _list_accounts(api: Api, token: str, **params: Any) -> Any:
    return api.call("GET", f"/v1/accounts/{api.emu.partner_id}/management/accounts", token, params=params)


def test_list_merchants_is_a_bare_array_with_paging_tokens(api: Api, emu: DinteroEmulator) -> None:
    resp = _list_accounts(api, api.partner_token())
    assert resp.status_code == 200
    body = resp.json()
    assert [a["account_id"] for a in body] == emu.merchant_ids
    assert all(a["paging_token"] and a["partner_id"] == "T112" for a in body)
    assert emu.foreign_merchant_id not in {a["account_id"] for a in body}


@pytest.mark.parametrize("limit", [1, 2, 3, 100])
def test_list_merchants_pages_through_everything(api: Api, emu: DinteroEmulator, limit: int) -> None:
    token = api.partner_token()
    seen: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    for _ in range(10):
        page = _list_accounts(api, token, **params).json()
        assert len(page) <= limit
        seen += [a["account_id"] for a in page]
        if len(page) < limit:
            break
        params["starting_after"] = page[-1]["paging_token"]
    assert seen == emu.merchant_ids


@pytest.mark.parametrize("limit", ["0", "101", "ten"])
def test_list_merchants_rejects_bad_limit(api: Api, limit: str) -> None:
    assert _list_accounts(api, api.partner_token(), limit=limit).status_code == 400


def test_list_merchants_unknown_paging_token_is_400(api: Api) -> None:
    assert _list_accounts(api, api.partner_token(), starting_after="pt_nope").status_code == 400


def test_list_merchants_default_limit_is_10(api: Api, dintero_emulator_server: DinteroEmulator) -> None:
    from airflow_provider_dintero.emulator import DinteroEmulator, EmulatorSeed

    with DinteroEmulator(EmulatorSeed(merchants=12)) as big:
        from tests.emulator.conftest import Api as ApiCls

        client = ApiCls(big)
        resp = client.call(
            "GET", f"/v1/accounts/{big.partner_id}/management/accounts", client.partner_token()
        )
        assert len(resp.json()) == 10


@pytest.mark.parametrize(("which", "status"), [("own", 200), ("foreign", 404), ("unknown", 404)])
def test_get_one_merchant_of_partner(api: Api, emu: DinteroEmulator, which: str, status: int) -> None:
    mid = {"own": emu.merchant_ids[1], "foreign": emu.foreign_merchant_id, "unknown": "T11299999"}[which]
    resp = api.call("GET", f"/v1/accounts/{emu.partner_id}/management/accounts/{mid}", api.partner_token())
    assert resp.status_code == status
    if status == 200:
        assert resp.json()["account_id"] == mid


def test_account_settings_with_merchant_token(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    mid = emu.merchant_ids[0]
    body = api.call("GET", f"/v1/accounts/{mid}/management/settings", mtoken).json()
    assert body["account_id"] == mid
    assert body["applicant"]["signup_reference"].startswith("ref-")
    assert body["company"]["business_name"]


@pytest.mark.parametrize(("allowed", "status"), [(True, 200), (False, 401)])
def test_account_settings_with_partner_token(
    api: Api, emu: DinteroEmulator, allowed: bool, status: int
) -> None:
    emu.settings.partner_token_on_merchant_settings = allowed
    resp = api.call("GET", f"/v1/accounts/{emu.merchant_ids[1]}/management/settings", api.partner_token())
    assert resp.status_code == status


# --- clients ------------------------------------------------------------------------------------


def _clients(emu: DinteroEmulator) -> str:
    return f"/v1/accounts/{emu.merchant_ids[0]}/auth/clients"


def test_create_client_returns_secret_once(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    resp = api.call(
        "POST", _clients(emu), mtoken, json={"name": "ecom", "description": "d", "client_id": "ecom-123"}
    )
    assert resp.status_code == 200
    created = resp.json()
    assert created["client_secret"] and created["client_id"] == "ecom-123" and created["id"]
    got = api.call("GET", f"{_clients(emu)}/{created['id']}", mtoken).json()
    assert "client_secret" not in got
    assert got["name"] == "ecom"
    listed = api.call("GET", _clients(emu), mtoken).json()
    assert created["id"] in {c["id"] for c in listed}
    assert all("client_secret" not in c for c in listed)


def test_create_client_duplicate_client_id_is_400(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    assert api.call("POST", _clients(emu), mtoken, json={"client_id": "dup"}).status_code == 200
    assert api.call("POST", _clients(emu), mtoken, json={"client_id": "dup"}).status_code == 400


@pytest.mark.parametrize(
    "body",
    [{"name": 5}, {"callbacks": "x"}, [1, 2]],
    ids=["name-not-string", "callbacks-not-list", "not-object"],
)
def test_create_client_bad_bodies(api: Api, emu: DinteroEmulator, mtoken: str, body: Any) -> None:
    assert api.call("POST", _clients(emu), mtoken, json=body).status_code == 400


def test_client_unknown_id_is_404(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/rotate-secret")):
        assert api.call(method, f"{_clients(emu)}/nope{suffix}", mtoken).status_code == 404


def test_rotate_secret_invalidates_old_secret(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    mid = emu.merchant_ids[0]
    created = api.call("POST", _clients(emu), mtoken, json={"client_id": "rot"}).json()
    api.call(
        "POST",
        f"/v1/accounts/{mid}/auth/client-grants",
        mtoken,
        json={"client_id": created["id"], "audience": api.audience(mid), "scope": ["read:settlements"]},
    )
    rotated = api.call("POST", f"{_clients(emu)}/{created['id']}/rotate-secret", mtoken)
    assert rotated.status_code == 200
    new_secret = rotated.json()["client"]["client_secret"]
    assert new_secret != created["client_secret"]
    assert api.basic_token(mid, "rot", created["client_secret"]).status_code == 401
    assert api.basic_token(mid, "rot", new_secret).status_code == 200


def test_delete_client_removes_it_and_its_grants(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    mid = emu.merchant_ids[0]
    created = api.call("POST", _clients(emu), mtoken, json={"client_id": "gone"}).json()
    api.call(
        "POST",
        f"/v1/accounts/{mid}/auth/client-grants",
        mtoken,
        json={"client_id": created["id"], "audience": api.audience(mid), "scope": ["read:settlements"]},
    )
    assert api.call("DELETE", f"{_clients(emu)}/{created['id']}", mtoken).status_code == 200
    assert api.call("GET", f"{_clients(emu)}/{created['id']}", mtoken).status_code == 404
    grants = api.call(
        "GET", f"/v1/accounts/{mid}/auth/client-grants", mtoken, params={"client_id": created["id"]}
    )
    assert grants.json() == []


# --- grants -------------------------------------------------------------------------------------


def test_grant_create_list_filter_delete(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    mid = emu.merchant_ids[0]
    path = f"/v1/accounts/{mid}/auth/client-grants"
    client = api.call("POST", _clients(emu), mtoken, json={"client_id": "g"}).json()
    body = {
        "client_id": client["id"],
        "audience": api.audience(mid),
        "scope": ["read:settlements", "read:reports"],
    }
    grant = api.call("POST", path, mtoken, json=body)
    assert grant.status_code == 200
    gid = grant.json()["id"]
    assert grant.json()["type"] == "any"
    by_client = api.call("GET", path, mtoken, params={"client_id": client["id"]}).json()
    assert [g["id"] for g in by_client] == [gid]
    by_aud = api.call("GET", path, mtoken, params={"audience": api.audience(mid)}).json()
    assert gid in {g["id"] for g in by_aud}
    deleted = api.call("DELETE", f"{path}/{gid}", mtoken)
    assert deleted.status_code == 200 and deleted.json()["id"] == gid
    assert api.call("DELETE", f"{path}/{gid}", mtoken).status_code == 404


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"client_id": "00000000-0000-0000-0000-000000000000"}, 404),
        ({"client_id": "by-login"}, 400),
        ({"scope": []}, 400),
        ({"scope": ["checkout:superuser"]}, 400),
        ({"scope": "read:settlements"}, 400),
        ({"audience": None}, 400),
        ({"audience": "https://api.dintero.com/v1/accounts/T11200002"}, 400),
        ({"type": "magic"}, 400),
    ],
    ids=[
        "unknown-client",
        "client-login-instead-of-uuid",
        "empty-scope",
        "unknown-scope",
        "scope-not-list",
        "missing-audience",
        "other-account-audience",
        "bad-type",
    ],
)
def test_grant_validation(
    api: Api, emu: DinteroEmulator, mtoken: str, change: dict[str, Any], status: int
) -> None:
    mid = emu.merchant_ids[0]
    client = api.call("POST", _clients(emu), mtoken, json={"client_id": "by-login"}).json()
    body: dict[str, Any] = {"client_id": client["id"], "audience": api.audience(mid), "scope": ["read:hooks"]}
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    resp = api.call("POST", f"/v1/accounts/{mid}/auth/client-grants", mtoken, json=body)
    assert resp.status_code == status, resp.text
    if status == 400:
        assert resp.json()["error"]["errors"][0]["field"] in change


def test_token_scopes_are_union_of_grants(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    mid = emu.merchant_ids[0]
    client = api.call("POST", _clients(emu), mtoken, json={"client_id": "u"}).json()
    for scope in (["read:settlements"], ["read:insight"]):
        api.call(
            "POST",
            f"/v1/accounts/{mid}/auth/client-grants",
            mtoken,
            json={"client_id": client["id"], "audience": api.audience(mid), "scope": scope},
        )
    token = api.basic_token(mid, "u", client["client_secret"]).json()["access_token"]
    assert api.call("GET", f"/v1/accounts/{mid}/settlements", token).status_code == 200
    assert api.call("GET", f"/v1/accounts/{mid}/insight/reports/configuration", token).status_code == 200
    assert api.call("GET", f"/v1/accounts/{mid}/reports/metadata", token).status_code == 403


@pytest.mark.parametrize(
    ("method", "suffix", "scope", "status"),
    [
        ("GET", "auth/clients", "read:accounts", 200),
        ("POST", "auth/clients", "read:accounts", 403),
        ("POST", "auth/clients", "write:accounts", 200),
        ("GET", "management/settings", "read:settlements", 403),
        ("GET", "settlements/reports/configuration", "read:billing", 200),
        ("POST", "settlements/reports/configuration", "read:settlements", 403),
        ("GET", "reports/metadata", "read:reports", 200),
        ("GET", "insight/reports/configuration", "write:insight", 403),
        ("GET", "hooks/subscriptions", "read:hooks", 200),
        ("POST", "hooks/subscriptions", "read:hooks", 403),
    ],
)
def test_scope_enforcement_table(
    api: Api, emu: DinteroEmulator, mtoken: str, method: str, suffix: str, scope: str, status: int
) -> None:
    mid = emu.merchant_ids[0]
    client = api.call("POST", _clients(emu), mtoken, json={"client_id": "s"}).json()
    api.call(
        "POST",
        f"/v1/accounts/{mid}/auth/client-grants",
        mtoken,
        json={"client_id": client["id"], "audience": api.audience(mid), "scope": [scope]},
    )
    token = api.basic_token(mid, "s", client["client_secret"]).json()["access_token"]
    bodies = {
        "auth/clients": {"client_id": "t"},
        "settlements/reports/configuration": {"filetypes": ["pdf"], "destinations": [], "providers": []},
        "hooks/subscriptions": {"config": {"url": "http://127.0.0.1:9/x"}, "events": ["settlement_add"]},
    }
    emu.settings.ping_on_subscription_create = False
    kwargs = {"json": bodies[suffix]} if method == "POST" else {}
    resp = api.call(method, f"/v1/accounts/{mid}/{suffix}", token, **kwargs)
    assert resp.status_code == status, resp.text
