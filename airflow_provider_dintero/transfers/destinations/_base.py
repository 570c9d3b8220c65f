"""
The interface every object store behind the Dintero transfers implements, and destination URIs.

A :class:`Destination` is one container (an S3 or GCS bucket, an Azure container) and an
optional folder inside it, reached through the store's Airflow hook. The transfers only talk to
this interface, so every store gives the same guarantees:

- :meth:`Destination.put_stream` streams a non-seekable source with memory flat in the file's
  size and is **atomic**: the object becomes visible only once every byte was read and the
  size matches what was announced; a source that raises leaves no object (S3: the multipart
  upload is aborted; GCS: the resumable upload is never finalised; Azure: the staged blocks are
  never committed).
- :meth:`Destination.exists` / :meth:`Destination.head` (size, and the content's SHA-256 when
  the store kept it as metadata) make re-runs write nothing.
- :meth:`Destination.abort_orphans` removes what a killed earlier copy of a key left behind
  (where the store keeps anything).
- :meth:`Destination.uri`, :meth:`Destination.asset_uri` and
  :attr:`Destination.lineage_namespace` name the real place written, for Asset events and
  OpenLineage. Asset and object URIs carry no user info (``x@host``): Airflow 2.11 strips it
  from dataset URIs, so Azure objects are named ``wasbs://<account>.blob.core.windows.net/<container>/<key>``
  (``abfss://<account>.dfs.core.windows.net/...`` for ADLS Gen2) on every Airflow line, while
  their OpenLineage datasets follow OpenLineage's naming
  (``wasbs://<container>@<account>.blob.core.windows.net`` / key).

Destination URIs (:func:`parse_destination`): ``s3://bucket[/folder]``, ``gs://bucket[/folder]``,
``wasb[s]://container@account.blob.core.windows.net[/folder]`` and
``abfs[s]://container@account.dfs.core.windows.net[/folder]`` (Azure Blob Storage and ADLS
Gen2; ``wasb://container/folder`` takes the account from the connection).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_dintero.exceptions import DinteroInputError

#: Metadata name under which a store keeps the SHA-256 of an object's content, where the store
#: lets the upload set metadata after the bytes are known (Azure: at the block list commit).
SHA256_METADATA = "dintero_sha256"

#: The URI schemes and the store each names.
SCHEMES: dict[str, str] = {
    "s3": "s3",
    "gs": "gcs",
    "wasb": "azure",
    "wasbs": "azure",
    "abfs": "azure",
    "abfss": "azure",
}

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_CONTAINER = re.compile(r"^(\$root|[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62})$")


class ReadableStream(Protocol):
    """What the destinations read from: anything with ``read(size)`` returning bytes."""

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes."""
        ...


class StoreCopyError(AirflowException):
    """An upload did not match what was read; nothing (or nothing left) was written at the key."""


@dataclass(frozen=True)
class ObjectInfo:
    """
    What a store says about an object.

    :param size: its size in bytes.
    :param sha256: hex SHA-256 of its content when the store kept it as metadata, else ``None``.
    """

    size: int
    sha256: str | None = None


@dataclass(frozen=True)
class DestinationUri:
    """
    A parsed destination URI.

    :param scheme: as given: ``s3``, ``gs``, ``wasb``, ``wasbs``, ``abfs`` or ``abfss``.
    :param container: the bucket or container.
    :param prefix: the folder inside it, ``""`` or ending with ``/``.
    :param account: the Azure storage account named in the URI (``None`` when not given).
    """

    scheme: str
    container: str
    prefix: str
    account: str | None = None

    @property
    def store(self) -> str:
        """``s3``, ``gcs`` or ``azure``."""
        return SCHEMES[self.scheme]


def parse_destination(value: Any, *, field: str = "destination") -> DestinationUri:
    """
    Parse and check a destination URI; raise :class:`DinteroInputError` naming ``field``.

    The folder may not contain empty, ``.`` or ``..`` levels (it would be a different key on
    each store), and the bucket or container name must be valid for its store.

    :param value: e.g. ``"gs://finance/dintero"``.
    :param field: the parameter name for error messages.
    """
    expected = (
        "a destination URI: s3://bucket[/folder], gs://bucket[/folder], "
        "wasbs://container@account.blob.core.windows.net[/folder] or "
        "abfss://container@account.dfs.core.windows.net[/folder]"
    )
    if not isinstance(value, str) or "://" not in value:
        raise DinteroInputError(field, expected, value)
    parts = urlsplit(value.strip())
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise DinteroInputError(field, expected + f"; scheme {scheme!r} is not supported", value)
    if parts.query or parts.fragment:
        raise DinteroInputError(field, "a destination URI without ?query or #fragment", value)
    container, _, host = parts.netloc.partition("@")
    account: str | None = None
    if SCHEMES[scheme] == "azure":
        if host:
            account = host.split(".", 1)[0]
            if not re.fullmatch(r"[a-z0-9]{3,24}", account):
                raise DinteroInputError(
                    field, "an Azure storage account name (3-24 lowercase letters/digits)", value
                )
        if not _CONTAINER.match(container):
            raise DinteroInputError(
                field, "an Azure container name (3-63 lowercase letters, digits, -)", value
            )
    else:
        if host or parts.port:
            raise DinteroInputError(field, expected, value)
        if not _BUCKET.match(container) or ".." in container:
            raise DinteroInputError(field, "a bucket name (3-222 lowercase letters, digits, . _ -)", value)
    path = parts.path.strip("/")
    levels = path.split("/") if path else []
    if any(level in ("", ".", "..") for level in levels):
        raise DinteroInputError(field, "a folder without empty, '.' or '..' levels", value)
    prefix = f"{path}/" if path else ""
    return DestinationUri(scheme=scheme, container=container, prefix=prefix, account=account)


class Destination(ABC):
    """
    One container of one object store (and a folder in it), behind the store's Airflow hook.

    Keys given to the methods are full object keys: :meth:`object_key` puts the folder of the
    destination URI in front of a key rendered from a template.

    :param location: the parsed destination URI.
    :param conn_id: the store's Airflow connection.
    """

    #: What users call the store, for messages.
    store_name: ClassVar[str]

    def __init__(self, location: DestinationUri, conn_id: str | None) -> None:
        self.location = location
        self.conn_id = conn_id

    @property
    def container(self) -> str:
        """The bucket or container."""
        return self.location.container

    def object_key(self, key: str) -> str:
        """
        Return the full key of ``key`` (a key rendered from a template) in this destination.

        :param key: a relative key.
        """
        return f"{self.location.prefix}{key}"

    @property
    @abstractmethod
    def lineage_namespace(self) -> str:
        """The OpenLineage namespace of the container, e.g. ``gs://bucket``."""

    @property
    def base_uri(self) -> str:
        """The URI of the container, before each key (the Asset naming), e.g. ``gs://bucket``."""
        return self.lineage_namespace

    def uri(self, key: str) -> str:
        """
        Return the URI of the object at ``key`` (return values, manifests, Asset naming).

        :param key: a full object key.
        """
        return f"{self.base_uri}/{key}"

    def key_of(self, uri: str) -> str:
        """
        Return the key of an object URI given by :meth:`uri`.

        :param uri: an object URI of this destination.
        """
        return uri[len(self.base_uri) + 1 :]

    def asset_uri(self, key_prefix: str) -> str:
        """
        Return the Asset URI of a folder of this destination (the container itself for ``""``).

        :param key_prefix: a full key prefix, e.g. ``dintero/settlements``.
        """
        prefix = key_prefix.strip("/")
        return f"{self.base_uri}/{prefix}" if prefix else self.base_uri

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`DinteroInputError` unless the container exists and is reachable."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """
        Return what the store says about the object at ``key``, or ``None`` when there is none.

        :param key: a full object key.
        """

    def exists(self, key: str) -> bool:
        """
        Tell whether an object exists at ``key``.

        :param key: a full object key.
        """
        return self.head(key) is not None

    @abstractmethod
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
        Stream ``source`` to ``key`` atomically with flat memory; return the bytes written.

        Nothing is visible at ``key`` unless every byte was read and their count matches
        ``expected_size``; an exception from ``source.read()`` propagates unchanged and leaves
        no object (and, where the store has no atomic put for a mismatch found afterwards, the
        object is deleted and :class:`StoreCopyError` raised).

        :param source: read once, front to back, never seeked.
        :param key: a full object key.
        :param content_type: the object's content type.
        :param expected_size: the announced size in bytes, if known.
        :param metadata: user metadata (names and values are adapted to the store's rules).
        """

    @abstractmethod
    def iter_bytes(self, key: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        """
        Yield the content of the object at ``key`` in chunks (streamed).

        :param key: a full object key.
        :param chunk_size: bytes per chunk.
        """

    def read_bytes(self, key: str) -> bytes:
        """
        Return the whole (small) object at ``key``, e.g. a manifest.

        :param key: a full object key.
        """
        return b"".join(self.iter_bytes(key))

    @abstractmethod
    def delete(self, key: str) -> None:
        """
        Delete the object at ``key`` (no error when there is none).

        :param key: a full object key.
        """

    def abort_orphans(self, key: str) -> int:
        """
        Remove what a killed earlier copy of ``key`` left behind; return how many were removed.

        :param key: a full object key.
        """
        return 0

    def describe(self) -> str:
        """The destination for log lines, e.g. ``gs://finance/dintero/``."""
        return f"{self.base_uri}/{self.location.prefix}"

    def _check_sizes(self, key: str, read: int, expected: int | None, stored: int | None = None) -> list[str]:
        problems = []
        if stored is not None and stored != read:
            problems.append(f"{stored} bytes stored but {read} read")
        if expected is not None and read != expected:
            problems.append(f"{read} bytes read but {expected} announced")
        return problems


class CountingReader:
    """
    Wraps a source: counts and hashes the bytes, and fills every read up to ``size``.

    A socket may return fewer bytes than asked; stores that cut the stream into parts (S3's
    multipart parts, Azure blocks) need full parts.

    :param source: what to read from.
    """

    def __init__(self, source: ReadableStream) -> None:
        import hashlib

        self._source = source
        self.bytes_read = 0
        self._sha256 = hashlib.sha256()

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the bytes read so far."""
        return self._sha256.hexdigest()

    def readable(self) -> bool:
        """Always ``True``."""
        return True

    def seekable(self) -> bool:
        """Always ``False``: the source is read once."""
        return False

    def count(self, data: bytes) -> None:
        """
        Count and hash bytes read from the source by the caller itself.

        :param data: the bytes read.
        """
        self.bytes_read += len(data)
        self._sha256.update(data)

    def read(self, size: int = -1) -> bytes:
        """
        Read ``size`` bytes (fewer only at the end of the stream), or everything for ``-1``.

        :param size: bytes wanted.
        """
        if size is None or size < 0:
            data = self._source.read()
        else:
            first = self._source.read(size)
            if len(first) >= size or not first:
                data = first
            else:
                buffer = bytearray(first)
                while len(buffer) < size:
                    chunk = self._source.read(size - len(buffer))
                    if not chunk:
                        break
                    buffer += chunk
                data = bytes(buffer)
        self.count(data)
        return data
