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
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_dintero.hooks.dintero import (
    DinteroInputError,
    DinteroPartnerHook,
    WebhookSubscription,
    is_loopback_host,
    mask_secret,
    variable_api,
)
from airflow_provider_dintero.operators._base import DinteroBaseOperator, check_account_id
from airflow_provider_dintero.validation import check_names, check_text
from airflow_provider_dintero.vocabulary import webhook_event_names
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


class CreateWebhookSubscriptionOperator(DinteroBaseOperator):
    """
    Subscribe a URL to Dintero events on an account, idempotently.

    An existing subscription with the same URL and the same set of events is reused (nothing
    is created; its signing secret is left as it is). Dintero has no idempotency key, so after
    creating, the task lists again: when concurrent runs created the same subscription, every
    run keeps the oldest (by ``created_at``, then ``id``) and a run whose own copy is not that
    one deletes it and returns the oldest, so exactly one remains. Event names must have the
    documented shape (lowercase letters, digits, underscores); a name outside
    :data:`~airflow_provider_dintero.vocabulary.WEBHOOK_EVENTS` logs a warning (Dintero documents
    about 40 events and is the judge). The URL must be https
    (plain http only to a loopback host) before any request. The signing secret, when given,
    is masked and sent as ``{"type": "HMAC-SHA1", "value": ...}``; it is never returned.

    With ``generate_secret=True`` the secret comes from the Variable ``secret_variable``
    (default ``dintero_webhook_secret_<connection's account>``, which the webhook receiver at
    ``/dintero-webhooks/<that account>`` reads); when the Variable is empty a new one is made
    with :func:`secrets.token_urlsafe` and stored there first. One stored secret serves every
    subscription of the account's merchants. Re-runs are idempotent: a matching subscription
    with a stored secret is left alone. A matching subscription found while no secret was
    stored signs with a secret nobody knows, so it is replaced (deleted, then created with the
    stored secret). The secret is masked and never logged, returned or pushed to XCom.

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
    :param dintero_conn_id: the Airflow connection of the partner or merchant.
    :param kwargs: passed to :class:`~airflow.models.baseoperator.BaseOperator`.

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
        "dintero_conn_id",
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

    def execute(self, context: Any) -> WebhookSubscription:
        """
        Find or create the subscription and return it without its secret.

        :param context: the Airflow task context.
        """
        account_id = check_account_id(self.account_id)
        url = _check_url(self.url)
        events = webhook_event_names(check_names(self.events, "events", None, "webhook events"))
        if self.secret is not None and (not isinstance(self.secret, str) or not self.secret):
            raise DinteroInputError("secret", "a non-empty string (the webhook signing secret) or None")
        mask_secret(self.secret)
        if not isinstance(self.active, bool):
            raise DinteroInputError("active", "True or False", self.active)
        if not isinstance(self.generate_secret, bool):
            raise DinteroInputError("generate_secret", "True or False", self.generate_secret)
        if self.generate_secret and self.secret is not None:
            raise DinteroInputError("secret", "None when generate_secret=True (the secret is generated)")
        if self.secret_variable is not None and not self.generate_secret:
            raise DinteroInputError("secret_variable", "None unless generate_secret=True")
        hook = self.hook
        hook.resolve_account_id(account_id)
        variable_key = self._secret_variable_key(hook) if self.generate_secret else None

        wanted = set(events)

        def same(subscription: WebhookSubscription) -> bool:
            config = subscription.get("config") or {}
            return config.get("url") == url and set(subscription.get("events") or []) == wanted

        secret = self.secret
        stored = _read_secret(variable_key) if variable_key else None
        for existing in hook.list_webhook_subscriptions(account_id):
            if same(existing) and variable_key and stored is None:
                self.log.warning(
                    "Webhook subscription %s on account %s signs with a secret that is not stored in "
                    "Variable %s; replacing it with one signed by a new stored secret",
                    existing.get("id"),
                    account_id,
                    variable_key,
                )
                hook.delete_webhook_subscription(account_id, str(existing.get("id")))
                continue
            if same(existing):
                if bool(existing.get("active", True)) != self.active:
                    self.log.warning(
                        "Webhook subscription %s exists with active=%s (requested %s); left unchanged",
                        existing.get("id"),
                        existing.get("active"),
                        self.active,
                    )
                self.log.info(
                    "Account %s already has webhook subscription %s for %s on %s; nothing created",
                    account_id,
                    existing.get("id"),
                    ", ".join(events),
                    url,
                )
                return _public(existing)

        if variable_key:
            secret = stored or _store_new_secret(variable_key, account_id)

        def create(signing_secret: str | None) -> tuple[WebhookSubscription, bool]:
            config_body: dict[str, Any] = {"url": url}
            if signing_secret:
                config_body["secret"] = {"type": "HMAC-SHA1", "value": signing_secret}
            return self.create_or_existing(
                lambda: hook.create_webhook_subscription(
                    account_id, {"config": config_body, "events": events, "active": self.active}
                ),
                lambda: next((s for s in hook.list_webhook_subscriptions(account_id) if same(s)), None),
                what=f"a webhook subscription to {url}",
                account_id=account_id,
            )

        created, new = create(secret)
        if not new:  # refused as a duplicate: another run's subscription, returned as found
            return _public(created)
        for _ in range(2):
            # A concurrent first run (mapped over merchants) may have stored another secret
            # meanwhile; the receiver checks against the stored one, so sign with that.
            now_stored = _read_secret(variable_key) if variable_key else None
            if now_stored is None or now_stored == secret:
                break
            self.log.warning(
                "Variable %s changed while subscription %s was being created (another run stored "
                "a secret); re-creating the subscription signed with the stored secret",
                variable_key,
                created.get("id"),
            )
            hook.delete_webhook_subscription(account_id, str(created.get("id")))
            secret = now_stored
            created, new = create(secret)
            if not new:
                return _public(created)
        kept = self.reconcile_created(
            created,
            relist=lambda: hook.list_webhook_subscriptions(account_id),
            matches=same,
            delete=lambda sub_id: hook.delete_webhook_subscription(account_id, sub_id),
            what="webhook subscription",
            account_id=account_id,
        )
        if kept is not created:
            return _public(kept)
        self.log.info(
            "Subscribed %s to %s on account %s: subscription %s%s",
            url,
            ", ".join(events),
            account_id,
            (created or {}).get("id"),
            _signed_with(self.secret, variable_key),
        )
        return _public(created)

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
