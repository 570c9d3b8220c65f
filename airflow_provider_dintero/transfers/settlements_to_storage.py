"""
Copy Dintero settlement attachments, and a manifest per settlement, into S3, GCS or Azure Blob
Storage / ADLS Gen2, named by a destination URI.

Example::

    from airflow_provider_dintero.transfers.settlements_to_storage import SettlementsToStorageOperator

    copy = SettlementsToStorageOperator(
        task_id="copy_settlements",
        account_id="T11200001",
        destination="gs://my-finance-bucket",  # or s3://..., abfss://container@account.dfs.core.windows.net
        kms_key_name="projects/p/locations/europe-north1/keyRings/finance/cryptoKeys/dintero",
    )
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import Asset

from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from airflow_provider_dintero.transfers.settlements_to_s3 import DEFAULT_KEY_TEMPLATE, SettlementsToS3Operator
from airflow_provider_dintero.vocabulary import AttachmentKind

if TYPE_CHECKING:
    from airflow_provider_dintero.transfers.destinations._base import Destination


def destination_asset(destination: str, key: str = DEFAULT_KEY_TEMPLATE) -> Asset:
    """
    Return the Asset (a Dataset on Airflow 2.11) for settlements copied to ``destination``.

    Its URI is the destination URI followed by the key template's fixed prefix, e.g.
    ``gs://finance/dintero/settlements`` for ``gs://finance`` and the default template; Azure
    destinations are named ``wasbs://<account>.blob.core.windows.net/<container>/...`` (or
    ``abfss://<account>.dfs.core.windows.net/...``), as the transfer names what it writes, or
    ``wasbs://<container>/...`` when the URI does not name the account.

    :param destination: the destination URI.
    :param key: the key template.
    """
    from airflow_provider_dintero.transfers.destinations._base import parse_destination

    location = parse_destination(destination)
    fixed = key.split("{", 1)[0].rsplit("/", 1)[0].strip("/")
    path = f"{location.prefix}{fixed}".strip("/")
    scheme = location.scheme
    container = location.container
    if location.store == "azure":
        scheme = "abfss" if scheme.startswith("abfs") else "wasbs"
        if location.account:
            domain = "dfs" if scheme == "abfss" else "blob"
            container = f"{location.account}.{domain}.core.windows.net/{container}"
    return Asset(f"{scheme}://{container}/{path}" if path else f"{scheme}://{container}")


class SettlementsToStorageOperator(SettlementsToS3Operator):
    """
    Stream the attachments of an account's settlements, then a manifest per settlement, into
    the object store named by ``destination``: ``s3://bucket[/folder]`` (Amazon S3),
    ``gs://bucket[/folder]`` (Google Cloud Storage), ``wasbs://container@account.blob.core.windows.net[/folder]``
    (Azure Blob Storage) or ``abfss://container@account.dfs.core.windows.net[/folder]`` (ADLS Gen2).

    Everything :class:`~airflow_provider_dintero.transfers.settlements_to_s3.SettlementsToS3Operator`
    documents holds for every store: which settlements, the key layout and escaping (``key`` is
    the template, put after the URI's folder), the manifest written last, re-runs writing
    nothing, ``replace``, streamed uploads with flat memory that leave no object when a download
    breaks off (S3 multipart upload aborted; GCS resumable upload never finalised; Azure block
    blob never committed), the return value (object URIs), Asset events and OpenLineage outputs
    named by the real destination (``gs://bucket`` / key; ``wasbs://container@account.blob.core.windows.net``
    or ``abfss://container@account.dfs.core.windows.net`` / key). Manifest entries carry the
    object's ``uri`` (and ``s3_uri`` on S3, as before).

    Each store is reached through its Airflow provider's hook and connection: the amazon
    provider's ``S3Hook``, the google provider's ``GCSHook`` (extra ``google``), the
    microsoft-azure provider's ``WasbHook`` (extra ``azure``).

    :param account_id: the merchant (or the connection's own account). Templated.
    :param destination: the destination URI (see above). Templated.
    :param key: the key template (fields: ``KEY_FIELDS`` of ``settlements_to_s3``). Templated.
    :param destination_conn_id: the store's connection (default ``aws_default``,
        ``google_cloud_default`` or ``wasb_default`` by scheme).
    :param kms_key_name: GCS only: a customer-managed Cloud KMS key for every object. Templated.
    :param encryption_scope: Azure only: an encryption scope for every object. Templated.
    :param encrypt: S3 only: SSE-S3.
    :param acl_policy: S3 only: a canned ACL.
    :param s3_extra_args: S3 only: more upload arguments (e.g. SSE-KMS). Templated.
    :param settlement_ids: as ``SettlementsToS3Operator``. Templated.
    :param since: as ``SettlementsToS3Operator``. Templated.
    :param payment_providers: as ``SettlementsToS3Operator``. Templated.
    :param attachments: as ``SettlementsToS3Operator``. Templated.
    :param use_triggering_events: as ``SettlementsToS3Operator``.
    :param replace: overwrite objects that already exist.
    :param dintero_conn_id: the Dintero connection id.
    :param kwargs: more arguments of ``SettlementsToS3Operator`` and ``BaseOperator``.
    """

    template_fields: Sequence[str] = (
        "account_id",
        "destination",
        "key",
        "settlement_ids",
        "since",
        "payment_providers",
        "attachments",
        "s3_extra_args",
        "kms_key_name",
        "encryption_scope",
    )
    _key_param = "key"

    def __init__(
        self,
        *,
        account_id: str | None = None,
        destination: str,
        key: str = DEFAULT_KEY_TEMPLATE,
        destination_conn_id: str | None = None,
        kms_key_name: str | None = None,
        encryption_scope: str | None = None,
        settlement_ids: Sequence[str] | Mapping[str, Any] | str | None = None,
        since: str | datetime | None = None,
        payment_providers: Sequence[str] | str | None = None,
        attachments: str = AttachmentKind.ALL.value,
        use_triggering_events: bool = False,
        replace: bool = False,
        dintero_conn_id: str = DinteroPartnerHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        static = all(isinstance(v, str) and v.strip() and "{{" not in v for v in (destination, key))
        if kwargs.get("outlets") is None and static and "://" in destination:
            kwargs["outlets"] = [destination_asset(destination, key)]
        kwargs.setdefault("outlets", [])
        super().__init__(
            account_id=account_id,
            s3_bucket="",
            s3_key=key,
            settlement_ids=settlement_ids,
            since=since,
            payment_providers=payment_providers,
            attachments=attachments,
            use_triggering_events=use_triggering_events,
            replace=replace,
            aws_conn_id=None,
            dintero_conn_id=dintero_conn_id,
            **kwargs,
        )
        self.destination = destination
        self.key = key
        self.destination_conn_id = destination_conn_id
        self.kms_key_name = kms_key_name
        self.encryption_scope = encryption_scope

    def _key_template(self) -> str:
        return str(self.key)

    def _destination(self) -> Destination:
        from airflow_provider_dintero.transfers.destinations import open_destination

        return open_destination(
            self.destination,
            conn_id=self.destination_conn_id,
            encrypt=self.encrypt,
            acl_policy=self.acl_policy,
            s3_extra_args=self.s3_extra_args,
            kms_key_name=self.kms_key_name,
            encryption_scope=self.encryption_scope,
        )
