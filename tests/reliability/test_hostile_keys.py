"""
Keys belong to the task, and no copy leaves an orphan: hostile answers against the S3 transfers.

A hostile Dintero (``tests/reliability/hostile.py``) answers settlements, attachments and report
metadata with other accounts' ids, missing ids, ids that collide after cleaning, ``.``/``..``,
control characters and non-ASCII; moto's S3 shows what was written. A copy killed with SIGKILL
mid-upload must not leave its multipart upload behind once a re-run succeeded.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest

from airflow_provider_dintero.exceptions import DinteroApiError, DinteroInputError
from airflow_provider_dintero.transfers.insight_report_to_s3 import InsightReportToS3Operator
from airflow_provider_dintero.transfers.settlements_to_s3 import SettlementsToS3Operator
from tests.conftest import REPO
from tests.reliability.conftest import STATS, counting_overwrites, s3_objects
from tests.reliability.hostile import HostileServer, Reply

MERCHANT = "T11200001"
OTHER = "T11200002"
PREFIX = f"dintero/settlements/account={MERCHANT}/provider=payex/settled_date=2026-11-01/"
MIB = 1024 * 1024


def _settlement(sid: str, attachments: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "id": sid,
        "provider": "payex",
        "created_at": "2026-11-02T10:00:00Z",
        "settled_at": "2026-11-01T00:00:00Z",
        "attachments": attachments,
        **extra,
    }


def _attachment(att_id: Any = ..., extension: str = "pdf", created_by: str = "payex") -> dict[str, Any]:
    item = {"extension": extension, "content_type": "application/pdf", "created_by": created_by}
    if att_id is not ...:
        item["id"] = att_id
    return item


def _body(name: str) -> bytes:
    return f"file {name!r} ".encode() * 50


def _serve_settlements(server: HostileServer, settlements: list[dict[str, Any]]) -> None:
    """Answer the settlement list with ``settlements`` and each attachment with :func:`_body` of its id."""
    server.route("GET", rf"/v1/accounts/{MERCHANT}/settlements$", Reply(json={"items": settlements}))

    def attachment(seen: Any) -> Reply:
        att_id = unquote(seen.path.split("/attachments/", 1)[1])
        return Reply(body=_body(att_id), headers={"Content-Type": "application/pdf"})

    server.route("GET", r"/settlements/.+/attachments/", attachment)


def _copy(s3_client: Any, bucket: str, **kwargs: Any) -> dict[str, Any]:
    STATS["bad_inputs"] += 1
    op = SettlementsToS3Operator(
        task_id="copy", account_id=MERCHANT, s3_bucket=bucket, since="2026-11-01", **kwargs
    )
    with counting_overwrites(s3_client, bucket) as written:
        result: dict[str, Any] = op.execute({})  # type: ignore[arg-type]
        written += result["written"]
    return result


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(s3_client: Any, bucket: str, key: str) -> bytes:
    return bytes(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())


# ------------------------------------------------------------------------------ settlements


def test_a_settlement_of_another_account_is_never_written_and_is_reported(
    hostile: HostileServer, s3_bucket: str, s3_client: Any
) -> None:
    _serve_settlements(
        hostile,
        [
            _settlement("S1", [_attachment("a1")]),
            _settlement("S2", [_attachment("a2")], account_id=OTHER),
        ],
    )

    result = _copy(s3_client, s3_bucket)

    assert result["unconfirmed"] == {"S2": "belongs to another account"}
    assert not any("S2" in key for key in s3_objects(s3_client, s3_bucket))
    assert hostile.count("GET", r"/settlements/S2/attachments/") == 0
    assert result["settlement_ids"] == ["S1"]


def test_an_attachment_named_manifest_never_takes_the_manifests_key(
    hostile: HostileServer, s3_bucket: str, s3_client: Any
) -> None:
    _serve_settlements(hostile, [_settlement("S1", [_attachment("manifest", "json"), _attachment("a1")])])

    result = _copy(s3_client, s3_bucket)

    keys = set(s3_objects(s3_client, s3_bucket))
    assert len(keys) == 3 and len(result["written"]) == 3
    manifest = json.loads(_read(s3_client, s3_bucket, f"{PREFIX}S1/manifest.json"))
    assert manifest["settlement_id"] == "S1"
    by_id = {entry["id"]: entry for entry in manifest["attachments"]}
    assert set(by_id) == {"manifest", "a1"}
    stored = by_id["manifest"]["s3_uri"].split("/", 3)[3]
    assert stored != f"{PREFIX}S1/manifest.json"
    assert _read(s3_client, s3_bucket, stored) == _body("manifest")
    assert by_id["manifest"]["sha256"] == _sha(_body("manifest"))


@pytest.mark.parametrize(
    "ids",
    [
        pytest.param(["x/y", "x_y"], id="slash-vs-underscore"),
        pytest.param(["r 1", "r_1", "r+1", "r:1"], id="space-plus-colon-vs-underscore"),
        pytest.param(["m\u00e6", "m\u00c6"], id="non-ascii-case"),
    ],
)
def test_distinct_attachment_ids_get_distinct_keys_and_their_own_bytes(
    hostile: HostileServer, s3_bucket: str, s3_client: Any, ids: list[str]
) -> None:
    _serve_settlements(hostile, [_settlement("S1", [_attachment(i) for i in ids])])

    result = _copy(s3_client, s3_bucket)

    manifest = json.loads(_read(s3_client, s3_bucket, f"{PREFIX}S1/manifest.json"))
    uris = {entry["id"]: entry["s3_uri"] for entry in manifest["attachments"]}
    assert set(uris) == set(ids) and len(set(uris.values())) == len(ids)
    assert result["skipped"] == []
    for att_id, uri in uris.items():
        key = uri.split("/", 3)[3]
        assert key.startswith(f"{PREFIX}S1/") and "/" not in key[len(f"{PREFIX}S1/") :]
        assert _read(s3_client, s3_bucket, key) == _body(att_id)


@pytest.mark.parametrize(
    "attachments",
    [
        pytest.param([_attachment(), _attachment()], id="two-without-id"),
        pytest.param([_attachment(None)], id="null-id"),
        pytest.param([_attachment("")], id="empty-id"),
        pytest.param([_attachment({"nested": 1})], id="object-id"),
    ],
)
def test_an_attachment_without_a_usable_id_fails_before_anything_is_written(
    hostile: HostileServer, s3_bucket: str, s3_client: Any, attachments: list[dict[str, Any]]
) -> None:
    _serve_settlements(hostile, [_settlement("S0", [_attachment("fine")]), _settlement("S1", attachments)])

    with pytest.raises(DinteroApiError, match="without a usable id"):
        _copy(s3_client, s3_bucket)

    assert s3_objects(s3_client, s3_bucket) == {}
    assert not any("None" in r.path for r in hostile.requests)


def test_dot_segments_and_control_characters_never_reach_a_key(
    hostile: HostileServer, s3_bucket: str, s3_client: Any
) -> None:
    template = "t/{account_id}/{provider}/{settlement_id}/{created_by}/{attachment_id}/{extension}"
    _serve_settlements(
        hostile,
        [
            {
                **_settlement("S1", [_attachment("a1", "..", created_by="."), _attachment("a2", "p\tdf")]),
                "provider": "..",
            },
            {**_settlement("S2", [_attachment("a3", "pdf", created_by="pay\r\nex")]), "provider": "x\x00y"},
        ],
    )

    _copy(s3_client, s3_bucket, s3_key=template)

    keys = set(s3_objects(s3_client, s3_bucket))
    assert len(keys) == 3 + 2
    for key in keys:
        assert key.startswith(f"t/{MERCHANT}/")
        assert not {".", ".."} & set(key.split("/")), key
        assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in key), repr(key)


def test_non_ascii_ids_copy_correctly(hostile: HostileServer, s3_bucket: str, s3_client: Any) -> None:
    att_id = "kvittering-æøå-日本"
    _serve_settlements(hostile, [_settlement("S-ø1", [_attachment(att_id)])])

    _copy(s3_client, s3_bucket)

    key = f"{PREFIX}S-ø1/{att_id}.pdf"
    assert set(s3_objects(s3_client, s3_bucket)) == {key, f"{PREFIX}S-ø1/manifest.json"}
    assert _read(s3_client, s3_bucket, key) == _body(att_id)
    head = s3_client.head_object(Bucket=s3_bucket, Key=key)
    assert unquote(head["Metadata"]["dintero-attachment-id"]) == att_id


# ------------------------------------------------------------------------------ insight reports


def _report(report_id: Any, file_name: str, **extra: Any) -> dict[str, Any]:
    report = {
        "id": report_id,
        "report_job_id": "job-1",
        "content_type": "application/pdf",
        "report_file_name": file_name,
        "report_config_id": "cfg-1",
        "created_at": "2026-11-01T01:00:00Z",
        "data_from": "2026-10-01T00:00:00Z",
        "data_to": "2026-10-31T23:59:59Z",
        **extra,
    }
    if report_id is ...:
        del report["id"]
    return report


def _serve_reports(server: HostileServer, reports: list[dict[str, Any]]) -> None:
    for n, report in enumerate(reports):
        report.setdefault("signed_url", f"{server.url}/signed/{n}?signature=sig{n}")
    server.route("GET", rf"/v1/accounts/{MERCHANT}/reports/metadata$", Reply(json={"reports": reports}))

    def signed(seen: Any) -> Reply:
        n = int(seen.path.rsplit("/", 1)[1])
        return Reply(body=_body(f"report {n}"), headers={"Content-Type": "application/pdf"})

    server.route("GET", r"^/signed/\d+$", signed)


def _copy_reports(s3_client: Any, bucket: str, **kwargs: Any) -> list[str]:
    STATS["bad_inputs"] += 1
    op = InsightReportToS3Operator(task_id="copy_reports", account_id=MERCHANT, s3_bucket=bucket, **kwargs)
    with counting_overwrites(s3_client, bucket) as written:
        uris: list[str] = op.execute({})  # type: ignore[arg-type]
        written += uris
    return uris


@pytest.mark.parametrize("replace", [False, True])
def test_a_report_of_another_account_fails_before_anything_is_written(
    hostile: HostileServer, s3_bucket: str, s3_client: Any, replace: bool
) -> None:
    theirs = f"dintero/insight/account={OTHER}/config=cfg-1/period=2026-10-01_2026-10-31/r2.pdf"
    s3_client.put_object(Bucket=s3_bucket, Key=theirs, Body=b"the other merchant's report")
    _serve_reports(
        hostile, [_report("r1", "r1.pdf", account_id=MERCHANT), _report("r2", "r2.pdf", account_id=OTHER)]
    )

    with pytest.raises(DinteroApiError, match=rf"{OTHER}.*{MERCHANT}"):
        _copy_reports(s3_client, s3_bucket, replace=replace)

    assert s3_objects(s3_client, s3_bucket) == {theirs: len(b"the other merchant's report")}
    assert hostile.count("GET", r"^/signed/") == 0


def test_a_report_without_account_id_lands_under_the_operators_account(
    hostile: HostileServer, s3_bucket: str, s3_client: Any
) -> None:
    _serve_reports(hostile, [_report("r1", "r1.pdf")])

    (uri,) = _copy_reports(s3_client, s3_bucket)

    key = f"dintero/insight/account={MERCHANT}/config=cfg-1/period=2026-10-01_2026-10-31/r1.pdf"
    assert uri == f"s3://{s3_bucket}/{key}"
    assert _read(s3_client, s3_bucket, key) == _body("report 0")


def test_distinct_report_file_names_get_distinct_keys(
    hostile: HostileServer, s3_bucket: str, s3_client: Any
) -> None:
    _serve_reports(hostile, [_report("r1", "a/b.pdf"), _report("r2", "a_b.pdf"), _report("r3", "..")])

    uris = _copy_reports(s3_client, s3_bucket)

    keys = [uri.split("/", 3)[3] for uri in uris]
    assert len(set(keys)) == 3
    for n, key in enumerate(keys):
        assert key.startswith(
            f"dintero/insight/account={MERCHANT}/config=cfg-1/period=2026-10-01_2026-10-31/"
        )
        assert key.count("/") == 5 and not {".", ".."} & set(key.split("/"))
        assert _read(s3_client, s3_bucket, key) == _body(f"report {n}")


def test_a_report_without_id_fails_before_anything_is_written(
    hostile: HostileServer, s3_bucket: str, s3_client: Any
) -> None:
    _serve_reports(hostile, [_report("r1", "r1.pdf"), _report(..., "x.pdf"), _report(..., "y.pdf")])

    with pytest.raises(DinteroApiError, match="without a usable id"):
        _copy_reports(s3_client, s3_bucket)

    assert s3_objects(s3_client, s3_bucket) == {}


def test_two_reports_on_one_key_fail_before_anything_is_written(
    hostile: HostileServer, s3_bucket: str, s3_client: Any
) -> None:
    _serve_reports(hostile, [_report("r1", "same.pdf"), _report("r2", "same.pdf")])

    with pytest.raises(DinteroInputError, match="r1 and report r2"):
        _copy_reports(s3_client, s3_bucket)

    assert s3_objects(s3_client, s3_bucket) == {}


# ------------------------------------------------------------------------------ no orphans


_KILLED_COPY = """
    import sys
    from airflow_provider_dintero.transfers.settlements_to_s3 import SettlementsToS3Operator

    SettlementsToS3Operator(
        task_id="copy", account_id=sys.argv[1], s3_bucket=sys.argv[2], since="2026-11-01"
    ).execute({})
"""


def _stalling_body(size: int, stall_after: int, release: threading.Event) -> Iterator[bytes]:
    sent = 0
    while sent < size:
        if sent >= stall_after:
            release.wait(60)
        chunk = min(MIB, size - sent)
        yield bytes([sent // MIB % 251]) * chunk
        sent += chunk


def _open_parts(s3_client: Any, bucket: str) -> int:
    uploads = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return sum(
        len(s3_client.list_parts(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"]).get("Parts", []))
        for u in uploads
    )


def test_a_killed_copy_leaves_no_multipart_upload_after_a_successful_rerun(
    hostile: HostileServer, s3_bucket: str, s3_client: Any
) -> None:
    size = 12 * MIB
    release = threading.Event()
    hostile.route(
        "GET",
        rf"/v1/accounts/{MERCHANT}/settlements$",
        Reply(json={"items": [_settlement("S1", [_attachment("big")])]}),
    )
    hostile.route(
        "GET",
        r"/attachments/big$",
        lambda seen: Reply(body=_stalling_body(size, 9 * MIB, release), content_length=size),
        times=1,
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_KILLED_COPY), MERCHANT, s3_bucket],
        cwd=REPO,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while _open_parts(s3_client, s3_bucket) == 0 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert _open_parts(s3_client, s3_bucket) >= 1, "the copy never uploaded a part"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        release.set()
    assert len(s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])) == 1  # the orphan
    whole = b"".join(_stalling_body(size, size, release))
    hostile.route("GET", r"/attachments/big$", Reply(body=whole, headers={"Content-Type": "application/pdf"}))

    _copy(s3_client, s3_bucket)

    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert _sha(_read(s3_client, s3_bucket, f"{PREFIX}S1/big.pdf")) == _sha(whole)
