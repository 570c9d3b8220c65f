"""
Azure Blob Storage and ADLS Gen2 behind the destination interface, through the microsoft-azure
provider's ``WasbHook``.

Uploads are block blobs: the source is read in blocks of :data:`DEFAULT_BLOCK_SIZE`, each staged
with ``Put Block`` (memory: about one block whatever the file's size), then the block list is
committed once, after the last byte was read and the size checked. Staged blocks are invisible:
until the commit there is no blob (and no change to an existing one), so a broken download
leaves nothing; Azure discards uncommitted blocks after a week, or at the next commit of that
blob. The commit carries the content's SHA-256 as metadata (``dintero_sha256``). An encryption
scope (``encryption_scope``) is sent with every block and with the commit.

ADLS Gen2 (hierarchical namespace) accounts take the same Blob API (multi-protocol access), so
``abfs[s]://container@account.dfs.core.windows.net/...`` destinations are written the same way
and named ``abfss://`` in Asset events and OpenLineage.
"""

from __future__ import annotations

import base64
import contextlib
import re
import uuid
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_provider_dintero.exceptions import DinteroInputError
from airflow_provider_dintero.transfers.destinations._base import (
    SHA256_METADATA,
    CountingReader,
    Destination,
    DestinationUri,
    ObjectInfo,
    ReadableStream,
    StoreCopyError,
)

if TYPE_CHECKING:
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

#: Bytes per staged block: about the memory used (Azure allows 50,000 blocks: 390 GiB).
DEFAULT_BLOCK_SIZE = 8 * 1024 * 1024
_METADATA_NAME = re.compile(r"[^A-Za-z0-9_]")
_SCOPE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{1,61}[A-Za-z0-9])?$")


def metadata_name(name: str) -> str:
    """
    Make a metadata name valid for Azure (a C# identifier): ``dintero-account-id`` ->
    ``dintero_account_id``.

    :param name: the name as the transfers use it.
    """
    cleaned = _METADATA_NAME.sub("_", name)
    return cleaned if cleaned[:1].isalpha() or cleaned[:1] == "_" else f"_{cleaned}"


class AzureBlobDestination(Destination):
    """
    An Azure Blob Storage / ADLS Gen2 container (and folder) reached through the
    microsoft-azure provider's ``WasbHook`` of ``conn_id``.

    :param location: the parsed ``wasb[s]://`` or ``abfs[s]://`` URI.
    :param conn_id: the Azure Blob Storage (``wasb``) connection.
    :param encryption_scope: an encryption scope of the account for every object.
    :param block_size: bytes per staged block.
    :param hook: an existing ``WasbHook`` to use instead of a new one of ``conn_id``.
    """

    store_name = "Azure Blob Storage"

    def __init__(
        self,
        location: DestinationUri,
        conn_id: str | None = "wasb_default",
        *,
        encryption_scope: Any = None,
        block_size: int = DEFAULT_BLOCK_SIZE,
        hook: WasbHook | None = None,
    ) -> None:
        super().__init__(location, conn_id)
        self.encryption_scope = encryption_scope
        self.block_size = block_size
        self._hook = hook

    @cached_property
    def hook(self) -> WasbHook:
        """The microsoft-azure provider's ``WasbHook``."""
        if self._hook is not None:
            return self._hook
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

        return WasbHook(wasb_conn_id=self.conn_id or "wasb_default")

    @cached_property
    def _service(self) -> Any:
        return self.hook.get_conn()

    @cached_property
    def _container_client(self) -> Any:
        return self._service.get_container_client(self.container)

    def _blob(self, key: str) -> Any:
        return self._container_client.get_blob_client(key)

    @cached_property
    def account(self) -> str:
        """The storage account: the URI's, else the connection's."""
        return self.location.account or str(self._service.account_name)

    @property
    def lineage_namespace(self) -> str:
        """
        ``wasbs://<container>@<account>.blob.core.windows.net`` (Blob Storage) or
        ``abfss://<container>@<account>.dfs.core.windows.net`` (ADLS Gen2), as OpenLineage names them.
        """
        if self.location.scheme.startswith("abfs"):
            return f"abfss://{self.container}@{self.account}.dfs.core.windows.net"
        return f"wasbs://{self.container}@{self.account}.blob.core.windows.net"

    @property
    def base_uri(self) -> str:
        """
        ``wasbs://<account>.blob.core.windows.net/<container>`` (or ``abfss://<account>.dfs...``):
        the container in the path, as Airflow 2.11 strips user info from dataset URIs.
        """
        if self.location.scheme.startswith("abfs"):
            return f"abfss://{self.account}.dfs.core.windows.net/{self.container}"
        return f"wasbs://{self.account}.blob.core.windows.net/{self.container}"

    def check(self) -> None:
        """
        Check ``encryption_scope``, ``block_size``, that the URI's account is the connection's and
        that the container exists and is reachable.
        """
        from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError

        scope = self.encryption_scope
        if scope is not None and (not isinstance(scope, str) or not _SCOPE.match(scope)):
            raise DinteroInputError(
                "encryption_scope", "an encryption scope name of the storage account", scope
            )
        if not isinstance(self.block_size, int) or not 0 < self.block_size <= 4000 * 1024 * 1024:
            raise DinteroInputError("block_size", "a block size from 1 byte to 4000 MiB", self.block_size)
        connected = str(self._service.account_name)
        if self.location.account and self.location.account != connected:
            raise DinteroInputError(
                "destination",
                f"a container of storage account {connected!r} (that of Azure connection {self.conn_id!r}), "
                f"not of {self.location.account!r} (nothing was downloaded)",
            )
        try:
            self._container_client.get_container_properties()
        except ResourceNotFoundError:
            reason = "it does not exist"
        except HttpResponseError as exc:
            reason = "access is denied" if exc.status_code == 403 else f"Azure answered {exc.status_code}"
        except AzureError as exc:
            reason = f"it cannot be reached: {type(exc).__name__}"
        else:
            return
        raise DinteroInputError(
            "destination",
            f"an existing container reachable with Azure connection {self.conn_id!r}, but container "
            f"{self.container!r} of account {connected!r} cannot be used: {reason} (nothing was downloaded)",
        )

    def head(self, key: str) -> ObjectInfo | None:
        """
        Read the blob's properties (one ``HEAD``); ``None`` when there is none.

        :param key: a full object key.
        """
        from azure.core.exceptions import ResourceNotFoundError

        try:
            props = self._blob(key).get_blob_properties()
        except ResourceNotFoundError:
            return None
        return ObjectInfo(size=int(props.size), sha256=(props.metadata or {}).get(SHA256_METADATA))

    def put_stream(
        self,
        source: ReadableStream,
        key: str,
        *,
        content_type: str,
        expected_size: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> int:
        """
        Stage ``source`` as blocks, commit them only when complete; return the bytes written.

        :param source: read once, never seeked.
        :param key: a full object key.
        :param content_type: the blob's content type.
        :param expected_size: the announced size, if known.
        :param metadata: blob metadata (names made C# identifiers, values percent-encoded ASCII).
        """
        from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector
        from azure.storage.blob import ContentSettings

        blob = self._blob(key)
        scope = {"encryption_scope": self.encryption_scope} if self.encryption_scope else {}
        reader = CountingReader(source)
        # Every block id of a blob must have the same length (earlier, uncommitted ones included).
        session = uuid.uuid4().hex
        block_ids: list[str] = []
        while block := reader.read(self.block_size):
            block_id = base64.b64encode(f"{session}{len(block_ids):08d}".encode()).decode()
            blob.stage_block(block_id, block, length=len(block), **scope)
            block_ids.append(block_id)
        problems = self._check_sizes(key, reader.bytes_read, expected_size)
        if problems:
            raise StoreCopyError(
                f"Upload to {self.uri(key)} was not committed ({'; '.join(problems)}); no blob was written"
            )
        meta = {
            metadata_name(str(k)): quote(str(v), safe=" !#$&'()*+,-./:;=?@[]^_`{|}~")
            for k, v in (metadata or {}).items()
        }
        meta[SHA256_METADATA] = reader.sha256
        blob.commit_block_list(
            block_ids, content_settings=ContentSettings(content_type=content_type), metadata=meta, **scope
        )
        stored = self.head(key)
        problems = self._check_sizes(key, reader.bytes_read, expected_size, stored.size if stored else -1)
        if problems:
            self.delete(key)
            raise StoreCopyError(
                f"Upload to {self.uri(key)} was incomplete ({'; '.join(problems)}); the blob was deleted"
            )
        get_hook_lineage_collector().add_output_asset(context=self.hook, uri=self.uri(key))
        return reader.bytes_read

    def iter_bytes(self, key: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        """
        Stream the blob's content.

        :param key: a full object key.
        :param chunk_size: unused (the SDK's download chunks are used).
        """
        yield from self._blob(key).download_blob().chunks()

    def delete(self, key: str) -> None:
        """
        Delete the blob (no error when there is none).

        :param key: a full object key.
        """
        from azure.core.exceptions import ResourceNotFoundError

        with contextlib.suppress(ResourceNotFoundError):
            self._blob(key).delete_blob()
