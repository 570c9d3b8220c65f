"""SettlementsToS3Operator and the shared streaming copy, against the emulator and moto's S3."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_provider_dintero.hooks.dintero import DinteroInputError, DinteroStreamError
from airflow_provider_dintero.transfers._s3_stream import (
    key_template_fields,
    object_exists,
    render_key,
    stream_to_s3,
)
from airflow_provider_dintero.transfers.settlements_to_s3 import (
    KEY_FIELDS,
    SettlementsToS3Operator,
    settlements_asset,
)

from .conftest import ATTACHMENT_PATH, LIST_PATH, settled_count


def _operator(**kwargs: Any) -> SettlementsToS3Operator:
    kwargs.setdefault("task_id", "copy")
    return SettlementsToS3Operator(**kwargs)


def _keys(s3_client: Any, bucket: str) -> set[str]:
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def _sha256(s3_client: Any, bucket: str, key: str) -> str:
    return hashlib.sha256(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()


def _settlement(emu: Any, account_id: str, provider: str) -> dict[str, Any]:
    return next(s for s in emu.settlements(account_id) if s["provider"] == provider)


def _prefix(account_id: str, settlement: dict[str, Any]) -> str:
    return (
        f"dintero/settlements/account={account_id}/provider={settlement['provider']}/"
        f"settled_date={settlement['settled_at'][:10]}/{settlement['id']}/"
    )


def test_copies_attachments_to_deterministic_keys_and_manifest_last(
    emu: Any, s3_bucket: str, s3_client: Any
) -> None:
    mid = emu.merchant_ids[0]
    settlement = _settlement(emu, mid, "vipps")
    prefix = _prefix(mid, settlement)

    result = _operator(account_id=mid, s3_bucket=s3_bucket, settlement_ids=[settlement["id"]]).execute({})

    attachment_keys = {f"{prefix}{a['id']}.{a['extension']}" for a in settlement["attachments"]}
    assert _keys(s3_client, s3_bucket) == attachment_keys | {f"{prefix}manifest.json"}
    assert result == {
        "account_id": mid,
        "settlement_ids": [settlement["id"]],
        "written": [f"s3://{s3_bucket}/{k}" for k in sorted(attachment_keys, key=_order(settlement))]
        + [f"s3://{s3_bucket}/{prefix}manifest.json"],
        "skipped": [],
    }
    for a in settlement["attachments"]:
        key = f"{prefix}{a['id']}.{a['extension']}"
        assert _sha256(s3_client, s3_bucket, key) == emu.attachment_sha256(mid, settlement["id"], a["id"])
        assert s3_client.head_object(Bucket=s3_bucket, Key=key)["ContentType"].startswith(a["content_type"])


def _order(settlement: dict[str, Any]) -> Any:
    ids = [a["id"] for a in settlement["attachments"]]
    return lambda key: ids.index(key.rsplit("/", 1)[1].split(".")[0])


def test_follows_a_redirect_to_another_host(emu: Any, s3_bucket: str, s3_client: Any) -> None:
    mid = emu.merchant_ids[2]
    settlement = _settlement(emu, mid, "dintero_psp")
    emu.settings.attachment_redirect = True

    result = _operator(account_id=mid, s3_bucket=s3_bucket, settlement_ids=[settlement["id"]]).execute({})

    assert len(result["written"]) == len(settlement["attachments"]) + 1
    assert settled_count(emu, 1, "GET", r"/_emulator/blobs/", status=200) >= 1
    for a in settlement["attachments"]:
        key = f"{_prefix(mid, settlement)}{a['id']}.{a['extension']}"
        assert _sha256(s3_client, s3_bucket, key) == emu.attachment_sha256(mid, settlement["id"], a["id"])


def test_manifest_describes_the_settlement_and_each_attachment(
    emu: Any, s3_bucket: str, s3_client: Any
) -> None:
    mid = emu.merchant_ids[1]
    settlement = _settlement(emu, mid, "payex")
    _operator(account_id=mid, s3_bucket=s3_bucket, settlement_ids=[settlement["id"]]).execute({})

    body = s3_client.get_object(Bucket=s3_bucket, Key=f"{_prefix(mid, settlement)}manifest.json")["Body"]
    manifest = json.loads(body.read())

    assert manifest["account_id"] == mid
    assert manifest["settlement_id"] == settlement["id"]
    assert manifest["settlement"]["settled_at"] == settlement["settled_at"]
    assert manifest["settlement"]["amounts"] == settlement["amounts"]
    assert manifest["attachments_filter"] == "all"
    by_id = {a["id"]: a for a in manifest["attachments"]}
    assert set(by_id) == {a["id"] for a in settlement["attachments"]}
    for a in settlement["attachments"]:
        entry = by_id[a["id"]]
        assert entry["sha256"] == emu.attachment_sha256(mid, settlement["id"], a["id"])
        assert entry["s3_uri"] == f"s3://{s3_bucket}/{_prefix(mid, settlement)}{a['id']}.{a['extension']}"
        assert entry["kind"] == ("normalized" if a["created_by"] == "dintero" else "source")
        assert entry["size"] == len(emu.attachment_bytes(mid, settlement["id"], a["id"]))


@pytest.mark.parametrize(
    ("attachments", "keep"),
    [
        ("source", lambda a: a["created_by"] != "dintero"),
        ("normalized", lambda a: a["created_by"] == "dintero"),
        ("ALL", lambda a: True),
    ],
)
def test_attachments_filter(emu: Any, s3_bucket: str, s3_client: Any, attachments: str, keep: Any) -> None:
    mid = emu.merchant_ids[0]
    settlement = _settlement(emu, mid, "collector")
    prefix = _prefix(mid, settlement)

    _operator(
        account_id=mid, s3_bucket=s3_bucket, settlement_ids=[settlement["id"]], attachments=attachments
    ).execute({})

    expected = {f"{prefix}{a['id']}.{a['extension']}" for a in settlement["attachments"] if keep(a)}
    assert expected
    assert _keys(s3_client, s3_bucket) == expected | {f"{prefix}manifest.json"}
    assert settled_count(emu, len(expected), "GET", ATTACHMENT_PATH) == len(expected)


def test_rerun_copies_nothing_new(emu: Any, s3_bucket: str) -> None:
    mid = emu.merchant_ids[0]
    op = _operator(account_id=mid, s3_bucket=s3_bucket, since="2026-10-12")
    first = op.execute({})
    downloads = settled_count(
        emu, len(first["written"]) - len(first["settlement_ids"]), "GET", ATTACHMENT_PATH
    )

    second = _operator(account_id=mid, s3_bucket=s3_bucket, since="2026-10-12").execute({})

    assert settled_count(emu, 2, "GET", LIST_PATH) == 2
    assert emu.count("GET", ATTACHMENT_PATH) == downloads
    assert second["written"] == []
    assert sorted(second["skipped"]) == sorted(first["written"])
    assert len(first["settlement_ids"]) == 3  # bambora, collector, klarna (by created_at)


def test_replace_overwrites(emu: Any, s3_bucket: str) -> None:
    mid = emu.merchant_ids[2]
    settlement = _settlement(emu, mid, "bambora")
    n = len(settlement["attachments"])
    _operator(account_id=mid, s3_bucket=s3_bucket, settlement_ids=[settlement["id"]]).execute({})

    again = _operator(
        account_id=mid, s3_bucket=s3_bucket, settlement_ids=[settlement["id"]], replace=True
    ).execute({})

    assert len(again["written"]) == n + 1
    assert again["skipped"] == []
    assert settled_count(emu, 2 * n, "GET", ATTACHMENT_PATH) == 2 * n


def test_since_selects_by_created_at_with_no_upper_bound(emu: Any, s3_bucket: str) -> None:
    mid = emu.merchant_ids[0]
    result = _operator(account_id=mid, s3_bucket=s3_bucket, since="2026-11-01").execute({})

    assert result["settlement_ids"] == [_settlement(emu, mid, "klarna")["id"]]
    settled_count(emu, 1, "GET", LIST_PATH)
    (request,) = [r for r in emu.requests if r.method == "GET" and r.path.endswith("/settlements")]
    assert request.query["item_created_at.gte"] == ["2026-11-01"]  # whole days; the exact window is ours
    assert "item_created_at.lte" not in request.query


def test_default_window_is_the_data_interval(emu: Any, s3_bucket: str) -> None:
    mid = emu.merchant_ids[0]
    context = {
        "data_interval_start": datetime(2026, 10, 14, tzinfo=timezone.utc),
        "data_interval_end": datetime(2026, 10, 15, tzinfo=timezone.utc),
    }

    result = _operator(account_id=mid, s3_bucket=s3_bucket).execute(context)  # type: ignore[arg-type]

    assert result["settlement_ids"] == [_settlement(emu, mid, "bambora")["id"]]


def test_stream_cut_leaves_no_object_and_a_retry_succeeds(emu: Any, s3_bucket: str, s3_client: Any) -> None:
    mid = emu.merchant_ids[0]
    added = emu.add_settlement(mid, provider="payex", attachment_sizes={"source": 20_000, "pdf": 30_000})
    source, pdf = added["attachments"]
    emu.inject_fault(path_regex=f"/attachments/{pdf['id']}$", cut_after_bytes=12_000)
    prefix = _prefix(mid, added)

    with pytest.raises(DinteroStreamError) as err:
        _operator(account_id=mid, s3_bucket=s3_bucket, settlement_ids=[added["id"]]).execute({})

    message = str(err.value)
    assert all(part in message for part in (mid, added["id"], pdf["id"]))
    assert _keys(s3_client, s3_bucket) == {f"{prefix}{source['id']}.xml"}  # no partial pdf, no manifest
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []

    retry = _operator(account_id=mid, s3_bucket=s3_bucket, settlement_ids=[added["id"]]).execute({})

    pdf_key = f"{prefix}{pdf['id']}.pdf"
    assert retry["written"] == [f"s3://{s3_bucket}/{pdf_key}", f"s3://{s3_bucket}/{prefix}manifest.json"]
    assert _sha256(s3_client, s3_bucket, pdf_key) == emu.attachment_sha256(mid, added["id"], pdf["id"])
    manifest = json.loads(s3_client.get_object(Bucket=s3_bucket, Key=f"{prefix}manifest.json")["Body"].read())
    assert {a["id"]: a["sha256"] for a in manifest["attachments"]} == {
        a["id"]: emu.attachment_sha256(mid, added["id"], a["id"]) for a in added["attachments"]
    }


def test_missing_bucket_fails_before_any_download(emu: Any, aws_connection: str) -> None:
    with pytest.raises(DinteroInputError, match=r"no-such-bucket-here.*does not exist"):
        _operator(
            account_id=emu.merchant_ids[0], s3_bucket="no-such-bucket-here", since="2026-10-01"
        ).execute({})
    assert emu.requests == []


@pytest.mark.parametrize(
    ("kwargs", "field", "text"),
    [
        ({"s3_key": "x/{account_id}/{settlement}/{attachment_id}"}, "s3_key", "unknown field {settlement}"),
        ({"s3_key": "x/{settlement_id}.{extension}"}, "s3_key", "{attachment_id}"),
        ({"s3_key": "x/{}/{settlement_id}/{attachment_id}"}, "s3_key", "unknown field {}"),
        ({"since": "not a date"}, "since", "ISO-8601"),
        ({"payment_providers": ["pay/pal"]}, "payment_providers", "klarna"),
        ({"attachments": "pdf"}, "attachments", "normalized"),
        ({"settlement_ids": [""]}, "settlement_ids", "settlement ids"),
        ({"account_id": "T1"}, "account_id", "8 digits"),
    ],
)
def test_bad_input_fails_before_any_request(
    emu: Any, s3_bucket: str, s3_client: Any, kwargs: dict[str, Any], field: str, text: str
) -> None:
    params = {"account_id": emu.merchant_ids[0], "s3_bucket": s3_bucket, **kwargs}
    with pytest.raises(DinteroInputError) as err:
        _operator(**params).execute({})
    assert err.value.field == field
    assert text in str(err.value)
    assert emu.requests == []
    assert _keys(s3_client, s3_bucket) == set()


def test_unknown_key_field_lists_the_allowed_fields() -> None:
    with pytest.raises(DinteroInputError) as err:
        key_template_fields("{account_id}/{day}", KEY_FIELDS)
    assert all(name in str(err.value) for name in KEY_FIELDS)


@pytest.mark.parametrize(
    ("template", "field"), [("{account_id.real}/x", "account_id.real"), ("{provider[0]}", "provider[0]")]
)
def test_key_template_rejects_attribute_and_index_access(template: str, field: str) -> None:
    with pytest.raises(DinteroInputError, match=re.escape(f"unknown field {{{field}}}")):
        key_template_fields(template, KEY_FIELDS)


def test_custom_key_template_and_its_manifest(emu: Any, s3_bucket: str, s3_client: Any) -> None:
    mid = emu.merchant_ids[0]
    settlement = _settlement(emu, mid, "vipps")
    template = "flat/{settled_year}/{settled_month}/{kind}/{settlement_id}_{attachment_id}.{extension}"

    _operator(
        account_id=mid, s3_bucket=s3_bucket, s3_key=template, settlement_ids=[settlement["id"]]
    ).execute({})

    y, m = settlement["settled_at"][:4], settlement["settled_at"][5:7]
    assert f"flat/{y}/{m}/manifest/{settlement['id']}_manifest.json" in _keys(s3_client, s3_bucket)


def test_settlement_ids_accepts_the_sensor_xcom(emu: Any, s3_bucket: str) -> None:
    mid = emu.merchant_ids[0]
    settlement = _settlement(emu, mid, "vipps")
    xcom = {"account_id": mid, "settlement_ids": [settlement["id"]], "settlements": []}

    result = _operator(account_id=mid, s3_bucket=s3_bucket, settlement_ids=xcom).execute({})

    assert result["settlement_ids"] == [settlement["id"]]


def test_outlet_asset_defaults_to_the_bucket_prefix() -> None:
    op = _operator(account_id="T11200001", s3_bucket="finance")
    templated = _operator(account_id="T11200001", s3_bucket="{{ params.bucket }}")

    assert [o.uri for o in op.outlets] == ["s3://finance/dintero/settlements"]
    assert settlements_asset("finance").uri == "s3://finance/dintero/settlements"
    assert templated.outlets == []


# ---------------------------------------------------------------------------- _s3_stream


_PATTERN = bytes(range(251)) * (1024 * 1024 // 251 + 2)


class _Source:
    """
    A non-seekable source of ``size`` deterministic bytes, like a socket: each read returns at
    most ``max_read`` bytes; it raises once ``fail_at`` bytes were read.
    """

    def __init__(self, size: int, fail_at: int | None = None, max_read: int = 1024 * 1024) -> None:
        self.size, self.fail_at, self.max_read, self.pos = size, fail_at, max_read, 0
        self.digest = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        if self.fail_at is not None and self.pos >= self.fail_at:
            raise DinteroStreamError("connection reset by peer", account_id="T11200001")
        n = self.size - self.pos if n is None or n < 0 else min(n, self.size - self.pos)
        n = min(n, self.max_read)
        start = self.pos % 251
        chunk = _PATTERN[start : start + n]
        self.pos += n
        self.digest.update(chunk)
        return chunk


MIB = 1024 * 1024


def test_stream_to_s3_multipart_break_is_aborted(s3_bucket: str, s3_client: Any, aws_connection: str) -> None:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=aws_connection)
    with pytest.raises(DinteroStreamError):
        stream_to_s3(
            hook,
            _Source(12 * MIB, fail_at=11 * MIB),
            s3_bucket,
            "big.bin",
            content_type="application/octet-stream",
            chunk_size=5 * MIB,
            max_concurrency=1,
        )

    assert not object_exists(hook, s3_bucket, "big.bin")
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_stream_to_s3_multipart_upload(s3_bucket: str, s3_client: Any, aws_connection: str) -> None:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=aws_connection)
    source = _Source(11 * MIB)

    size = stream_to_s3(
        hook,
        source,
        s3_bucket,
        "big.bin",
        content_type="application/octet-stream",
        expected_size=11 * MIB,
        metadata={"origin": "test"},
        chunk_size=5 * MIB,
    )

    head = s3_client.head_object(Bucket=s3_bucket, Key="big.bin")
    assert size == head["ContentLength"] == 11 * MIB
    assert head["ETag"].strip('"').endswith("-3")  # three parts
    assert head["Metadata"] == {"origin": "test"}
    assert _sha256(s3_client, s3_bucket, "big.bin") == source.digest.hexdigest()


def test_stream_to_s3_size_mismatch_deletes_the_object(
    s3_bucket: str, s3_client: Any, aws_connection: str
) -> None:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from airflow_provider_dintero.transfers._s3_stream import S3CopyError

    hook = S3Hook(aws_conn_id=aws_connection)
    with pytest.raises(S3CopyError, match="1000 bytes read but 2000 announced"):
        stream_to_s3(
            hook, _Source(1000), s3_bucket, "short.bin", content_type="text/plain", expected_size=2000
        )
    assert not object_exists(hook, s3_bucket, "short.bin")


def test_render_key_refuses_absolute_keys() -> None:
    with pytest.raises(DinteroInputError, match="relative key"):
        render_key("{account_id}/x", {"account_id": "/etc"})
