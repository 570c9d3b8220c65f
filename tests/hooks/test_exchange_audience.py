"""
The audience of a merchant token minted with an exchange token (issue 13 item 3): the partner URL
(Dintero's current docs) first; when Dintero refuses it as the audience (400 or 403), the
merchant URL once; the one that worked is remembered per base URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_dintero import auth as auth_module
from airflow_provider_dintero.exceptions import DinteroApiError
from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook

TOKEN = r"/auth/token$"


@pytest.fixture(autouse=True)
def forget_audiences() -> Iterator[None]:
    auth_module.EXCHANGE_AUDIENCES.clear()
    yield
    auth_module.EXCHANGE_AUDIENCES.clear()


def _audiences(emu: Any, account_id: str) -> list[tuple[str, int]]:
    """(audience path, status) of each merchant-token request for ``account_id``, in order."""
    return [
        (str(r.body["audience"]).split("/v1/", 1)[1], r.status)
        for r in emu.requests
        if r.method == "POST" and r.path == f"/v1/accounts/{account_id}/auth/token"
    ]


@pytest.mark.parametrize("status", [400, 403])
def test_a_refused_partner_audience_is_retried_once_with_the_merchant_url_and_remembered(
    dintero_emulator: Any, dintero_connection: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    dintero_emulator.settings.exchange_audience = "merchant"
    dintero_emulator.settings.exchange_audience_status = status
    first, second = dintero_emulator.merchant_ids[:2]
    hook = DinteroPartnerHook()

    assert hook.get_account(first)["account_id"] == first
    assert DinteroPartnerHook().get_account(second)["account_id"] == second

    assert _audiences(dintero_emulator, first) == [
        (f"accounts/{dintero_emulator.partner_id}", status),
        (f"accounts/{first}", 200),
    ]
    assert _audiences(dintero_emulator, second) == [(f"accounts/{second}", 200)]  # remembered
    assert dict(auth_module.EXCHANGE_AUDIENCES) == {hook.base_url: "merchant"}
    assert any("retrying once with the merchant URL" in r.getMessage() for r in caplog.records)


def test_the_partner_audience_is_used_when_dintero_takes_it(
    dintero_emulator: Any, dintero_connection: str
) -> None:
    merchant = dintero_emulator.merchant_ids[0]

    DinteroPartnerHook().get_account(merchant)

    assert _audiences(dintero_emulator, merchant) == [(f"accounts/{dintero_emulator.partner_id}", 200)]
    assert list(auth_module.EXCHANGE_AUDIENCES.values()) == ["partner"]


def test_a_refusal_not_about_the_audience_is_not_retried(
    dintero_emulator: Any, dintero_connection: str
) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    DinteroPartnerHook().get_token(None)  # the partner's own token first
    dintero_emulator.inject_fault(path_regex=rf"/accounts/{merchant}/auth/token$", status=403, count=5)

    with pytest.raises(DinteroApiError) as raised:
        DinteroPartnerHook().get_token(merchant)

    assert raised.value.status == 403
    assert len(_audiences(dintero_emulator, merchant)) == 1
    assert auth_module.EXCHANGE_AUDIENCES == {}
