"""
Post-create reconciliation: when a concurrent run created the same thing between this run's
listing and its create, the oldest copy is kept and this run's duplicate is removed.

A "concurrent run" is simulated by wrapping the hook's create method: the rival is created
through the API just before (older) or just after (newer) the operator's own create, a few
milliseconds apart so the emulator's millisecond ``created_at`` orders them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_dintero.exceptions import DinteroApiError
from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from airflow_provider_dintero.operators._base import oldest
from airflow_provider_dintero.operators.api_clients import CreateApiClientOperator, GrantOperator
from airflow_provider_dintero.operators.payment_profiles import CreatePaymentProfileOperator
from airflow_provider_dintero.operators.webhooks import CreateWebhookSubscriptionOperator
from tests.provisioning.helpers import clear_log, read_variable, settle, writes

HOOK_URL = "http://127.0.0.1:9/reconciliation-hook"
SUBSCRIPTIONS = r"/hooks/subscriptions$"
NAME = "airflow reconciliation"
#: Longer than the emulator's created_at resolution (1 ms), so rival and own copy never tie.
APART = 0.01

#: Makes the rival, given the (unwrapped) create method bound to a fresh hook.
Rival = Callable[[Callable[..., Any]], Any]


@pytest.fixture
def concurrent(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Rival, bool], dict[str, Any]]:
    """
    ``concurrent(create_method, make_rival, first)``: the next ``create_method`` call also
    creates a rival with ``make_rival(create)`` (``create``: the unwrapped method on a fresh
    hook), before the operator's create when ``first`` (the rival is older) or after it (the
    rival is newer). Returns a dict that receives the rival under ``"rival"``.
    """

    def _arm(method: str, make_rival: Rival, first: bool) -> dict[str, Any]:
        original = getattr(DinteroPartnerHook, method)
        made: dict[str, Any] = {"rival": None}

        def create(*args: Any, **kwargs: Any) -> Any:
            return original(DinteroPartnerHook(), *args, **kwargs)

        def wrapped(self: DinteroPartnerHook, *args: Any, **kwargs: Any) -> Any:
            if made["rival"] is None and first:
                made["rival"] = make_rival(create)
                time.sleep(APART)
                return original(self, *args, **kwargs)
            answer = original(self, *args, **kwargs)
            if made["rival"] is None:
                time.sleep(APART)
                made["rival"] = make_rival(create)
            return answer

        monkeypatch.setattr(DinteroPartnerHook, method, wrapped)
        return made

    return _arm


def _sm_operator(merchant: str, secret_name: str, **kwargs: Any) -> CreateApiClientOperator:
    return CreateApiClientOperator(
        task_id="api_client",
        account_id=merchant,
        name=NAME,
        secret_destination="secrets_manager",
        secrets_manager_secret_name=secret_name,
        **kwargs,
    )


def _sm_secret(secretsmanager: Any, name: str) -> dict[str, Any] | None:
    try:
        raw = secretsmanager.get_secret_value(SecretId=name)["SecretString"]
    except secretsmanager.exceptions.ResourceNotFoundException:
        return None
    return dict(json.loads(raw))


def _named(merchant: str) -> list[dict[str, Any]]:
    return [dict(c) for c in DinteroPartnerHook().list_api_clients(merchant) if c.get("name") == NAME]


# ------------------------------------------------------------------ the keeper rule


@pytest.mark.parametrize(
    ("items", "kept"),
    [
        (
            [
                {"id": "b", "created_at": "2026-01-01T10:00:00.5Z"},
                {"id": "a", "created_at": "2026-01-01T10:00:00.25Z"},
            ],
            "a",
        ),
        (
            [
                {"id": "b", "created_at": "2026-01-01T10:00:00Z"},
                {"id": "a", "created_at": "2026-01-01T11:30:00+02:00"},
            ],
            "a",
        ),
        (
            [
                {"id": "b", "created_at": "2026-01-01T10:00:00.000Z"},
                {"id": "a", "created_at": "2026-01-01T10:00:00.000Z"},
            ],
            "a",
        ),
        ([{"id": "a"}, {"id": "b", "created_at": "2026-01-01T10:00:00Z"}], "b"),
    ],
    ids=["fraction-digits", "time-zone-offset", "tie-smaller-id", "undated-last"],
)
def test_oldest_compares_points_in_time_then_ids(items: list[dict[str, Any]], kept: str) -> None:
    assert oldest(items)["id"] == kept
    assert oldest(list(reversed(items)))["id"] == kept


# ------------------------------------------------------------------ webhook subscriptions


def _subscribe(merchant: str) -> Any:
    return CreateWebhookSubscriptionOperator(task_id="hook", account_id=merchant, url=HOOK_URL).execute({})


def _rival_subscription(merchant: str) -> Rival:
    return lambda create: create(merchant, {"config": {"url": HOOK_URL}, "events": ["settlement_add"]})


def test_subscription_losing_to_an_older_one_is_removed_and_the_older_returned(
    dintero_emulator: Any, dintero_connection: str, concurrent: Any
) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    dintero_emulator.settings.ping_on_subscription_create = False
    made = concurrent("create_webhook_subscription", _rival_subscription(merchant), True)

    result = _subscribe(merchant)

    left = [
        s for s in DinteroPartnerHook().list_webhook_subscriptions(merchant) if s["config"]["url"] == HOOK_URL
    ]
    assert [s["id"] for s in left] == [made["rival"]["id"]]
    assert result["id"] == made["rival"]["id"]


def test_subscription_older_than_the_rival_is_kept_and_the_rival_left_to_its_run(
    dintero_emulator: Any, dintero_connection: str, concurrent: Any
) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    dintero_emulator.settings.ping_on_subscription_create = False
    clear_log(dintero_emulator)
    made = concurrent("create_webhook_subscription", _rival_subscription(merchant), False)

    result = _subscribe(merchant)

    assert result["id"] != made["rival"]["id"]
    assert [m for m, _ in writes(dintero_emulator)] == ["POST", "POST"]  # no DELETE by the keeper


def test_subscription_kept_when_listing_again_fails(
    dintero_emulator: Any, dintero_connection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    dintero_emulator.settings.ping_on_subscription_create = False
    original = DinteroPartnerHook.create_webhook_subscription

    def create_then_break_listing(self: DinteroPartnerHook, *args: Any, **kwargs: Any) -> Any:
        answer = original(self, *args, **kwargs)
        dintero_emulator.inject_fault(path_regex=SUBSCRIPTIONS, method="GET", status=400)
        return answer

    monkeypatch.setattr(DinteroPartnerHook, "create_webhook_subscription", create_then_break_listing)

    result = _subscribe(merchant)

    assert settle(dintero_emulator).count("GET", SUBSCRIPTIONS, status=400) == 1
    assert [s["id"] for s in DinteroPartnerHook().list_webhook_subscriptions(merchant)] == [result["id"]]


# ------------------------------------------------------------------ client grants


@pytest.fixture
def client_login(dintero_emulator: Any, dintero_connection: str) -> str:
    """The ``client_id`` of a fresh API client on the first merchant."""
    DinteroPartnerHook().create_api_client(
        dintero_emulator.merchant_ids[0], name="airflow-grants", client_id="airflow-grants"
    )
    return "airflow-grants"


def _rival_grant(emu: Any, client_login: str, concurrent: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A rival grant of ``read:receipts`` made just before the operator's: (merchant, client, made)."""
    merchant = emu.merchant_ids[0]
    hook = DinteroPartnerHook()
    client = next(c for c in hook.list_api_clients(merchant) if c["client_id"] == client_login)
    made = concurrent(
        "create_client_grant",
        lambda create: create(
            merchant, client_uuid=client["id"], audience=hook.audience(merchant), scope=["read:receipts"]
        ),
        True,
    )
    return merchant, client, made


def test_grant_losing_to_an_older_one_is_removed_and_the_older_returned(
    dintero_emulator: Any, client_login: str, concurrent: Any
) -> None:
    merchant, client, made = _rival_grant(dintero_emulator, client_login, concurrent)
    hook = DinteroPartnerHook()

    result = GrantOperator(
        task_id="grant", account_id=merchant, client_id=client_login, scopes=["read:receipts"]
    ).execute({})

    left = hook.list_client_grants(merchant, client_uuid=client["id"])
    assert [g["id"] for g in left] == [made["rival"]["id"]]
    assert result["id"] == made["rival"]["id"]


# ------------------------------------------------------------------ API clients


def _rival_client(merchant: str, client_id: str | None = None) -> Rival:
    return lambda create: {
        k: v for k, v in create(merchant, name=NAME, client_id=client_id).items() if k != "client_secret"
    }


def test_client_by_name_losing_removes_its_duplicate_and_stores_no_secret(
    dintero_emulator: Any,
    dintero_connection: str,
    aws_connection: str,
    secretsmanager: Any,
    secret_name: str,
    concurrent: Any,
) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    made = concurrent("create_api_client", _rival_client(merchant), True)

    result = _sm_operator(merchant, secret_name).execute({})

    assert [c["id"] for c in _named(merchant)] == [made["rival"]["id"]]
    assert result["client"]["id"] == made["rival"]["id"]
    assert result["created"] is False and result["secret_stored_by_concurrent_run"] is True
    assert _sm_secret(secretsmanager, secret_name) is None  # the loser's dead secret is not stored


def test_client_by_name_older_than_the_rival_stores_its_own_secret(
    dintero_emulator: Any,
    dintero_connection: str,
    aws_connection: str,
    secretsmanager: Any,
    secret_name: str,
    concurrent: Any,
) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    made = concurrent("create_api_client", _rival_client(merchant), False)

    result = _sm_operator(merchant, secret_name).execute({})

    assert result["created"] is True and result["secret_stored_by_concurrent_run"] is False
    assert result["client"]["id"] != made["rival"]["id"]
    stored = _sm_secret(secretsmanager, secret_name)
    assert stored is not None and stored["login"] == result["client"]["client_id"]


def test_client_by_name_losing_with_if_exists_fail_fails_after_removing_its_duplicate(
    dintero_emulator: Any, dintero_connection: str, aws_connection: str, secret_name: str, concurrent: Any
) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    made = concurrent("create_api_client", _rival_client(merchant), True)

    with pytest.raises(AirflowException, match=r"concurrent run created .*if_exists='fail'"):
        _sm_operator(merchant, secret_name, if_exists="fail").execute({})

    assert [c["id"] for c in _named(merchant)] == [made["rival"]["id"]]


@pytest.mark.parametrize("status", [400, 409])
def test_duplicate_client_id_refusal_reuses_the_concurrent_client(
    dintero_emulator: Any,
    dintero_connection: str,
    aws_connection: str,
    secretsmanager: Any,
    secret_name: str,
    concurrent: Any,
    status: int,
) -> None:
    dintero_emulator.settings.duplicate_status = status
    merchant = dintero_emulator.merchant_ids[0]
    made = concurrent("create_api_client", _rival_client(merchant, "airflow-race"), True)

    result = _sm_operator(merchant, secret_name, client_id="airflow-race").execute({})

    assert result["client"]["id"] == made["rival"]["id"]
    assert result["created"] is False and result["secret_stored_by_concurrent_run"] is True
    assert [c["id"] for c in _named(merchant)] == [made["rival"]["id"]]
    assert _sm_secret(secretsmanager, secret_name) is None


@pytest.mark.parametrize("status", [400, 409])
def test_a_refusal_without_a_concurrent_client_still_fails(
    dintero_emulator: Any, dintero_connection: str, aws_connection: str, secret_name: str, status: int
) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    dintero_emulator.inject_fault(path_regex="/auth/clients$", method="POST", status=status)

    with pytest.raises(DinteroApiError) as raised:
        _sm_operator(merchant, secret_name, client_id="airflow-race").execute({})

    assert raised.value.status == status
    assert _named(merchant) == []


# ------------------------------------------------------------------ duplicates refused with 400 or 409


@pytest.mark.parametrize("status", [400, 409])
def test_grant_refused_as_a_duplicate_returns_the_existing_grant(
    dintero_emulator: Any, client_login: str, concurrent: Any, status: int
) -> None:
    dintero_emulator.settings.duplicate_status = status
    dintero_emulator.settings.refuse_duplicates = ["grant"]
    merchant, client, made = _rival_grant(dintero_emulator, client_login, concurrent)
    hook = DinteroPartnerHook()

    result = GrantOperator(
        task_id="grant", account_id=merchant, client_id=client_login, scopes=["read:receipts"]
    ).execute({})

    assert result["id"] == made["rival"]["id"]
    assert [g["id"] for g in hook.list_client_grants(merchant, client_uuid=client["id"])] == [result["id"]]
    assert dintero_emulator.count("POST", r"/auth/client-grants$", status=status) == 1


@pytest.mark.parametrize("status", [400, 409])
def test_grant_refused_for_other_scopes_still_fails(
    dintero_emulator: Any, client_login: str, concurrent: Any, status: int
) -> None:
    dintero_emulator.settings.duplicate_status = status
    dintero_emulator.settings.refuse_duplicates = ["grant"]
    merchant, _, _ = _rival_grant(dintero_emulator, client_login, concurrent)

    with pytest.raises(DinteroApiError) as raised:
        GrantOperator(
            task_id="grant", account_id=merchant, client_id=client_login, scopes=["read:settlements"]
        ).execute({})
    assert raised.value.status == status


@pytest.mark.parametrize("status", [400, 409])
def test_subscription_refused_as_a_duplicate_returns_the_existing_one(
    dintero_emulator: Any, dintero_connection: str, concurrent: Any, status: int
) -> None:
    dintero_emulator.settings.duplicate_status = status
    dintero_emulator.settings.refuse_duplicates = ["subscription"]
    merchant = dintero_emulator.merchant_ids[0]
    made = concurrent("create_webhook_subscription", _rival_subscription(merchant), True)

    result = _subscribe(merchant)

    assert result["id"] == made["rival"]["id"]
    left = DinteroPartnerHook().list_webhook_subscriptions(merchant)
    assert [s["id"] for s in left] == [made["rival"]["id"]]
    assert dintero_emulator.count("POST", SUBSCRIPTIONS, status=status) == 1


def _rival_profile(merchant: str) -> Rival:
    return lambda create: create(merchant, PROFILE)


PROFILE = {"profile_id": "airflow-race", "description": "race", "configuration": {"dintero_psp": {}}}


@pytest.mark.parametrize("status", [400, 409])
def test_profile_refused_as_a_duplicate_returns_the_existing_one(
    dintero_emulator: Any, dintero_connection: str, concurrent: Any, status: int
) -> None:
    dintero_emulator.settings.duplicate_status = status
    merchant = dintero_emulator.merchant_ids[0]
    made = concurrent("create_payment_profile", _rival_profile(merchant), True)

    result = CreatePaymentProfileOperator(task_id="profile", account_id=merchant, profile=PROFILE).execute({})

    assert result["profile_id"] == "airflow-race" == made["rival"]["profile_id"]
    assert dintero_emulator.count("POST", r"/profiles$", status=status) == 1


@pytest.mark.parametrize("status", [400, 409])
def test_profile_refused_as_a_duplicate_with_if_exists_fail_fails(
    dintero_emulator: Any, dintero_connection: str, concurrent: Any, status: int
) -> None:
    dintero_emulator.settings.duplicate_status = status
    merchant = dintero_emulator.merchant_ids[0]
    concurrent("create_payment_profile", _rival_profile(merchant), True)

    with pytest.raises(DinteroApiError) as raised:
        CreatePaymentProfileOperator(
            task_id="profile", account_id=merchant, profile=PROFILE, if_exists="fail"
        ).execute({})
    assert raised.value.status == status


# ------------------------------------------------------------------ Variable store


def test_variable_secret_is_stored_when_execute_runs_outside_a_task(
    airflow_db: None, dintero_emulator: Any, dintero_connection: str, variable_key: str
) -> None:
    merchant = dintero_emulator.merchant_ids[0]

    result = CreateApiClientOperator(
        task_id="api_client", account_id=merchant, name=NAME, secret_variable_key=variable_key
    ).execute({})

    assert result["created"] is True
    assert read_variable(variable_key)
