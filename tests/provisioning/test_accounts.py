"""GetAccountOperator against the emulator."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_dintero.exceptions import DinteroAuthError, DinteroInputError, DinteroNotFoundError
from airflow_provider_dintero.operators.accounts import GetAccountOperator
from tests.provisioning.helpers import settle, task_result


def test_partner_reads_a_merchant_with_its_signup_reference(
    dintero_emulator: Any, dintero_connection: str
) -> None:
    merchant = dintero_emulator.merchant_ids[0]

    account = GetAccountOperator(task_id="account", account_id=merchant).execute({})

    assert account["account_id"] == merchant
    assert account["applicant"]["signup_reference"]
    assert settle(dintero_emulator).count("GET", rf"/v1/accounts/{merchant}/management/settings$", 200) == 1


def test_merchant_connection_reads_itself(
    dintero_emulator: Any, merchant_connection: tuple[str, str]
) -> None:
    conn_id, merchant = merchant_connection

    account = GetAccountOperator(task_id="account", account_id=merchant, dintero_conn_id=conn_id).execute({})

    assert account["account_id"] == merchant
    assert settle(dintero_emulator).count(path_regex="exchange_token") == 0


def test_merchant_connection_cannot_read_another_account(
    dintero_emulator: Any, merchant_connection: tuple[str, str]
) -> None:
    conn_id, _ = merchant_connection
    other = dintero_emulator.merchant_ids[1]

    with pytest.raises(DinteroInputError, match="account_id"):
        GetAccountOperator(task_id="account", account_id=other, dintero_conn_id=conn_id).execute({})
    assert settle(dintero_emulator).requests == []


@pytest.mark.parametrize(
    "account_id",
    ["", "   ", "T1120000", "X11200001", "t11200001", "T112000011", None, 11200001],
    ids=["empty", "blank", "short", "bad-prefix", "lowercase", "long", "none", "int"],
)
def test_bad_account_id_is_refused_before_any_request(
    dintero_emulator: Any, dintero_connection: str, account_id: Any
) -> None:
    with pytest.raises(DinteroInputError, match=r"^account_id"):
        GetAccountOperator(task_id="account", account_id=account_id).execute({})
    assert settle(dintero_emulator).requests == []


@pytest.mark.parametrize(
    ("merchant", "error", "status"),
    [("T11299999", DinteroNotFoundError, 404), ("foreign", DinteroAuthError, 403)],
    ids=["unknown-merchant", "other-partners-merchant"],
)
def test_unreachable_merchant_fails_with_dinteros_status(
    dintero_emulator: Any, dintero_connection: str, merchant: str, error: type[Exception], status: int
) -> None:
    account_id = dintero_emulator.foreign_merchant_id if merchant == "foreign" else merchant

    with pytest.raises(error, match=account_id) as info:
        GetAccountOperator(task_id="account", account_id=account_id).execute({})
    assert getattr(info.value, "status", None) == status


def test_account_id_is_templated(run_tasks: Any, dintero_emulator: Any, dintero_connection: str) -> None:
    dagrun = run_tasks(
        lambda: GetAccountOperator(task_id="account", account_id="{{ dag_run.conf['merchant'] }}"),
        conf={"merchant": dintero_emulator.merchant_ids[1]},
    )

    assert task_result(dagrun, "account")["account_id"] == dintero_emulator.merchant_ids[1]
