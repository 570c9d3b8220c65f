"""CreateApiClientOperator: creation, secret storage (Variable, Secrets Manager), idempotency, recovery."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_dintero.exceptions import DinteroInputError
from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from airflow_provider_dintero.operators.api_clients import CreateApiClientOperator, GrantOperator
from tests.provisioning.helpers import (
    clear_log,
    delete_variable,
    read_variable,
    rendered_fields,
    settle,
    task_result,
    task_state,
    writes,
)


def _sm_secret(secretsmanager: Any, name: str) -> dict[str, Any]:
    return json.loads(secretsmanager.get_secret_value(SecretId=name)["SecretString"])


def _sm_operator(merchant: str, secret_name: str, **kwargs: Any) -> CreateApiClientOperator:
    return CreateApiClientOperator(
        task_id="api_client",
        account_id=merchant,
        name=kwargs.pop("name", "airflow-reports"),
        secret_destination="secrets_manager",
        secrets_manager_secret_name=secret_name,
        **kwargs,
    )


def _token_status(emulator: Any, merchant: str, login: str, secret: str) -> int:
    import requests

    response = requests.post(
        f"{emulator.base_url}/v1/accounts/{merchant}/auth/token",
        auth=(login, secret),
        json={"grant_type": "client_credentials", "audience": f"{emulator.base_url}/v1/accounts/{merchant}"},
        timeout=10,
    )
    return response.status_code


# ------------------------------------------------------------------ Variable destination


def test_secret_goes_to_the_variable_and_nowhere_else(
    run_tasks: Any, dintero_emulator: Any, dintero_connection: str, caplog: Any, capsys: Any
) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    key = f"dintero_client_secret_{merchant}_airflow_reports"  # the default key, made Variable-safe
    delete_variable(key)
    dagrun = run_tasks(
        lambda: CreateApiClientOperator(task_id="api_client", account_id=merchant, name="airflow reports")
    )

    result = task_result(dagrun, "api_client")
    secret = read_variable(key)
    assert secret, "the Variable should hold the client secret"
    assert result["created"] is True
    assert result["secret_stored_in"] == f"variable:{key}"
    assert "client_secret" not in result["client"]
    captured = capsys.readouterr()
    for place, text in {
        "caplog": caplog.text,
        "stdout": captured.out,
        "stderr": captured.err,
        "xcom": json.dumps(result),
        "rendered fields": rendered_fields(dagrun, "api_client"),
    }.items():
        assert secret not in text, f"the client secret leaked into {place}"
    # The stored secret is the client's real one: Dintero knows the client but it has no grant yet.
    assert _token_status(dintero_emulator, merchant, result["client"]["client_id"], secret) == 403
    assert _token_status(dintero_emulator, merchant, result["client"]["client_id"], secret + "x") == 401


def test_second_run_creates_and_rotates_nothing(
    run_tasks: Any, dintero_emulator: Any, dintero_connection: str, variable_key: str
) -> None:
    merchant = dintero_emulator.merchant_ids[0]

    def factory() -> None:
        CreateApiClientOperator(
            task_id="api_client",
            account_id=merchant,
            name="airflow-reports",
            secret_variable_key=variable_key,
        )

    first = run_tasks(factory)
    secret = read_variable(variable_key)
    clear_log(dintero_emulator)
    second = run_tasks(factory)

    assert writes(dintero_emulator) == []
    assert task_result(second, "api_client")["created"] is False
    assert (
        task_result(second, "api_client")["client"]["id"] == task_result(first, "api_client")["client"]["id"]
    )
    assert secret and read_variable(variable_key) == secret


# ------------------------------------------------------------------ Secrets Manager destination


def test_secrets_manager_holds_a_connection_the_backend_reads_and_the_client_works(
    dintero_emulator: Any,
    dintero_connection: str,
    aws_connection: str,
    s3_server: str,
    secretsmanager: Any,
    secret_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.providers.amazon.aws.secrets.secrets_manager import SecretsManagerBackend

    merchant = dintero_emulator.merchant_ids[0]
    result = _sm_operator(merchant, secret_name, client_id="airflow-sm").execute({})
    conn_id = secret_name.rsplit("/", 1)[1]

    stored = _sm_secret(secretsmanager, secret_name)
    assert stored["conn_type"] == "dintero"
    assert stored["login"] == "airflow-sm" == result["client"]["client_id"]
    assert stored["host"] == dintero_emulator.base_url
    assert stored["extra"]["account_id"] == merchant
    assert stored["password"] not in json.dumps(result)
    assert result["connection_id"] == conn_id
    backend = SecretsManagerBackend(endpoint_url=s3_server, region_name="us-east-1")
    conn = backend.get_connection(conn_id)
    assert conn is not None
    assert (conn.conn_type, conn.login, conn.password) == ("dintero", "airflow-sm", stored["password"])
    assert conn.extra_dejson["account_id"] == merchant

    GrantOperator(
        task_id="grant", account_id=merchant, client_id="airflow-sm", scopes=["read:settlements"]
    ).execute({})
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(stored))
    new_client = DinteroPartnerHook(dintero_conn_id=conn_id)
    assert new_client.get_token() and list(new_client.list_settlements(limit=10)) is not None
    assert settle(dintero_emulator).count("POST", rf"/v1/accounts/{merchant}/auth/token$", 200) >= 2


def test_existing_client_without_stored_secret_fails_with_recovery_hint(
    dintero_emulator: Any, dintero_connection: str, aws_connection: str, secret_name: str
) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    DinteroPartnerHook().create_api_client(merchant, name="airflow-reports")
    clear_log(dintero_emulator)

    with pytest.raises(AirflowException, match="rotate_if_secret_missing=True") as info:
        _sm_operator(merchant, secret_name).execute({})
    assert "already exists" in str(info.value)
    assert writes(dintero_emulator) == []


def test_rotate_if_secret_missing_rotates_and_stores_the_new_secret(
    dintero_emulator: Any, dintero_connection: str, aws_connection: str, secretsmanager: Any, secret_name: str
) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    created = DinteroPartnerHook().create_api_client(merchant, name="airflow-reports", client_id="airflow-r")
    old_secret = created["client_secret"]
    clear_log(dintero_emulator)

    result = _sm_operator(merchant, secret_name, rotate_if_secret_missing=True).execute({})

    new_secret = _sm_secret(secretsmanager, secret_name)["password"]
    assert result["rotated"] is True and result["created"] is False
    assert writes(dintero_emulator) == [
        ("POST", f"/v1/accounts/{merchant}/auth/clients/{created['id']}/rotate-secret")
    ]
    assert new_secret != old_secret
    assert _token_status(dintero_emulator, merchant, "airflow-r", old_secret) == 401
    assert _token_status(dintero_emulator, merchant, "airflow-r", new_secret) == 403  # valid, no grant yet


def test_secrets_manager_unreachable_fails_before_creating_anything(
    dintero_emulator: Any, dintero_connection: str, secret_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {
            "endpoint_url": "http://127.0.0.1:9",
            "region_name": "us-east-1",
            "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1},
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(closed))
    merchant = dintero_emulator.merchant_ids[0]

    with pytest.raises(AirflowException, match="Nothing was created on Dintero"):
        _sm_operator(merchant, secret_name).execute({})
    assert writes(dintero_emulator) == []


def test_storing_failure_after_create_names_the_client_and_how_to_rotate(
    dintero_emulator: Any,
    dintero_connection: str,
    aws_connection: str,
    secretsmanager: Any,
    secret_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reading Secrets Manager is allowed, writing is denied (an IAM policy without PutSecretValue)."""
    from airflow.providers.amazon.aws.hooks.secrets_manager import SecretsManagerHook
    from botocore.exceptions import ClientError

    def deny(**_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "not authorized to write secrets"}},
            "PutSecretValue",
        )

    original = SecretsManagerHook.get_conn

    def get_conn_denying_writes(self: Any) -> Any:
        client = original(self)
        for operation in ("PutSecretValue", "CreateSecret"):
            client.meta.events.register(f"before-call.secrets-manager.{operation}", deny)
        return client

    monkeypatch.setattr(SecretsManagerHook, "get_conn", get_conn_denying_writes)
    merchant = dintero_emulator.merchant_ids[0]

    with pytest.raises(AirflowException) as info:
        _sm_operator(merchant, secret_name, client_id="airflow-orphan").execute({})

    message = str(info.value)
    client = next(
        c for c in DinteroPartnerHook().list_api_clients(merchant) if c["client_id"] == "airflow-orphan"
    )
    for expected in ("airflow-orphan", client["id"], "could NOT be stored", "AccessDeniedException"):
        assert expected in message
    assert "rotate_if_secret_missing=True" in message and f"{client['id']}/rotate-secret" in message

    # The instructions work: once writes are allowed, the opt-in rotates and stores a working secret.
    monkeypatch.setattr(SecretsManagerHook, "get_conn", original)
    result = _sm_operator(
        merchant, secret_name, client_id="airflow-orphan", rotate_if_secret_missing=True
    ).execute({})
    assert result["rotated"] is True
    stored = _sm_secret(secretsmanager, secret_name)
    assert _token_status(dintero_emulator, merchant, "airflow-orphan", stored["password"]) == 403


# ------------------------------------------------------------------ matching and if_exists


def test_matches_on_client_id_before_name(
    dintero_emulator: Any, dintero_connection: str, aws_connection: str, secretsmanager: Any, secret_name: str
) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    _sm_operator(merchant, secret_name, name="first name", client_id="airflow-x").execute({})
    clear_log(dintero_emulator)

    result = _sm_operator(merchant, secret_name, name="renamed", client_id="airflow-x").execute({})

    assert result["created"] is False and result["client"]["name"] == "first name"
    assert writes(dintero_emulator) == []


def test_if_exists_fail_refuses_an_existing_client(dintero_emulator: Any, dintero_connection: str) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    DinteroPartnerHook().create_api_client(merchant, name="airflow-reports")
    clear_log(dintero_emulator)

    with pytest.raises(AirflowException, match=r"already exists.*if_exists='fail'"):
        CreateApiClientOperator(
            task_id="api_client", account_id=merchant, name="airflow-reports", if_exists="fail"
        ).execute({})
    assert writes(dintero_emulator) == []


def test_merchant_connection_creates_a_client_on_itself(
    dintero_emulator: Any,
    merchant_connection: tuple[str, str],
    aws_connection: str,
    secretsmanager: Any,
    secret_name: str,
) -> None:
    conn_id, merchant = merchant_connection

    result = _sm_operator(merchant, secret_name, dintero_conn_id=conn_id).execute({})

    assert result["created"] is True
    assert settle(dintero_emulator).count("POST", rf"/v1/accounts/{merchant}/auth/clients$", 200) == 1
    assert settle(dintero_emulator).count(path_regex="exchange_token") == 0
    assert _sm_secret(secretsmanager, secret_name)["extra"]["account_id"] == merchant


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"account_id": ""}, "account_id"),
        ({"account_id": "11200001"}, "account_id"),
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"client_id": "  "}, "client_id"),
        ({"description": 5}, "description"),
        ({"callbacks": "https://example.com/cb"}, "callbacks"),
        ({"secret_destination": "s3"}, "secret_destination"),
        ({"secret_variable_key": "has spaces"}, "secret_variable_key"),
        (
            {"secret_destination": "secrets_manager", "secrets_manager_secret_name": "a b"},
            "secrets_manager_secret_name",
        ),
        ({"if_exists": "replace"}, "if_exists"),
        ({"rotate_if_secret_missing": "yes"}, "rotate_if_secret_missing"),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, dict) else v,
)
def test_bad_input_is_refused_before_any_request(
    dintero_emulator: Any, dintero_connection: str, overrides: dict[str, Any], field: str
) -> None:
    kwargs: dict[str, Any] = {"account_id": dintero_emulator.merchant_ids[0], "name": "airflow-reports"}
    kwargs.update(overrides)

    with pytest.raises(DinteroInputError, match=rf"^{field}:"):
        CreateApiClientOperator(task_id="api_client", **kwargs).execute({})
    assert settle(dintero_emulator).requests == []


def test_missing_variable_secret_fails_the_task_in_a_dag_run(
    run_tasks: Any,
    dintero_emulator: Any,
    dintero_connection: str,
    caplog: Any,
    capsys: Any,
    variable_key: str,
) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    DinteroPartnerHook().create_api_client(merchant, name="airflow-reports")

    dagrun = run_tasks(
        lambda: CreateApiClientOperator(
            task_id="api_client",
            account_id=merchant,
            name="airflow-reports",
            secret_variable_key=variable_key,
        )
    )

    assert task_state(dagrun, "api_client") == "failed"
    captured = capsys.readouterr()
    assert "rotate_if_secret_missing=True" in caplog.text + captured.out + captured.err


# ------------------------------------------------------------------ one secret per client


def test_default_secret_names_identify_the_client_so_two_clients_keep_their_secrets(
    dintero_emulator: Any, dintero_connection: str, aws_connection: str, secretsmanager: Any
) -> None:
    merchant = dintero_emulator.merchant_ids[1]
    logins = [f"airflow-{uuid.uuid4().hex[:8]}", f"airflow-{uuid.uuid4().hex[:8]}"]

    results = [
        CreateApiClientOperator(
            task_id="api_client",
            account_id=merchant,
            name=login,
            client_id=login,
            secret_destination="secrets_manager",
        ).execute({})
        for login in logins
    ]

    for login, result in zip(logins, results, strict=True):
        assert result["created"] is True
        assert result["connection_id"] == f"dintero_{merchant}_{login}"
        stored = _sm_secret(secretsmanager, f"airflow/connections/dintero_{merchant}_{login}")
        assert (stored["login"], stored["extra"]["account_id"]) == (login, merchant)
        assert _token_status(dintero_emulator, merchant, login, stored["password"]) == 403  # its own, valid


@pytest.mark.parametrize("second_exists", [False, True], ids=["create", "rotate"])
def test_a_secrets_manager_secret_of_another_client_is_never_overwritten(
    dintero_emulator: Any,
    dintero_connection: str,
    aws_connection: str,
    secretsmanager: Any,
    secret_name: str,
    second_exists: bool,
) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    _sm_operator(merchant, secret_name, name="first", client_id="airflow-first").execute({})
    before = _sm_secret(secretsmanager, secret_name)
    if second_exists:  # its secret is not stored anywhere: the rotation must not land on the first's
        DinteroPartnerHook().create_api_client(merchant, name="second", client_id="airflow-second")
    clear_log(dintero_emulator)

    with pytest.raises(AirflowException, match=r"API client airflow-first.*Nothing was created") as info:
        _sm_operator(
            merchant, secret_name, name="second", client_id="airflow-second", rotate_if_secret_missing=True
        ).execute({})

    assert before["password"] not in str(info.value)
    assert writes(dintero_emulator) == []
    assert _sm_secret(secretsmanager, secret_name) == before


def test_a_secret_that_is_not_a_dintero_connection_is_never_overwritten(
    dintero_emulator: Any, dintero_connection: str, aws_connection: str, secretsmanager: Any, secret_name: str
) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    secretsmanager.create_secret(Name=secret_name, SecretString="postgres://someone:else@db/prod")

    with pytest.raises(AirflowException, match="not a Dintero connection"):
        _sm_operator(merchant, secret_name, client_id="airflow-new").execute({})

    assert writes(dintero_emulator) == []
    value = secretsmanager.get_secret_value(SecretId=secret_name)["SecretString"]
    assert value == "postgres://someone:else@db/prod"


def test_a_variable_holding_another_clients_secret_is_never_overwritten(
    run_tasks: Any, dintero_emulator: Any, dintero_connection: str, variable_key: str
) -> None:
    merchant = dintero_emulator.merchant_ids[0]

    def client(login: str) -> Any:
        return lambda: CreateApiClientOperator(
            task_id="api_client",
            account_id=merchant,
            name=login,
            client_id=login,
            secret_variable_key=variable_key,
        )

    first = run_tasks(client("airflow-var-first"))
    secret = read_variable(variable_key)
    clear_log(dintero_emulator)

    second = run_tasks(client("airflow-var-second"))

    assert task_state(first, "api_client") == "success" and secret
    assert task_state(second, "api_client") == "failed"
    assert writes(dintero_emulator) == []
    assert read_variable(variable_key) == secret
