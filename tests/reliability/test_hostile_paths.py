"""
Paths belong to the task: every id placed in a URL path, from a user or from an answer, is one
percent-encoded path segment (``/``, ``..``, ``?``, ``#`` cannot move the request to another
account or add a query), and a token only goes to paths of the account it was minted for.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_dintero.exceptions import DinteroApiError, DinteroInputError
from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from tests.reliability.hostile import HostileServer

from .conftest import STATS

MID = "T11200001"
TOKEN_PATH = re.compile(r"/auth/(token|exchange_token)$")
OTHER = "T11200002"

EVIL_IDS = [
    pytest.param(f"../../../../{OTHER}/settlements/s1/attachments/a1", id="climb-to-other-account"),
    pytest.param(f"x/../../{OTHER}", id="slash-dotdot"),
    pytest.param("a?limit=1&account_id=T11200002", id="query-injection"),
    pytest.param("a#fragment", id="fragment"),
    pytest.param("%2e%2e%2f%2e%2e", id="pre-encoded-dots"),
    pytest.param("rapport/ø", id="non-ascii-and-slash"),
]

#: Hook calls that put an id into a path: name -> call(hook, evil id).
CALLS: dict[str, Callable[[DinteroPartnerHook, str], Any]] = {
    "attachment": lambda h, i: h.stream_settlement_attachment(MID, "s1", i).__enter__(),
    "settlement-of-attachment": lambda h, i: h.stream_settlement_attachment(MID, i, "a1").__enter__(),
    "report-configuration": lambda h, i: h.get_report_configuration(MID, i),
    "delete-settlement-report-configuration": lambda h, i: h.delete_settlement_report_configuration(MID, i),
    "rotate-client-secret": lambda h, i: h.rotate_api_client_secret(MID, i),
    "delete-grant": lambda h, i: h.delete_client_grant(MID, i),
    "delete-subscription": lambda h, i: h.delete_webhook_subscription(MID, i),
}


def _minted_for(token: str) -> str:
    """The account whose token endpoint issued ``token`` (the hostile server puts its path in ``sub``)."""
    payload = token.split(".")[1]
    subject = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]
    return str(subject).split("/")[3]


@pytest.mark.parametrize("evil", EVIL_IDS)
@pytest.mark.parametrize("call", list(CALLS))
def test_ids_stay_one_path_segment_of_the_tasks_account(hostile: HostileServer, call: str, evil: str) -> None:
    hook = DinteroPartnerHook()

    with pytest.raises(DinteroApiError):  # the hostile server answers 404 to every such path
        CALLS[call](hook, evil)

    api_calls = [s for s in hostile.requests if not TOKEN_PATH.search(s.path)]
    STATS["bad_inputs"] += 1
    assert len(api_calls) == 1
    (seen,) = api_calls
    assert seen.raw_path.startswith(f"/v1/accounts/{MID}/"), seen.raw_path
    assert seen.query == ""  # nothing injected
    assert "#" not in seen.raw_path


@pytest.mark.parametrize("bad", ["", ".", "..", "a\nb", "a\x00b"], ids=repr)
@pytest.mark.parametrize("call", list(CALLS))
def test_ids_that_cannot_be_a_path_segment_are_refused_before_any_request(
    hostile: HostileServer, call: str, bad: str
) -> None:
    with pytest.raises(DinteroInputError):
        CALLS[call](DinteroPartnerHook(), bad)

    assert hostile.requests == []


def test_a_token_is_only_sent_to_paths_of_the_account_it_was_minted_for(hostile: HostileServer) -> None:
    hook = DinteroPartnerHook()
    for account, evil in ((MID, f"../../{OTHER}/x"), (OTHER, f"../../{MID}/x"), (None, f"../../{MID}/y")):
        with pytest.raises(DinteroApiError):
            hook.get_report_configuration(account, evil)

    api_calls = [s for s in hostile.requests if not TOKEN_PATH.search(s.path)]
    assert len(api_calls) == 3
    for seen in api_calls:
        token = seen.headers["authorization"].removeprefix("Bearer ")
        assert seen.path.split("/")[3] == _minted_for(token), seen.raw_path
