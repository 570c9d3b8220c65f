"""Signed, unauthenticated download URLs (reports' ``signed_url`` values, attachment redirects).

They imitate S3 pre-signed URLs: XML errors, 400 when an ``Authorization`` header comes along,
403 ``SignatureDoesNotMatch`` / ``AccessDenied`` ``Request has expired``.
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from airflow_provider_dintero.emulator.models import Response

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from airflow_provider_dintero.emulator.app import EmulatorApp
    from airflow_provider_dintero.emulator.core import Request


def _signature(app: EmulatorApp, path: str, issued: str, expires: str) -> str:
    return hmac.new(app.signing_key, f"{path}|{issued}|{expires}".encode(), "sha256").hexdigest()


def sign_url(app: EmulatorApp, base: str, path: str) -> str:
    """A signed URL for ``path`` on ``base``, valid ``settings.signed_url_lifetime`` seconds.

    :param app: the emulator.
    :param base: scheme and host.
    :param path: the download path.
    """
    issued = str(int(time.time() * 1000))
    expires = str(int(time.time()) + int(app.settings.signed_url_lifetime))
    query = urlencode(
        {"issued": issued, "expires": expires, "signature": _signature(app, path, issued, expires)}
    )
    return f"{base}{path}?{query}"


def expire_signed_urls(app: EmulatorApp) -> None:
    """Make every signed URL issued so far answer 403 ``Request has expired``.

    :param app: the emulator.
    """
    with app.lock:
        app.signed_urls_valid_after_ms = int(time.time() * 1000) + 1


def s3_error(status: int, code: str, message: str) -> Response:
    """An S3-style XML error answer.

    :param status: HTTP status.
    :param code: the ``Code`` element.
    :param message: the ``Message`` element.
    """
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{secrets.token_hex(8).upper()}</RequestId></Error>"
    ).encode()
    return Response(status=status, body=body, content_type="application/xml")


def refuse_unsigned(app: EmulatorApp, req: Request) -> Response | None:
    """The S3 error for a signed-URL request that must be refused, else ``None``.

    :param app: the emulator.
    :param req: the request.
    """
    if "authorization" in req.headers:
        return s3_error(
            400,
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified",
        )
    issued, expires, signature = req.arg("issued"), req.arg("expires"), req.arg("signature")
    if not (issued and expires and signature) or not hmac.compare_digest(
        signature, _signature(app, req.path, issued, expires)
    ):
        return s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match")
    try:
        expired = int(expires) < time.time() or int(issued) < app.signed_urls_valid_after_ms
    except ValueError:
        expired = True
    if expired:
        return s3_error(403, "AccessDenied", "Request has expired")
    return None


def serve(
    app: EmulatorApp, req: Request, find: Callable[[], tuple[dict[str, Any], Iterator[bytes], str] | None]
) -> Response:
    """Answer a signed download: refuse it (S3 errors), ``NoSuchKey``, or stream the file.

    :param app: the emulator.
    :param req: the request.
    :param find: the file's ``(metadata, bytes, file name)``, ``None`` when it does not exist.
    """
    refused = refuse_unsigned(app, req)
    if refused is not None:
        return refused
    found = find()
    if found is None:
        return s3_error(404, "NoSuchKey", "The specified key does not exist.")
    return file_response(*found)


def file_response(record: dict[str, Any], stream: Iterator[bytes], filename: str) -> Response:
    """A streamed file answer.

    :param record: the file's metadata (``content_type``, ``size``).
    :param stream: its bytes.
    :param filename: the ``Content-Disposition`` file name.
    """
    return Response(
        status=200,
        body=stream,
        content_type=record["content_type"],
        length=record["size"],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
