"""InsightReportToS3Operator against the Dintero emulator and moto's S3 server."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_provider_dintero.exceptions import DinteroApiError, DinteroInputError, DinteroStreamError
from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from airflow_provider_dintero.transfers.insight_report_to_s3 import (
    DEFAULT_KEY_TEMPLATE,
    InsightReportToS3Operator,
)

MERCHANT = "T11200001"
SIGNED = r"^/_emulator/signed/"
METADATA = r"/reports/metadata$"
# created_at of the seeded reports: 2026-10-01T01:59:59.999Z (September) and
# 2026-11-01T01:59:59.999Z (October), each as a pdf and a csv file
SEPTEMBER = "period=2026-09-01_2026-09-30"
OCTOBER = "period=2026-10-01_2026-10-31"


def _operator(**overrides: Any) -> InsightReportToS3Operator:
    kwargs: dict[str, Any] = {"task_id": "copy_insight_reports", "account_id": MERCHANT}
    kwargs.update(overrides)
    return InsightReportToS3Operator(**kwargs)


def _context(start: datetime | None = None, end: datetime | None = None) -> dict[str, Any]:
    return {"data_interval_start": start, "data_interval_end": end}


def _objects(s3_client: Any, bucket: str) -> dict[str, bytes]:
    listing = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: s3_client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing}


def _seeded_reports(emulator: Any) -> list[dict[str, Any]]:
    hook = DinteroPartnerHook()
    return list(hook.list_report_metadata(MERCHANT))


def _expected_key(report: dict[str, Any]) -> str:
    return (
        f"dintero/insight/account={MERCHANT}/config={report['report_config_id']}/"
        f"period={report['data_from'][:10]}_{report['data_to'][:10]}/{report['report_file_name']}"
    )


def _record_signed_urls(
    monkeypatch: pytest.MonkeyPatch,
    op: InsightReportToS3Operator,
    after_first: Callable[[], None] | None = None,
) -> list[str]:
    """Spy on the metadata the operator reads; optionally act once the first listing is done."""
    seen: list[str] = []
    real = op.hook.list_report_metadata
    listings = []

    def spy(*args: Any, **kwargs: Any) -> Iterator[Any]:
        listings.append(1)
        for report in real(*args, **kwargs):
            seen.append(report["signed_url"])
            yield report
        if after_first is not None and len(listings) == 1:
            after_first()

    monkeypatch.setattr(op.hook, "list_report_metadata", spy)
    return seen


@pytest.fixture
def env(dintero_connection: str, dintero_emulator: Any, s3_bucket: str) -> Any:
    """The emulator (seeded, request log cleared) with the Dintero and AWS connections set."""
    dintero_emulator.clear_requests()
    return dintero_emulator


def test_copies_every_report_to_its_deterministic_key_with_the_right_bytes(
    env: Any, s3_bucket: str, s3_client: Any
) -> None:
    reports = _seeded_reports(env)
    assert len(reports) == 4

    uris = _operator(s3_bucket=s3_bucket).execute(_context())

    expected = {_expected_key(r): r for r in reports}
    assert sorted(uris) == sorted(f"s3://{s3_bucket}/{key}" for key in expected)
    stored = _objects(s3_client, s3_bucket)
    assert set(stored) == set(expected)
    for key, report in expected.items():
        assert stored[key] == env.report_bytes(MERCHANT, report["id"])
        head = s3_client.head_object(Bucket=s3_bucket, Key=key)
        assert head["ContentType"] == report["content_type"]


def test_downloads_send_no_authorization_header_and_use_each_signed_url_once(
    env: Any, s3_bucket: str
) -> None:
    _operator(s3_bucket=s3_bucket).execute(_context())

    assert env.count("GET", SIGNED, status=200) == 4
    assert env.count("GET", SIGNED) == 4


@pytest.mark.parametrize(
    ("since", "until", "context", "periods"),
    [
        pytest.param("2026-10-15", None, _context(), {OCTOBER}, id="since"),
        pytest.param(None, "2026-10-15", _context(), {SEPTEMBER}, id="until"),
        pytest.param(
            "2026-10-01T01:59:59.999Z",
            "2026-11-01T01:59:59.999Z",
            _context(),
            {SEPTEMBER},
            id="since-inclusive-until-exclusive",
        ),
        pytest.param(
            None,
            None,
            _context(datetime(2026, 10, 31, tzinfo=timezone.utc), datetime(2026, 11, 2, tzinfo=timezone.utc)),
            {OCTOBER},
            id="data-interval",
        ),
        pytest.param(
            None,
            None,
            _context(datetime(2026, 11, 2, tzinfo=timezone.utc), datetime(2026, 11, 2, tzinfo=timezone.utc)),
            {SEPTEMBER, OCTOBER},
            id="empty-interval-looks-back",
        ),
        pytest.param("2026-12-01", None, _context(), set(), id="nothing-in-window"),
    ],
)
def test_copies_only_reports_created_in_the_window(
    env: Any,
    s3_bucket: str,
    s3_client: Any,
    since: str | None,
    until: str | None,
    context: dict[str, Any],
    periods: set[str],
) -> None:
    uris = _operator(s3_bucket=s3_bucket, since=since, until=until).execute(context)

    keys = set(_objects(s3_client, s3_bucket))
    assert {key.split("/")[4] for key in keys} == periods
    assert len(keys) == 2 * len(periods)  # a pdf and a csv per period
    assert sorted(uris) == sorted(f"s3://{s3_bucket}/{key}" for key in keys)
    assert env.count("GET", SIGNED) == len(keys)


@pytest.mark.parametrize(("cursor_mode", "pages"), [("absent", 4), ("when_full", 5)])
def test_walks_every_page_of_the_report_metadata(
    env: Any,
    s3_bucket: str,
    s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    cursor_mode: str,
    pages: int,
) -> None:
    env.settings.reports_cursor_mode = cursor_mode  # "when_full": a cursor on every full page
    op = _operator(s3_bucket=s3_bucket)
    real = op.hook.list_report_metadata
    monkeypatch.setattr(op.hook, "list_report_metadata", lambda aid: real(aid, limit=1))

    uris = op.execute(_context())

    assert len(uris) == 4
    assert len(_objects(s3_client, s3_bucket)) == 4
    assert env.count("GET", METADATA) == pages


def test_report_config_id_selects_that_configurations_reports(
    env: Any, s3_bucket: str, s3_client: Any
) -> None:
    hook = DinteroPartnerHook()
    weekly = hook.create_report_configuration(
        MERCHANT,
        {"name": "Weekly", "dataType": "checkout/transactions", "schedule": "weekly", "language": "en"},
    )
    added = env.add_report(MERCHANT, report_config_id=weekly["id"], content_type="text/csv", size=512)

    uris = _operator(s3_bucket=s3_bucket, report_config_id=weekly["id"]).execute(_context())

    (key,) = _objects(s3_client, s3_bucket)
    assert uris == [f"s3://{s3_bucket}/{key}"]
    assert f"/config={weekly['id']}/" in key
    assert key.endswith("/" + added["report_file_name"])
    assert _objects(s3_client, s3_bucket)[key] == env.report_bytes(MERCHANT, added["id"])


def test_unknown_report_config_id_fails_clearly_before_any_download(env: Any, s3_bucket: str) -> None:
    seeded_config = DinteroPartnerHook().list_report_configurations(MERCHANT)[0]["id"]

    with pytest.raises(DinteroInputError) as raised:
        _operator(s3_bucket=s3_bucket, report_config_id="no-such-config").execute(_context())

    assert raised.value.field == "report_config_id"
    assert "no-such-config" in str(raised.value)
    assert seeded_config in str(raised.value)  # names the configurations that do exist
    assert env.count(path_regex=METADATA) == 0
    assert env.count(path_regex=SIGNED) == 0


def test_a_second_run_downloads_nothing(env: Any, s3_bucket: str, s3_client: Any) -> None:
    first = _operator(s3_bucket=s3_bucket).execute(_context())
    etags = {o["Key"]: o["ETag"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    env.clear_requests()

    second = _operator(s3_bucket=s3_bucket).execute(_context())

    assert second == first
    assert env.count(path_regex=SIGNED) == 0
    assert {o["Key"]: o["ETag"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]} == etags


@pytest.mark.parametrize(("replace", "downloads"), [(False, 3), (True, 4)])
def test_existing_objects_are_kept_unless_replace(
    env: Any, s3_bucket: str, s3_client: Any, replace: bool, downloads: int
) -> None:
    reports = _seeded_reports(env)
    squatted = _expected_key(reports[0])
    s3_client.put_object(Bucket=s3_bucket, Key=squatted, Body=b"placed by someone else")
    env.clear_requests()

    _operator(s3_bucket=s3_bucket, replace=replace).execute(_context())

    stored = _objects(s3_client, s3_bucket)
    expected = env.report_bytes(MERCHANT, reports[0]["id"]) if replace else b"placed by someone else"
    assert stored[squatted] == expected
    assert env.count(path_regex=SIGNED) == downloads
    assert len(stored) == 4


def test_expired_signed_url_is_refreshed_from_the_metadata_and_retried_once(
    env: Any, s3_bucket: str, s3_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    op = _operator(s3_bucket=s3_bucket, since="2026-10-15")
    _record_signed_urls(monkeypatch, op, after_first=env.expire_signed_urls)

    uris = op.execute(_context())

    assert env.count("GET", SIGNED, status=403) == 2  # each report's first link had expired
    assert env.count("GET", SIGNED, status=200) == 2
    assert env.count("GET", METADATA) == 1 + 2  # the walk, then one fresh listing per report
    assert len(uris) == 2
    stored = _objects(s3_client, s3_bucket)
    by_key = {_expected_key(r): r for r in _seeded_reports(env)}
    assert len(stored) == 2
    for key, body in stored.items():
        assert body == env.report_bytes(MERCHANT, by_key[key]["id"])


def test_a_link_refused_again_after_refreshing_fails_naming_account_and_report(
    env: Any, s3_bucket: str, s3_client: Any
) -> None:
    october = {r["id"] for r in _seeded_reports(env) if r["created_at"].startswith("2026-11-01")}
    env.settings.signed_url_lifetime = -60  # every link Dintero hands out is already expired
    env.clear_requests()

    with pytest.raises(DinteroApiError) as raised:
        _operator(s3_bucket=s3_bucket, since="2026-10-15").execute(_context())

    message = str(raised.value)
    assert MERCHANT in message
    assert sum(report_id in message for report_id in october) == 1  # names the report that failed
    assert "Request has expired" in message
    assert "/_emulator/signed" not in message and "signature" not in message
    assert env.count("GET", SIGNED, status=403) == 2  # the first link and the fresh one, nothing more
    assert s3_client.list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0


def test_signed_urls_never_reach_logs_xcom_or_errors(
    env: Any,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    op = _operator(s3_bucket=s3_bucket, since="2026-10-15")
    seen = _record_signed_urls(monkeypatch, op, after_first=env.expire_signed_urls)
    uris = op.execute(_context())
    env.settings.signed_url_lifetime = -60
    failing = _operator(s3_bucket=s3_bucket, since="2026-10-15", replace=True)
    seen += _record_signed_urls(monkeypatch, failing)
    with pytest.raises(DinteroApiError) as raised:
        failing.execute(_context())

    captured = capsys.readouterr()
    surfaces = {
        "logs": caplog.text,
        "stdout": captured.out,
        "stderr": captured.err,
        "xcom": json.dumps(uris),
        "exception": f"{raised.value!s} {raised.value!r}",
    }
    assert len(seen) >= 4
    everything = caplog.text + captured.out + captured.err
    assert "/_emulator/signed/" in everything and "?<redacted>" in everything  # logged, redacted
    for url in seen:
        query = url.split("?", 1)[1]
        signature = dict(part.split("=", 1) for part in query.split("&"))["signature"]
        for name, text in surfaces.items():
            assert url not in text, f"a signed URL leaked into {name}"
            assert signature not in text, f"a URL signature leaked into {name}"


def test_a_broken_download_leaves_no_object_and_a_rerun_completes(
    env: Any, s3_bucket: str, s3_client: Any
) -> None:
    hook = DinteroPartnerHook()
    config = hook.create_report_configuration(
        MERCHANT, {"name": "Big", "dataType": "checkout/transactions", "schedule": "daily", "language": "en"}
    )
    size = 9 * 1024 * 1024  # above the 8 MiB part size: goes up as a multipart upload
    big = env.add_report(MERCHANT, report_config_id=config["id"], size=size)
    env.inject_fault(path_regex=SIGNED, cut_after_bytes=size - 1024 * 1024)

    with pytest.raises(DinteroStreamError) as raised:
        _operator(s3_bucket=s3_bucket, report_config_id=config["id"]).execute(_context())

    assert big["id"] in str(raised.value) and MERCHANT in str(raised.value)
    assert s3_client.list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []

    _operator(s3_bucket=s3_bucket, report_config_id=config["id"]).execute(_context())
    (body,) = _objects(s3_client, s3_bucket).values()
    assert body == env.report_bytes(MERCHANT, big["id"])


def test_custom_key_template(env: Any, s3_bucket: str, s3_client: Any) -> None:
    template = "raw/{account_id}/{created_date}/{report_id}.{extension}"

    _operator(s3_bucket=s3_bucket, s3_key=template, since="2026-10-15").execute(_context())

    expected = {
        f"raw/{MERCHANT}/2026-11-01/{r['id']}.{'pdf' if r['content_type'] == 'application/pdf' else 'csv'}"
        for r in _seeded_reports(env)
        if r["created_at"].startswith("2026-11-01")
    }
    assert set(_objects(s3_client, s3_bucket)) == expected


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        pytest.param({"account_id": "merchant-1"}, "account_id", id="account-id"),
        pytest.param(
            {"s3_key": "dintero/{account_id}/{month}/{report_file_name}"}, "s3_key", id="unknown-field"
        ),
        pytest.param({"s3_key": ""}, "s3_key", id="empty-key"),
        pytest.param({"since": "2026-11-02", "until": "2026-11-01"}, "until", id="since-after-until"),
        pytest.param({"since": "last tuesday"}, "since", id="unreadable-since"),
        pytest.param({"s3_key": "dintero/{account_id}/{data_from_date}"}, "s3_key", id="keys-collide"),
    ],
)
def test_bad_input_fails_naming_the_field_before_any_download(
    env: Any, s3_bucket: str, overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(DinteroInputError) as raised:
        _operator(s3_bucket=s3_bucket, **overrides).execute(_context())

    assert raised.value.field == field
    assert env.count(path_regex=SIGNED) == 0


def test_a_missing_bucket_fails_before_any_dintero_call(env: Any, aws_connection: str) -> None:
    with pytest.raises(DinteroInputError) as raised:
        _operator(s3_bucket="no-such-bucket-for-dintero").execute(_context())

    assert raised.value.field == "s3_bucket"
    assert env.count() == 0


def test_operator_declares_templates_and_defaults() -> None:
    op = _operator(s3_bucket="b")

    assert set(op.template_fields) == {
        "account_id",
        "s3_bucket",
        "s3_key",
        "report_config_id",
        "since",
        "until",
        "s3_extra_args",
    }
    assert op.s3_key == DEFAULT_KEY_TEMPLATE
    assert (op.replace, op.aws_conn_id, op.dintero_conn_id) == (False, "aws_default", "dintero_default")
    assert [type(o).__name__ for o in op.outlets] in (["AssetAlias"], ["DatasetAlias"])


def test_every_report_carries_the_requested_kms_encryption_and_acl(
    env: Any, s3_bucket: str, s3_client: Any, kms_key_id: str
) -> None:
    uris = _operator(
        s3_bucket=s3_bucket,
        acl_policy="public-read",
        s3_extra_args={"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id},
    ).execute(_context())

    assert len(uris) == 4
    for uri in uris:
        key = uri.split("/", 3)[3]
        head = s3_client.head_object(Bucket=s3_bucket, Key=key)
        assert (head.get("ServerSideEncryption"), head.get("SSEKMSKeyId")) == ("aws:kms", kms_key_id)
        grants = s3_client.get_object_acl(Bucket=s3_bucket, Key=key)["Grants"]
        assert any(g["Grantee"].get("URI", "").endswith("/global/AllUsers") for g in grants)


def test_encrypt_true_is_sse_s3_on_every_report(env: Any, s3_bucket: str, s3_client: Any) -> None:
    uris = _operator(s3_bucket=s3_bucket, encrypt=True).execute(_context())

    assert {
        s3_client.head_object(Bucket=s3_bucket, Key=uri.split("/", 3)[3]).get("ServerSideEncryption")
        for uri in uris
    } == {"AES256"}


def test_bad_upload_arguments_fail_before_any_download(env: Any, s3_bucket: str) -> None:
    with pytest.raises(DinteroInputError) as raised:
        _operator(s3_bucket=s3_bucket, s3_extra_args={"Metadata": {"a": "b"}}).execute(_context())

    assert raised.value.field == "s3_extra_args"
    assert env.count() == 0


def test_openlineage_names_the_reports_read_and_every_object_written(
    env: Any, s3_bucket: str, s3_client: Any
) -> None:
    import hashlib

    op = _operator(s3_bucket=s3_bucket)
    uris = op.execute(_context())

    lineage = op.get_openlineage_facets_on_complete(None)

    host = env.base_url.split("://", 1)[1]
    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        (f"dintero://{host}", f"accounts/{MERCHANT}/reports")
    ]
    assert sorted(f"{d.namespace}/{d.name}" for d in lineage.outputs) == sorted(uris)
    for dataset in lineage.outputs:
        assert dataset.namespace == f"s3://{s3_bucket}"
        body = s3_client.get_object(Bucket=s3_bucket, Key=dataset.name)["Body"].read()
        facet = dataset.facets["dinteroObject"]
        assert (facet.size, facet.sha256) == (len(body), hashlib.sha256(body).hexdigest())
        assert facet.contentType in ("application/pdf", "text/csv")
