"""
A small programmable HTTP server on 127.0.0.1 that answers like a buggy or hostile Dintero API.

The emulator is well behaved by design; this server is not. A test routes a method and a path
pattern to a :class:`Reply` (or a function of the :class:`Seen` request returning one) and the
server answers exactly that: wrong shapes, lying ``Content-Length``, endless or trickling bodies,
gzip, redirects, cut connections. Token requests are answered with JWT-shaped tokens unless a
test routes them itself. Standard library only.

Usage::

    with HostileServer() as server:
        server.route("GET", r"/settlements$", Reply(json={"items": "oops"}))
        ...  # point a connection at server.url
        assert server.count("GET", r"/settlements$") == 1
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_UNSET: Any = object()


def jwt_like(subject: str, *, seed: str = "") -> str:
    """A token shaped like a JWT (three base64url segments), unique per subject and seed."""

    def seg(payload: dict[str, Any]) -> str:
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signature = base64.urlsafe_b64encode(f"sig-{subject}-{seed}-{time.time_ns()}".encode() * 3)
    header = seg({"alg": "RS256", "typ": "JWT"})
    return f"{header}.{seg({'sub': subject, 'seed': seed})}.{signature.rstrip(b'=').decode()}"


@dataclass
class Seen:
    """One request as it arrived: raw path (still percent-encoded) and query, headers, body."""

    method: str
    raw_path: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The request body parsed as JSON (``None`` when empty)."""
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    """
    What the server answers.

    :param status: HTTP status.
    :param json: a JSON value to send (sets ``Content-Type: application/json``).
    :param body: raw bytes, or an iterable of chunks (sent one by one, ``chunk_delay`` apart).
    :param headers: extra headers (they win over the computed ones).
    :param content_length: ``"auto"`` (the real length when known), ``None`` (none: the body
        ends when the connection closes, or is chunked when ``chunked``), or a number to lie with.
    :param chunked: send the body with ``Transfer-Encoding: chunked``.
    :param chunk_delay: seconds to sleep before each chunk.
    :param cut_after: close the connection after this many body bytes.
    """

    status: int = 200
    json: Any = _UNSET
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_length: int | str | None = "auto"
    chunked: bool = False
    chunk_delay: float = 0.0
    cut_after: int | None = None


Responder = Reply | Callable[[Seen], Reply]


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    responder: Responder
    times: int | None


class HostileServer:
    """
    A threaded HTTP server on 127.0.0.1 that answers what the test routed.

    Routes are tried newest first; a route with ``times`` stops matching after that many uses.
    Unrouted token requests (``POST .../auth/token`` and ``.../auth/exchange_token``) get a
    JWT-shaped token valid for an hour; anything else unrouted gets a 404 JSON error.
    """

    def __init__(self) -> None:
        self._routes: list[_Route] = []
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        self.issued_tokens: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                seen = Seen(
                    method=self.command,
                    raw_path=self.path,
                    path=parts.path,
                    query=parts.query,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                with server._lock:
                    server._seen.append(seen)
                reply = server._reply_for(seen)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    server._write(self, reply)
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> HostileServer:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- programming ----------------------------------------------------------------------

    def route(self, method: str, path_regex: str, responder: Responder, *, times: int | None = None) -> None:
        """
        Answer requests whose method is ``method`` and whose raw path matches ``path_regex``.

        :param method: HTTP method (``"*"`` for any).
        :param path_regex: searched in the raw (percent-encoded) path, without the query.
        :param responder: a :class:`Reply`, or a function of the :class:`Seen` request.
        :param times: stop matching after this many answers (``None``: forever).
        """
        with self._lock:
            self._routes.insert(0, _Route(method.upper(), re.compile(path_regex), responder, times))

    @property
    def requests(self) -> list[Seen]:
        """Every request received so far, in order."""
        with self._lock:
            return list(self._seen)

    def count(self, method: str | None = None, path_regex: str | None = None) -> int:
        """How many requests matched ``method`` and ``path_regex`` (on the raw path)."""
        return sum(
            1
            for s in self.requests
            if (method is None or s.method == method.upper())
            and (path_regex is None or re.search(path_regex, urlsplit(s.raw_path).path))
        )

    # -- answering ------------------------------------------------------------------------

    def _reply_for(self, seen: Seen) -> Reply:
        raw_path = urlsplit(seen.raw_path).path
        with self._lock:
            for route in self._routes:
                if route.method in ("*", seen.method) and route.pattern.search(raw_path):
                    if route.times is not None:
                        if route.times <= 0:
                            continue
                        route.times -= 1
                    responder = route.responder
                    break
            else:
                responder = None
        if responder is None:
            if seen.method == "POST" and re.search(r"/auth/(token|exchange_token)$", raw_path):
                token = jwt_like(raw_path)
                with self._lock:
                    self.issued_tokens.append(token)
                return Reply(json={"access_token": token, "token_type": "Bearer", "expires_in": 3600})
            return Reply(status=404, json={"error": {"message": f"no route for {seen.method} {raw_path}"}})
        return responder(seen) if callable(responder) else responder

    @staticmethod
    def _write(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        headers = dict(reply.headers)
        if reply.json is not _UNSET:
            chunks: Iterable[bytes] = [json.dumps(reply.json).encode()]
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(reply.body, bytes | bytearray):
            chunks = [bytes(reply.body)]
        else:
            chunks = reply.body
        known = list(chunks) if isinstance(chunks, list) else None
        handler.send_response(reply.status)
        if reply.chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        elif reply.content_length == "auto" and known is not None:
            handler.send_header("Content-Length", str(sum(len(c) for c in known)))
        elif isinstance(reply.content_length, int):
            handler.send_header("Content-Length", str(reply.content_length))
        handler.send_header("Connection", "close")
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        sent = 0
        for chunk in known if known is not None else _iterate(chunks):
            if reply.chunk_delay:
                time.sleep(reply.chunk_delay)
            if reply.cut_after is not None and sent + len(chunk) > reply.cut_after:
                handler.wfile.write(chunk[: reply.cut_after - sent])
                handler.wfile.flush()
                return
            if reply.chunked:
                handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            else:
                handler.wfile.write(chunk)
            handler.wfile.flush()
            sent += len(chunk)
        if reply.chunked:
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()


def _iterate(chunks: Iterable[bytes]) -> Iterator[bytes]:
    yield from chunks


def endless(chunk: bytes = b'{"items": [' + b'"x",' * 4096) -> Iterator[bytes]:
    """An endless body (bounded only by the client): for size caps."""
    while True:
        yield chunk


def trickle(data: bytes) -> Iterator[bytes]:
    """One byte at a time (use with ``chunk_delay``): for deadlines and minimum throughput."""
    for i in range(len(data)):
        yield data[i : i + 1]
