"""SettlementsToS3Operator and the shared streaming copy, against the emulator and moto's S3."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

import pytest

from airflow_provider_dintero.exceptions import DinteroInputError, DinteroStreamError
from airflow_provider_dintero.transfers._s3_stream import (
    key_part,
    key_template_fields,
    object_exists,
    render_key,
    stream_to_s3,
    streaming_config,
)
from airflow_provider_dintero.transfers.settlements_to_s3 import (
    KEY_FIELDS,
    SettlementsToS3Operator,
    settlements_asset,
)
from tests.conftest import AIRFLOW_V3

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
        "unconfirmed": {},
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
        ({"encrypt": "yes"}, "encrypt", "True or False"),
        ({"acl_policy": "everyone"}, "acl_policy", "bucket-owner-full-control"),
        ({"s3_extra_args": "AES256"}, "s3_extra_args", "a dict"),
        ({"s3_extra_args": {"Bogus": 1}}, "s3_extra_args", "not Bogus"),
        ({"s3_extra_args": {"ContentType": "text/plain"}}, "s3_extra_args", "not ContentType"),
        ({"s3_extra_args": {"SSECustomerKey": "k" * 32}}, "s3_extra_args", "not SSECustomerKey"),
        ({"s3_extra_args": {"SSEKMSKeyId": "k1"}}, "s3_extra_args", "aws:kms"),
        ({"encrypt": True, "s3_extra_args": {"ServerSideEncryption": "aws:kms"}}, "encrypt", "SSE-S3"),
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


# ---------------------------------------------------------------------------- keys


_TRICKY_VALUES = [
    "a/b",
    "a_b",
    "a%2Fb",
    "a%252Fb",
    "a b",
    "a%20b",
    ".",
    "..",
    "%2E",
    "...",
    "manifest",
    "%6Danifest",
    "x\ny",
    "x\x00y",
    "x%0Ay",
    "æøå",
    "%C3%A6",
    "日本",
    "a\\b",
    "",
]


def test_key_part_is_injective_and_never_a_path_level() -> None:
    parts = [key_part(v, reserved=("manifest",)) for v in _TRICKY_VALUES]

    assert len(set(parts)) == len(parts)
    for value, part in zip(_TRICKY_VALUES, parts, strict=True):
        assert "/" not in part and part not in (".", "..", "manifest")
        assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in part)
        assert unquote(part) == value  # readable: percent-decoding gives the value back


def test_key_part_keeps_plain_and_non_ascii_ids_as_they_are() -> None:
    for value in ("S-123_abc.1", "kvittering-æøå", "日本"):
        assert key_part(value) == value


# ---------------------------------------------------------------------------- S3 through S3Hook


_KMS = "<kms key id>"
_ACL_GROUPS = {
    "public-read": "http://acs.amazonaws.com/groups/global/AllUsers",
    "authenticated-read": "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
}


@pytest.mark.parametrize(
    ("kwargs", "sse", "acl"),
    [
        pytest.param(
            {"encrypt": True, "acl_policy": "authenticated-read"}, "AES256", "authenticated-read", id="sse-s3"
        ),
        pytest.param(
            {
                "s3_extra_args": {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": _KMS},
                "acl_policy": "public-read",
            },
            "aws:kms",
            "public-read",
            id="sse-kms",
        ),
        pytest.param(
            {"s3_extra_args": {"ServerSideEncryption": "AES256", "ACL": "public-read"}},
            "AES256",
            "public-read",
            id="extra-args-only",
        ),
    ],
)
def test_every_object_manifest_included_carries_the_requested_encryption_and_acl(
    emu: Any, s3_bucket: str, s3_client: Any, kms_key_id: str, kwargs: dict[str, Any], sse: str, acl: str
) -> None:
    mid = emu.merchant_ids[0]
    settlement = _settlement(emu, mid, "vipps")
    if "s3_extra_args" in kwargs:
        kwargs = {
            **kwargs,
            "s3_extra_args": {k: kms_key_id if v == _KMS else v for k, v in kwargs["s3_extra_args"].items()},
        }

    result = _operator(
        account_id=mid, s3_bucket=s3_bucket, settlement_ids=[settlement["id"]], **kwargs
    ).execute({})

    keys = _keys(s3_client, s3_bucket)
    assert len(keys) == len(settlement["attachments"]) + 1 == len(result["written"])
    for key in keys:
        head = s3_client.head_object(Bucket=s3_bucket, Key=key)
        assert head.get("ServerSideEncryption") == sse, key
        if sse == "aws:kms":
            assert head.get("SSEKMSKeyId", "").endswith(kms_key_id), key
        grants = s3_client.get_object_acl(Bucket=s3_bucket, Key=key)["Grants"]
        assert any(g["Grantee"].get("URI") == _ACL_GROUPS[acl] for g in grants), key


def test_multipart_copies_follow_the_aws_connections_transfer_config_and_stay_encrypted(
    emu: Any, s3_server: str, s3_bucket: str, s3_client: Any, kms_key_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    part = 5 * MIB
    conn = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {
            "endpoint_url": s3_server,
            "region_name": "us-east-1",
            "service_config": {
                "s3": {"transfer_config_args": {"multipart_chunksize": part, "multipart_threshold": part}}
            },
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
    mid = emu.merchant_ids[0]
    added = emu.add_settlement(mid, provider="payex", attachment_sizes={"pdf": 11 * MIB})
    (pdf,) = added["attachments"]

    _operator(
        account_id=mid,
        s3_bucket=s3_bucket,
        settlement_ids=[added["id"]],
        s3_extra_args={"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id},
    ).execute({})

    key = f"{_prefix(mid, added)}{pdf['id']}.pdf"
    head = s3_client.head_object(Bucket=s3_bucket, Key=key)
    assert head["ETag"].strip('"').endswith("-3")  # 5 MiB parts from the connection, not 8 MiB
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", kms_key_id)
    assert _sha256(s3_client, s3_bucket, key) == emu.attachment_sha256(mid, added["id"], pdf["id"])
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_streaming_config_starts_from_the_hooks_config_and_bounds_memory(aws_connection: str) -> None:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    default = streaming_config(S3Hook(aws_conn_id=aws_connection))
    tuned = streaming_config(
        S3Hook(
            aws_conn_id=aws_connection,
            transfer_config_args={"max_concurrency": 4, "multipart_chunksize": 16 * MIB},
        )
    )

    assert (default.multipart_chunksize, default.max_concurrency, default.max_in_memory_upload_chunks) == (
        8 * MIB,
        2,
        3,
    )
    assert (tuned.multipart_chunksize, tuned.max_concurrency, tuned.max_in_memory_upload_chunks) == (
        16 * MIB,
        4,
        5,
    )
    with pytest.raises(DinteroInputError, match="multipart_chunksize"):
        streaming_config(
            S3Hook(aws_conn_id=aws_connection, transfer_config_args={"multipart_chunksize": MIB})
        )


def test_the_hooks_own_extra_args_apply_to_every_object(
    emu: Any, s3_bucket: str, s3_client: Any, aws_connection: str
) -> None:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    mid = emu.merchant_ids[0]
    settlement = _settlement(emu, mid, "vipps")
    op = _operator(account_id=mid, s3_bucket=s3_bucket, settlement_ids=[settlement["id"]])
    op.__dict__["s3_hook"] = S3Hook(aws_conn_id=aws_connection, extra_args={"StorageClass": "STANDARD_IA"})

    op.execute({})

    for key in _keys(s3_client, s3_bucket):
        assert s3_client.head_object(Bucket=s3_bucket, Key=key).get("StorageClass") == "STANDARD_IA", key


# ---------------------------------------------------------------------------- OpenLineage


def test_openlineage_names_the_settlements_read_and_every_object_written(
    emu: Any, s3_bucket: str, s3_client: Any
) -> None:
    from openlineage.client.serde import Serde

    mid = emu.merchant_ids[0]
    settlement = _settlement(emu, mid, "vipps")
    op = _operator(account_id=mid, s3_bucket=s3_bucket, settlement_ids=[settlement["id"]])
    result = op.execute({})

    lineage = op.get_openlineage_facets_on_complete(None)

    host = emu.base_url.split("://", 1)[1]
    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        (f"dintero://{host}", f"accounts/{mid}/settlements")
    ]
    assert [f"{d.namespace}/{d.name}" for d in lineage.outputs] == result["written"]
    for dataset in lineage.outputs:
        body = s3_client.get_object(Bucket=s3_bucket, Key=dataset.name)["Body"].read()
        facet = dataset.facets["dinteroObject"]
        assert (facet.size, facet.sha256) == (len(body), hashlib.sha256(body).hexdigest())
        assert dataset.facets["version"].datasetVersion == f"sha256:{facet.sha256}"
        assert dataset.outputFacets["outputStatistics"].size == len(body)
        as_json = Serde.to_dict(dataset)
        assert as_json["facets"]["dinteroObject"]["sha256"] == facet.sha256
        assert as_json["facets"]["dinteroObject"]["_schemaURL"].startswith("https://openlineage.io/spec/")


def test_openlineage_of_a_rerun_that_wrote_nothing_has_no_outputs(emu: Any, s3_bucket: str) -> None:
    mid = emu.merchant_ids[0]
    settlement = _settlement(emu, mid, "vipps")
    _operator(account_id=mid, s3_bucket=s3_bucket, settlement_ids=[settlement["id"]]).execute({})
    again = _operator(account_id=mid, s3_bucket=s3_bucket, settlement_ids=[settlement["id"]])
    again.execute({})

    lineage = again.get_openlineage_facets_on_complete(None)

    assert [d.name for d in lineage.inputs] == [f"accounts/{mid}/settlements"]
    assert lineage.outputs == []


_WITHOUT_OPENLINEAGE = """
    import sys
    from importlib.abc import MetaPathFinder

    class Refuse(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            # the OpenLineage client and what the transfers would use of the providers (Airflow's
            # provider registry still reads the installed provider's metadata)
            blocked = (
                "openlineage.",
                "airflow.providers.openlineage.extractors",
                "airflow.providers.common.compat.openlineage",
            )
            if name == "openlineage" or name.startswith(blocked):
                raise ModuleNotFoundError(name)
            return None

    sys.meta_path.insert(0, Refuse())
    from airflow_provider_dintero.transfers.insight_report_to_s3 import InsightReportToS3Operator
    from airflow_provider_dintero.transfers.settlements_to_s3 import SettlementsToS3Operator

    SettlementsToS3Operator(task_id="a", account_id="T11200001", s3_bucket="b")
    InsightReportToS3Operator(task_id="b", account_id="T11200001", s3_bucket="b")
    print("imported without openlineage")
"""


def test_the_transfers_import_without_the_openlineage_provider() -> None:
    import subprocess
    import sys
    import textwrap

    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", textwrap.dedent(_WITHOUT_OPENLINEAGE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert "imported without openlineage" in done.stdout


# ---------------------------------------------------------------------------- asset events


_WATCHED = settlements_asset("finance")  # an asset as the DB holds it (normalized URI)


def _triggering_events(extras: list[dict[str, Any]]) -> dict[str, Any]:
    """The context entry a run scheduled on an asset gets, built from Airflow's own classes."""
    if AIRFLOW_V3:
        from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
        from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

        events = [
            AssetEventDagRunReferenceResult(
                asset={"name": _WATCHED.name, "uri": _WATCHED.uri, "extra": {}},
                extra=extra,
                source_task_id=None,
                source_dag_id=None,
                source_run_id=None,
                source_map_index=None,
                source_aliases=[],
                timestamp=datetime(2026, 11, 28, tzinfo=timezone.utc),
            )
            for extra in extras
        ]
        return {"triggering_asset_events": TriggeringAssetEventsAccessor.build(events)}
    from airflow.models.dataset import DatasetEvent

    return {"triggering_dataset_events": {_WATCHED.uri: [DatasetEvent(extra=e) for e in extras]}}


def test_copies_exactly_the_settlements_its_triggering_events_name_for_its_account(
    emu: Any, s3_bucket: str, s3_client: Any
) -> None:
    mid, other = emu.merchant_ids[0], emu.merchant_ids[1]
    vipps, klarna = _settlement(emu, mid, "vipps"), _settlement(emu, mid, "klarna")
    theirs = _settlement(emu, other, "payex")
    context = _triggering_events(
        [
            {"account_id": mid, "settlement_ids": [vipps["id"]], "providers": ["vipps"]},
            {"account_id": other, "settlement_ids": [theirs["id"]], "providers": ["payex"]},
            {
                "account_id": mid,
                "settlement_ids": [klarna["id"], vipps["id"]],
                "providers": ["klarna", "vipps"],
            },
        ]
    )

    result = _operator(account_id=mid, s3_bucket=s3_bucket, use_triggering_events=True).execute(context)  # type: ignore[arg-type]

    assert result["settlement_ids"] == [vipps["id"], klarna["id"]]
    keys = _keys(s3_client, s3_bucket)
    assert {k.split("/")[5] for k in keys} == {vipps["id"], klarna["id"]}
    assert all(f"/account={mid}/" in f"/{k}" for k in keys)
    assert not any(f"/accounts/{other}/" in r.path for r in emu.requests)


def test_a_run_without_triggering_events_selects_as_usual(emu: Any, s3_bucket: str) -> None:
    mid = emu.merchant_ids[0]

    result = _operator(
        account_id=mid, s3_bucket=s3_bucket, use_triggering_events=True, since="2026-11-01"
    ).execute(_triggering_events([{"account_id": mid, "written": 3}]))  # type: ignore[arg-type]

    assert result["settlement_ids"] == [_settlement(emu, mid, "klarna")["id"]]


@pytest.mark.parametrize(
    ("kwargs", "extras", "field"),
    [
        ({"settlement_ids": ["S1"]}, [], "settlement_ids"),
        ({"use_triggering_events": "yes"}, [], "use_triggering_events"),
        ({}, [{"account_id": "T11200001", "settlement_ids": "S1"}], "triggering_asset_events"),
    ],
)
def test_bad_triggering_event_input_fails_before_any_request(
    emu: Any, s3_bucket: str, kwargs: dict[str, Any], extras: list[dict[str, Any]], field: str
) -> None:
    params = {"use_triggering_events": True, **kwargs}
    with pytest.raises(DinteroInputError) as err:
        _operator(account_id=emu.merchant_ids[0], s3_bucket=s3_bucket, **params).execute(
            _triggering_events(extras)
        )  # type: ignore[arg-type]

    assert err.value.field == field
    assert emu.requests == []


def test_a_connection_that_may_not_list_multipart_uploads_still_copies(
    s3_bucket: str, s3_client: Any, aws_connection: str, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from botocore.exceptions import ClientError

    def deny(**_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "AccessDenied", "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
            "ListMultipartUploads",
        )

    hook = S3Hook(aws_conn_id=aws_connection)
    hook.get_conn().meta.events.register("before-call.s3.ListMultipartUploads", deny)
    source = _Source(1000)

    size = stream_to_s3(hook, source, s3_bucket, "small.bin", content_type="text/plain", expected_size=1000)

    assert size == 1000 and _sha256(s3_client, s3_bucket, "small.bin") == source.digest.hexdigest()
    assert "s3:ListBucketMultipartUploads" in caplog.text


# ------------------------------------------------------------------------------ unconfirmed ids


def _by_id(mid: str, ids: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    return {"settlement_ids": ids}, {}


def _by_event(mid: str, ids: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    extra = {"version": 1, "account_id": mid, "settlement_ids": ids, "providers": [], "source": "webhook"}
    return {"use_triggering_events": True}, _triggering_events([extra])


@pytest.mark.parametrize("form", [_by_id, _by_event], ids=["by-id", "by-event"])
def test_an_unknown_id_is_reported_and_the_confirmed_ones_are_copied(
    emu: Any, s3_bucket: str, s3_client: Any, form: Any
) -> None:
    mid = emu.merchant_ids[0]
    known = _settlement(emu, mid, "vipps")
    kwargs, context = form(mid, [known["id"], "deleted-or-forged"])

    result = _operator(account_id=mid, s3_bucket=s3_bucket, attachments="source", **kwargs).execute(context)

    assert result["settlement_ids"] == [known["id"]]
    assert result["unconfirmed"] == {"deleted-or-forged": "not found (404)"}
    assert f"{_prefix(mid, known)}manifest.json" in _keys(s3_client, s3_bucket)


# ------------------------------------------------------------------------------ wake-ups


def test_a_wake_up_copies_what_is_new_for_the_account_since_its_last_collection(
    emu: Any, s3_bucket: str, s3_client: Any
) -> None:
    from airflow_provider_dintero.events import wake_up_extra

    mid = emu.merchant_ids[0]
    now = datetime.now(timezone.utc)
    wake_up = _triggering_events([wake_up_extra(mid, source="webhook", event_delivery="d-1")])
    copy = _operator(account_id=mid, s3_bucket=s3_bucket, attachments="source", use_triggering_events=True)

    first = emu.add_settlement(mid, created_at=now - timedelta(hours=2))["id"]
    one = copy.execute(wake_up)  # type: ignore[arg-type]
    second = emu.add_settlement(mid, created_at=now - timedelta(minutes=1))["id"]
    two = copy.execute(wake_up)  # type: ignore[arg-type]

    assert one["settlement_ids"] == [first]  # the seeded (older) settlements are not "new"
    assert [sid for sid in two["settlement_ids"] if any(sid in uri for uri in two["written"])] == [second]
    assert any(k.endswith(f"_collections/account={mid}.json") for k in _keys(s3_client, s3_bucket))
