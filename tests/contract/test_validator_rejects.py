"""
The contract checks can fail: deliberately wrong request records and responses are rejected, each
with a message naming the operation and what is wrong.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.contract.contract import Contract

M = "T11200001"
SETTLEMENTS = f"/v1/accounts/{M}/settlements"
HOSTS = {"api": "127.0.0.1:8000", "checkout": "localhost:8000"}
UUID = "9b728ee9-4bef-5617-8207-fe3213e66b45"


def rec(
    method: str, path: str, query: Any = (), body: Any = None, host: str = "127.0.0.1:8000"
) -> dict[str, Any]:
    """A request record as the emulator's log (or the client) gives it."""
    record: dict[str, Any] = {"method": method, "path": path, "query": list(query), "host": host}
    if body is not None:
        record["body"] = body
    return record


TOKEN_BODY = {"grant_type": "client_credentials", "audience": "https://api.dintero.com/v1/accounts/T11200000"}

BAD_REQUESTS = [
    pytest.param(rec("GET", f"/v1/accounts/{M}/settlement"), "unknown operation", id="unknown-path"),
    pytest.param(rec("PATCH", SETTLEMENTS), "unknown operation", id="unknown-method"),
    pytest.param(
        rec("GET", SETTLEMENTS, [("created_after", "2026-11-01")]),
        "list_settlements (GET /v1/accounts/T11200001/settlements): unknown query parameter 'created_after'",
        id="unknown-query-parameter",
    ),
    pytest.param(
        rec("GET", SETTLEMENTS, [("limit", "ten")]), "limit='ten': expected an integer", id="mistyped"
    ),
    pytest.param(rec("GET", SETTLEMENTS, [("limit", "5000")]), "above the maximum 1000", id="limit-range"),
    pytest.param(
        rec("GET", SETTLEMENTS, [("limit", "10"), ("limit", "20")]),
        "'limit' sent 2 times",
        id="not-repeatable",
    ),
    pytest.param(
        rec("GET", SETTLEMENTS, [("created_at.gte", "01.11.2026")]),
        "created_at.gte='01.11.2026': expected date (format date)",
        id="wrong-date-format",
    ),
    pytest.param(
        rec("GET", SETTLEMENTS, [("created_at.lte", "2026-02-30")]),
        "created_at.lte='2026-02-30': expected date (format date)",
        id="impossible-date",
    ),
    pytest.param(
        rec("GET", SETTLEMENTS, [("starting_after_id", "s1")]),
        "'starting_after_id' needs 'starting_after_date'",
        id="cursor-half",
    ),
    pytest.param(
        rec("GET", SETTLEMENTS, [("created_at.gte", "2026-11-01"), ("item_created_at.gte", "2026-11-01")]),
        "cannot be combined",
        id="conflicting-filters",
    ),
    pytest.param(rec("GET", "/v1/accounts/X1/settlements"), "path parameter aid='X1'", id="bad-account-id"),
    pytest.param(
        rec("POST", "/v1/accounts/T11200000/auth/token", body={"grant_type": "client_credentials"}),
        "get_token (POST /v1/accounts/T11200000/auth/token): body misses required field 'audience'",
        id="missing-body-field",
    ),
    pytest.param(
        rec("POST", "/v1/accounts/T11200000/auth/token", body={**TOKEN_BODY, "grant_type": "password"}),
        "'grant_type'='password' is not one of",
        id="body-enum",
    ),
    pytest.param(
        rec(
            "POST", f"/v1/accounts/{M}/hooks/subscriptions", body={"config": {}, "events": ["settlement_add"]}
        ),
        "create_webhook_subscription",
        id="missing-nested-body-field",
    ),
    pytest.param(
        rec(
            "POST",
            f"/v1/accounts/{M}/hooks/subscriptions",
            body={"config": {"url": "u"}, "events": "settlement_add"},
        ),
        "field 'events' is str, expected array",
        id="body-type",
    ),
    pytest.param(
        rec(
            "POST",
            "/v1/accounts/T11200000/auth/exchange_token",
            body={"account_id": M},
            host="localhost:8000",
        ),
        "exchange_token (POST /v1/accounts/T11200000/auth/exchange_token): sent to host localhost:8000",
        id="wrong-host",
    ),
    pytest.param(
        rec("GET", "/v1/admin/session/profiles", host="127.0.0.1:8000"),
        "the checkout host",
        id="profiles-on-api-host",
    ),
    pytest.param(
        rec("DELETE", f"/v1/accounts/{M}/auth/client-grants/g1"),
        "grant_id='g1' does not match uuid",
        id="bad-uuid",
    ),
    pytest.param(
        rec("GET", f"/v1/accounts/{M}/management/settings", body={"x": 1}),
        "sends a body",
        id="unexpected-body",
    ),
]


@pytest.mark.parametrize(("record", "expected"), BAD_REQUESTS)
def test_a_wrong_request_is_rejected(contract: Contract, record: dict[str, Any], expected: str) -> None:
    problems = contract.check_request(record, HOSTS)

    assert any(expected in p for p in problems), problems


def test_the_emulator_record_type_is_read(contract: Contract) -> None:
    from airflow_provider_dintero.emulator import RequestRecord
    from airflow_provider_dintero.emulator.models import QueryPairs

    record = RequestRecord(
        method="POST",
        path="/v1/accounts/T11200000/auth/token",
        status=200,
        account_id="T11200000",
        query=QueryPairs([("limit", "10")]),
        host="127.0.0.1:8000",
        body={"grant_type": "client_credentials"},
    )

    assert contract.check_request(record) == [
        "get_token (POST /v1/accounts/T11200000/auth/token): unknown query parameter 'limit'",
        "get_token (POST /v1/accounts/T11200000/auth/token): body misses required field 'audience'",
    ]


def test_a_redacted_secret_passes_any_type(contract: Contract) -> None:
    body = {"config": {"url": "https://x.example", "secret": "<redacted>"}, "events": ["settlement_add"]}

    assert contract.check_request(rec("POST", f"/v1/accounts/{M}/hooks/subscriptions", body=body)) == []


def test_a_timestamp_filter_is_rejected_now_the_hook_sends_dates(contract: Contract) -> None:
    """The tolerance for timestamps lives in the contract (``accept``), not in the code."""
    loose = copy.deepcopy(contract.data)
    loose["operations"]["list_settlements"]["query"]["created_at.gte"]["accept"] = ["date", "date-time"]
    record = rec("GET", SETTLEMENTS, [("created_at.gte", "2026-11-01T00:00:00.000000Z")])

    assert Contract(loose).check_request(record) == []
    assert contract.check_request(record) == [
        "list_settlements (GET /v1/accounts/T11200001/settlements): query parameter "
        "created_at.gte='2026-11-01T00:00:00.000000Z': expected date (format date)"
    ]


SETTLEMENT_PAGE = {
    "items": [{"id": "s1", "attachments": [{"id": "a1", "created_by": "dintero"}]}],
    "last_evaluated_key": {"id": "s1", "settled_at": "2026-10-01"},
}

BAD_RESPONSES = [
    pytest.param(
        "get_token", {"token_type": "Bearer", "expires_in": 14400}, "misses required field 'access_token'"
    ),
    pytest.param(
        "get_token", {"access_token": "t", "expires_in": "14400"}, "'expires_in' is str, expected integer"
    ),
    pytest.param(
        "list_settlements",
        {"items": [{"id": "s1", "attachments": [{"key": "k"}]}]},
        "misses required field 'items[0].attachments[0].id'",
    ),
    pytest.param("list_settlements", {"items": {"id": "s1"}}, "'items' is dict, expected array"),
    pytest.param("list_settlements", {"last_evaluated_key": {"settled_at": "x"}}, "'last_evaluated_key.id'"),
    pytest.param(
        "list_report_metadata", {"reports": [{"signed_url": "u"}]}, "misses required field 'reports[0].id'"
    ),
    pytest.param(
        "list_api_clients", {"data": [{"id": UUID}]}, "expected a list (bare, items), got object with keys"
    ),
    pytest.param(
        "list_api_clients", [{"id": "not-a-uuid"}], "item 0 field 'id'='not-a-uuid' does not match uuid"
    ),
    pytest.param("list_merchants", ["T11200001"], "item 0 is str, expected an object"),
    pytest.param(
        "create_api_client", {"id": UUID, "client_id": "c"}, "misses required field 'client_secret'"
    ),
    pytest.param("rotate_api_client_secret", {"client": {"id": UUID}}, "matches none of its accepted shapes"),
    pytest.param("list_payment_profiles", [{"id": "default"}], "misses required field 'profile_id'"),
]


@pytest.mark.parametrize(("operation", "body", "expected"), BAD_RESPONSES)
def test_a_wrong_response_is_rejected(contract: Contract, operation: str, body: Any, expected: str) -> None:
    problems = contract.check_response(operation, body)

    assert any(expected in p for p in problems), problems
    assert all(p.startswith(f"{operation} response") for p in problems)


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        ("list_settlements", SETTLEMENT_PAGE),
        ("list_api_clients", [{"id": UUID}]),
        ("list_api_clients", {"items": [{"id": UUID}]}),
        ("rotate_api_client_secret", {"client": {"client_secret": "s"}}),
        ("rotate_api_client_secret", {"client_secret": "s"}),
    ],
)
def test_a_right_response_is_accepted(contract: Contract, operation: str, body: Any) -> None:
    assert contract.check_response(operation, body) == []
