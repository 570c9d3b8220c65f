"""
Hooks for Dintero's Partner API: :class:`DinteroPartnerHook` (sync, ``requests``) and
:class:`DinteroAsyncHook` (``httpx``, for triggers): one method per API operation, tokens from
:mod:`~airflow_provider_dintero.auth`, paths from :mod:`~airflow_provider_dintero.resources`,
requests, retries, errors and paging from :mod:`~airflow_provider_dintero.pipeline`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import posixpath
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from functools import cached_property
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar, cast
from urllib.parse import urlsplit

import requests
from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_dintero import pipeline
from airflow_provider_dintero.auth import SharedTokenStore, Tokens, basic_authorization
from airflow_provider_dintero.connection import (
    DinteroConnectionMixin,
    connection_form_widgets,
    ui_field_behaviour,
)
from airflow_provider_dintero.exceptions import (
    DinteroApiError,
    DinteroAuthError,
    DinteroInputError,
    DinteroNotFoundError,
)
from airflow_provider_dintero.pipeline import Request
from airflow_provider_dintero.redaction import guard_logger, mask_secret, redact_url
from airflow_provider_dintero.resources import (
    ACCOUNT_SETTINGS,
    API_CLIENTS,
    CLIENT_GRANTS,
    CREATE,
    DELETE,
    FETCH,
    INSIGHT_CONFIGS,
    LIST,
    MERCHANTS,
    PAYMENT_PROFILES,
    READ,
    REPLACE,
    REPORT_METADATA,
    SETTLEMENT_REPORT_CONFIGS,
    SETTLEMENTS,
    WEBHOOK_SUBSCRIPTIONS,
    ItemT,
    Resource,
    Verb,
)
from airflow_provider_dintero.settlements import SettlementWindow, paged_settlements, settlement_query
from airflow_provider_dintero.transport import (
    DownloadStream,
    HttpxTransport,
    RequestsTransport,
    new_session,
    shared_async_client,
)
from airflow_provider_dintero.validation import (
    check_download_url,
    check_limit,
    is_loopback_host,
    path_segment,
    validate_account_id,
)
from airflow_provider_dintero.vocabulary import (
    Account,
    ApiClient,
    ClientGrant,
    ReportMetadata,
    Settlement,
    WebhookSubscription,
)

log = guard_logger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
HookT = TypeVar("HookT", bound="DinteroPartnerHook")


def for_account(
    method: Callable[Concatenate[HookT, str, P], R],
) -> Callable[Concatenate[HookT, str | None, P], R]:
    """
    Resolve a method's ``account_id`` (its first argument) before the call: ``None`` becomes the
    connection's own account, and any other id is checked and must be reachable by the
    connection (see :meth:`DinteroPartnerHook.resolve_account_id`).

    :param method: a hook method whose first argument is ``account_id``.
    """

    @functools.wraps(method)
    def wrapper(self: HookT, account_id: str | None = None, *args: P.args, **kwargs: P.kwargs) -> R:
        return method(self, self.resolve_account_id(account_id), *args, **kwargs)

    return wrapper


def _log_sleep(action: pipeline.Sleep) -> None:
    if action.retry:
        log.warning("%s; retrying in %.1f s", action.reason, action.seconds)
    else:
        log.debug("%s; waiting %.1f s", action.reason, action.seconds)


def _log_rejected(action: pipeline.DropToken) -> None:
    log.warning(
        "Dintero rejected the cached token for account %s; minting a new one, retrying once",
        action.account_id,
    )


class DinteroPartnerHook(DinteroConnectionMixin, BaseHook):
    """
    Talk to Dintero's API as a partner (or a merchant) account.

    The connection (type ``dintero``) holds the API client: *Client ID* (login), *Client
    secret* (password), *Base URL* (host, default ``https://api.dintero.com``) and, in its
    extra, ``account_id`` plus the optional fields listed in
    :data:`~airflow_provider_dintero.get_provider_info.CONNECTION_FIELDS` (timeouts, retries,
    deadline, caps, ``cache_mode``, ``refresh_margin``, ``verify``, ``proxies``).

    Every method takes the ``account_id`` it acts on. ``None`` means the connection's own
    account; a merchant of a partner connection is reached through the exchange token flow.

    :param dintero_conn_id: the Airflow connection id.

    Example::

        hook = DinteroPartnerHook()
        account = hook.get_account("T11200001")
        print(account["company"]["business_name"])
    """

    conn_name_attr = "dintero_conn_id"
    default_conn_name = "dintero_default"
    conn_type = "dintero"
    hook_name = "Dintero"

    # Defined here, not inherited: Airflow 2.11-3.1 read them only from the registered hook class.
    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Return the extra fields of the connection form (Airflow 2.11-3.1; 3.2+ reads ``conn-fields``)."""
        return connection_form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Return how the standard connection fields are shown (Airflow 2.11-3.1)."""
        return ui_field_behaviour()

    def __init__(self, dintero_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.dintero_conn_id = dintero_conn_id

    # ---------------------------------------------------------------- HTTP

    def get_conn(self) -> requests.Session:
        """Return the hook's pooled HTTP session (one per hook instance)."""
        return self._session

    @cached_property
    def _session(self) -> requests.Session:
        return new_session(self.verify, internal_ok=self._internal_hosts_ok)

    @property
    def _internal_hosts_ok(self) -> bool:
        """Downloads and redirects may reach loopback/private hosts only from a loopback base URL."""
        return is_loopback_host(urlsplit(self.base_url).hostname or "")

    def close(self) -> None:
        """Close the pooled connections."""
        if "_session" in self.__dict__:
            self._session.close()
            del self.__dict__["_session"]

    def _request(
        self,
        *,
        method: str,
        account_id: str,
        path: str,
        operation: str,
        base: Literal["api", "checkout"] = "api",
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        stream: bool = False,
    ) -> Request:
        """The one request helper: ``path`` (absolute) must be below ``/v1/accounts/<account_id>/``."""
        _ = self._connection_checked
        url = f"{self.checkout_base_url if base == 'checkout' else self.base_url}{path}"
        own = urlsplit(f"{self.base_url}/v1/accounts/{account_id}/").path
        resolved = posixpath.normpath(urlsplit(url).path)  # %2F is not a separator
        if base == "api" and not f"{resolved}/".startswith(own):
            raise DinteroInputError("path", f"a path of account {account_id}", redact_url(url))
        return Request(
            method=method,
            url=url,
            operation=operation,
            account_id=account_id,
            params=pipeline.query(params or {}),
            json=json,
            token_account=account_id,
            stream=stream,
        )

    def _on(
        self, verb: Verb, resource: Resource[Any], account_id: str, item_id: Any = None, **kwargs: Any
    ) -> Request:
        path = resource.item(account_id, item_id) if verb.on_item else resource.collection(account_id)
        operation = verb.operation(resource, item_id)
        return self._request(
            method=verb.method,
            account_id=account_id,
            path=path,
            operation=operation,
            base=resource.base,
            **kwargs,
        )

    def _run(self, flow: pipeline.Flow[R]) -> R:
        return pipeline.run(flow, self)

    def _answer(self, request: Request) -> dict[str, Any]:
        return pipeline.object_of(self._run(pipeline.call_json(request, self.limits)), request)

    def _one(
        self,
        verb: Verb,
        resource: Resource[ItemT],
        account_id: str,
        item_id: Any = None,
        *,
        body: Mapping[str, Any] | None = None,
    ) -> ItemT:
        """Send ``verb`` to the resource (with ``body``) and return the object Dintero answers."""
        json = None if body is None else dict(body)
        return cast("ItemT", self._answer(self._on(verb, resource, account_id, item_id, json=json)))

    def _all(self, resource: Resource[ItemT], account_id: str, **params: Any) -> list[ItemT]:
        """List a resource whose answer is one page (a bare array or its wrapper key)."""
        request = self._on(LIST, resource, account_id, params=params)
        body = self._run(pipeline.call_json(request, self.limits))
        return cast("list[ItemT]", pipeline.items_of(body, request, resource.key))

    def _deleted(self, resource: Resource[ItemT], account_id: str, item_id: Any) -> ItemT | None:
        """Delete an item; return what Dintero answers (``None`` for an empty answer)."""
        request = self._on(DELETE, resource, account_id, item_id)
        body = self._run(pipeline.call_json(request, self.limits))
        return None if body is None else cast("ItemT", pipeline.object_of(body, request))

    def perform(self, action: pipeline.Action) -> Any:
        """
        Carry out one pipeline action with blocking I/O (the sync driver's side of the pipeline).

        :param action: what the pipeline asks for.
        """
        if isinstance(action, pipeline.Send):
            return RequestsTransport(self._session, self.verify, self.proxies).send(action)
        if isinstance(action, pipeline.Sleep):
            _log_sleep(action)
            time.sleep(action.seconds)
            return None
        if isinstance(action, pipeline.GetToken):
            return self._tokens.get(action.account_id, self)
        if isinstance(action, pipeline.DropToken):
            _log_rejected(action)
            pipeline.run(self._tokens.forget(action.account_id, action.token), self)
            return None
        if isinstance(action, pipeline.Blocking):
            return action.call()
        raise TypeError(f"unknown pipeline action {type(action).__name__}")  # pragma: no cover

    # ---------------------------------------------------------------- tokens

    @cached_property
    def _tokens(self) -> Tokens:
        """This connection's tokens: minting, caches and masking (:mod:`~airflow_provider_dintero.auth`)."""
        _ = self._connection_checked
        return Tokens(
            base_url=self.base_url,
            client_id=self.client_id,
            account_id=self.account_id,
            margin=self.token_refresh_margin,
            limits=self.limits,
            shared=SharedTokenStore(
                self.token_cache_mode == "variable",
                settle=self.token_lease_settle,
                lease_ttl=self.token_lease_ttl,
            ),
            credentials=lambda: basic_authorization(self.client_id, self._client_secret),
        )

    def audience(self, account_id: str) -> str:
        """
        Return the token audience for an account: ``<base URL>/v1/accounts/<account_id>``.

        :param account_id: the account the token is for.
        """
        return f"{self.base_url}/v1/accounts/{validate_account_id(account_id)}"

    def get_token(self, account_id: str | None = None) -> str:
        """
        Return a valid access token for ``account_id``, minting one only when needed.

        ``None`` means the connection's own account (client credentials). A merchant of a
        partner connection is reached through the exchange token flow. Tokens are cached per
        (base URL, client id, account) across hook instances in this process, and, with
        ``cache_mode: variable``, shared through an Airflow Variable. Only the connection's own
        token is registered with the secrets masker; merchant tokens never are (they are kept
        out of every text by redaction instead), so masking cost does not grow with merchants.

        :param account_id: the account to act on.
        """
        return self._tokens.get(self.resolve_account_id(account_id), self)

    def invalidate_token(self, account_id: str | None = None, token: str | None = None) -> None:
        """
        Forget the cached token for an account (after Dintero rejected it).

        :param account_id: the account; ``None`` for the connection's own.
        :param token: only forget it if the cache still holds this token.
        """
        pipeline.run(self._tokens.forget(self.resolve_account_id(account_id), token), self)

    # ---------------------------------------------------------------- connection test

    def test_connection(self) -> tuple[bool, str]:
        """Mint a token for the connection's account and say which account was reached."""
        try:
            self.validate_connection()
        except DinteroInputError as exc:
            return False, f"Connection is misconfigured: {exc}"
        try:
            self.invalidate_token(None)
            self.get_token(None)
        except DinteroAuthError as exc:
            return False, f"Dintero rejected the client credentials for account {self.account_id}: {exc}"
        except DinteroApiError as exc:
            if exc.status is None:
                return False, f"Cannot reach Dintero at {self.base_url}: {exc}"
            return False, str(exc)
        kind = "partner" if self.is_partner else "merchant"
        env = "test" if self.account_id.startswith("T") else "production"
        return True, f"Connected to Dintero {env} {kind} account {self.account_id} at {self.base_url}"

    # ---------------------------------------------------------------- accounts

    def list_merchants(self, *, limit: int = 100, **filters: Any) -> list[Account]:
        """
        Return the partner's merchant accounts (all pages).

        :param limit: page size, 1 to 100.
        :param filters: documented filters passed through, e.g. ``country="NO"``.
        """
        limit = check_limit(limit, 100)
        flow = pipeline.paged_by_paging_token(self._merchants_request(), self.limits, filters, limit)
        return cast("list[Account]", pipeline.collect(flow, self))

    def _merchants_request(self) -> Request:
        if not self.is_partner:
            raise DinteroInputError(
                "extra.account_id", "a partner account id ending in 00000", self.account_id
            )
        return self._on(LIST, MERCHANTS, self.account_id)

    @for_account
    def get_account(self, account_id: str) -> Account:
        """
        Return an account's details (``GET /v1/accounts/{aid}/management/settings``).

        :param account_id: the merchant, or ``None`` for the connection's own account.
        """
        return self._one(FETCH, ACCOUNT_SETTINGS, account_id)

    # ---------------------------------------------------------------- settlements

    @for_account
    def list_settlements(
        self,
        account_id: str,
        *,
        limit: int = 100,
        created_at_gte: Any = None,
        created_at_lte: Any = None,
        item_created_at_gte: Any = None,
        item_created_at_lte: Any = None,
        payment_providers: Sequence[str] | None = None,
        payout_destination_id: str | None = None,
        search: str | None = None,
    ) -> list[Settlement]:
        """
        Return an account's settlements, newest first (all pages).

        The date filters go to Dintero as whole days (``YYYY-MM-DD``, the form its spec types
        them) and the exact window is applied here on each settlement's own timestamps
        (:class:`~airflow_provider_dintero.settlements.SettlementWindow`).

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param limit: page size, 1 to 1000.
        :param created_at_gte: settled on or after (filters ``settled_at``).
        :param created_at_lte: settled on or before (filters ``settled_at``).
        :param item_created_at_gte: recorded on or after (filters ``created_at``).
        :param item_created_at_lte: recorded on or before (filters ``created_at``).
        :param payment_providers: only these payout providers (API names or product names).
        :param payout_destination_id: only this seller.
        :param search: matches the settlement id.
        """
        filters = {k: v for k, v in locals().items() if k not in ("self", "account_id")}
        params, window = settlement_query(**filters), SettlementWindow.of(**filters)
        flow = paged_settlements(self._on(LIST, SETTLEMENTS, account_id), self.limits, params)
        return list(window.select(pipeline.collect(flow, self)))

    @for_account
    def get_settlement(self, account_id: str, settlement_id: str) -> Settlement:
        """
        Return one settlement by id (the list endpoint, searched by id).

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param settlement_id: the settlement's id.
        """
        if not settlement_id:
            raise DinteroInputError("settlement_id", "a settlement id", settlement_id)
        for item in self.list_settlements(account_id, search=settlement_id, limit=100):
            if item.get("id") == settlement_id:
                return item
        raise DinteroNotFoundError(
            f"Settlement {settlement_id} was not found for account {account_id}",
            status=404,
            account_id=account_id,
        )

    @contextlib.contextmanager
    def stream_settlement_attachment(
        self, account_id: str | None, settlement_id: str, attachment_id: str
    ) -> Iterator[DownloadStream]:
        """
        Open a settlement attachment as a stream (``with`` block); memory stays flat.

        Redirects are followed without sending the ``Authorization`` header to another host.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param settlement_id: the settlement's id.
        :param attachment_id: the attachment's id.
        """
        aid = self.resolve_account_id(account_id)
        attachment = path_segment(attachment_id, "attachment_id")
        path = f"{SETTLEMENTS.item(aid, settlement_id)}/attachments/{attachment}"
        what = f"attachment {attachment_id} of settlement {settlement_id}"
        request = self._request(
            method="GET", account_id=aid, path=path, operation=f"download {what}", stream=True
        )
        with self._download(request, what) as stream:
            yield stream

    @contextlib.contextmanager
    def _download(self, request: Request, description: str) -> Iterator[DownloadStream]:
        reply = self._run(pipeline.call(request, self.limits))
        stream = DownloadStream(
            reply.raw, description, request.account_id, min_rate=self.min_download_rate, grace=self.timeout
        )
        try:
            yield stream
        finally:
            stream.close()

    # ---------------------------------------------------------------- reports

    @for_account
    def list_report_metadata(self, account_id: str, *, limit: int = 100) -> list[ReportMetadata]:
        """
        Return the generated insight reports of an account (all pages).

        Each item's ``signed_url`` signature is registered with the secrets masker as it arrives.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param limit: page size, 1 to 100.
        """
        params = {"limit": check_limit(limit, 100)}
        request = self._on(LIST, REPORT_METADATA, account_id)
        flow = pipeline.paged_by_starting_after(request, self.limits, params, items_key=REPORT_METADATA.key)
        reports = cast("list[ReportMetadata]", pipeline.collect(flow, self))
        for report in reports:
            mask_secret(report.get("signed_url"))
        return reports

    @contextlib.contextmanager
    def stream_signed_url(
        self, url: str, *, account_id: str | None, description: str
    ) -> Iterator[DownloadStream]:
        """
        Download a pre-signed URL (an insight report) as a stream, with no Authorization header.

        The URL (and any redirect) must be https to a public host: ``localhost`` and loopback,
        link-local or private IP literals are refused before any request, unless the
        connection's own base URL is loopback (the emulator).

        :param url: the signed URL (a credential: it is masked and never logged whole).
        :param account_id: the account the file belongs to, for errors.
        :param description: what is downloaded, for errors and logs.
        """
        mask_secret(url)
        _ = self._connection_checked
        check_download_url(str(url), "signed_url", internal_ok=self._internal_hosts_ok)
        request = Request(
            method="GET", url=url, operation=f"download {description}", account_id=account_id, stream=True
        )
        with self._download(request, description) as stream:
            yield stream

    @for_account
    def list_report_configurations(self, account_id: str) -> list[dict[str, Any]]:
        """
        List the insight (scheduled) report configurations of an account.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        """
        return self._all(INSIGHT_CONFIGS, account_id)

    @for_account
    def get_report_configuration(self, account_id: str, config_id: str) -> dict[str, Any]:
        """
        Return one insight report configuration.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param config_id: the configuration's id.
        """
        return self._one(READ, INSIGHT_CONFIGS, account_id, config_id)

    @for_account
    def create_report_configuration(self, account_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """
        Create an insight report schedule (camelCase body: dataType, schedule, language, name...).

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param body: the configuration.
        """
        return self._one(CREATE, INSIGHT_CONFIGS, account_id, body=body)

    @for_account
    def update_report_configuration(
        self, account_id: str, config_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """
        Replace an insight report configuration.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param config_id: the configuration's id.
        :param body: the full configuration.
        """
        return self._one(REPLACE, INSIGHT_CONFIGS, account_id, config_id, body=body)

    @for_account
    def delete_report_configuration(self, account_id: str, config_id: str) -> dict[str, Any] | None:
        """
        Delete an insight report configuration.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param config_id: the configuration's id.
        """
        return self._deleted(INSIGHT_CONFIGS, account_id, config_id)

    @for_account
    def list_settlement_report_configurations(
        self, account_id: str, *, limit: int = 100
    ) -> list[dict[str, Any]]:
        """
        List the settlement report (email delivery) configurations of an account (all pages).

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param limit: page size, 1 to 1000.
        """
        params = {"limit": check_limit(limit, 1000)}
        request = self._on(LIST, SETTLEMENT_REPORT_CONFIGS, account_id)
        return pipeline.collect(pipeline.paged_by_starting_after(request, self.limits, params), self)

    @for_account
    def create_settlement_report_configuration(
        self, account_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """
        Create a settlement report configuration (filetypes, destinations, providers).

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param body: the configuration.
        """
        return self._one(CREATE, SETTLEMENT_REPORT_CONFIGS, account_id, body=body)

    @for_account
    def update_settlement_report_configuration(
        self, account_id: str, config_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """
        Replace a settlement report configuration.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param config_id: the configuration's id.
        :param body: the full configuration.
        """
        return self._one(REPLACE, SETTLEMENT_REPORT_CONFIGS, account_id, config_id, body=body)

    @for_account
    def delete_settlement_report_configuration(
        self, account_id: str, config_id: str
    ) -> dict[str, Any] | None:
        """
        Delete a settlement report configuration.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param config_id: the configuration's id.
        """
        return self._deleted(SETTLEMENT_REPORT_CONFIGS, account_id, config_id)

    # ---------------------------------------------------------------- API clients and grants

    @for_account
    def list_api_clients(self, account_id: str) -> list[ApiClient]:
        """
        List the API clients of an account (never with secrets).

        :param account_id: the merchant, or ``None`` for the connection's own account.
        """
        return self._all(API_CLIENTS, account_id)

    @for_account
    def get_api_client(self, account_id: str, client_uuid: str) -> ApiClient:
        """
        Return one API client by its UUID ``id`` (never with its secret).

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param client_uuid: the client's UUID ``id`` (not its ``client_id``).
        """
        return self._one(READ, API_CLIENTS, account_id, client_uuid)

    @for_account
    def create_api_client(
        self,
        account_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        client_id: str | None = None,
        callbacks: Sequence[str] | None = None,
    ) -> ApiClient:
        """
        Create an API client. The answer holds ``client_secret``, shown by Dintero only once;
        it is registered with the secrets masker before this method returns.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param name: the client's name.
        :param description: a description.
        :param client_id: the login name to use (Dintero generates one when omitted).
        :param callbacks: callback URLs.
        """
        body: dict[str, Any] = {
            k: v for k, v in {"name": name, "description": description, "client_id": client_id}.items() if v
        }
        if callbacks is not None:
            body["callbacks"] = list(callbacks)
        created = self._one(CREATE, API_CLIENTS, account_id, body=body)
        mask_secret(created.get("client_secret"))
        return created

    @for_account
    def rotate_api_client_secret(self, account_id: str, client_uuid: str) -> ApiClient:
        """
        Give an API client a new secret (the old one stops working). Returns the client with
        its new ``client_secret``, registered with the secrets masker.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param client_uuid: the client's UUID ``id``.
        """
        path = f"{API_CLIENTS.item(account_id, client_uuid)}/rotate-secret"
        operation = f"rotate the secret of API client {client_uuid}"
        body = self._answer(
            self._request(method="POST", account_id=account_id, path=path, operation=operation)
        )
        client = body.get("client", body)
        mask_secret(client.get("client_secret") if isinstance(client, dict) else None)
        return cast("ApiClient", client if isinstance(client, dict) else {})

    @for_account
    def delete_api_client(self, account_id: str, client_uuid: str) -> ApiClient | None:
        """
        Delete an API client and its grants.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param client_uuid: the client's UUID ``id``.
        """
        return self._deleted(API_CLIENTS, account_id, client_uuid)

    @for_account
    def list_client_grants(
        self, account_id: str, *, client_uuid: str | None = None, audience: str | None = None
    ) -> list[ClientGrant]:
        """
        List client grants, optionally for one client or audience.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param client_uuid: only grants of this client (its UUID ``id``).
        :param audience: only grants on this audience.
        """
        params = {k: v for k, v in {"client_id": client_uuid, "audience": audience}.items() if v}
        return self._all(CLIENT_GRANTS, account_id, **params)

    @for_account
    def create_client_grant(
        self,
        account_id: str,
        *,
        client_uuid: str,
        audience: str,
        scope: Sequence[str],
        grant_type: str = "any",
    ) -> ClientGrant:
        """
        Grant scopes on an audience to an API client.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param client_uuid: the client's UUID ``id`` (Dintero requires the UUID here).
        :param audience: e.g. ``https://api.dintero.com/v1/accounts/T11200001``.
        :param scope: scope names, e.g. ``["read:settlements"]``.
        :param grant_type: ``any``, ``client_credentials``, ``authorization_code`` or ``password``.
        """
        body = {"client_id": client_uuid, "audience": audience, "scope": list(scope), "type": grant_type}
        return self._one(CREATE, CLIENT_GRANTS, account_id, body=body)

    @for_account
    def delete_client_grant(self, account_id: str, grant_id: str) -> ClientGrant | None:
        """
        Delete a client grant.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param grant_id: the grant's id.
        """
        return self._deleted(CLIENT_GRANTS, account_id, grant_id)

    # ---------------------------------------------------------------- payment profiles

    @for_account
    def list_payment_profiles(self, account_id: str) -> list[dict[str, Any]]:
        """
        List the checkout payment profiles of an account (checkout host, merchant token), every
        page: ``limit`` 100 and ``starting_after`` the last ``profile_id`` of the previous page,
        as Dintero's checkout client pages them (a server that does not page answers one page).

        :param account_id: the merchant, or ``None`` for the connection's own account.
        """
        request = self._on(LIST, PAYMENT_PROFILES, account_id)
        flow = pipeline.paged_by_paging_token(request, self.limits, {}, 100, cursor_field="profile_id")
        return pipeline.collect(flow, self)

    @for_account
    def get_payment_profile(self, account_id: str, profile_id: str) -> dict[str, Any]:
        """
        Return one payment profile.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param profile_id: the profile's id.
        """
        return self._one(READ, PAYMENT_PROFILES, account_id, profile_id)

    @for_account
    def create_payment_profile(self, account_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """
        Create a payment profile (``description`` and ``configuration``; ``profile_id`` optional).

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param body: the profile.
        """
        return self._one(CREATE, PAYMENT_PROFILES, account_id, body=body)

    @for_account
    def update_payment_profile(
        self, account_id: str, profile_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """
        Replace a payment profile (Dintero's PUT takes the full profile).

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param profile_id: the profile's id.
        :param body: the full profile.
        """
        return self._one(REPLACE, PAYMENT_PROFILES, account_id, profile_id, body=body)

    # ---------------------------------------------------------------- webhooks

    @for_account
    def list_webhook_subscriptions(self, account_id: str) -> list[WebhookSubscription]:
        """
        List the webhook subscriptions of an account.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        """
        return self._all(WEBHOOK_SUBSCRIPTIONS, account_id)

    @for_account
    def get_webhook_subscription(self, account_id: str, subscription_id: str) -> WebhookSubscription:
        """
        Read one webhook subscription (its secret's value is never returned).

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param subscription_id: the subscription's id.
        """
        return self._one(READ, WEBHOOK_SUBSCRIPTIONS, account_id, subscription_id)

    @for_account
    def create_webhook_subscription(self, account_id: str, body: Mapping[str, Any]) -> WebhookSubscription:
        """
        Create a webhook subscription, e.g. ``{"config": {"url": ...}, "events": ["settlement_add"]}``.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param body: the subscription.
        """
        return self._one(CREATE, WEBHOOK_SUBSCRIPTIONS, account_id, body=body)

    @for_account
    def delete_webhook_subscription(
        self, account_id: str, subscription_id: str
    ) -> WebhookSubscription | None:
        """
        Delete a webhook subscription.

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param subscription_id: the subscription's id.
        """
        return self._deleted(WEBHOOK_SUBSCRIPTIONS, account_id, subscription_id)


class DinteroAsyncHook(DinteroPartnerHook):
    """
    Async access for triggers: the same connection, token flow, pipeline and errors, with every
    request (tokens included) sent on the event loop through one shared :mod:`httpx` client per
    process, event loop and TLS/proxy setting. The connection, the shared token Variable and the
    secrets masker are used from a worker thread: the event loop never blocks.

    :param dintero_conn_id: the Airflow connection id.
    """

    async def async_list_settlements(
        self,
        account_id: str | None,
        *,
        each: Callable[[Settlement], Any] | None = None,
        max_retries: int | None = None,
        **filters: Any,
    ) -> list[Any]:
        """
        Return every settlement matching the filters (see :meth:`list_settlements`).

        :param account_id: the merchant, or ``None`` for the connection's own account.
        :param each: what to keep of each settlement, applied to each page as soon as it is
            decoded (the list holds what it returns): a poll of many merchants keeps a few
            fields, not every decoded page across the requests of a listing.
        :param max_retries: retries of each request on 429, 5xx and connection errors (``None``:
            the connection's ``max_retries``): a caller that tries again later anyway asks for
            fewer.
        :param filters: keyword filters of :meth:`list_settlements`.
        """
        request, params = await asyncio.to_thread(self._settlements_request, account_id, filters)
        window = SettlementWindow.of(**filters)
        found: list[Any] = []

        def sink(page: list[Any]) -> None:
            selected = window.select(page)
            found.extend(selected if each is None else map(each, selected))

        limits = (
            self.limits if max_retries is None else replace(self.limits, max_retries=max(0, int(max_retries)))
        )
        await pipeline.arun(paged_settlements(request, limits, params), self.aperform, sink)
        return found

    async def async_list_merchants(self, *, limit: int = 100, **filters: Any) -> list[Account]:
        """
        Return the partner's merchant accounts, all pages (see :meth:`list_merchants`).

        :param limit: page size, 1 to 100.
        :param filters: documented filters passed through, e.g. ``country="NO"``.
        """
        request = await asyncio.to_thread(self._merchants_request)
        found: list[Account] = []
        flow = pipeline.paged_by_paging_token(request, self.limits, filters, check_limit(limit, 100))
        await pipeline.arun(flow, self.aperform, found.extend)
        return found

    def _settlements_request(
        self, account_id: str | None, filters: dict[str, Any]
    ) -> tuple[Request, dict[str, Any]]:
        request = self._on(LIST, SETTLEMENTS, self.resolve_account_id(account_id))
        return request, settlement_query(**filters)

    async def _atokens(self) -> Tokens:
        """:attr:`_tokens`, the connection read in a worker thread the first time."""
        tokens = self.__dict__.get("_tokens")
        return tokens if isinstance(tokens, Tokens) else await asyncio.to_thread(lambda: self._tokens)

    async def aperform(self, action: pipeline.Action) -> Any:
        """
        Carry out one pipeline action on the event loop (the async driver's side of the pipeline).

        :param action: what the pipeline asks for.
        """
        if isinstance(action, pipeline.Send):
            client = shared_async_client(self.verify, self.proxies)
            return await HttpxTransport(client, internal_ok=self._internal_hosts_ok).send(action)
        if isinstance(action, pipeline.Sleep):
            _log_sleep(action)
            await asyncio.sleep(action.seconds)
            return None
        if isinstance(action, pipeline.GetToken):
            return await (await self._atokens()).aget(action.account_id, self.aperform)
        if isinstance(action, pipeline.DropToken):
            _log_rejected(action)
            tokens = await self._atokens()
            await pipeline.arun(tokens.forget(action.account_id, action.token), self.aperform)
            return None
        if isinstance(action, pipeline.Blocking):
            return await asyncio.to_thread(action.call)
        raise TypeError(f"unknown pipeline action {type(action).__name__}")  # pragma: no cover
