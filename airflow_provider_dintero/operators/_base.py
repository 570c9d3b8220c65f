"""
Shared plumbing of the Dintero operators and transfers: the base class with the connection id
and the hook, and the create-or-reuse and reconcile steps of the idempotent create operators.

This module is private; import the operators from their own modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, TypeVar

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_dintero.exceptions import DinteroApiError, DinteroNotFoundError
from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from airflow_provider_dintero.settlements import parse_timestamp

#: A Dintero resource as the hook returns it (a ``TypedDict`` such as ``ClientGrant``).
Resource = TypeVar("Resource", bound=Mapping[str, object])

_LATEST = datetime.max.replace(tzinfo=timezone.utc)

#: The statuses Dintero may refuse a create of something that already exists with: 400 (what
#: it answers today for a duplicate client_id) or 409 (which its docs also allow).
DUPLICATE_STATUSES = frozenset({400, 409})


def existing_after_refusal(error: DinteroApiError, find: Callable[[], Resource | None]) -> Resource | None:
    """
    The object that already exists when a create was refused as a duplicate (400 or 409):
    ``find()`` (a fresh list), or ``None`` when the status is another or nothing matches (the
    refusal was about something else, and the caller re-raises it).

    :param error: what the create answered.
    :param find: looks the object up again; a listing error counts as not found.
    """
    if error.status not in DUPLICATE_STATUSES:
        return None
    try:
        return find()
    except DinteroApiError:
        return None


class DinteroBaseOperator(BaseOperator):
    """
    Base of the Dintero operators: holds the connection id and builds the hook lazily.

    :param dintero_conn_id: the Airflow connection (type ``dintero``) of a partner, or of a
        merchant acting on itself.
    :param kwargs: passed to :class:`~airflow.models.baseoperator.BaseOperator`.
    """

    ui_color = "#e6f0ff"

    def __init__(self, *, dintero_conn_id: str = DinteroPartnerHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dintero_conn_id = dintero_conn_id

    @cached_property
    def hook(self) -> DinteroPartnerHook:
        """The Dintero hook of ``dintero_conn_id``."""
        return DinteroPartnerHook(dintero_conn_id=self.dintero_conn_id)

    def create_or_existing(
        self,
        create: Callable[[], Resource],
        find: Callable[[], Resource | None],
        *,
        what: str,
        account_id: str,
    ) -> tuple[Resource, bool]:
        """
        Run ``create`` and return ``(the new object, True)``; when Dintero refuses it as a
        duplicate (400 or 409) and ``find`` (a fresh lookup) returns the object that exists,
        return ``(that object, False)`` (see :func:`existing_after_refusal`): it is not this
        run's, so the caller neither reconciles nor deletes it. Any other error is raised.

        :param create: sends the create and returns the new object.
        :param find: looks the same object up again.
        :param what: what is created, for the log.
        :param account_id: the account, for the log.
        """
        try:
            return create(), True
        except DinteroApiError as exc:
            existing = existing_after_refusal(exc, find)
            if existing is None:
                raise
            self.log.info(
                "Dintero refused to create %s on account %s as a duplicate (HTTP %s); using the "
                "existing one (%s)",
                what,
                account_id,
                exc.status,
                existing.get("id") or existing.get("profile_id"),
            )
            return existing, False

    def reconcile_created(
        self,
        created: Resource,
        *,
        relist: Callable[[], Iterable[Resource]],
        matches: Callable[[Resource], bool],
        delete: Callable[[str], object],
        what: str,
        account_id: str,
    ) -> Resource:
        """
        After a create, make concurrent runs that created the same thing converge on one copy.

        Dintero has no idempotency key, so two runs that both listed before either created
        both create. Each run therefore lists again after creating and keeps the
        :func:`oldest` matching resource, a choice every run makes alike. When that keeper is
        not ``created``, this run deletes ``created`` (its duplicate) and returns the keeper;
        otherwise it returns ``created`` and leaves the other copies to their own runs.

        When the second listing fails, ``created`` is kept (with a warning): a possible
        duplicate is better than failing a run whose create went through.

        :param created: what this run created (its answer from Dintero).
        :param relist: lists the account's resources of this kind.
        :param matches: whether a listed resource is the same thing as ``created`` (the
            operator's match rule).
        :param delete: deletes a resource by its ``id``.
        :param what: the kind of resource, for logs and errors, e.g. ``"webhook subscription"``.
        :param account_id: the account, for logs and errors.
        """
        own_id = str(created.get("id"))
        try:
            listed = [item for item in relist() if matches(item)]
        except DinteroApiError as exc:
            self.log.warning(
                "Created %s %s on account %s but could not list again to check for a duplicate made "
                "by a concurrent run (%s); keeping it",
                what,
                own_id,
                account_id,
                exc,
            )
            return created
        keeper = oldest([created, *(item for item in listed if str(item.get("id")) != own_id)])
        if str(keeper.get("id")) == own_id:
            return created
        try:
            delete(own_id)
        except DinteroNotFoundError:
            pass  # already gone: nothing left to remove
        except DinteroApiError as exc:
            raise DinteroApiError(
                f"A concurrent run created the same {what} ({keeper.get('id')}) on account {account_id} "
                f"before this run, and removing this run's duplicate {own_id} failed: {exc}. Delete "
                f"{what} {own_id} by hand; {keeper.get('id')} is the one to keep",
                status=exc.status,
                account_id=account_id,
            ) from None
        self.log.warning(
            "A concurrent run created the same %s first (%s, created at %s) on account %s; this run's "
            "duplicate %s was removed and the earlier one is reused",
            what,
            keeper.get("id"),
            keeper.get("created_at"),
            account_id,
            own_id,
        )
        return keeper


def oldest(items: Iterable[Resource]) -> Resource:
    """
    The item every concurrent run picks as the one to keep: the oldest by (``created_at``, ``id``).

    ``created_at`` is compared as a point in time (ISO-8601, ``Z`` or an offset); an item
    without a readable ``created_at`` sorts after every dated one. Ties go to the smaller
    ``id``, so the choice never depends on listing order.

    :param items: at least one resource.
    :raises ValueError: when ``items`` is empty.
    """
    return min(items, key=_age_key)


def _age_key(item: Mapping[str, object]) -> tuple[datetime, str]:
    return parse_timestamp(item.get("created_at")) or _LATEST, str(item.get("id"))
