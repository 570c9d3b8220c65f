"""
The two thin transports that carry out the pipeline's :class:`~airflow_provider_dintero.pipeline.Send`
actions: :class:`RequestsTransport` (the sync hook) and :class:`HttpxTransport` (the async hook,
for triggers), plus :class:`DownloadStream` for attachments and reports.

A transport sends, reads the body within the caps (size, deadline) and reports what happened as a
:class:`~airflow_provider_dintero.pipeline.Reply` or :class:`~airflow_provider_dintero.pipeline.Failure`;
every decision (retry, error, parse) is the pipeline's.

Both transports reach Dintero the same way: through the proxy that requests would pick for the
URL (the connection's ``extra.proxies`` first, then ``HTTPS_PROXY``, ``HTTP_PROXY``,
``ALL_PROXY`` and ``NO_PROXY`` from the environment: :func:`proxy_for`), verifying TLS with the
connection's ``verify`` or else the CA bundle the environment names (:func:`environment_ca_bundle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import http.client
import json
import os
import threading
import time
import weakref
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

from airflow_provider_dintero import __version__
from airflow_provider_dintero.exceptions import DinteroInputError, DinteroStreamError
from airflow_provider_dintero.pipeline import Failure, Reply, Send
from airflow_provider_dintero.redaction import mask_secret, redact_url
from airflow_provider_dintero.validation import check_download_url

if TYPE_CHECKING:
    import httpx

USER_AGENT = f"airflow-provider-dintero/{__version__}"
#: Redirects followed per request (the same on both transports).
MAX_REDIRECTS = 10
_CHUNK = 64 * 1024


def default_headers() -> dict[str, str]:
    """The headers every request carries (no credentials)."""
    try:
        from airflow import __version__ as airflow_version
    except ImportError:  # pragma: no cover
        airflow_version = "unknown"
    return {
        "User-Agent": USER_AGENT,
        "Accept": "application/json",
        "Dintero-System-Name": "apache-airflow",
        "Dintero-System-Version": str(airflow_version),
        "Dintero-System-Plugin-Name": "airflow-provider-dintero",
        "Dintero-System-Plugin-Version": __version__,
    }


# ------------------------------------------------------------------------------------------
# Proxies and CA bundle
# ------------------------------------------------------------------------------------------

#: The keys of ``extra.proxies`` besides ``<scheme>://<host>`` ones (as requests reads them).
PROXY_KEYS = ("http", "https", "all", "no_proxy")
_PROXIES_EXPECTED = (
    'a JSON object mapping a scheme to a proxy URL, e.g. {"https": "http://proxy.example:3128"} '
    "(keys http, https, all, no_proxy or scheme://host)"
)


def environment_ca_bundle() -> str | None:
    """The CA bundle named by ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` or ``SSL_CERT_FILE``, if any."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        if os.environ.get(name):
            return os.environ[name]
    return None


def parse_proxies(raw: Any, field: str = "extra.proxies") -> dict[str, str]:
    """
    Read a ``proxies`` connection field as the http provider does: a JSON object (or its text)
    mapping ``http``, ``https``, ``all`` or ``<scheme>://<host>`` to a proxy URL (``http://`` or
    ``https://``, user info allowed), and optionally ``no_proxy`` to a comma-separated host list.
    Empty means the environment's proxies only. A proxy's password is registered with the
    secrets masker; errors never show user info.

    :param raw: the field's value.
    :param field: the field name for error messages.
    """
    if raw is None or raw == "" or raw == {}:
        return {}
    value = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            shown = redact_url(raw) if "@" in raw else raw  # never a proxy password
            raise DinteroInputError(field, _PROXIES_EXPECTED, shown) from None
    if not isinstance(value, dict):
        raise DinteroInputError(field, _PROXIES_EXPECTED, type(value).__name__)
    proxies: dict[str, str] = {}
    for key, url in value.items():
        key_parts = urlsplit(str(key)) if "://" in str(key) else None
        if not isinstance(key, str) or not (
            key in PROXY_KEYS
            or (key_parts and key_parts.scheme in ("http", "https", "all") and key_parts.hostname)
        ):
            raise DinteroInputError(field, _PROXIES_EXPECTED, key)
        if key == "no_proxy":
            if not isinstance(url, str):
                raise DinteroInputError(f"{field}.no_proxy", "a comma-separated list of hosts", url)
            proxies[key] = url
            continue
        proxies[key] = _proxy_url(url, f"{field}.{key}")
    return proxies


def _proxy_url(url: Any, field: str) -> str:
    expected = "a proxy URL such as http://proxy.example:3128 (http:// or https://, user info allowed)"
    if not isinstance(url, str) or not url.strip():
        raise DinteroInputError(field, expected, None if url is None else type(url).__name__)
    parts = urlsplit(url.strip())
    shown = redact_url(url)
    try:
        _ = parts.port
    except ValueError:
        raise DinteroInputError(field, expected, shown) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise DinteroInputError(field, expected, shown)
    if parts.path not in ("", "/"):
        raise DinteroInputError(field, expected, shown)
    mask_secret(parts.password)
    return url.strip()


def proxy_for(url: str, proxies: Mapping[str, str]) -> str | None:
    """
    The proxy requests would use for ``url`` (``None``: none): the connection's ``proxies``
    first, then the environment's (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, unless
    ``NO_PROXY`` names the host), chosen by requests' own functions.

    The choice depends only on the URL's scheme and host, the connection's proxies and the
    environment's proxy variables; it is remembered for each of those (requests' functions
    read the whole environment, ~0.7 ms a call).

    :param url: the request URL.
    :param proxies: the connection's proxies (:func:`parse_proxies`).
    """
    parts = urlsplit(url)
    environment = tuple(os.environ.get(name) for name in _PROXY_VARIABLES)
    return _proxy_for(f"{parts.scheme}://{parts.netloc}/", tuple(sorted(proxies.items())), environment)


#: The environment variables requests' proxy choice reads for http and https URLs.
_PROXY_VARIABLES = (
    *("http_proxy", "https_proxy", "all_proxy", "no_proxy"),
    *("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD"),
)


@functools.lru_cache(maxsize=1024)
def _proxy_for(
    origin: str, proxies: tuple[tuple[str, str], ...], environment: tuple[str | None, ...]
) -> str | None:
    from requests.utils import get_environ_proxies, select_proxy

    chosen = dict(proxies)
    for key, value in get_environ_proxies(origin, no_proxy=chosen.get("no_proxy")).items():
        chosen.setdefault(key, value)
    return select_proxy(origin, chosen)


def check_redirect(location: str, *, internal_ok: bool = True) -> None:
    """
    Refuse a redirect to plain http on a non-loopback host (or to a URL with user info), and,
    unless ``internal_ok``, to ``localhost`` or an internal IP literal (no SSRF).

    :param location: the absolute redirect target.
    :param internal_ok: whether loopback and private hosts are allowed (the connection's base
        URL is loopback itself).
    """
    try:
        check_download_url(location, "redirect", internal_ok=internal_ok)
    except DinteroInputError as exc:
        raise DinteroInputError("redirect", f"a redirect to {exc.expected}", redact_url(location)) from None


# ------------------------------------------------------------------------------------------
# requests (sync)
# ------------------------------------------------------------------------------------------


def _refuse_insecure_redirect(
    response: requests.Response, *args: Any, internal_ok: bool = True, **kwargs: Any
) -> requests.Response:
    if response.is_redirect:
        from urllib.parse import urljoin

        try:
            check_redirect(
                urljoin(response.url, response.headers.get("location", "")), internal_ok=internal_ok
            )
        except DinteroInputError:
            response.close()
            raise
    return response


def new_session(verify: bool | str, *, internal_ok: bool = True) -> requests.Session:
    """
    A pooled :class:`requests.Session` with the provider's headers, TLS setting and redirect rules.

    :param verify: TLS verification (a CA bundle path, or a bool).
    :param internal_ok: whether redirects may go to loopback and private hosts (only when the
        connection's own base URL is loopback).
    """
    session = requests.Session()
    session.headers.update(default_headers())
    session.verify = verify
    session.max_redirects = MAX_REDIRECTS
    session.hooks["response"].append(functools.partial(_refuse_insecure_redirect, internal_ok=internal_ok))
    return session


class RequestsTransport:
    """
    Send pipeline requests with :mod:`requests`, reading bodies within the size cap and deadline.

    :param session: the pooled session.
    :param verify: TLS verification, passed on every request (``REQUESTS_CA_BUNDLE`` would
        otherwise override the session's).
    :param proxies: the connection's proxies, passed on every request (requests would otherwise
        let the environment's override a session's); the environment's apply to the rest.
    """

    def __init__(
        self, session: requests.Session, verify: bool | str, proxies: Mapping[str, str] | None = None
    ) -> None:
        self.session = session
        self.verify = verify
        self.proxies = dict(proxies or {})

    def send(self, action: Send) -> Reply | Failure:
        """
        Send one request and read its answer within the size cap and the deadline.

        :param action: what to send, and the limits.
        """
        request, limits, remaining = action.request, action.limits, action.deadline_at - time.monotonic()
        if remaining <= 0:
            return Failure("deadline")
        try:
            response = self.session.request(
                request.method,
                request.url,
                params=list(request.params) if request.params else None,
                json=request.json,
                headers=action.headers,
                stream=True,
                timeout=min(limits.timeout, remaining),
                verify=self.verify,
                proxies=self.proxies or None,
            )
        except requests.TooManyRedirects:
            return Failure("redirects", "TooManyRedirects")
        except requests.Timeout as exc:
            return Failure("timeout", type(exc).__name__)
        except requests.RequestException as exc:  # ConnectionError, ChunkedEncodingError, ...
            return Failure("connect", type(exc).__name__)
        if request.stream and response.status_code < 400:
            return Reply(response.status_code, response.headers, None, raw=response)
        try:
            body = _read_capped(response, limits.max_body, action.deadline_at)
        except _Capped as capped:
            return Failure(capped.kind, capped.kind)
        except Exception as exc:  # urllib3 ProtocolError/IncompleteRead/DecodeError, OSError
            timed_out = "Timeout" in type(exc).__name__
            return Failure("timeout" if timed_out else "truncated", type(exc).__name__)
        finally:
            response.close()
        return Reply(response.status_code, response.headers, body)


class _Capped(Exception):
    def __init__(self, kind: str) -> None:
        self.kind: Any = kind


def _read_capped(response: requests.Response, max_body: int, deadline_at: float) -> bytes:
    already = getattr(response, "_content", False)  # a session response hook may have read it
    if isinstance(already, bytes):
        if len(already) > max_body:
            raise _Capped("too_large")
        return already
    raw = response.raw
    body = bytearray()
    read1 = getattr(raw, "read1", None)
    while True:
        chunk = read1(_CHUNK, decode_content=True) if read1 else raw.read(_CHUNK, decode_content=True)
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > max_body:
            raise _Capped("too_large")
        if time.monotonic() > deadline_at:
            raise _Capped("deadline")


# ------------------------------------------------------------------------------------------
# httpx (async, for triggers)
# ------------------------------------------------------------------------------------------

_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary()
)
_CLIENTS_LOCK = threading.Lock()

#: The most requests one event loop has in flight at once, every trigger of the process together.
#: The others wait their turn on a semaphore, which costs next to nothing, instead of queueing in
#: httpcore's connection pool, whose request assignment walks the whole queue on every change:
#: 1,000 triggers polling at once spent most of their CPU there.
MAX_IN_FLIGHT = 16
_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def in_flight_slots() -> asyncio.Semaphore:
    """The running loop's semaphore of :data:`MAX_IN_FLIGHT` request slots."""
    loop = asyncio.get_running_loop()
    with _CLIENTS_LOCK:
        slots = _SLOTS.get(loop)
        if slots is None:
            slots = _SLOTS[loop] = asyncio.Semaphore(MAX_IN_FLIGHT)
    return slots


#: Request extension carrying the hook's ``internal_ok`` to the shared client's redirect check
#: (httpx copies a request's extensions to the requests its redirects build).
INTERNAL_OK = "dintero_internal_ok"


async def _refuse_insecure_redirect_async(response: httpx.Response) -> None:
    if response.is_redirect:
        check_redirect(
            str(response.url.join(response.headers.get("location", ""))),
            internal_ok=bool(response.request.extensions.get(INTERNAL_OK, False)),
        )


@functools.cache
def ssl_context(verify: bool | str) -> Any:
    """
    The TLS setting for httpx, built once per process (building an SSL context costs ~50 ms).

    :param verify: ``False``, ``True`` (certifi's bundle), a CA bundle path or a CA directory.
    """
    if verify is False:
        return False
    import ssl

    import certifi

    if isinstance(verify, str) and os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    return ssl.create_default_context(cafile=verify if isinstance(verify, str) else certifi.where())


@functools.cache
def _router_class() -> Callable[[Any, Mapping[str, str]], httpx.AsyncBaseTransport]:
    import httpx

    class ProxyRouter(httpx.AsyncBaseTransport):
        """
        Sends each request (each redirect too) through :func:`proxy_for`'s choice for its URL:
        one pooled transport per proxy (or none), sharing the client's SSL context.
        """

        def __init__(self, ssl: Any, proxies: Mapping[str, str]) -> None:
            self._ssl = ssl
            self._proxies = dict(proxies)
            self._routes: dict[str | None, httpx.AsyncHTTPTransport] = {}

        def _route(self, url: str) -> httpx.AsyncHTTPTransport:
            proxy = proxy_for(url, self._proxies)
            route = self._routes.get(proxy)
            if route is None:
                route = self._routes[proxy] = httpx.AsyncHTTPTransport(
                    verify=self._ssl,
                    proxy=proxy,
                    trust_env=False,
                    limits=httpx.Limits(
                        max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT
                    ),
                )
            return route

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return await self._route(str(request.url)).handle_async_request(request)

        async def aclose(self) -> None:
            routes, self._routes = list(self._routes.values()), {}
            for route in routes:
                await route.aclose()

    return ProxyRouter


def shared_async_client(verify: bool | str, proxies: Mapping[str, str] | None = None) -> httpx.AsyncClient:
    """
    The ``httpx.AsyncClient`` of the running event loop for this TLS and proxy setting: one per
    process, loop, ``verify`` value and ``proxies``, so the SSL context and the connection pools
    are built once. Each request goes through the proxy :func:`proxy_for` picks for its URL
    (the environment is read per request, as requests does).

    :param verify: TLS verification (a CA bundle path, or a bool).
    :param proxies: the connection's proxies (:func:`parse_proxies`).
    """
    import httpx

    loop = asyncio.get_running_loop()
    key = (verify, tuple(sorted((proxies or {}).items())))
    with _CLIENTS_LOCK:
        clients = _CLIENTS.setdefault(loop, {})
        client = clients.get(key)
        if client is None or client.is_closed:
            ssl = ssl_context(verify)
            client = httpx.AsyncClient(
                verify=ssl,
                transport=_router_class()(ssl, proxies or {}),
                headers=default_headers(),
                follow_redirects=True,
                max_redirects=MAX_REDIRECTS,
                event_hooks={"response": [_refuse_insecure_redirect_async]},
                trust_env=False,
            )
            clients[key] = client
    return client


_HOLDERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def hold_async_clients() -> AsyncIterator[None]:
    """
    Keep the running loop's shared clients open while the block runs (a trigger's lifetime);
    when the last holder leaves (every trigger done, or the triggerer stopping and cancelling
    them), the clients are closed.
    """
    loop = asyncio.get_running_loop()
    with _CLIENTS_LOCK:
        _HOLDERS[loop] = _HOLDERS.get(loop, 0) + 1
    try:
        yield
    finally:
        with _CLIENTS_LOCK:
            _HOLDERS[loop] -= 1
            last = _HOLDERS[loop] == 0
            clients = list(_CLIENTS.pop(loop, {}).values()) if last else []
        for client in clients:
            await client.aclose()


class HttpxTransport:
    """
    Send pipeline requests with :mod:`httpx` on the running loop, within the same caps.

    :param client: the loop's shared client.
    :param internal_ok: whether redirects may go to loopback and private hosts (only when the
        connection's base URL is on loopback), as :func:`new_session`'s.
    """

    def __init__(self, client: httpx.AsyncClient, *, internal_ok: bool = False) -> None:
        self.client = client
        self.internal_ok = internal_ok

    async def send(self, action: Send) -> Reply | Failure:
        """
        Send one request and read its answer (the whole attempt bounded by the deadline).

        :param action: what to send, and the limits.
        """
        import httpx

        request, limits = action.request, action.limits
        remaining = action.deadline_at - time.monotonic()
        if remaining <= 0:
            return Failure("deadline")
        try:
            async with (
                asyncio.timeout(remaining),
                in_flight_slots(),
                self.client.stream(
                    request.method,
                    request.url,
                    params=list(request.params) if request.params else None,
                    json=request.json,
                    headers=action.headers,
                    timeout=min(limits.timeout, remaining),
                    extensions={INTERNAL_OK: self.internal_ok},
                ) as response,
            ):
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > limits.max_body:
                        return Failure("too_large", "too_large")
                return Reply(response.status_code, response.headers, bytes(body))
        except TimeoutError:
            return Failure("deadline", "deadline")
        except httpx.TooManyRedirects:
            return Failure("redirects", "TooManyRedirects")
        except httpx.TimeoutException as exc:
            return Failure("timeout", type(exc).__name__)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.DecodingError) as exc:
            return Failure("truncated", type(exc).__name__)
        except httpx.TransportError as exc:
            return Failure("connect", type(exc).__name__)


# ------------------------------------------------------------------------------------------
# Downloads
# ------------------------------------------------------------------------------------------


#: Content encodings :class:`DownloadStream` decodes itself (checking the compressed stream ends).
_ZLIB_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class DownloadStream:
    """
    A file-like, read-only view of a streamed HTTP response body, decoded: ``read()`` returns
    the bytes the user would download, and ``bytes_read`` and ``sha256`` describe those.

    ``read()`` raises :class:`DinteroStreamError` when the connection ends before
    ``Content-Length`` bytes arrived (a truncated file is never mistaken for a whole one), and
    when the download runs slower than ``min_rate`` bytes per second once ``grace`` seconds
    have passed: downloads have no total deadline, so a large honest file is never cut, while a
    server trickling bytes fails within a small multiple of the timeout.

    A body sent with ``Content-Encoding: gzip`` or ``deflate`` is decoded here: the
    ``Content-Length`` check is made on the compressed bytes received, the compressed stream
    must end properly, and :attr:`content_length` (the decoded size announced) is ``None``:
    the size of the file is then known only from the bytes read.

    :param response: a ``requests`` response opened with ``stream=True``.
    :param description: what is being downloaded, for error messages (no credentials).
    :param account_id: the account, for error messages.
    :param min_rate: the slowest acceptable average, in bytes per second.
    :param grace: seconds before the rate is enforced (the connection's timeout).
    """

    def __init__(
        self,
        response: requests.Response,
        description: str,
        account_id: str | None,
        *,
        min_rate: float = 0.0,
        grace: float = 30.0,
    ) -> None:
        self._response = response
        self._raw = response.raw
        self.description = description
        self.account_id = account_id
        length = response.headers.get("Content-Length")
        self._wire_length: int | None = int(length) if length and length.isdigit() else None
        self._wire_read = 0
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        self.content_encoding = "" if encoding == "identity" else encoding
        self._wbits = _ZLIB_ENCODINGS.get(self.content_encoding)
        self._decoder: Any = zlib.decompressobj(self._wbits) if self._wbits is not None else None
        if self.content_encoding and self._decoder is None:
            self._wire_length = None  # urllib3 decodes (br, zstd): its own length check applies
        self._decoded_any = False
        #: The decoded size announced by the server; ``None`` when unknown or the body is encoded.
        self.content_length: int | None = None if self.content_encoding else self._wire_length
        self.content_type: str = response.headers.get("Content-Type", "application/octet-stream")
        self.bytes_read = 0
        self._sha256 = hashlib.sha256()
        self._min_rate = min_rate
        self._grace = grace
        self._started = time.monotonic()

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the (decoded) bytes read so far."""
        return self._sha256.hexdigest()

    def readable(self) -> bool:
        """Tell io-aware callers (boto3) that this object can be read."""
        return True

    def read(self, size: int = -1) -> bytes:
        """
        Read up to ``size`` bytes (all remaining when negative); fewer only at the end.

        :param size: the maximum number of bytes to return.
        """
        out = bytearray()
        while size is None or size < 0 or len(out) < size:
            want = _CHUNK if size is None or size < 0 else min(_CHUNK, size - len(out))
            chunk = self._read_some(want)
            if not chunk:
                break
            out += chunk
        if not out and self._wire_length is not None and self._wire_read < self._wire_length:
            raise self._broken(f"ended after {self._wire_read} of {self._wire_length} bytes")
        return bytes(out)

    def _pull(self, size: int) -> bytes:
        """Up to ``size`` bytes off the wire (decoded by urllib3 only for encodings not ours)."""
        delegate = bool(self.content_encoding) and self._decoder is None
        if delegate and self.content_encoding not in getattr(self._raw, "CONTENT_DECODERS", ()):
            raise self._broken(
                f"came with Content-Encoding {self.content_encoding!r}, which cannot be decoded"
            )
        read1 = getattr(self._raw, "read1", None)
        try:
            chunk = (
                read1(size, decode_content=delegate)
                if read1
                else self._raw.read(size, decode_content=delegate)
            )
        except (Exception, http.client.HTTPException) as exc:  # urllib3 ProtocolError / ReadTimeout
            raise self._broken(f"broke off after {self.bytes_read} bytes: {type(exc).__name__}") from None
        chunk = bytes(chunk or b"")
        self._wire_read += len(chunk)
        return chunk

    def _decode(self, data: bytes, size: int) -> bytes:
        try:
            out = self._decoder.decompress(data, size)
        except zlib.error:
            if self.content_encoding == "deflate" and not self._decoded_any and self._wbits == zlib.MAX_WBITS:
                # "deflate" sent without its zlib header (a common server bug): raw deflate
                self._wbits = -zlib.MAX_WBITS
                self._decoder = zlib.decompressobj(self._wbits)
                return self._decode(data, size)
            raise self._broken(f"is not valid {self.content_encoding} data") from None
        self._decoded_any = True
        return bytes(out)

    def _next_decoded(self, size: int) -> bytes:
        while True:
            if self._decoder.unconsumed_tail:
                chunk = self._decode(self._decoder.unconsumed_tail, size)
            elif self._decoder.eof:
                return b""  # anything after the end of the compressed stream is ignored
            else:
                wire = self._pull(_CHUNK)
                if not wire:
                    raise self._broken(
                        f"ended inside its {self.content_encoding} data after {self.bytes_read} bytes"
                    )
                chunk = self._decode(wire, size)
            if chunk or self._decoder.eof:
                return chunk

    def _read_some(self, size: int) -> bytes:
        chunk = self._next_decoded(size) if self._decoder is not None else self._pull(size)
        if chunk:
            self.bytes_read += len(chunk)
            self._sha256.update(chunk)
        elapsed = time.monotonic() - self._started
        if self._min_rate and elapsed > self._grace and self._wire_read < self._min_rate * elapsed and chunk:
            raise self._broken(
                f"was slower than {self._min_rate:g} bytes/s ({self._wire_read} bytes in {elapsed:.0f} s; "
                "extra.min_download_rate)"
            )
        return chunk

    def _broken(self, what: str) -> DinteroStreamError:
        return DinteroStreamError(
            f"Download of {self.description} for account {self.account_id} {what}",
            account_id=self.account_id,
        )

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(1024 * 1024):
            yield chunk

    def close(self) -> None:
        """Release the connection."""
        self._response.close()
