"""Token, exchange-token and bearer-auth behaviour of the emulator."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow_provider_dintero.emulator import DinteroEmulator
    from tests.emulator.conftest import Api


def _payload(token: str) -> dict[str, object]:
    part = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def test_partner_token_is_jwt_shaped_with_expires_in(api: Api) -> None:
    resp = api.basic_token(api.emu.partner_id, api.emu.partner_client_id, api.emu.partner_client_secret)
    assert resp.status_code == 200
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 14400
    assert len(body["access_token"].split(".")) == 3
    assert _payload(body["access_token"])["sub"] == api.emu.partner_id


def test_token_lifetime_follows_settings(api: Api, emu: DinteroEmulator) -> None:
    emu.settings.token_lifetime = 60
    resp = api.basic_token(emu.partner_id, emu.partner_client_id, emu.partner_client_secret)
    assert resp.json()["expires_in"] == 60


@pytest.mark.parametrize(
    "audience_base",
    ["{base}", "{alt}", "https://api.dintero.com"],
    ids=["request-host", "alt-host", "dintero-host"],
)
def test_token_accepts_equivalent_audiences(api: Api, emu: DinteroEmulator, audience_base: str) -> None:
    base = audience_base.format(base=emu.base_url, alt=emu.alt_base_url)
    resp = api.basic_token(
        emu.partner_id,
        emu.partner_client_id,
        emu.partner_client_secret,
        f"{base}/v1/accounts/{emu.partner_id}",
    )
    assert resp.status_code == 200, resp.text


def test_dintero_audience_can_be_disabled(api: Api, emu: DinteroEmulator) -> None:
    emu.settings.accept_dintero_audience = False
    resp = api.basic_token(
        emu.partner_id,
        emu.partner_client_id,
        emu.partner_client_secret,
        f"https://api.dintero.com/v1/accounts/{emu.partner_id}",
    )
    assert resp.status_code == 400


def test_merchant_seeded_client_gets_merchant_token(api: Api, emu: DinteroEmulator) -> None:
    mid = emu.merchant_ids[1]
    login, secret = emu.merchant_credentials(mid)
    resp = api.basic_token(mid, login, secret)
    assert resp.status_code == 200
    token = resp.json()["access_token"]
    assert api.call("GET", f"/v1/accounts/{mid}/settlements", token).status_code == 200


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("wrong-secret", 401),
        ("unknown-client", 401),
        ("client-of-other-account", 401),
        ("audience-without-grant", 403),
        ("audience-foreign-host", 400),
        ("audience-not-account-url", 400),
    ],
)
def test_token_failures(api: Api, emu: DinteroEmulator, case: str, status: int) -> None:
    pid, login, secret = emu.partner_id, emu.partner_client_id, emu.partner_client_secret
    audience = None
    if case == "wrong-secret":
        secret = "nope"
    elif case == "unknown-client":
        login = "who"
    elif case == "client-of-other-account":
        pid = emu.merchant_ids[0]
        audience = api.audience(pid)
    elif case == "audience-without-grant":
        audience = api.audience(emu.merchant_ids[0])
    elif case == "audience-foreign-host":
        audience = f"https://evil.example.com/v1/accounts/{pid}"
    elif case == "audience-not-account-url":
        audience = f"{emu.base_url}/v1/other/{pid}"
    resp = api.basic_token(pid, login, secret, audience)
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert resp.json()["error"]["message"]


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"data": "{not json", "headers": {"Content-Type": "application/json"}}, 400),
        ({"json": {"audience": "x"}}, 400),
        ({"json": {"grant_type": "password", "audience": "x"}}, 400),
        ({"json": {"grant_type": "client_credentials"}}, 400),
    ],
    ids=["malformed-json", "missing-grant-type", "unsupported-grant", "missing-audience"],
)
def test_token_bad_bodies(api: Api, emu: DinteroEmulator, kwargs: dict[str, object], status: int) -> None:
    resp = api.session.post(
        f"{api.base}/v1/accounts/{emu.partner_id}/auth/token",
        auth=(emu.partner_client_id, emu.partner_client_secret),
        **kwargs,  # type: ignore[arg-type]
    )
    assert resp.status_code == status
    assert "error" in resp.json()


def test_missing_authorization_on_token_endpoint_is_401(api: Api, emu: DinteroEmulator) -> None:
    resp = api.call(
        "POST",
        f"/v1/accounts/{emu.partner_id}/auth/token",
        json={"grant_type": "client_credentials", "audience": api.audience(emu.partner_id)},
    )
    assert resp.status_code == 401


def test_exchange_flow_gives_working_merchant_token(api: Api, emu: DinteroEmulator) -> None:
    mid = emu.merchant_ids[2]
    token = api.merchant_token(mid)
    resp = api.call("GET", f"/v1/accounts/{mid}/management/settings", token)
    assert resp.status_code == 200
    assert resp.json()["account_id"] == mid


def test_exchange_token_response_shape(api: Api, emu: DinteroEmulator) -> None:
    resp = api.call(
        "POST",
        f"/v1/accounts/{emu.partner_id}/auth/exchange_token",
        api.partner_token(),
        json={"account_id": emu.merchant_ids[0]},
    )
    assert resp.status_code == 200
    assert set(resp.json()) == {"access_token", "token_type", "expires_in"}


@pytest.mark.parametrize(
    ("path_account", "body", "status"),
    [
        ("partner", {"account_id": "foreign"}, 403),
        ("partner", {"account_id": "T11299999"}, 404),
        ("partner", {"account_id": "12345"}, 400),
        ("partner", {}, 400),
        ("merchant", {"account_id": "merchant"}, 400),
    ],
    ids=["foreign-merchant", "unknown-merchant", "bad-account-id", "missing-account-id", "path-not-partner"],
)
def test_exchange_failures(
    api: Api, emu: DinteroEmulator, path_account: str, body: dict[str, str], status: int
) -> None:
    mapping = {"partner": emu.partner_id, "merchant": emu.merchant_ids[0], "foreign": emu.foreign_merchant_id}
    body = {k: mapping.get(v, v) for k, v in body.items()}
    resp = api.call(
        "POST", f"/v1/accounts/{mapping[path_account]}/auth/exchange_token", api.partner_token(), json=body
    )
    assert resp.status_code == status, resp.text


def test_exchange_malformed_json_is_400(api: Api, emu: DinteroEmulator) -> None:
    resp = api.call(
        "POST", f"/v1/accounts/{emu.partner_id}/auth/exchange_token", api.partner_token(), data=b"{{"
    )
    assert resp.status_code == 400


def test_exchange_without_token_is_401(api: Api, emu: DinteroEmulator) -> None:
    resp = api.call(
        "POST", f"/v1/accounts/{emu.partner_id}/auth/exchange_token", json={"account_id": "T11200001"}
    )
    assert resp.status_code == 401


@pytest.mark.parametrize(
    ("mode", "audience_is", "status"),
    [
        ("partner", "partner", 200),
        ("partner", "merchant", 403),
        ("merchant", "merchant", 200),
        ("either", "merchant", 200),
        ("either", "partner", 200),
    ],
)
def test_exchange_minting_audience_modes(
    api: Api, emu: DinteroEmulator, mode: str, audience_is: str, status: int
) -> None:
    emu.settings.exchange_audience = mode
    mid = emu.merchant_ids[0]
    aud = api.audience(emu.partner_id if audience_is == "partner" else mid)
    resp = api.call(
        "POST",
        f"/v1/accounts/{mid}/auth/token",
        api.exchange_token(mid),
        json={"grant_type": "client_credentials", "audience": aud},
    )
    assert resp.status_code == status, resp.text


def test_exchange_token_cannot_mint_for_another_merchant(api: Api, emu: DinteroEmulator) -> None:
    exchange = api.exchange_token(emu.merchant_ids[0])
    resp = api.call(
        "POST",
        f"/v1/accounts/{emu.merchant_ids[1]}/auth/token",
        exchange,
        json={"grant_type": "client_credentials", "audience": api.audience(emu.partner_id)},
    )
    assert resp.status_code == 401


def test_exchange_token_is_not_an_access_token_by_default(api: Api, emu: DinteroEmulator) -> None:
    mid = emu.merchant_ids[0]
    exchange = api.exchange_token(mid)
    assert api.call("GET", f"/v1/accounts/{mid}/settlements", exchange).status_code == 401
    emu.settings.exchange_token_is_access_token = True
    assert api.call("GET", f"/v1/accounts/{mid}/settlements", exchange).status_code == 200


@pytest.mark.parametrize(
    ("header", "code"),
    [(None, 401), ("Bearer", 401), ("Bearer not-a-token", 401), ("Basic abc", 401)],
    ids=["missing", "empty-bearer", "unknown-token", "wrong-scheme"],
)
def test_bearer_failures(api: Api, emu: DinteroEmulator, header: str | None, code: int) -> None:
    headers = {} if header is None else {"Authorization": header}
    resp = api.call("GET", f"/v1/accounts/{emu.merchant_ids[0]}/settlements", headers=headers)
    assert resp.status_code == code
    assert resp.json()["error"]["message"]


def test_expire_tokens_makes_existing_tokens_401(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    path = f"/v1/accounts/{emu.merchant_ids[0]}/settlements"
    assert api.call("GET", path, mtoken).status_code == 200
    emu.expire_tokens()
    resp = api.call("GET", path, mtoken)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "TOKEN_EXPIRED"
    assert api.call("GET", path, api.merchant_token()).status_code == 200


def test_token_expires_after_its_lifetime(api: Api, emu: DinteroEmulator) -> None:
    emu.settings.token_lifetime = 0
    mid = emu.merchant_ids[0]
    resp = api.basic_token(mid, *emu.merchant_credentials(mid))
    assert resp.json()["expires_in"] == 0
    assert api.call("GET", f"/v1/accounts/{mid}/settlements", resp.json()["access_token"]).status_code == 401


def test_token_for_another_account_is_401(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    resp = api.call("GET", f"/v1/accounts/{emu.merchant_ids[1]}/settlements", mtoken)
    assert resp.status_code == 401


def test_foreign_merchant_is_unreachable_with_partner_token(api: Api, emu: DinteroEmulator) -> None:
    resp = api.call("GET", f"/v1/accounts/{emu.foreign_merchant_id}/management/settings", api.partner_token())
    assert resp.status_code == 401


def test_missing_scope_is_403(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    mid = emu.merchant_ids[0]
    client = api.call(
        "POST", f"/v1/accounts/{mid}/auth/clients", mtoken, json={"client_id": "limited"}
    ).json()
    grant = api.call(
        "POST",
        f"/v1/accounts/{mid}/auth/client-grants",
        mtoken,
        json={"client_id": client["id"], "audience": api.audience(mid), "scope": ["read:hooks"]},
    )
    assert grant.status_code == 200
    token = api.basic_token(mid, "limited", client["client_secret"]).json()["access_token"]
    assert api.call("GET", f"/v1/accounts/{mid}/hooks/subscriptions", token).status_code == 200
    resp = api.call("GET", f"/v1/accounts/{mid}/settlements", token)
    assert resp.status_code == 403
    assert "scope" in resp.json()["error"]["message"]


def test_issued_tokens_lists_every_token_until_reset(api: Api, emu: DinteroEmulator) -> None:
    partner = api.partner_token()
    merchant = api.merchant_token()
    issued = emu.issued_tokens()
    assert partner in issued and merchant in issued
    assert len(issued) == 4  # partner (twice: the helper mints one per exchange), exchange, merchant
    emu.reset()
    assert emu.issued_tokens() == []
