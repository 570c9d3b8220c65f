"""
Input checks shared by the hook, the operators, the sensor and the transfers: one validator per
concept, each raising :class:`~airflow_provider_dintero.exceptions.DinteroInputError` (naming
the field and what was expected) before any request is sent. Request bodies the operators send
(report configurations, payment profiles) are checked here too.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from airflow_provider_dintero.exceptions import DinteroInputError
from airflow_provider_dintero.redaction import redact_url
from airflow_provider_dintero.vocabulary import payout_provider_names

Choice = TypeVar("Choice", bound=str)

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


def validate_choice(value: Any, field: str, choices: Sequence[Choice]) -> Choice:
    """
    Return ``value`` if it is one of ``choices``, else raise :class:`DinteroInputError` listing them.

    :param value: the candidate value.
    :param field: the parameter name for the error message.
    :param choices: the accepted values.
    """
    for choice in choices:
        if value == choice and isinstance(value, str):
            return choice
    raise DinteroInputError(field, f"one of {', '.join(repr(c) for c in choices)}", value)


def validate_flag(value: Any, field: str) -> bool:
    """
    Return ``value`` if it is ``True`` or ``False`` (not a string such as ``"yes"``).

    :param value: the candidate flag.
    :param field: the parameter name for the error message.
    """
    if not isinstance(value, bool):
        raise DinteroInputError(field, "True or False", value)
    return value


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


def check_names(value: Any, field: str, known: Iterable[str] | None, what: str) -> list[str]:
    """
    Return a de-duplicated list of names, each one of ``known`` (any name when ``None``).

    A string is split on commas and whitespace (handy with Jinja templates); a list or tuple
    of strings is taken as is.

    :param value: a list of names or one comma-separated string.
    :param field: the parameter name for the error message.
    :param known: the accepted names, or ``None`` to leave the check to the caller.
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
    if known is None:
        return names
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


# ------------------------------------------------------------------------------ API clients

_VARIABLE_KEY = re.compile(r"[A-Za-z0-9_.\-/]{1,250}")
_SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@\-]{1,512}")


def validate_callbacks(value: Any, field: str = "callbacks") -> list[str] | None:
    """
    Return an API client's callback URLs as a list of non-empty strings (``None``: none given).

    :param value: a list or tuple of URLs (a single string is refused: it is not a list).
    :param field: the parameter name for the error message.
    """
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise DinteroInputError(field, "a list of callback URLs", value)
    return [str(check_text(url, field)) for url in value]


def validate_variable_key(value: Any, field: str) -> str:
    """
    Return ``value`` if it is an Airflow Variable key of letters, digits and ``_ . - /`` (1 to 250).

    :param value: the candidate key.
    :param field: the parameter name for the error message.
    """
    if not isinstance(value, str) or not _VARIABLE_KEY.fullmatch(value):
        raise DinteroInputError(field, "a Variable key of letters, digits, _ . - / (1 to 250)", value)
    return value


def validate_secrets_manager_name(value: Any, field: str) -> str:
    """
    Return ``value`` if it is an AWS Secrets Manager secret name (letters, digits and
    ``/_+=.@-``, 1 to 512).

    :param value: the candidate name.
    :param field: the parameter name for the error message.
    """
    if not isinstance(value, str) or not _SECRET_NAME.fullmatch(value):
        raise DinteroInputError(
            field, "a Secrets Manager name of letters, digits and /_+=.@- (1 to 512)", value
        )
    return value


# ------------------------------------------------------------------------------ payment profiles

#: Fields Dintero sets on a payment profile; never sent back in a PUT and never counted as changes.
READ_ONLY_PROFILE_FIELDS = frozenset(
    {"created_at", "created_by", "updated_at", "updated_by", "deleted_at", "deleted_by"}
)


def validate_payment_profile(value: Any, field: str = "profile") -> dict[str, Any]:
    """
    Check a payment profile to create: ``description`` and ``configuration`` required,
    ``profile_id`` (stripped) optional. Returns a copy.

    :param value: the candidate profile.
    :param field: the parameter name for the error message.
    """
    profile = check_mapping(value, field)
    check_text(profile.get("description"), f"{field}.description")
    check_mapping(profile.get("configuration"), f"{field}.configuration")
    if "profile_id" in profile:
        profile["profile_id"] = check_text(profile["profile_id"], f"{field}.profile_id")
    return profile


def validate_profile_changes(value: Any, field: str = "changes") -> dict[str, Any]:
    """
    Check a partial payment profile to apply: at least one field, and neither ``profile_id`` nor
    a field Dintero sets (:data:`READ_ONLY_PROFILE_FIELDS`). Returns a copy.

    :param value: the candidate changes.
    :param field: the parameter name for the error message.
    """
    changes = check_mapping(value, field)
    if not changes:
        raise DinteroInputError(field, "at least one field to change", changes)
    for key in ("profile_id", *sorted(READ_ONLY_PROFILE_FIELDS)):
        if key in changes:
            raise DinteroInputError(f"{field}.{key}", "not to be changed (Dintero sets it)", changes[key])
    return changes


# ------------------------------------------------------------------------------ report configurations

INSIGHT_SCHEDULES = ("monthly", "weekly", "daily")
INSIGHT_LANGUAGES = ("no", "en")
INSIGHT_CONTENT_TYPES = ("application/pdf", "text/csv")
INSIGHT_NAME_MAX_LENGTH = 64
SETTLEMENT_DESTINATION_TYPES = ("account_email", "email")
SETTLEMENT_FILTERS = ("payout_destination_id",)

# snake_case spellings people reach for, since the rest of Dintero's API uses them
_INSIGHT_CAMEL_CASE = {
    "data_type": "dataType",
    "content_types": "contentTypes",
    "report_filters": "reportFilters",
}
# fields Dintero sets itself; dropped from request bodies so a fetched configuration can be reused
_INSIGHT_READ_ONLY = ("id", "accountId", "account_id", "created_at", "created_by", "updated_at")
_SETTLEMENT_READ_ONLY = ("id", "account_id", "created_at", "updated_at", "last_send_at", "last_modified_at")


def validate_insight_configuration(configuration: Any, field: str = "configuration") -> dict[str, Any]:
    """
    Check an insight report configuration and return the body to send (read-only fields dropped).

    :param configuration: camelCase: ``dataType``, ``schedule``, ``language``, ``name`` required;
        ``emails``, ``reportFilters``, ``contentTypes`` optional.
    :param field: the parameter name used in error messages.
    """
    body = _body(configuration, field, "an insight report configuration dict (camelCase fields)")
    for snake, camel in _INSIGHT_CAMEL_CASE.items():
        if snake in body:
            raise DinteroInputError(
                f"{field}.{snake}", f"the camelCase name {camel!r} (insight configurations use camelCase)"
            )
    data_type = body.get("dataType")
    if not isinstance(data_type, str) or not data_type.strip():
        raise DinteroInputError(
            f"{field}.dataType", "a report data type such as 'checkout/transactions'", data_type
        )
    _one_of(body, "schedule", INSIGHT_SCHEDULES, field)
    _one_of(body, "language", INSIGHT_LANGUAGES, field)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > INSIGHT_NAME_MAX_LENGTH:
        raise DinteroInputError(f"{field}.name", f"a name of 1 to {INSIGHT_NAME_MAX_LENGTH} characters", name)
    for i, email in enumerate(_list(body, "emails", field)):
        if not isinstance(email, str) or "@" not in email:
            raise DinteroInputError(f"{field}.emails[{i}]", "an email address", email)
    if "contentTypes" in body:
        types = _list(body, "contentTypes", field)
        if not types:
            raise DinteroInputError(
                f"{field}.contentTypes", f"one or more of {', '.join(INSIGHT_CONTENT_TYPES)}"
            )
        for i, content_type in enumerate(types):
            if content_type not in INSIGHT_CONTENT_TYPES:
                raise DinteroInputError(
                    f"{field}.contentTypes[{i}]", f"one of {', '.join(INSIGHT_CONTENT_TYPES)}", content_type
                )
    _filters(body, "reportFilters", field, None)
    return {k: v for k, v in body.items() if k not in _INSIGHT_READ_ONLY}


def validate_settlement_report_configuration(
    configuration: Any, field: str = "configuration"
) -> dict[str, Any]:
    """
    Check a settlement report configuration and return the body to send.

    Providers are normalised to the API's spelling (``"Swedbank Pay"`` becomes ``payex``);
    read-only fields are dropped.

    :param configuration: ``filetypes`` (e.g. ``["pdf", "csv"]``), ``destinations``
        (``[{"destination_type": "email", "destination_value": "..."}]``, empty = store only)
        and ``providers`` (empty = all) required; ``filters`` optional.
    :param field: the parameter name used in error messages.
    """
    body = _body(configuration, field, "a settlement report configuration dict")
    filetypes = _list(body, "filetypes", field, required=True)
    if not filetypes:
        raise DinteroInputError(f"{field}.filetypes", "one or more file types, e.g. ['pdf', 'csv']")
    for i, filetype in enumerate(filetypes):
        if not isinstance(filetype, str) or not filetype.strip():
            raise DinteroInputError(f"{field}.filetypes[{i}]", "a file type such as 'pdf' or 'csv'", filetype)
    destinations = _list(body, "destinations", field, required=True)
    for i, dest in enumerate(destinations):
        where = f"{field}.destinations[{i}]"
        if not isinstance(dest, Mapping):
            raise DinteroInputError(where, "a dict with destination_type and destination_value", dest)
        kind = dest.get("destination_type")
        if kind not in SETTLEMENT_DESTINATION_TYPES:
            raise DinteroInputError(
                f"{where}.destination_type", f"one of {', '.join(SETTLEMENT_DESTINATION_TYPES)}", kind
            )
        value = dest.get("destination_value")
        if kind == "email" and (not isinstance(value, str) or "@" not in value):
            raise DinteroInputError(f"{where}.destination_value", "an email address", value)
    providers = _list(body, "providers", field, required=True)
    normalised = list(
        dict.fromkeys(
            name
            for i, p in enumerate(providers)
            for name in payout_provider_names(p, field=f"{field}.providers[{i}]")
        )
    )
    _filters(body, "filters", field, SETTLEMENT_FILTERS)
    out = {k: v for k, v in body.items() if k not in _SETTLEMENT_READ_ONLY}
    out["providers"] = normalised
    out["destinations"] = [dict(d) for d in destinations]
    return out


def validate_config_id(value: Any, field: str = "config_id") -> str:
    """
    Return a report configuration id, stripped (one path segment: no ``/``).

    :param value: the candidate id.
    :param field: the parameter name for the error message.
    """
    if not isinstance(value, str) or not value.strip() or "/" in value:
        raise DinteroInputError(field, "a report configuration id", value)
    return value.strip()


def _body(value: Any, field: str, expected: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise DinteroInputError(field, expected, value)
    return dict(value)


def _one_of(body: Mapping[str, Any], name: str, choices: Sequence[str], field: str) -> None:
    if body.get(name) not in choices:
        raise DinteroInputError(f"{field}.{name}", f"one of {', '.join(choices)}", body.get(name))


def _list(body: Mapping[str, Any], name: str, field: str, *, required: bool = False) -> list[Any]:
    if name not in body:
        if required:
            raise DinteroInputError(f"{field}.{name}", "a list (required)")
        return []
    value = body[name]
    if not isinstance(value, (list, tuple)):
        raise DinteroInputError(f"{field}.{name}", "a list", value)
    return list(value)


def _filters(body: Mapping[str, Any], name: str, field: str, allowed: Sequence[str] | None) -> None:
    for i, item in enumerate(_list(body, name, field)):
        where = f"{field}.{name}[{i}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("filter"), str) or "value" not in item:
            raise DinteroInputError(where, "a dict with 'filter' and 'value'", item)
        if allowed is not None and item["filter"] not in allowed:
            raise DinteroInputError(f"{where}.filter", f"one of {', '.join(allowed)}", item["filter"])
