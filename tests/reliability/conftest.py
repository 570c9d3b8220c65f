"""
Fixtures of the reliability suite: the emulator with fast, bounded retries, a counting fault
injector, outcome checks on S3, and the run summary printed at the end of the session.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from airflow_provider_dintero.emulator.pytest_plugin import connection_json
from tests.provisioning.helpers import settle as settled

#: Counters reported by :func:`pytest_terminal_summary`.
STATS: dict[str, int] = {"faults": 0, "bad_inputs": 0, "canaries": 0, "lost": 0}
#: Outcomes of the hostile-server cases (every test that uses the ``hostile`` fixture).
HOSTILE: dict[str, int] = {"cases": 0, "overwritten": 0, "leaked": 0, "hung": 0}

#: The hostile connection's client id and secret, and the Basic credentials they make.
HOSTILE_CLIENT_ID = "hostile-client"
HOSTILE_SECRET = "hostile-secret-canary-0001"
HOSTILE_BASIC = base64.b64encode(f"{HOSTILE_CLIENT_ID}:{HOSTILE_SECRET}".encode()).decode()
#: A hostile case whose call takes longer than this counts as hung (a count, not an assertion).
HUNG_AFTER_SECONDS = 60.0

#: Retries of the reliability connection: small enough to keep the suite fast, big enough for bursts.
MAX_RETRIES = 4
ATTACHMENT_PATH = r"/settlements/[^/]+/attachments/"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the reliability counters (only when this folder's tests ran)."""
    if any(STATS.values()):
        terminalreporter.write_line(
            f"reliability: faults injected={STATS['faults']}, bad inputs tried={STATS['bad_inputs']}, "
            f"canaries found={STATS['canaries']}, objects lost or partial={STATS['lost']}"
        )
    if HOSTILE["cases"]:
        terminalreporter.write_line(
            f"hostile answers: cases tried={HOSTILE['cases']}, objects overwritten={HOSTILE['overwritten']}, "
            f"credentials leaked={HOSTILE['leaked']}, tasks hung={HOSTILE['hung']}"
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
def hostile(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Iterator[Any]:
    """
    A :class:`tests.reliability.hostile.HostileServer` on 127.0.0.1 behind ``dintero_default``.

    The connection is a partner (``T11200000``) with fast bounded retries; tests route the
    answers they need and read ``hostile.requests``. Each use is one hostile case of the summary
    line: afterwards every log record (DEBUG and up) and the text of every provider error built
    during the case are scanned for the credentials of the case (:func:`credential_hits`), a hit
    fails the test; a case that took longer than :data:`HUNG_AFTER_SECONDS` counts as hung.
    """
    from airflow_provider_dintero.exceptions import DinteroApiError, DinteroInputError
    from tests.reliability.hostile import HostileServer

    errors: list[BaseException] = []
    for cls in (DinteroApiError, DinteroInputError):
        monkeypatch.setattr(cls, "__init__", _recording(cls.__init__, errors))
    caplog.set_level(logging.DEBUG)
    HOSTILE["cases"] += 1
    started = time.monotonic()
    with HostileServer() as server:
        monkeypatch.setenv("AIRFLOW_CONN_DINTERO_DEFAULT", hostile_connection(server))
        yield server
    HOSTILE["hung"] += time.monotonic() - started > HUNG_AFTER_SECONDS
    hits = credential_hits(server, caplog.records, errors)
    HOSTILE["leaked"] += len(hits)
    if hits:
        pytest.fail(f"credentials leaked in a hostile case: {', '.join(hits)}")


def _recording(init: Callable[..., None], into: list[BaseException]) -> Callable[..., None]:
    """``init`` that also appends the exception it initialises to ``into``."""

    def __init__(self: BaseException, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        into.append(self)

    return __init__


def credential_hits(
    server: Any, records: Iterable[logging.LogRecord], errors: Iterable[BaseException] = ()
) -> list[str]:
    """
    One entry per credential of a hostile case found in a log record or an error's text.

    The credentials are every token ``server`` issued, the connection's client secret and its
    Basic form; a record's text is its message, its traceback and its exception.

    :param server: the :class:`tests.reliability.hostile.HostileServer` of the case.
    :param records: the captured log records.
    :param errors: the exceptions raised (or built) during the case.
    """
    secrets = {"client secret": HOSTILE_SECRET, "Basic credentials": HOSTILE_BASIC}
    secrets.update({f"issued token #{i}": token for i, token in enumerate(server.issued_tokens)})
    texts = [f"{r.name}: {r.getMessage()}" for r in records]
    texts += [logging.Formatter().formatException(r.exc_info) for r in records if r.exc_info]
    texts += [f"{type(e).__name__}: {e!s} {e!r} {vars(e)}" for e in errors]
    return [f"{name} in {text[:60]!r}" for text in texts for name, value in secrets.items() if value in text]


@contextlib.contextmanager
def counting_overwrites(s3_client: Any, bucket: str) -> Iterator[list[str]]:
    """
    Count in the summary line the objects a copy overwrote, and fail if any.

    An object overwritten is one that was in the bucket before and has other content after, or a
    key the copy wrote more than once (the test appends the URIs the copy reports to the yielded list).

    :param s3_client: boto3 client of the moto server.
    :param bucket: the bucket the copy writes to.
    """
    before = _etags(s3_client, bucket)
    written: list[str] = []
    try:
        yield written
    finally:
        after = _etags(s3_client, bucket)
        replaced = sorted(k for k, tag in before.items() if after.get(k, tag) != tag)
        twice = len(written) - len(set(written))
        HOSTILE["overwritten"] += len(replaced) + twice
        assert (replaced, twice) == ([], 0), "objects overwritten"


def _etags(s3_client: Any, bucket: str) -> dict[str, str]:
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: str(o["ETag"]) for page in pages for o in page.get("Contents", [])}


def hostile_connection(server: Any, **extra: Any) -> str:
    """Connection JSON for a partner ``T11200000`` on a hostile server (``extra`` overrides)."""
    return json.dumps(
        {
            "conn_type": "dintero",
            "host": server.url,
            "login": HOSTILE_CLIENT_ID,
            "password": HOSTILE_SECRET,
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
