"""The HTTP server of the Dintero emulator and its Python API, :class:`DinteroEmulator`."""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import re
import socket
import ssl
import sys
import threading
import time
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import parse_qs, parse_qsl, urlsplit

from airflow_provider_dintero.emulator import signing
from airflow_provider_dintero.emulator.app import EmulatorApp, request_account
from airflow_provider_dintero.emulator.core import Request
from airflow_provider_dintero.emulator.models import (
    ApiError,
    EmulatorSettings,
    Fault,
    QueryPairs,
    RequestRecord,
    Response,
    WebhookDelivery,
    logged_body,
)
from airflow_provider_dintero.emulator.resources import reports, settlements
from airflow_provider_dintero.emulator.seed import EmulatorSeed

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType

_LOOPBACK_NAMES = {"localhost": "127.0.0.1"}


def resolve_loopback_host(host: str) -> str:
    """Return the address to bind for ``host``; raise ``ValueError`` unless it is loopback.

    :param host: ``127.0.0.1``, ``localhost``, ``::1`` or another loopback address.
    """
    host = _LOOPBACK_NAMES.get(host.lower(), host)
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise ValueError(f"the emulator only binds loopback addresses, not {host!r}") from None
    if not addr.is_loopback:
        raise ValueError(f"the emulator only binds loopback addresses, not {host!r}")
    return str(addr)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    app: EmulatorApp
    #: The TLS context when the emulator serves https (the handshake happens in the handler's thread).
    tls: ssl.SSLContext | None = None

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept a connection, wrapped in TLS (not yet shaken hands) when serving https."""
        sock, address = super().get_request()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that went away (timeouts, cut streams, failed handshakes); report anything else."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, ssl.SSLError)):
            return
        super().handle_error(request, client_address)

    def close_open_connections(self) -> None:
        """Shut down idle keep-alive connections so pooled clients cannot reach a stopped server."""
        with self.connections_lock:
            conns = list(self.open_connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server
    server_version = "DinteroEmulator/1.0"
    sys_version = ""

    def setup(self) -> None:
        """Shake hands (under TLS), then register the connection (:meth:`_Server.close_open_connections`)."""
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(30)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()
        with self.server.connections_lock:
            self.server.open_connections.add(self.connection)

    def finish(self) -> None:
        """Unregister the connection."""
        with self.server.connections_lock:
            self.server.open_connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(3)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log (the emulator keeps its own request log)."""

    def version_string(self) -> str:
        """The ``Server`` header value."""
        return self.server_version

    def _dispatch(self) -> None:
        app = self.server.app
        generation = app.generation
        parts = urlsplit(self.path)
        path = parts.path or "/"
        try:
            body = self._read_body()
        except ValueError:
            self.send_error(400, "bad request body framing")
            return
        req = Request(
            method=self.command.upper(),
            path=path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            host=self.headers.get("Host") or app.base_url.split("://", 1)[1],
            scheme="https" if self.server.tls is not None else "http",
        )
        route, params, path_exists = app.match(req.method, path)
        req.params = params
        control = route is not None and route.control
        fault: Fault | None = None
        try:
            if not control:
                fault = app.take_fault(req.method, path)
                if fault is not None and fault.delay:
                    time.sleep(fault.delay)
                if fault is not None and fault.status is not None:
                    raise _fault_error(fault)
                rule = app.rate_limited(req.method, path, generation)
                if rule is not None:
                    raise ApiError(
                        429,
                        "Too many requests",
                        code="TOO_MANY_REQUESTS",
                        headers={"Retry-After": str(rule.retry_after)},
                    )
            if route is None:
                if path_exists:
                    raise ApiError(405, f"method {req.method} not allowed on {path}")
                raise ApiError(404, f"no route for {req.method} {path}")
            response = app.handle(route, req)
        except ApiError as err:
            response = Response.error(err)
        except Exception:  # a bug in a handler must still produce a Dintero error body
            traceback.print_exc()
            response = Response.error(ApiError(500, "internal emulator error"))
        if not control:
            # Logged before the answer goes out: a client that has the response sees it in the log.
            app.record(
                RequestRecord(
                    method=req.method,
                    path=path,
                    status=response.status,
                    account_id=request_account(req),
                    query=QueryPairs(parse_qsl(parts.query, keep_blank_values=True)),
                    host=req.host,
                    body=logged_body(body),
                    client_port=int(self.client_address[1]),
                ),
                generation,
            )
        self._send(req, response, fault.cut_after_bytes if fault is not None else None)

    def _send(self, req: Request, response: Response, cut_after: int | None) -> None:
        chunks: Iterable[bytes]
        if isinstance(response.body, bytes):
            length = len(response.body)
            chunks = [response.body] if response.body else []
        else:
            length = response.length or 0
            chunks = response.body
        if req.method == "HEAD":
            chunks = []
        self.send_response(response.status)
        if response.content_type:
            self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        if cut_after is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        sent = 0
        for chunk in chunks:
            if cut_after is not None and sent + len(chunk) >= cut_after:
                self.wfile.write(chunk[: cut_after - sent])
                sent = cut_after
                break
            self.wfile.write(chunk)
            sent += len(chunk)
        self.wfile.flush()
        if cut_after is not None and sent < length:
            # Abort: the client was promised Content-Length bytes and gets fewer, then EOF.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        elif cut_after is not None:
            self.close_connection = True

    def do_GET(self) -> None:
        """Handle GET."""
        self._dispatch()

    def do_POST(self) -> None:
        """Handle POST."""
        self._dispatch()

    def do_PUT(self) -> None:
        """Handle PUT."""
        self._dispatch()

    def do_DELETE(self) -> None:
        """Handle DELETE."""
        self._dispatch()

    def do_PATCH(self) -> None:
        """Handle PATCH."""
        self._dispatch()

    def do_HEAD(self) -> None:
        """Handle HEAD (routed as GET, body omitted)."""
        self.command = "GET"
        self._dispatch()


def _fault_error(fault: Fault) -> ApiError:
    status = fault.status or 500
    headers = {} if fault.retry_after is None else {"Retry-After": _retry_after_text(fault.retry_after)}
    messages = {
        429: "Too many requests (injected fault)",
        500: "Unexpected error (injected fault)",
        502: "Bad gateway (injected fault)",
        503: "Service unavailable (injected fault)",
    }
    return ApiError(status, messages.get(status, f"Injected fault {status}"), headers=headers)


def _retry_after_text(value: int | float | str) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _on_app(fn: Callable[Concatenate[EmulatorApp, _P], _R]) -> Callable[Concatenate[DinteroEmulator, _P], _R]:
    """A :class:`DinteroEmulator` method calling ``fn`` on its app (same signature and docs, less ``app``).

    :param fn: a resource function taking the app first.
    """

    @functools.wraps(fn)
    def method(self: DinteroEmulator, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return fn(self._app, *args, **kwargs)

    return method


class DinteroEmulator:
    """An in-process, standard-library HTTP emulator of the Dintero partner APIs.

    One server answers both the ``api.dintero.com`` routes (``/v1/accounts/...``) and the
    ``checkout.dintero.com`` routes (``/v1/admin/session/profiles``). Use as a context manager or
    call :meth:`start` and :meth:`stop`.

    :param seed: the deterministic start state (default :class:`EmulatorSeed()`).
    :param host: loopback address to bind; anything else raises ``ValueError``.
    :param port: TCP port, ``0`` for a free one.
    :param settings_defaults: :class:`EmulatorSettings` values that :meth:`reset` restores
        (e.g. ``{"token_lifetime": 60}``).
    :param tls: serve https with this server-side context (e.g. from a private CA); ``None``: http.
    :param name: the host name clients use in :attr:`base_url` (e.g. ``api.dintero.test``, reached
        through a proxy that maps it to the bound loopback address); default the bound address.
    """

    def __init__(
        self,
        seed: EmulatorSeed | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        settings_defaults: dict[str, Any] | None = None,
        *,
        tls: ssl.SSLContext | None = None,
        name: str | None = None,
    ) -> None:
        self.seed = seed or EmulatorSeed()
        self.host = resolve_loopback_host(host)
        self.tls = tls
        self.name = name
        self._requested_port = port
        self._app = EmulatorApp(self.seed, settings_defaults)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> DinteroEmulator:
        """Bind and serve in a daemon thread; returns ``self``."""
        if self._server is not None:
            return self
        cls = _Server6 if ":" in self.host else _Server
        server = cls((self.host, self._requested_port), _Handler)
        server.app = self._app
        server.tls = self.tls
        self._server = server
        self._app.base_url = self.base_url
        self._app.alt_base_url = self.alt_base_url
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="dintero-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_open_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> DinteroEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- addresses and ids ---------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return int(self._server.server_address[1])

    @property
    def scheme(self) -> str:
        """``https`` when serving TLS, else ``http``."""
        return "https" if self.tls is not None else "http"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (both API and checkout routes; https and :attr:`name` if given)."""
        host = self.name or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def alt_base_url(self) -> str:
        """``http://localhost:PORT``: the same server under another host name."""
        return f"{self.scheme}://localhost:{self.port}"

    @property
    def partner_id(self) -> str:
        """The seeded partner account id (``T11200000``)."""
        return self.seed.partner_id

    @property
    def partner_client_id(self) -> str:
        """Login (``client_id``) of the seeded partner API client."""
        return self._app.client_credentials(self.seed.partner_id)[0]

    @property
    def partner_client_secret(self) -> str:
        """Secret of the seeded partner API client."""
        return self._app.client_credentials(self.seed.partner_id)[1]

    @property
    def merchant_ids(self) -> list[str]:
        """The partner's merchants (``T11200001``, ...)."""
        return self.seed.merchant_ids

    @property
    def foreign_merchant_id(self) -> str:
        """A merchant that exists but belongs to another partner."""
        return self.seed.foreign_merchant_id

    def merchant_credentials(self, merchant_id: str) -> tuple[str, str]:
        """``(client_id, secret)`` of the seeded admin client on a merchant.

        Its grant has audience ``<base>/v1/accounts/<merchant>`` with admin scopes.

        :param merchant_id: a merchant id (the foreign merchant works too).
        """
        return self._app.client_credentials(merchant_id)

    # --- state ---------------------------------------------------------------------------------
    @property
    def settings(self) -> EmulatorSettings:
        """Mutable behaviour switches (see :class:`EmulatorSettings`)."""
        return self._app.settings

    def reset(self) -> None:
        """Back to the seed state; clears the request log, faults, tokens, deliveries, settings."""
        self._app.reset()

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the request log."""
        with self._app.lock:
            return list(self._app.requests)

    def count(
        self, method: str | None = None, path_regex: str | None = None, status: int | None = None
    ) -> int:
        """Count logged requests matching all given criteria.

        :param method: HTTP method.
        :param path_regex: regular expression searched in the path.
        :param status: status answered.
        """
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method.upper())
            and (path_regex is None or re.search(path_regex, r.path))
            and (status is None or r.status == status)
        )

    def clear_requests(self) -> None:
        """Empty the request log."""
        with self._app.lock:
            self._app.requests.clear()

    # Added data: the same functions the control API calls (``POST /_emulator/settlements``, ``/reports``).
    add_settlement = _on_app(settlements.add_settlement)
    add_report = _on_app(reports.add_report)

    def inject_fault(
        self,
        *,
        path_regex: str = ".*",
        method: str | None = None,
        status: int | None = None,
        retry_after: int | float | str | None = None,
        delay: float | None = None,
        cut_after_bytes: int | None = None,
        count: int = 1,
    ) -> None:
        """Make the next ``count`` matching requests misbehave.

        :param path_regex: regular expression searched in the request path.
        :param method: only requests with this method.
        :param status: answer this status (429, 5xx, ...) with a Dintero error body.
        :param retry_after: ``Retry-After`` header (seconds or an HTTP-date string).
        :param delay: sleep this many seconds before answering.
        :param cut_after_bytes: send the full ``Content-Length`` header, this many body bytes, then
            close the connection.
        :param count: number of matching requests affected.
        """
        fault = Fault(
            path_regex=path_regex,
            method=method,
            status=status,
            retry_after=retry_after,
            delay=delay,
            cut_after_bytes=cut_after_bytes,
            count=count,
        )
        with self._app.lock:
            self._app.faults.append(fault)

    def expire_tokens(self) -> None:
        """Every token issued so far answers 401 from now on."""
        self._app.expire_tokens()

    def issued_tokens(self) -> list[str]:
        """Every access and exchange token issued since the last reset (e.g. to assert none leaks)."""
        with self._app.lock:
            return list(self._app.tokens)

    def issued_secrets(self) -> list[str]:
        """Every API client secret (seeded, created or rotated) and webhook signing secret held now."""
        with self._app.lock:
            found = [
                str(c["_secret"])
                for clients in self._app.clients.values()
                for c in clients.values()
                if c.get("_secret")
            ]
            for subscriptions in self._app.subscriptions.values():
                for sub in subscriptions.values():
                    secret = (sub.get("config") or {}).get("secret")
                    if isinstance(secret, dict) and secret.get("value"):
                        found.append(str(secret["value"]))
            return found

    def revoke_grants(self, account_id: str) -> int:
        """Delete every client grant on ``account_id`` and expire all tokens, as a revocation would.

        :param account_id: the account whose grants go.
        :returns: how many grants were removed.
        """
        with self._app.lock:
            grants = self._app.grants.get(account_id, {})
            removed = len(grants)
            grants.clear()
        self._app.expire_tokens()
        return removed

    def clear_faults(self) -> None:
        """Disarm every injected fault (a recovered outage)."""
        with self._app.lock:
            self._app.faults.clear()

    def pending_faults(self) -> int:
        """How many injected fault applications are still armed (not yet used up)."""
        with self._app.lock:
            return sum(f.count for f in self._app.faults)

    def expire_signed_urls(self) -> None:
        """Signed report URLs issued so far answer 403 ``AccessDenied`` ``Request has expired``."""
        signing.expire_signed_urls(self._app)

    @property
    def deliveries(self) -> list[WebhookDelivery]:
        """Webhook deliveries attempted so far."""
        with self._app.lock:
            return list(self._app.deliveries)

    def wait_for_deliveries(self, count: int, timeout: float = 5.0) -> list[WebhookDelivery]:
        """Wait until ``count`` webhook deliveries were attempted; returns them.

        :param count: deliveries to wait for.
        :param timeout: seconds.
        """
        return self._app.wait_for_deliveries(count, timeout)

    def settlements(self, account_id: str) -> list[dict[str, Any]]:
        """Public form of every settlement of an account (unordered, no paging).

        :param account_id: merchant id.
        """
        with self._app.lock:
            return [settlements.settlement_view(s) for s in self._app.settlements.get(account_id, [])]

    def attachment_bytes(self, account_id: str, settlement_id: str, attachment_id: str) -> bytes:
        """The full content of an attachment (only for small ones).

        :param account_id: merchant id.
        :param settlement_id: settlement id.
        :param attachment_id: attachment id.
        """
        _, stream = settlements.attachment_stream(self._app, account_id, settlement_id, attachment_id)
        return b"".join(stream)

    def attachment_sha256(self, account_id: str, settlement_id: str, attachment_id: str) -> str:
        """sha256 hex digest of an attachment, computed by streaming.

        :param account_id: merchant id.
        :param settlement_id: settlement id.
        :param attachment_id: attachment id.
        """
        return settlements.attachment_sha256(self._app, account_id, settlement_id, attachment_id)

    def report_bytes(self, account_id: str, report_id: str) -> bytes:
        """The full content of a generated report file.

        :param account_id: merchant id.
        :param report_id: report metadata id.
        """
        report = reports.find_report(self._app, account_id, report_id)
        if report is None:
            raise KeyError(report_id)
        return b"".join(reports.report_stream(account_id, report))

    def state(self) -> dict[str, Any]:
        """Ids and credentials as ``GET /_emulator/state`` returns them."""
        return self._app.state_summary()
