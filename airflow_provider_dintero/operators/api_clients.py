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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_dintero.exceptions import DinteroApiError, DinteroNotFoundError
from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from airflow_provider_dintero.operators._base import (
    DinteroBaseOperator,
    existing_after_refusal,
)
from airflow_provider_dintero.redaction import mask_secret
from airflow_provider_dintero.secret_stores import ClientSecret, SecretDestination, SecretStore, secret_store
from airflow_provider_dintero.validation import (
    check_names,
    check_text,
    validate_account_id,
    validate_audience,
    validate_callbacks,
    validate_choice,
    validate_flag,
    validate_scopes,
)
from airflow_provider_dintero.vocabulary import KNOWN_SCOPES, ApiClient, ClientGrant

IfExists = Literal["reuse", "fail"]
IF_EXISTS_CHOICES: tuple[IfExists, ...] = ("reuse", "fail")
GRANT_TYPES = ("any", "client_credentials", "authorization_code", "password")


@dataclass(frozen=True)
class _WantedClient:
    """The API client a task asks for, its parameters checked."""

    account_id: str
    name: str
    description: str | None
    client_id: str | None
    callbacks: list[str] | None

    @property
    def ref(self) -> str:
        """The client's ``client_id``, else its name: how logs and default secret names call it."""
        return self.client_id or self.name

    def matches(self, client: ApiClient) -> bool:
        """
        Whether a listed client is this one: same ``client_id`` when given, else same ``name``.

        :param client: a client from Dintero's list.
        """
        if self.client_id:
            return client.get("client_id") == self.client_id
        return client.get("name") == self.name


def _label(client: ApiClient) -> str:
    return f"{client.get('client_id')} (id {client.get('id')})"


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
    (The destinations live in :mod:`airflow_provider_dintero.secret_stores`.)

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

    def execute(self, context: Any) -> dict[str, Any]:
        """
        Create (or find) the client, store its secret, and return the client without it.

        :param context: the Airflow task context.
        """
        wanted = self._wanted_client()
        store = self._secret_store(wanted)
        self.hook.resolve_account_id(wanted.account_id)
        existing = self._find_existing(wanted)
        if existing is not None:
            return self._reuse(existing, store, wanted.account_id)
        self._refuse_unusable(store, wanted)
        client, secret = self._create(wanted)
        if secret is None:  # Dintero refused this run's create: a concurrent run's client exists
            return self._lost_race(client, store, wanted.account_id, removed=None)
        # Converge with concurrent runs before storing: a removed duplicate's secret is dead.
        kept = self._keep_oldest(client, wanted)
        if kept is not client:
            return self._lost_race(kept, store, wanted.account_id, removed=str(client.get("id")))
        self.log.info(
            "Created Dintero API client %s on account %s; storing its secret in %s",
            _label(client),
            wanted.account_id,
            store.describe(),
        )
        self._store_or_fail(store, client, secret, wanted.account_id, "created")
        return self._result(client, store, created=True, rotated=False)

    # ---------------------------------------------------------------- the steps

    def _wanted_client(self) -> _WantedClient:
        """Every parameter checked, before any request (each error names its parameter)."""
        wanted = _WantedClient(
            account_id=validate_account_id(self.account_id),
            name=str(check_text(self.name, "name")),
            description=check_text(self.description, "description", required=False),
            client_id=check_text(self.client_id, "client_id", required=False),
            callbacks=validate_callbacks(self.callbacks),
        )
        validate_choice(self.if_exists, "if_exists", IF_EXISTS_CHOICES)
        validate_flag(self.rotate_if_secret_missing, "rotate_if_secret_missing")
        return wanted

    def _secret_store(self, wanted: _WantedClient) -> SecretStore:
        """The destination ``secret_destination`` and its name parameters choose."""
        return secret_store(
            self.secret_destination,
            account_id=wanted.account_id,
            client_ref=wanted.ref,
            variable_key=self.secret_variable_key,
            secret_name=self.secrets_manager_secret_name,
            aws_conn_id=self.aws_conn_id,
            dintero=self.hook,
        )

    def _find_existing(self, wanted: _WantedClient) -> ApiClient | None:
        """The account's client matching ``wanted`` (``client_id``, else an unambiguous ``name``)."""
        matches = [c for c in self.hook.list_api_clients(wanted.account_id) if wanted.matches(c)]
        if len(matches) > 1 and not wanted.client_id:
            ids = ", ".join(str(c.get("client_id")) for c in matches)
            raise AirflowException(
                f"Several Dintero API clients are named {wanted.name!r} ({ids}); set client_id to pick one"
            )
        return matches[0] if matches else None

    def _refuse_unusable(self, store: SecretStore, wanted: _WantedClient) -> None:
        """Fail before creating when the destination cannot be read or holds another secret."""
        store.check_reachable()
        conflict = store.conflict(wanted.client_id)
        if conflict:
            raise AirflowException(
                f"Cannot store the secret of a new Dintero API client {wanted.ref!r} on account "
                f"{wanted.account_id} in {store.describe()}: {conflict}. Nothing was created on Dintero."
            )

    def _create(self, wanted: _WantedClient) -> tuple[ApiClient, str | None]:
        """
        Create the client; return it (without its secret) and its secret, masked. When Dintero
        refuses a duplicate ``client_id`` of a client a concurrent run created, return that
        client and ``None``.
        """
        account_id = wanted.account_id
        try:
            answer = self.hook.create_api_client(
                account_id,
                name=wanted.name,
                description=wanted.description,
                client_id=wanted.client_id,
                callbacks=wanted.callbacks,
            )
        except DinteroApiError as exc:
            rival = self._created_concurrently(wanted, exc)
            if rival is None:
                raise
            return rival, None
        client: ApiClient = dict(answer or {})  # type: ignore[assignment]
        secret = client.pop("client_secret", None)
        if not secret or not client.get("id"):
            raise DinteroApiError(
                f"Dintero created API client {wanted.name!r} on account {account_id} but its answer had no "
                f"{'id' if secret else 'client_secret'}; check the client list and rotate its secret",
                account_id=account_id,
            )
        mask_secret(secret)
        return client, secret

    def _created_concurrently(self, wanted: _WantedClient, error: DinteroApiError) -> ApiClient | None:
        """
        The client a concurrent run created with the same ``client_id``, when ``error`` is
        Dintero's refusal of a duplicate ``client_id`` (400 or 409; else ``None``).

        :param wanted: the client asked for (``client_id`` ``None``: Dintero generates one, no clash).
        :param error: what the create answered.
        """
        if not wanted.client_id:
            return None
        return existing_after_refusal(
            error,
            lambda: next(
                (c for c in self.hook.list_api_clients(wanted.account_id) if wanted.matches(c)), None
            ),
        )

    def _keep_oldest(self, client: ApiClient, wanted: _WantedClient) -> ApiClient:
        """The client every concurrent run keeps (this run's duplicate deleted when it is not)."""
        account_id = wanted.account_id
        return self.reconcile_created(
            client,
            relist=lambda: self.hook.list_api_clients(account_id),
            matches=wanted.matches,
            delete=lambda client_uuid: self.hook.delete_api_client(account_id, client_uuid),
            what="API client",
            account_id=account_id,
        )

    def _lost_race(
        self, keeper: ApiClient, store: SecretStore, account_id: str, *, removed: str | None
    ) -> dict[str, Any]:
        """
        The result of a run whose client lost to a concurrent run's: nothing stored here.

        :param keeper: the concurrent run's client, the one kept.
        :param store: the destination (the same as the concurrent run's when the task is the same).
        :param account_id: the account.
        :param removed: the id of this run's duplicate client, deleted before this call
            (``None`` when Dintero refused to create it).
        """
        if removed is None:
            self.log.warning(
                "A concurrent run created Dintero API client %s on account %s first (Dintero refused "
                "this run's create of the same client_id); reusing it. This run has no secret to "
                "store: the run that created it stores its secret in %s",
                _label(keeper),
                account_id,
                store.describe(),
            )
        else:
            self.log.warning(
                "This run's duplicate API client was removed (id %s); the secret of %s is stored in %s "
                "by the concurrent run that created it, not by this run",
                removed,
                _label(keeper),
                store.describe(),
            )
        if self.if_exists == "fail":
            raise AirflowException(
                f"A concurrent run created Dintero API client {_label(keeper)} on account {account_id} "
                "first and if_exists='fail'; this run created nothing that remains."
            )
        return self._result(keeper, store, created=False, rotated=False, concurrent=True)

    def _reuse(self, client: ApiClient, store: SecretStore, account_id: str) -> dict[str, Any]:
        """
        Accept an existing client whose secret is already stored; else rotate its secret when
        ``rotate_if_secret_missing`` allows, or fail saying how to recover.
        """
        label = _label(client)
        if self.if_exists == "fail":
            raise AirflowException(
                f"Dintero API client {label} already exists on account {account_id} and if_exists='fail'; "
                "nothing was created. Use if_exists='reuse' to accept it, or choose another name/client_id."
            )
        if store.holds_secret_of(client.get("client_id")):
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
        return self._rotate(client, store, account_id)

    def _rotate(self, client: ApiClient, store: SecretStore, account_id: str) -> dict[str, Any]:
        """Rotate the secret of ``client`` and store the new one."""
        label = _label(client)
        self.log.warning(
            "Secret of Dintero API client %s on account %s is not in %s; rotating it "
            "(rotate_if_secret_missing=True): the previous secret stops working",
            label,
            account_id,
            store.describe(),
        )
        rotated: dict[str, Any] = dict(
            self.hook.rotate_api_client_secret(account_id, str(client["id"])) or {}
        )
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
        self, store: SecretStore, client: ApiClient, secret: str, account_id: str, what: str
    ) -> None:
        """
        Store the secret; when that fails, fail saying which client lost its secret and how to
        issue a new one (the reason never shows the secret).
        """
        try:
            store.store(
                ClientSecret(secret=secret, client_id=client.get("client_id"), client_uuid=client.get("id"))
            )
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}".replace(secret, "***")
            raise AirflowException(
                f"Dintero API client {_label(client)} was {what} on account {account_id}, but its secret "
                f"could NOT be stored in {store.describe()} ({reason}). Dintero shows a secret only once, "
                "so this one is lost and the client cannot log in yet. To recover: fix the destination, "
                "then re-run this task with rotate_if_secret_missing=True (it finds the client, rotates "
                "its secret and stores the new one), or rotate by hand with "
                f"DinteroPartnerHook({self.dintero_conn_id!r}).rotate_api_client_secret("
                f"{account_id!r}, {client.get('id')!r}) (POST /v1/accounts/{account_id}/auth/clients/"
                f"{client.get('id')}/rotate-secret) and store the answer's client_secret yourself."
            ) from None

    @staticmethod
    def _result(
        client: ApiClient, store: SecretStore, *, created: bool, rotated: bool, concurrent: bool = False
    ) -> dict[str, Any]:
        return {
            "client": {k: v for k, v in dict(client).items() if k != "client_secret"},
            "secret_stored_in": store.describe(),
            "connection_id": store.connection_id,
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

    template_fields: Sequence[str] = ("account_id", "client_id", "scopes", "audience")

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
        account_id = validate_account_id(self.account_id)
        client_ref = str(check_text(self.client_id, "client_id"))
        scopes = validate_scopes(check_names(self.scopes, "scopes", None, "Dintero scopes"), KNOWN_SCOPES)
        grant_type = validate_choice(self.grant_type, "grant_type", GRANT_TYPES)
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
