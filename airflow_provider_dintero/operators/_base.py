"""
Shared plumbing of the Dintero operators and transfers: the base class with the connection id
and the hook, and input checks that raise
:class:`~airflow_provider_dintero.hooks.dintero.DinteroInputError` before any request.

This module is private; import the operators from their own modules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_dintero.hooks.dintero import (
    DinteroInputError,
    DinteroPartnerHook,
    validate_account_id,
)


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


def check_account_id(value: Any, field: str = "account_id") -> str:
    """
    Return ``value`` stripped if it is a Dintero account id; empty or malformed ids are refused.

    :param value: the candidate account id.
    :param field: the parameter name for the error message.
    """
    if isinstance(value, str):
        value = value.strip()
    return validate_account_id(value, field)


def check_text(value: Any, field: str, *, required: bool = True) -> str | None:
    """
    Return ``value`` stripped if it is a non-empty string; ``None`` is allowed when not required.

    :param value: the candidate text.
    :param field: the parameter name for the error message.
    :param required: whether ``None`` is refused.
    """
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise DinteroInputError(field, "a non-empty string", value)
    return value.strip()


def check_names(value: Any, field: str, known: Iterable[str], what: str) -> list[str]:
    """
    Return a de-duplicated list of names, each one of ``known``.

    A string is split on commas and whitespace (handy with Jinja templates); a list or tuple
    of strings is taken as is.

    :param value: a list of names or one comma-separated string.
    :param field: the parameter name for the error message.
    :param known: the accepted names.
    :param what: what the names are, e.g. ``"Dintero scopes"``.
    """
    if isinstance(value, str):
        items: list[Any] = value.replace(",", " ").split()
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    else:
        raise DinteroInputError(field, f"a list of {what}", value)
    if not items or not all(isinstance(item, str) and item.strip() for item in items):
        raise DinteroInputError(field, f"a non-empty list of {what} (non-empty strings)", value)
    names = list(dict.fromkeys(item.strip() for item in items))
    allowed = set(known)
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise DinteroInputError(
            field, f"only known {what}; unknown: {', '.join(unknown)}; valid: {', '.join(sorted(allowed))}"
        )
    return names


def check_mapping(value: Any, field: str) -> dict[str, Any]:
    """
    Return a plain ``dict`` copy of ``value`` if it is a mapping with string keys.

    :param value: the candidate mapping.
    :param field: the parameter name for the error message.
    """
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise DinteroInputError(field, "a JSON object (a dict with string keys)", type(value).__name__)
    return dict(value)
