"""
The settlement and insight report transfers into every store (S3 on moto, GCS on
gcp-storage-emulator, Azure Blob Storage / ADLS Gen2 on Azurite): the same guarantees on each.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest

from airflow_provider_dintero.exceptions import DinteroInputError, DinteroStreamError
from airflow_provider_dintero.transfers.destinations import open_destination
from airflow_provider_dintero.transfers.destinations._base import StoreCopyError, parse_destination
from airflow_provider_dintero.transfers.insight_report_to_storage import InsightReportToStorageOperator
from airflow_provider_dintero.transfers.settlements_to_storage import (
    SettlementsToStorageOperator,
    destination_asset,
)

from .conftest import StoreUnderTest

MIB = 1024 * 1024
MERCHANT = "T11200001"
_PATTERN = bytes(range(251)) * (MIB // 251 + 2)


class _Source:
    """``size`` deterministic bytes read like a socket (at most 1 MiB a read); raises at ``fail_at``."""

    def __init__(self, size: int, fail_at: int | None = None) -> None:
        self.size, self.fail_at, self.pos = size, fail_at, 0
        self.digest = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        if self.fail_at is not None and self.pos >= self.fail_at:
            raise DinteroStreamError("connection reset by peer", account_id=MERCHANT)
        n = self.size - self.pos if n is None or n < 0 else min(n, self.size - self.pos)
        n = min(n, MIB)
        start = self.pos % 251
        chunk = _PATTERN[start : start + n]
        self.pos += n
        self.digest.update(chunk)
        return chunk


def _settlements(store: StoreUnderTest, **kwargs: Any) -> SettlementsToStorageOperator:
    kwargs.setdefault("task_id", "copy")
    return SettlementsToStorageOperator(destination=store.destination, **kwargs)


def _prefix(account_id: str, settlement: dict[str, Any]) -> str:
    return (
        f"dintero/settlements/account={account_id}/provider={settlement['provider']}/"
        f"settled_date={settlement['settled_at'][:10]}/{settlement['id']}/"
    )


def _settlement(emu: Any, account_id: str, provider: str) -> dict[str, Any]:
    return next(s for s in emu.settlements(account_id) if s["provider"] == provider)


# ------------------------------------------------------------------------------ settlements


def test_settlement_attachments_then_manifest_with_their_sha256(emu: Any, store: StoreUnderTest) -> None:
    mid = emu.merchant_ids[0]
    settlement = _settlement(emu, mid, "vipps")
    prefix = _prefix(mid, settlement)

    result = _settlements(store, account_id=mid, settlement_ids=[settlement["id"]]).execute({})

    attachment_keys = [f"{prefix}{a['id']}.{a['extension']}" for a in settlement["attachments"]]
    assert store.list_keys() == {*attachment_keys, f"{prefix}manifest.json"}
    assert result["written"] == [store.uri(k) for k in attachment_keys] + [
        store.uri(f"{prefix}manifest.json")
    ]
    manifest = json.loads(store.read(f"{prefix}manifest.json"))
    for a in settlement["attachments"]:
        key = f"{prefix}{a['id']}.{a['extension']}"
        expected = emu.attachment_sha256(mid, settlement["id"], a["id"])
        assert hashlib.sha256(store.read(key)).hexdigest() == expected
        entry = next(e for e in manifest["attachments"] if e["id"] == a["id"])
        assert (entry["uri"], entry["sha256"]) == (store.uri(key), expected)


def test_a_cut_download_leaves_no_object_and_no_manifest_then_a_retry_completes(
    emu: Any, store: StoreUnderTest
) -> None:
    mid = emu.merchant_ids[0]
    added = emu.add_settlement(mid, provider="payex", attachment_sizes={"source": 20_000, "pdf": 600_000})
    source, pdf = added["attachments"]
    emu.inject_fault(path_regex=f"/attachments/{pdf['id']}$", cut_after_bytes=400_000)
    prefix = _prefix(mid, added)

    with pytest.raises(DinteroStreamError, match=pdf["id"]):
        _settlements(store, account_id=mid, settlement_ids=[added["id"]]).execute({})

    assert store.list_keys() == {f"{prefix}{source['id']}.xml"}  # no partial pdf, no manifest

    retry = _settlements(store, account_id=mid, settlement_ids=[added["id"]]).execute({})

    pdf_key = f"{prefix}{pdf['id']}.pdf"
    assert retry["written"] == [store.uri(pdf_key), store.uri(f"{prefix}manifest.json")]
    assert retry["skipped"] == [store.uri(f"{prefix}{source['id']}.xml")]
    manifest = json.loads(store.read(f"{prefix}manifest.json"))
    assert {a["id"]: a["sha256"] for a in manifest["attachments"]} == {
        a["id"]: emu.attachment_sha256(mid, added["id"], a["id"]) for a in added["attachments"]
    }


def test_a_rerun_writes_and_downloads_nothing(emu: Any, store: StoreUnderTest) -> None:
    mid = emu.merchant_ids[0]
    first = _settlements(store, account_id=mid, since="2026-10-12").execute({})
    contents = {key: store.read(key) for key in store.list_keys()}
    versions = store.versions()
    emu.clear_requests()

    second = _settlements(store, account_id=mid, since="2026-10-12").execute({})

    assert second["written"] == []
    assert sorted(second["skipped"]) == sorted(first["written"])
    assert emu.count("GET", r"/attachments/") == 0
    assert {key: store.read(key) for key in store.list_keys()} == contents
    assert store.versions() == versions  # not one object rewritten


def test_replace_writes_every_object_again(emu: Any, store: StoreUnderTest) -> None:
    mid = emu.merchant_ids[2]
    settlement = _settlement(emu, mid, "bambora")
    _settlements(store, account_id=mid, settlement_ids=[settlement["id"]]).execute({})

    versions = store.versions()
    if store.name == "s3":
        time.sleep(1.1)  # the same bytes give the same ETag; moto keeps modification times in seconds

    again = _settlements(store, account_id=mid, settlement_ids=[settlement["id"]], replace=True).execute({})

    assert len(again["written"]) == len(settlement["attachments"]) + 1
    assert again["skipped"] == []
    after = store.versions()
    assert set(after) == set(versions)
    assert all(after[key] != versions[key] for key in versions)  # every object written again


def test_every_object_asks_for_the_stores_encryption(emu: Any, store: StoreUnderTest) -> None:
    mid = emu.merchant_ids[1]
    settlement = _settlement(emu, mid, "payex")

    _settlements(store, account_id=mid, settlement_ids=[settlement["id"]], **store.encryption).execute({})

    assert store.encryption_reached()


def test_lineage_and_asset_name_the_real_destination(emu: Any, store: StoreUnderTest) -> None:
    mid = emu.merchant_ids[0]
    settlement = _settlement(emu, mid, "vipps")
    op = _settlements(store, account_id=mid, settlement_ids=[settlement["id"]])
    result = op.execute({})

    lineage = op.get_openlineage_facets_on_complete(None)

    assert {d.namespace for d in lineage.outputs} == {store.lineage_namespace}
    assert [store.uri(d.name) for d in lineage.outputs] == result["written"]
    assert [o.uri for o in op.outlets] == [f"{store.namespace}/dintero/settlements"]


def test_a_folder_in_the_destination_goes_before_every_key(emu: Any, store: StoreUnderTest) -> None:
    mid = emu.merchant_ids[0]
    settlement = _settlement(emu, mid, "vipps")

    op = SettlementsToStorageOperator(
        task_id="copy",
        account_id=mid,
        destination=f"{store.destination}/finance/dintero",
        settlement_ids=[settlement["id"]],
    )
    result = op.execute({})

    assert all(key.startswith(f"finance/dintero/{_prefix(mid, settlement)}") for key in store.list_keys())
    assert len(store.list_keys()) == len(result["written"])


def test_adls_gen2_destination_is_written_and_named_abfss(emu: Any, adls_store: StoreUnderTest) -> None:
    mid = emu.merchant_ids[0]
    settlement = _settlement(emu, mid, "vipps")

    result = _settlements(adls_store, account_id=mid, settlement_ids=[settlement["id"]]).execute({})

    assert all(uri.startswith(adls_store.namespace + "/") for uri in result["written"])
    assert len(adls_store.list_keys()) == len(result["written"])


# ------------------------------------------------------------------------------ insight reports


def test_insight_reports_copied_once_with_their_bytes(emu: Any, store: StoreUnderTest) -> None:
    op = InsightReportToStorageOperator(task_id="copy", account_id=MERCHANT, destination=store.destination)
    context = {"data_interval_start": None, "data_interval_end": None}

    uris = op.execute(context)

    assert len(uris) == 4
    assert {store.uri(k) for k in store.list_keys()} == set(uris)
    for key in store.list_keys():
        report_id = store.metadata(key).get("dintero-report-id") or store.metadata(key)["dintero_report_id"]
        assert store.read(key) == emu.report_bytes(MERCHANT, report_id)
    emu.clear_requests()
    again = InsightReportToStorageOperator(task_id="copy", account_id=MERCHANT, destination=store.destination)
    assert sorted(again.execute(context)) == sorted(uris)
    assert emu.count("GET", r"^/_emulator/signed/") == 0


# ------------------------------------------------------------------------------ the stores' puts


def _destination(store: StoreUnderTest) -> Any:
    destination = open_destination(store.destination)
    if store.name == "gcs":
        destination.chunk_size = 256 * 1024
    if store.name == "azure":
        destination.block_size = 256 * 1024
    return destination


def test_a_source_breaking_after_several_parts_leaves_no_object(store: StoreUnderTest) -> None:
    destination = _destination(store)
    size = 12 * MIB if store.name == "s3" else 2 * MIB  # S3 parts are at least 5 MiB

    with pytest.raises(DinteroStreamError):
        destination.put_stream(_Source(size, fail_at=size - MIB), "big.bin", content_type="text/plain")

    assert store.list_keys() == set()
    assert not destination.exists("big.bin")


def test_a_short_source_is_never_made_visible(store: StoreUnderTest) -> None:
    destination = _destination(store)

    with pytest.raises(StoreCopyError, match="1000 bytes read but 2000 announced"):
        destination.put_stream(_Source(1000), "short.bin", content_type="text/plain", expected_size=2000)

    assert store.list_keys() == set()


def test_a_multi_part_put_stores_the_exact_bytes(store: StoreUnderTest) -> None:
    destination = _destination(store)
    source = _Source(11 * MIB if store.name == "s3" else 3 * MIB + 12345)

    size = destination.put_stream(
        source, "big.bin", content_type="application/pdf", expected_size=source.size
    )

    assert size == source.size
    assert hashlib.sha256(store.read("big.bin")).hexdigest() == source.digest.hexdigest()
    info = destination.head("big.bin")
    assert info is not None and info.size == source.size
    if store.name == "azure":  # committed with the block list: known without reading the blob
        assert info.sha256 == source.digest.hexdigest()


# ------------------------------------------------------------------------------ URIs and options


@pytest.mark.parametrize(
    ("uri", "store_name", "container", "prefix", "account"),
    [
        ("s3://finance", "s3", "finance", "", None),
        ("gs://finance/dintero/", "gcs", "finance", "dintero/", None),
        ("wasbs://reports@acme.blob.core.windows.net/a/b", "azure", "reports", "a/b/", "acme"),
        ("abfss://reports@acme.dfs.core.windows.net", "azure", "reports", "", "acme"),
        ("wasb://reports/x", "azure", "reports", "x/", None),
    ],
)
def test_destination_uris(
    uri: str, store_name: str, container: str, prefix: str, account: str | None
) -> None:
    parsed = parse_destination(uri)

    assert (parsed.store, parsed.container, parsed.prefix, parsed.account) == (
        store_name,
        container,
        prefix,
        account,
    )


@pytest.mark.parametrize(
    "uri",
    [
        "finance",
        "ftp://finance",
        "gs://Finance",
        "gs://finance/../x",
        "gs://finance/a//b",
        "s3://user@finance",
        "gs://finance?x=1",
        "wasbs://UPPER@acme.blob.core.windows.net",
        "abfss://reports@not_an_account.dfs.core.windows.net",
        None,
    ],
)
def test_bad_destination_uris_name_the_field(uri: Any) -> None:
    with pytest.raises(DinteroInputError) as raised:
        parse_destination(uri)

    assert raised.value.field == "destination"


@pytest.mark.parametrize(
    ("uri", "option"),
    [
        ("s3://finance", {"kms_key_name": "projects/p/locations/l/keyRings/r/cryptoKeys/k"}),
        ("gs://finance", {"encryption_scope": "finance"}),
        ("gs://finance", {"encrypt": True}),
        ("wasbs://reports@acme.blob.core.windows.net", {"s3_extra_args": {"ServerSideEncryption": "AES256"}}),
    ],
)
def test_another_stores_option_is_refused(uri: str, option: dict[str, Any]) -> None:
    with pytest.raises(DinteroInputError) as raised:
        open_destination(uri, **option)

    assert raised.value.field == next(iter(option))


def test_an_azure_uri_of_another_account_fails_before_any_download(emu: Any, wasb_connection: str) -> None:
    op = SettlementsToStorageOperator(
        task_id="copy",
        account_id=emu.merchant_ids[0],
        destination="wasbs://reports@otheraccount.blob.core.windows.net",
    )

    with pytest.raises(DinteroInputError, match="otheraccount"):
        op.execute({})

    assert emu.count("GET", r"/settlements") == 0


@pytest.mark.parametrize("store_name", ["gcs", "azure"])
def test_a_missing_container_fails_before_any_download(
    emu: Any, store_name: str, request: pytest.FixtureRequest
) -> None:
    if store_name == "gcs":
        request.getfixturevalue("gcs_connection")
        destination = "gs://no-such-bucket-here"
    else:
        request.getfixturevalue("wasb_connection")
        destination = "wasbs://no-such-container@devstoreaccount1.blob.core.windows.net"
    op = SettlementsToStorageOperator(task_id="copy", account_id=emu.merchant_ids[0], destination=destination)

    with pytest.raises(DinteroInputError, match="does not exist"):
        op.execute({})

    assert emu.count("GET", r"/settlements") == 0


def test_destination_asset_names() -> None:
    assert destination_asset("gs://finance").uri == "gs://finance/dintero/settlements"
    assert (
        destination_asset("abfs://reports@acme.dfs.core.windows.net/lake").uri
        == "abfss://acme.dfs.core.windows.net/reports/lake/dintero/settlements"
    )
