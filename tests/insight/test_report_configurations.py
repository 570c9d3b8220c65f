"""Report schedule operators (insight and settlement report configurations) against the emulator."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_dintero.exceptions import DinteroInputError, DinteroNotFoundError
from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from airflow_provider_dintero.operators.report_configurations import (
    CreateReportConfigurationOperator,
    CreateSettlementReportConfigurationOperator,
    DeleteReportConfigurationOperator,
    DeleteSettlementReportConfigurationOperator,
    ListReportConfigurationsOperator,
    ListSettlementReportConfigurationsOperator,
    UpdateReportConfigurationOperator,
    UpdateSettlementReportConfigurationOperator,
)

MERCHANT = "T11200001"
INSIGHT = r"/insight/reports/configuration"
SETTLEMENT = r"/settlements/reports/configuration"
WEEKLY = {"name": "Weekly sales", "dataType": "checkout/transactions", "schedule": "weekly", "language": "en"}
DELIVERY = {
    "filetypes": ["pdf", "csv"],
    "destinations": [{"destination_type": "email", "destination_value": "finance@example.com"}],
    "providers": ["vipps", "Swedbank Pay"],
}


@pytest.fixture
def env(dintero_connection: str, dintero_emulator: Any) -> Any:
    """The emulator (seeded, request log cleared) with the Dintero connection set."""
    dintero_emulator.clear_requests()
    return dintero_emulator


def _insight_configs() -> list[dict[str, Any]]:
    return DinteroPartnerHook().list_report_configurations(MERCHANT)


# ------------------------------------------------------------------------------------ insight


def test_create_makes_a_configuration_once_and_then_reuses_it(env: Any) -> None:
    def create() -> dict[str, Any]:
        return CreateReportConfigurationOperator(
            task_id="ensure", account_id=MERCHANT, configuration=WEEKLY
        ).execute({})

    first = create()
    second = create()

    assert first["id"] == second["id"]
    assert first["schedule"] == "weekly"
    assert env.count("POST", INSIGHT) == 1
    assert [c["id"] for c in _insight_configs() if c["name"] == "Weekly sales"] == [first["id"]]


def test_create_reuses_the_seeded_configuration_with_the_same_name(env: Any) -> None:
    (seeded,) = _insight_configs()
    wanted = {**WEEKLY, "name": seeded["name"]}  # differs in schedule

    got = CreateReportConfigurationOperator(
        task_id="ensure", account_id=MERCHANT, configuration=wanted
    ).execute({})

    assert got["id"] == seeded["id"]
    assert got["schedule"] == seeded["schedule"]  # reuse leaves it alone
    assert env.count("POST", INSIGHT) == 0 and env.count("PUT", INSIGHT) == 0


@pytest.mark.parametrize(("schedule", "puts"), [("weekly", 1), ("monthly", 0)])
def test_create_with_if_exists_update_changes_only_what_differs(env: Any, schedule: str, puts: int) -> None:
    (seeded,) = _insight_configs()
    wanted = {
        "name": seeded["name"],
        "dataType": "checkout/transactions",
        "schedule": schedule,
        "language": "en",
    }

    got = CreateReportConfigurationOperator(
        task_id="ensure", account_id=MERCHANT, configuration=wanted, if_exists="update"
    ).execute({})

    assert got["id"] == seeded["id"]
    assert env.count("PUT", INSIGHT) == puts
    assert env.count("POST", INSIGHT) == 0
    (stored,) = _insight_configs()
    assert stored["schedule"] == schedule


def test_create_with_if_exists_fail_refuses_a_duplicate_name(env: Any) -> None:
    (seeded,) = _insight_configs()

    with pytest.raises(AirflowException, match=seeded["id"]):
        CreateReportConfigurationOperator(
            task_id="ensure",
            account_id=MERCHANT,
            configuration={**WEEKLY, "name": seeded["name"]},
            if_exists="fail",
        ).execute({})

    assert env.count("POST", INSIGHT) == 0


def test_list_returns_the_account_configurations(env: Any) -> None:
    listed = ListReportConfigurationsOperator(task_id="list", account_id=MERCHANT).execute({})

    assert [(c["name"], c["schedule"]) for c in listed] == [("Monthly transactions", "monthly")]


def test_update_replaces_a_configuration(env: Any) -> None:
    (seeded,) = _insight_configs()

    updated = UpdateReportConfigurationOperator(
        task_id="update", account_id=MERCHANT, config_id=seeded["id"], configuration=WEEKLY
    ).execute({})

    assert updated["id"] == seeded["id"]
    assert (updated["name"], updated["schedule"]) == ("Weekly sales", "weekly")
    assert DinteroPartnerHook().get_report_configuration(MERCHANT, seeded["id"])["schedule"] == "weekly"


def test_delete_removes_a_configuration_and_tolerates_a_missing_one(env: Any) -> None:
    (seeded,) = _insight_configs()

    def delete(missing_ok: bool = True) -> Any:
        return DeleteReportConfigurationOperator(
            task_id="delete", account_id=MERCHANT, config_id=seeded["id"], missing_ok=missing_ok
        ).execute({})

    assert delete()["id"] == seeded["id"]
    assert _insight_configs() == []
    assert delete() is None
    with pytest.raises(DinteroNotFoundError):
        delete(missing_ok=False)


# ------------------------------------------------------------------------------------ settlement


def _deliveries() -> list[dict[str, Any]]:
    return list(DinteroPartnerHook().list_settlement_report_configurations(MERCHANT))


def test_settlement_create_is_idempotent_by_filetypes_destinations_and_providers(env: Any) -> None:
    first = CreateSettlementReportConfigurationOperator(
        task_id="ensure", account_id=MERCHANT, configuration=DELIVERY
    ).execute({})
    reordered = {
        "filetypes": ["csv", "pdf"],
        "destinations": DELIVERY["destinations"],
        "providers": ["payex", "vipps"],  # "Swedbank Pay" is payex
    }
    second = CreateSettlementReportConfigurationOperator(
        task_id="ensure", account_id=MERCHANT, configuration=reordered
    ).execute({})

    assert second["id"] == first["id"]
    assert sorted(first["providers"]) == ["payex", "vipps"]
    assert env.count("POST", SETTLEMENT) == 1
    assert [c["id"] for c in _deliveries()] == [first["id"]]


def test_settlement_create_makes_a_second_configuration_for_other_destinations(env: Any) -> None:
    CreateSettlementReportConfigurationOperator(
        task_id="a", account_id=MERCHANT, configuration=DELIVERY
    ).execute({})
    other = {
        **DELIVERY,
        "destinations": [{"destination_type": "email", "destination_value": "cfo@example.com"}],
    }

    CreateSettlementReportConfigurationOperator(
        task_id="b", account_id=MERCHANT, configuration=other
    ).execute({})

    assert env.count("POST", SETTLEMENT) == 2
    assert len(_deliveries()) == 2


def test_settlement_create_with_if_exists_fail_refuses_a_duplicate(env: Any) -> None:
    CreateSettlementReportConfigurationOperator(
        task_id="a", account_id=MERCHANT, configuration=DELIVERY
    ).execute({})

    with pytest.raises(AirflowException, match="already has settlement report configuration"):
        CreateSettlementReportConfigurationOperator(
            task_id="b", account_id=MERCHANT, configuration=DELIVERY, if_exists="fail"
        ).execute({})


def test_settlement_list_update_and_delete(env: Any) -> None:
    created = CreateSettlementReportConfigurationOperator(
        task_id="ensure", account_id=MERCHANT, configuration=DELIVERY
    ).execute({})

    listed = ListSettlementReportConfigurationsOperator(task_id="list", account_id=MERCHANT).execute({})
    assert [c["id"] for c in listed] == [created["id"]]

    updated = UpdateSettlementReportConfigurationOperator(
        task_id="update",
        account_id=MERCHANT,
        config_id=created["id"],
        configuration={**DELIVERY, "filetypes": ["xml"]},
    ).execute({})
    assert updated["filetypes"] == ["xml"]
    assert _deliveries()[0]["filetypes"] == ["xml"]

    def delete(missing_ok: bool = True) -> Any:
        return DeleteSettlementReportConfigurationOperator(
            task_id="delete", account_id=MERCHANT, config_id=created["id"], missing_ok=missing_ok
        ).execute({})

    assert delete()["id"] == created["id"]
    assert _deliveries() == []
    assert delete() is None
    with pytest.raises(DinteroNotFoundError):
        delete(missing_ok=False)


# ------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("operator", "kwargs", "field"),
    [
        (
            CreateReportConfigurationOperator,
            {"configuration": {**WEEKLY, "schedule": "hourly"}},
            "configuration.schedule",
        ),
        (
            CreateReportConfigurationOperator,
            {"configuration": {**WEEKLY, "language": "sv"}},
            "configuration.language",
        ),
        (
            CreateReportConfigurationOperator,
            {"configuration": {k: v for k, v in WEEKLY.items() if k != "dataType"}},
            "configuration.dataType",
        ),
        (
            CreateReportConfigurationOperator,
            {"configuration": {k: v for k, v in WEEKLY.items() if k != "name"}},
            "configuration.name",
        ),
        (
            CreateReportConfigurationOperator,
            {"configuration": {**WEEKLY, "name": "x" * 65}},
            "configuration.name",
        ),
        (
            CreateReportConfigurationOperator,
            {"configuration": {**WEEKLY, "contentTypes": ["application/pdf", "text/xml"]}},
            "configuration.contentTypes[1]",
        ),
        (
            CreateReportConfigurationOperator,
            {"configuration": {**WEEKLY, "data_type": "checkout/transactions"}},
            "configuration.data_type",
        ),
        (
            CreateReportConfigurationOperator,
            {"configuration": {**WEEKLY, "emails": ["nobody"]}},
            "configuration.emails[0]",
        ),
        (CreateReportConfigurationOperator, {"configuration": "weekly"}, "configuration"),
        (CreateReportConfigurationOperator, {"configuration": WEEKLY, "if_exists": "replace"}, "if_exists"),
        (CreateReportConfigurationOperator, {"configuration": WEEKLY, "account_id": "T1"}, "account_id"),
        (UpdateReportConfigurationOperator, {"config_id": "", "configuration": WEEKLY}, "config_id"),
        (
            UpdateReportConfigurationOperator,
            {"config_id": "abc", "configuration": {**WEEKLY, "schedule": "yearly"}},
            "configuration.schedule",
        ),
        (DeleteReportConfigurationOperator, {"config_id": "../x"}, "config_id"),
        (
            CreateSettlementReportConfigurationOperator,
            {"configuration": {k: v for k, v in DELIVERY.items() if k != "filetypes"}},
            "configuration.filetypes",
        ),
        (
            CreateSettlementReportConfigurationOperator,
            {
                "configuration": {
                    **DELIVERY,
                    "destinations": [{"destination_type": "fax", "destination_value": "1"}],
                }
            },
            "configuration.destinations[0].destination_type",
        ),
        (
            CreateSettlementReportConfigurationOperator,
            {"configuration": {**DELIVERY, "destinations": [{"destination_type": "email"}]}},
            "configuration.destinations[0].destination_value",
        ),
        (
            CreateSettlementReportConfigurationOperator,
            {"configuration": {**DELIVERY, "providers": ["vipps", "pay/pal"]}},
            "configuration.providers[1]",
        ),
        (
            CreateSettlementReportConfigurationOperator,
            {"configuration": {**DELIVERY, "filters": [{"filter": "store_id", "value": "1"}]}},
            "configuration.filters[0].filter",
        ),
        (
            UpdateSettlementReportConfigurationOperator,
            {"config_id": "abc", "configuration": {**DELIVERY, "filetypes": []}},
            "configuration.filetypes",
        ),
        (DeleteSettlementReportConfigurationOperator, {"config_id": None}, "config_id"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_bad_input_is_refused_naming_the_field_before_any_request(
    env: Any, operator: type, kwargs: dict[str, Any], field: str
) -> None:
    kwargs = {"account_id": MERCHANT, **kwargs}

    with pytest.raises(DinteroInputError) as raised:
        operator(task_id="op", **kwargs).execute({})

    assert raised.value.field == field
    assert env.count() == 0


@pytest.mark.parametrize(
    ("operator", "templated"),
    [
        (CreateReportConfigurationOperator, {"account_id", "configuration"}),
        (ListReportConfigurationsOperator, {"account_id"}),
        (UpdateReportConfigurationOperator, {"account_id", "config_id", "configuration"}),
        (DeleteReportConfigurationOperator, {"account_id", "config_id"}),
        (CreateSettlementReportConfigurationOperator, {"account_id", "configuration"}),
        (ListSettlementReportConfigurationsOperator, {"account_id"}),
        (UpdateSettlementReportConfigurationOperator, {"account_id", "config_id", "configuration"}),
        (DeleteSettlementReportConfigurationOperator, {"account_id", "config_id"}),
    ],
)
def test_operators_template_their_inputs(operator: type, templated: set[str]) -> None:
    assert set(operator.template_fields) == templated
