"""
Access tokens: the process-wide cache, the optional cache shared through an Airflow Variable,
and the strict reading of Dintero's token answers.

Which tokens are registered with Airflow's secrets masker is decided here: only the partner's
own (the connection's account) token. Merchant, exchange and refresh tokens are never
registered (see :mod:`airflow_provider_dintero.redaction`), so the masker's size does not grow
with the number of merchants a partner serves.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from airflow_provider_dintero.exceptions import DinteroApiError
from airflow_provider_dintero.redaction import guard_logger

log = guard_logger(__name__)

#: The longest token lifetime believed (a day); longer or negative values are clamped.
MAX_TOKEN_LIFETIME = 86400.0


def read_token_answer(payload: Any, *, account_id: str, operation: str) -> tuple[str, float]:
    """
    Return ``(access_token, expires_in)`` from a token endpoint's JSON answer, checking its shape.

    A missing, ``null``, empty or non-string ``access_token``, or an ``expires_in`` that is not
    a finite number, raises :class:`DinteroApiError` naming the operation and the account (the
    answer itself is never quoted: it may hold a token).

    :param payload: the parsed JSON answer.
    :param account_id: the account the token is for.
    :param operation: what was being done, for the error message.
    """

    def bad(what: str) -> DinteroApiError:
        return DinteroApiError(
            f"Could not {operation}: Dintero's token answer for account {account_id} {what}",
            account_id=account_id,
        )

    if not isinstance(payload, dict):
        raise bad(f"was a JSON {type(payload).__name__}, not an object")
    token = payload.get("access_token")
    if not isinstance(token, str) or not token.strip() or any(c.isspace() for c in token):
        raise bad("had no usable access_token (missing, null, empty or not a string)")
    raw = payload.get("expires_in", 0)
    if raw is None:
        raw = 0
    if isinstance(raw, bool):
        raise bad("had an expires_in that is not a number of seconds")
    try:
        expires_in = float(raw)
    except (TypeError, ValueError, OverflowError):
        raise bad("had an expires_in that is not a number of seconds") from None
    if not math.isfinite(expires_in):
        raise bad("had an expires_in that is not a number of seconds")
    return token, min(max(expires_in, 0.0), MAX_TOKEN_LIFETIME)


@dataclass(frozen=True)
class _CachedToken:
    access_token: str
    expires_at: float  # epoch seconds


class TokenCache:
    """
    Process-wide cache of access tokens, keyed by (base URL, client id, account id).

    Safe under threads: one lock guards the map, and one lock per key makes concurrent
    callers for the same account wait for a single mint instead of minting in parallel.
    """

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, str], _CachedToken] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str, str], threading.Lock] = {}

    def key_lock(self, key: tuple[str, str, str]) -> threading.Lock:
        """
        Return the lock serialising mints for ``key``.

        :param key: (base URL, client id, account id).
        """
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def get(self, key: tuple[str, str, str], margin: float) -> str | None:
        """
        Return a cached token that is valid for at least ``margin`` more seconds.

        :param key: (base URL, client id, account id).
        :param margin: seconds before expiry from which a token counts as stale.
        """
        with self._lock:
            cached = self._tokens.get(key)
        if cached and cached.expires_at - margin > time.time():
            return cached.access_token
        return None

    def put(self, key: tuple[str, str, str], token: str, expires_at: float) -> None:
        """
        Store a token.

        :param key: (base URL, client id, account id).
        :param token: the access token.
        :param expires_at: epoch seconds at which it expires.
        """
        with self._lock:
            self._tokens[key] = _CachedToken(token, expires_at)

    def drop(self, key: tuple[str, str, str], token: str | None = None) -> None:
        """
        Forget the token for ``key`` (only if it is still ``token``, when given).

        :param key: (base URL, client id, account id).
        :param token: the token known to be bad; a newer one is kept.
        """
        with self._lock:
            cached = self._tokens.get(key)
            if cached and (token is None or cached.access_token == token):
                del self._tokens[key]

    def clear(self) -> None:
        """Forget every token."""
        with self._lock:
            self._tokens.clear()


#: The cache shared by every hook instance in this process.
TOKEN_CACHE = TokenCache()


def variable_api() -> Any:
    """
    The Variable API that works where the hook runs: the Task SDK's inside an Airflow 3 task
    (or triggerer), the metadata DB's outside one (scripts, Airflow 2.11 everywhere).
    """
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:  # Airflow 2.11
        from airflow.models.variable import Variable as DbVariable

        return DbVariable
    if getattr(task_runner, "SUPERVISOR_COMMS", None) is not None:
        from airflow.sdk import Variable as SdkVariable

        return SdkVariable
    from airflow.models.variable import Variable as DbVariable

    return DbVariable


class SharedTokenStore:
    """
    Tokens shared by every worker through an (encrypted) Airflow Variable per account.

    :param enabled: whether the connection asked for ``cache_mode: variable``.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @staticmethod
    def variable_key(key: tuple[str, str, str]) -> str:
        """
        The Variable name of a cache key (account id and a digest of base URL and client id).

        :param key: (base URL, client id, account id).
        """
        digest = hashlib.sha256("|".join(key).encode()).hexdigest()[:24]
        return f"dintero_token_{key[2]}_{digest}"

    def read(self, key: tuple[str, str, str], margin: float) -> tuple[str, float] | None:
        """
        Return a shared ``(token, expires_at)`` valid for ``margin`` more seconds, else ``None``.

        :param key: (base URL, client id, account id).
        :param margin: seconds before expiry from which a token counts as stale.
        """
        if not self.enabled:
            return None
        try:
            raw = variable_api().get(self.variable_key(key), None)
        except Exception as exc:  # a missing Variable backend must not stop the task
            log.warning("Could not read the shared Dintero token cache: %s", type(exc).__name__)
            return None
        if not raw:
            return None
        try:
            data = json.loads(raw)
            token, expires_at = str(data["access_token"]), float(data["expires_at"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires_at - margin <= time.time():
            return None
        log.info("Reusing the shared Dintero token for account %s", key[2])
        return token, expires_at

    def write(self, key: tuple[str, str, str], token: str, expires_at: float) -> None:
        """
        Share a token.

        :param key: (base URL, client id, account id).
        :param token: the access token.
        :param expires_at: epoch seconds at which it expires.
        """
        if not self.enabled:
            return
        value = json.dumps({"access_token": token, "expires_at": expires_at})
        try:
            variable_api().set(self.variable_key(key), value, description="Dintero access token cache")
        except Exception as exc:
            log.warning("Could not write the shared Dintero token cache: %s", type(exc).__name__)

    def delete(self, key: tuple[str, str, str]) -> None:
        """
        Forget a shared token.

        :param key: (base URL, client id, account id).
        """
        if not self.enabled:
            return
        try:
            variable_api().delete(self.variable_key(key))
        except Exception as exc:
            log.debug("Could not delete the shared Dintero token: %s", type(exc).__name__)
