"""
Dintero's API vocabulary: payout providers, attachment kinds, scope and webhook event names, and
the shapes (typed dicts) of the resources the hook returns.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from enum import Enum
from typing import Any, TypedDict

from airflow_provider_dintero.exceptions import DinteroInputError


class PayoutProvider(str, Enum):
    """Payout providers whose settlements Dintero collects (the ``provider`` field)."""

    DINTERO_PAYOUT = "dintero_psp"
    VIPPS = "vipps"
    SWEDBANK_PAY = "payex"
    BAMBORA = "bambora"
    WALLEY = "collector"
    KLARNA = "klarna"

    @classmethod
    def parse(cls, value: str, *, field: str = "payment_providers") -> PayoutProvider:
        """
        Turn an API value or a friendly name (``"swedbank_pay"``, ``"Walley"``) into a member.

        :param value: the provider as the API spells it, or its product name.
        :param field: the parameter name used in the error message.
        """
        key = str(value).strip().lower().replace(" ", "_").replace("-", "_")
        for member in cls:
            if key in (member.value, member.name.lower()):
                return member
        raise DinteroInputError(field, f"a payout provider, one of {', '.join(m.value for m in cls)}", value)


#: The documented shape of a payout provider's API name and of a webhook event name.
API_NAME_PATTERN = re.compile(r"[a-z0-9_]+")

#: Product names -> the API names Dintero lists their settlements under. Dintero Payout's API
#: name is ``dintero_psp`` in the checkout configuration; no source confirms the settlements'
#: ``provider`` value, so both spellings are asked for (``payment_provider`` is repeatable).
PROVIDER_ALIASES: dict[str, tuple[str, ...]] = {
    "dintero_payout": ("dintero_psp", "dintero"),
    "swedbank_pay": ("payex",),
    "swedbankpay": ("payex",),
    "walley": ("collector",),
}


def _api_name(value: Any) -> str:
    return str(value).strip().lower().replace(" ", "_").replace("-", "_")


def payout_provider_names(value: Any, *, field: str = "payment_providers") -> list[str]:
    """
    The API names of one payout provider: a name of the documented shape (lowercase letters,
    digits, underscores; ``swish``, ``netaxept``) passes through, a product name becomes its API
    names (``"Swedbank Pay"`` -> ``payex``, ``"Walley"`` -> ``collector``, ``"Dintero Payout"``
    -> ``dintero_psp`` and ``dintero``).

    :param value: the provider as the API spells it, or its product name.
    :param field: the parameter name used in the error message.
    """
    key = _api_name(value) if isinstance(value, str) else ""
    if key in PROVIDER_ALIASES:
        return list(PROVIDER_ALIASES[key])
    if not API_NAME_PATTERN.fullmatch(key):
        raise DinteroInputError(
            field,
            "a payout provider: an API name of lowercase letters, digits and underscores "
            f"(e.g. {', '.join(m.value for m in PayoutProvider)}) or a product name "
            "(Dintero Payout, Swedbank Pay, Walley)",
            value,
        )
    return [key]


def webhook_event_names(value: Iterable[str], *, field: str = "events") -> list[str]:
    """
    Check webhook event names: each must have the documented shape (lowercase letters, digits,
    underscores); a name outside :data:`WEBHOOK_EVENTS` is accepted with a warning (Dintero
    documents about 40 events and validates them itself).

    :param value: event names, already split and de-duplicated.
    :param field: the parameter name used in the error message.
    """
    names = list(value)
    bad = [name for name in names if not API_NAME_PATTERN.fullmatch(name)]
    if bad:
        raise DinteroInputError(
            field, f"webhook event names of lowercase letters, digits and underscores; not: {', '.join(bad)}"
        )
    unknown = [name for name in names if name not in WEBHOOK_EVENTS]
    if unknown:
        logging.getLogger(__name__).warning(
            "Webhook event(s) %s are not among the events this provider knows (%s); Dintero decides "
            "whether it sends them",
            ", ".join(unknown),
            ", ".join(sorted(WEBHOOK_EVENTS)),
        )
    return names


class AttachmentKind(str, Enum):
    """Which settlement attachments to copy: the provider's own files, Dintero's, or both."""

    ALL = "all"
    SOURCE = "source"
    NORMALIZED = "normalized"


#: Scope names Dintero documents for API client grants (docs.dintero.com/docs/clients, the
#: endpoint pages of the operations this provider calls, the 2024 payout spec, and the partner
#: guide's grant example ``checkout:admin``). Other names of the documented shape are sent too
#: (:func:`~airflow_provider_dintero.validation.validate_scopes`); this list catches typos.
KNOWN_SCOPES: frozenset[str] = frozenset(
    [
        f"{level}:{area}"
        for level in ("admin", "write", "read")
        for area in (
            "accounts",
            "automations",
            "billing",
            "checkout",
            "customers",
            "discounts",
            "hooks",
            "insight",
            "locations",
            "receipts",
            "reports",
            "settlements",
        )
    ]
    + [
        "admin:account",
        "write:accounts:/auth/users",
        "create:account",
        "create:applicant",
        "create:accounts:auth:refresh_token",
        "create:customers:/users",
        "public:customers",
        "user:customers",
        "user:receipts",
        "admin:shopping",
        "write:checkout:/admin/session/profiles",
        "checkout:admin",
        "admin:payout",
        "read:payout",
        "write:payout",
    ]
)

#: Webhook events this provider works with (Dintero documents about 40; the API validates).
WEBHOOK_EVENTS: frozenset[str] = frozenset(
    [
        "settlement_add",
        "account_add",
        "account_update",
        "checkout_transaction",
        "checkout_authorization",
        "approval_payout_destination_update",
        "cdd_case_update",
    ]
)


class AccessToken(TypedDict, total=False):
    """Response of the token endpoints."""

    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str


class SettlementAttachment(TypedDict, total=False):
    """One file of a settlement: the provider's source report or Dintero's normalized one."""

    id: str
    key: str
    content_type: str
    extension: str
    created_by: str


class SettlementAmount(TypedDict, total=False):
    """Amounts of a settlement per currency, in the currency's smallest unit."""

    amount: int
    capture: int
    refund: int
    fee: int
    currency: str


class Settlement(TypedDict, total=False):
    """A settlement report from a payout provider (``GET /v1/accounts/{aid}/settlements``)."""

    id: str
    start_at: str
    end_at: str
    created_at: str
    updated_at: str
    settled_at: str
    email_received_at: str
    provider: str
    provider_reference: str
    attachments: list[SettlementAttachment]
    amounts: list[SettlementAmount]
    payment_status: str
    store_id: str
    payout_destination_id: str


class ReportMetadata(TypedDict, total=False):
    """A generated insight report (``GET /v1/accounts/{aid}/reports/metadata``)."""

    id: str
    report_job_id: str
    account_id: str
    content_type: str
    created_at: str
    data_from: str
    data_to: str
    schedule: str
    report_file_name: str
    custom_report_name: str
    report_config_id: str
    data_type: str
    signed_url: str


class Account(TypedDict, total=False):
    """Account settings (``GET /v1/accounts/{aid}/management/settings``) or a partner's merchant."""

    account_id: str
    partner_id: str
    active: bool
    livemode: bool
    company: dict[str, Any]
    applicant: dict[str, Any]
    paging_token: str


class ApiClient(TypedDict, total=False):
    """An API client. ``client_secret`` is present only in create and rotate responses."""

    id: str
    client_id: str
    name: str
    description: str
    callbacks: list[str]
    created_at: str
    updated_at: str
    client_secret: str


class ClientGrant(TypedDict, total=False):
    """A grant of scopes on an audience to an API client (by the client's UUID ``id``)."""

    id: str
    client_id: str
    audience: str
    scope: list[str]
    type: str
    created_at: str


class WebhookSubscription(TypedDict, total=False):
    """A webhook subscription (``/v1/accounts/{aid}/hooks/subscriptions``)."""

    id: str
    config: dict[str, Any]
    events: list[str]
    active: bool
    created_at: str
