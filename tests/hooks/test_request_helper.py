"""The request a listing pages with keeps everything of the first one but its query."""

from __future__ import annotations

import pytest

from airflow_provider_dintero.pipeline import Request, with_params


def test_a_page_keeps_the_request_but_its_query() -> None:
    first = Request(
        method="GET",
        url="https://api.dintero.com/v1/accounts/T11200001/settlements",
        operation="list settlements",
        account_id="T11200001",
        params=[("limit", "10")],
        token_account="T11200001",
        headers={"X-Test": "1"},
        stream=True,
    )

    page = with_params(first, {"limit": 10, "starting_after": "s1", "providers": ["a", "b"]})

    assert page.params == [("limit", "10"), ("starting_after", "s1"), ("providers", "a"), ("providers", "b")]
    assert (page.method, page.url, page.operation, page.account_id) == (
        first.method,
        first.url,
        first.operation,
        first.account_id,
    )
    assert (page.token_account, page.headers, page.stream) == ("T11200001", {"X-Test": "1"}, True)


def test_a_request_takes_keywords_only() -> None:
    with pytest.raises(TypeError):
        Request("GET", "https://api.dintero.com/v1/x", "read x", "T11200001")  # type: ignore[misc]
