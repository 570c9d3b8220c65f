"""
Payout providers are an open set with aliases (issue 13 item 2): any API name of the documented
shape passes through, product names map to their API names, Dintero Payout to both spellings.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_dintero.exceptions import DinteroInputError
from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from airflow_provider_dintero.settlements import parse_payment_providers, settlement_query
from airflow_provider_dintero.vocabulary import payout_provider_names

from .conftest import settled_count


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("swish", ["swish"]),
        ("netaxept", ["netaxept"]),
        ("two", ["two"]),
        ("instabank", ["instabank"]),
        ("payex_v2", ["payex_v2"]),
        ("Swedbank Pay", ["payex"]),
        ("swedbank-pay", ["payex"]),
        ("Walley", ["collector"]),
        ("Dintero Payout", ["dintero_psp", "dintero"]),
        ("dintero_psp", ["dintero_psp"]),
        ("dintero", ["dintero"]),
        ("  VIPPS ", ["vipps"]),
    ],
)
def test_provider_names_pass_through_or_map_to_api_names(value: str, expected: list[str]) -> None:
    assert payout_provider_names(value) == expected


@pytest.mark.parametrize("value", ["swish!", "pay/ex", "", "   ", "a.b", "ø", None, 7])
def test_a_name_of_another_shape_is_refused_naming_the_field(value: Any) -> None:
    with pytest.raises(DinteroInputError) as err:
        payout_provider_names(value, field="payment_providers[0]")
    assert err.value.field == "payment_providers[0]"


def test_the_filter_repeats_every_api_name_once() -> None:
    providers = ["Dintero Payout", "dintero_psp", "Walley", "swish"]

    assert parse_payment_providers(providers) == ["dintero_psp", "dintero", "collector", "swish"]
    assert settlement_query(payment_providers=providers)["payment_provider"] == [
        "dintero_psp",
        "dintero",
        "collector",
        "swish",
    ]


def test_dintero_payout_finds_settlements_under_either_api_name(emu: Any) -> None:
    mid = emu.merchant_ids[0]
    legacy = emu.add_settlement(mid, provider="dintero")
    swish = emu.add_settlement(mid, provider="swish")
    psp = {s["id"] for s in emu.settlements(mid) if s["provider"] == "dintero_psp"}

    hook = DinteroPartnerHook()
    found = {s["id"] for s in hook.list_settlements(mid, payment_providers=["Dintero Payout"])}
    swishes = [s["id"] for s in hook.list_settlements(mid, payment_providers="swish")]

    assert psp and found == psp | {legacy["id"]}
    assert swishes == [swish["id"]]
    settled_count(emu, 2, "GET", r"/settlements$")
    first = next(r for r in emu.requests if r.path.endswith("/settlements"))
    assert first.query["payment_provider"] == ["dintero_psp", "dintero"]
