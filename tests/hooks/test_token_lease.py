"""
One token per account per lifetime across processes with ``cache_mode: variable``: the token
lease (Fischer's timed mutual exclusion over Airflow Variables, :class:`~airflow_provider_dintero.
auth.SharedTokenStore`), proven with real OS processes sharing the tests' SQLite metadata DB and
the emulator over real HTTP; plus the dead holder, the async path, secrecy and the memory mode.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from airflow_provider_dintero import auth, pipeline
from airflow_provider_dintero.hooks.dintero import DinteroAsyncHook, DinteroPartnerHook

TOKEN_PATH = r"^/v1/accounts/[PT]\d{8}/auth/token$"
EXCHANGE_PATH = r"^/v1/accounts/[PT]\d{8}/auth/exchange_token$"
CONN_ID = "dintero_lease"
#: A short settle delay keeps these tests quick; the SQLite metadata DB answers in milliseconds.
SETTLE = 0.3
PROCESSES = 4


def _connection(emu: Any, **extra: Any) -> str:
    return json.dumps(
        {
            "conn_type": "dintero",
            "host": emu.base_url,
            "login": emu.partner_client_id,
            "password": emu.partner_client_secret,
            "extra": {
                "account_id": emu.partner_id,
                "checkout_base_url": emu.base_url,
                "cache_mode": "variable",
                "cache_lease_settle": SETTLE,
                **extra,
            },
        }
    )


def _delete_shared_variables() -> None:
    from airflow.models.variable import Variable as DbVariable
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(DbVariable).filter(DbVariable.key.like("dintero_%")).delete(synchronize_session=False)


@pytest.fixture
def lease_connection(
    dintero_emulator: Any, airflow_db: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., str]]:
    """Set ``dintero_lease`` to a ``cache_mode: variable`` connection with the given extra fields."""
    _delete_shared_variables()

    def make(**extra: Any) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", _connection(dintero_emulator, **extra))
        return CONN_ID

    yield make
    _delete_shared_variables()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _worker(accounts: list[str], ready: Any, start: Any, results: Any) -> None:
    """
    One worker process: read the connection, then (at the parent's signal, with the others) get
    a token for every account at once, one thread each; prove each token works with an API call.
    Sends back the tokens' digests, the accounts read and every log message of the provider.
    """
    messages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    provider_log = logging.getLogger("airflow_provider_dintero")
    provider_log.addHandler(Keep())
    provider_log.setLevel(logging.DEBUG)
    hook = DinteroPartnerHook(CONN_ID)
    hook.validate_connection()
    auth.variable_api()  # the Variable model imported before the start, as in a warm worker
    ready.wait()
    start.wait()
    with ThreadPoolExecutor(len(accounts)) as pool:
        tokens = list(pool.map(hook.get_token, accounts))
    read = [hook.get_account(aid)["account_id"] for aid in accounts]
    results.put({"digests": [_digest(t) for t in tokens], "read": read, "log": messages})


def _run_workers(
    accounts: list[str], processes: int, before_start: Callable[[], None] | None = None
) -> list[dict[str, Any]]:
    """
    Start ``processes`` worker processes (spawned); when all are ready, call ``before_start``,
    then let them ask at the same instant; collect what they send back.
    """
    ctx = multiprocessing.get_context("spawn")
    ready, start, results = ctx.Barrier(processes + 1), ctx.Barrier(processes + 1), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(accounts, ready, start, results)) for _ in range(processes)]
    for proc in procs:
        proc.start()
    try:
        ready.wait(timeout=120)
        if before_start:
            before_start()
        start.wait(timeout=30)
        got = [results.get(timeout=120) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    assert [proc.exitcode for proc in procs] == [0] * processes
    return got


def test_processes_asking_at_once_mint_one_token_per_account(
    dintero_emulator: Any, lease_connection: Callable[..., str]
) -> None:
    lease_connection()
    merchants = dintero_emulator.merchant_ids
    accounts = [dintero_emulator.partner_id, *merchants]

    got = _run_workers(accounts, PROCESSES)

    # exactly 1 partner token, and 1 exchange + 1 merchant token per merchant, between all processes
    assert dintero_emulator.count("POST", TOKEN_PATH) == 1 + len(merchants)
    assert dintero_emulator.count("POST", EXCHANGE_PATH) == len(merchants)
    assert dintero_emulator.count("POST", rf"^/v1/accounts/{dintero_emulator.partner_id}/auth/token$") == 1
    # every process holds the same token per account, and Dintero took it
    assert all(g["digests"] == got[0]["digests"] for g in got)
    assert all(g["read"] == accounts for g in got)
    assert dintero_emulator.count("GET", r"/management/settings$", status=200) == PROCESSES * len(accounts)


def test_a_dead_holders_lease_is_taken_over_by_one_of_the_others_once_it_expires(
    dintero_emulator: Any, lease_connection: Callable[..., str]
) -> None:
    conn_id = lease_connection(cache_lease_ttl=2)
    partner = dintero_emulator.partner_id
    tokens = DinteroPartnerHook(conn_id)._tokens

    def a_holder_dies() -> None:  # it claimed the lease and never minted nor released it
        tokens.shared.write_lease(tokens.key(partner), "4242-a-worker-that-died")

    got = _run_workers([partner], 2, before_start=a_holder_dies)

    assert dintero_emulator.count("POST", TOKEN_PATH) == 1
    assert got[0]["digests"] == got[1]["digests"]
    logs = [m for g in got for m in g["log"]]
    assert not any("minting one in this worker" in m for m in logs)  # a take-over, not the give-up


def test_no_token_is_minted_while_a_live_lease_holds(
    dintero_emulator: Any, lease_connection: Callable[..., str]
) -> None:
    ttl = 3.0
    hook = DinteroPartnerHook(lease_connection(cache_lease_ttl=ttl))
    store = hook._tokens.shared
    key = hook._tokens.key(dintero_emulator.partner_id)
    store.write_lease(key, "4242-a-worker-that-died")
    seen_during_lease: list[int] = []

    def look_before_expiry() -> None:
        time.sleep(ttl - 1.0)
        seen_during_lease.append(dintero_emulator.count("POST", TOKEN_PATH))

    with ThreadPoolExecutor(1) as pool:
        looking = pool.submit(look_before_expiry)
        token = hook.get_token()
        looking.result()

    assert token
    assert seen_during_lease == [0]
    assert dintero_emulator.count("POST", TOKEN_PATH) == 1


def test_a_token_shared_while_waiting_is_taken_without_a_mint(
    dintero_emulator: Any, lease_connection: Callable[..., str]
) -> None:
    hook = DinteroPartnerHook(lease_connection(cache_lease_ttl=30))
    other = DinteroPartnerHook(lease_connection(cache_lease_ttl=30))
    key = hook._tokens.key(dintero_emulator.partner_id)
    hook._tokens.shared.write_lease(key, "4242-another-worker")

    def the_holder_shares_a_token() -> None:  # as the other worker would, a little later
        time.sleep(1.0)
        minted = pipeline.run(other._tokens.mint(dintero_emulator.partner_id), other)
        other._tokens.shared.write(key, minted[0], time.time() + minted[1])

    with ThreadPoolExecutor(1) as pool:
        sharing = pool.submit(the_holder_shares_a_token)
        token = hook.get_token()
        sharing.result()

    assert dintero_emulator.count("POST", TOKEN_PATH) == 1  # the holder's
    assert hook.get_account(dintero_emulator.partner_id)["account_id"] == dintero_emulator.partner_id
    assert token


def test_the_async_hook_takes_the_lease_without_blocking_its_loop(
    dintero_emulator: Any, lease_connection: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = DinteroAsyncHook(lease_connection())
    merchants = dintero_emulator.merchant_ids
    on_loop: list[str] = []
    lease_writes: list[str] = []
    real_sleep, real_api = time.sleep, auth.variable_api

    def in_loop_thread() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    def sleep(seconds: float) -> None:
        if in_loop_thread():
            on_loop.append(f"time.sleep({seconds})")
        real_sleep(seconds)

    class Api:  # the real Variable API, noting calls made on the event loop's thread
        def __getattr__(self, name: str) -> Any:
            if in_loop_thread():
                on_loop.append(f"Variable.{name}")
            call = getattr(real_api(), name)
            if name != "set":
                return call

            def set_(key: str, value: str, **kwargs: Any) -> Any:
                if key.startswith("dintero_lease_"):
                    lease_writes.append(key)
                return call(key, value, **kwargs)

            return set_

    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(auth, "variable_api", Api)

    async def main() -> list[Any]:
        asked = [hook.async_list_merchants(), *(hook.async_list_settlements(mid) for mid in merchants)]
        return list(await asyncio.gather(*asked))

    listed = asyncio.run(main())

    assert on_loop == []
    assert len(listed) == 1 + len(merchants)
    assert len(lease_writes) == 1 + len(merchants)  # one lease taken per account
    assert dintero_emulator.count("POST", TOKEN_PATH) == 1 + len(merchants)


def test_the_lease_and_the_logs_hold_no_secret(
    dintero_emulator: Any, lease_connection: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hook = DinteroPartnerHook(lease_connection())
    merchant = dintero_emulator.merchant_ids[0]
    key = hook._tokens.key(merchant)
    store = hook._tokens.shared
    leases: list[str] = []
    release = store.release_lease

    def keep_then_release(key: Any, owner: str) -> None:  # the lease as it stands while minting
        from airflow.models.variable import Variable as DbVariable

        leases.append(DbVariable.get(store.lease_key(key), ""))
        release(key, owner)

    store.release_lease = keep_then_release  # type: ignore[method-assign]

    tokens = [hook.get_token(), hook.get_token(merchant)]

    assert len(leases) == 2 and all(leases)
    assert all(set(json.loads(lease)) == {"owner", "expires_at"} for lease in leases)
    secrets = [*tokens, dintero_emulator.partner_client_secret]
    for text in [*leases, caplog.text]:
        assert not any(secret in text for secret in secrets)
    assert store.read_lease(key) is None  # released


def test_the_memory_mode_touches_no_variable_and_never_waits(
    dintero_emulator: Any, dintero_connection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    touched: list[str] = []
    monkeypatch.setattr(auth, "variable_api", lambda: touched.append("variable") or None)
    hook = DinteroPartnerHook(dintero_connection)
    sleeps: list[float] = []
    perform = hook.perform

    def perform_noting_sleeps(action: Any) -> Any:
        if isinstance(action, pipeline.Sleep):
            sleeps.append(action.seconds)
        return perform(action)

    monkeypatch.setattr(hook, "perform", perform_noting_sleeps)

    hook.get_account(dintero_emulator.merchant_ids[0])

    assert (touched, sleeps) == ([], [])


def test_a_rejected_token_does_not_delete_a_newer_shared_one(
    dintero_emulator: Any, lease_connection: Callable[..., str]
) -> None:
    hook = DinteroPartnerHook(lease_connection())
    fresh = hook.get_token()
    key = hook._tokens.key(dintero_emulator.partner_id)

    hook.invalidate_token(None, "an-older-token-another-worker-was-rejected-with")

    shared = hook._tokens.shared.read(key, 0)
    assert shared is not None and shared[0] == fresh
