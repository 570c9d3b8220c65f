"""
Input checks shared by the hook, the operators, the sensor and the transfers: one validator per
concept, each raising :class:`~airflow_provider_dintero.exceptions.DinteroInputError` (naming
the field and what was expected) before any request is sent.
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Any
from urllib.parse import quote, urlsplit

from airflow_provider_dintero.exceptions import DinteroInputError
from airflow_provider_dintero.redaction import redact_url

#: A Dintero account id: ``T`` (test) or ``P`` (production) and 8 ASCII digits (``[0-9]``, never
#: ``\d``, which also matches full-width and other Unicode digits). Used with ``fullmatch``.
ACCOUNT_ID_PATTERN = re.compile(r"^[PT][0-9]{8}$")


def validate_account_id(value: Any, field: str = "account_id") -> str:
    """
    Return ``value`` if it is a Dintero account id, else raise :class:`DinteroInputError`.

    Nothing is stripped or normalised: ``" T11200001"`` and full-width digits are refused.

    :param value: the candidate account id.
    :param field: the parameter name for the error message.
    """
    if not isinstance(value, str) or not ACCOUNT_ID_PATTERN.fullmatch(value):
        raise DinteroInputError(
            field, "a Dintero account id: T or P followed by 8 digits, e.g. T11200001", value
        )
    return value


def is_partner_account(account_id: str) -> bool:
    """
    Tell whether ``account_id`` is a partner account (its id ends in five zeros).

    :param account_id: a valid account id.
    """
    return account_id.endswith("00000")


def is_loopback_host(hostname: str) -> bool:
    """
    Tell whether ``hostname`` is ``localhost`` or a loopback IP address.

    :param hostname: a host name or IP literal.
    """
    if hostname.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False


def is_internal_host(hostname: str | None) -> bool:
    """
    Tell whether ``hostname`` names the machine or its private networks: ``localhost`` (and
    ``*.localhost``), or an IP literal that is loopback, link-local (cloud metadata services),
    private, unspecified or reserved (IPv4-mapped IPv6 addresses are read as their IPv4).

    :param hostname: a host name or IP literal, as :func:`urllib.parse.urlsplit` gives it.
    """
    if not hostname:
        return True
    host = hostname.strip("[]").rstrip(".").lower()
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return bool(
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_unspecified
        or address.is_reserved
        or address.is_multicast
    )


def check_download_url(url: str, field: str, *, internal_ok: bool) -> None:
    """
    Refuse a download URL (a signed URL or a redirect target) that is not https to a public host:
    plain http, user info, and (unless ``internal_ok``, when the connection's own base URL is
    loopback, as with the emulator) a host that is ``localhost`` or an internal IP literal (see
    :func:`is_internal_host`). The error never shows the URL's query (it may be a signature).

    :param url: the absolute URL.
    :param field: the parameter name for the error message (``signed_url``, ``redirect``).
    :param internal_ok: whether loopback and private hosts are allowed.
    """
    bare = str(url).split("#", 1)[0].split("?", 1)[0]
    try:
        validate_base_url(bare, field)
    except DinteroInputError as exc:
        raise DinteroInputError(field, exc.expected, redact_url(str(url))) from None
    if not internal_ok and is_internal_host(urlsplit(bare).hostname):
        raise DinteroInputError(
            field,
            "a public https host (not localhost nor a loopback, link-local or private address; those "
            "are allowed only when the connection's base URL is loopback)",
            redact_url(str(url)),
        )


def validate_base_url(value: Any, field: str = "host") -> str:
    """
    Return the URL without a trailing slash if it is https (or http to a loopback host), with a
    host, a valid port, and no user info, query or fragment.

    :param value: the candidate base URL.
    :param field: the connection field or parameter name for the error message.
    """
    if not isinstance(value, str) or not value.strip():
        raise DinteroInputError(field, "a base URL such as https://api.dintero.com", value)
    text = value.strip()
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        # the value is not shown: it holds a password
        raise DinteroInputError(field, "a base URL without user info (put credentials in login/password)")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise DinteroInputError(field, "an https:// URL such as https://api.dintero.com", value)
    try:
        _ = parts.port
    except ValueError:
        raise DinteroInputError(field, "a URL whose port is a number from 1 to 65535", value) from None
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise DinteroInputError(field, "a base URL without a query string or fragment (? or #)", value)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise DinteroInputError(
            field, "https (plain http is allowed only to a loopback host such as 127.0.0.1)", value
        )
    return text.rstrip("/")


def validate_port(value: Any, field: str = "port") -> int | None:
    """
    Return the port as an int (``None`` when not set) if it is from 1 to 65535.

    :param value: the candidate port.
    :param field: the connection field for the error message.
    """
    if value in (None, "", 0):
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isascii():
        raise DinteroInputError(field, "a port number from 1 to 65535", value)
    text = str(value).strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise DinteroInputError(field, "a port number from 1 to 65535", value)
    return int(text)


def validate_number(
    value: Any, field: str, *, minimum: float, maximum: float = math.inf, exclusive_minimum: bool = False
) -> float:
    """
    Return ``value`` as a finite float within bounds (``nan``, ``inf`` and booleans refused).

    :param value: the candidate number (a number or a numeric string).
    :param field: the parameter or connection field for the error message.
    :param minimum: the smallest value allowed.
    :param maximum: the largest value allowed.
    :param exclusive_minimum: refuse ``minimum`` itself (for "greater than").
    """
    lower = f"> {minimum:g}" if exclusive_minimum else f">= {minimum:g}"
    expected = f"a finite number {lower}" + ("" if math.isinf(maximum) else f" and <= {maximum:g}")
    if isinstance(value, bool):
        raise DinteroInputError(field, expected, value)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise DinteroInputError(field, expected, value) from None
    too_low = number <= minimum if exclusive_minimum else number < minimum
    if not math.isfinite(number) or too_low or number > maximum:
        raise DinteroInputError(field, expected, value)
    return number


def check_limit(limit: Any, maximum: int) -> int:
    """
    Return a page size if it is a whole number from 1 to ``maximum``.

    :param limit: the candidate page size.
    :param maximum: the largest page size the endpoint takes.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise DinteroInputError("limit", f"a whole number from 1 to {maximum}", limit)
    return limit


def path_segment(value: Any, field: str) -> str:
    """
    Return ``value`` percent-encoded as exactly one URL path segment.

    ``/``, ``?``, ``#`` and ``%`` are encoded, so an id can never change the path or add a query;
    empty ids and the dot segments ``.`` and ``..`` (which a URL resolver would collapse) are
    refused, as are control characters.

    :param value: an id taken from a user or from an API answer.
    :param field: the parameter name (or ``"<what> id from Dintero's answer"``) for the error.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DinteroInputError(field, "an id (a non-empty string)", value)
    text = str(value)
    if not text or text in (".", "..") or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise DinteroInputError(
            field, "an id: a non-empty string, not '.' or '..', without control characters", value
        )
    return quote(text, safe="")


_AUDIENCE = re.compile(r"https?://[^/\s@?#]+/v1/accounts/[PT][0-9]{8}/?")


def validate_audience(value: Any, field: str = "audience") -> str:
    """
    Return ``value`` if it is an account audience URL (``https://<host>/v1/accounts/<account id>``,
    the account id in ASCII digits), else raise :class:`DinteroInputError`.

    :param value: the candidate audience.
    :param field: the parameter name for the error message.
    """
    if not isinstance(value, str) or not _AUDIENCE.fullmatch(value):
        raise DinteroInputError(
            field, "an account URL such as https://api.dintero.com/v1/accounts/T11200001", value
        )
    return value


#: The documented shape of a Dintero scope: ``level:area`` or ``level:area:detail`` (``read:payout``,
#: ``checkout:admin``, ``create:accounts:auth:refresh_token`` is known by name). ASCII only.
SCOPE_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*(?::[a-z][a-z0-9_-]*){1,2}$")

#: How close (``difflib`` ratio) an unknown scope must be to a known one to be taken for its typo.
SCOPE_TYPO_CUTOFF = 0.9


def validate_scopes(names: list[str], known: frozenset[str], field: str = "scopes") -> list[str]:
    """
    Check scope names before they are sent: a known scope passes; an unknown one of the
    documented shape passes too (Dintero documents more scopes than any list here) unless it is
    close to a known scope and not a sub-scope of one, which is taken for a typo and refused with
    the suggestion (``read:settlement`` -> ``read:settlements``).

    :param names: the scope names (already split and de-duplicated).
    :param known: the scopes this provider knows.
    :param field: the parameter name for the error message.
    """
    import difflib

    for name in names:
        if name in known:
            continue
        if not SCOPE_PATTERN.fullmatch(name):
            raise DinteroInputError(
                field, "scopes of the form level:area or level:area:detail, such as read:settlements", name
            )
        if any(name.startswith(f"{scope}:") for scope in known):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=SCOPE_TYPO_CUTOFF)
        if close:
            raise DinteroInputError(
                field, f"a Dintero scope; {name!r} looks like a typo of {close[0]!r}", name
            )
    return names


def validate_choice(value: Any, choices: tuple[str, ...], field: str) -> str:
    """
    Return ``value`` if it is one of ``choices``.

    :param value: the candidate.
    :param choices: the accepted values.
    :param field: the parameter name for the error message.
    """
    if not isinstance(value, str) or value not in choices:
        raise DinteroInputError(field, f"one of {', '.join(choices)}", value)
    return value
