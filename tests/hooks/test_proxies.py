"""
Egress through a proxy (issue 21 item 2, issue 24 item 2): the emulator serves TLS from a private
CA under ``api.dintero.test``, a name that resolves nowhere, so only a ``CONNECT`` proxy on
loopback reaches it. Both hooks (tokens, lists, downloads and signed URLs on the sync one; a
trigger's poll and the merchant listing on the async one) must go through the proxy the
environment (``HTTPS_PROXY``) or the connection (``extra.proxies``) names, honour ``NO_PROXY``,
verify TLS with the connection's ``verify`` or the environment's CA bundle, and never log a proxy
password.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_dintero import transport
from airflow_provider_dintero.emulator.server import DinteroEmulator
from airflow_provider_dintero.exceptions import DinteroApiError, DinteroInputError
from airflow_provider_dintero.hooks.dintero import DinteroAsyncHook, DinteroPartnerHook
from airflow_provider_dintero.triggers.settlements import SettlementTrigger

from .connect_proxy import ConnectProxy

trustme = pytest.importorskip("trustme")

NAME = "api.dintero.test"
CONN_ID = "dintero_proxied"
PROXY_USER, PROXY_PASSWORD = "egress", "pr0xy-Pa55word-7f3k"
ENVIRONMENT = (
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
)


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """A private CA (trustme) and its certificate as a PEM file."""
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    yield ca, path


@pytest.fixture(scope="module")
def tls_emulator_server(ca_file: tuple[Any, Path]) -> Iterator[DinteroEmulator]:
    """The emulator on 127.0.0.1 serving https as ``api.dintero.test`` (a certificate from the CA)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca_file[0].issue_cert(NAME).configure_cert(context)
    with DinteroEmulator(tls=context, name=NAME) as emu:
        yield emu


@pytest.fixture
def emu(tls_emulator_server: DinteroEmulator, monkeypatch: pytest.MonkeyPatch) -> DinteroEmulator:
    """The TLS emulator, reset; no proxy or CA variable left from the machine's environment."""
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    tls_emulator_server.reset()
    return tls_emulator_server


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    """A CONNECT proxy on loopback that maps ``api.dintero.test`` to 127.0.0.1."""
    with ConnectProxy({NAME: "127.0.0.1"}) as running:
        yield running


@pytest.fixture
def guarded_proxy() -> Iterator[ConnectProxy]:
    """The same proxy, requiring credentials."""
    with ConnectProxy({NAME: "127.0.0.1"}, PROXY_USER, PROXY_PASSWORD) as running:
        yield running


def _connect(monkeypatch: pytest.MonkeyPatch, emu: DinteroEmulator, **extra: Any) -> str:
    conn = {
        "conn_type": "dintero",
        "login": emu.partner_client_id,
        "password": emu.partner_client_secret,
        "host": emu.base_url,
        "extra": {"account_id": emu.partner_id, "checkout_base_url": emu.base_url, **extra},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return CONN_ID


def _with_credentials(url: str) -> str:
    return url.replace("http://", f"http://{PROXY_USER}:{PROXY_PASSWORD}@")


@pytest.fixture(params=["environment", "extra"])
def route(
    request: pytest.FixtureRequest,
    emu: DinteroEmulator,
    proxy: ConnectProxy,
    guarded_proxy: ConnectProxy,
    ca_file: tuple[Any, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> ConnectProxy:
    """
    How the hooks are told about the proxy, and the proxy that must carry every request:

    - ``environment``: ``HTTPS_PROXY``; the CA in the connection's ``verify``;
    - ``extra``: ``extra.proxies`` with credentials (the proxy requires them), winning over an
      ``HTTPS_PROXY`` that refuses everything; the CA from ``SSL_CERT_FILE``.
    """
    if request.param == "environment":
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        _connect(monkeypatch, emu, verify=str(ca_file[1]))
        return proxy
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)  # would work, but the connection's proxy wins
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file[1]))
    _connect(monkeypatch, emu, proxies={"https": _with_credentials(guarded_proxy.url)})
    return guarded_proxy


def _sync_calls(emu: DinteroEmulator) -> dict[str, Any]:
    """Tokens, lists, an attachment download and a signed-URL download with the sync hook."""
    hook = DinteroPartnerHook(CONN_ID)
    mid = next(iter(hook.list_merchants()))["account_id"]
    emu.add_settlement(mid, provider="vipps")
    settlement = next(iter(hook.list_settlements(mid)))
    attachment = settlement["attachments"][0]["id"]
    with hook.stream_settlement_attachment(mid, settlement["id"], attachment) as stream:
        attachment_bytes = stream.read()
    report = next(iter(hook.list_report_metadata(mid)))
    with hook.stream_signed_url(report["signed_url"], account_id=mid, description="report") as stream:
        report_bytes = stream.read()
    return {
        "attachment": attachment_bytes == emu.attachment_bytes(mid, settlement["id"], attachment),
        "report": report_bytes == emu.report_bytes(mid, report["id"]),
    }


async def _first_event(trigger: SettlementTrigger) -> Any:
    async for event in trigger.run():
        return event.payload
    return None


def _trigger_event(emu: DinteroEmulator) -> Any:
    """A SettlementTrigger's first event (its poll: tokens by the exchange flow, a listing)."""
    mid = emu.merchant_ids[0]
    emu.add_settlement(mid, provider="vipps")
    trigger = SettlementTrigger(account_id=mid, since="2020-01-01T00:00:00Z", dintero_conn_id=CONN_ID)
    return asyncio.run(_first_event(trigger))


def _async_calls(emu: DinteroEmulator) -> dict[str, Any]:
    """A SettlementTrigger's poll and the async hook's merchant listing."""

    async def merchants() -> list[Any]:
        async with transport.hold_async_clients():
            return await DinteroAsyncHook(CONN_ID).async_list_merchants()

    return {"event": _trigger_event(emu), "merchants": asyncio.run(merchants())}


def _reached(emu: DinteroEmulator) -> dict[str, int]:
    """What reached the emulator, by kind (each request logged with the Host it was sent to)."""
    kinds = {
        "token": r"/auth/token$",
        "exchange": r"/auth/exchange_token$",
        "merchants": r"/management/accounts$",
        "settlements": r"/settlements$",
        "attachment": r"/attachments/",
        "reports": r"/reports/metadata$",
        "signed": r"/_emulator/signed/",
    }
    return {kind: emu.count(path_regex=regex) for kind, regex in kinds.items()}


def test_the_sync_hook_reaches_the_emulator_only_through_the_proxy(
    emu: DinteroEmulator, route: ConnectProxy, proxy: ConnectProxy, guarded_proxy: ConnectProxy
) -> None:
    downloads = _sync_calls(emu)

    assert downloads == {"attachment": True, "report": True}
    reached = _reached(emu)
    assert reached["token"] == 2 and reached["exchange"] == 1  # partner token, then the merchant's
    assert all(reached[k] >= 1 for k in ("merchants", "settlements", "attachment", "reports", "signed"))
    assert {r.host for r in emu.requests} == {f"{NAME}:{emu.port}"}
    assert route.log.connects and set(route.log.connects) == {f"{NAME}:{emu.port}"}
    other = guarded_proxy if route is proxy else proxy
    assert other.log.connects == [] and other.log.refused == []
    assert route.log.plain == [] and route.log.refused == []


def test_a_trigger_polls_the_emulator_only_through_the_proxy(
    emu: DinteroEmulator, route: ConnectProxy, proxy: ConnectProxy, guarded_proxy: ConnectProxy
) -> None:
    seen = _async_calls(emu)

    assert seen["event"]["status"] == "success", seen["event"]
    assert [m["account_id"] for m in seen["merchants"]] == emu.merchant_ids
    reached = _reached(emu)
    assert reached["token"] == 2 and reached["exchange"] == 1
    assert reached["settlements"] >= 1 and reached["merchants"] >= 1
    assert {r.host for r in emu.requests} == {f"{NAME}:{emu.port}"}
    assert route.log.connects and set(route.log.connects) == {f"{NAME}:{emu.port}"}
    other = guarded_proxy if route is proxy else proxy
    assert other.log.connects == [] and other.log.refused == []


@pytest.mark.parametrize("side", ["sync", "async"])
def test_without_a_proxy_the_emulator_cannot_be_reached(
    emu: DinteroEmulator, ca_file: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch, side: str
) -> None:
    _connect(monkeypatch, emu, verify=str(ca_file[1]), max_retries=0)

    if side == "sync":
        with pytest.raises(DinteroApiError, match="could not connect"):
            DinteroPartnerHook(CONN_ID).get_token()
    else:
        assert _trigger_event(emu)["status"] == "error"
    assert emu.requests == []


@pytest.mark.parametrize("side", ["sync", "async"])
def test_no_proxy_sends_the_host_around_the_proxy(
    emu: DinteroEmulator,
    proxy: ConnectProxy,
    ca_file: tuple[Any, Path],
    monkeypatch: pytest.MonkeyPatch,
    side: str,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", f"localhost,{NAME}")
    _connect(monkeypatch, emu, verify=str(ca_file[1]), max_retries=0)

    if side == "sync":
        with pytest.raises(DinteroApiError, match="could not connect"):
            DinteroPartnerHook(CONN_ID).get_token()
    else:
        assert _trigger_event(emu)["status"] == "error"
    assert proxy.log.connects == [] and emu.requests == []


@pytest.mark.parametrize("side", ["sync", "async"])
def test_the_private_ca_is_required(
    emu: DinteroEmulator, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch, side: str
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    _connect(monkeypatch, emu, max_retries=0)  # certifi's bundle does not know the private CA

    if side == "sync":
        with pytest.raises(DinteroApiError, match="could not connect"):
            DinteroPartnerHook(CONN_ID).get_token()
    else:
        assert _trigger_event(emu)["status"] == "error"
    assert proxy.log.connects and emu.requests == []


def test_the_proxy_password_is_never_logged(
    emu: DinteroEmulator,
    route: ConnectProxy,
    guarded_proxy: ConnectProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    _sync_calls(emu)
    _async_calls(emu)
    logging.getLogger("airflow_provider_dintero.hooks.dintero").warning(
        "Proxy %s", _with_credentials(guarded_proxy.url)
    )

    assert PROXY_PASSWORD not in caplog.text
    if route is guarded_proxy:
        assert any(guarded_proxy.log.connects)


@pytest.mark.parametrize(
    ("proxies", "field"),
    [
        ("not json", "extra.proxies"),
        ('["http://127.0.0.1:3128"]', "extra.proxies"),
        ({"ftp": "http://127.0.0.1:3128"}, "extra.proxies"),
        ({"https": 3128}, "extra.proxies.https"),
        ({"https": "ftp://127.0.0.1:21"}, "extra.proxies.https"),
        ({"https": "127.0.0.1:3128"}, "extra.proxies.https"),
        ({"https": "http://127.0.0.1:3128/path"}, "extra.proxies.https"),
        ({"https": f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:99999"}, "extra.proxies.https"),
        ({"no_proxy": ["localhost"]}, "extra.proxies.no_proxy"),
    ],
    ids=[
        "not-json",
        "not-an-object",
        "unknown-key",
        "not-a-string",
        "not-http",
        "no-scheme",
        "a-path",
        "bad-port-with-credentials",
        "no-proxy-not-a-string",
    ],
)
def test_a_bad_proxies_extra_is_refused_naming_the_field(
    emu: DinteroEmulator, monkeypatch: pytest.MonkeyPatch, proxies: Any, field: str
) -> None:
    _connect(monkeypatch, emu, proxies=proxies)

    with pytest.raises(DinteroInputError) as raised:
        DinteroPartnerHook(CONN_ID).validate_connection()

    assert raised.value.field == field
    assert PROXY_PASSWORD not in str(raised.value)
    assert emu.requests == []


@pytest.mark.parametrize(
    "proxies",
    [
        {"https": "http://127.0.0.1:3128"},
        json.dumps({"https": "http://127.0.0.1:3128", "no_proxy": "localhost"}),
        {"all": "https://127.0.0.1:3128", f"https://{NAME}": "http://127.0.0.1:3129"},
    ],
    ids=["object", "json-text", "all-and-per-host"],
)
def test_a_good_proxies_extra_is_read(
    emu: DinteroEmulator, monkeypatch: pytest.MonkeyPatch, proxies: Any
) -> None:
    _connect(monkeypatch, emu, proxies=proxies)

    expected = json.loads(proxies) if isinstance(proxies, str) else proxies
    assert DinteroPartnerHook(CONN_ID).proxies == expected


def test_one_async_client_per_tls_and_proxy_setting() -> None:
    transport.ssl_context.cache_clear()

    async def clients() -> list[Any]:
        async with transport.hold_async_clients():
            return [
                transport.shared_async_client(True, {}),
                transport.shared_async_client(True, {}),
                transport.shared_async_client(True, {"https": "http://127.0.0.1:3128"}),
                transport.shared_async_client(True, {"https": "http://127.0.0.1:3128"}),
            ]

    built = asyncio.run(clients())

    assert built[0] is built[1] and built[2] is built[3] and built[0] is not built[2]
    assert transport.ssl_context.cache_info().misses == 1  # one SSL context for both


A, B, C = "http://127.0.0.1:3128", "http://127.0.0.1:3129", "http://127.0.0.1:3130"


@pytest.mark.parametrize(
    ("environment", "proxies", "url", "expected"),
    [
        ({"HTTPS_PROXY": A}, {}, "https://api.dintero.com/v1", A),
        ({"HTTPS_PROXY": A}, {}, "http://127.0.0.1:8080/v1", None),
        ({"HTTP_PROXY": A}, {}, "http://127.0.0.1:8080/v1", A),
        ({"ALL_PROXY": A}, {}, "https://api.dintero.com/v1", A),
        ({"https_proxy": A, "HTTPS_PROXY": B}, {}, "https://api.dintero.com/v1", A),
        ({"HTTPS_PROXY": A, "NO_PROXY": "api.dintero.com"}, {}, "https://api.dintero.com/v1", None),
        ({"HTTPS_PROXY": A, "NO_PROXY": ".dintero.com"}, {}, "https://api.dintero.com/v1", None),
        ({"HTTPS_PROXY": A, "NO_PROXY": "10.0.0.0/8"}, {}, "https://10.1.2.3/v1", None),
        ({"HTTPS_PROXY": A, "NO_PROXY": "*"}, {}, "https://api.dintero.com/v1", None),
        ({"HTTPS_PROXY": A}, {"https": B}, "https://api.dintero.com/v1", B),
        ({"HTTPS_PROXY": A, "NO_PROXY": "api.dintero.com"}, {"https": B}, "https://api.dintero.com/v1", B),
        ({}, {"https://api.dintero.com": B, "https": C}, "https://api.dintero.com/v1", B),
        ({}, {"all": C}, "https://checkout.dintero.com/v1", C),
        ({"HTTPS_PROXY": A}, {"no_proxy": "api.dintero.com"}, "https://api.dintero.com/v1", None),
    ],
)
def test_the_proxy_is_the_one_requests_would_choose(
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    proxies: dict[str, str],
    url: str,
    expected: str | None,
) -> None:
    import requests

    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    settings = requests.Session().merge_environment_settings(url, dict(proxies), False, None, None)
    assert requests.utils.select_proxy(url, settings["proxies"]) == expected  # the table is requests'
    assert transport.proxy_for(url, proxies) == expected
