"""The names the receiver, the operator and DAGs share, and the plugin on each Airflow line."""

from __future__ import annotations

import pytest

from airflow_provider_dintero.exceptions import DinteroInputError
from airflow_provider_dintero.webhooks import receiver_path, settlement_events_asset, webhook_secret_variable
from tests.conftest import AIRFLOW_V3


def test_the_settlement_asset_is_named_after_the_account() -> None:
    asset = settlement_events_asset("P11200000")

    assert asset.uri == "dintero://P11200000/settlements"
    if AIRFLOW_V3:
        assert asset.name == "dintero_settlements_P11200000"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (webhook_secret_variable, "dintero_webhook_secret_T11200000"),
        (receiver_path, "/dintero-webhooks/T11200000"),
    ],
    ids=["secret-variable", "receiver-path"],
)
def test_names_derive_from_the_account(name: object, expected: str) -> None:
    assert name("T11200000") == expected  # type: ignore[operator]


@pytest.mark.parametrize("function", [settlement_events_asset, webhook_secret_variable, receiver_path])
@pytest.mark.parametrize("account_id", ["P112", "../P11200000", "p11200000", ""])
def test_names_refuse_what_is_not_an_account_id(function: object, account_id: str) -> None:
    with pytest.raises(DinteroInputError, match=r"^account_id:"):
        function(account_id)  # type: ignore[operator]


def test_the_plugin_carries_no_app_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_dintero.webhooks.plugin import DinteroWebhooksPlugin

    monkeypatch.delenv("AIRFLOW__DINTERO__WEBHOOK_RECEIVER_ENABLED", raising=False)

    assert DinteroWebhooksPlugin().fastapi_apps == []


def test_the_plugin_carries_the_receiver_when_enabled_only_on_airflow_3(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_dintero.webhooks.plugin import DinteroWebhooksPlugin

    monkeypatch.setenv("AIRFLOW__DINTERO__WEBHOOK_RECEIVER_ENABLED", "True")

    prefixes = [app["url_prefix"] for app in DinteroWebhooksPlugin().fastapi_apps]

    assert prefixes == (["/dintero-webhooks"] if AIRFLOW_V3 else [])


@pytest.mark.skipif(AIRFLOW_V3, reason="checks the Airflow 2.11 explanation")
def test_on_airflow_2_building_the_receiver_explains_it_is_airflow_3_only() -> None:
    from airflow_provider_dintero.webhooks.receiver import create_app

    with pytest.raises(RuntimeError, match="Airflow 3's api-server"):
        create_app()
