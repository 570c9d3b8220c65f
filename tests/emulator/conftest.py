"""Fixtures for the emulator's own tests (the emulator fixtures come from its pytest plugin)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest
import requests

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_dintero.emulator import DinteroEmulator


class Api:
    """A small client for the emulator: token helpers plus authenticated calls.

    :param emu: the emulator under test.
    """

    def __init__(self, emu: DinteroEmulator) -> None:
        self.emu = emu
        self.session = requests.Session()
        self.base = emu.base_url

    def audience(self, account_id: str) -> str:
        """Audience URL for an account on the emulator.

        :param account_id: account id.
        """
        return f"{self.base}/v1/accounts/{account_id}"

    def basic_token(
        self, account_id: str, login: str, secret: str, audience: str | None = None
    ) -> requests.Response:
        """Raw client_credentials token call.

        :param account_id: path account.
        :param login: client id.
        :param secret: client secret.
        :param audience: audience (default: the path account).
        """
        return self.session.post(
            f"{self.base}/v1/accounts/{account_id}/auth/token",
            auth=(login, secret),
            json={"grant_type": "client_credentials", "audience": audience or self.audience(account_id)},
        )

    def partner_token(self) -> str:
        """A partner access token."""
        resp = self.basic_token(
            self.emu.partner_id, self.emu.partner_client_id, self.emu.partner_client_secret
        )
        assert resp.status_code == 200, resp.text
        return str(resp.json()["access_token"])

    def exchange_token(self, merchant_id: str) -> str:
        """An exchange token for a merchant of the partner.

        :param merchant_id: merchant id.
        """
        resp = self.call(
            "POST",
            f"/v1/accounts/{self.emu.partner_id}/auth/exchange_token",
            self.partner_token(),
            json={"account_id": merchant_id},
        )
        assert resp.status_code == 200, resp.text
        return str(resp.json()["access_token"])

    def merchant_token(self, merchant_id: str | None = None) -> str:
        """A merchant token via the documented partner exchange flow.

        :param merchant_id: merchant id (default: the first merchant).
        """
        mid = merchant_id or self.emu.merchant_ids[0]
        resp = self.session.post(
            f"{self.base}/v1/accounts/{mid}/auth/token",
            headers={"Authorization": f"Bearer {self.exchange_token(mid)}"},
            json={"grant_type": "client_credentials", "audience": self.audience(self.emu.partner_id)},
        )
        assert resp.status_code == 200, resp.text
        return str(resp.json()["access_token"])

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        """An API call with an optional bearer token.

        :param method: HTTP method.
        :param path: path below the base URL.
        :param token: bearer token.
        :param kwargs: passed to ``requests``.
        """
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.session.request(method, f"{self.base}{path}", headers=headers, **kwargs)


@pytest.fixture
def emu(dintero_emulator: DinteroEmulator) -> DinteroEmulator:
    """The reset emulator (short name).

    :param dintero_emulator: plugin fixture.
    """
    return dintero_emulator


@pytest.fixture
def api(emu: DinteroEmulator) -> Iterator[Api]:
    """An :class:`Api` bound to the emulator.

    :param emu: the emulator.
    """
    client = Api(emu)
    yield client
    client.session.close()


@pytest.fixture
def mtoken(api: Api) -> str:
    """A merchant token for the first merchant (exchange flow).

    :param api: the client.
    """
    return api.merchant_token()


class Receiver:
    """A loopback HTTP server recording webhook POSTs."""

    def __init__(self, status: int = 200) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = status
        self.event = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                outer.event.set()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def payloads(self) -> list[dict[str, Any]]:
        """Decoded bodies received so far."""
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1."""
    rec = Receiver()
    yield rec
    rec.server.shutdown()
    rec.server.server_close()
