"""
The API's resources as the hook uses them: each one's path (written only here), its name in
words, its list wrapper key and its host; and the verbs the hook's resource helpers send
(``FETCH``, ``LIST``, ``CREATE``, ``READ``, ``REPLACE``, ``DELETE``: HTTP method, item or collection, words).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from airflow_provider_dintero.validation import path_segment
from airflow_provider_dintero.vocabulary import (
    Account,
    ApiClient,
    ClientGrant,
    ReportMetadata,
    Settlement,
    WebhookSubscription,
)

ItemT = TypeVar("ItemT", bound=Mapping[str, Any])


@dataclass(frozen=True)
class Resource(Generic[ItemT]):
    """
    One API resource: its collection path (written only here) and its name in words.

    :param path: the collection's path, ``{account_id}`` standing for the account.
    :param noun: the resource in words, singular (``"API client"``), for errors and logs.
    :param id_name: the hook argument that names one item, for input errors.
    :param key: the list answer's wrapper key, when the endpoint has its own.
    :param base: the host: the API, or checkout (payment profiles).
    :param plural: the plural in words, when it is not ``noun`` + s.
    """

    path: str
    noun: str
    id_name: str = "id"
    key: str = "items"
    base: Literal["api", "checkout"] = "api"
    plural: str = ""

    def collection(self, account_id: str) -> str:
        """
        The collection's path for an account.

        :param account_id: the account (already checked).
        """
        return self.path.format(account_id=account_id)

    def item(self, account_id: str, item_id: Any) -> str:
        """
        One item's path; the id is percent-encoded as one path segment.

        :param account_id: the account (already checked).
        :param item_id: the item's id (from a user or an answer).
        """
        return f"{self.collection(account_id)}/{path_segment(item_id, self.id_name)}"


@dataclass(frozen=True)
class Verb:
    """
    What a resource helper does: its HTTP method, whether on one item, and its words.

    :param method: the HTTP method.
    :param on_item: whether it acts on ``<collection>/<id>`` (else on the collection).
    :param words: the operation in words, with ``{noun}``, ``{a}`` (a/an) and ``{id}``.
    """

    method: str
    on_item: bool
    words: str

    def operation(self, resource: Resource[Any], item_id: Any = None) -> str:
        """
        The operation in words, for errors and logs.

        :param resource: the resource acted on.
        :param item_id: the item's id, for item verbs.
        """
        a = "an" if resource.noun[0].lower() in "aeiou" else "a"
        nouns = resource.plural or f"{resource.noun}s"
        return self.words.format(noun=resource.noun, nouns=nouns, a=a, id=item_id)


FETCH = Verb("GET", False, "read the {noun}")
LIST = Verb("GET", False, "list {nouns}")
CREATE = Verb("POST", False, "create {a} {noun}")
READ = Verb("GET", True, "read {noun} {id}")
REPLACE = Verb("PUT", True, "update {noun} {id}")
DELETE = Verb("DELETE", True, "delete {noun} {id}")

ACCOUNT_SETTINGS: Resource[Account] = Resource(
    "/v1/accounts/{account_id}/management/settings", "account details"
)
MERCHANTS: Resource[Account] = Resource(
    "/v1/accounts/{account_id}/management/accounts", "merchant", plural="the partner's merchants"
)
SETTLEMENTS: Resource[Settlement] = Resource(
    "/v1/accounts/{account_id}/settlements", "settlement", id_name="settlement_id"
)
REPORT_METADATA: Resource[ReportMetadata] = Resource(
    "/v1/accounts/{account_id}/reports/metadata", "report", key="reports", plural="report metadata"
)
INSIGHT_CONFIGS: Resource[dict[str, Any]] = Resource(
    "/v1/accounts/{account_id}/insight/reports/configuration",
    "insight report configuration",
    id_name="config_id",
    key="configurations",
)
SETTLEMENT_REPORT_CONFIGS: Resource[dict[str, Any]] = Resource(
    "/v1/accounts/{account_id}/settlements/reports/configuration",
    "settlement report configuration",
    id_name="config_id",
)
API_CLIENTS: Resource[ApiClient] = Resource(
    "/v1/accounts/{account_id}/auth/clients", "API client", id_name="client_uuid", key="clients"
)
CLIENT_GRANTS: Resource[ClientGrant] = Resource(
    "/v1/accounts/{account_id}/auth/client-grants", "client grant", id_name="grant_id", key="grants"
)
PAYMENT_PROFILES: Resource[dict[str, Any]] = Resource(
    "/v1/admin/session/profiles", "payment profile", id_name="profile_id", base="checkout"
)
WEBHOOK_SUBSCRIPTIONS: Resource[WebhookSubscription] = Resource(
    "/v1/accounts/{account_id}/hooks/subscriptions",
    "webhook subscription",
    id_name="subscription_id",
    key="subscriptions",
)
