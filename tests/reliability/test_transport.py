"""
Transport security: TLS verification on by default and the ``verify`` extra honoured on every
request, plain http refused except to loopback hosts (checked before anything is sent: no test
here ever connects to a non-loopback address), and no ``Authorization`` header on a redirect to
another host or on a signed-URL download.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from requests.adapters import HTTPAdapter

from airflow_provider_dintero.exceptions import DinteroInputError
from airflow_provider_dintero.hooks.dintero import DinteroAsyncHook, DinteroPartnerHook
from airflow_provider_dintero.validation import is_loopback_host
from tests.provisioning.helpers import settle as settled
from tests.reliability.conftest import STATS, reliability_connection


class Sent:
    """What went through requests' transport: (url, headers, verify) per request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sent]:
    """
    Record every request handed to requests' transport; refuse (without connecting) any request
    to a host that is not loopback, so a failing test can never reach the network.
    """
    record = Sent()
    original = HTTPAdapter.send

    def send(self: HTTPAdapter, request: requests.PreparedRequest, **kwargs: Any) -> Any:
        record.requests.append((str(request.url), dict(request.headers), kwargs.get("verify")))
        host = urlsplit(str(request.url)).hostname or ""
        if not is_loopback_host(host):
            raise requests.ConnectionError(f"test transport: refusing to connect to {host}")
        return original(self, request, **kwargs)

    monkeypatch.setattr(HTTPAdapter, "send", send)
    yield record


@pytest.fixture(autouse=True)
def _no_environment_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``extra.verify`` the hooks use the environment's CA bundle: start without one."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)


def _connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, conn: dict[str, Any]) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


def _remote(**overrides: Any) -> dict[str, Any]:
    conn: dict[str, Any] = {
        "conn_type": "dintero",
        "login": "id",
        "password": "transport-test-client-secret-7e21",
        "host": "https://api.dintero.com",
        "extra": {"account_id": "T11200000"},
    }
    conn["extra"].update(overrides.pop("extra", {}))
    conn.update(overrides)
    return conn


@pytest.mark.parametrize("hook_class", [DinteroPartnerHook, DinteroAsyncHook])
def test_tls_verification_is_on_by_default(
    monkeypatch: pytest.MonkeyPatch, sent: Sent, hook_class: type[DinteroPartnerHook]
) -> None:
    hook = hook_class(_connection(monkeypatch, "dintero_tls", _remote()))

    assert hook.verify is True
    assert hook.get_conn().verify is True
    assert sent.requests == []


@pytest.mark.parametrize(
    ("verify", "expected"),
    [
        ("true", True),
        ("false", False),
        ("FALSE", False),
        (True, True),
        (False, False),
        ("/etc/ca.pem", "/etc/ca.pem"),
    ],
)
def test_verify_extra_sets_the_session(
    monkeypatch: pytest.MonkeyPatch, sent: Sent, verify: Any, expected: Any
) -> None:
    hook = DinteroPartnerHook(_connection(monkeypatch, "dintero_tls", _remote(extra={"verify": verify})))

    assert hook.get_conn().verify == expected
    assert sent.requests == []


@pytest.mark.parametrize(
    ("verify", "env_bundle"),
    [
        (None, None),
        (None, "/etc/env-bundle.pem"),
        ("/nonexistent/ca-bundle.pem", None),
        ("/nonexistent/ca-bundle.pem", "/etc/env-bundle.pem"),
        ("false", "/etc/env-bundle.pem"),
    ],
    ids=[
        "default",
        "default-with-env-bundle",
        "ca-bundle",
        "ca-bundle-over-env-bundle",
        "off-over-env-bundle",
    ],
)
def test_every_request_carries_the_verify_setting(
    emu: Any, monkeypatch: pytest.MonkeyPatch, sent: Sent, verify: str | None, env_bundle: str | None
) -> None:
    if env_bundle:  # requests lets this override a session's verify unless it is passed per request
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", env_bundle)
    extra = {} if verify is None else {"verify": verify}
    monkeypatch.setenv("AIRFLOW_CONN_DINTERO_DEFAULT", reliability_connection(emu, **extra))
    hook = DinteroPartnerHook()
    mid = emu.merchant_ids[0]
    report = next(iter(hook.list_report_metadata(mid)))

    with hook.stream_signed_url(report["signed_url"], account_id=mid, description="report") as stream:
        stream.read()

    used = {v for _url, _headers, v in sent.requests}
    if verify is None:  # on: with requests' default bundle or the environment's
        assert used == {env_bundle or True}
    else:
        assert used == {False if verify == "false" else verify}
    assert any("/_emulator/signed/" in url for url, _h, _v in sent.requests)  # the plain session too


LOOPBACK = [
    "http://127.0.0.1:{port}",
    "http://localhost:{port}",
    "http://[::1]:{port}",
    "http://127.0.0.2:{port}",
]
REFUSED = [
    "http://10.0.0.1",
    "http://10.0.0.1:8080",
    "http://example.com",
    "http://api.dintero.com",
    "http://127.0.0.1.example.com",
    "http://localhost.example.com",
    "http://0.0.0.0:8080",
    "http://2130706433",
    "http://192.168.1.10",
    "ftp://127.0.0.1",
]


@pytest.mark.parametrize("host", LOOPBACK)
def test_plain_http_is_allowed_to_loopback_hosts(
    emu: Any, monkeypatch: pytest.MonkeyPatch, sent: Sent, host: str
) -> None:
    conn = json.loads(reliability_connection(emu))
    conn["host"] = host.format(port=emu.port)
    hook = DinteroPartnerHook(_connection(monkeypatch, "dintero_loop", conn))

    assert hook.base_url == conn["host"]


def test_plain_http_to_the_emulator_works_end_to_end(emu: Any, sent: Sent) -> None:
    account = DinteroPartnerHook().get_account(emu.merchant_ids[0])

    assert account["account_id"] == emu.merchant_ids[0]
    assert all(urlsplit(url).hostname == "127.0.0.1" for url, _h, _v in sent.requests)


@pytest.mark.parametrize("host", REFUSED)
def test_plain_http_to_other_hosts_is_refused_before_any_request(
    emu: Any, monkeypatch: pytest.MonkeyPatch, sent: Sent, host: str
) -> None:
    STATS["bad_inputs"] += 1
    conn = json.loads(reliability_connection(emu))
    conn["host"] = host
    hook = DinteroPartnerHook(_connection(monkeypatch, "dintero_remote", conn))

    with pytest.raises(DinteroInputError) as err:
        hook.get_account(emu.merchant_ids[0])

    assert err.value.field == "host"
    assert sent.requests == []
    assert settled(emu).requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/report.pdf?signature=abcdef0123456789",
        "http://example.com/r?signature=abcdef0123456789",
    ],
)
def test_signed_url_over_plain_http_to_another_host_is_refused_without_showing_it(
    emu: Any, sent: Sent, url: str
) -> None:
    STATS["bad_inputs"] += 1
    hook = DinteroPartnerHook()
    with (
        pytest.raises(DinteroInputError) as err,
        hook.stream_signed_url(url, account_id=emu.merchant_ids[0], description="report"),
    ):
        pass

    assert err.value.field == "signed_url"
    assert "abcdef0123456789" not in str(err.value)
    assert sent.requests == []


def test_redirect_to_another_host_carries_no_authorization(emu: Any, sent: Sent) -> None:
    emu.settings.attachment_redirect = True
    mid = emu.merchant_ids[1]
    settlement = emu.settlements(mid)[0]
    attachment = settlement["attachments"][0]

    with DinteroPartnerHook().stream_settlement_attachment(mid, settlement["id"], attachment["id"]) as stream:
        body = stream.read()

    assert stream.sha256 == emu.attachment_sha256(mid, settlement["id"], attachment["id"])
    assert len(body) == stream.content_length
    api = [h for url, h, _v in sent.requests if "/attachments/" in url]
    blob = [h for url, h, _v in sent.requests if "/_emulator/blobs/" in url]
    assert len(api) == 1 and "Authorization" in api[0]  # the API host got the token ...
    assert len(blob) == 1 and "Authorization" not in blob[0]  # ... the other host did not
    assert settled(emu).count("GET", r"^/_emulator/blobs/", status=200) == 1


def test_signed_url_download_carries_no_authorization(emu: Any, sent: Sent) -> None:
    hook = DinteroPartnerHook()
    mid = emu.merchant_ids[0]
    report = next(iter(hook.list_report_metadata(mid)))

    with hook.stream_signed_url(report["signed_url"], account_id=mid, description="report") as stream:
        stream.read()

    signed = [h for url, h, _v in sent.requests if "/_emulator/signed/" in url]
    assert len(signed) == 1
    assert not {"Authorization", "Cookie"} & set(signed[0])
    assert settled(emu).count("GET", r"^/_emulator/signed/", status=200) == 1


def test_redirect_to_plain_http_on_another_host_is_not_followed(emu: Any, sent: Sent) -> None:
    emu.settings.attachment_redirect = True
    emu.settings.redirect_base_url = "http://downloads.example.com"  # off loopback, in clear text
    mid = emu.merchant_ids[1]
    settlement = emu.settlements(mid)[0]
    attachment = settlement["attachments"][0]

    hook = DinteroPartnerHook()
    with (
        pytest.raises(DinteroInputError) as err,
        hook.stream_settlement_attachment(mid, settlement["id"], attachment["id"]),
    ):
        pass

    assert err.value.field == "redirect"
    assert "signature=" not in str(err.value)

    assert [url for url, _h, _v in sent.requests if "example.com" in url] == []
