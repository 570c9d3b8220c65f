"""
Keeping credentials out of logs, exception text and trigger events.

Two layers, so that the masker's work does not grow with the number of merchants:

- Airflow's secrets masker gets only the partner's own credentials (the client secret and the
  partner's access token), secrets of API clients the provider creates, and signed-URL
  signatures: :func:`mask_secret`, each value once per process.
- Merchant, exchange and refresh tokens are never registered. Our code never logs or raises
  one, and every text taken from an answer (error bodies, messages) goes through
  :func:`redact_text`, which removes ``Basic``/``Bearer`` credentials, ``Authorization``
  values, anything shaped like a JWT, signed-URL signatures and URL passwords (a proxy's).
  :class:`RedactingFilter` does the same on the provider's loggers and on urllib3's, httpx's and
  httpcore's.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

#: Query parameters that make a pre-signed URL a credential.
SIGNED_QUERY_KEYS = ("signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token", "sig")
REDACTED = "***"

_TOKEN_CHARS = r"[A-Za-z0-9_\-+/=.~%]"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # the password of a URL's user info: "http://user:password@proxy:3128"
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]*:)[^/\s@]+@"), r"\1" + REDACTED + "@"),
    # "Authorization: Basic abc", "authorization=Bearer x", '"Authorization": "Bearer x"'
    (
        re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:(?:basic|bearer)\s+)?" + _TOKEN_CHARS + "+"),
        r"\1" + REDACTED,
    ),
    # a credential after "Basic"/"Bearer": 8+ token characters with a digit or symbol (not a word)
    (
        re.compile(r"(?i)\b(basic|bearer)(\s+)(?=\S*[0-9+/=._~-])" + _TOKEN_CHARS + "{8,}"),
        r"\1\2" + REDACTED,
    ),
    # three base64url segments: a JWT (access, exchange or refresh token), with or without "eyJ"
    (re.compile(r"[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}"), REDACTED),
    # what is left of a JWT cut short: its JSON header ("eyJ") and the start of its payload
    (re.compile(r"eyJ[A-Za-z0-9_\-]{7,}\.[A-Za-z0-9_\-]*"), REDACTED),
    (
        re.compile(r"(?i)([?&](?:" + "|".join(re.escape(k) for k in SIGNED_QUERY_KEYS) + r")=)[^&\s\"'<>]+"),
        r"\1<redacted>",
    ),
    # token fields echoed in a JSON body
    (
        re.compile(
            r"(?i)([\"']?(?:access_token|refresh_token|exchange_token|client_secret|id_token)[\"']?\s*[:=]\s*[\"']?)[^\"'\s,}&]+"
        ),
        r"\1" + REDACTED,
    ),
)


def redact_text(text: Any) -> str:
    """
    Return ``text`` with every registered secret and anything credential-shaped replaced.

    Removes: values registered with Airflow's masker, ``Basic``/``Bearer`` credentials,
    ``Authorization`` values, JWT-shaped strings, token fields of a JSON body, and signed-URL
    signatures. Used on every text taken from an answer before it is logged, raised or put into
    a trigger event.

    :param text: any text (non-strings are converted with ``str``).
    """
    value = text if isinstance(text, str) else str(text)
    for pattern, replacement in _PATTERNS:
        value = pattern.sub(replacement, value)
    return _airflow_redact(value)


def redact_value(value: Any) -> Any:
    """
    Return ``value`` (a decoded JSON value) with :func:`redact_text` applied to every string in it.

    :param value: a string, list, dict or scalar taken from an answer.
    """
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    return value


def _airflow_redact(value: str) -> str:
    try:
        from airflow.providers.common.compat.sdk import redact
    except ImportError:  # pragma: no cover - very old compat provider
        return value
    redacted = redact(value)
    return redacted if isinstance(redacted, str) else value


def redact_url(url: str) -> str:
    """
    Return ``url`` without its query string or user info, for logs: signed URLs carry credentials.

    :param url: any URL.
    """
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    shown = f"{parts.scheme}://{host}{parts.path}"
    return f"{shown}?<redacted>" if parts.query else shown


def _masker() -> Any:
    try:
        from airflow.sdk._shared.secrets_masker import _secrets_masker
    except ImportError:  # Airflow 2.11
        try:
            from airflow.utils.log.secrets_masker import _secrets_masker  # type: ignore[no-redef]
        except ImportError:  # pragma: no cover
            return None
    try:
        return _secrets_masker()
    except Exception:  # pragma: no cover - a masker that cannot be built masks nothing
        return None


def masker_pattern_count() -> int:
    """How many patterns Airflow's secrets masker holds in this process (for the benchmark)."""
    masker = _masker()
    return len(getattr(masker, "patterns", ()) or ())


def _already_masked(value: str) -> bool:
    patterns = getattr(_masker(), "patterns", None)
    return isinstance(patterns, set) and re.escape(value) in patterns


#: Where Airflow's ``mask_secret`` lives, newest line first (common-compat before 1.22 does not
#: export it; this is the lookup common-compat 1.22+ does).
_MASK_SECRET_MODULES = (
    "airflow.providers.common.compat.sdk",
    "airflow.sdk.log",
    "airflow.sdk.execution_time.secrets_masker",
    "airflow.utils.log.secrets_masker",
)


def _airflow_mask_secret_function() -> Any:
    import importlib

    for name in _MASK_SECRET_MODULES:
        try:
            return importlib.import_module(name).mask_secret
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"Airflow's mask_secret was found in none of {', '.join(_MASK_SECRET_MODULES)}")


def mask_secret(value: str | None) -> None:
    """
    Register a credential with Airflow's secrets masker, once per process.

    For a pre-signed URL only its signature parameters are registered: they are what makes the
    URL a credential. Call this for the partner's own credentials and for secrets the provider
    creates, never for merchant tokens (see the module docstring): each registration costs the
    masker (and, in a task or triggerer, its supervisor) a recompile over every pattern.

    :param value: a client secret, the partner's token or a signed URL.
    """
    if not value:
        return
    _airflow_mask_secret = _airflow_mask_secret_function()
    signatures = []
    if "://" in value and "?" in value:
        signatures = [
            item
            for key, item in parse_qsl(urlsplit(value).query)
            if key.lower() in SIGNED_QUERY_KEYS and len(item) >= 8
        ]
    for secret in signatures or [value]:
        if not _already_masked(secret):
            _airflow_mask_secret(secret)


class RedactingFilter(logging.Filter):
    """A logging filter that runs :func:`redact_text` over a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        """
        Redact the record in place; never drops it.

        :param record: the log record.
        """
        if isinstance(record.msg, str):
            record.msg = _redact_patterns(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        return True


def _redact_patterns(value: str) -> str:
    for pattern, replacement in _PATTERNS:
        value = pattern.sub(replacement, value)
    return value


def _redact_arg(value: Any) -> Any:
    if isinstance(value, str):
        return _redact_patterns(value)
    if isinstance(value, bytes | BaseException):
        return _redact_patterns(str(value))
    return value


#: Loggers that can carry request lines or headers at DEBUG level, plus the provider's own.
GUARDED_LOGGERS = (
    "airflow_provider_dintero",
    "urllib3.connectionpool",
    "httpx",
    "httpcore.http11",
    "httpcore.connection",
    "httpcore.proxy",
)


def guard_logger(name: str) -> logging.Logger:
    """
    Return the logger ``name`` with a :class:`RedactingFilter` attached (once).

    :param name: a logger name; the provider's modules pass ``__name__``.
    """
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger


for _name in GUARDED_LOGGERS:
    guard_logger(_name)
