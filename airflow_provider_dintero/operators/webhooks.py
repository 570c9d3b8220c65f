"""
Operators for Dintero webhook subscriptions (``/v1/accounts/{aid}/hooks/subscriptions``).

Example::

    from airflow_provider_dintero.operators.webhooks import CreateWebhookSubscriptionOperator

    subscribe = CreateWebhookSubscriptionOperator(
        task_id="settlement_webhook",
        account_id="{{ params.merchant_id }}",
        url="https://example.com/hooks/dintero",
        events=["settlement_add"],
        secret="{{ var.value.dintero_webhook_secret }}",
    )

With ``generate_secret=True`` the operator makes the secret itself and stores it in the Variable
the webhook receiver (:mod:`airflow_provider_dintero.webhooks`) reads::

    CreateWebhookSubscriptionOperator(
        task_id="settlement_webhook",
        account_id="{{ params.merchant_id }}",
        url="https://airflow.example.com/dintero-webhooks/P11200000",
        generate_secret=True,
    )

Rotating that secret (or recovering a lost one) is :class:`RotateWebhookSecretOperator` followed
by the subscription task mapped over the merchants: each subscription signed with another
secret than the stored one is re-signed (see ``example_dags/rotate_webhook_secret.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_dintero.auth import variable_api
from airflow_provider_dintero.exceptions import DinteroApiError, DinteroInputError, DinteroNotFoundError
from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from airflow_provider_dintero.operators._base import DUPLICATE_STATUSES, DinteroBaseOperator
from airflow_provider_dintero.redaction import mask_secret
from airflow_provider_dintero.validation import check_names, check_text, is_loopback_host, validate_account_id
from airflow_provider_dintero.vocabulary import WebhookSubscription, webhook_event_names
from airflow_provider_dintero.webhooks.assets import webhook_secret_variable

_VARIABLE_KEY = re.compile(r"^[A-Za-z0-9_.\-/]{1,250}$")


def _public(subscription: WebhookSubscription) -> WebhookSubscription:
    """The subscription without any secret value (only the secret's ``type`` stays)."""
    view: dict[str, Any] = dict(subscription or {})
    config = dict(view.get("config") or {})
    secret = config.get("secret")
    if isinstance(secret, dict):
        config["secret"] = {k: v for k, v in secret.items() if k != "value"}
    elif secret is not None:
        config["secret"] = "***"
    view["config"] = config
    return view  # type: ignore[return-value]


def _check_url(value: Any) -> str:
    """The receiver URL: https, or plain http to a loopback host (a local test receiver)."""
    url = str(check_text(value, "url"))
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise DinteroInputError("url", "an https:// URL such as https://example.com/hooks/dintero", url)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise DinteroInputError(
            "url", "https (plain http is allowed only to a loopback host such as 127.0.0.1)", url
        )
    return url


#: The forms the signing secret can take in ``config.secret`` ([I]: Dintero documents the object
#: ``{"type": "HMAC-SHA1", ...}`` but not the name of its value field). ``auto`` tries them in order.
SECRET_FORMS = ("value", "secret", "string")

#: Statuses meaning "Dintero has no subscription list" ([I]: no public page documents one).
NO_LIST_STATUSES = frozenset({404, 405})

#: The secret form that worked, per connection, for this process (``secret_form="auto"``).
_WORKING_FORM: dict[str, str] = {}


def secret_config(form: str, secret: str) -> Any:
    """
    ``config.secret`` in one of :data:`SECRET_FORMS`.

    :param form: ``value`` (``{"type": "HMAC-SHA1", "value": s}``), ``secret`` (``{"type":
        "HMAC-SHA1", "secret": s}``) or ``string`` (the bare string).
    :param secret: the signing secret.
    """
    if form == "string":
        return secret
    return {"type": "HMAC-SHA1", form: secret}


def fingerprint(secret: str) -> str:
    """
    A short HMAC of a fixed text under ``secret``: tells whether a subscription was signed with
    the stored secret without storing the secret twice.

    :param secret: the signing secret.
    """
    return hmac.new(secret.encode(), b"dintero-webhook-subscription", hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class SubscriptionMemo:
    """
    What this provider remembers of one subscription it made: its id and the fingerprint of the
    secret it was signed with, in Variable ``dintero_webhook_subscription_<aid>_<hash of url and
    events>``. It lets a re-run see that a subscription is signed with another secret than the
    stored one (a rotation), and find the subscription by id where Dintero has no list endpoint.

    :param account_id: the subscription's account.
    :param url: the receiver URL.
    :param events: the event names.
    """

    account_id: str
    url: str
    events: tuple[str, ...]

    @property
    def key(self) -> str:
        """The Variable key."""
        digest = hashlib.sha256(json.dumps([self.url, sorted(self.events)]).encode()).hexdigest()[:12]
        return f"dintero_webhook_subscription_{self.account_id}_{digest}"

    def read(self) -> dict[str, Any]:
        """The remembered ``{"id", "fingerprint"}`` (empty when nothing is remembered)."""
        raw = variable_api().get(self.key, None)
        try:
            found = json.loads(raw) if isinstance(raw, str) else {}
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}

    def save(self, subscription_id: str, secret: str | None) -> None:
        """
        Remember the subscription and its secret's fingerprint.

        :param subscription_id: the subscription's id.
        :param secret: the secret it is signed with (``None``: unsigned).
        """
        value = {
            "id": subscription_id,
            "url": self.url,
            "events": sorted(self.events),
            "fingerprint": fingerprint(secret) if secret else None,
        }
        variable_api().set(
            self.key,
            json.dumps(value),
            description=f"Dintero webhook subscription {subscription_id} of account {self.account_id}",
        )


class CreateWebhookSubscriptionOperator(DinteroBaseOperator):
    """
    Subscribe a URL to Dintero events on an account, idempotently, signed with the current secret.

    An existing subscription with the same URL and the same set of events is reused when it is
    signed with the wanted secret (as remembered in a Variable, see :class:`SubscriptionMemo`);
    one signed with another secret (after a rotation, or one this provider did not make) is
    re-signed: a new subscription is created with the secret, then the old one is deleted. After
    creating, the task lists again: when concurrent runs created the same subscription, every run
    keeps the oldest (by ``created_at``, then ``id``) and a run whose own copy is not that one
    deletes it, so exactly one remains. Where Dintero answers the list with 404 or 405, the
    subscription is found by the id remembered in the Variable, so nothing is created twice.
    Event names must have the documented shape (lowercase letters, digits, underscores); a name
    outside :data:`~airflow_provider_dintero.vocabulary.WEBHOOK_EVENTS` logs a warning. The URL
    must be https (plain http only to a loopback host) before any request. The secret is masked
    and never logged, returned or pushed to XCom.

    With ``generate_secret=True`` the secret comes from the Variable ``secret_variable``
    (default ``dintero_webhook_secret_<connection's account>``, which the webhook receiver at
    ``/dintero-webhooks/<that account>`` reads); when the Variable is empty a new one is made
    with :func:`secrets.token_urlsafe` and stored there first. One stored secret serves every
    subscription of the account's merchants.

    The request field that carries the secret is not documented by Dintero (``secret_form``):
    ``auto`` sends ``{"type": "HMAC-SHA1", "value": ...}`` and, when Dintero refuses that form or
    answers without ``config.secret`` (it ignored the field), ``{"type": "HMAC-SHA1", "secret":
    ...}`` and then the bare string, deleting any subscription that came out unsigned.

    :param account_id: the merchant (or the connection's own account). Templated.
    :param url: the receiver's URL. Templated.
    :param events: event names (default ``("settlement_add",)``), or one comma-separated
        string. Templated.
    :param secret: the HMAC-SHA1 signing secret Dintero signs deliveries with. Templated (the
        field name makes Airflow redact it in rendered fields).
    :param active: whether deliveries are sent.
    :param generate_secret: make (or reuse) the signing secret in ``secret_variable`` instead of
        passing ``secret``.
    :param secret_variable: the Variable key for ``generate_secret`` (default
        ``dintero_webhook_secret_<the connection's account id>``). Templated.
    :param secret_form: ``auto`` (default), ``value``, ``secret`` or ``string`` (unverified, see
        above).
    :param dintero_conn_id: the Airflow connection of the partner or merchant.
    :param kwargs: passed to :class:`~airflow.models.baseoperator.BaseOperator`.

    Returns the subscription without any secret value (only the secret's ``type``).

    Example::

        CreateWebhookSubscriptionOperator(
            task_id="settlement_webhook",
            account_id="T11200001",
            url="https://example.com/hooks/dintero",
        )
    """

    template_fields: Sequence[str] = (
        "account_id",
        "url",
        "events",
        "secret",
        "secret_variable",
    )

    def __init__(
        self,
        *,
        account_id: str,
        url: str,
        events: Sequence[str] | str = ("settlement_add",),
        secret: str | None = None,
        active: bool = True,
        generate_secret: bool = False,
        secret_variable: str | None = None,
        secret_form: str = "auto",
        dintero_conn_id: str = DinteroPartnerHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(dintero_conn_id=dintero_conn_id, **kwargs)
        self.account_id = account_id
        self.url = url
        self.events = events
        self.secret = secret
        self.active = active
        self.generate_secret = generate_secret
        self.secret_variable = secret_variable
        self.secret_form = secret_form

    def execute(self, context: Any) -> WebhookSubscription:
        """
        Find, re-sign or create the subscription and return it without its secret.

        :param context: the Airflow task context.
        """
        memo, variable_key = self._checked()
        secret = self._secret(variable_key, memo.account_id)
        remembered = memo.read()
        existing, listed = self._find(memo, remembered)
        if existing and self._signed_as_wanted(existing[0], remembered, secret):
            self._log_reused(existing[0], memo)
            return _public(existing[0])
        created = self._create(memo, secret, replacing=existing)
        if created is None:  # refused as a duplicate: another run's subscription exists
            return _public(self._find(memo, remembered)[0][0])
        created, secret = self._follow_stored_secret(created, memo, secret, variable_key)
        kept = self._reconcile(created, memo) if listed else created
        memo.save(str(kept.get("id")), secret)
        self.log.info(
            "Subscribed %s to %s on account %s: subscription %s%s",
            memo.url,
            ", ".join(memo.events),
            memo.account_id,
            kept.get("id"),
            _signed_with(secret, variable_key),
        )
        return _public(kept)

    # ---------------------------------------------------------------- steps

    def _checked(self) -> tuple[SubscriptionMemo, str | None]:
        """Every argument checked before any request; the memo of the wanted subscription."""
        account_id = validate_account_id(self.account_id)
        url = _check_url(self.url)
        events = webhook_event_names(check_names(self.events, "events", None, "webhook events"))
        if self.secret is not None and (not isinstance(self.secret, str) or not self.secret):
            raise DinteroInputError("secret", "a non-empty string (the webhook signing secret) or None")
        mask_secret(self.secret)
        for name in ("active", "generate_secret"):
            if not isinstance(getattr(self, name), bool):
                raise DinteroInputError(name, "True or False", getattr(self, name))
        if self.generate_secret and self.secret is not None:
            raise DinteroInputError("secret", "None when generate_secret=True (the secret is generated)")
        if self.secret_variable is not None and not self.generate_secret:
            raise DinteroInputError("secret_variable", "None unless generate_secret=True")
        if self.secret_form != "auto" and self.secret_form not in SECRET_FORMS:
            raise DinteroInputError(
                "secret_form", f"auto or one of {', '.join(SECRET_FORMS)}", self.secret_form
            )
        self.hook.resolve_account_id(account_id)
        variable_key = self._secret_variable_key(self.hook) if self.generate_secret else None
        return SubscriptionMemo(account_id, url, tuple(events)), variable_key

    def _secret(self, variable_key: str | None, account_id: str) -> str | None:
        """The secret to sign with: given, stored, or generated and stored now."""
        if variable_key is None:
            return self.secret
        return _read_secret(variable_key) or _store_new_secret(variable_key, account_id)

    def _find(
        self, memo: SubscriptionMemo, remembered: dict[str, Any]
    ) -> tuple[list[WebhookSubscription], bool]:
        """
        The matching subscriptions, oldest first, and whether Dintero could list them (else the
        remembered id was read).
        """
        hook = self.hook
        try:
            found = [s for s in hook.list_webhook_subscriptions(memo.account_id) if _same(s, memo)]
            return sorted(found, key=_created_key), True
        except DinteroApiError as error:
            if error.status not in NO_LIST_STATUSES:
                raise
            status = error.status
        self.log.warning(
            "Dintero answered the subscription list of %s with %s; looking the subscription up by "
            "the id this provider remembered (Variable %s)",
            memo.account_id,
            status,
            memo.key,
        )
        remembered_id = remembered.get("id")
        if not isinstance(remembered_id, str) or not remembered_id:
            return [], False
        try:
            subscription = hook.get_webhook_subscription(memo.account_id, remembered_id)
        except DinteroNotFoundError:
            return [], False
        return ([subscription] if _same(subscription, memo) else []), False

    def _signed_as_wanted(
        self, subscription: WebhookSubscription, remembered: dict[str, Any], secret: str | None
    ) -> bool:
        if secret is None:
            return True
        same_id = remembered.get("id") == subscription.get("id")
        if same_id and remembered.get("fingerprint") == fingerprint(secret):
            return True
        self.log.warning(
            "Webhook subscription %s to %s is signed with %s; re-signing it with the current secret",
            subscription.get("id"),
            (subscription.get("config") or {}).get("url"),
            "another secret" if same_id else "a secret this provider did not record",
        )
        return False

    def _log_reused(self, subscription: WebhookSubscription, memo: SubscriptionMemo) -> None:
        if bool(subscription.get("active", True)) != self.active:
            self.log.warning(
                "Webhook subscription %s exists with active=%s (requested %s); left unchanged",
                subscription.get("id"),
                subscription.get("active"),
                self.active,
            )
        self.log.info(
            "Account %s already has webhook subscription %s for %s on %s; nothing created",
            memo.account_id,
            subscription.get("id"),
            ", ".join(memo.events),
            memo.url,
        )

    def _create(
        self, memo: SubscriptionMemo, secret: str | None, *, replacing: list[WebhookSubscription]
    ) -> WebhookSubscription | None:
        """
        Create the subscription; then delete those it replaces (re-signing). When Dintero refuses
        the create as a duplicate, a replacement deletes the old ones first and creates again; a
        first create returns ``None`` (another run's subscription exists).
        """
        try:
            created = self._create_signed(memo, secret)
        except DinteroApiError as error:
            if error.status not in DUPLICATE_STATUSES or not _mentions(error, "duplicate", "exist"):
                raise
            if not replacing:
                return None
            self._delete_all(memo, replacing)
            return self._create_signed(memo, secret)
        self._delete_all(memo, replacing)
        return created

    def _create_signed(self, memo: SubscriptionMemo, secret: str | None) -> WebhookSubscription:
        """One create, trying the secret's forms (``secret_form="auto"``) until one is kept."""
        hook = self.hook
        config: dict[str, Any] = {"url": memo.url}
        body = {"config": config, "events": list(memo.events), "active": self.active}
        if secret is None:
            return hook.create_webhook_subscription(memo.account_id, body)
        forms = self._forms()
        for number, form in enumerate(forms, start=1):
            config["secret"] = secret_config(form, secret)
            try:
                created = hook.create_webhook_subscription(memo.account_id, body)
            except DinteroApiError as error:
                if number == len(forms) or error.status != 400 or not _mentions(error, "secret"):
                    raise
                self.log.warning(
                    "Dintero refused config.secret as %s; trying the next form", _FORM_WORDS[form]
                )
                continue
            if (created.get("config") or {}).get("secret") is not None or number == len(forms):
                _WORKING_FORM[self.dintero_conn_id] = form
                return created
            self.log.warning(
                "Dintero created subscription %s without a signing secret from config.secret as %s; "
                "deleting it and trying the next form",
                created.get("id"),
                _FORM_WORDS[form],
            )
            hook.delete_webhook_subscription(memo.account_id, str(created.get("id")))
        raise AssertionError("unreachable")  # pragma: no cover

    def _forms(self) -> tuple[str, ...]:
        if self.secret_form != "auto":
            return (self.secret_form,)
        known = _WORKING_FORM.get(self.dintero_conn_id)
        return (known, *(f for f in SECRET_FORMS if f != known)) if known else SECRET_FORMS

    def _delete_all(self, memo: SubscriptionMemo, subscriptions: list[WebhookSubscription]) -> None:
        for old in subscriptions:
            self.hook.delete_webhook_subscription(memo.account_id, str(old.get("id")))

    def _follow_stored_secret(
        self,
        created: WebhookSubscription,
        memo: SubscriptionMemo,
        secret: str | None,
        variable_key: str | None,
    ) -> tuple[WebhookSubscription, str | None]:
        """
        A concurrent first run (mapped over merchants) may have stored another secret while this
        one created; the receiver checks against the stored one, so re-sign with that.
        """
        for _ in range(2):
            stored = _read_secret(variable_key) if variable_key else None
            if stored is None or stored == secret:
                break
            self.log.warning(
                "Variable %s changed while subscription %s was being created (another run stored "
                "a secret); re-creating the subscription signed with the stored secret",
                variable_key,
                created.get("id"),
            )
            secret = stored
            created = self._create(memo, secret, replacing=[created]) or created
        return created, secret

    def _reconcile(self, created: WebhookSubscription, memo: SubscriptionMemo) -> WebhookSubscription:
        return self.reconcile_created(
            created,
            relist=lambda: self.hook.list_webhook_subscriptions(memo.account_id),
            matches=lambda s: _same(s, memo),
            delete=lambda sub_id: self.hook.delete_webhook_subscription(memo.account_id, sub_id),
            what="webhook subscription",
            account_id=memo.account_id,
        )

    def _secret_variable_key(self, hook: DinteroPartnerHook) -> str:
        """The Variable that holds the generated secret (checked before any request)."""
        key = self.secret_variable
        if key is None:
            return webhook_secret_variable(hook.account_id)
        if not isinstance(key, str) or not _VARIABLE_KEY.fullmatch(key):
            raise DinteroInputError(
                "secret_variable", "a Variable key of letters, digits, _ . - / (1 to 250)", key
            )
        return key


class RotateWebhookSecretOperator(DinteroBaseOperator):
    """
    Rotate (or recover) the webhook signing secret of an account without losing deliveries.

    The current secret in ``secret_variable`` is kept in ``<secret_variable>_previous`` with an
    expiry ``previous_valid_for`` from now, and a new secret is stored; the receiver accepts
    deliveries signed with either until the expiry. Run it once, then
    :class:`CreateWebhookSubscriptionOperator` (``generate_secret=True``) mapped over every
    merchant: each subscription still signed with the previous secret is re-signed. When the
    Variable is empty (the secret was lost), a new secret is stored and nothing is kept as
    previous: the same mapped run re-signs every subscription. A retry of the same task in the
    same DAG run does not rotate twice. Nothing is sent to Dintero by this operator.

    :param account_id: the account in the receiver's path (default: the connection's). Templated.
    :param secret_variable: the Variable key (default ``dintero_webhook_secret_<account_id>``).
        Templated.
    :param previous_valid_for: how long the previous secret still verifies deliveries (default
        one day: Dintero retries a delivery for hours, and re-signing every merchant takes a run).
    :param dintero_conn_id: the Airflow connection of the partner or merchant.
    :param kwargs: passed to :class:`~airflow.models.baseoperator.BaseOperator`.

    Returns ``{"secret_variable", "previous_valid_until" (ISO 8601 or None), "recovered"}`` (no
    secret).
    """

    template_fields: Sequence[str] = ("account_id", "secret_variable")

    def __init__(
        self,
        *,
        account_id: str | None = None,
        secret_variable: str | None = None,
        previous_valid_for: timedelta = timedelta(days=1),
        dintero_conn_id: str = DinteroPartnerHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(dintero_conn_id=dintero_conn_id, **kwargs)
        self.account_id = account_id
        self.secret_variable = secret_variable
        self.previous_valid_for = previous_valid_for

    def execute(self, context: Any) -> dict[str, Any]:
        """
        Keep the current secret as the previous one, store a new one; return where and until when.

        :param context: the Airflow task context (its ``run_id`` makes a retry a no-op).
        """
        if not isinstance(self.previous_valid_for, timedelta) or not (
            timedelta(0) < self.previous_valid_for <= timedelta(days=30)
        ):
            raise DinteroInputError(
                "previous_valid_for", "a timedelta between 0 and 30 days", self.previous_valid_for
            )
        account_id = validate_account_id(self.account_id) if self.account_id else self.hook.account_id
        key = self.secret_variable or webhook_secret_variable(account_id)
        if not _VARIABLE_KEY.fullmatch(key):
            raise DinteroInputError(
                "secret_variable", "a Variable key of letters, digits, _ . - / (1 to 250)", key
            )
        previous_key, rotation = f"{key}_previous", str((context or {}).get("run_id") or "")
        kept = _previous_record(previous_key)
        if rotation and kept.get("rotation") == rotation:
            self.log.info("Secret in Variable %s was already rotated by this run; nothing changed", key)
            return {
                "secret_variable": key,
                "previous_valid_until": kept.get("expires_at"),
                "recovered": False,
            }
        current = _read_secret(key)
        until = None
        if current is not None:
            until = (datetime.now(timezone.utc) + self.previous_valid_for).isoformat()
            record = {"secret": current, "expires_at": until, "rotation": rotation}
            variable_api().set(
                previous_key,
                json.dumps(record),
                description=f"Previous Dintero webhook signing secret of {account_id}, valid until {until}",
            )
        _store_new_secret(key, account_id)
        self.log.info(
            "Stored a new webhook signing secret in Variable %s%s; now re-sign every subscription "
            "(CreateWebhookSubscriptionOperator with generate_secret=True for each merchant)",
            key,
            f"; the previous one verifies deliveries until {until}"
            if until
            else " (none was stored: every subscription signed with the lost secret must be re-signed)",
        )
        return {"secret_variable": key, "previous_valid_until": until, "recovered": current is None}


# ---------------------------------------------------------------- helpers

_FORM_WORDS = {
    "value": '{"type": "HMAC-SHA1", "value": ...}',
    "secret": '{"type": "HMAC-SHA1", "secret": ...}',
    "string": "a string",
}


def _same(subscription: WebhookSubscription, memo: SubscriptionMemo) -> bool:
    config = subscription.get("config") or {}
    return config.get("url") == memo.url and set(subscription.get("events") or []) == set(memo.events)


def _created_key(subscription: WebhookSubscription) -> tuple[str, str]:
    return str(subscription.get("created_at") or ""), str(subscription.get("id") or "")


def _mentions(error: DinteroApiError, *words: str) -> bool:
    text = f"{error.code or ''} {error.api_message or ''} {error.errors}".lower()
    return any(word in text for word in words)


def _previous_record(key: str) -> dict[str, Any]:
    raw = variable_api().get(key, None)
    try:
        record = json.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        return {}
    if isinstance(record, dict) and isinstance(record.get("secret"), str):
        mask_secret(record["secret"])
        return record
    return {}


def _signed_with(secret: str | None, variable_key: str | None) -> str:
    """Words for the log about how deliveries are signed (never the secret)."""
    if variable_key:
        return f" (signed with the secret stored in Variable {variable_key})"
    return " (signed with the given secret)" if secret else ""


def _read_secret(key: str) -> str | None:
    """The secret stored in Variable ``key`` (masked), or ``None``."""
    value = variable_api().get(key, None)
    if not isinstance(value, str) or not value:
        return None
    mask_secret(value)
    return value


def _store_new_secret(key: str, account_id: str) -> str:
    """
    Generate a signing secret, store it in Variable ``key`` and return what the Variable holds.

    Reading back after writing, and again after creating the subscription (in ``execute``), makes
    concurrent first runs (mapped over merchants) converge on the last secret written.
    """
    secret = secrets.token_urlsafe(32)
    mask_secret(secret)
    variable_api().set(
        key, secret, description=f"Signing secret of Dintero webhook subscriptions for account {account_id}"
    )
    return _read_secret(key) or secret
