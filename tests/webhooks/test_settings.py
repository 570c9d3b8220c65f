"""The ``[dintero]`` options: each parsed or refused with its name, and the plugin's start-up check."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_provider_dintero.webhooks.settings import DinteroConfigError, ReceiverSettings, load_settings


def test_defaults_keep_the_receiver_off() -> None:
    assert load_settings({}) == ReceiverSettings(
        enabled=False, accounts=frozenset(), max_body_bytes=256 * 1024, replay_window=timedelta(days=30)
    )


@pytest.mark.parametrize(
    ("option", "value", "field", "expected"),
    [
        ("webhook_receiver_enabled", "True", "enabled", True),
        ("webhook_receiver_enabled", "off", "enabled", False),
        ("webhook_accounts", "P11200000, T11200000", "accounts", frozenset({"P11200000", "T11200000"})),
        ("webhook_accounts", "P11200000,\nP11200001,", "accounts", frozenset({"P11200000", "P11200001"})),
        ("webhook_max_body_bytes", "262144", "max_body_bytes", 262144),
        ("webhook_max_body_bytes", "256k", "max_body_bytes", 262144),
        ("webhook_max_body_bytes", "256KiB", "max_body_bytes", 262144),
        ("webhook_max_body_bytes", "1m", "max_body_bytes", 1048576),
        ("webhook_replay_window_days", "7", "replay_window", timedelta(days=7)),
        ("webhook_replay_window_days", "30d", "replay_window", timedelta(days=30)),
    ],
)
def test_an_option_is_understood(option: str, value: str, field: str, expected: object) -> None:
    assert getattr(load_settings({option: value}), field) == expected


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("webhook_receiver_enabled", "sure", "True or False"),
        ("webhook_accounts", "P11200000, merchant-1", "comma-separated Dintero account ids"),
        ("webhook_max_body_bytes", "256 kilobytes", "a size in bytes"),
        ("webhook_max_body_bytes", "0", "a size in bytes"),
        ("webhook_max_body_bytes", "1g", "a size in bytes"),
        ("webhook_replay_window_days", "30 days", "whole days"),
        ("webhook_replay_window_days", "0", "whole days"),
        ("webhook_replay_window_days", "-1", "whole days"),
    ],
)
def test_a_bad_value_names_the_option_and_the_form(option: str, value: str, expected: str) -> None:
    with pytest.raises(
        DinteroConfigError, match=rf"^\[dintero\] {option} \(env AIRFLOW__DINTERO__{option.upper()}\)"
    ) as raised:
        load_settings({option: value})

    assert expected in str(raised.value)


def test_an_unknown_receiver_option_is_logged_with_the_closest_name(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        load_settings({"webhook_max_body_byte": "1k"})

    assert "did you mean webhook_max_body_bytes?" in caplog.text


def test_options_are_read_from_airflow_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__DINTERO__WEBHOOK_MAX_BODY_BYTES", "64k")
    monkeypatch.setenv("AIRFLOW__DINTERO__WEBHOOK_ACCOUNTS", "P11200000")

    settings = load_settings()

    assert (settings.max_body_bytes, settings.accounts) == (65536, frozenset({"P11200000"}))


def test_the_plugin_stops_the_api_server_on_a_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fastapi", reason="the receiver's apps exist on Airflow 3 only")
    from airflow_provider_dintero.webhooks.plugin import DinteroWebhooksPlugin

    monkeypatch.setenv("AIRFLOW__DINTERO__WEBHOOK_REPLAY_WINDOW_DAYS", "a month")

    with pytest.raises(SystemExit, match=r"webhook_replay_window_days .* expected whole days"):
        _ = DinteroWebhooksPlugin().fastapi_apps


@pytest.mark.parametrize(
    ("version", "starts"), [("3.0.6", False), ("3.2.2", False), ("3.3.2", True), ("3.4.0", True)]
)
def test_the_receiver_starts_only_on_the_lines_it_is_tested_on(
    monkeypatch: pytest.MonkeyPatch, version: str, starts: bool
) -> None:
    pytest.importorskip("fastapi", reason="the receiver's apps exist on Airflow 3 only")
    import airflow

    from airflow_provider_dintero.webhooks.plugin import DinteroWebhooksPlugin

    monkeypatch.setattr(airflow, "__version__", version)
    monkeypatch.setenv("AIRFLOW__DINTERO__WEBHOOK_RECEIVER_ENABLED", "True")
    monkeypatch.setenv("AIRFLOW__DINTERO__WEBHOOK_ACCOUNTS", "P11200000")

    if starts:
        assert [app["url_prefix"] for app in DinteroWebhooksPlugin().fastapi_apps] == ["/dintero-webhooks"]
    else:
        with pytest.raises(
            SystemExit, match=rf"needs Airflow 3\.3 or later \(this api-server runs Airflow {version[:3]}\)"
        ):
            _ = DinteroWebhooksPlugin().fastapi_apps
