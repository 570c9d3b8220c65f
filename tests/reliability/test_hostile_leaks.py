"""
No credential leaves: error bodies that echo the Basic credentials, a bearer token or anything
JWT-shaped are redacted before they are logged, raised or put into a trigger event (merchant
tokens are not registered with the masker, so this is the only thing that keeps them out); a
base URL with user info is refused, naming the field, before any request.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import pytest

from airflow_provider_dintero.exceptions import DinteroApiError, DinteroInputError
from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from tests.reliability.hostile import HostileServer, Reply, Seen, jwt_like

from .conftest import HOSTILE_BASIC as BASIC
from .conftest import HOSTILE_SECRET as SECRET
from .conftest import STATS, credential_hits, first_trigger_event, hostile_connection

MID = "T11200001"
FOREIGN_JWT = jwt_like("someone-else", seed="foreign")


def _echo(template: str, status: int = 500, as_json: bool = True) -> Any:
    def respond(seen: Seen) -> Reply:
        text = template.format(auth=seen.headers.get("authorization", ""), jwt=FOREIGN_JWT)
        if as_json:
            return Reply(status=status, json={"error": {"code": "ECHO", "message": text, "errors": [text]}})
        return Reply(status=status, body=text.encode(), headers={"Content-Type": "text/plain"})

    return respond


ECHOES = [
    pytest.param(
        "POST", r"/T11200000/auth/token$", _echo("you sent Authorization: {auth}", 401), id="basic-json"
    ),
    pytest.param("POST", r"/T11200000/auth/token$", _echo("header was {auth}", 400, False), id="basic-text"),
    pytest.param("GET", r"/settlements$", _echo("bad token: {auth}"), id="bearer-json"),
    pytest.param("GET", r"/settlements$", _echo("Authorization={auth}", 502, False), id="bearer-text"),
    pytest.param("GET", r"/settlements$", _echo("token {jwt} is revoked", 403), id="jwt-shaped"),
    pytest.param(
        "GET", r"/settlements$", _echo('echo {{"access_token": "{jwt}"}}', 400, False), id="token-field"
    ),
]


def _credentials(hostile: HostileServer) -> dict[str, str]:
    found = {"client secret": SECRET, "basic credentials": BASIC, "foreign jwt": FOREIGN_JWT}
    found["foreign jwt payload"] = FOREIGN_JWT.split(".")[1]
    for i, token in enumerate(hostile.issued_tokens):
        found[f"token #{i}"] = token
        found[f"token #{i} signature"] = token.rsplit(".", 1)[-1]
        found[f"token #{i} payload"] = token.split(".")[1]  # survives when a message cuts the token short
    return found


@pytest.mark.parametrize(("method", "path", "responder"), ECHOES)
def test_echoed_credentials_are_not_logged_or_raised(
    hostile: HostileServer,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    method: str,
    path: str,
    responder: Any,
) -> None:
    caplog.set_level(logging.DEBUG)
    hostile.route(method, path, responder)

    with pytest.raises(DinteroApiError) as err:
        list(DinteroPartnerHook().list_settlements(MID))

    captured = capsys.readouterr()
    corpus = "\n".join(
        [str(err.value), repr(err.value), str(err.value.api_message), caplog.text, captured.out, captured.err]
    )
    leaks = [name for name, value in _credentials(hostile).items() if value in corpus]
    STATS["canaries"] += len(leaks)
    assert leaks == []
    assert "***" in str(err.value)  # the echo was there, and redacted


@pytest.mark.parametrize(("method", "path", "responder"), ECHOES)
def test_trigger_events_carry_no_credential(
    hostile: HostileServer, method: str, path: str, responder: Any
) -> None:
    from airflow_provider_dintero.triggers.settlements import SettlementTrigger

    hostile.route(method, path, responder)
    trigger = SettlementTrigger(account_id=MID, since="2026-11-24T00:00:00Z", poll_interval=0.01)

    event = first_trigger_event(trigger)

    assert event["status"] == "error"
    stored = json.dumps(event)  # what the metadata DB keeps and the resumed worker raises
    assert [name for name, value in _credentials(hostile).items() if value in stored] == []


@pytest.mark.parametrize(
    "host",
    [
        "http://admin:pw-canary-77@127.0.0.1:{port}",
        "http://admin@127.0.0.1:{port}",
        "http://:pw-canary-77@127.0.0.1:{port}",
    ],
)
def test_a_base_url_with_user_info_is_refused_before_any_request(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    conn = json.loads(hostile_connection(hostile))
    conn["host"] = host.format(port=hostile.url.rsplit(":", 1)[1])
    monkeypatch.setenv("AIRFLOW_CONN_DINTERO_DEFAULT", json.dumps(conn))

    with pytest.raises(DinteroInputError) as err:
        DinteroPartnerHook().get_token()

    assert err.value.field == "host"
    assert "pw-canary-77" not in str(err.value)
    assert hostile.requests == []


def _issued_token(server: HostileServer) -> str:
    """Have ``server`` issue a token, over HTTP, and return it."""
    import urllib.request

    request = urllib.request.Request(f"{server.url}/v1/accounts/T11200000/auth/token", data=b"{}")
    with urllib.request.urlopen(request, timeout=5) as answer:
        return str(json.load(answer)["access_token"])


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        pytest.param("token in message", "issued token #0", id="token-in-message"),
        pytest.param("token in traceback", "issued token #0", id="token-in-traceback"),
        pytest.param("basic in message", "Basic credentials", id="basic-in-message"),
        pytest.param("secret in error", "client secret", id="secret-in-error"),
    ],
)
def test_the_leak_scan_of_every_hostile_case_finds_a_planted_credential(where: str, expected: str) -> None:
    with HostileServer() as server:
        token = _issued_token(server)
    planted = {"token": token, "basic": BASIC, "secret": SECRET}[where.split()[0]]
    message = logging.LogRecord("dintero", logging.INFO, __file__, 1, "calling with %s", (planted,), None)
    clean = logging.LogRecord("dintero", logging.INFO, __file__, 1, "calling with %s", ("***",), None)
    records = [clean]
    errors: list[BaseException] = [DinteroApiError("no credential here")]
    if where.endswith("message"):
        records.append(message)
    elif where.endswith("traceback"):
        try:
            raise RuntimeError(f"answer was {planted}")
        except RuntimeError:
            clean.exc_info = sys.exc_info()
    else:
        errors.append(DinteroInputError("password", "a secret that is not echoed", planted))

    hits = credential_hits(server, records, errors)

    assert len(hits) == 1
    assert hits[0].startswith(expected)
