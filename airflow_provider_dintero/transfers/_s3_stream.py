"""
Streaming copies into S3, shared by the settlement and insight report transfers.

Everything here works through the amazon provider's :class:`~airflow.providers.amazon.aws.hooks.s3.S3Hook`
and only imports boto3 when called.

Public API (used by :mod:`~airflow_provider_dintero.transfers.settlements_to_s3` and
:mod:`~airflow_provider_dintero.transfers.insight_report_to_s3`):

``stream_to_s3(s3_hook, source, bucket, key, *, content_type, expected_size=None, metadata=None,
chunk_size=DEFAULT_CHUNK_SIZE, max_concurrency=DEFAULT_MAX_CONCURRENCY) -> int``
    Upload a readable, non-seekable file-like (a
    :class:`~airflow_provider_dintero.hooks.dintero.DownloadStream`) to ``s3://bucket/key`` and
    return the number of bytes written. Files larger than ``chunk_size`` go up as a multipart
    upload of ``chunk_size`` parts, so memory stays flat in the file's size (about
    ``chunk_size x (max_concurrency + 1)``). A multipart upload only becomes an object when it
    completes: when ``source.read()`` raises (for example
    :class:`~airflow_provider_dintero.hooks.dintero.DinteroStreamError` on a broken download)
    boto3 aborts the upload and the exception propagates unchanged, leaving no object behind.
    After the upload the object's size is checked against the bytes read and ``expected_size``;
    on a mismatch the object is deleted and :class:`S3CopyError` is raised.

``object_exists(s3_hook, bucket, key) -> bool``
    ``HEAD`` the object: ``True`` if it exists, ``False`` on 404, any other error propagates.

``ensure_bucket(s3_hook, bucket, *, field="s3_bucket") -> None``
    Raise :class:`~airflow_provider_dintero.hooks.dintero.DinteroInputError` naming the bucket
    and the AWS connection when the bucket does not exist or cannot be reached. Call it before
    the first download.

``key_template_fields(template, allowed, *, field="s3_key", required=()) -> list[str]``
    Check a :meth:`str.format` key template: every field must be a plain name from ``allowed``
    (no positional ``{}``, no ``{a.b}`` or ``{a[0]}``), and every name in ``required`` must be
    used. Raise :class:`~airflow_provider_dintero.hooks.dintero.DinteroInputError` listing the
    allowed fields otherwise. Returns the fields used.

``render_key(template, fields, *, field="s3_key") -> str``
    Render a checked template with ``fields``; the result must be a non-empty key not starting
    with ``/``.

``s3_uri(bucket, key) -> str``
    ``s3://bucket/key``.

Example::

    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from airflow_provider_dintero.transfers._s3_stream import object_exists, render_key, stream_to_s3

    s3 = S3Hook(aws_conn_id="aws_default")
    key = render_key("reports/{account_id}/{report_id}.{extension}", fields)
    if not object_exists(s3, "my-bucket", key):
        with dintero_hook.stream_signed_url(url, account_id=aid, description="report") as stream:
            size = stream_to_s3(
                s3, stream, "my-bucket", key, content_type=stream.content_type,
                expected_size=stream.content_length,
            )
"""

from __future__ import annotations

import logging
import string
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_dintero.hooks.dintero import DinteroInputError

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

log = logging.getLogger(__name__)

#: Multipart part size. S3 requires at least 5 MiB for every part but the last.
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
#: Parts uploaded in parallel; memory is about ``chunk_size x (max_concurrency + 1)``.
DEFAULT_MAX_CONCURRENCY = 2
MIN_CHUNK_SIZE = 5 * 1024 * 1024


class S3CopyError(AirflowException):
    """An upload completed but the object in S3 does not match what was read; it was deleted."""


class ReadableStream(Protocol):
    """What :func:`stream_to_s3` reads from: anything with ``read(size)`` returning bytes."""

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes."""
        ...


class _CountingReader:
    """
    Wraps a source for boto3: never seekable, counts bytes, and fills every read.

    boto3 cuts a non-seekable stream into parts with one ``read(part_size)`` each; a socket may
    return less, which would make parts smaller than S3's 5 MiB minimum. This reader loops
    until ``size`` bytes or the end of the stream.
    """

    def __init__(self, source: ReadableStream) -> None:
        self._source = source
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
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
        self.bytes_read += len(data)
        return data


def s3_uri(bucket: str, key: str) -> str:
    """
    Return ``s3://bucket/key``.

    :param bucket: the bucket name.
    :param key: the object key.
    """
    return f"s3://{bucket}/{key}"


def _is_not_found(exc: Exception) -> bool:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket") or status == 404


def object_exists(s3_hook: S3Hook, bucket: str, key: str) -> bool:
    """
    Tell whether ``s3://bucket/key`` exists (one ``HEAD`` request).

    :param s3_hook: the amazon provider's S3 hook.
    :param bucket: the bucket name.
    :param key: the object key.
    """
    from botocore.exceptions import ClientError

    try:
        s3_hook.get_conn().head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _is_not_found(exc):
            return False
        raise
    return True


def ensure_bucket(s3_hook: S3Hook, bucket: str, *, field: str = "s3_bucket") -> None:
    """
    Raise :class:`DinteroInputError` unless ``bucket`` exists and is reachable.

    :param s3_hook: the amazon provider's S3 hook.
    :param bucket: the bucket name.
    :param field: the parameter name for the error message.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    if not isinstance(bucket, str) or not bucket.strip():
        raise DinteroInputError(field, "an S3 bucket name", bucket)
    try:
        s3_hook.get_conn().head_bucket(Bucket=bucket)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if _is_not_found(exc):
            reason = "it does not exist"
        elif status == 403:
            reason = "access is denied"
        else:
            reason = f"S3 answered {status or exc.response.get('Error', {}).get('Code')}"
        raise DinteroInputError(
            field,
            f"an existing S3 bucket reachable with AWS connection {s3_hook.aws_conn_id!r}, but bucket "
            f"{bucket!r} cannot be used: {reason} (nothing was downloaded)",
        ) from None
    except BotoCoreError as exc:
        raise DinteroInputError(
            field,
            f"an S3 bucket reachable with AWS connection {s3_hook.aws_conn_id!r}, but bucket {bucket!r} "
            f"cannot be reached: {type(exc).__name__} (nothing was downloaded)",
        ) from None


def stream_to_s3(
    s3_hook: S3Hook,
    source: ReadableStream,
    bucket: str,
    key: str,
    *,
    content_type: str,
    expected_size: int | None = None,
    metadata: Mapping[str, str] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
) -> int:
    """
    Stream ``source`` into ``s3://bucket/key`` with flat memory; return the bytes written.

    Nothing is left at ``key`` when ``source.read()`` raises: the multipart upload is aborted
    (or, for a file smaller than ``chunk_size``, the single ``PUT`` is never sent) and the
    exception propagates unchanged. When the object's size differs from the bytes read or from
    ``expected_size`` the object is deleted and :class:`S3CopyError` is raised.

    :param s3_hook: the amazon provider's S3 hook (its connection decides credentials/endpoint).
    :param source: a readable file-like; it is read once, front to back, and never seeked.
    :param bucket: the bucket name.
    :param key: the object key.
    :param content_type: the object's ``Content-Type``.
    :param expected_size: the announced size in bytes, if known (e.g. ``Content-Length``).
    :param metadata: user metadata (``x-amz-meta-*``), ASCII strings.
    :param chunk_size: multipart part size and threshold, at least 5 MiB.
    :param max_concurrency: parts uploaded in parallel, at least 1.

    Example::

        with hook.stream_settlement_attachment(aid, sid, att_id) as stream:
            stream_to_s3(s3_hook, stream, "bucket", "key.pdf", content_type="application/pdf")
    """
    from boto3.s3.transfer import TransferConfig

    if chunk_size < MIN_CHUNK_SIZE:
        raise DinteroInputError("chunk_size", f"at least {MIN_CHUNK_SIZE} bytes (S3's minimum part size)")
    if max_concurrency < 1:
        raise DinteroInputError("max_concurrency", "at least 1", max_concurrency)
    config = TransferConfig(
        multipart_threshold=chunk_size,
        multipart_chunksize=chunk_size,
        max_concurrency=max_concurrency,
        max_io_queue=max_concurrency * 2,
        use_threads=True,
    )
    # Bound the parts buffered from a non-seekable stream (boto3 defaults to 10).
    config.max_in_memory_upload_chunks = max_concurrency + 1
    extra: dict[str, Any] = {"ContentType": content_type}
    if metadata:
        extra["Metadata"] = dict(metadata)
    reader = _CountingReader(source)
    client = s3_hook.get_conn()
    log.info("Streaming to %s", s3_uri(bucket, key))
    client.upload_fileobj(Fileobj=reader, Bucket=bucket, Key=key, ExtraArgs=extra, Config=config)
    written = int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
    problems = []
    if written != reader.bytes_read:
        problems.append(f"{written} bytes stored but {reader.bytes_read} read")
    if expected_size is not None and reader.bytes_read != expected_size:
        problems.append(f"{reader.bytes_read} bytes read but {expected_size} announced")
    if problems:
        client.delete_object(Bucket=bucket, Key=key)
        raise S3CopyError(
            f"Upload to {s3_uri(bucket, key)} was incomplete ({'; '.join(problems)}); the object was deleted"
        )
    log.info("Wrote %s bytes to %s", written, s3_uri(bucket, key))
    return written


def key_template_fields(
    template: Any,
    allowed: Collection[str],
    *,
    field: str = "s3_key",
    required: Collection[str] = (),
) -> list[str]:
    """
    Check a :meth:`str.format` key template and return the field names it uses.

    :param template: the template, e.g. ``"dintero/{account_id}/{settlement_id}.{extension}"``.
    :param allowed: the field names a caller provides.
    :param field: the parameter name for error messages.
    :param required: names the template must use (e.g. the ones that make keys unique).
    """
    allowed_list = ", ".join(sorted(allowed))
    if not isinstance(template, str) or not template.strip():
        raise DinteroInputError(field, f"a key template using the fields {allowed_list}", template)
    if template.startswith("/"):
        raise DinteroInputError(field, "a relative key template (S3 keys do not start with /)", template)
    used: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise DinteroInputError(field, f"a valid str.format template ({exc})", template) from None
    for _literal, name, _spec, _conversion in parsed:
        if name is None:
            continue
        if name not in allowed:
            raise DinteroInputError(
                field,
                f"a key template using only the fields {allowed_list}; unknown field {{{name}}}",
                template,
            )
        if name not in used:
            used.append(name)
    missing = [name for name in required if name not in used]
    if missing:
        raise DinteroInputError(
            field,
            "a key template that uses " + ", ".join(f"{{{m}}}" for m in missing) + " so that keys are unique",
            template,
        )
    return used


def render_key(template: str, fields: Mapping[str, Any], *, field: str = "s3_key") -> str:
    """
    Render a key template with ``fields`` and check the result is a usable S3 key.

    :param template: a :meth:`str.format` template checked with :func:`key_template_fields`.
    :param fields: the values, by field name.
    :param field: the parameter name for error messages.
    """
    key_template_fields(template, fields.keys(), field=field)
    try:
        key = template.format(**fields)
    except (ValueError, TypeError) as exc:
        raise DinteroInputError(field, f"a key template that renders ({exc})", template) from None
    if not key or key.startswith("/") or len(key.encode()) > 1024:
        raise DinteroInputError(field, "a template rendering to a relative key of 1 to 1024 bytes", key)
    return key
