"""
Operators for Dintero checkout payment profiles (``/v1/admin/session/profiles``).

Example::

    from airflow_provider_dintero.operators.payment_profiles import (
        CreatePaymentProfileOperator,
        UpdatePaymentProfileOperator,
    )

    create = CreatePaymentProfileOperator(
        task_id="profile",
        account_id="{{ params.merchant_id }}",
        profile={
            "profile_id": "default",
            "description": "Default payment profile",
            "configuration": {"active_payment_types": {"enabled": True}},
        },
    )
    update = UpdatePaymentProfileOperator(
        task_id="auto_capture",
        account_id="{{ params.merchant_id }}",
        profile_id="default",
        changes={"configuration": {"auto_capture": True}},
        dry_run=True,
    )
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_dintero.exceptions import DinteroNotFoundError
from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from airflow_provider_dintero.operators._base import DinteroBaseOperator
from airflow_provider_dintero.validation import (
    READ_ONLY_PROFILE_FIELDS,
    check_text,
    validate_account_id,
    validate_choice,
    validate_flag,
    validate_payment_profile,
    validate_profile_changes,
)

IfExists = Literal["reuse", "fail"]
IF_EXISTS_CHOICES: tuple[IfExists, ...] = ("reuse", "fail")

_MISSING = "<absent>"


def deep_merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """
    Return ``base`` with ``changes`` applied: objects merge key by key, anything else
    (scalars, lists, ``None``) replaces the old value. Neither input is modified.

    :param base: the current document.
    :param changes: the partial document to apply.
    """
    merged: dict[str, Any] = json.loads(json.dumps(dict(base)))
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = json.loads(json.dumps(value))
    return merged


def diff_fields(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """
    List the leaves that differ between two documents as ``(dotted path, old, new)``.

    A field missing on one side shows as ``"<absent>"``.

    :param old: the document before.
    :param new: the document after.
    :param prefix: the dotted path of ``old``/``new`` inside the root document.
    """
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[tuple[str, Any, Any]] = []
        for key in list(old) + [k for k in new if k not in old]:
            path = f"{prefix}.{key}" if prefix else str(key)
            out.extend(diff_fields(old.get(key, _MISSING), new.get(key, _MISSING), path))
        return out
    return [] if old == new else [(prefix, old, new)]


def _writable(profile: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in profile.items() if k not in READ_ONLY_PROFILE_FIELDS}


class CreatePaymentProfileOperator(DinteroBaseOperator):
    """
    Create a checkout payment profile, idempotently on its ``profile_id``.

    When a profile with the same ``profile_id`` exists, nothing is sent: with
    ``if_exists="reuse"`` the existing profile is returned (fields that differ from the
    requested body are logged; use :class:`UpdatePaymentProfileOperator` to change them), with
    ``if_exists="fail"`` the task fails. Without ``profile_id`` Dintero picks one and every
    run creates a new profile. Dintero validates the configuration; its message, naming the
    field, is the task's error.

    :param account_id: the merchant (or the connection's own account). Templated.
    :param profile: the profile: ``description``, ``configuration`` and (for idempotency)
        ``profile_id``. Templated.
    :param if_exists: ``"reuse"`` (default) or ``"fail"``.
    :param dintero_conn_id: the Airflow connection of the partner or merchant.
    :param kwargs: passed to :class:`~airflow.models.baseoperator.BaseOperator`.

    Example::

        CreatePaymentProfileOperator(
            task_id="profile",
            account_id="T11200001",
            profile={
                "profile_id": "default",
                "description": "Default payment profile",
                "configuration": {"active_payment_types": {"enabled": True}},
            },
        )
    """

    template_fields: Sequence[str] = ("account_id", "profile")
    template_fields_renderers = {"profile": "json"}

    def __init__(
        self,
        *,
        account_id: str,
        profile: dict[str, Any],
        if_exists: IfExists = "reuse",
        dintero_conn_id: str = DinteroPartnerHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(dintero_conn_id=dintero_conn_id, **kwargs)
        self.account_id = account_id
        self.profile = profile
        self.if_exists = if_exists

    def execute(self, context: Any) -> dict[str, Any]:
        """
        Create the profile (or find it) and return it.

        :param context: the Airflow task context.
        """
        account_id = validate_account_id(self.account_id)
        body = validate_payment_profile(self.profile)
        validate_choice(self.if_exists, "if_exists", IF_EXISTS_CHOICES)
        self.hook.resolve_account_id(account_id)
        profile_id = body.get("profile_id")
        if not profile_id:
            self.log.warning(
                "The profile has no profile_id: Dintero picks one, and each run creates a new profile"
            )
        existing = _find_profile(self.hook, account_id, profile_id)
        if existing is not None:
            return self._reuse(existing, body, account_id)
        return self._create(body, account_id)

    def _reuse(self, existing: dict[str, Any], body: dict[str, Any], account_id: str) -> dict[str, Any]:
        """Return the existing profile, logging how it differs from ``body`` (or fail with ``"fail"``)."""
        profile_id = existing.get("profile_id")
        if self.if_exists == "fail":
            raise AirflowException(
                f"Payment profile {profile_id} already exists on account {account_id} and "
                "if_exists='fail'; nothing was created"
            )
        differences = diff_fields(_writable(existing), deep_merge(_writable(existing), body))
        if differences:
            self.log.warning(
                "Payment profile %s already exists on account %s and differs from the requested "
                "body in %s; left unchanged (use UpdatePaymentProfileOperator to change it)",
                profile_id,
                account_id,
                ", ".join(path for path, _, _ in differences),
            )
        else:
            self.log.info(
                "Payment profile %s already exists on account %s; nothing created", profile_id, account_id
            )
        return existing

    def _create(self, body: dict[str, Any], account_id: str) -> dict[str, Any]:
        """Create the profile; a duplicate Dintero refuses is the existing one (``"reuse"`` only)."""
        hook = self.hook
        profile_id = body.get("profile_id")
        created, new = self.create_or_existing(
            lambda: hook.create_payment_profile(account_id, body),
            # with if_exists='fail' a refused duplicate stays an error
            lambda: _find_profile(hook, account_id, profile_id) if self.if_exists == "reuse" else None,
            what=f"payment profile {profile_id}",
            account_id=account_id,
        )
        if new:
            self.log.info(
                "Created payment profile %s on account %s", (created or {}).get("profile_id"), account_id
            )
        return created


def _find_profile(hook: DinteroPartnerHook, account_id: str, profile_id: Any) -> dict[str, Any] | None:
    """The payment profile with ``profile_id`` (on any page of the list), or ``None``."""
    if not profile_id:
        return None
    return next(
        (p for p in hook.list_payment_profiles(account_id) if p.get("profile_id") == profile_id), None
    )


class ListPaymentProfilesOperator(DinteroBaseOperator):
    """
    Return the checkout payment profiles of an account.

    :param account_id: the merchant (or the connection's own account). Templated.
    :param dintero_conn_id: the Airflow connection of the partner or merchant.
    :param kwargs: passed to :class:`~airflow.models.baseoperator.BaseOperator`.

    Example::

        ListPaymentProfilesOperator(task_id="profiles", account_id="{{ params.merchant_id }}")
    """

    template_fields: Sequence[str] = ("account_id",)

    def __init__(
        self,
        *,
        account_id: str,
        dintero_conn_id: str = DinteroPartnerHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(dintero_conn_id=dintero_conn_id, **kwargs)
        self.account_id = account_id

    def execute(self, context: Any) -> list[dict[str, Any]]:
        """
        List the profiles.

        :param context: the Airflow task context.
        """
        account_id = validate_account_id(self.account_id)
        profiles = self.hook.list_payment_profiles(account_id)
        self.log.info(
            "Account %s has %s payment profile(s): %s",
            account_id,
            len(profiles),
            ", ".join(str(p.get("profile_id")) for p in profiles) or "none",
        )
        return profiles


class UpdatePaymentProfileOperator(DinteroBaseOperator):
    """
    Change some fields of a payment profile: read it, deep-merge ``changes``, write it back.

    Dintero's PUT replaces the whole profile, so the operator reads the current profile,
    applies ``changes`` (objects merge key by key; lists and scalars replace), logs each field
    that changes as a dotted path (``configuration.auto_capture: False -> True``) and sends the
    full profile. Nothing is sent when nothing changes, or with ``dry_run=True``.

    Returns ``{"profile_id", "changed_fields": [dotted paths], "dry_run", "updated",
    "profile"}`` (the profile as written, or as it would be written on a dry run).

    :param account_id: the merchant (or the connection's own account). Templated.
    :param profile_id: the profile to change. Templated.
    :param changes: the partial profile to apply. Templated.
    :param dry_run: only report the changes.
    :param dintero_conn_id: the Airflow connection of the partner or merchant.
    :param kwargs: passed to :class:`~airflow.models.baseoperator.BaseOperator`.

    Example::

        UpdatePaymentProfileOperator(
            task_id="auto_capture",
            account_id="T11200001",
            profile_id="default",
            changes={"configuration": {"auto_capture": True}},
        )
    """

    template_fields: Sequence[str] = ("account_id", "profile_id", "changes")
    template_fields_renderers = {"changes": "json"}

    def __init__(
        self,
        *,
        account_id: str,
        profile_id: str,
        changes: dict[str, Any],
        dry_run: bool = False,
        dintero_conn_id: str = DinteroPartnerHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(dintero_conn_id=dintero_conn_id, **kwargs)
        self.account_id = account_id
        self.profile_id = profile_id
        self.changes = changes
        # ``BaseOperator.dry_run`` is a method: keep the flag under another attribute name.
        self.is_dry_run = dry_run

    def execute(self, context: Any) -> dict[str, Any]:
        """
        Apply the changes and return what changed.

        :param context: the Airflow task context.
        """
        account_id = validate_account_id(self.account_id)
        profile_id = str(check_text(self.profile_id, "profile_id"))
        changes = validate_profile_changes(self.changes)
        validate_flag(self.is_dry_run, "dry_run")
        self.hook.resolve_account_id(account_id)
        current = self._current(account_id, profile_id)
        after = deep_merge(_writable(current), changes)
        differences = diff_fields(_writable(current), after)
        profile, updated = self._write(account_id, profile_id, current, after, differences)
        return {
            "profile_id": profile_id,
            "changed_fields": [path for path, _, _ in differences],
            "dry_run": self.is_dry_run,
            "updated": updated,
            "profile": profile,
        }

    def _write(
        self,
        account_id: str,
        profile_id: str,
        current: dict[str, Any],
        after: dict[str, Any],
        differences: list[tuple[str, Any, Any]],
    ) -> tuple[dict[str, Any], bool]:
        """
        Send ``after`` unless nothing changes or on a dry run; return the profile (as written, as
        it is, or as it would be written) and whether it was sent.
        """
        for path, old, new in differences:
            self.log.info("Payment profile %s: %s: %r -> %r", profile_id, path, old, new)
        if not differences:
            self.log.info(
                "Payment profile %s on account %s already has these values; nothing sent",
                profile_id,
                account_id,
            )
            return current, False
        if self.is_dry_run:
            self.log.info(
                "Dry run: payment profile %s on account %s would change in %s field(s); nothing sent",
                profile_id,
                account_id,
                len(differences),
            )
            return after, False
        written = self.hook.update_payment_profile(account_id, profile_id, after)
        self.log.info(
            "Updated payment profile %s on account %s (%s field(s) changed)",
            profile_id,
            account_id,
            len(differences),
        )
        return written, True

    def _current(self, account_id: str, profile_id: str) -> dict[str, Any]:
        """The profile as Dintero has it now; a missing one fails naming the profile and the account."""
        try:
            return self.hook.get_payment_profile(account_id, profile_id) or {}
        except DinteroNotFoundError as exc:
            raise DinteroNotFoundError(
                f"Payment profile {profile_id} does not exist on account {account_id}: {exc}",
                status=exc.status,
                code=exc.code,
                api_message=exc.api_message,
                account_id=account_id,
            ) from None
