"""
Google Cloud Storage behind the destination interface, through the google provider's ``GCSHook``.

Uploads are resumable uploads (``google-cloud-storage``'s ``BlobWriter``): the source is read in
chunks of :data:`DEFAULT_CHUNK_SIZE`, each sent as one part of the upload session, so memory is
about one chunk whatever the file's size. GCS creates the object only when the session is
finalised, which happens only after the last byte was read and the size checked: a broken
download leaves no object (the session is cancelled, or expires unfinalised after a week).
A customer-managed encryption key (``kms_key_name``) is sent when the session is created.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

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
    from airflow.providers.google.cloud.hooks.gcs import GCSHook

#: Bytes per resumable-upload chunk (GCS wants a multiple of 256 KiB): about the memory used.
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
_CHUNK_MULTIPLE = 256 * 1024
_READ_SIZE = 1024 * 1024


class GCSDestination(Destination):
    """
    A GCS bucket (and folder) reached through the google provider's ``GCSHook`` of ``conn_id``.

    :param location: the parsed ``gs://`` URI.
    :param conn_id: the Google Cloud connection.
    :param kms_key_name: a Cloud KMS key (CMEK) for every object:
        ``projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>``.
    :param chunk_size: bytes per upload chunk (a multiple of 256 KiB).
    :param hook: an existing ``GCSHook`` to use instead of a new one of ``conn_id``.
    """

    store_name = "GCS"

    def __init__(
        self,
        location: DestinationUri,
        conn_id: str | None = "google_cloud_default",
        *,
        kms_key_name: Any = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        hook: GCSHook | None = None,
    ) -> None:
        super().__init__(location, conn_id)
        self.kms_key_name = kms_key_name
        self.chunk_size = chunk_size
        self._hook = hook

    @cached_property
    def hook(self) -> GCSHook:
        """The google provider's ``GCSHook``."""
        if self._hook is not None:
            return self._hook
        from airflow.providers.google.cloud.hooks.gcs import GCSHook

        return GCSHook(gcp_conn_id=self.conn_id or "google_cloud_default")

    @cached_property
    def _bucket(self) -> Any:
        return self.hook.get_conn().bucket(self.container)

    @property
    def lineage_namespace(self) -> str:
        """``gs://<bucket>``, as the google provider names GCS datasets."""
        return f"gs://{self.container}"

    def check(self) -> None:
        """Check ``kms_key_name`` and ``chunk_size``, and that the bucket exists and is reachable."""
        from google.api_core.exceptions import Forbidden, GoogleAPIError, NotFound

        key = self.kms_key_name
        if key is not None and (
            not isinstance(key, str) or not key.startswith("projects/") or "/cryptoKeys/" not in key
        ):
            raise DinteroInputError(
                "kms_key_name", "a Cloud KMS key: projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>", key
            )
        if not isinstance(self.chunk_size, int) or self.chunk_size <= 0 or self.chunk_size % _CHUNK_MULTIPLE:
            raise DinteroInputError(
                "chunk_size", "a positive multiple of 262144 bytes (256 KiB)", self.chunk_size
            )
        try:
            self._bucket.reload()
        except NotFound:
            reason = "it does not exist"
        except Forbidden:
            reason = "access is denied"
        except GoogleAPIError as exc:
            reason = f"GCS answered {getattr(exc, 'code', None) or type(exc).__name__}"
        except Exception as exc:  # transport errors (connection refused, DNS, TLS)
            reason = f"it cannot be reached: {type(exc).__name__}"
        else:
            return
        raise DinteroInputError(
            "destination",
            f"an existing GCS bucket reachable with Google Cloud connection {self.conn_id!r}, but bucket "
            f"{self.container!r} cannot be used: {reason} (nothing was downloaded)",
        )

    def head(self, key: str) -> ObjectInfo | None:
        """
        Read the object's metadata (one ``GET``); ``None`` when there is none.

        :param key: a full object key.
        """
        blob = self._bucket.get_blob(key)
        if blob is None:
            return None
        return ObjectInfo(size=int(blob.size or 0), sha256=(blob.metadata or {}).get(SHA256_METADATA))

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
        Resumable-upload ``source`` to the key; finalise only when complete; return the bytes written.

        :param source: read once, never seeked.
        :param key: a full object key.
        :param content_type: the object's content type.
        :param expected_size: the announced size, if known.
        :param metadata: custom metadata.
        """
        from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector
        from google.cloud.storage.fileio import BlobWriter

        blob = self._bucket.blob(key, chunk_size=self.chunk_size, kms_key_name=self.kms_key_name or None)
        if metadata:
            blob.metadata = {str(k): str(v) for k, v in metadata.items()}
        writer = BlobWriter(blob, chunk_size=self.chunk_size, ignore_flush=True, content_type=content_type)
        reader = CountingReader(source)
        try:
            # Reads of up to 1 MiB as they come: the writer gathers them into chunks itself.
            while chunk := source.read(_READ_SIZE):
                reader.count(chunk)
                writer.write(chunk)
            problems = self._check_sizes(key, reader.bytes_read, expected_size)
            if problems:
                raise StoreCopyError(
                    f"Upload to {self.uri(key)} was not finalised ({'; '.join(problems)}); "
                    "no object was written"
                )
        except BaseException:
            self._cancel(writer)
            raise
        writer.close()  # the last chunk finalises the upload: only now does the object exist
        stored = self.head(key)
        problems = self._check_sizes(key, reader.bytes_read, expected_size, stored.size if stored else -1)
        if problems:
            self.delete(key)
            raise StoreCopyError(
                f"Upload to {self.uri(key)} was incomplete ({'; '.join(problems)}); the object was deleted"
            )
        get_hook_lineage_collector().add_output_asset(
            context=self.hook, scheme="gs", asset_kwargs={"bucket": self.container, "key": key}
        )
        return reader.bytes_read

    def _cancel(self, writer: Any) -> None:
        """
        Make sure an unfinished upload is never finalised, and cancel its session (best effort).

        ``BlobWriter`` is an ``io`` object: when garbage collected, ``io`` closes it, and its
        ``close()`` uploads what is buffered as the last chunk, finalising the upload with a
        truncated file. Closing its buffer first makes that ``close()`` a no-op.
        """
        writer._buffer.close()
        started = getattr(writer, "_upload_and_transport", None)
        if not started:
            return
        upload, transport = started
        url = getattr(upload, "resumable_url", None)
        try:
            if url:
                transport.delete(url, timeout=10)
        except Exception as exc:
            # Nothing is visible either way: GCS discards an unfinalised session after a week.
            self._log_debug("Could not cancel the upload session: %s", type(exc).__name__)

    @staticmethod
    def _log_debug(message: str, *args: Any) -> None:
        import logging

        logging.getLogger(__name__).debug(message, *args)

    def iter_bytes(self, key: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        """
        Stream the object's content (ranged reads of ``chunk_size``).

        :param key: a full object key.
        :param chunk_size: bytes per chunk.
        """
        with self._bucket.blob(key).open("rb", chunk_size=chunk_size) as reader:
            while chunk := reader.read(chunk_size):
                yield chunk

    def delete(self, key: str) -> None:
        """
        Delete the object (no error when there is none).

        :param key: a full object key.
        """
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):
            self._bucket.blob(key).delete()
