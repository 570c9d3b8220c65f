"""
A CONNECT-only forward proxy on 127.0.0.1 (standard library), as a corporate egress proxy: it
opens a tunnel only to the host names it knows (each mapped to a loopback address) and logs every
CONNECT, with the local port of the connection it opened upstream, so that the server's request
log can be checked against it (a request the server saw from any other port did not come through
the proxy).
"""

from __future__ import annotations

import contextlib
import select
import socket
import socketserver
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Tunnel:
    """
    One CONNECT the proxy answered.

    :param target: ``host:port`` asked for.
    :param status: what the proxy answered (200, or 403/405/502 refused).
    :param upstream_port: the local port of the connection to the target (``None`` when refused).
    :param at: epoch seconds.
    """

    target: str
    status: int
    upstream_port: int | None
    at: float


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        client: socket.socket = self.request
        client.settimeout(30)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
            if len(head) > 65536:
                return
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, _, rest = line.partition(" ")
        target = rest.partition(" ")[0]
        if method.upper() != "CONNECT":
            self._answer(client, target, 405, "Method Not Allowed")
            return
        name, _, port = target.rpartition(":")
        address = self.server.hosts.get(name.lower())
        if address is None or not port.isdigit():
            self._answer(client, target, 403, "Forbidden")
            return
        try:
            upstream = socket.create_connection((address, int(port)), timeout=10)
        except OSError:
            self._answer(client, target, 502, "Bad Gateway")
            return
        self.server.log(Tunnel(target, 200, int(upstream.getsockname()[1]), time.time()))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self._pump(client, upstream)

    def _answer(self, client: socket.socket, target: str, status: int, reason: str) -> None:
        self.server.log(Tunnel(target, status, None, time.time()))
        with contextlib.suppress(OSError):
            client.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n".encode())

    @staticmethod
    def _pump(client: socket.socket, upstream: socket.socket) -> None:
        client.settimeout(None)
        upstream.settimeout(None)
        sockets = [client, upstream]
        try:
            while True:
                readable, _, _ = select.select(sockets, [], [], 300)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)
        except OSError:
            return
        finally:
            upstream.close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, hosts: dict[str, str]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hosts = {name.lower(): address for name, address in hosts.items()}
        self.tunnels: list[Tunnel] = []
        self.lock = threading.Lock()

    def log(self, tunnel: Tunnel) -> None:
        with self.lock:
            self.tunnels.append(tunnel)


class ConnectProxy:
    """
    The proxy; a context manager.

    :param hosts: the host names it tunnels to, each mapped to a loopback address
        (``{"api.dintero.test": "127.0.0.1"}``); any other CONNECT is refused with 403.
    """

    def __init__(self, hosts: dict[str, str]) -> None:
        self._server = _Server(hosts)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: what ``HTTPS_PROXY`` is set to."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def tunnels(self) -> list[Tunnel]:
        """Every CONNECT so far."""
        with self._server.lock:
            return list(self._server.tunnels)

    def __enter__(self) -> ConnectProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, name="proxy", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
