"""Payment profile operators: idempotent create, list, partial update with dry run."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_dintero.exceptions import DinteroApiError, DinteroInputError, DinteroNotFoundError
from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from airflow_provider_dintero.operators.payment_profiles import (
    CreatePaymentProfileOperator,
    ListPaymentProfilesOperator,
    UpdatePaymentProfileOperator,
    deep_merge,
    diff_fields,
)
from tests.provisioning.helpers import clear_log, settle, task_result, writes

PROFILE = {
    "profile_id": "airflow-default",
    "description": "Payment profile provisioned by Airflow",
    "configuration": {"active_payment_types": {"enabled": True}, "auto_capture": False},
}


def test_create_then_second_run_creates_nothing(dintero_emulator: Any, dintero_connection: str) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    operator = CreatePaymentProfileOperator(task_id="profile", account_id=merchant, profile=PROFILE)

    created = operator.execute({})
    assert created["profile_id"] == "airflow-default"
    assert writes(dintero_emulator) == [("POST", "/v1/admin/session/profiles")]
    clear_log(dintero_emulator)

    again = operator.execute({})

    assert again["profile_id"] == "airflow-default"
    assert writes(dintero_emulator) == []


def test_if_exists_fail_refuses_an_existing_profile(dintero_emulator: Any, dintero_connection: str) -> None:
    with pytest.raises(AirflowException, match="default already exists"):
        CreatePaymentProfileOperator(
            task_id="profile",
            account_id=dintero_emulator.merchant_ids[0],
            profile={**PROFILE, "profile_id": "default"},
            if_exists="fail",
        ).execute({})
    assert writes(dintero_emulator) == []


def test_invalid_profile_fails_with_dinteros_message_and_field(
    dintero_emulator: Any, dintero_connection: str
) -> None:
    profile = {**PROFILE, "configuration": {"auto_capture": True, "not_a_setting": 1}}

    with pytest.raises(DinteroApiError, match=r"configuration\.not_a_setting") as info:
        CreatePaymentProfileOperator(
            task_id="profile", account_id=dintero_emulator.merchant_ids[0], profile=profile
        ).execute({})
    assert info.value.status == 400
    assert "unknown configuration field" in str(info.value)


@pytest.mark.parametrize(
    ("profile", "field"),
    [
        ("not a dict", "profile"),
        ({"configuration": {}}, "profile.description"),
        ({"description": "", "configuration": {}}, "profile.description"),
        ({"description": "x", "configuration": "auto_capture"}, "profile.configuration"),
        ({"description": "x"}, "profile.configuration"),
        ({"description": "x", "configuration": {}, "profile_id": ""}, "profile.profile_id"),
    ],
    ids=["not-a-dict", "no-description", "empty-description", "config-not-object", "no-config", "empty-id"],
)
def test_malformed_profile_is_refused_before_any_request(
    dintero_emulator: Any, dintero_connection: str, profile: Any, field: str
) -> None:
    with pytest.raises(DinteroInputError, match=rf"^{field}:"):
        CreatePaymentProfileOperator(
            task_id="profile", account_id=dintero_emulator.merchant_ids[0], profile=profile
        ).execute({})
    assert settle(dintero_emulator).requests == []


def test_list_returns_the_profiles(dintero_emulator: Any, dintero_connection: str) -> None:
    profiles = ListPaymentProfilesOperator(
        task_id="list", account_id=dintero_emulator.merchant_ids[0]
    ).execute({})

    assert [p["profile_id"] for p in profiles] == ["default"]


def test_merchant_connection_manages_its_own_profiles(
    dintero_emulator: Any, merchant_connection: tuple[str, str]
) -> None:
    conn_id, merchant = merchant_connection

    CreatePaymentProfileOperator(
        task_id="profile", account_id=merchant, profile=PROFILE, dintero_conn_id=conn_id
    ).execute({})
    listed = ListPaymentProfilesOperator(
        task_id="list", account_id=merchant, dintero_conn_id=conn_id
    ).execute({})

    assert {p["profile_id"] for p in listed} == {"default", "airflow-default"}
    assert settle(dintero_emulator).count(path_regex="exchange_token") == 0


def test_update_merges_changes_puts_the_full_profile_and_reports_fields(
    dintero_emulator: Any, dintero_connection: str
) -> None:
    merchant = dintero_emulator.merchant_ids[0]

    result = UpdatePaymentProfileOperator(
        task_id="update",
        account_id=merchant,
        profile_id="default",
        changes={"configuration": {"auto_capture": True}, "description": "Updated by Airflow"},
    ).execute({})

    assert sorted(result["changed_fields"]) == ["configuration.auto_capture", "description"]
    assert result["updated"] is True and result["dry_run"] is False
    assert writes(dintero_emulator) == [("PUT", "/v1/admin/session/profiles/default")]
    stored = DinteroPartnerHook().get_payment_profile(merchant, "default")
    assert stored["configuration"] == {"active_payment_types": {"enabled": True}, "auto_capture": True}
    assert stored["description"] == "Updated by Airflow"


def test_update_logs_each_change_as_a_dotted_path(
    dintero_emulator: Any, dintero_connection: str, caplog: Any, capsys: Any
) -> None:
    UpdatePaymentProfileOperator(
        task_id="update",
        account_id=dintero_emulator.merchant_ids[0],
        profile_id="default",
        changes={"configuration": {"active_payment_types": {"enabled": False}}},
    ).execute({})

    captured = capsys.readouterr()
    assert "configuration.active_payment_types.enabled: True -> False" in caplog.text + captured.out


@pytest.mark.parametrize(
    ("changes", "dry_run"),
    [
        ({"configuration": {"auto_capture": True}}, True),
        ({"configuration": {"active_payment_types": {"enabled": True}}}, False),
    ],
    ids=["dry-run", "no-change"],
)
def test_update_sends_nothing_on_dry_run_or_without_changes(
    dintero_emulator: Any, dintero_connection: str, changes: dict[str, Any], dry_run: bool
) -> None:
    result = UpdatePaymentProfileOperator(
        task_id="update",
        account_id=dintero_emulator.merchant_ids[0],
        profile_id="default",
        changes=changes,
        dry_run=dry_run,
    ).execute({})

    assert writes(dintero_emulator) == []
    assert result["updated"] is False and result["dry_run"] is dry_run
    assert result["changed_fields"] == (["configuration.auto_capture"] if dry_run else [])


def test_update_of_a_missing_profile_fails(dintero_emulator: Any, dintero_connection: str) -> None:
    with pytest.raises(DinteroNotFoundError, match="no-such-profile"):
        UpdatePaymentProfileOperator(
            task_id="update",
            account_id=dintero_emulator.merchant_ids[0],
            profile_id="no-such-profile",
            changes={"description": "x"},
        ).execute({})
    assert writes(dintero_emulator) == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"account_id": "T1"}, "account_id"),
        ({"profile_id": ""}, "profile_id"),
        ({"changes": {}}, "changes"),
        ({"changes": ["description"]}, "changes"),
        ({"changes": {"profile_id": "other"}}, "changes.profile_id"),
        ({"changes": {"created_at": "2026-01-01"}}, "changes.created_at"),
        ({"dry_run": "yes"}, "dry_run"),
    ],
    ids=["account", "profile-id", "empty-changes", "list-changes", "rename", "read-only", "dry-run-type"],
)
def test_update_bad_input_is_refused_before_any_request(
    dintero_emulator: Any, dintero_connection: str, overrides: dict[str, Any], field: str
) -> None:
    kwargs: dict[str, Any] = {
        "account_id": dintero_emulator.merchant_ids[0],
        "profile_id": "default",
        "changes": {"description": "x"},
    }
    kwargs.update(overrides)

    with pytest.raises(DinteroInputError, match=rf"^{field}:"):
        UpdatePaymentProfileOperator(task_id="update", **kwargs).execute({})
    assert settle(dintero_emulator).requests == []


def test_profile_and_changes_are_templated(
    run_tasks: Any, dintero_emulator: Any, dintero_connection: str
) -> None:
    merchant = dintero_emulator.merchant_ids[0]

    def factory() -> None:
        create = CreatePaymentProfileOperator(
            task_id="create",
            account_id=merchant,
            profile={**PROFILE, "profile_id": "{{ dag_run.conf['profile'] }}"},
        )
        update = UpdatePaymentProfileOperator(
            task_id="update",
            account_id=merchant,
            profile_id="{{ dag_run.conf['profile'] }}",
            changes={"description": "{{ dag_run.conf['description'] }}"},
        )
        create >> update

    dagrun = run_tasks(factory, conf={"profile": "templated", "description": "From conf"})

    assert task_result(dagrun, "create")["profile_id"] == "templated"
    assert task_result(dagrun, "update")["changed_fields"] == ["description"]
    assert task_result(dagrun, "update")["profile"]["description"] == "From conf"


@pytest.mark.parametrize(
    ("base", "changes", "merged", "paths"),
    [
        ({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}, {"a": {"b": 3, "c": 2}}, ["a.b"]),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}, ["a"]),
        ({"a": 1}, {"b": {"c": True}}, {"a": 1, "b": {"c": True}}, ["b"]),
        ({"a": {"b": 1}}, {"a": None}, {"a": None}, ["a"]),
    ],
    ids=["nested-merge", "list-replaces", "new-branch", "null-replaces"],
)
def test_deep_merge_and_diff(
    base: dict[str, Any], changes: dict[str, Any], merged: dict[str, Any], paths: list[str]
) -> None:
    result = deep_merge(base, changes)

    assert result == merged
    assert [path for path, _, _ in diff_fields(base, result)] == paths


# ------------------------------------------------------------------ paged list (issue 13 item 5)


def _add_profiles(merchant: str, count: int) -> list[str]:
    hook = DinteroPartnerHook()
    ids = [f"airflow-{i:03d}" for i in range(count)]
    for profile_id in ids:
        hook.create_payment_profile(merchant, {**PROFILE, "profile_id": profile_id})
    return ids


@pytest.mark.parametrize("count", [14, 205])
def test_list_reads_every_page(dintero_emulator: Any, dintero_connection: str, count: int) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    ids = _add_profiles(merchant, count)
    clear_log(dintero_emulator)

    profiles = DinteroPartnerHook().list_payment_profiles(merchant)

    assert sorted(p["profile_id"] for p in profiles) == sorted([*ids, "default"])
    pages = [
        r for r in settle(dintero_emulator).requests if r.method == "GET" and r.path.endswith("/profiles")
    ]
    assert len(pages) == (count + 1) // 100 + 1
    assert all(r.query["limit"] == ["100"] for r in pages)
    assert [r.query.get("starting_after", []) for r in pages][1:] == [
        [profiles[100 * i - 1]["profile_id"]] for i in range(1, len(pages))
    ]


def test_create_finds_an_existing_profile_beyond_the_first_page(
    dintero_emulator: Any, dintero_connection: str
) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    ids = _add_profiles(merchant, 14)  # Dintero's default page is 10
    clear_log(dintero_emulator)

    found = CreatePaymentProfileOperator(
        task_id="profile", account_id=merchant, profile={**PROFILE, "profile_id": ids[-1]}
    ).execute({})

    assert found["profile_id"] == ids[-1]
    assert writes(dintero_emulator) == []
