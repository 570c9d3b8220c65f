"""
Connection fields and account ids are checked before any request: port range, a finite timeout
above 0, retries within the documented maximum, no query, fragment or user info in the base URL,
bounds that are bounds; account ids and audiences in ASCII digits only. Each error names the field.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_dintero.exceptions import DinteroInputError
from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from tests.reliability.hostile import HostileServer

from .conftest import STATS, hostile_connection

FULL_WIDTH = "T" + "\uff11\uff11\uff12" + "\uff10" * 4 + "\uff11"  # full-width digits
ARABIC_INDIC = "T" + "\u0661\u0661\u0662" + "\u0660" * 4 + "\u0661"
MIXED = "T1120000\uff11"
PARTNER_INDIC = "P" + ARABIC_INDIC[1:]

BAD_FIELDS = [
    pytest.param({"port": 99999}, "port", id="port-too-high"),
    pytest.param({"port": -1}, "port", id="port-negative"),
    pytest.param({"extra": {"timeout": "nan"}}, "extra.timeout", id="timeout-nan"),
    pytest.param({"extra": {"timeout": "inf"}}, "extra.timeout", id="timeout-inf"),
    pytest.param({"extra": {"timeout": 0}}, "extra.timeout", id="timeout-zero"),
    pytest.param({"extra": {"timeout": -3}}, "extra.timeout", id="timeout-negative"),
    pytest.param({"extra": {"max_retries": 1e9}}, "extra.max_retries", id="retries-huge"),
    pytest.param({"extra": {"max_retries": 21}}, "extra.max_retries", id="retries-above-max"),
    pytest.param({"extra": {"max_retries": 2.5}}, "extra.max_retries", id="retries-fraction"),
    pytest.param({"extra": {"retry_backoff": "inf"}}, "extra.retry_backoff", id="backoff-inf"),
    pytest.param({"extra": {"retry_max_wait": "nan"}}, "extra.retry_max_wait", id="max-wait-nan"),
    pytest.param({"extra": {"request_deadline": 0}}, "extra.request_deadline", id="deadline-zero"),
    pytest.param({"extra": {"max_response_bytes": 10}}, "extra.max_response_bytes", id="body-cap-tiny"),
    pytest.param({"extra": {"max_pages": 0}}, "extra.max_pages", id="page-cap-zero"),
    pytest.param({"extra": {"min_download_rate": -1}}, "extra.min_download_rate", id="rate-negative"),
    pytest.param({"host": "{url}/?x=1"}, "host", id="base-url-query"),
    pytest.param({"host": "{url}#frag"}, "host", id="base-url-fragment"),
    pytest.param({"host": "{url}?"}, "host", id="base-url-empty-query"),
    pytest.param({"host": "http://u:p@127.0.0.1:1"}, "host", id="base-url-user-info"),
    pytest.param(
        {"extra": {"checkout_base_url": "{url}?a=b"}}, "extra.checkout_base_url", id="checkout-query"
    ),
    pytest.param({"extra": {"account_id": FULL_WIDTH}}, "extra.account_id", id="account-full-width"),
    pytest.param({"extra": {"account_id": ARABIC_INDIC}}, "extra.account_id", id="account-arabic-indic"),
    pytest.param({"extra": {"account_id": " T11200000"}}, "extra.account_id", id="account-leading-space"),
]


def _fill(value: Any, url: str) -> Any:
    if isinstance(value, str):
        return value.replace("{url}", url)
    if isinstance(value, dict):
        return {k: _fill(v, url) for k, v in value.items()}
    return value


@pytest.mark.parametrize(("overrides", "field"), BAD_FIELDS)
def test_bad_connection_fields_are_named_before_any_request(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any], field: str
) -> None:
    conn = json.loads(hostile_connection(hostile))
    overrides = _fill(overrides, hostile.url)
    conn["extra"].update(overrides.pop("extra", {}))
    conn.update(overrides)
    monkeypatch.setenv("AIRFLOW_CONN_DINTERO_DEFAULT", json.dumps(conn))

    with pytest.raises(DinteroInputError) as err:
        list(DinteroPartnerHook().list_settlements("T11200001"))

    STATS["bad_inputs"] += 1
    assert err.value.field == field
    assert hostile.requests == []


@pytest.mark.parametrize("account", [FULL_WIDTH, ARABIC_INDIC, MIXED, PARTNER_INDIC])
def test_account_ids_with_non_ascii_digits_are_refused_everywhere(
    hostile: HostileServer, account: str
) -> None:
    from airflow_provider_dintero.validation import validate_account_id

    with pytest.raises(DinteroInputError):
        validate_account_id(account)
    with pytest.raises(DinteroInputError):
        DinteroPartnerHook().get_account(account)
    assert hostile.requests == []


@pytest.mark.parametrize(
    "audience",
    [
        f"https://api.dintero.com/v1/accounts/{FULL_WIDTH}",
        f"https://api.dintero.com/v1/accounts/{ARABIC_INDIC}/",
        "https://api.dintero.com/v1/accounts/T11200001?x=1",
        "https://user@api.dintero.com/v1/accounts/T11200001",
    ],
)
def test_grant_operator_refuses_audiences_that_are_not_ascii_account_urls(
    hostile: HostileServer, audience: str
) -> None:
    from airflow_provider_dintero.operators.api_clients import GrantOperator

    operator = GrantOperator(
        task_id="grant",
        account_id="T11200001",
        client_id="c1",
        scopes=["read:settlements"],
        audience=audience,
    )

    with pytest.raises(DinteroInputError) as err:
        operator.execute({})  # type: ignore[arg-type]

    assert err.value.field == "audience"
    assert hostile.requests == []
