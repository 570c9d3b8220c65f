"""
Faults against the emulator and moto's S3, each judged by its outcome: every settlement file in
S3 exactly once and complete, no partial object, no duplicate provisioning, bounded retries, and
a final error (when there is one) that names the account and the cause.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_provider_dintero import pipeline
from airflow_provider_dintero.exceptions import DinteroApiError, DinteroAuthError, DinteroStreamError
from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from airflow_provider_dintero.operators.api_clients import CreateApiClientOperator, GrantOperator
from airflow_provider_dintero.operators.webhooks import CreateWebhookSubscriptionOperator
from airflow_provider_dintero.transfers.settlements_to_s3 import SettlementsToS3Operator
from tests.provisioning.helpers import settle as settled
from tests.reliability.conftest import (
    ATTACHMENT_PATH,
    MAX_RETRIES,
    STATS,
    check_complete,
    count_when,
    reliability_connection,
    s3_objects,
    settlement_prefix,
)

TOKEN_PATH = r"/auth/token$"
EXCHANGE_PATH = r"/auth/exchange_token$"
LIST_PATH = r"/settlements$"


def _copy(account_id: str, bucket: str, **kwargs: Any) -> dict[str, Any]:
    return SettlementsToS3Operator(
        task_id=f"copy_{uuid.uuid4().hex[:6]}", account_id=account_id, s3_bucket=bucket, **kwargs
    ).execute({})


def _vipps(emu: Any, account_id: str) -> dict[str, Any]:
    return next(s for s in emu.settlements(account_id) if s["provider"] == "vipps")


@pytest.fixture
def on_nth_download(monkeypatch: pytest.MonkeyPatch) -> Callable[[int, Callable[[], None]], None]:
    """Run ``action`` just before the n-th attachment download of the test starts."""

    def _arm(n: int, action: Callable[[], None]) -> None:
        original = DinteroPartnerHook.stream_settlement_attachment
        calls: list[int] = []

        def wrapped(self: DinteroPartnerHook, *args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            if len(calls) == n:
                action()
            return original(self, *args, **kwargs)

        monkeypatch.setattr(DinteroPartnerHook, "stream_settlement_attachment", wrapped)

    return _arm


# ------------------------------------------------------------------ transient faults recover

# (path, faults [(status, retry_after, delay)], requests the copy needs on that path, extra)
RECOVERABLE: dict[str, tuple[str, list[tuple[int | None, Any, float | None]], str, dict[str, Any]]] = {
    "429 burst with Retry-After on downloads": (
        ATTACHMENT_PATH,
        [(429, 1, None)] * 3,
        "attachments",
        {},
    ),
    "429 burst on the settlement list, up to the bound": (
        LIST_PATH,
        [(429, 1, None)] * MAX_RETRIES,
        "one",
        {},
    ),
    "429 with an HTTP-date Retry-After": (
        ATTACHMENT_PATH,
        [(429, "Wed, 21 Oct 2015 07:28:00 GMT", None)] * 2,
        "attachments",
        {},
    ),
    "500, 502, 503, 504 in a row": (
        ATTACHMENT_PATH,
        [(500, None, None), (502, None, None), (503, None, None), (504, None, None)],
        "attachments",
        {},
    ),
    "503 on the token endpoint": (TOKEN_PATH, [(503, 2, None)] * 2, "tokens", {}),
    "429 on the exchange-token endpoint": (EXCHANGE_PATH, [(429, 1, None)] * 2, "one", {}),
    "slow answer past the timeout": (ATTACHMENT_PATH, [(None, None, 1.5)], "attachments", {"timeout": 0.5}),
}


@pytest.mark.parametrize("case", list(RECOVERABLE), ids=list(RECOVERABLE))
def test_transient_faults_are_retried_and_every_file_lands_once(
    emu: Any,
    inject: Callable[..., None],
    s3_bucket: str,
    s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    path, faults, needed_kind, extra = RECOVERABLE[case]
    monkeypatch.setenv("AIRFLOW_CONN_DINTERO_DEFAULT", reliability_connection(emu, **extra))
    mid = emu.merchant_ids[0]
    settlement = _vipps(emu, mid)
    for status, retry_after, delay in faults:
        inject(path_regex=path, status=status, retry_after=retry_after, delay=delay)

    result = _copy(mid, s3_bucket, settlement_ids=[settlement["id"]])

    check_complete(emu, s3_client, s3_bucket, mid, [settlement])
    assert len(result["written"]) == len(settlement["attachments"]) + 1
    needed = {"attachments": len(settlement["attachments"]), "one": 1, "tokens": 2}[needed_kind]
    assert count_when(emu, needed + len(faults), path_regex=path) == needed + len(
        faults
    )  # each fault cost one retry


# (status, retry_after, delay, timeout, words the error must carry)
EXHAUSTING: dict[str, tuple[int | None, Any, float | None, float, tuple[str, ...]]] = {
    "endless 429": (429, 1, None, 5, ("429", f"after {MAX_RETRIES + 1} attempts")),
    "endless 503": (503, None, None, 5, ("503", f"after {MAX_RETRIES + 1} attempts")),
    "endless slowness": (None, None, 1.0, 0.3, ("timed out", f"after {MAX_RETRIES + 1} attempt")),
}


@pytest.mark.parametrize("case", list(EXHAUSTING), ids=list(EXHAUSTING))
def test_endless_faults_stop_at_the_bound_and_name_account_and_cause(
    emu: Any,
    inject: Callable[..., None],
    s3_bucket: str,
    s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    status, retry_after, delay, timeout, words = EXHAUSTING[case]
    monkeypatch.setenv("AIRFLOW_CONN_DINTERO_DEFAULT", reliability_connection(emu, timeout=timeout))
    mid = emu.merchant_ids[1]
    settlement = _vipps(emu, mid)
    inject(path_regex=ATTACHMENT_PATH, status=status, retry_after=retry_after, delay=delay, count=50)

    with pytest.raises(DinteroApiError) as err:
        _copy(mid, s3_bucket, settlement_ids=[settlement["id"]])

    message = str(err.value)
    assert mid in message
    assert all(word in message for word in words), message
    assert count_when(emu, MAX_RETRIES + 1, path_regex=ATTACHMENT_PATH) == MAX_RETRIES + 1
    assert s3_objects(s3_client, s3_bucket) == {}
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


# ------------------------------------------------------------------ cut connections, task retries

CUTS = {
    "small file, single PUT": ({"pdf": 40_000, "csv": 30_000, "json": 20_000}, 10_000),
    "9 MiB file, multipart upload": ({"pdf": 40_000, "csv": 9 * 1024 * 1024, "json": 20_000}, 8_800_000),
}


@pytest.mark.parametrize("case", list(CUTS), ids=list(CUTS))
def test_cut_mid_attachment_leaves_no_partial_object_and_the_task_retry_completes(
    emu: Any, inject: Callable[..., None], s3_bucket: str, s3_client: Any, case: str
) -> None:
    sizes, cut_after = CUTS[case]
    mid = emu.merchant_ids[0]
    added = emu.add_settlement(mid, provider="payex", attachment_sizes={"source": 5_000, **sizes})
    attachments = added["attachments"]
    broken = next(a for a in attachments if a["extension"] == "csv")
    before = attachments[: attachments.index(broken)]
    assert before, "the fault must hit after some attachments were written"
    inject(path_regex=f"/attachments/{broken['id']}$", cut_after_bytes=cut_after)

    with pytest.raises(DinteroStreamError) as err:
        _copy(mid, s3_bucket, settlement_ids=[added["id"]])

    assert all(part in str(err.value) for part in (mid, added["id"], broken["id"], "broke off"))
    first = s3_objects(s3_client, s3_bucket)
    prefix = settlement_prefix(mid, added)
    assert set(first) == {f"{prefix}{a['id']}.{a['extension']}" for a in before}  # no partial, no manifest
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []

    retry = _copy(mid, s3_bucket, settlement_ids=[added["id"]])

    check_complete(emu, s3_client, s3_bucket, mid, [added])
    assert sorted(retry["skipped"]) == sorted(f"s3://{s3_bucket}/{k}" for k in first)
    assert settled(emu).count("GET", ATTACHMENT_PATH) == len(attachments) + 1  # only the broken one twice


# ------------------------------------------------------------------ tokens and grants mid-run


def test_token_expiring_between_attachments_is_reminted_and_the_copy_completes(
    emu: Any,
    s3_bucket: str,
    s3_client: Any,
    on_nth_download: Callable[[int, Callable[[], None]], None],
) -> None:
    mid = emu.merchant_ids[2]
    settlement = _vipps(emu, mid)

    def expire() -> None:
        emu.expire_tokens()
        STATS["faults"] += 1

    on_nth_download(3, expire)

    _copy(mid, s3_bucket, settlement_ids=[settlement["id"]])

    check_complete(emu, s3_client, s3_bucket, mid, [settlement])
    settled(emu)
    assert emu.count("GET", ATTACHMENT_PATH, status=401) == 1
    assert emu.count("POST", TOKEN_PATH) == 4  # partner and merchant, once before and once after


LISTERS: dict[str, tuple[Callable[[DinteroPartnerHook, str], list[Any]], str, str]] = {
    "settlements (keyset)": (lambda h, m: h.list_settlements(m, limit=2), "id", LIST_PATH),
    "report metadata (cursor)": (
        lambda h, m: h.list_report_metadata(m, limit=1),
        "id",
        r"/reports/metadata$",
    ),
    "merchants (paging token)": (
        lambda h, m: h.list_merchants(limit=1),
        "account_id",
        r"/management/accounts$",
    ),
}


@pytest.mark.parametrize("case", list(LISTERS), ids=list(LISTERS))
def test_token_expiring_between_pages_loses_and_repeats_nothing(emu: Any, case: str) -> None:
    lister, id_key, path = LISTERS[case]
    mid = emu.merchant_ids[0]
    hook = DinteroPartnerHook()
    reference = [item[id_key] for item in lister(hook, mid)]
    assert len(reference) >= 3

    perform, pages = hook.perform, []

    def expire_after_the_second_page(action: pipeline.Action) -> Any:
        result = perform(action)
        if isinstance(action, pipeline.Send) and re.search(path, urlsplit(action.request.url).path):
            pages.append(result)
            if len(pages) == 2:
                emu.expire_tokens()
                STATS["faults"] += 1
        return result

    hook.perform = expire_after_the_second_page  # type: ignore[method-assign]
    seen = [item[id_key] for item in lister(hook, mid)]

    assert seen == reference
    assert settled(emu).count("GET", path, status=401) == 1


def _revoke_partner_grants(emu: Any) -> None:
    """Remove every grant of the partner's API client, and let its tokens expire."""
    emu.revoke_grants(emu.partner_id)
    STATS["faults"] += 1


def test_grant_revoked_mid_run_fails_naming_account_and_cause_and_keeps_what_was_written(
    emu: Any,
    s3_bucket: str,
    s3_client: Any,
    on_nth_download: Callable[[int, Callable[[], None]], None],
) -> None:
    mid = emu.merchant_ids[0]
    settlement = _vipps(emu, mid)
    on_nth_download(3, lambda: _revoke_partner_grants(emu))

    with pytest.raises(DinteroAuthError) as err:
        _copy(mid, s3_bucket, settlement_ids=[settlement["id"]])

    message = str(err.value)
    assert err.value.status == 403
    assert emu.partner_id in message and "no grant" in message, message
    objects = s3_objects(s3_client, s3_bucket)
    prefix = settlement_prefix(mid, settlement)
    assert set(objects) == {f"{prefix}{a['id']}.{a['extension']}" for a in settlement["attachments"][:2]}
    assert settled(emu).count("POST", TOKEN_PATH, status=403) == 1  # a 403 is not retried


def test_403_mid_run_fails_at_once_naming_merchant_and_grant(
    emu: Any, inject: Callable[..., None], s3_bucket: str, s3_client: Any
) -> None:
    mid = emu.merchant_ids[1]
    settlement = _vipps(emu, mid)
    third = settlement["attachments"][2]
    inject(path_regex=f"/attachments/{third['id']}$", status=403, count=5)

    with pytest.raises(DinteroAuthError) as err:
        _copy(mid, s3_bucket, settlement_ids=[settlement["id"]])

    message = str(err.value)
    assert mid in message and "403" in message and "grant" in message, message
    assert settled(emu).count("GET", ATTACHMENT_PATH, status=403) == 1
    prefix = settlement_prefix(mid, settlement)
    assert set(s3_objects(s3_client, s3_bucket)) == {
        f"{prefix}{a['id']}.{a['extension']}" for a in settlement["attachments"][:2]
    }


# ------------------------------------------------------------------ the same work twice at once


def _as_a_task_thread() -> None:
    """
    Airflow 2.11 guards ``execute`` with a thread-local set up only in the importing thread
    (each real task runs in its own process); give this thread one too.
    """
    try:
        from airflow.models.baseoperator import ExecutorSafeguard
    except ImportError:  # Airflow 3
        return
    sentinel = getattr(ExecutorSafeguard, "_sentinel", None)
    if sentinel is not None and not hasattr(sentinel, "callers"):
        sentinel.callers = {}


def _in_threads(n: int, work: Callable[[], Any]) -> list[Any]:
    """Run ``work`` in ``n`` threads at once; return each result or exception."""
    results: list[Any] = [None] * n
    start = threading.Barrier(n)

    def run(i: int) -> None:
        _as_a_task_thread()
        start.wait(timeout=30)
        try:
            results[i] = work()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_same_copy_twice_at_once_lands_every_file_exactly_once(
    emu: Any, s3_bucket: str, s3_client: Any
) -> None:
    mid = emu.merchant_ids[0]
    settlements = emu.settlements(mid)

    results = _in_threads(2, lambda: _copy(mid, s3_bucket, since="2026-09-01"))

    assert [type(r).__name__ for r in results] == ["dict", "dict"], results
    assert all(sorted(r["settlement_ids"]) == sorted(s["id"] for s in settlements) for r in results)
    check_complete(emu, s3_client, s3_bucket, mid, settlements)
    files = sum(len(s["attachments"]) for s in settlements)
    assert settled(emu).count("GET", ATTACHMENT_PATH) <= 2 * files


@pytest.fixture
def both_list_first(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """
    Make two concurrent runs both finish their "does it exist?" listing before either creates:
    the worst interleaving of two workers, made deterministic with a barrier.
    """

    def _arm(method: str) -> None:
        original = getattr(DinteroPartnerHook, method)
        barrier = threading.Barrier(2)
        listed = threading.local()

        def wrapped(self: DinteroPartnerHook, *args: Any, **kwargs: Any) -> Any:
            result = original(self, *args, **kwargs)
            # only each worker's first listing meets the other's: the test's own listings (main
            # thread) and a run's later ones (its check after creating) must not wait for a
            # partner that never comes (a timed-out wait breaks the barrier for good)
            if threading.current_thread() is not threading.main_thread() and not getattr(
                listed, "once", False
            ):
                listed.once = True
                barrier.wait(timeout=10)
            return result

        monkeypatch.setattr(DinteroPartnerHook, method, wrapped)

    return _arm


@pytest.fixture
def secret_name(aws_connection: str) -> str:
    """A fresh Secrets Manager name on moto (a Variable store needs a running task on Airflow 3)."""
    return f"airflow/connections/dintero_reliability_{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize(
    "client_id",
    [
        pytest.param("airflow-reports", id="with client_id"),
        pytest.param(None, id="by name only"),
    ],
)
def test_create_api_client_twice_at_once_leaves_one_client(
    emu: Any, secret_name: str, both_list_first: Callable[[str], None], client_id: str | None
) -> None:
    mid = emu.merchant_ids[0]
    both_list_first("list_api_clients")
    before = len(DinteroPartnerHook().list_api_clients(mid))

    def work() -> Any:
        return CreateApiClientOperator(
            task_id="client",
            account_id=mid,
            name="airflow reliability",
            client_id=client_id,
            secret_destination="secrets_manager",
            secrets_manager_secret_name=secret_name,
        ).execute({})

    results = _in_threads(2, work)

    clients = [
        c for c in DinteroPartnerHook().list_api_clients(mid) if c.get("name") == "airflow reliability"
    ]
    assert len(clients) == 1, clients
    assert len(DinteroPartnerHook().list_api_clients(mid)) == before + 1
    assert any(isinstance(r, dict) and r["created"] for r in results), results
    for r in results:  # the loser may fail, but then with Dintero's refusal, naming the account
        assert isinstance(r, dict) or (isinstance(r, DinteroApiError) and mid in str(r)), r


def test_grant_twice_at_once_leaves_one_grant(emu: Any, both_list_first: Callable[[str], None]) -> None:
    mid = emu.merchant_ids[0]
    login, _secret = emu.merchant_credentials(mid)
    both_list_first("list_client_grants")
    hook = DinteroPartnerHook()
    client = next(c for c in hook.list_api_clients(mid) if c["client_id"] == login)

    results = _in_threads(
        2,
        lambda: GrantOperator(
            task_id="grant", account_id=mid, client_id=login, scopes=["read:receipts"]
        ).execute({}),
    )

    grants = [
        g
        for g in hook.list_client_grants(mid, client_uuid=client["id"])
        if "read:receipts" in g.get("scope", [])
    ]
    assert len(grants) == 1, (grants, results)


def test_subscribe_twice_at_once_leaves_one_subscription(
    emu: Any, both_list_first: Callable[[str], None]
) -> None:
    mid = emu.merchant_ids[0]
    emu.settings.ping_on_subscription_create = False
    both_list_first("list_webhook_subscriptions")
    url = "http://127.0.0.1:9/reliability-hook"

    results = _in_threads(
        2, lambda: CreateWebhookSubscriptionOperator(task_id="hook", account_id=mid, url=url).execute({})
    )

    subs = [s for s in DinteroPartnerHook().list_webhook_subscriptions(mid) if s["config"]["url"] == url]
    assert len(subs) == 1, (subs, results)
