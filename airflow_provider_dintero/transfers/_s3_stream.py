"""
Streaming copies into S3, shared by the settlement and insight report transfers: upload
arguments, a transfer config bounded for a non-seekable stream, the streaming upload itself
(memory flat in the file's size, no object left behind by a broken download), and safe,
injective object keys from templates and values taken from API answers.

Everything here goes through the amazon provider's :class:`~airflow.providers.amazon.aws.hooks.s3.S3Hook`:
its transfer config (``transfer_config_args`` of the hook or of the aws connection's
``service_config``), its ``extra_args``, its object checks (``head_object``/``check_for_key``),
its client (``get_conn()``) and its hook lineage (each object written is reported to Airflow's
hook lineage collector, as the hook's own uploads are). boto3 is only imported when called.

"""

from __future__ import annotations

import copy
import logging
import string
from collections.abc import Collection, Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from airflow_provider_dintero.exceptions import DinteroInputError
from airflow_provider_dintero.transfers.destinations._base import StoreCopyError

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from boto3.s3.transfer import TransferConfig

log = logging.getLogger(__name__)

#: S3 requires at least 5 MiB for every part but the last.
MIN_CHUNK_SIZE = 5 * 1024 * 1024
#: Parts uploaded in parallel unless the aws connection's ``transfer_config_args`` says otherwise;
#: memory is about ``multipart_chunksize x (max_concurrency + 1)``.
DEFAULT_MAX_CONCURRENCY = 2

#: The canned ACLs S3 accepts for ``acl_policy``.
CANNED_ACLS = (
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
)
#: Upload arguments set by the copy itself, per object.
_OWN_ARGS = ("ContentType", "Metadata")
#: SSE-C needs the customer key on every later read (HEAD included) and would put a key in a
#: templated field: not offered.
_SSE_C_ARGS = ("SSECustomerAlgorithm", "SSECustomerKey", "SSECustomerKeyMD5")

_KEY_SAFE = frozenset(string.ascii_letters + string.digits + "-_.")


class S3CopyError(StoreCopyError):
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
    Tell whether ``s3://bucket/key`` exists (one ``HEAD`` request, ``S3Hook.check_for_key``).

    :param s3_hook: the amazon provider's S3 hook.
    :param bucket: the bucket name.
    :param key: the object key.
    """
    return bool(s3_hook.check_for_key(key, bucket))


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


def upload_args(
    s3_hook: S3Hook,
    *,
    encrypt: Any = False,
    acl_policy: Any = None,
    s3_extra_args: Any = None,
) -> dict[str, Any]:
    """
    Return the ``ExtraArgs`` every object of a copy is uploaded with (checked, before any request).

    The hook's own ``extra_args`` come first, then ``s3_extra_args``, ``encrypt`` and
    ``acl_policy``; the copy adds ``ContentType`` and ``Metadata`` per object.

    :param s3_hook: the amazon provider's S3 hook.
    :param encrypt: ``True`` for SSE-S3 (``ServerSideEncryption="AES256"``), as the amazon
        transfers' ``encrypt``.
    :param acl_policy: a canned ACL such as ``"bucket-owner-full-control"``, or ``None``.
    :param s3_extra_args: more upload arguments (boto3's ``ALLOWED_UPLOAD_ARGS``), e.g.
        ``{"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "<key id or ARN>"}``.
    """
    from boto3.s3.transfer import S3Transfer

    if not isinstance(encrypt, bool):
        raise DinteroInputError("encrypt", "True or False", encrypt)
    if acl_policy is not None and acl_policy not in CANNED_ACLS:
        raise DinteroInputError("acl_policy", "a canned ACL: " + ", ".join(CANNED_ACLS), acl_policy)
    given = {} if s3_extra_args is None else s3_extra_args
    if not isinstance(given, Mapping):
        raise DinteroInputError("s3_extra_args", "a dict of S3 upload arguments", s3_extra_args)
    allowed = set(S3Transfer.ALLOWED_UPLOAD_ARGS) - set(_OWN_ARGS) - set(_SSE_C_ARGS)
    unknown = sorted(str(name) for name in given if name not in allowed)
    if unknown:
        raise DinteroInputError(
            "s3_extra_args",
            "S3 upload arguments such as ServerSideEncryption, SSEKMSKeyId, ACL, StorageClass, Tagging "
            "(boto3's ALLOWED_UPLOAD_ARGS without ContentType, Metadata and SSE-C); "
            f"not {', '.join(unknown)}",
        )
    args: dict[str, Any] = {**s3_hook.extra_args, **dict(given)}
    if encrypt:
        sse = args.get("ServerSideEncryption")
        if sse not in (None, "AES256"):
            raise DinteroInputError(
                "encrypt",
                f"False when s3_extra_args or the hook's extra_args ask for ServerSideEncryption={sse!r} "
                "(encrypt=True means SSE-S3, AES256)",
                encrypt,
            )
        args["ServerSideEncryption"] = "AES256"
    if acl_policy:
        args["ACL"] = acl_policy
    if "SSEKMSKeyId" in args and args.get("ServerSideEncryption") not in ("aws:kms", "aws:kms:dsse"):
        raise DinteroInputError(
            "s3_extra_args", "ServerSideEncryption 'aws:kms' (or 'aws:kms:dsse') with SSEKMSKeyId"
        )
    if getattr(s3_hook, "_requester_pays", False):  # as S3Hook's own uploads do
        args["RequestPayer"] = "requester"
    return args


def streaming_config(
    s3_hook: S3Hook, *, chunk_size: int | None = None, max_concurrency: int | None = None
) -> TransferConfig:
    """
    Return the hook's transfer config, bounded for streaming a non-seekable source.

    The hook's ``transfer_config`` (``transfer_config_args`` of the hook or of the aws
    connection's ``service_config``) is copied; where it still has boto3's default
    ``max_concurrency``, :data:`DEFAULT_MAX_CONCURRENCY` is used; the parts buffered from the
    stream are capped at ``max_concurrency + 1``, so memory is about
    ``multipart_chunksize x (max_concurrency + 1)`` whatever the file's size.

    :param s3_hook: the amazon provider's S3 hook.
    :param chunk_size: part size and multipart threshold, at least 5 MiB (default: the hook's).
    :param max_concurrency: parts uploaded in parallel, at least 1 (default: the hook's when set,
        else :data:`DEFAULT_MAX_CONCURRENCY`).
    """
    from boto3.s3.transfer import TransferConfig

    config = copy.copy(s3_hook.transfer_config)
    defaults = TransferConfig()
    if chunk_size is not None:
        config.multipart_chunksize = config.multipart_threshold = chunk_size
    if config.multipart_chunksize < MIN_CHUNK_SIZE:
        raise DinteroInputError(
            "chunk_size" if chunk_size is not None else "transfer_config_args.multipart_chunksize",
            f"at least {MIN_CHUNK_SIZE} bytes (S3's minimum part size)",
            config.multipart_chunksize,
        )
    if max_concurrency is not None:
        config.max_concurrency = max_concurrency
    elif config.max_concurrency == defaults.max_concurrency:
        config.max_concurrency = DEFAULT_MAX_CONCURRENCY
    if not isinstance(config.max_concurrency, int) or config.max_concurrency < 1:
        raise DinteroInputError("max_concurrency", "at least 1", config.max_concurrency)
    # Bound the parts buffered from a non-seekable stream (boto3 defaults to 10).
    config.max_in_memory_upload_chunks = config.max_concurrency + 1
    return config


def abort_open_uploads(s3_hook: S3Hook, bucket: str, key: str) -> int:
    """
    Abort every open multipart upload of exactly ``s3://bucket/key``; return how many.

    A copy killed mid-upload (``SIGKILL``, a lost worker) leaves its multipart upload open: no
    object, but stored parts that S3 bills until aborted. The next copy of the key removes them.

    :param s3_hook: the amazon provider's S3 hook.
    :param bucket: the bucket name.
    :param key: the object key.
    """
    from botocore.exceptions import ClientError

    client = s3_hook.get_conn()
    aborted = 0
    try:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=key):
            for upload in page.get("Uploads") or []:
                if upload.get("Key") != key:
                    continue
                client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
                aborted += 1
                log.warning(
                    "Aborted an unfinished multipart upload of %s (started %s) left by an earlier copy",
                    s3_uri(bucket, key),
                    upload.get("Initiated"),
                )
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 403:
            raise
        # Cleaning up is best effort: a bucket policy without s3:ListBucketMultipartUploads or
        # s3:AbortMultipartUpload must not stop the copy itself.
        log.warning(
            "Could not look for unfinished multipart uploads of %s (access denied: the AWS connection "
            "lacks s3:ListBucketMultipartUploads or s3:AbortMultipartUpload); parts left by a killed "
            "copy stay until a lifecycle rule (AbortIncompleteMultipartUpload) removes them",
            s3_uri(bucket, key),
        )
    return aborted


def _ascii_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """S3 user metadata travels in HTTP headers: percent-encode what is not printable ASCII."""
    return {str(k): quote(str(v), safe=" !#$&'()*+,-./:;=?@[]^_`{|}~") for k, v in (metadata or {}).items()}


def stream_to_s3(
    s3_hook: S3Hook,
    source: ReadableStream,
    bucket: str,
    key: str,
    *,
    content_type: str,
    expected_size: int | None = None,
    metadata: Mapping[str, str] | None = None,
    extra_args: Mapping[str, Any] | None = None,
    chunk_size: int | None = None,
    max_concurrency: int | None = None,
) -> int:
    """
    Stream ``source`` into ``s3://bucket/key`` with flat memory; return the bytes written.

    Open multipart uploads of the key left by an earlier, killed copy are aborted first.
    Nothing is left at ``key`` when ``source.read()`` raises: the multipart upload is aborted
    (or, for a file smaller than the part size, the single ``PUT`` is never sent) and the
    exception propagates unchanged. When the object's size differs from the bytes read or from
    ``expected_size`` the object is deleted and :class:`S3CopyError` is raised. The object is
    reported to Airflow's hook lineage collector as an output, as ``S3Hook.load_file_obj`` does.

    :param s3_hook: the amazon provider's S3 hook (its connection decides credentials, endpoint,
        transfer config and default ``extra_args``).
    :param source: a readable file-like; it is read once, front to back, and never seeked.
    :param bucket: the bucket name.
    :param key: the object key.
    :param content_type: the object's ``Content-Type``.
    :param expected_size: the announced size in bytes, if known (e.g. ``Content-Length``).
    :param metadata: user metadata (``x-amz-meta-*``); non-ASCII is percent-encoded.
    :param extra_args: the upload arguments from :func:`upload_args` (default: the hook's).
    :param chunk_size: part size and threshold, at least 5 MiB (default: the hook's config).
    :param max_concurrency: parts uploaded in parallel (default: see :func:`streaming_config`).

    Example::

        with hook.stream_settlement_attachment(aid, sid, att_id) as stream:
            stream_to_s3(s3_hook, stream, "bucket", "key.pdf", content_type="application/pdf")
    """
    from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector

    config = streaming_config(s3_hook, chunk_size=chunk_size, max_concurrency=max_concurrency)
    extra: dict[str, Any] = dict(extra_args) if extra_args is not None else upload_args(s3_hook)
    extra["ContentType"] = content_type
    if metadata:
        extra["Metadata"] = _ascii_metadata(metadata)
    abort_open_uploads(s3_hook, bucket, key)
    reader = _CountingReader(source)
    client = s3_hook.get_conn()
    log.info("Streaming to %s", s3_uri(bucket, key))
    client.upload_fileobj(Fileobj=reader, Bucket=bucket, Key=key, ExtraArgs=extra, Config=config)
    head = s3_hook.head_object(key, bucket) or {}
    written = int(head.get("ContentLength", -1))
    problems = []
    if written != reader.bytes_read:
        problems.append(f"{written} bytes stored but {reader.bytes_read} read")
    if expected_size is not None and reader.bytes_read != expected_size:
        problems.append(f"{reader.bytes_read} bytes read but {expected_size} announced")
    if problems:
        s3_hook.delete_objects(bucket, [key])
        raise S3CopyError(
            f"Upload to {s3_uri(bucket, key)} was incomplete ({'; '.join(problems)}); the object was deleted"
        )
    get_hook_lineage_collector().add_output_asset(
        context=s3_hook, scheme="s3", asset_kwargs={"bucket": bucket, "key": key}
    )
    log.info("Wrote %s bytes to %s", written, s3_uri(bucket, key))
    return written


def key_part(value: Any, *, reserved: Collection[str] = ()) -> str:
    """
    Make one value from an API answer safe and unambiguous as (part of) an S3 key segment.

    ASCII letters and digits, ``-``, ``_``, ``.`` and non-ASCII letters and digits stay as they
    are; every other character (``/``, ``%``, ``\\``, spaces, control characters, ...) becomes
    ``%XX`` of its UTF-8 bytes. A whole value ``.``, ``..`` or one of ``reserved`` gets its
    first character encoded too. Since ``%`` itself is always encoded, different values never
    give the same result, and a value never adds, removes or climbs a key level.

    :param value: the value (``str()`` is applied).
    :param reserved: values the caller uses itself (e.g. ``"manifest"``), never produced here.
    """
    text = str(value)
    out: list[str] = []
    for ch in text:
        if ch in _KEY_SAFE or (ord(ch) > 127 and ch.isalnum()):
            out.append(ch)
        else:
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass")))
    part = "".join(out)
    if part in (".", "..") or text in reserved:
        part = "".join(f"%{b:02X}" for b in text[0].encode("utf-8")) + part[1:]
    return part


def check_unique_keys(
    planned: Iterable[tuple[str, Hashable, str]], *, field: str = "s3_key", hint: str = ""
) -> None:
    """
    Raise :class:`DinteroInputError` when two different things would be written to one key.

    :param planned: ``(key, identity, description)`` for every object of the run; the same
        identity twice (a thing listed twice) is fine.
    :param field: the parameter name for the error message.
    :param hint: how to fix the template, for the message.
    """
    seen: dict[str, tuple[Hashable, str]] = {}
    for key, identity, description in planned:
        other = seen.setdefault(key, (identity, description))
        if other[0] != identity:
            raise DinteroInputError(
                field,
                f"a key template that gives each object its own key: {other[1]} and {description} would "
                f"both be written to it{f' ({hint})' if hint else ''}; nothing was written",
                key,
            )


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
