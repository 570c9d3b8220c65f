"""
The secret stores behind CreateApiClientOperator, each kind against the real thing: Airflow
Variables in the metadata DB and AWS Secrets Manager on moto's server.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_dintero.exceptions import DinteroInputError
from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from airflow_provider_dintero.secret_stores import (
    SECRET_DESTINATIONS,
    ClientSecret,
    SecretStore,
    secret_store,
)
from tests.provisioning.helpers import read_variable

ACCOUNT = "T11200001"
KINDS = list(SECRET_DESTINATIONS)


def _secret(client_id: str = "airflow-a") -> ClientSecret:
    return ClientSecret(secret=f"s3cr3t-{secrets.token_hex(12)}", client_id=client_id, client_uuid="uuid-a")


@pytest.fixture
def make_store(
    airflow_db: None,
    dintero_connection: str,
    aws_connection: str,
    variable_key: str,
    secret_name: str,
) -> Callable[[str], SecretStore]:
    """Build a store of a kind, on a fresh Variable key or secret name, as the operator does."""

    def _make(kind: str) -> SecretStore:
        return secret_store(
            kind,
            account_id=ACCOUNT,
            client_ref="airflow-a",
            variable_key=variable_key,
            secret_name=secret_name,
            aws_conn_id=aws_connection,
            dintero=DinteroPartnerHook(dintero_conn_id=dintero_connection),
        )

    return _make


def _raw(store: SecretStore, secretsmanager: Any) -> str | None:
    """What the destination holds, read without the store."""
    if store.kind == "variable":
        return read_variable(store.name)
    try:
        return str(secretsmanager.get_secret_value(SecretId=store.name)["SecretString"])
    except secretsmanager.exceptions.ResourceNotFoundException:
        return None


def _put_raw(store: SecretStore, secretsmanager: Any, value: str) -> None:
    """Fill the destination without the store (someone else's secret)."""
    if store.kind == "variable":
        from airflow.models import Variable

        Variable.set(store.name, value)
    else:
        secretsmanager.create_secret(Name=store.name, SecretString=value)


# ------------------------------------------------------------------ the interface, per kind


@pytest.mark.parametrize("kind", KINDS)
def test_an_empty_destination_holds_nothing_and_takes_any_client(
    make_store: Callable[[str], SecretStore], kind: str
) -> None:
    store = make_store(kind)

    store.check_reachable()
    assert store.holds_secret_of("airflow-a") is False
    assert store.conflict("airflow-a") is None
    assert store.conflict(None) is None


@pytest.mark.parametrize("kind", KINDS)
def test_a_stored_secret_is_held_for_its_client(
    make_store: Callable[[str], SecretStore], secretsmanager: Any, kind: str
) -> None:
    store = make_store(kind)
    secret = _secret()

    store.store(secret)

    assert store.holds_secret_of("airflow-a") is True
    assert secret.secret in str(_raw(store, secretsmanager))


@pytest.mark.parametrize("kind", KINDS)
def test_another_clients_secret_is_never_overwritten(
    make_store: Callable[[str], SecretStore], secretsmanager: Any, kind: str
) -> None:
    store = make_store(kind)
    first, second = _secret("airflow-a"), _secret("airflow-b")
    store.store(first)
    before = _raw(store, secretsmanager)

    with pytest.raises(
        AirflowException, match=rf"^Refusing to write .* airflow-b to {re.escape(store.describe())}:"
    ) as info:
        store.store(second)

    assert store.conflict("airflow-b")
    assert _raw(store, secretsmanager) == before
    for secret in (first.secret, second.secret):
        assert secret not in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_a_value_someone_else_put_there_is_never_overwritten(
    make_store: Callable[[str], SecretStore], secretsmanager: Any, kind: str
) -> None:
    store = make_store(kind)
    _put_raw(store, secretsmanager, "postgres://someone:else@db/prod")

    assert store.conflict("airflow-a")
    with pytest.raises(AirflowException, match=r"^Refusing to write"):
        store.store(_secret())
    assert _raw(store, secretsmanager) == "postgres://someone:else@db/prod"


@pytest.mark.parametrize(("kind", "held"), [("variable", True), ("secrets_manager", False)])
def test_only_a_connection_tells_whose_secret_it_holds(
    make_store: Callable[[str], SecretStore], kind: str, held: bool
) -> None:
    """A Variable holds a bare secret: any filled Variable counts as holding the client's."""
    store = make_store(kind)
    store.store(_secret("airflow-a"))

    assert store.holds_secret_of("airflow-b") is held


@pytest.mark.parametrize("kind", KINDS)
def test_a_secret_read_from_the_destination_is_masked(
    make_store: Callable[[str], SecretStore], secretsmanager: Any, kind: str
) -> None:
    from airflow.providers.common.compat.sdk import redact

    store = make_store(kind)
    secret = f"s3cr3t-{secrets.token_hex(12)}"
    connection = {"conn_type": "dintero", "login": "airflow-a", "password": secret, "extra": {}}
    _put_raw(store, secretsmanager, secret if kind == "variable" else json.dumps(connection))

    store.holds_secret_of("airflow-a")

    assert secret not in str(redact(f"the secret is {secret}"))


# ------------------------------------------------------------------ Secrets Manager specifics


def test_secrets_manager_holds_a_connection_airflows_backend_reads(
    make_store: Callable[[str], SecretStore], s3_server: str, dintero_emulator: Any
) -> None:
    from airflow.providers.amazon.aws.secrets.secrets_manager import SecretsManagerBackend

    store = make_store("secrets_manager")
    secret = _secret()
    store.store(secret)

    conn_id = store.connection_id
    assert conn_id and store.name == f"airflow/connections/{conn_id}"
    conn = SecretsManagerBackend(endpoint_url=s3_server, region_name="us-east-1").get_connection(conn_id)
    assert conn is not None
    assert (conn.conn_type, conn.login, conn.password, conn.host) == (
        "dintero",
        "airflow-a",
        secret.secret,
        dintero_emulator.base_url,
    )
    assert conn.extra_dejson["account_id"] == ACCOUNT


def test_secrets_manager_unreachable_is_refused_before_anything_is_written(
    make_store: Callable[[str], SecretStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = {
        "conn_type": "aws",
        "extra": {
            "endpoint_url": "http://127.0.0.1:9",
            "region_name": "us-east-1",
            "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1},
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(closed))
    store = make_store("secrets_manager")

    with pytest.raises(
        AirflowException, match=rf"^Cannot read AWS Secrets Manager secret {re.escape(store.name)} "
    ):
        store.check_reachable()


# ------------------------------------------------------------------ choosing a store


@pytest.mark.parametrize(
    ("kind", "client_ref", "described", "connection_id"),
    [
        ("variable", "airflow reports", f"variable:dintero_client_secret_{ACCOUNT}_airflow_reports", None),
        (
            "secrets_manager",
            "airflow/reports",
            f"secrets_manager:airflow/connections/dintero_{ACCOUNT}_airflow_reports",
            f"dintero_{ACCOUNT}_airflow_reports",
        ),
    ],
)
def test_default_names_identify_the_account_and_the_client(
    dintero_connection: str, kind: str, client_ref: str, described: str, connection_id: str | None
) -> None:
    store = secret_store(
        kind,
        account_id=ACCOUNT,
        client_ref=client_ref,
        dintero=DinteroPartnerHook(dintero_conn_id=dintero_connection),
    )

    assert (store.describe(), store.connection_id) == (described, connection_id)


def test_a_secret_name_outside_the_connections_prefix_is_no_connection(dintero_connection: str) -> None:
    store = secret_store(
        "secrets_manager",
        account_id=ACCOUNT,
        client_ref="c",
        secret_name="team/dintero",
        dintero=DinteroPartnerHook(dintero_conn_id=dintero_connection),
    )

    assert store.connection_id is None


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"destination": "s3"}, "secret_destination"),
        ({"destination": None}, "secret_destination"),
        ({"variable_key": "has spaces"}, "secret_variable_key"),
        ({"variable_key": "x" * 251}, "secret_variable_key"),
        ({"destination": "secrets_manager", "secret_name": "a b"}, "secrets_manager_secret_name"),
        ({"destination": "secrets_manager", "secret_name": ""}, "secrets_manager_secret_name"),
    ],
    ids=lambda v: "-".join(map(str, v)) if isinstance(v, dict) else v,
)
def test_bad_destination_parameters_name_the_operator_parameter(
    dintero_connection: str, overrides: dict[str, Any], field: str
) -> None:
    kwargs: dict[str, Any] = {"destination": "variable", "variable_key": None, "secret_name": None}
    kwargs.update(overrides)

    with pytest.raises(DinteroInputError, match=rf"^{field}:"):
        secret_store(
            kwargs.pop("destination"),
            account_id=ACCOUNT,
            client_ref="c",
            dintero=DinteroPartnerHook(dintero_conn_id=dintero_connection),
            **kwargs,
        )


def test_the_secret_never_shows_in_its_repr() -> None:
    secret = _secret()

    assert secret.secret not in repr(secret) and secret.secret not in str(secret)


def test_importing_the_stores_and_the_operator_loads_no_aws_library() -> None:
    code = (
        "import sys; import airflow_provider_dintero.secret_stores, "
        "airflow_provider_dintero.operators.api_clients; "
        "heavy = ('boto3', 'botocore', 'airflow.providers.amazon.aws'); "
        "print('HEAVY', [m for m in heavy if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )

    assert "HEAVY []" in result.stdout
