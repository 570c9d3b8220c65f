"""
Errors raised by the Dintero provider (as ``airflow.providers.http.exceptions`` is for the HTTP provider).

:class:`DinteroInputError` is raised before any request for a parameter or connection field
Dintero would not accept; :class:`DinteroApiError` and its subclasses when Dintero answered with
an error, could not be reached, or answered something the provider cannot use. Messages never
carry a credential.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_dintero.redaction import redact_text, redact_value


class DinteroInputError(AirflowFailException, ValueError):
    """
    A parameter or connection field is not what Dintero accepts; raised before any request.

    A configuration error: the task fails at once, without using its retries (it is an
    ``AirflowFailException``, hence still an ``AirflowException``).

    :param field: the parameter or connection field at fault.
    :param expected: what was expected, in words.
    :param value: the value received (never a secret: callers pass ``None`` for those).
    """

    def __init__(self, field: str, expected: str, value: Any = None) -> None:
        self.field = field
        self.expected = expected
        shown = "" if value is None else f", got {value!r}"
        super().__init__(f"{field}: expected {expected}{shown}")


class DinteroApiError(AirflowException):
    """
    Dintero answered with an error, or could not be reached.

    The message names the operation, the account, the HTTP status, Dintero's error code and
    message, and the request id when one is returned. It never carries a credential.

    :param message: what went wrong, in words.
    :param status: the HTTP status (``None`` when no response arrived).
    :param code: Dintero's ``error.code``.
    :param api_message: Dintero's ``error.message``.
    :param errors: Dintero's ``error.errors`` (field-level details), if any.
    :param account_id: the account the call was made for.
    :param request_id: the response's request id header, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        api_message: str | None = None,
        errors: list[Any] | None = None,
        account_id: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.api_message = api_message
        self.errors: list[Any] = redact_value(errors or [])  # they are the answer's words, echoes included
        self.account_id = account_id
        self.request_id = request_id
        # the last guard: a message never carries a credential, whoever built it
        super().__init__(redact_text(message))


class DinteroAuthError(DinteroApiError):
    """Dintero refused the credentials or the token (401), or the grant lacks a scope (403)."""


class DinteroNotFoundError(DinteroApiError):
    """The account or resource does not exist, or is not visible to these credentials (404)."""


class DinteroStreamError(DinteroApiError):
    """A download ended before the announced number of bytes arrived."""
