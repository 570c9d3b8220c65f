"""The hostile server answers what it is told (so the hostile-answer tests test the client)."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import urllib.error
import urllib.request

import pytest

from tests.reliability.hostile import HostileServer, Reply


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, dict(r.headers), r.read()


def test_routed_json_and_raw_path_are_recorded() -> None:
    with HostileServer() as server:
        server.route("GET", r"/a%2Fb$", Reply(json={"ok": 1}))
        status, _, body = _get(server.url + "/x/a%2Fb?q=1")
        assert (status, json.loads(body)) == (200, {"ok": 1})
        assert server.requests[0].raw_path == "/x/a%2Fb?q=1"
        assert server.count("GET", r"/x/a%2Fb$") == 1


def test_unrouted_token_requests_get_jwt_shaped_tokens() -> None:
    with HostileServer() as server:
        url = server.url + "/v1/accounts/T11200000/auth/token"
        req = urllib.request.Request(url, data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            token = json.loads(r.read())["access_token"]
        assert token.count(".") == 2 and server.issued_tokens == [token]


def test_lying_content_length_and_gzip_are_sent_as_told() -> None:
    packed = gzip.compress(b"hello" * 100)
    with HostileServer() as server:
        server.route("GET", r"/gz$", Reply(body=packed, headers={"Content-Encoding": "gzip"}))
        _, headers, body = _get(server.url + "/gz")
        assert headers["Content-Encoding"] == "gzip" and gzip.decompress(body) == b"hello" * 100


def test_cut_connection_delivers_fewer_bytes_than_announced() -> None:
    with HostileServer() as server:
        server.route("GET", r"/cut$", Reply(body=b"x" * 1000, cut_after=10))
        with pytest.raises(http.client.IncompleteRead):
            _get(server.url + "/cut")


def test_route_with_times_stops_matching() -> None:
    with HostileServer() as server:
        server.route("GET", r"/once$", Reply(status=503, json={}), times=1)
        with pytest.raises(urllib.error.HTTPError):
            _get(server.url + "/once")
        with pytest.raises(urllib.error.HTTPError) as second:
            _get(server.url + "/once")
        assert second.value.code == 404


def test_binds_loopback_only() -> None:
    with HostileServer() as server:
        host = server.url.split("//")[1].split(":")[0]
        assert host == "127.0.0.1"
        socket.create_connection((host, int(server.url.rsplit(":", 1)[1])), timeout=2).close()
