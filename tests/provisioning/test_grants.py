"""GrantOperator: client lookup by client_id or UUID, idempotency, scope validation."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_dintero.exceptions import DinteroInputError, DinteroNotFoundError
from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from airflow_provider_dintero.operators.api_clients import GrantOperator
from tests.provisioning.helpers import clear_log, settle, task_result, writes

SCOPES = ["read:settlements", "read:reports"]


@pytest.fixture
def client(dintero_emulator: Any, dintero_connection: str) -> dict[str, Any]:
    """A fresh API client on the first merchant (created directly through the hook)."""
    created = DinteroPartnerHook().create_api_client(
        dintero_emulator.merchant_ids[0], name="airflow-reports", client_id="airflow-reports"
    )
    clear_log(dintero_emulator)
    return {k: v for k, v in created.items() if k != "client_secret"}


@pytest.mark.parametrize("ref", ["client_id", "id"])
def test_grant_names_the_client_by_either_id_and_sends_the_uuid(
    dintero_emulator: Any, client: dict[str, Any], ref: str
) -> None:
    merchant = dintero_emulator.merchant_ids[0]

    grant = GrantOperator(task_id="grant", account_id=merchant, client_id=client[ref], scopes=SCOPES).execute(
        {}
    )

    assert grant["client_id"] == client["id"]
    assert grant["audience"] == f"{dintero_emulator.base_url}/v1/accounts/{merchant}"
    assert sorted(grant["scope"]) == sorted(SCOPES)
    assert writes(dintero_emulator) == [("POST", f"/v1/accounts/{merchant}/auth/client-grants")]


def test_second_run_creates_nothing(dintero_emulator: Any, client: dict[str, Any]) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    operator = GrantOperator(task_id="grant", account_id=merchant, client_id="airflow-reports", scopes=SCOPES)
    first = operator.execute({})
    clear_log(dintero_emulator)

    second = operator.execute({})

    assert second["id"] == first["id"]
    assert writes(dintero_emulator) == []


@pytest.mark.parametrize(
    ("existing", "requested", "creates"),
    [
        (["read:settlements", "read:reports", "read:hooks"], ["read:reports"], False),
        (["read:settlements"], ["read:settlements", "read:reports"], True),
    ],
    ids=["existing-superset-reused", "existing-subset-not-enough"],
)
def test_an_existing_grant_is_reused_only_if_it_covers_every_scope(
    dintero_emulator: Any, client: dict[str, Any], existing: list[str], requested: list[str], creates: bool
) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    hook = DinteroPartnerHook()
    hook.create_client_grant(
        merchant, client_uuid=client["id"], audience=hook.audience(merchant), scope=existing
    )
    clear_log(dintero_emulator)

    GrantOperator(
        task_id="grant", account_id=merchant, client_id="airflow-reports", scopes=requested
    ).execute({})

    assert bool(writes(dintero_emulator)) is creates


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        ("read:settlement", "read:settlements"),
        ("raed:settlements", "read:settlements"),
        ("admin:payouts", "admin:payout"),
    ],
)
def test_a_scope_close_to_a_known_one_is_refused_with_the_suggestion_before_any_request(
    dintero_emulator: Any, client: dict[str, Any], typo: str, suggestion: str
) -> None:
    with pytest.raises(DinteroInputError, match=f"looks like a typo of '{suggestion}'") as info:
        GrantOperator(
            task_id="grant",
            account_id=dintero_emulator.merchant_ids[0],
            client_id="airflow-reports",
            scopes=["read:reports", typo],
        ).execute({})
    assert info.value.field == "scopes"
    assert settle(dintero_emulator).requests == []


@pytest.mark.parametrize("scope", ["checkout:admin", "admin:payout", "read:payout", "write:payout"])
def test_dinteros_checkout_and_payout_scopes_are_granted(
    dintero_emulator: Any, client: dict[str, Any], scope: str
) -> None:
    grant = GrantOperator(
        task_id="grant",
        account_id=dintero_emulator.merchant_ids[0],
        client_id="airflow-reports",
        scopes=[scope],
    ).execute({})

    assert grant["scope"] == [scope]


@pytest.mark.parametrize("scope", ["read:wallets", "write:invoices", "read:accounts:settings"])
def test_an_unknown_scope_of_the_documented_shape_is_sent(
    dintero_emulator: Any, client: dict[str, Any], scope: str
) -> None:
    from airflow_provider_dintero.exceptions import DinteroApiError

    merchant = dintero_emulator.merchant_ids[0]
    try:  # the emulator knows only its catalogue and may refuse it: Dintero is the judge
        GrantOperator(
            task_id="grant", account_id=merchant, client_id="airflow-reports", scopes=[scope]
        ).execute({})
    except DinteroApiError as error:
        assert error.status == 400

    sent = [
        r.body for r in settle(dintero_emulator).requests if r.method == "POST" and "client-grants" in r.path
    ]
    assert [body["scope"] for body in sent] == [[scope]]


@pytest.mark.parametrize(
    "scope", ["settlements", "read:", "READ:settlements", "read:settlements:a:b", "read settlements"]
)
def test_a_scope_not_of_the_documented_shape_is_refused(
    dintero_emulator: Any, client: dict[str, Any], scope: str
) -> None:
    with pytest.raises(DinteroInputError, match="level:area"):
        GrantOperator(
            task_id="grant",
            account_id=dintero_emulator.merchant_ids[0],
            client_id="airflow-reports",
            scopes=[scope],
        ).execute({})

    assert settle(dintero_emulator).requests == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"account_id": ""}, "account_id"),
        ({"account_id": "T1120000X"}, "account_id"),
        ({"client_id": ""}, "client_id"),
        ({"scopes": []}, "scopes"),
        ({"scopes": ""}, "scopes"),
        ({"scopes": ["read:settlements", 7]}, "scopes"),
        ({"scopes": {"read:settlements": True}}, "scopes"),
        ({"grant_type": "implicit"}, "grant_type"),
        ({"audience": "T11200001"}, "audience"),
    ],
    ids=lambda v: "-".join(f"{k}={v[k]!r}" for k in v) if isinstance(v, dict) else v,
)
def test_bad_input_is_refused_before_any_request(
    dintero_emulator: Any, dintero_connection: str, overrides: dict[str, Any], field: str
) -> None:
    kwargs: dict[str, Any] = {
        "account_id": dintero_emulator.merchant_ids[0],
        "client_id": "airflow-reports",
        "scopes": SCOPES,
    }
    kwargs.update(overrides)

    with pytest.raises(DinteroInputError, match=rf"^{field}:"):
        GrantOperator(task_id="grant", **kwargs).execute({})
    assert settle(dintero_emulator).requests == []


def test_unknown_client_fails_without_creating_a_grant(
    dintero_emulator: Any, dintero_connection: str
) -> None:
    with pytest.raises(DinteroNotFoundError, match="no-such-client"):
        GrantOperator(
            task_id="grant",
            account_id=dintero_emulator.merchant_ids[0],
            client_id="no-such-client",
            scopes=SCOPES,
        ).execute({})
    assert writes(dintero_emulator) == []


def test_scopes_and_client_are_templated(
    run_tasks: Any, dintero_emulator: Any, client: dict[str, Any]
) -> None:
    merchant = dintero_emulator.merchant_ids[0]

    dagrun = run_tasks(
        lambda: GrantOperator(
            task_id="grant",
            account_id="{{ dag_run.conf['merchant'] }}",
            client_id="{{ dag_run.conf['client'] }}",
            scopes="{{ dag_run.conf['scopes'] }}",
        ),
        conf={"merchant": merchant, "client": client["id"], "scopes": "read:settlements, read:hooks"},
    )

    assert sorted(task_result(dagrun, "grant")["scope"]) == ["read:hooks", "read:settlements"]


def test_merchant_connection_grants_on_itself(
    dintero_emulator: Any, merchant_connection: tuple[str, str]
) -> None:
    conn_id, merchant = merchant_connection
    created = DinteroPartnerHook(conn_id).create_api_client(merchant, name="own", client_id="own-client")

    grant = GrantOperator(
        task_id="grant", account_id=merchant, client_id="own-client", scopes=SCOPES, dintero_conn_id=conn_id
    ).execute({})

    assert grant["client_id"] == created["id"]
    assert settle(dintero_emulator).count(path_regex="exchange_token") == 0
