"""
Compressed answers work (issue 12 item 5): attachments and reports served with
``Content-Encoding: gzip`` or ``deflate`` land in S3 complete and correct (the size and sha256 of
the decoded bytes a user would download); the size check is on the bytes stored, never on the
compressed ``Content-Length``; a compressed body that ends early is an error and stores nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_dintero.exceptions import DinteroStreamError
from airflow_provider_dintero.transfers.insight_report_to_s3 import InsightReportToS3Operator
from airflow_provider_dintero.transfers.settlements_to_s3 import SettlementsToS3Operator
from tests.reliability.hostile import HostileServer, Reply

from .conftest import STATS, s3_objects

MID = "T11200001"
#: Compressible text and incompressible bytes: several read chunks once decoded.
PAYLOAD = (
    b"date;amount;currency\n" + b"2026-11-05;12345;NOK\n" * 20_000 + hashlib.sha512(b"x").digest() * 2_000
)


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


ENCODINGS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "gzip": ("gzip", gzip.compress),
    "deflate": ("deflate", zlib.compress),
    "deflate-without-zlib-header": ("deflate", _raw_deflate),
    "x-gzip": ("x-gzip", gzip.compress),
}


def _settlement_routes(hostile: HostileServer, attachment: Reply) -> None:
    item = {
        "id": "s1",
        "provider": "payex",
        "created_at": "2026-11-05T10:00:00Z",
        "settled_at": "2026-11-05T10:00:00Z",
        "attachments": [
            {"id": "a1", "extension": "csv", "content_type": "text/csv", "created_by": "dintero"}
        ],
    }
    hostile.route("GET", r"/settlements$", Reply(json={"items": [item]}))
    hostile.route("GET", r"/settlements/s1/attachments/a1$", attachment)


def _settlement_copy(bucket: str) -> dict[str, Any]:
    return SettlementsToS3Operator(
        task_id="copy", account_id=MID, s3_bucket=bucket, since="2026-11-01", attachments="all"
    ).execute({})


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_a_compressed_attachment_lands_decoded_and_whole(
    hostile: HostileServer, s3_bucket: str, s3_client: Any, encoding: str
) -> None:
    header, pack = ENCODINGS[encoding]
    packed = pack(PAYLOAD)
    assert len(packed) < len(PAYLOAD) // 2  # the Content-Length differs from the file's size
    _settlement_routes(hostile, Reply(body=packed, headers={"Content-Encoding": header}))

    result = _settlement_copy(s3_bucket)

    assert result["settlement_ids"] == ["s1"]
    (key,) = [k for k in s3_objects(s3_client, s3_bucket) if k.endswith(".csv")]
    stored = s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    assert len(stored) == len(PAYLOAD)
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(PAYLOAD).hexdigest()


def test_a_gzip_attachment_sent_in_chunks_without_length_lands_whole(
    hostile: HostileServer, s3_bucket: str, s3_client: Any
) -> None:
    packed = gzip.compress(PAYLOAD)
    chunks = [packed[i : i + 999] for i in range(0, len(packed), 999)]
    _settlement_routes(
        hostile,
        Reply(body=iter(chunks), chunked=True, content_length=None, headers={"Content-Encoding": "gzip"}),
    )

    _settlement_copy(s3_bucket)

    (key,) = [k for k in s3_objects(s3_client, s3_bucket) if k.endswith(".csv")]
    assert s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == PAYLOAD


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(
            Reply(
                body=gzip.compress(PAYLOAD)[:-700], content_length=None, headers={"Content-Encoding": "gzip"}
            ),
            id="gzip-ends-early-without-length",
        ),
        pytest.param(
            Reply(body=gzip.compress(PAYLOAD), cut_after=700, headers={"Content-Encoding": "gzip"}),
            id="gzip-cut-before-its-content-length",
        ),
        pytest.param(
            Reply(body=b"not gzip at all" * 100, headers={"Content-Encoding": "gzip"}), id="not-gzip-data"
        ),
        pytest.param(Reply(body=PAYLOAD, headers={"Content-Encoding": "compress"}), id="unknown-encoding"),
    ],
)
def test_a_broken_compressed_attachment_stores_nothing(
    hostile: HostileServer, s3_bucket: str, s3_client: Any, reply: Reply
) -> None:
    _settlement_routes(hostile, reply)
    STATS["faults"] += 1

    with pytest.raises(DinteroStreamError, match="attachment a1 of settlement s1"):
        _settlement_copy(s3_bucket)

    assert s3_objects(s3_client, s3_bucket) == {}


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_insight_report_lands_decoded_and_whole(
    hostile: HostileServer, s3_bucket: str, s3_client: Any, encoding: str
) -> None:
    header, pack = ENCODINGS[encoding]
    report = {
        "id": "r1",
        "account_id": MID,
        "report_config_id": "cfg1",
        "content_type": "text/csv",
        "created_at": "2026-11-05T10:00:00Z",
        "data_from": "2026-10-01T00:00:00Z",
        "data_to": "2026-11-01T00:00:00Z",
        "report_file_name": "monthly.csv",
        "signed_url": f"{hostile.url}/signed/r1.csv?X-Amz-Signature=abc",
    }
    hostile.route("GET", r"/reports/metadata$", Reply(json={"reports": [report]}))
    hostile.route("GET", r"/signed/r1.csv$", Reply(body=pack(PAYLOAD), headers={"Content-Encoding": header}))

    uris = InsightReportToS3Operator(
        task_id="reports", account_id=MID, s3_bucket=s3_bucket, since="2026-11-01", until="2026-11-06"
    ).execute({})

    assert len(uris) == 1
    key = uris[0].split(f"s3://{s3_bucket}/", 1)[1]
    stored = s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    assert len(stored) == len(PAYLOAD)
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(PAYLOAD).hexdigest()
