"""
The ``[dintero]`` section of Airflow's configuration: every option the webhook receiver reads,
parsed and checked in one place, so that a bad value fails the api-server's start-up with a
message naming the option and the expected form, instead of answering 500 to every delivery.

==================================== ========== =====================================================
Option (env ``AIRFLOW__DINTERO__...``) Default    Form
==================================== ========== =====================================================
``webhook_receiver_enabled``          ``False``  ``True``/``False`` (also ``1``/``0``, ``yes``/``no``,
                                                 ``on``/``off``); off mounts no route at all
``webhook_accounts``                  (empty)    comma-separated account ids (``P11200000, T11200000``);
                                                 only these accounts' paths look a secret up
``webhook_max_body_bytes``            ``256k``   bytes: ``262144``, or with a unit ``256k``, ``256KiB``,
                                                 ``1m``, ``1MiB`` (1k = 1024 bytes); 1 KiB to 16 MiB
``webhook_replay_window_days``        ``30``     whole days, ``30`` or ``30d``; 1 to 3650
==================================== ========== =====================================================

Importing this module needs no web framework (it runs on Airflow 2.11 as well).
"""

from __future__ import annotations

import difflib
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from airflow_provider_dintero.validation import ACCOUNT_ID_PATTERN

log = logging.getLogger(__name__)

SECTION = "dintero"

#: The largest body accepted unless configured (256 KiB).
DEFAULT_MAX_BODY_BYTES = 256 * 1024
#: Days a delivery id is remembered unless configured.
DEFAULT_REPLAY_WINDOW_DAYS = 30

_TRUE = frozenset({"true", "1", "yes", "on", "t", "y"})
_FALSE = frozenset({"false", "0", "no", "off", "f", "n", ""})
_SIZE = re.compile(r"^\s*(\d{1,12})\s*(b|k|kb|kib|m|mb|mib)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2}
_DAYS = re.compile(r"^\s*(\d{1,5})\s*d?\s*$", re.IGNORECASE)


class DinteroConfigError(ValueError):
    """
    A ``[dintero]`` option with a value the provider cannot use.

    :param option: the option's name, e.g. ``webhook_max_body_bytes``.
    :param expected: the form it must have.
    :param value: the value found (shown, as configuration values are not secrets).
    """

    def __init__(self, option: str, expected: str, value: Any) -> None:
        env = f"AIRFLOW__{SECTION.upper()}__{option.upper()}"
        super().__init__(
            f"[{SECTION}] {option} (env {env}) = {str(value)[:80]!r} is not valid: expected {expected}"
        )
        self.option = option


def parse_bool(option: str, value: str) -> bool:
    """
    ``True``/``False`` as Airflow's config understands them.

    :param option: the option's name, for the error.
    :param value: the configured text.
    """
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise DinteroConfigError(option, "True or False", value)


def parse_size(option: str, value: str, low: int = 1024, high: int = 16 * 1024**2) -> int:
    """
    A byte count, bare or with a unit (``262144``, ``256k``, ``256KiB``, ``1m``; k = 1024).

    :param option: the option's name, for the error.
    :param value: the configured text.
    :param low: the smallest value accepted.
    :param high: the largest value accepted.
    """
    expected = f"a size in bytes between {low} and {high} such as 262144, 256k or 1m (k = 1024 bytes)"
    found = _SIZE.fullmatch(value)
    if found is None:
        raise DinteroConfigError(option, expected, value)
    size = int(found.group(1)) * _UNITS[(found.group(2) or "").lower()]
    if not low <= size <= high:
        raise DinteroConfigError(option, expected, value)
    return size


def parse_days(option: str, value: str, low: int = 1, high: int = 3650) -> int:
    """
    Whole days, ``30`` or ``30d``.

    :param option: the option's name, for the error.
    :param value: the configured text.
    :param low: the smallest value accepted.
    :param high: the largest value accepted.
    """
    found = _DAYS.fullmatch(value)
    if found is None or not low <= int(found.group(1)) <= high:
        raise DinteroConfigError(option, f"whole days between {low} and {high}, such as 30 or 30d", value)
    return int(found.group(1))


def parse_accounts(option: str, value: str) -> frozenset[str]:
    """
    Comma-separated Dintero account ids (``P11200000, T11200000``), each checked.

    :param option: the option's name, for the error.
    :param value: the configured text.
    """
    accounts = [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]
    for account in accounts:
        if not ACCOUNT_ID_PATTERN.fullmatch(account):
            raise DinteroConfigError(
                option,
                f"comma-separated Dintero account ids such as P11200000 ({account!r} is not one)",
                value,
            )
    return frozenset(accounts)


@dataclass(frozen=True)
class ReceiverSettings:
    """
    The receiver's options, checked.

    :param enabled: whether the api-server mounts the receiver at all.
    :param accounts: the accounts whose paths are served (every other path is refused before
        any Variable or secrets-backend look-up).
    :param max_body_bytes: the body cap.
    :param replay_window: how long a delivery id is remembered.
    """

    enabled: bool = False
    accounts: frozenset[str] = frozenset()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    replay_window: timedelta = timedelta(days=DEFAULT_REPLAY_WINDOW_DAYS)


#: Each option, its parser and its default (as configured text).
OPTIONS: dict[str, tuple[Any, str]] = {
    "webhook_receiver_enabled": (parse_bool, "False"),
    "webhook_accounts": (parse_accounts, ""),
    "webhook_max_body_bytes": (parse_size, str(DEFAULT_MAX_BODY_BYTES)),
    "webhook_replay_window_days": (parse_days, str(DEFAULT_REPLAY_WINDOW_DAYS)),
}


def _configured() -> dict[str, str]:
    """
    The ``[dintero]`` options set in Airflow's configuration (file, ``AIRFLOW__DINTERO__*``,
    ``_CMD``/``_SECRET`` forms), as text, by lower-case name.
    """
    import os

    from airflow.configuration import conf

    names = set(OPTIONS)
    names.update(str(k).lower() for k in (conf.getsection(SECTION) or {}))
    prefix = f"AIRFLOW__{SECTION.upper()}__"
    names.update(k[len(prefix) :].lower() for k in os.environ if k.startswith(prefix))
    names = {n.removesuffix("_cmd").removesuffix("_secret") for n in names}
    values = {name: conf.get(SECTION, name, fallback=None) for name in names}
    return {name: str(value) for name, value in values.items() if value is not None}


def load_settings(values: dict[str, str] | None = None) -> ReceiverSettings:
    """
    Read and check every ``[dintero]`` option; raise :class:`DinteroConfigError` on the first bad one.

    An option this provider does not know is logged with the closest known name (it may belong
    to a newer version, so it does not fail).

    :param values: the section's text values (default: Airflow's configuration).
    """
    section = _configured() if values is None else {k.lower(): v for k, v in values.items()}
    for name in sorted(set(section) - set(OPTIONS)):
        if not name.startswith("webhook"):
            continue
        close = difflib.get_close_matches(name, list(OPTIONS), n=1)
        log.warning(
            "[%s] %s is not an option of the Dintero webhook receiver%s; it is ignored",
            SECTION,
            name,
            f" (did you mean {close[0]}?)" if close else "",
        )
    parsed = {name: parser(name, section.get(name, default)) for name, (parser, default) in OPTIONS.items()}
    return ReceiverSettings(
        enabled=parsed["webhook_receiver_enabled"],
        accounts=parsed["webhook_accounts"],
        max_body_bytes=parsed["webhook_max_body_bytes"],
        replay_window=timedelta(days=parsed["webhook_replay_window_days"]),
    )
