"""
One pipeline, two transports: the same hostile answers through the sync hook (requests) and the
async hook (httpx, the trigger's) give the same outcome and the same number of requests; bad
shapes, HTML, redirect loops and oversized bodies are ``DinteroApiError`` naming the operation and
the account; truncated bodies are retried; every list envelope is read or refused by name.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_dintero.exceptions import DinteroApiError, DinteroNotFoundError
from airflow_provider_dintero.hooks.dintero import DinteroAsyncHook, DinteroPartnerHook
from tests.reliability.hostile import HostileServer, Reply, Seen, endless

from .conftest import STATS, first_trigger_event, hostile_connection

MID = "T11200001"
LIST = r"/v1/accounts/T11200001/settlements$"
ITEM = {"id": "s1", "provider": "vipps", "created_at": "2026-11-24T10:00:00Z", "attachments": []}
OK = Reply(json={"items": [ITEM]})


def _ok_after(first: Reply) -> list[tuple[Reply, int | None]]:
    return [(OK, None), (first, 1)]  # routes are tried newest first: ``first`` answers once


def _repeating(seen: Seen) -> Reply:
    return Reply(
        json={"items": [ITEM], "last_evaluated_key": {"id": "s1", "created_at": "2026-11-24T10:00:00Z"}}
    )


#: id -> (routes for the settlements list, extra connection fields, expected outcome).
#: An outcome is ("ok", items) or (error class, words the message must hold).
CASES: dict[str, tuple[list[tuple[Any, int | None]], dict[str, Any], tuple[Any, ...]]] = {
    "503-then-ok": (_ok_after(Reply(status=503, json={})), {}, ("ok", 1)),
    "429-retry-after-then-ok": (_ok_after(Reply(status=429, headers={"Retry-After": "0"})), {}, ("ok", 1)),
    "truncated-then-ok": (_ok_after(Reply(json={"items": [ITEM] * 50}, cut_after=20)), {}, ("ok", 1)),
    "401-once-then-ok": (_ok_after(Reply(status=401, json={"error": {"message": "expired"}})), {}, ("ok", 1)),
    "500-forever": (
        [(Reply(status=500, json={}), None)],
        {},
        (DinteroApiError, "500", "after 3 attempts", MID),
    ),
    "404": (
        [(Reply(status=404, json={"error": {"message": "nope"}}), None)],
        {},
        (DinteroNotFoundError, "404", MID),
    ),
    "html-200": (
        [(Reply(body=b"<html><body>Welcome</body></html>", headers={"Content-Type": "text/html"}), None)],
        {},
        (DinteroApiError, "list settlements", "not JSON", MID),
    ),
    "items-not-a-list": (
        [(Reply(json={"items": "oops"}), None)],
        {},
        (DinteroApiError, "list settlements", "items"),
    ),
    "unknown-envelope": ([(Reply(json={"data": [ITEM]}), None)], {}, (DinteroApiError, "keys data", MID)),
    "items-not-objects": (
        [(Reply(json={"items": ["s1", 2]}), None)],
        {},
        (DinteroApiError, "list of objects"),
    ),
    "bare-array": ([(Reply(json=[ITEM]), None)], {}, ("ok", 1)),
    "repeated-cursor": ([(_repeating, None)], {}, (DinteroApiError, "already returned", "settlements", MID)),
    "endless-body": (
        [(lambda seen: Reply(body=endless(), content_length=None), None)],  # a fresh body per request
        {"max_response_bytes": 65536},
        (DinteroApiError, "size cap", MID),
    ),
    "redirect-loop": (
        [(Reply(status=302, headers={"Location": "/v1/accounts/T11200001/settlements"}), None)],
        {},
        (DinteroApiError, "redirect", MID),
    ),
}


def _outcome(call: Callable[[], list[Any]]) -> tuple[Any, ...]:
    try:
        items = call()
    except DinteroApiError as exc:
        return type(exc), str(exc)
    return "ok", len(items)


def _run_sync() -> list[Any]:
    return list(DinteroPartnerHook().list_settlements(MID))


def _run_async() -> list[Any]:
    return asyncio.run(DinteroAsyncHook().async_list_settlements(MID))


@pytest.mark.parametrize("case", list(CASES))
def test_both_transports_give_the_same_outcome(
    case: str, hostile: HostileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    routes, extra, expected = CASES[case]
    monkeypatch.setenv("AIRFLOW_CONN_DINTERO_DEFAULT", hostile_connection(hostile, **extra))
    outcomes, counts = [], []
    for run in (_run_sync, _run_async):
        for responder, times in routes:
            hostile.route("GET", LIST, responder, times=times)
        before = hostile.count("GET", LIST)
        outcomes.append(_outcome(run))
        counts.append(hostile.count("GET", LIST) - before)
    STATS["faults"] += 2
    for kind, detail in outcomes:
        assert kind == expected[0], (case, outcomes)
        if kind == "ok":
            assert detail == expected[1]
        else:
            assert all(word in detail for word in expected[1:]), detail
    assert counts[0] == counts[1], (case, counts)


ENVELOPES = [
    pytest.param("list_api_clients", r"/auth/clients$", "clients", id="clients"),
    pytest.param("list_client_grants", r"/auth/client-grants$", "grants", id="grants"),
    pytest.param("list_webhook_subscriptions", r"/hooks/subscriptions$", "subscriptions", id="subscriptions"),
    pytest.param(
        "list_report_configurations",
        r"/insight/reports/configuration$",
        "configurations",
        id="report-configs",
    ),
    pytest.param("list_payment_profiles", r"/v1/admin/session/profiles$", "items", id="payment-profiles"),
]


@pytest.mark.parametrize(("method", "path", "own_key"), ENVELOPES)
@pytest.mark.parametrize("shape", ["bare", "items", "own-key"])
def test_lists_accept_a_bare_array_or_their_documented_envelopes(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch, method: str, path: str, own_key: str, shape: str
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_DINTERO_DEFAULT", hostile_connection(hostile, checkout_base_url=hostile.url)
    )
    items = [{"id": "a"}, {"id": "b"}]
    body: Any = {"bare": items, "items": {"items": items}, "own-key": {own_key: items}}[shape]
    hostile.route("GET", path, Reply(json=body))

    assert getattr(DinteroPartnerHook(), method)(MID) == items


@pytest.mark.parametrize(("method", "path", "own_key"), ENVELOPES)
@pytest.mark.parametrize("body", [{"data": [{"id": "a"}]}, {"items": {"id": "a"}}, "ok", None], ids=str)
def test_lists_refuse_anything_else_naming_the_endpoint_and_keys(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch, method: str, path: str, own_key: str, body: Any
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_DINTERO_DEFAULT", hostile_connection(hostile, checkout_base_url=hostile.url)
    )
    hostile.route("GET", path, Reply(body=json.dumps(body).encode() if body is not None else b""))

    with pytest.raises(DinteroApiError) as err:
        getattr(DinteroPartnerHook(), method)(MID)

    assert method.replace("list_", "").split("_")[0] in str(err.value).lower().replace(" ", "_"), str(
        err.value
    )
    if isinstance(body, dict):
        assert ", ".join(sorted(body)) in str(err.value)


MALFORMED_OBJECTS = [
    pytest.param([1, 2], id="array"),
    pytest.param("text", id="string"),
    pytest.param(None, id="null"),
]


@pytest.mark.parametrize("body", MALFORMED_OBJECTS)
def test_a_wrong_shape_where_an_object_is_expected_is_an_api_error(hostile: HostileServer, body: Any) -> None:
    hostile.route("GET", r"/management/settings$", Reply(json=body))

    with pytest.raises(DinteroApiError) as err:
        DinteroPartnerHook().get_account(MID)

    assert "read the account details" in str(err.value) and MID in str(err.value)


TOKEN_ANSWERS = [
    pytest.param({"token_type": "Bearer", "expires_in": 60}, id="no-access-token"),
    pytest.param({"access_token": None, "expires_in": 60}, id="null-access-token"),
    pytest.param({"access_token": "", "expires_in": 60}, id="empty-access-token"),
    pytest.param({"access_token": 12345, "expires_in": 60}, id="numeric-access-token"),
    pytest.param({"access_token": "abc.def.ghi", "expires_in": "abc"}, id="text-expires-in"),
    pytest.param({"access_token": "abc.def.ghi", "expires_in": "nan"}, id="nan-expires-in"),
    pytest.param(["abc"], id="array"),
    pytest.param("<html>login</html>", id="html"),
]


@pytest.mark.parametrize("answer", TOKEN_ANSWERS)
@pytest.mark.parametrize("flow", ["partner", "exchange", "merchant"])
def test_malformed_token_answers_are_api_errors_naming_the_account(
    hostile: HostileServer, answer: Any, flow: str
) -> None:
    path = {
        "partner": r"/T11200000/auth/token$",
        "exchange": r"/auth/exchange_token$",
        "merchant": r"/T11200001/auth/token$",
    }[flow]
    body = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
    hostile.route("POST", path, Reply(body=body, headers={"Content-Type": "application/json"}))

    with pytest.raises(DinteroApiError) as err:
        DinteroPartnerHook().get_token(MID)

    message = str(err.value)
    assert ("T11200000" if flow == "partner" else MID) in message
    assert "token" in message
    assert not any(s.headers.get("authorization") == "Bearer None" for s in hostile.requests)


def test_the_trigger_reports_html_as_an_error_event_instead_of_crashing(hostile: HostileServer) -> None:
    from airflow_provider_dintero.triggers.settlements import SettlementTrigger

    hostile.route("GET", LIST, Reply(body=b"<html>maintenance</html>", headers={"Content-Type": "text/html"}))
    trigger = SettlementTrigger(account_id=MID, since="2026-11-24T00:00:00Z", poll_interval=0.01)

    event = first_trigger_event(trigger)

    assert event["status"] == "error" and "not JSON" in event["message"] and MID in event["message"]
