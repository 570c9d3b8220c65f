"""
Access tokens, in one place: minting (client credentials for the connection's own account, the
exchange token flow for a partner's merchants), the process-wide cache, the optional cache shared
through an Airflow Variable, and the strict reading of Dintero's token answers.

Minting is a pipeline flow (:mod:`airflow_provider_dintero.pipeline`): :meth:`Tokens.obtain`
yields the same :class:`~airflow_provider_dintero.pipeline.Send` and ``Sleep`` actions as a data
call, plus :class:`~airflow_provider_dintero.pipeline.Blocking` ones for the Airflow Variable and
the secrets masker. The sync hook drives it with :func:`~airflow_provider_dintero.pipeline.run`
(:meth:`Tokens.get`), the async hook with :func:`~airflow_provider_dintero.pipeline.arun`
(:meth:`Tokens.aget`): both mint alike, over their own transport (and so through the same proxy),
and the async one never sends from a worker thread.

Masking: the connection's client secret and its own (partner) token are registered with Airflow's
secrets masker, once per process; merchant, exchange and refresh tokens never are (see
:mod:`airflow_provider_dintero.redaction`), so the masker's size does not grow with the number of
merchants a partner serves. One token per account per lifetime: a lock per cache key (a thread
lock, and on an event loop an asyncio lock in front of it) makes concurrent callers wait for one
mint; ``cache_mode: variable`` shares the token with every other worker, and a lease Variable
next to it makes the workers wait for one mint too (:class:`SharedTokenStore`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import json
import math
import os
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_provider_dintero import pipeline
from airflow_provider_dintero.exceptions import DinteroApiError
from airflow_provider_dintero.pipeline import Blocking, Flow, Limits, Request, Sleep
from airflow_provider_dintero.redaction import guard_logger, mask_secret

log = guard_logger(__name__)

#: The longest token lifetime believed (a day); longer or negative values are clamped.
MAX_TOKEN_LIFETIME = 86400.0

#: A cache key: (base URL, client id, account id).
Key = tuple[str, str, str]

#: Default seconds between writing a token lease and reading it back (``extra.cache_lease_settle``):
#: longer than any Variable write takes to land, so that every rival's write is visible by then.
LEASE_SETTLE = 1.0
#: Default seconds a token lease holds (``extra.cache_lease_ttl``): the longest the other workers
#: wait for a worker that died while minting.
LEASE_TTL = 60.0
#: Seconds between two looks at the token Variable while another worker holds the lease.
LEASE_POLL = 0.5


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


# ------------------------------------------------------------------------------------------
# Caches
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CachedToken:
    access_token: str = field(repr=False)
    expires_at: float  # epoch seconds


class TokenCache:
    """
    Process-wide cache of access tokens, keyed by (base URL, client id, account id).

    Safe under threads and event loops: one lock guards the map, and one lock per key makes
    concurrent callers for the same account wait for a single mint instead of minting in
    parallel (:meth:`key_lock` for threads, :meth:`async_key_lock` on an event loop).
    """

    def __init__(self) -> None:
        self._tokens: dict[Key, _CachedToken] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[Key, threading.Lock] = {}
        self._loop_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Key, asyncio.Lock]] = (
            weakref.WeakKeyDictionary()
        )

    def key_lock(self, key: Key) -> threading.Lock:
        """
        Return the lock serialising mints for ``key``.

        :param key: (base URL, client id, account id).
        """
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    @contextlib.asynccontextmanager
    async def async_key_lock(self, key: Key) -> AsyncIterator[None]:
        """
        Hold ``key``'s mint lock on the running event loop without blocking it: the loop's
        callers queue on an asyncio lock, and the one in front takes the thread lock (shared with
        sync callers of this process) by polling.

        :param key: (base URL, client id, account id).
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            loop_lock = self._loop_locks.setdefault(loop, {}).setdefault(key, asyncio.Lock())
        async with loop_lock:
            lock, delay = self.key_lock(key), 0.005
            while not lock.acquire(blocking=False):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)
            try:
                yield
            finally:
                lock.release()

    def get(self, key: Key, margin: float) -> str | None:
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

    def put(self, key: Key, token: str, expires_at: float) -> None:
        """
        Store a token.

        :param key: (base URL, client id, account id).
        :param token: the access token.
        :param expires_at: epoch seconds at which it expires.
        """
        with self._lock:
            self._tokens[key] = _CachedToken(token, expires_at)

    def drop(self, key: Key, token: str | None = None) -> None:
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


@dataclass(frozen=True)
class Lease:
    """
    A token lease as read from its Variable: who mints the token, until when. It holds no secret.

    :param owner: the holding process's lease owner id (:func:`lease_owner`).
    :param expires_at: epoch seconds after which the lease counts as abandoned.
    """

    owner: str
    expires_at: float

    def held(self, now: float) -> bool:
        """
        Whether the lease still holds at ``now``.

        :param now: epoch seconds.
        """
        return self.expires_at > now


_OWNER: tuple[int, str] | None = None


def lease_owner() -> str:
    """
    This process's token lease owner id: its pid and a random part, new after a fork (a forked
    worker is another contender). Threads and event loops of one process share it: the cache's
    per-key lock lets only one of them hold a lease at a time.
    """
    global _OWNER
    pid = os.getpid()
    if _OWNER is None or _OWNER[0] != pid:
        _OWNER = (pid, f"{pid}-{uuid.uuid4().hex[:16]}")
    return _OWNER[1]


class SharedTokenStore:
    """
    Tokens shared by every worker through an (encrypted) Airflow Variable per account, and one
    mint per token lifetime between the workers through a lease Variable next to it. Its
    methods block (a metadata-DB or Task SDK call): the token flow runs them as
    :class:`~airflow_provider_dintero.pipeline.Blocking` actions.

    Inside an Airflow 3 task or triggerer the only shared store is the Execution API's Variables
    (get, set as an upsert, delete), with no compare-and-set: the lease is Fischer's timed mutual
    exclusion over those registers (see :meth:`Tokens.obtain`). A worker that finds the lease
    free or expired writes ``{owner, expires_at}``, waits ``settle`` seconds and reads it back;
    only the worker whose write came last finds its own id, checks the token Variable once more,
    mints, shares the token and deletes the lease. The others look at the token Variable every
    :data:`LEASE_POLL` seconds until it is fresh or the lease expires (its holder died: one of
    them takes the lease over), and after ``2 x lease_ttl + settle`` seconds mint on their own.

    Safety assumptions: a worker's lease write lands within ``settle`` seconds of the read that
    saw the lease free, and the workers' clocks agree to well within ``lease_ttl``. When either
    fails (an overloaded api-server, a paused process), or a mint outlasts ``lease_ttl``, the
    cost is an extra mint: never a failed task, a wait beyond the bound, or a wrong token.

    :param enabled: whether the connection asked for ``cache_mode: variable``.
    :param settle: seconds between writing the lease and reading it back.
    :param lease_ttl: seconds a lease holds.
    """

    def __init__(self, enabled: bool, settle: float = LEASE_SETTLE, lease_ttl: float = LEASE_TTL) -> None:
        self.enabled = enabled
        self.settle = settle
        self.lease_ttl = lease_ttl

    @property
    def wait_limit(self) -> float:
        """The longest a worker waits for the others before minting on its own, in seconds."""
        return 2 * self.lease_ttl + self.settle

    @staticmethod
    def _digest(key: Key) -> str:
        return hashlib.sha256("|".join(key).encode()).hexdigest()[:24]

    @classmethod
    def variable_key(cls, key: Key) -> str:
        """
        The Variable name of a cache key (account id and a digest of base URL and client id).

        :param key: (base URL, client id, account id).
        """
        return f"dintero_token_{key[2]}_{cls._digest(key)}"

    @classmethod
    def lease_key(cls, key: Key) -> str:
        """
        The Variable name of a cache key's lease (no word Airflow's masker treats as secret: the
        lease holds none, and a masked value would be registered on every read).

        :param key: (base URL, client id, account id).
        """
        return f"dintero_lease_{key[2]}_{cls._digest(key)}"

    def read(self, key: Key, margin: float) -> tuple[str, float] | None:
        """
        Return a shared ``(token, expires_at)`` valid for ``margin`` more seconds, else ``None``.

        :param key: (base URL, client id, account id).
        :param margin: seconds before expiry from which a token counts as stale.
        """
        if not self.enabled:
            return None
        shared = self._read_token(key)
        if shared is None or shared[1] - margin <= time.time():
            return None
        log.info("Reusing the shared Dintero token for account %s", key[2])
        return shared

    def _read_token(self, key: Key) -> tuple[str, float] | None:
        try:
            raw = variable_api().get(self.variable_key(key), None)
        except Exception as exc:  # a missing Variable backend must not stop the task
            log.warning("Could not read the shared Dintero token cache: %s", type(exc).__name__)
            return None
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return str(data["access_token"]), float(data["expires_at"])
        except (ValueError, KeyError, TypeError):
            return None

    def write(self, key: Key, token: str, expires_at: float) -> None:
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

    def delete(self, key: Key, token: str | None = None) -> None:
        """
        Forget a shared token (only if it is still ``token``, when given: a worker whose old
        token was rejected must not delete the new one another worker just shared).

        :param key: (base URL, client id, account id).
        :param token: the token known to be bad.
        """
        if not self.enabled:
            return
        if token is not None:
            shared = self._read_token(key)
            if shared is not None and shared[0] != token:
                return
        try:
            variable_api().delete(self.variable_key(key))
        except Exception as exc:
            log.debug("Could not delete the shared Dintero token: %s", type(exc).__name__)

    def read_lease(self, key: Key) -> Lease | None:
        """
        Return the key's lease, or ``None`` when there is none (or it cannot be read or
        understood: the lease is an optimisation, never a reason to fail).

        :param key: (base URL, client id, account id).
        """
        try:
            raw = variable_api().get(self.lease_key(key), None)
        except Exception as exc:
            log.warning("Could not read the Dintero token lease: %s", type(exc).__name__)
            return None
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return Lease(str(data["owner"]), float(data["expires_at"]))
        except (ValueError, KeyError, TypeError):
            return None

    def write_lease(self, key: Key, owner: str) -> None:
        """
        Claim the key's lease for ``owner`` for :attr:`lease_ttl` seconds (an upsert: the last
        writer holds it, which the read-back after the settle delay tells).

        :param key: (base URL, client id, account id).
        :param owner: the claiming process's :func:`lease_owner`.
        """
        value = json.dumps({"owner": owner, "expires_at": time.time() + self.lease_ttl})
        try:
            variable_api().set(self.lease_key(key), value, description="Dintero token lease (who mints)")
        except Exception as exc:
            log.warning("Could not write the Dintero token lease: %s", type(exc).__name__)

    def release_lease(self, key: Key, owner: str) -> None:
        """
        Delete the key's lease if ``owner`` still holds it.

        :param key: (base URL, client id, account id).
        :param owner: the releasing process's :func:`lease_owner`.
        """
        lease = self.read_lease(key)
        if lease is None or lease.owner != owner:
            return
        try:
            variable_api().delete(self.lease_key(key))
        except Exception as exc:
            log.debug("Could not delete the Dintero token lease: %s", type(exc).__name__)


# ------------------------------------------------------------------------------------------
# The token flow
# ------------------------------------------------------------------------------------------

#: Per base URL, which audience Dintero took for a merchant token minted with an exchange
#: token: ``"partner"`` (the current docs) or ``"merchant"`` (an older rendering of them).
EXCHANGE_AUDIENCES: dict[str, Literal["partner", "merchant"]] = {}


def _about_audience(error: DinteroApiError) -> bool:
    """Whether Dintero refused a token request because of its audience (400 or 403)."""
    said = f"{error.code or ''} {error.api_message or ''}".lower()
    return error.status in (400, 403) and "audience" in said


def basic_authorization(client_id: str, secret: str) -> str:
    """
    The ``Authorization`` value of a client-credentials request.

    :param client_id: the API client id.
    :param secret: its secret.
    """
    return f"Basic {base64.b64encode(f'{client_id}:{secret}'.encode()).decode()}"


@dataclass(frozen=True)
class Tokens:
    """
    The tokens of one connection: which account gets which token, and how it is minted.

    :param base_url: the API base URL (the token audience's prefix).
    :param client_id: the API client id.
    :param account_id: the connection's own account.
    :param margin: seconds before expiry at which a cached token is replaced.
    :param limits: the connection's request limits (token requests use them too).
    :param shared: the Variable-shared cache (``cache_mode: variable``), or a disabled one.
    :param credentials: returns the client-credentials ``Authorization`` value; it reads the
        client secret and registers it with the masker, so it blocks (run as ``Blocking``).
    """

    base_url: str
    client_id: str
    account_id: str
    margin: float
    limits: Limits
    shared: SharedTokenStore
    credentials: Callable[[], str] = field(repr=False)

    def key(self, account_id: str) -> Key:
        """
        The cache key of ``account_id``'s token.

        :param account_id: the account the token is for.
        """
        return (self.base_url, self.client_id, account_id)

    def audience(self, account_id: str) -> str:
        """
        The token audience of an account: ``<base URL>/v1/accounts/<account_id>``.

        :param account_id: a checked account id.
        """
        return f"{self.base_url}/v1/accounts/{account_id}"

    # ---------------------------------------------------------------- drivers

    def get(self, account_id: str, io: pipeline.SyncIO) -> str:
        """
        Return a valid token for ``account_id`` (a checked account id), minting it with blocking
        I/O when the caches have none.

        :param account_id: the account.
        :param io: the sync driver's side (the hook's ``perform``).
        """
        key = self.key(account_id)
        token = TOKEN_CACHE.get(key, self.margin)
        if token:
            return token
        with TOKEN_CACHE.key_lock(key):
            return pipeline.run(self.obtain(account_id), io)

    async def aget(self, account_id: str, perform: Callable[[pipeline.Action], Awaitable[Any]]) -> str:
        """
        :meth:`get` on the event loop: the same flow, driven by the async driver.

        :param account_id: the account.
        :param perform: the async driver's side (the hook's ``aperform``).
        """
        key = self.key(account_id)
        token = TOKEN_CACHE.get(key, self.margin)
        if token:
            return token
        async with TOKEN_CACHE.async_key_lock(key):
            return await pipeline.arun(self.obtain(account_id), perform)

    # ---------------------------------------------------------------- flows

    def obtain(self, account_id: str) -> Flow[str]:
        """
        The flow that returns a valid token for ``account_id``; run it holding the key's lock.

        The process cache first; then, with ``cache_mode: variable``, the shared one, and a
        mint under the key's lease (:meth:`shared_or_minted`); else a mint. The connection's own
        token is registered with the masker.

        :param account_id: a checked account id.
        """
        key = self.key(account_id)
        token = TOKEN_CACHE.get(key, self.margin)  # another caller minted it while we waited
        if token:
            return token
        if self.shared.enabled:
            token, expires_at = yield from self.shared_or_minted(account_id)
        else:
            token, expires_in = yield from self.mint(account_id)
            expires_at = time.time() + expires_in
        if account_id == self.account_id:
            yield Blocking(functools.partial(mask_secret, token))
        TOKEN_CACHE.put(key, token, expires_at)
        return token

    def shared_or_minted(self, account_id: str) -> Flow[tuple[str, float]]:
        """
        The flow that returns ``(token, expires_at)`` from the shared cache, minting it (and
        sharing it) only when this process wins the key's lease, so that the workers mint one
        token per account per lifetime between them. See :class:`SharedTokenStore` for the
        protocol, what it assumes and what happens when that fails (an extra mint at worst).
        Its waits are :class:`~airflow_provider_dintero.pipeline.Sleep` actions, its Variable
        calls :class:`~airflow_provider_dintero.pipeline.Blocking` ones: on an event loop
        nothing blocks.

        :param account_id: a checked account id.
        """
        store, key = self.shared, self.key(account_id)
        shared = yield Blocking(functools.partial(store.read, key, self.margin))
        if shared:
            return shared
        owner = lease_owner()
        give_up_at = time.monotonic() + store.wait_limit
        waiting = False
        while time.monotonic() < give_up_at:
            lease = yield Blocking(functools.partial(store.read_lease, key))
            if lease is None or not lease.held(time.time()) or lease.owner == owner:
                yield Blocking(functools.partial(store.write_lease, key, owner))
                yield Sleep(store.settle, f"Claiming the token lease of account {account_id}", retry=False)
                lease = yield Blocking(functools.partial(store.read_lease, key))
                if lease is not None and lease.owner == owner:
                    return (yield from self._mint_holding_lease(account_id, owner))
            if not waiting:
                waiting = True
                log.info(
                    "Another worker is minting the Dintero token for account %s; waiting for it "
                    "(at most %.0f s)",
                    account_id,
                    store.wait_limit,
                )
            while time.monotonic() < give_up_at:
                yield Sleep(LEASE_POLL, f"Waiting for the shared token of account {account_id}", retry=False)
                shared = yield Blocking(functools.partial(store.read, key, self.margin))
                if shared:
                    return shared
                lease = yield Blocking(functools.partial(store.read_lease, key))
                if lease is None or not lease.held(time.time()) or lease.owner == owner:
                    break  # its holder finished without sharing a token, or died: claim it
        log.warning(
            "No Dintero token for account %s was shared within %.0f s; minting one in this worker",
            account_id,
            store.wait_limit,
        )
        token, expires_in = yield from self.mint(account_id)
        expires_at = time.time() + expires_in
        yield Blocking(functools.partial(store.write, key, token, expires_at))
        return token, expires_at

    def _mint_holding_lease(self, account_id: str, owner: str) -> Flow[tuple[str, float]]:
        """Holding the key's lease: check the shared cache once more, else mint and share; release."""
        store, key = self.shared, self.key(account_id)
        try:
            # the previous holder may have shared a token and released the lease since our first look
            shared = yield Blocking(functools.partial(store.read, key, self.margin))
            if shared:
                token, expires_at = shared
            else:
                token, expires_in = yield from self.mint(account_id)
                expires_at = time.time() + expires_in
                yield Blocking(functools.partial(store.write, key, token, expires_at))
        except Exception:  # the mint failed: let the next worker try now, not after the lease's TTL
            yield Blocking(functools.partial(store.release_lease, key, owner))
            raise
        yield Blocking(functools.partial(store.release_lease, key, owner))
        return token, expires_at

    def forget(self, account_id: str, token: str | None = None) -> Flow[None]:
        """
        The flow that forgets ``account_id``'s token (after Dintero rejected it).

        :param account_id: a checked account id.
        :param token: only forget it if the cache (the process's, and the shared one) still
            holds this token.
        """
        key = self.key(account_id)
        TOKEN_CACHE.drop(key, token)
        if self.shared.enabled:
            yield Blocking(functools.partial(self.shared.delete, key, token))

    def mint(self, account_id: str) -> Flow[tuple[str, float]]:
        """
        The flow that mints a token: client credentials for the connection's own account, the
        exchange token flow for a merchant of a partner. Returns ``(token, expires_in)``.

        :param account_id: a checked account id reachable by the connection.
        """
        own = self.account_id
        if account_id == own:
            log.info("Requesting an access token for Dintero account %s", account_id)
            authorization = yield Blocking(self.credentials)
            return (yield from self._token_request(account_id, authorization, self.audience(own)))
        log.debug("Requesting an access token for merchant %s through partner %s", account_id, own)
        operation = f"exchange a token for merchant {account_id} through partner {own}"
        exchange = Request(
            method="POST",
            url=f"{self.base_url}/v1/accounts/{own}/auth/exchange_token",
            operation=operation,
            account_id=own,
            json={"account_id": account_id},
            token_account=own,
        )
        answer = yield from pipeline.call_json(exchange, self.limits)
        exchange_token, _ = read_token_answer(answer, account_id=account_id, operation=operation)
        return (yield from self._merchant_token(account_id, f"Bearer {exchange_token}"))

    def _merchant_token(self, account_id: str, authorization: str) -> Flow[tuple[str, float]]:
        """
        Mint a merchant token with an exchange token. Dintero's current docs name the partner's
        URL as its audience, an older rendering the merchant's: the partner URL is tried first
        and, when Dintero refuses it (400 or 403 about the audience), the merchant URL once;
        the one that worked is remembered per base URL (:data:`EXCHANGE_AUDIENCES`).
        """
        learnt = EXCHANGE_AUDIENCES.get(self.base_url, "partner")
        order: tuple[Literal["partner", "merchant"], ...] = (
            (learnt, "merchant") if learnt == "partner" else (learnt, "partner")
        )
        for attempt, which in enumerate(order):
            audience = self.audience(self.account_id if which == "partner" else account_id)
            try:
                minted = yield from self._token_request(account_id, authorization, audience)
            except DinteroApiError as exc:
                if attempt or not _about_audience(exc):
                    raise
                log.warning(
                    "Dintero refused the %s URL as the audience of merchant %s's token (HTTP %s); "
                    "retrying once with the %s URL",
                    which,
                    account_id,
                    exc.status,
                    order[1],
                )
                continue
            EXCHANGE_AUDIENCES[self.base_url] = which
            return minted
        raise AssertionError("unreachable")  # pragma: no cover

    def _token_request(self, account_id: str, authorization: str, audience: str) -> Flow[tuple[str, float]]:
        operation = f"get an access token for account {account_id}"
        request = Request(
            method="POST",
            url=f"{self.base_url}/v1/accounts/{account_id}/auth/token",
            operation=operation,
            account_id=account_id,
            json={"grant_type": "client_credentials", "audience": audience},
            headers={"Authorization": authorization},
        )
        answer = yield from pipeline.call_json(request, self.limits)
        return read_token_answer(answer, account_id=account_id, operation=operation)
