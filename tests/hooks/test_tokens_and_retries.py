"""Token economy, refresh, the exchange flow, retries and secrecy, over real HTTP to the emulator."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest

from airflow_provider_dintero.auth import TOKEN_CACHE
from airflow_provider_dintero.exceptions import DinteroApiError, DinteroAuthError
from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from airflow_provider_dintero.pipeline import parse_retry_after

TOKEN_PATH = r"^/v1/accounts/[PT]\d{8}/auth/token$"
EXCHANGE_PATH = r"^/v1/accounts/[PT]\d{8}/auth/exchange_token$"


@pytest.fixture
def fast_retry_connection(dintero_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A partner connection with short back-offs so retry tests stay quick."""
    conn = {
        "conn_type": "dintero",
        "host": dintero_emulator.base_url,
        "login": dintero_emulator.partner_client_id,
        "password": dintero_emulator.partner_client_secret,
        "extra": {
            "account_id": dintero_emulator.partner_id,
            "checkout_base_url": dintero_emulator.base_url,
            "max_retries": 3,
            "retry_backoff": 0.05,
            "retry_max_wait": 5,
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_DINTERO_FAST", json.dumps(conn))
    return "dintero_fast"


def test_hundred_calls_for_one_account_mint_one_token(dintero_emulator: Any, dintero_connection: str) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    for _ in range(100):
        DinteroPartnerHook(dintero_connection).get_account(merchant)
    assert dintero_emulator.count(path_regex=r".*/management/settings$", status=200) == 100
    assert dintero_emulator.count(path_regex=TOKEN_PATH) == 2  # partner + merchant
    assert dintero_emulator.count(path_regex=EXCHANGE_PATH) == 1


def test_exchange_flow_for_two_merchants(dintero_emulator: Any, dintero_connection: str) -> None:
    hook = DinteroPartnerHook(dintero_connection)
    first, second = dintero_emulator.merchant_ids[:2]
    for merchant in (first, second, first, second):
        assert hook.get_account(merchant)["account_id"] == merchant
    exchanges = [r for r in dintero_emulator.requests if r.path.endswith("/exchange_token")]
    assert [r.status for r in exchanges] == [200, 200]
    minted_for = sorted(
        r.path.split("/")[3] for r in dintero_emulator.requests if r.path.endswith("/auth/token")
    )
    assert minted_for == sorted([dintero_emulator.partner_id, first, second])


def test_token_is_refreshed_a_margin_before_expiry(
    dintero_emulator: Any, monkeypatch: pytest.MonkeyPatch, dintero_connection: str
) -> None:
    dintero_emulator.settings.token_lifetime = 301  # the default margin is 300 s
    hook = DinteroPartnerHook(dintero_connection)
    hook.get_token()
    hook.get_token()
    assert dintero_emulator.count(path_regex=TOKEN_PATH) == 1
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 2)
    hook.get_token()
    assert dintero_emulator.count(path_regex=TOKEN_PATH) == 2


def test_token_cache_is_shared_across_hook_instances_and_threads(
    dintero_emulator: Any, dintero_connection: str
) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                DinteroPartnerHook(dintero_connection).get_token(dintero_emulator.merchant_ids[0])
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert dintero_emulator.count(path_regex=EXCHANGE_PATH) == 1
    assert dintero_emulator.count(path_regex=TOKEN_PATH) == 2


def test_expired_token_is_reminted_once_and_the_call_retried(
    dintero_emulator: Any, dintero_connection: str
) -> None:
    hook = DinteroPartnerHook(dintero_connection)
    merchant = dintero_emulator.merchant_ids[0]
    hook.get_account(merchant)
    dintero_emulator.clear_requests()
    dintero_emulator.expire_tokens()
    assert hook.get_account(merchant)["account_id"] == merchant
    settings_calls = [r.status for r in dintero_emulator.requests if r.path.endswith("/management/settings")]
    assert settings_calls == [401, 200]
    assert dintero_emulator.count(path_regex=TOKEN_PATH) >= 1


def test_persistent_401_fails_after_one_refresh(dintero_emulator: Any, fast_retry_connection: str) -> None:
    hook = DinteroPartnerHook(fast_retry_connection)
    hook.get_token()
    dintero_emulator.inject_fault(path_regex=r".*/management/accounts$", status=401, count=10)
    with pytest.raises(DinteroAuthError) as err:
        list(hook.list_merchants())
    assert err.value.status == 401
    assert dintero_emulator.count(path_regex=r".*/management/accounts$") == 2


@pytest.mark.parametrize(
    "retry_after",
    [pytest.param(1, id="delta-seconds"), pytest.param("http-date", id="http-date")],
)
def test_retry_after_is_honoured(dintero_emulator: Any, fast_retry_connection: str, retry_after: Any) -> None:
    hook = DinteroPartnerHook(fast_retry_connection)
    hook.get_token()
    if retry_after == "http-date":
        retry_after = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=2), usegmt=True)
    dintero_emulator.inject_fault(path_regex=r".*/management/accounts$", status=429, retry_after=retry_after)
    started = time.monotonic()
    merchants = list(hook.list_merchants())
    waited = time.monotonic() - started
    assert merchants
    assert [r.status for r in dintero_emulator.requests if r.path.endswith("/management/accounts")][:2] == [
        429,
        200,
    ]
    # The client slept for what the server asked (a lower bound, not a performance figure).
    assert waited >= 0.9


def test_retry_after_parsing() -> None:
    assert parse_retry_after("7") == 7.0
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (parse_retry_after(later) or 0) <= 30
    assert parse_retry_after("soon") is None


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_retried_up_to_the_bound(
    dintero_emulator: Any, fast_retry_connection: str, status: int
) -> None:
    hook = DinteroPartnerHook(fast_retry_connection)
    hook.get_token()
    dintero_emulator.inject_fault(path_regex=r".*/management/accounts$", status=status, count=50)
    with pytest.raises(DinteroApiError) as err:
        list(hook.list_merchants())
    assert err.value.status == status
    assert dintero_emulator.count(path_regex=r".*/management/accounts$") == 4  # 1 + max_retries (3)
    assert "after 4 attempts" in str(err.value)
    assert dintero_emulator.partner_id in str(err.value)


def test_5xx_then_success_recovers(dintero_emulator: Any, fast_retry_connection: str) -> None:
    hook = DinteroPartnerHook(fast_retry_connection)
    dintero_emulator.inject_fault(path_regex=r".*/management/accounts$", status=503, count=2)
    assert len(list(hook.list_merchants())) == len(dintero_emulator.merchant_ids)


def test_slow_response_past_the_timeout_is_retried_then_reported(
    dintero_emulator: Any, monkeypatch: pytest.MonkeyPatch, fast_retry_connection: str
) -> None:
    conn = json.loads(os.environ["AIRFLOW_CONN_DINTERO_FAST"])
    conn["extra"]["timeout"] = 0.3
    monkeypatch.setenv("AIRFLOW_CONN_DINTERO_SLOW", json.dumps(conn))
    hook = DinteroPartnerHook("dintero_slow")
    hook.get_token()
    dintero_emulator.inject_fault(path_regex=r".*/management/accounts$", delay=1.0, count=10)
    with pytest.raises(DinteroApiError, match="timed out after 4 attempt"):
        list(hook.list_merchants())


def test_api_error_carries_dintero_code_and_message(dintero_emulator: Any, dintero_connection: str) -> None:
    hook = DinteroPartnerHook(dintero_connection)
    with pytest.raises(DinteroApiError) as err:
        hook.get_account(dintero_emulator.foreign_merchant_id)
    assert err.value.status in (403, 404)
    assert dintero_emulator.foreign_merchant_id in str(err.value)
    assert err.value.api_message


def test_no_token_or_secret_in_logs_or_errors(
    dintero_emulator: Any,
    dintero_connection: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    hook = DinteroPartnerHook(dintero_connection)
    merchant = dintero_emulator.merchant_ids[0]
    hook.get_account(merchant)
    dintero_emulator.expire_tokens()
    hook.get_account(merchant)
    with pytest.raises(DinteroApiError) as err:
        hook.get_account(dintero_emulator.foreign_merchant_id)
    credentials = {dintero_emulator.partner_client_secret, *dintero_emulator.issued_tokens()}
    assert len(credentials) >= 4  # the secret, partner, exchange and merchant tokens
    captured = caplog.text + str(err.value) + repr(err.value) + capsys.readouterr().out
    assert [c for c in credentials if c in captured] == []


def test_only_the_partners_own_credentials_are_registered_with_the_secrets_masker(
    dintero_emulator: Any, dintero_connection: str
) -> None:
    from airflow.providers.common.compat.sdk import redact

    from airflow_provider_dintero.redaction import redact_text

    hook = DinteroPartnerHook(dintero_connection)
    hook.get_account(dintero_emulator.merchant_ids[0])
    partner_token = hook.get_token()
    others = set(dintero_emulator.issued_tokens()) - {partner_token}
    assert len(others) >= 2  # the exchange and the merchant token
    for credential in (dintero_emulator.partner_client_secret, partner_token):
        assert credential not in str(redact(f"value {credential}"))
    for credential in others:  # not registered (masking cost stays flat), yet redacted from our texts
        assert credential in str(redact(f"value {credential}"))
        assert credential not in redact_text(f"Dintero echoed {credential} and Bearer {credential}")


def test_token_cache_keys_by_base_url_client_and_account(
    dintero_emulator: Any, dintero_connection: str
) -> None:
    hook = DinteroPartnerHook(dintero_connection)
    hook.get_token()
    assert TOKEN_CACHE.get((hook.base_url, hook.client_id, hook.account_id), 0)
    assert TOKEN_CACHE.get(("https://api.dintero.com", hook.client_id, hook.account_id), 0) is None
