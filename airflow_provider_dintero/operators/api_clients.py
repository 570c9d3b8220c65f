"""
Operators for Dintero API clients and their grants.

:class:`CreateApiClientOperator` creates an API client on a merchant and stores its secret
(which Dintero shows only once) in an Airflow Variable or in AWS Secrets Manager, as a ready
``dintero`` connection. :class:`GrantOperator` grants the client scopes on an audience.

Example::

    from airflow_provider_dintero.operators.api_clients import CreateApiClientOperator, GrantOperator

    client = CreateApiClientOperator(
        task_id="api_client",
        account_id="{{ params.merchant_id }}",
        name="airflow-reports",
        secret_destination="secrets_manager",
    )
    grant = GrantOperator(
        task_id="grant",
        account_id="{{ params.merchant_id }}",
        client_id="{{ ti.xcom_pull('api_client')['client']['id'] }}",
        scopes=["read:settlements", "read:reports"],
    )
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_dintero.hooks.dintero import (
    ApiClient,
    ClientGrant,
    DinteroApiError,
    DinteroInputError,
    DinteroNotFoundError,
    DinteroPartnerHook,
    mask_secret,
    variable_api,
)
from airflow_provider_dintero.operators._base import (
    DinteroBaseOperator,
    check_account_id,
    check_names,
    check_text,
    existing_after_refusal,
)
from airflow_provider_dintero.validation import validate_audience, validate_choice, validate_scopes
from airflow_provider_dintero.vocabulary import KNOWN_SCOPES

SecretDestination = Literal["variable", "secrets_manager"]
IfExists = Literal["reuse", "fail"]

#: Where Airflow's ``SecretsManagerBackend`` looks for connections by default.
SECRETS_MANAGER_CONNECTIONS_PREFIX = "airflow/connections"
GRANT_TYPES = ("any", "client_credentials", "authorization_code", "password")

_VARIABLE_KEY = re.compile(r"^[A-Za-z0-9_.\-/]{1,250}$")
_SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@\-]{1,512}$")
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.\-]+")


def _safe_name(value: str) -> str:
    """A client's ``client_id`` or name as a Variable key or Secrets Manager name part."""
    return _UNSAFE_KEY_CHARS.sub("_", value)


class _SecretStore(ABC):
    """Where a client secret goes: an Airflow Variable or an AWS Secrets Manager secret."""

    @abstractmethod
    def describe(self) -> str:
        """``<kind>:<name>`` of the destination, for logs and the task's return value."""

    def check_reachable(self) -> None:
        """Fail before anything is created when the destination cannot be read (default: no check)."""
        return None

    @abstractmethod
    def holds_secret_for(self, client: ApiClient) -> bool:
        """Whether the destination already holds a secret for ``client``."""

    @abstractmethod
    def conflict(self, client_id: str | None) -> str | None:
        """
        Why writing the secret of API client ``client_id`` here would overwrite another client's
        secret (``None`` when it would not).

        :param client_id: the client's ``client_id`` (``None``: not known yet, Dintero generates it).
        """

    @abstractmethod
    def store(self, client: ApiClient, secret: str) -> None:
        """Write ``secret`` (of ``client``) to the destination; never over another client's secret."""

    def _refuse_conflict(self, client_id: str | None) -> None:
        reason = self.conflict(client_id)
        if reason:
            raise AirflowException(
                f"Refusing to write the secret of Dintero API client {client_id or '(new)'} to "
                f"{self.describe()}: {reason}"
            )


class _VariableStore(_SecretStore):
    """An Airflow Variable holding the bare secret (Airflow encrypts Variables with its Fernet key)."""

    def __init__(self, key: str, account_id: str) -> None:
        self.key = key
        self.account_id = account_id

    def describe(self) -> str:
        return f"variable:{self.key}"

    def holds_secret_for(self, client: ApiClient) -> bool:
        value = variable_api().get(self.key, None)
        mask_secret(value)
        return bool(value)

    def conflict(self, client_id: str | None) -> str | None:
        # The Variable holds a bare secret: whose it is cannot be told, so a filled one is never
        # overwritten (a client whose secret is there reuses it and never gets here).
        if self.holds_secret_for({}):
            return (
                "the Variable already holds a secret, of another API client or of one that was deleted. "
                "Choose another secret_variable_key, or delete the Variable if that secret is no longer used"
            )
        return None

    def store(self, client: ApiClient, secret: str) -> None:
        self._refuse_conflict(client.get("client_id"))
        variable_api().set(
            self.key,
            secret,
            description=(
                f"Secret of Dintero API client {client.get('client_id')} "
                f"(id {client.get('id')}) on account {self.account_id}"
            ),
        )


class _SecretsManagerStore(_SecretStore):
    """Writes the client as an Airflow connection in the JSON form ``SecretsManagerBackend`` reads."""

    def __init__(
        self, secret_name: str, aws_conn_id: str | None, account_id: str, base_url: str, checkout_url: str
    ) -> None:
        self.secret_name = secret_name
        self.aws_conn_id = aws_conn_id
        self.account_id = account_id
        self.base_url = base_url
        self.checkout_url = checkout_url

    def describe(self) -> str:
        return f"secrets_manager:{self.secret_name}"

    def _client(self) -> Any:
        from airflow.providers.amazon.aws.hooks.secrets_manager import SecretsManagerHook

        return SecretsManagerHook(aws_conn_id=self.aws_conn_id).get_conn()

    def _read(self) -> str | None:
        client = self._client()
        try:
            answer = client.get_secret_value(SecretId=self.secret_name)
        except client.exceptions.ResourceNotFoundException:
            return None
        value = answer.get("SecretString")
        mask_secret(value)
        return value

    def check_reachable(self) -> None:
        try:
            self._read()
        except Exception as exc:
            raise AirflowException(
                f"Cannot read AWS Secrets Manager secret {self.secret_name} "
                f"(aws_conn_id={self.aws_conn_id}): "
                f"{type(exc).__name__}: {exc}. Nothing was created on Dintero; fix the AWS connection "
                "and re-run."
            ) from None

    def _stored(self) -> tuple[bool, str | None, str | None, bool]:
        """``(exists, login, account id, has password)`` of the stored connection, when readable."""
        raw = self._read()
        if not raw:
            return False, None, None, False
        try:
            stored = json.loads(raw)
        except ValueError:
            return True, None, None, False
        if not isinstance(stored, dict):
            return True, None, None, False
        extra = stored.get("extra")
        if isinstance(extra, str):
            try:
                extra = json.loads(extra)
            except ValueError:
                extra = None
        account = extra.get("account_id") if isinstance(extra, dict) else None
        login = stored.get("login")
        return (
            True,
            login if isinstance(login, str) else None,
            account if isinstance(account, str) else None,
            bool(stored.get("password")),
        )

    def holds_secret_for(self, client: ApiClient) -> bool:
        exists, login, account, has_password = self._stored()
        return exists and has_password and login == client.get("client_id") and account == self.account_id

    def conflict(self, client_id: str | None) -> str | None:
        exists, login, account, _ = self._stored()
        if not exists:
            return None
        if login is None:
            return (
                "the secret already exists and is not a Dintero connection written by this operator. "
                "Choose another secrets_manager_secret_name"
            )
        if client_id is None or login != client_id or account != self.account_id:
            return (
                f"it holds the connection of API client {login} on account {account}. Choose another "
                "secrets_manager_secret_name (the default one names the client), or delete that secret if "
                "the client is gone"
            )
        return None

    def connection_json(self, client: ApiClient, secret: str) -> str:
        return json.dumps(
            {
                "conn_type": "dintero",
                "login": client.get("client_id"),
                "password": secret,
                "host": self.base_url,
                "extra": {"account_id": self.account_id, "checkout_base_url": self.checkout_url},
            }
        )

    def store(self, client: ApiClient, secret: str) -> None:
        self._refuse_conflict(client.get("client_id"))
        aws = self._client()
        payload = self.connection_json(client, secret)
        try:
            aws.put_secret_value(SecretId=self.secret_name, SecretString=payload)
        except aws.exceptions.ResourceNotFoundException:
            aws.create_secret(
                Name=self.secret_name,
                SecretString=payload,
                Description=f"Airflow connection for Dintero account {self.account_id}",
            )


class CreateApiClientOperator(DinteroBaseOperator):
    """
    Create an API client on an account and store its secret where the DAG says, idempotently.

    Dintero returns a client's secret only once, in the create (or rotate) answer. The secret
    is masked at once and stored before the task returns, either

    * in an Airflow Variable (``secret_destination="variable"``; Airflow encrypts it), or
    * in AWS Secrets Manager (``secret_destination="secrets_manager"``) as a ready ``dintero``
      connection in the JSON form Airflow's ``SecretsManagerBackend`` reads
      (``conn_type``, ``login`` = client id, ``password`` = secret, ``host`` = base URL,
      ``extra`` = ``{account_id, checkout_base_url}``), so the next DAG uses it by
      connection id alone (``dintero_<merchant>_<client_id or name>`` with the default secret
      name).

    A destination never receives a second client's secret: a Secrets Manager secret holding
    another client's connection (or anything else), or a Variable that already holds a
    secret, is refused before anything is created or rotated (and checked again right before
    writing).

    The secret never reaches logs, XCom or rendered fields. A re-run lists the account's
    clients and matches on ``client_id`` (else ``name``): it creates and rotates nothing when
    the secret is already at the destination. When the client exists but its secret is not
    there, the task fails and says how to recover, unless ``rotate_if_secret_missing`` is set:
    then the secret is rotated (the old one stops working) and the new one stored.

    Dintero has no idempotency key, so two runs at the same moment may both find nothing and
    both create. After creating, the task lists again and, before storing anything, keeps
    the oldest matching client (by ``created_at``, then ``id``), a choice every run makes
    alike: the run whose client that is stores its secret; a run whose client is not deletes
    its duplicate, stores nothing and returns the kept client with
    ``secret_stored_by_concurrent_run=True`` (the other run stores the secret at the same
    destination, possibly a moment after this task ends). When ``client_id`` is given and
    Dintero refuses the create as a duplicate ``client_id`` (HTTP 400) of a client that now
    exists, the same result is returned. With ``if_exists="fail"`` such a run fails instead.

    Returns ``{"client": <client without secret>, "secret_stored_in": "variable:<key>" |
    "secrets_manager:<name>", "connection_id": <id or None>, "created": bool, "rotated": bool,
    "secret_stored_by_concurrent_run": bool}``.

    :param account_id: the account that gets the client (a merchant of the partner connection,
        or the merchant connection's own account). Templated.
    :param name: the client's name; also the match key when ``client_id`` is not given. Templated.
    :param description: the client's description. Templated.
    :param client_id: the login name of the client (Dintero generates one when omitted). Templated.
    :param callbacks: callback URLs of the client. Templated.
    :param secret_destination: ``"variable"`` or ``"secrets_manager"``.
    :param secret_variable_key: the Variable key (default
        ``dintero_client_secret_<account_id>_<client_id or name>``). Templated.
    :param secrets_manager_secret_name: the secret's name (default
        ``airflow/connections/dintero_<account_id>_<client_id or name>``, characters other than
        letters, digits and ``_ . -`` replaced by ``_``). Templated.
    :param aws_conn_id: the AWS connection used for Secrets Manager.
    :param if_exists: ``"reuse"`` (default) or ``"fail"`` when a matching client exists.
    :param rotate_if_secret_missing: rotate the secret of an existing client whose secret is
        not at the destination, and store the new one.
    :param dintero_conn_id: the Airflow connection of the partner or merchant.
    :param kwargs: passed to :class:`~airflow.models.baseoperator.BaseOperator`.

    Example::

        CreateApiClientOperator(
            task_id="api_client",
            account_id="{{ params.merchant_id }}",
            name="airflow-reports",
            secret_destination="variable",
        )
    """

    template_fields: Sequence[str] = (
        "account_id",
        "name",
        "description",
        "client_id",
        "callbacks",
        "secret_variable_key",
        "secrets_manager_secret_name",
        "dintero_conn_id",
    )

    def __init__(
        self,
        *,
        account_id: str,
        name: str,
        description: str | None = None,
        client_id: str | None = None,
        callbacks: Sequence[str] | None = None,
        secret_destination: SecretDestination = "variable",
        secret_variable_key: str | None = None,
        secrets_manager_secret_name: str | None = None,
        aws_conn_id: str | None = "aws_default",
        if_exists: IfExists = "reuse",
        rotate_if_secret_missing: bool = False,
        dintero_conn_id: str = DinteroPartnerHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(dintero_conn_id=dintero_conn_id, **kwargs)
        self.account_id = account_id
        self.name = name
        self.description = description
        self.client_id = client_id
        self.callbacks = callbacks
        self.secret_destination = secret_destination
        self.secret_variable_key = secret_variable_key
        self.secrets_manager_secret_name = secrets_manager_secret_name
        self.aws_conn_id = aws_conn_id
        self.if_exists = if_exists
        self.rotate_if_secret_missing = rotate_if_secret_missing

    # ---------------------------------------------------------------- validation

    def _check_callbacks(self) -> list[str] | None:
        if self.callbacks is None:
            return None
        if isinstance(self.callbacks, str) or not isinstance(self.callbacks, (list, tuple)):
            raise DinteroInputError("callbacks", "a list of callback URLs", self.callbacks)
        return [str(check_text(url, "callbacks")) for url in self.callbacks]

    def _store_for(self, account_id: str, login: str | None, name: str) -> _SecretStore:
        if self.secret_destination == "variable":
            key = self.secret_variable_key
            if key is None:
                key = f"dintero_client_secret_{account_id}_{_safe_name(login or name)}"[:250]
            if not isinstance(key, str) or not _VARIABLE_KEY.match(key):
                raise DinteroInputError(
                    "secret_variable_key", "a Variable key of letters, digits, _ . - / (1 to 250)", key
                )
            return _VariableStore(key, account_id)
        if self.secret_destination == "secrets_manager":
            secret_name = self.secrets_manager_secret_name
            if secret_name is None:
                # One secret per client: merchant and client, never the merchant alone.
                client_part = _safe_name(login or name)
                secret_name = f"{SECRETS_MANAGER_CONNECTIONS_PREFIX}/dintero_{account_id}_{client_part}"
            if not isinstance(secret_name, str) or not _SECRET_NAME.match(secret_name):
                raise DinteroInputError(
                    "secrets_manager_secret_name",
                    "a Secrets Manager name of letters, digits and /_+=.@- (1 to 512)",
                    secret_name,
                )
            hook = self.hook
            return _SecretsManagerStore(
                secret_name, self.aws_conn_id, account_id, hook.base_url, hook.checkout_base_url
            )
        raise DinteroInputError(
            "secret_destination", "'variable' or 'secrets_manager'", self.secret_destination
        )

    # ---------------------------------------------------------------- execution

    def execute(self, context: Any) -> dict[str, Any]:
        """
        Create (or find) the client, store its secret, and return the client without it.

        :param context: the Airflow task context.
        """
        account_id = check_account_id(self.account_id)
        name = str(check_text(self.name, "name"))
        description = check_text(self.description, "description", required=False)
        login = check_text(self.client_id, "client_id", required=False)
        callbacks = self._check_callbacks()
        if self.if_exists not in ("reuse", "fail"):
            raise DinteroInputError("if_exists", "'reuse' or 'fail'", self.if_exists)
        if not isinstance(self.rotate_if_secret_missing, bool):
            raise DinteroInputError(
                "rotate_if_secret_missing", "True or False", self.rotate_if_secret_missing
            )
        store = self._store_for(account_id, login, name)
        hook = self.hook
        hook.resolve_account_id(account_id)

        existing = self._find_existing(hook.list_api_clients(account_id), login, name)
        if existing is not None:
            return self._handle_existing(hook, account_id, existing, store)

        store.check_reachable()
        conflict = store.conflict(login)
        if conflict:
            raise AirflowException(
                f"Cannot store the secret of a new Dintero API client {login or name!r} on account "
                f"{account_id} in {store.describe()}: {conflict}. Nothing was created on Dintero."
            )
        try:
            answer = hook.create_api_client(
                account_id, name=name, description=description, client_id=login, callbacks=callbacks
            )
        except DinteroApiError as exc:
            rival = self._created_concurrently(hook, account_id, login, exc)
            if rival is None:
                raise
            return self._lost_race(rival, store, account_id, removed=None)
        client: ApiClient = dict(answer or {})  # type: ignore[assignment]
        secret = client.pop("client_secret", None)
        if not secret or not client.get("id"):
            raise DinteroApiError(
                f"Dintero created API client {name!r} on account {account_id} but its answer had no "
                f"{'id' if secret else 'client_secret'}; check the client list and rotate its secret",
                account_id=account_id,
            )
        mask_secret(secret)
        # Reconcile before storing: a run whose copy is removed must not store its dead secret.
        kept = self.reconcile_created(
            client,
            relist=lambda: hook.list_api_clients(account_id),
            matches=lambda c: c.get("client_id") == login if login else c.get("name") == name,
            delete=lambda client_uuid: hook.delete_api_client(account_id, client_uuid),
            what="API client",
            account_id=account_id,
        )
        if kept is not client:
            return self._lost_race(kept, store, account_id, removed=str(client.get("id")))
        self.log.info(
            "Created Dintero API client %s (id %s) on account %s; storing its secret in %s",
            client.get("client_id"),
            client.get("id"),
            account_id,
            store.describe(),
        )
        self._store_or_fail(store, client, secret, account_id, "created")
        return self._result(client, store, created=True, rotated=False)

    def _created_concurrently(
        self, hook: DinteroPartnerHook, account_id: str, login: str | None, error: DinteroApiError
    ) -> ApiClient | None:
        """
        The client a concurrent run created with the same ``client_id``, when ``error`` is
        Dintero's refusal of a duplicate ``client_id`` (400 or 409; else ``None``).

        :param hook: the Dintero hook.
        :param account_id: the account.
        :param login: the requested ``client_id`` (``None``: Dintero generates one, no clash).
        :param error: what the create answered.
        """
        if not login:
            return None
        return existing_after_refusal(
            error,
            lambda: next((c for c in hook.list_api_clients(account_id) if c.get("client_id") == login), None),
        )

    def _lost_race(
        self, keeper: ApiClient, store: _SecretStore, account_id: str, *, removed: str | None
    ) -> dict[str, Any]:
        """
        The result of a run whose client lost to a concurrent run's: nothing stored here.

        :param keeper: the concurrent run's client, the one kept.
        :param store: the destination (the same as the concurrent run's when the task is the same).
        :param account_id: the account.
        :param removed: the id of this run's duplicate client, deleted before this call
            (``None`` when Dintero refused to create it).
        """
        label = f"{keeper.get('client_id')} (id {keeper.get('id')})"
        if removed is None:
            self.log.warning(
                "A concurrent run created Dintero API client %s on account %s first (Dintero refused "
                "this run's create of the same client_id); reusing it. This run has no secret to "
                "store: the run that created it stores its secret in %s",
                label,
                account_id,
                store.describe(),
            )
        else:
            self.log.warning(
                "This run's duplicate API client was removed (id %s); the secret of %s is stored in %s "
                "by the concurrent run that created it, not by this run",
                removed,
                label,
                store.describe(),
            )
        if self.if_exists == "fail":
            raise AirflowException(
                f"A concurrent run created Dintero API client {label} on account {account_id} first and "
                "if_exists='fail'; this run created nothing that remains."
            )
        return self._result(keeper, store, created=False, rotated=False, concurrent=True)

    @staticmethod
    def _find_existing(clients: list[ApiClient], login: str | None, name: str) -> ApiClient | None:
        if login:
            return next((c for c in clients if c.get("client_id") == login), None)
        matches = [c for c in clients if c.get("name") == name]
        if len(matches) > 1:
            ids = ", ".join(str(c.get("client_id")) for c in matches)
            raise AirflowException(
                f"Several Dintero API clients are named {name!r} ({ids}); set client_id to pick one"
            )
        return matches[0] if matches else None

    def _handle_existing(
        self, hook: DinteroPartnerHook, account_id: str, client: ApiClient, store: _SecretStore
    ) -> dict[str, Any]:
        label = f"{client.get('client_id')} (id {client.get('id')})"
        if self.if_exists == "fail":
            raise AirflowException(
                f"Dintero API client {label} already exists on account {account_id} and if_exists='fail'; "
                "nothing was created. Use if_exists='reuse' to accept it, or choose another name/client_id."
            )
        if store.holds_secret_for(client):
            self.log.info(
                "Dintero API client %s already exists on account %s and its secret is in %s; "
                "nothing created, nothing rotated",
                label,
                account_id,
                store.describe(),
            )
            return self._result(client, store, created=False, rotated=False)
        conflict = store.conflict(client.get("client_id"))
        if conflict:
            raise AirflowException(
                f"Dintero API client {label} already exists on account {account_id}, but its secret "
                f"cannot be stored in {store.describe()}: {conflict}. Nothing was created or rotated."
            )
        if not self.rotate_if_secret_missing:
            raise AirflowException(
                f"Dintero API client {label} already exists on account {account_id}, but its secret is "
                f"not in {store.describe()}, and Dintero never shows a secret twice. To issue a new "
                "secret and store it, re-run with rotate_if_secret_missing=True (the current secret "
                "stops working), or point the task at the destination that holds it."
            )
        self.log.warning(
            "Secret of Dintero API client %s on account %s is not in %s; rotating it "
            "(rotate_if_secret_missing=True): the previous secret stops working",
            label,
            account_id,
            store.describe(),
        )
        rotated: dict[str, Any] = dict(hook.rotate_api_client_secret(account_id, str(client["id"])) or {})
        secret = rotated.pop("client_secret", None)
        if not secret:
            raise DinteroApiError(
                f"Dintero rotated the secret of API client {label} on account {account_id} but its "
                "answer had no client_secret; rotate again",
                account_id=account_id,
            )
        secret = str(secret)
        mask_secret(secret)
        merged: ApiClient = {**client, **rotated}  # type: ignore[typeddict-item]
        self._store_or_fail(store, merged, secret, account_id, "rotated")
        self.log.info("Stored the new secret of Dintero API client %s in %s", label, store.describe())
        return self._result(merged, store, created=False, rotated=True)

    def _store_or_fail(
        self, store: _SecretStore, client: ApiClient, secret: str, account_id: str, what: str
    ) -> None:
        try:
            store.store(client, secret)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}".replace(secret, "***")
            raise AirflowException(
                f"Dintero API client {client.get('client_id')} (id {client.get('id')}) was {what} on "
                f"account {account_id}, but its secret could NOT be stored in {store.describe()} "
                f"({reason}). Dintero shows a secret only once, so this one is lost and the client "
                "cannot log in yet. To recover: fix the destination, then re-run this task with "
                "rotate_if_secret_missing=True (it finds the client, rotates its secret and stores "
                "the new one), or rotate by hand with "
                f"DinteroPartnerHook({self.dintero_conn_id!r}).rotate_api_client_secret("
                f"{account_id!r}, {client.get('id')!r}) (POST /v1/accounts/{account_id}/auth/clients/"
                f"{client.get('id')}/rotate-secret) and store the answer's client_secret yourself."
            ) from None

    @staticmethod
    def _result(
        client: ApiClient, store: _SecretStore, *, created: bool, rotated: bool, concurrent: bool = False
    ) -> dict[str, Any]:
        public = {k: v for k, v in dict(client).items() if k != "client_secret"}
        connection_id = None
        if isinstance(store, _SecretsManagerStore) and store.secret_name.startswith(
            f"{SECRETS_MANAGER_CONNECTIONS_PREFIX}/"
        ):
            connection_id = store.secret_name[len(SECRETS_MANAGER_CONNECTIONS_PREFIX) + 1 :]
        return {
            "client": public,
            "secret_stored_in": store.describe(),
            "connection_id": connection_id,
            "created": created,
            "rotated": rotated,
            "secret_stored_by_concurrent_run": concurrent,
        }


class GrantOperator(DinteroBaseOperator):
    """
    Grant an API client scopes on an audience, idempotently.

    The client may be named by its ``client_id`` (login) or its UUID ``id``; it is looked up on
    the account and the grant is sent with the UUID, as Dintero requires. When the client
    already holds a grant on the same audience whose scopes include all requested ones (and
    whose type is the same or ``any``), nothing is created and that grant is returned. After
    creating, the task lists again: when concurrent runs created the same grant, every run
    keeps the oldest covering grant (by ``created_at``, then ``id``) and a run whose own grant
    is not that one deletes it and returns the oldest, so exactly one remains. Scope
    names are checked before any request
    (:func:`~airflow_provider_dintero.validation.validate_scopes`): a known scope
    (:data:`~airflow_provider_dintero.vocabulary.KNOWN_SCOPES`) or any other of the documented
    shape (``level:area``, ``level:area:detail``) is sent; one close to a known scope is refused
    as its typo, with the suggestion.

    :param account_id: the account holding the client (merchant or own account). Templated.
    :param client_id: the client's ``client_id`` or UUID ``id``. Templated.
    :param scopes: scope names, e.g. ``["read:settlements", "read:reports"]``, or one
        comma-separated string. Templated.
    :param audience: the audience URL (default: the account's,
        ``<base URL>/v1/accounts/<account_id>``). Templated.
    :param grant_type: ``any`` (default), ``client_credentials``, ``authorization_code`` or
        ``password``.
    :param dintero_conn_id: the Airflow connection of the partner or merchant.
    :param kwargs: passed to :class:`~airflow.models.baseoperator.BaseOperator`.

    Example::

        GrantOperator(
            task_id="grant",
            account_id="T11200001",
            client_id="airflow-reports",
            scopes=["read:settlements", "read:reports", "admin:insight", "read:hooks"],
        )
    """

    template_fields: Sequence[str] = ("account_id", "client_id", "scopes", "audience", "dintero_conn_id")

    def __init__(
        self,
        *,
        account_id: str,
        client_id: str,
        scopes: Sequence[str] | str,
        audience: str | None = None,
        grant_type: str = "any",
        dintero_conn_id: str = DinteroPartnerHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(dintero_conn_id=dintero_conn_id, **kwargs)
        self.account_id = account_id
        self.client_id = client_id
        self.scopes = scopes
        self.audience = audience
        self.grant_type = grant_type

    def execute(self, context: Any) -> ClientGrant:
        """
        Find or create the grant and return it.

        :param context: the Airflow task context.
        """
        account_id, wanted = self._checked()
        client = self._client(account_id, wanted)
        found = next((g for g in self._grants(account_id, wanted) if wanted.covered_by(g)), None)
        if found is not None:
            self.log.info(
                "API client %s already has a grant (%s) of %s on %s; nothing created",
                client.get("client_id"),
                found.get("id"),
                ", ".join(wanted.scopes),
                wanted.audience,
            )
            return found
        return self._create(account_id, client, wanted)

    def _checked(self) -> tuple[str, _WantedGrant]:
        """Every argument checked before any request (the audience defaults to the account's)."""
        account_id = check_account_id(self.account_id)
        client_ref = str(check_text(self.client_id, "client_id"))
        scopes = validate_scopes(check_names(self.scopes, "scopes", None, "Dintero scopes"), KNOWN_SCOPES)
        grant_type = validate_choice(self.grant_type, GRANT_TYPES, "grant_type")
        audience = check_text(self.audience, "audience", required=False)
        if audience is not None:
            validate_audience(audience, "audience")  # ASCII digits only (never \d)
        self.hook.resolve_account_id(account_id)
        audience = audience or self.hook.audience(account_id)
        return account_id, _WantedGrant(client_ref, audience, grant_type, tuple(scopes))

    def _client(self, account_id: str, wanted: _WantedGrant) -> ApiClient:
        """The client named by ``client_id`` or UUID ``id``; its UUID is noted on ``wanted``."""
        clients = self.hook.list_api_clients(account_id)
        client = next((c for c in clients if c.get("id") == wanted.client_ref), None) or next(
            (c for c in clients if c.get("client_id") == wanted.client_ref), None
        )
        if client is None:
            raise DinteroNotFoundError(
                f"No API client with client_id or id {wanted.client_ref!r} on account {account_id}; "
                "create it first (CreateApiClientOperator)",
                status=404,
                account_id=account_id,
            )
        wanted.client_uuid = str(client["id"])
        return client

    def _grants(self, account_id: str, wanted: _WantedGrant) -> list[ClientGrant]:
        return self.hook.list_client_grants(
            account_id, client_uuid=wanted.client_uuid, audience=wanted.audience
        )

    def _create(self, account_id: str, client: ApiClient, wanted: _WantedGrant) -> ClientGrant:
        """Create the grant; converge with concurrent runs on the oldest covering grant."""
        what = f"a grant of {', '.join(wanted.scopes)} to API client {client.get('client_id')}"
        created, new = self.create_or_existing(
            lambda: self.hook.create_client_grant(
                account_id,
                client_uuid=wanted.client_uuid,
                audience=wanted.audience,
                scope=list(wanted.scopes),
                grant_type=wanted.grant_type,
            ),
            lambda: next((g for g in self._grants(account_id, wanted) if wanted.covered_by(g)), None),
            what=what,
            account_id=account_id,
        )
        if not new:
            return created
        grant = self.reconcile_created(
            created,
            relist=lambda: self._grants(account_id, wanted),
            matches=wanted.covered_by,
            delete=lambda grant_id: self.hook.delete_client_grant(account_id, grant_id),
            what=f"client {what[2:]}",
            account_id=account_id,
        )
        if grant is created:
            self.log.info(
                "Granted %s on %s to API client %s (id %s): grant %s",
                ", ".join(wanted.scopes),
                wanted.audience,
                client.get("client_id"),
                wanted.client_uuid,
                (grant or {}).get("id"),
            )
        return grant


@dataclass
class _WantedGrant:
    """
    The grant a :class:`GrantOperator` run wants.

    :param client_ref: the client's ``client_id`` or UUID as given.
    :param audience: the audience URL.
    :param grant_type: the grant's type.
    :param scopes: the scopes.
    :param client_uuid: the client's UUID once looked up.
    """

    client_ref: str
    audience: str
    grant_type: str
    scopes: tuple[str, ...]
    client_uuid: str = ""

    def covered_by(self, grant: ClientGrant) -> bool:
        """
        Whether ``grant`` already gives the client every wanted scope on the audience.

        :param grant: a listed grant.
        """
        return (
            grant.get("client_id") == self.client_uuid
            and str(grant.get("audience", "")).rstrip("/") == self.audience.rstrip("/")
            and grant.get("type", "any") in ("any", self.grant_type)
            and set(self.scopes) <= set(grant.get("scope") or [])
        )
