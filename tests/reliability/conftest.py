"""
Fixtures of the reliability suite: the emulator with fast, bounded retries, a counting fault
injector, outcome checks on S3, and the run summary printed at the end of the session.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_dintero.emulator.pytest_plugin import connection_json
from tests.provisioning.helpers import settle as settled

#: Counters reported by :func:`pytest_terminal_summary`.
STATS: dict[str, int] = {"faults": 0, "bad_inputs": 0, "canaries": 0, "lost": 0}

#: Retries of the reliability connection: small enough to keep the suite fast, big enough for bursts.
MAX_RETRIES = 4
ATTACHMENT_PATH = r"/settlements/[^/]+/attachments/"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the reliability counters (only when this folder's tests ran)."""
    if not any(STATS.values()):
        return
    terminalreporter.write_line(
        f"reliability: faults injected={STATS['faults']}, bad inputs tried={STATS['bad_inputs']}, "
        f"canaries found={STATS['canaries']}, objects lost or partial={STATS['lost']}"
    )


def reliability_connection(emu: Any, **extra: Any) -> str:
    """The emulator connection JSON with fast bounded retries (and ``extra`` overrides)."""
    conn = json.loads(connection_json(emu))
    conn["extra"].update(
        {"max_retries": MAX_RETRIES, "retry_backoff": 0.01, "retry_max_wait": 0.05, "timeout": 5, **extra}
    )
    return json.dumps(conn)


@pytest.fixture
def emu(dintero_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The reset emulator behind ``dintero_default``, with fast bounded retries."""
    monkeypatch.setenv("AIRFLOW_CONN_DINTERO_DEFAULT", reliability_connection(dintero_emulator))
    return dintero_emulator


@pytest.fixture
def inject(emu: Any) -> Iterator[Callable[..., None]]:
    """``emu.inject_fault``, counting for the summary line the faults the emulator actually applied."""
    armed = 0

    def _inject(**kwargs: Any) -> None:
        nonlocal armed
        emu.inject_fault(**kwargs)
        armed += int(kwargs.get("count", 1))

    yield _inject
    unused = emu.pending_faults()  # what is left of the armed faults was never applied
    STATS["faults"] += armed - unused


def count_when(emu: Any, expected: int, method: str | None = None, path_regex: str | None = None) -> int:
    """
    The request count once it reaches ``expected`` (or after 10 s), then settled.

    A delayed answer is logged only when the emulator's sleep ends, after the client gave up.
    """
    deadline = time.monotonic() + 10
    while emu.count(method, path_regex) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return int(settled(emu).count(method, path_regex))


def s3_objects(s3_client: Any, bucket: str) -> dict[str, int]:
    """Every object of the bucket with its size."""
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: int(o["Size"]) for page in pages for o in page.get("Contents", [])}


def settlement_prefix(account_id: str, settlement: dict[str, Any]) -> str:
    """The default key prefix of a settlement's files."""
    return (
        f"dintero/settlements/account={account_id}/provider={settlement['provider']}/"
        f"settled_date={settlement['settled_at'][:10]}/{settlement['id']}/"
    )


def expected_keys(account_id: str, settlement: dict[str, Any]) -> set[str]:
    """The attachment keys of a settlement under the default key template."""
    prefix = settlement_prefix(account_id, settlement)
    return {f"{prefix}{a['id']}.{a['extension']}" for a in settlement["attachments"]}


def check_complete(emu: Any, s3_client: Any, bucket: str, account_id: str, settlements: list[Any]) -> None:
    """
    Every attachment of ``settlements`` is in S3 exactly once (one key each), complete (size and
    sha256 as the emulator serves it), with its manifest; nothing else and no open multipart upload.

    Counts each missing, extra or damaged object in ``STATS["lost"]`` before failing.
    """
    objects = s3_objects(s3_client, bucket)
    wanted: dict[str, tuple[str, str]] = {}
    for s in settlements:
        prefix = settlement_prefix(account_id, s)
        for a in s["attachments"]:
            wanted[f"{prefix}{a['id']}.{a['extension']}"] = (s["id"], a["id"])
    manifests = {f"{settlement_prefix(account_id, s)}manifest.json" for s in settlements}
    problems: list[str] = []
    problems += [f"missing {k}" for k in sorted(set(wanted) - set(objects))]
    problems += [f"unexpected {k}" for k in sorted(set(objects) - set(wanted) - manifests)]
    problems += [f"no manifest {k}" for k in sorted(manifests - set(objects))]
    for key, (sid, att) in sorted(wanted.items()):
        if key not in objects:
            continue
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
        if hashlib.sha256(body).hexdigest() != emu.attachment_sha256(account_id, sid, att):
            problems.append(f"damaged {key} ({len(body)} bytes)")
    uploads = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    problems += [f"open multipart upload {u['Key']}" for u in uploads]
    STATS["lost"] += len(problems)
    assert problems == []


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """
    A :class:`tests.reliability.hostile.HostileServer` on 127.0.0.1 behind ``dintero_default``.

    The connection is a partner (``T11200000``) with fast bounded retries; tests route the
    answers they need and read ``hostile.requests``.
    """
    from tests.reliability.hostile import HostileServer

    with HostileServer() as server:
        monkeypatch.setenv("AIRFLOW_CONN_DINTERO_DEFAULT", hostile_connection(server))
        yield server


def hostile_connection(server: Any, **extra: Any) -> str:
    """Connection JSON for a partner ``T11200000`` on a hostile server (``extra`` overrides)."""
    return json.dumps(
        {
            "conn_type": "dintero",
            "host": server.url,
            "login": "hostile-client",
            "password": "hostile-secret-canary-0001",
            "extra": {
                "account_id": "T11200000",
                "max_retries": 2,
                "retry_backoff": 0.01,
                "retry_max_wait": 0.05,
                "timeout": 3,
                **extra,
            },
        }
    )


def first_trigger_event(trigger: Any) -> Any:
    """Run ``trigger`` in a fresh event loop until its first event; return the event's payload."""
    import asyncio

    async def first() -> Any:
        async for event in trigger.run():
            return event.payload
        return None

    return asyncio.run(first())
