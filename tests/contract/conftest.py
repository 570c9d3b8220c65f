"""
Fixtures for the contract tests: the contract, a connection whose checkout host differs from its
API host (``localhost`` vs ``127.0.0.1``, the same emulator) so the request log shows which host
each request went to, and a recorder of the hook's HTTP exchanges as the client saw them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import urllib3

from airflow_provider_dintero.emulator.pytest_plugin import connection_json
from tests.contract.contract import Contract


@pytest.fixture(scope="session")
def contract() -> Contract:
    """Our contract of the Dintero API (``tests/contract/dintero.yaml``)."""
    return Contract.load()


@dataclass
class Exchange:
    """One request the hook sent and the answer it got, as seen by the client.

    :param record: the request as a contract record (method, path, host, query, body).
    :param status: the status code.
    :param json_body: the parsed JSON answer, or ``None`` for a non-JSON answer.
    """

    record: dict[str, Any]
    status: int
    json_body: Any


def exchange_from(response: requests.Response) -> Exchange:
    """Turn a ``requests`` response (and the request it answers) into an :class:`Exchange`.

    :param response: the response; its body is read only when it is JSON.
    """
    request = response.request
    parts = urlsplit(str(request.url))
    raw = request.body
    body: Any = None
    if raw:
        body = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    record = {
        "method": str(request.method),
        "path": parts.path,
        "host": parts.netloc,
        "query": parse_qsl(parts.query, keep_blank_values=True),
        "body": body,
    }
    is_json = "json" in response.headers.get("Content-Type", "")
    return Exchange(record, response.status_code, response.json() if is_json else None)


@pytest.fixture
def contract_hosts(dintero_emulator: Any) -> dict[str, str]:
    """Which ``host:port`` stands for Dintero's API host and which for its checkout host."""
    return {
        "api": urlsplit(dintero_emulator.base_url).netloc,
        "checkout": urlsplit(dintero_emulator.alt_base_url).netloc,
    }


@pytest.fixture
def contract_hook(
    dintero_emulator: Any, dintero_connection: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, list[Exchange]]]:
    """A partner hook on the emulator (checkout calls on ``localhost``) and its recorded exchanges."""
    from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook

    conn = json.loads(connection_json(dintero_emulator))
    conn["extra"]["checkout_base_url"] = dintero_emulator.alt_base_url
    monkeypatch.setenv(f"AIRFLOW_CONN_{dintero_connection.upper()}", json.dumps(conn))
    hook = DinteroPartnerHook(dintero_connection)
    exchanges: list[Exchange] = []

    def record(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        exchanges.append(exchange_from(response))
        if "_content" in vars(response) and response._content is not False:
            # the hook streams and reads ``response.raw``: give it back the bytes read here
            response.raw = urllib3.HTTPResponse(body=io.BytesIO(response.content), preload_content=False)
        return response

    hook.get_conn().hooks["response"].append(record)
    yield hook, exchanges
    hook.close()
