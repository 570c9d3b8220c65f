"""Settlements list (filters, keyset paging) and attachment downloads."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_dintero.emulator.seed import PROVIDERS

if TYPE_CHECKING:
    from airflow_provider_dintero.emulator import DinteroEmulator
    from tests.emulator.conftest import Api


def _list(api: Api, token: str, **params: Any) -> Any:
    return api.call("GET", f"/v1/accounts/{api.emu.merchant_ids[0]}/settlements", token, params=params)


def _all_ids(api: Api, token: str, **params: Any) -> list[str]:
    ids: list[str] = []
    by_created = any(k.startswith("item_created_at") for k in params)
    for _ in range(100):
        body = _list(api, token, **params).json()
        ids += [i["id"] for i in body["items"]]
        key = body.get("last_evaluated_key")
        if not key:
            return ids
        params["starting_after_id"] = key["id"]
        params["starting_after_date"] = key["created_at" if by_created else "settled_at"]
    raise AssertionError("paging did not terminate")


def test_seed_has_one_settlement_per_provider(api: Api, mtoken: str) -> None:
    body = _list(api, mtoken, limit=100).json()
    assert sorted(i["provider"] for i in body["items"]) == sorted(PROVIDERS)
    assert "last_evaluated_key" not in body


def test_seed_settlement_attachments(api: Api, mtoken: str) -> None:
    item = _list(api, mtoken, limit=1).json()["items"][0]
    by = {(a["created_by"], a["extension"]) for a in item["attachments"]}
    assert {("dintero", ext) for ext in ("pdf", "csv", "xml", "json")} <= by
    assert any(created_by == item["provider"] for created_by, _ in by)
    assert item["amounts"][0]["amount"] == (
        item["amounts"][0]["capture"] - item["amounts"][0]["refund"] - item["amounts"][0]["fee"]
    )


def test_settlements_are_newest_first_by_settled_at(api: Api, mtoken: str) -> None:
    items = _list(api, mtoken, limit=100).json()["items"]
    assert [i["settled_at"] for i in items] == sorted((i["settled_at"] for i in items), reverse=True)


def test_default_limit_is_10(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    for _ in range(6):
        emu.add_settlement(emu.merchant_ids[0])
    body = _list(api, mtoken).json()
    assert len(body["items"]) == 10
    assert "last_evaluated_key" in body


@pytest.mark.parametrize("limit", [1, 4, 5, 6, 7])
def test_paging_returns_every_item_once(api: Api, mtoken: str, limit: int) -> None:
    ids = _all_ids(api, mtoken, limit=limit)
    assert len(ids) == len(set(ids)) == len(PROVIDERS)


def test_exactly_one_page_has_no_key(api: Api, mtoken: str) -> None:
    body = _list(api, mtoken, limit=len(PROVIDERS)).json()
    assert len(body["items"]) == len(PROVIDERS)
    assert "last_evaluated_key" not in body


def test_key_shape_with_settled_at(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    body = _list(api, mtoken, limit=2).json()
    key = body["last_evaluated_key"]
    assert key == {
        "id": body["items"][-1]["id"],
        "account_id": emu.merchant_ids[0],
        "settled_at": body["items"][-1]["settled_at"],
    }


def test_key_includes_created_at_when_filtering_by_item_created_at(api: Api, mtoken: str) -> None:
    body = _list(api, mtoken, limit=2, **{"item_created_at.gte": "2026-01-01"}).json()
    assert body["last_evaluated_key"]["created_at"] == body["items"][-1]["created_at"]
    assert [i["created_at"] for i in body["items"]] == sorted(
        (i["created_at"] for i in body["items"]), reverse=True
    )


def test_paging_by_created_at_returns_every_item_once(api: Api, mtoken: str) -> None:
    ids = _all_ids(api, mtoken, limit=2, **{"item_created_at.gte": "2026-01-01"})
    assert len(ids) == len(set(ids)) == len(PROVIDERS)


def test_when_full_mode_emits_key_on_last_full_page_then_empty_page(
    api: Api, emu: DinteroEmulator, mtoken: str
) -> None:
    emu.settings.last_page_key_mode = "when_full"
    body = _list(api, mtoken, limit=len(PROVIDERS)).json()
    key = body["last_evaluated_key"]
    nxt = _list(
        api, mtoken, limit=len(PROVIDERS), starting_after_id=key["id"], starting_after_date=key["settled_at"]
    ).json()
    assert nxt == {"items": []}


def test_empty_account_returns_empty_items(api: Api, mtoken: str) -> None:
    body = _list(api, mtoken, search="no-such-id").json()
    assert body == {"items": []}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"payment_provider": ["vipps"]}, {"vipps"}),
        ({"payment_provider": ["vipps", "payex"]}, {"vipps", "payex"}),
        ({"created_at.gte": "2026-10-09"}, {"payex", "bambora", "collector", "klarna"}),
        ({"created_at.lte": "2026-10-05"}, {"dintero_psp", "vipps"}),
        (
            {"created_at.gte": "2026-10-05T07:00:00Z", "created_at.lte": "2026-10-09T08:00:00.000Z"},
            {"vipps", "payex"},
        ),
        ({"item_created_at.gte": "2026-11-01"}, {"klarna"}),
        ({"item_created_at.lte": "2026-10-02T23:59:59+00:00"}, {"dintero_psp"}),
        ({"created_at.gte": "2026-10-17", "item_created_at.lte": "2026-10-31"}, {"collector"}),
    ],
    ids=[
        "one-provider",
        "two-providers",
        "settled-gte",
        "settled-lte-date",
        "settled-range-iso",
        "created-gte",
        "created-lte-iso",
        "cross-combination",
    ],
)
def test_filters(api: Api, mtoken: str, params: dict[str, Any], expected: set[str]) -> None:
    resp = _list(api, mtoken, limit=100, **params)
    assert resp.status_code == 200, resp.text
    assert {i["provider"] for i in resp.json()["items"]} == expected


def test_search_matches_settlement_id(api: Api, mtoken: str) -> None:
    target = _list(api, mtoken, limit=1).json()["items"][0]["id"]
    items = _list(api, mtoken, search=target[:13]).json()["items"]
    assert [i["id"] for i in items] == [target]


def test_payout_destination_filter(api: Api, mtoken: str) -> None:
    assert _list(api, mtoken, payout_destination_id="seller-1").json()["items"] == []


@pytest.mark.parametrize(
    "params",
    [
        {"created_at.gte": "2026-10-01", "item_created_at.gte": "2026-10-01"},
        {"created_at.lte": "2026-10-01", "item_created_at.lte": "2026-10-01"},
        {"starting_after_id": "x"},
        {"starting_after_date": "2026-10-01"},
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "abc"},
        {"created_at.gte": "yesterday"},
    ],
    ids=[
        "gte-combined",
        "lte-combined",
        "only-id",
        "only-date",
        "limit-0",
        "limit-1001",
        "limit-nan",
        "bad-date",
    ],
)
def test_invalid_filters_are_400(api: Api, mtoken: str, params: dict[str, str]) -> None:
    resp = _list(api, mtoken, **params)
    assert resp.status_code == 400
    assert resp.json()["error"]["message"]


@pytest.mark.parametrize("limit", ["1", "1000"])
def test_limit_bounds_are_accepted(api: Api, mtoken: str, limit: str) -> None:
    assert _list(api, mtoken, limit=limit).status_code == 200


def test_add_settlement_appears_first_and_by_created_at(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    added = emu.add_settlement(emu.merchant_ids[0], provider="payex", created_at="2026-11-25T10:00:00Z")
    assert added["settled_at"] == "2026-11-24T10:00:00.000Z"
    assert _list(api, mtoken, limit=1).json()["items"][0]["id"] == added["id"]
    items = _list(api, mtoken, **{"item_created_at.gte": "2026-11-25"}).json()["items"]
    assert [i["id"] for i in items] == [added["id"]]


def test_settlement_ids_are_deterministic(emu: DinteroEmulator) -> None:
    first = [s["id"] for s in emu.settlements(emu.merchant_ids[0])]
    added = emu.add_settlement(emu.merchant_ids[0])["id"]
    emu.reset()
    assert [s["id"] for s in emu.settlements(emu.merchant_ids[0])] == first
    assert emu.add_settlement(emu.merchant_ids[0])["id"] == added


# --- attachments --------------------------------------------------------------------------------


def _first_attachment(emu: DinteroEmulator) -> tuple[str, str, dict[str, Any]]:
    item = emu.settlements(emu.merchant_ids[0])[0]
    return emu.merchant_ids[0], item["id"], item["attachments"][0]


def test_attachment_download_bytes_and_headers(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    mid, sid, att = _first_attachment(emu)
    resp = api.call("GET", f"/v1/accounts/{mid}/settlements/{sid}/attachments/{att['id']}", mtoken)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == att["content_type"]
    assert int(resp.headers["Content-Length"]) == len(resp.content) == 4096
    assert resp.content == emu.attachment_bytes(mid, sid, att["id"])


@pytest.mark.parametrize("ext", ["pdf", "csv", "xml", "json"])
def test_attachment_content_starts_like_its_format(emu: DinteroEmulator, ext: str) -> None:
    item = emu.add_settlement(emu.merchant_ids[0], attachment_sizes={ext: 256})
    data = emu.attachment_bytes(emu.merchant_ids[0], item["id"], item["attachments"][0]["id"])
    prefixes = {"pdf": b"%PDF", "csv": b"id;", "xml": b"<?xml", "json": b"{"}
    assert data.startswith(prefixes[ext]) and len(data) == 256


@pytest.mark.parametrize("which", ["settlement", "attachment"])
def test_unknown_attachment_is_404(api: Api, emu: DinteroEmulator, mtoken: str, which: str) -> None:
    mid, sid, att = _first_attachment(emu)
    path = f"/v1/accounts/{mid}/settlements/{'nope' if which == 'settlement' else sid}/attachments/"
    path += att["id"] if which == "settlement" else "nope"
    resp = api.call("GET", path, mtoken)
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "NOT_FOUND"


def test_large_attachment_streams_with_correct_length_and_sha256(
    api: Api, emu: DinteroEmulator, mtoken: str
) -> None:
    size = 50 * 1024 * 1024
    mid = emu.merchant_ids[0]
    item = emu.add_settlement(mid, attachment_sizes={"pdf": size})
    att = item["attachments"][0]["id"]
    digest = hashlib.sha256()
    received = 0
    with api.call(
        "GET", f"/v1/accounts/{mid}/settlements/{item['id']}/attachments/{att}", mtoken, stream=True
    ) as resp:
        assert int(resp.headers["Content-Length"]) == size
        for chunk in resp.iter_content(1024 * 1024):
            digest.update(chunk)
            received += len(chunk)
    assert received == size
    assert digest.hexdigest() == emu.attachment_sha256(mid, item["id"], att)


def test_attachment_redirect_mode(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    emu.settings.attachment_redirect = True
    mid, sid, att = _first_attachment(emu)
    path = f"/v1/accounts/{mid}/settlements/{sid}/attachments/{att['id']}"
    resp = api.call("GET", path, mtoken, allow_redirects=False)
    assert resp.status_code == 302
    location = resp.headers["Location"]
    assert location.startswith(emu.alt_base_url)
    import requests

    plain = requests.get(location)
    assert plain.status_code == 200
    assert plain.content == emu.attachment_bytes(mid, sid, att["id"])
    with_auth = requests.get(location, headers={"Authorization": f"Bearer {mtoken}"})
    assert with_auth.status_code == 400
    assert b"InvalidArgument" in with_auth.content


def test_redirect_target_rejects_tampered_signature(api: Api, emu: DinteroEmulator, mtoken: str) -> None:
    emu.settings.attachment_redirect = True
    mid, sid, att = _first_attachment(emu)
    resp = api.call(
        "GET", f"/v1/accounts/{mid}/settlements/{sid}/attachments/{att['id']}", mtoken, allow_redirects=False
    )
    import requests

    assert requests.get(resp.headers["Location"].replace("signature=", "signature=0")).status_code == 403
