"""
A forward proxy on loopback for tests (standard library only): it tunnels ``CONNECT`` to the host
names it is given (each mapped to a loopback address, so a name that resolves nowhere, such as
``api.dintero.test``, is reachable only through it), refuses any other target, and counts every
``CONNECT`` and every plain proxied request (``GET http://...``), which it answers 502.
"""

from __future__ import annotations

import base64
import contextlib
import selectors
import socket
import socketserver
import threading
from dataclasses import dataclass, field


@dataclass
class ProxyLog:
    """
    What reached the proxy.

    :param connects: the ``host:port`` of each tunnel opened.
    :param refused: the ``host:port`` of each ``CONNECT`` refused (unknown name or bad credentials).
    :param plain: the request line of each plain proxied request.
    """

    connects: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    plain: list[str] = field(default_factory=list)


class _Handler(socketserver.StreamRequestHandler):
    rbufsize = 0  # nothing read past the headers: the tunnel gets every byte after them
    server: _Server

    def handle(self) -> None:
        line = self.rfile.readline(65537).decode("latin-1").strip()
        headers: dict[str, str] = {}
        while True:
            raw = self.rfile.readline(65537)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        method, _, rest = line.partition(" ")
        target = rest.rpartition(" ")[0]
        proxy = self.server.owner
        if method.upper() != "CONNECT":
            with proxy.lock:
                proxy.log.plain.append(line)
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        host, _, port = target.rpartition(":")
        if proxy.credentials and headers.get("proxy-authorization") != proxy.credentials:
            with proxy.lock:
                proxy.log.refused.append(target)
            self.wfile.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            return
        address = proxy.routes.get(host.lower())
        if address is None or not port.isdigit():
            with proxy.lock:
                proxy.log.refused.append(target)
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        try:
            upstream = socket.create_connection((address, int(port)), timeout=10)
        except OSError:
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        with proxy.lock:
            proxy.log.connects.append(target)
            proxy.sockets.update({upstream, self.connection})
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        try:
            _pipe(self.connection, upstream)
        finally:
            with proxy.lock:
                proxy.sockets.discard(upstream)
                proxy.sockets.discard(self.connection)
            upstream.close()


def _pipe(a: socket.socket, b: socket.socket) -> None:
    a.settimeout(None)
    b.settimeout(None)
    with selectors.DefaultSelector() as selector:
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        while True:
            for key, _ in selector.select(timeout=60):
                try:
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                except OSError:
                    return
                if not data:
                    return
                try:
                    key.data.sendall(data)
                except OSError:
                    return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: ConnectProxy


class ConnectProxy:
    """
    A ``CONNECT`` proxy on 127.0.0.1 (a free port), as a context manager.

    :param routes: host name -> loopback address the tunnel goes to (e.g. ``{"api.dintero.test":
        "127.0.0.1"}``); any other target is refused.
    :param username: require these proxy credentials (Basic), when given.
    :param password: the password going with ``username``.
    """

    def __init__(self, routes: dict[str, str], username: str | None = None, password: str = "") -> None:
        self.routes = {k.lower(): v for k, v in routes.items()}
        self.credentials = (
            "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode() if username else None
        )
        self.log = ProxyLog()
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        self._server: _Server | None = None

    def __enter__(self) -> ConnectProxy:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.owner = self
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self.lock:
            open_sockets = list(self.sockets)
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"
