"""
Where :class:`~airflow_provider_dintero.operators.api_clients.CreateApiClientOperator` keeps the
secret of an API client it creates or rotates: one :class:`SecretStore` per kind of destination,
chosen by :func:`secret_store` from the operator's parameters.

Each store keeps the same promises: it never overwrites another client's secret
(:meth:`SecretStore.conflict`), it tells whether it already holds the client's secret
(:meth:`SecretStore.holds_secret_of`, for idempotent re-runs), and every secret it reads or
writes is masked and never appears in its logs or error messages. boto3 and the amazon provider
are imported only when a Secrets Manager store is used.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_dintero.auth import variable_api
from airflow_provider_dintero.redaction import mask_secret
from airflow_provider_dintero.validation import (
    validate_choice,
    validate_secrets_manager_name,
    validate_variable_key,
)

SecretDestination = Literal["variable", "secrets_manager"]

#: The values of the operator's ``secret_destination``, one per store class below.
SECRET_DESTINATIONS: tuple[SecretDestination, ...] = ("variable", "secrets_manager")

#: Where Airflow's ``SecretsManagerBackend`` looks for connections by default.
SECRETS_MANAGER_CONNECTIONS_PREFIX = "airflow/connections"

_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.\-]+")


@dataclass(frozen=True)
class ClientSecret:
    """
    The secret of one API client, with whose it is (``repr`` never shows the secret).

    :param secret: the client secret (masked by the caller).
    :param client_id: the client's login name.
    :param client_uuid: the client's ``id``.
    """

    secret: str = field(repr=False)
    client_id: str | None
    client_uuid: str | None


class DinteroUrls(Protocol):
    """Where a Dintero connection points (the hook has both): what a stored connection copies."""

    @property
    def base_url(self) -> str:
        """The Dintero API base URL."""

    @property
    def checkout_base_url(self) -> str:
        """The Dintero Checkout base URL."""


class SecretStore(ABC):
    """
    One destination for an API client's secret.

    :param name: the Variable key or secret name.
    :param account_id: the account whose client's secret is kept there.
    """

    #: The destination kind, as the operator's ``secret_destination`` names it.
    kind: SecretDestination

    def __init__(self, name: str, account_id: str) -> None:
        self.name = name
        self.account_id = account_id

    def describe(self) -> str:
        """``<kind>:<name>`` of the destination, for logs and the task's return value."""
        return f"{self.kind}:{self.name}"

    @property
    def connection_id(self) -> str | None:
        """The Airflow connection id the stored secret is readable as (``None``: not a connection)."""
        return None

    def check_reachable(self) -> None:
        """Fail before anything is created when the destination cannot be read (default: no check)."""
        return None

    @abstractmethod
    def holds_secret_of(self, client_id: str | None) -> bool:
        """
        Whether the destination already holds the secret of API client ``client_id``.

        :param client_id: the client's login name.
        """

    @abstractmethod
    def conflict(self, client_id: str | None) -> str | None:
        """
        Why writing the secret of API client ``client_id`` here would overwrite another client's
        secret (``None`` when it would not).

        :param client_id: the client's login name (``None``: not known yet, Dintero generates it).
        """

    def store(self, secret: ClientSecret) -> None:
        """
        Write ``secret`` to the destination, refusing (checked again right before writing) to
        overwrite another client's secret.

        :param secret: the client's secret and what the destination records with it.
        """
        reason = self.conflict(secret.client_id)
        if reason:
            raise AirflowException(
                f"Refusing to write the secret of Dintero API client {secret.client_id or '(new)'} to "
                f"{self.describe()}: {reason}"
            )
        self._write(secret)

    @abstractmethod
    def _write(self, secret: ClientSecret) -> None:
        """Write ``secret`` (no conflict checked here)."""


class VariableStore(SecretStore):
    """An Airflow Variable holding the bare secret (Airflow encrypts Variables with its Fernet key)."""

    kind: SecretDestination = "variable"

    def _value(self) -> str | None:
        value: str | None = variable_api().get(self.name, None)
        mask_secret(value)
        return value

    def holds_secret_of(self, client_id: str | None) -> bool:
        """
        Whether the Variable holds a secret (a bare secret does not say whose it is).

        :param client_id: the client's login name (not checked: a Variable cannot tell).
        """
        return bool(self._value())

    def conflict(self, client_id: str | None) -> str | None:
        """
        A filled Variable is never overwritten: whose secret it holds cannot be told (a client
        whose secret is there reuses it and never writes).

        :param client_id: the client's login name.
        """
        if self._value():
            return (
                "the Variable already holds a secret, of another API client or of one that was deleted. "
                "Choose another secret_variable_key, or delete the Variable if that secret is no longer used"
            )
        return None

    def _write(self, secret: ClientSecret) -> None:
        variable_api().set(
            self.name,
            secret.secret,
            description=(
                f"Secret of Dintero API client {secret.client_id} "
                f"(id {secret.client_uuid}) on account {self.account_id}"
            ),
        )


@dataclass(frozen=True)
class _StoredConnection:
    """What a Secrets Manager secret holds, as far as it reads as a Dintero connection."""

    exists: bool
    login: str | None = None
    account_id: str | None = None
    has_password: bool = False


class SecretsManagerStore(SecretStore):
    """
    An AWS Secrets Manager secret holding the client as an Airflow connection, in the JSON form
    Airflow's ``SecretsManagerBackend`` reads (``conn_type``, ``login``, ``password``, ``host``,
    ``extra``).

    :param name: the secret's name.
    :param account_id: the account whose client's secret is kept there.
    :param aws_conn_id: the AWS connection used for Secrets Manager.
    :param base_url: the Dintero API base URL the stored connection points to.
    :param checkout_base_url: the Dintero Checkout base URL the stored connection points to.
    """

    kind: SecretDestination = "secrets_manager"

    def __init__(
        self, name: str, account_id: str, *, aws_conn_id: str | None, base_url: str, checkout_base_url: str
    ) -> None:
        super().__init__(name, account_id)
        self.aws_conn_id = aws_conn_id
        self.base_url = base_url
        self.checkout_base_url = checkout_base_url

    @property
    def connection_id(self) -> str | None:
        """The connection id under ``SecretsManagerBackend``'s default prefix, else ``None``."""
        prefix = f"{SECRETS_MANAGER_CONNECTIONS_PREFIX}/"
        return self.name[len(prefix) :] if self.name.startswith(prefix) else None

    def _client(self) -> Any:
        from airflow.providers.amazon.aws.hooks.secrets_manager import SecretsManagerHook

        return SecretsManagerHook(aws_conn_id=self.aws_conn_id).get_conn()

    def _read(self) -> str | None:
        client = self._client()
        try:
            answer = client.get_secret_value(SecretId=self.name)
        except client.exceptions.ResourceNotFoundException:
            return None
        value: str | None = answer.get("SecretString")
        mask_secret(value)
        return value

    def check_reachable(self) -> None:
        """Read the secret once; fail naming the secret and the AWS connection when that fails."""
        try:
            self._read()
        except Exception as exc:
            raise AirflowException(
                f"Cannot read AWS Secrets Manager secret {self.name} (aws_conn_id={self.aws_conn_id}): "
                f"{type(exc).__name__}: {exc}. Nothing was created on Dintero; fix the AWS connection "
                "and re-run."
            ) from None

    def _stored(self) -> _StoredConnection:
        raw = self._read()
        if not raw:
            return _StoredConnection(exists=False)
        try:
            stored = json.loads(raw)
        except ValueError:
            return _StoredConnection(exists=True)
        if not isinstance(stored, dict):
            return _StoredConnection(exists=True)
        extra = stored.get("extra")
        if isinstance(extra, str):
            try:
                extra = json.loads(extra)
            except ValueError:
                extra = None
        account = extra.get("account_id") if isinstance(extra, dict) else None
        login = stored.get("login")
        password = stored.get("password")
        mask_secret(password if isinstance(password, str) else None)
        return _StoredConnection(
            exists=True,
            login=login if isinstance(login, str) else None,
            account_id=account if isinstance(account, str) else None,
            has_password=bool(password),
        )

    def holds_secret_of(self, client_id: str | None) -> bool:
        """
        Whether the secret is this client's connection on this account, with a password.

        :param client_id: the client's login name.
        """
        stored = self._stored()
        return (
            stored.exists
            and stored.has_password
            and stored.login == client_id
            and stored.account_id == self.account_id
        )

    def conflict(self, client_id: str | None) -> str | None:
        """
        Refuse a secret that is not a Dintero connection, or is another client's.

        :param client_id: the client's login name (``None``: not known yet).
        """
        stored = self._stored()
        if not stored.exists:
            return None
        if stored.login is None:
            return (
                "the secret already exists and is not a Dintero connection written by this operator. "
                "Choose another secrets_manager_secret_name"
            )
        if client_id is None or stored.login != client_id or stored.account_id != self.account_id:
            return (
                f"it holds the connection of API client {stored.login} on account {stored.account_id}. "
                "Choose another secrets_manager_secret_name (the default one names the client), or delete "
                "that secret if the client is gone"
            )
        return None

    def connection_json(self, secret: ClientSecret) -> str:
        """
        The client as a ``dintero`` connection, in the JSON form ``SecretsManagerBackend`` reads.

        :param secret: the client's secret.
        """
        return json.dumps(
            {
                "conn_type": "dintero",
                "login": secret.client_id,
                "password": secret.secret,
                "host": self.base_url,
                "extra": {"account_id": self.account_id, "checkout_base_url": self.checkout_base_url},
            }
        )

    def _write(self, secret: ClientSecret) -> None:
        aws = self._client()
        payload = self.connection_json(secret)
        try:
            aws.put_secret_value(SecretId=self.name, SecretString=payload)
        except aws.exceptions.ResourceNotFoundException:
            aws.create_secret(
                Name=self.name,
                SecretString=payload,
                Description=f"Airflow connection for Dintero account {self.account_id}",
            )


def _safe_name(value: str) -> str:
    """A client's ``client_id`` or name as a Variable key or Secrets Manager name part."""
    return _UNSAFE_KEY_CHARS.sub("_", value)


def secret_store(
    destination: Any,
    *,
    account_id: str,
    client_ref: str,
    variable_key: Any = None,
    secret_name: Any = None,
    aws_conn_id: str | None = None,
    dintero: DinteroUrls,
) -> SecretStore:
    """
    The store the operator's parameters choose, its name checked (or defaulted) before any request.

    :param destination: ``"variable"`` or ``"secrets_manager"`` (the ``secret_destination`` parameter).
    :param account_id: the (checked) account that gets the client.
    :param client_ref: the client's ``client_id``, else its name: part of the default names, so two
        clients never share a default destination.
    :param variable_key: the Variable key (``secret_variable_key``; default
        ``dintero_client_secret_<account_id>_<client_ref>``).
    :param secret_name: the secret's name (``secrets_manager_secret_name``; default
        ``airflow/connections/dintero_<account_id>_<client_ref>``).
    :param aws_conn_id: the AWS connection used for Secrets Manager.
    :param dintero: where the stored connection points (the operator's hook); read only for
        Secrets Manager, before anything is created.
    """
    kind = validate_choice(destination, "secret_destination", SECRET_DESTINATIONS)
    if kind == "variable":
        if variable_key is None:
            variable_key = f"dintero_client_secret_{account_id}_{_safe_name(client_ref)}"[:250]
        return VariableStore(validate_variable_key(variable_key, "secret_variable_key"), account_id)
    if secret_name is None:
        secret_name = f"{SECRETS_MANAGER_CONNECTIONS_PREFIX}/dintero_{account_id}_{_safe_name(client_ref)}"
    name = validate_secrets_manager_name(secret_name, "secrets_manager_secret_name")
    return SecretsManagerStore(
        name,
        account_id,
        aws_conn_id=aws_conn_id,
        base_url=dintero.base_url,
        checkout_base_url=dintero.checkout_base_url,
    )
