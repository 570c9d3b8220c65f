"""
No SSRF (issue 12 item 7): downloads (signed URLs and redirects) go to https hosts; a URL whose
host is ``localhost`` or a loopback, link-local or private IP literal is refused before any
request, unless the connection's own base URL is loopback (the emulator and these tests).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_provider_dintero.exceptions import DinteroInputError
from airflow_provider_dintero.hooks.dintero import DinteroAsyncHook, DinteroPartnerHook
from airflow_provider_dintero.transport import hold_async_clients
from airflow_provider_dintero.validation import is_internal_host
from tests.reliability.hostile import HostileServer, Reply

from .conftest import STATS

MID = "T11200001"
SIGNATURE = "X-Amz-Signature=ssrf-canary-signature"


@pytest.fixture
def target() -> Iterator[HostileServer]:
    """A second server on another loopback port: a worker-local service a download must not reach."""
    with HostileServer() as server:
        server.route("GET", r".*", Reply(body=b"internal secret"))
        yield server


@pytest.fixture
def https_hook(monkeypatch: pytest.MonkeyPatch) -> DinteroPartnerHook:
    """A hook whose connection's base URL is public https (never contacted by these tests)."""
    conn = {
        "conn_type": "dintero",
        "host": "https://api.dintero.test",
        "login": "client",
        "password": "ssrf-secret-canary",
        "extra": {"account_id": "T11200000", "max_retries": 0},
    }
    monkeypatch.setenv("AIRFLOW_CONN_DINTERO_PUBLIC", json.dumps(conn))
    return DinteroPartnerHook("dintero_public")


def _internal_urls(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/report.csv",
        f"https://127.0.0.1:{port}/report.csv",
        f"https://localhost:{port}/report.csv",
        f"https://[::1]:{port}/report.csv",
        f"https://127.9.9.9:{port}/report.csv",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.7/report.csv",
        "https://192.168.1.1/report.csv",
        "https://172.16.0.1/report.csv",
        "https://[fe80::1]/report.csv",
        "https://[::ffff:127.0.0.1]/report.csv",
        "https://0.0.0.0/report.csv",
        "https://metadata.localhost/report.csv",
    ]


@pytest.mark.parametrize("index", range(13))
def test_signed_url_to_an_internal_host_is_refused_before_any_request(
    https_hook: DinteroPartnerHook, target: HostileServer, index: int
) -> None:
    url = f"{_internal_urls(urlsplit(target.url).port or 0)[index]}?{SIGNATURE}"
    STATS["bad_inputs"] += 1

    with (
        pytest.raises(DinteroInputError) as err,
        https_hook.stream_signed_url(url, account_id=MID, description="report r1"),
    ):
        pass

    assert err.value.field == "signed_url"
    assert "ssrf-canary-signature" not in str(err.value)
    assert target.count() == 0


def test_redirect_to_another_loopback_port_is_refused_from_an_https_connection(
    https_hook: DinteroPartnerHook, target: HostileServer
) -> None:
    with HostileServer() as front:  # stands for a public host answering a redirect
        front.route(
            "GET", r"/file$", Reply(status=302, headers={"Location": f"{target.url}/file?{SIGNATURE}"})
        )

        with pytest.raises(DinteroInputError) as err:
            https_hook.get_conn().get(f"{front.url}/file", timeout=5)

    assert err.value.field == "redirect"
    assert "ssrf-canary-signature" not in str(err.value)
    assert target.count() == 0


def _async_get(hook: DinteroAsyncHook, url: str) -> Any:
    """One GET through the async hook's transport (the trigger's path), as the pipeline sends it."""
    from airflow_provider_dintero import pipeline

    async def go() -> Any:
        request = pipeline.Request(method="GET", url=url, operation="list settlements", account_id=MID)
        send = pipeline.Send(request, {}, time.monotonic() + 10, pipeline.Limits(timeout=5))
        async with hold_async_clients():  # closes the loop's shared client afterwards
            return await hook.aperform(send)

    return asyncio.run(go())


@pytest.mark.parametrize(("conn_id", "followed"), [("dintero_public", False), ("dintero_default", True)])
def test_the_async_path_follows_an_internal_redirect_only_from_a_loopback_connection(
    https_hook: DinteroPartnerHook,
    hostile: HostileServer,
    target: HostileServer,
    conn_id: str,
    followed: bool,
) -> None:
    hostile.route("GET", r"/file$", Reply(status=302, headers={"Location": f"{target.url}/file?{SIGNATURE}"}))
    hook = DinteroAsyncHook(conn_id)

    if followed:
        assert _async_get(hook, f"{hostile.url}/file").status == 200
    else:
        with pytest.raises(DinteroInputError) as err:
            _async_get(hook, f"{hostile.url}/file")
        assert err.value.field == "redirect"
        assert "ssrf-canary-signature" not in str(err.value)
    assert target.count() == int(followed)


def test_a_loopback_connection_may_download_from_loopback(
    hostile: HostileServer, target: HostileServer
) -> None:
    # the emulator case: the connection itself is on 127.0.0.1
    hostile.route("GET", r"/file$", Reply(status=302, headers={"Location": f"{target.url}/blob"}))
    hook = DinteroPartnerHook()

    with hook.stream_signed_url(f"{hostile.url}/file", account_id=MID, description="report r1") as stream:
        assert stream.read() == b"internal secret"
    assert target.count() == 1


@pytest.mark.parametrize(
    ("host", "internal"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("127.0.0.1", True),
        ("[::1]", True),
        ("169.254.169.254", True),
        ("10.1.2.3", True),
        ("100.64.0.1", False),
        ("fd00::1", True),
        ("::ffff:10.0.0.1", True),
        ("api.dintero.com", False),
        ("8.8.8.8", False),
        ("2001:4860:4860::8888", False),
        ("", True),
    ],
)
def test_is_internal_host(host: str, internal: bool) -> None:
    assert is_internal_host(host) is internal
