"""
Amazon S3 behind the destination interface, through the amazon provider's ``S3Hook``.

The streaming itself is :func:`~airflow_provider_dintero.transfers._s3_stream.stream_to_s3`
(boto3's managed multipart upload, bounded for a non-seekable stream, aborted on a broken
source); this class adds the destination URI, the upload arguments checked once per run and
the interface the transfers share with GCS and Azure.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_dintero.transfers.destinations._base import (
    Destination,
    DestinationUri,
    ObjectInfo,
    ReadableStream,
)

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook


class S3Destination(Destination):
    """
    An S3 bucket (and folder) reached through the amazon provider's ``S3Hook`` of ``conn_id``.

    :param location: the parsed ``s3://`` URI.
    :param conn_id: the AWS connection (``None``: boto3's default credential chain).
    :param encrypt: SSE-S3 (``AES256``) for every object, as the amazon transfers' ``encrypt``.
    :param acl_policy: a canned ACL for every object.
    :param s3_extra_args: more upload arguments, e.g. ``{"ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "<key>"}``.
    :param hook: an existing ``S3Hook`` to use instead of a new one of ``conn_id``.
    """

    store_name = "S3"

    def __init__(
        self,
        location: DestinationUri,
        conn_id: str | None = "aws_default",
        *,
        encrypt: Any = False,
        acl_policy: Any = None,
        s3_extra_args: Any = None,
        hook: S3Hook | None = None,
    ) -> None:
        super().__init__(location, conn_id)
        self.encrypt = encrypt
        self.acl_policy = acl_policy
        self.s3_extra_args = s3_extra_args
        self._hook = hook

    @cached_property
    def hook(self) -> S3Hook:
        """The amazon provider's ``S3Hook``."""
        if self._hook is not None:
            return self._hook
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=self.conn_id)

    @cached_property
    def upload_args(self) -> dict[str, Any]:
        """The checked ``ExtraArgs`` of every object (raises ``DinteroInputError`` naming the field)."""
        from airflow_provider_dintero.transfers._s3_stream import upload_args

        return upload_args(
            self.hook, encrypt=self.encrypt, acl_policy=self.acl_policy, s3_extra_args=self.s3_extra_args
        )

    @property
    def lineage_namespace(self) -> str:
        """``s3://<bucket>``, as the amazon provider names S3 datasets."""
        return f"s3://{self.container}"

    def check(self) -> None:
        """Check the upload arguments and that the bucket exists (``HEAD`` bucket)."""
        from airflow_provider_dintero.transfers._s3_stream import ensure_bucket

        _ = self.upload_args
        ensure_bucket(self.hook, self.container)

    def head(self, key: str) -> ObjectInfo | None:
        """
        ``HEAD`` the object.

        :param key: a full object key.
        """
        from airflow_provider_dintero.transfers._s3_stream import object_exists

        if not object_exists(self.hook, self.container, key):
            return None
        found = self.hook.head_object(key, self.container) or {}
        return ObjectInfo(size=int(found.get("ContentLength", -1)), sha256=None)

    def exists(self, key: str) -> bool:
        """
        ``HEAD`` the object (``S3Hook.check_for_key``).

        :param key: a full object key.
        """
        from airflow_provider_dintero.transfers._s3_stream import object_exists

        return object_exists(self.hook, self.container, key)

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
        Multipart-stream ``source`` to the key (see ``stream_to_s3``); return the bytes written.

        :param source: read once, never seeked.
        :param key: a full object key.
        :param content_type: the object's content type.
        :param expected_size: the announced size, if known.
        :param metadata: user metadata (``x-amz-meta-*``).
        """
        from airflow_provider_dintero.transfers._s3_stream import stream_to_s3

        return stream_to_s3(
            self.hook,
            source,
            self.container,
            key,
            content_type=content_type,
            expected_size=expected_size,
            metadata=metadata,
            extra_args=self.upload_args,
        )

    def iter_bytes(self, key: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        """
        Stream the object's content (``GetObject``).

        :param key: a full object key.
        :param chunk_size: bytes per chunk.
        """
        body = self.hook.get_conn().get_object(Bucket=self.container, Key=key)["Body"]
        while chunk := body.read(chunk_size):
            yield chunk

    def delete(self, key: str) -> None:
        """
        Delete the object.

        :param key: a full object key.
        """
        self.hook.delete_objects(self.container, [key])

    def abort_orphans(self, key: str) -> int:
        """
        Abort multipart uploads of exactly ``key`` left open by a killed copy (``stream_to_s3``
        does it before every upload, too).

        :param key: a full object key.
        """
        from airflow_provider_dintero.transfers._s3_stream import abort_open_uploads

        return abort_open_uploads(self.hook, self.container, key)
