"""The ``dintero`` connection: fields, forms, bad input, test_connection, provider registration."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from airflow_provider_dintero.connection import ACCEPTED_WIDGET_CLASSES, DEFAULT_BASE_URL
from airflow_provider_dintero.exceptions import DinteroInputError
from airflow_provider_dintero.get_provider_info import CONNECTION_FIELDS
from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook


def _set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, value: dict[str, Any] | str) -> None:
    env = f"AIRFLOW_CONN_{conn_id.upper()}"
    monkeypatch.setenv(env, value if isinstance(value, str) else json.dumps(value))


def _conn(emulator: Any, **overrides: Any) -> dict[str, Any]:
    conn: dict[str, Any] = {
        "conn_type": "dintero",
        "host": emulator.base_url,
        "login": emulator.partner_client_id,
        "password": emulator.partner_client_secret,
        "extra": {"account_id": emulator.partner_id, "checkout_base_url": emulator.base_url},
    }
    extra = overrides.pop("extra", {})
    conn.update(overrides)
    conn["extra"].update(extra)
    return conn


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_provider_is_registered_with_airflow() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-dintero" in manager.providers
    hook_info = manager.hooks["dintero"]
    assert hook_info is not None
    assert hook_info.hook_class_name == "airflow_provider_dintero.hooks.dintero.DinteroPartnerHook"
    assert hook_info.connection_id_attribute_name == "dintero_conn_id"


def test_provider_info_declares_the_connection_form() -> None:
    from airflow_provider_dintero.get_provider_info import get_provider_info

    info = get_provider_info()
    (conn_type,) = info["connection-types"]
    assert conn_type["connection-type"] == "dintero"
    fields = set(conn_type["conn-fields"])
    assert {"account_id", "timeout", "max_retries", "cache_mode", "refresh_margin"} <= fields
    assert conn_type["ui-field-behaviour"]["relabeling"]["password"] == "Client secret"


def _accepted_widget_classes() -> set[str]:
    """The widget classes this Airflow line's providers manager accepts, read from its own source."""
    import inspect
    import re

    from airflow.providers_manager import ProvidersManager

    found = re.search(
        r"allowed_field_classes = \[([^\]]*)\]", inspect.getsource(ProvidersManager._import_hook)
    )
    assert found, "this Airflow line's providers manager no longer lists allowed_field_classes"
    return {name.strip() for name in found.group(1).split(",")}


def test_airflow_lists_every_field_of_the_dintero_form() -> None:
    from airflow.providers_manager import ProvidersManager

    widgets = ProvidersManager().connection_form_widgets
    prefix = "extra__dintero__"

    assert {name.removeprefix(prefix) for name in widgets if name.startswith(prefix)} == set(
        CONNECTION_FIELDS
    )


def test_airflow_relabels_hides_and_fills_in_the_standard_fields() -> None:
    from airflow.providers_manager import ProvidersManager

    behaviour = ProvidersManager().field_behaviours["dintero"]

    assert behaviour["hidden_fields"] == ["schema", "port"]
    assert behaviour["relabeling"] == {"host": "Base URL", "login": "Client ID", "password": "Client secret"}
    assert behaviour["placeholders"]["host"] == DEFAULT_BASE_URL
    assert behaviour["placeholders"]["extra__dintero__timeout"] == "30"
    assert behaviour["placeholders"]["extra__dintero__cache_mode"] == "memory"


def test_every_widget_is_of_a_class_this_airflow_line_accepts() -> None:
    pytest.importorskip("flask_appbuilder", reason="Airflow 3.2+ reads conn-fields and builds no widgets")

    widgets = DinteroPartnerHook.get_connection_form_widgets()

    accepted = _accepted_widget_classes()
    assert accepted == set(ACCEPTED_WIDGET_CLASSES)
    assert {
        name: w.field_class.__name__ for name, w in widgets.items() if w.field_class.__name__ not in accepted
    } == {}
    assert set(widgets) == set(CONNECTION_FIELDS)


def _form(values: dict[str, str]) -> Any:
    wtforms = pytest.importorskip("wtforms", reason="Airflow 3.2+ reads conn-fields and builds no widgets")
    from werkzeug.datastructures import MultiDict

    form_class = type("DinteroForm", (wtforms.Form,), dict(DinteroPartnerHook.get_connection_form_widgets()))
    return form_class(formdata=MultiDict(values))


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("account_id", "T1120000", "extra.account_id: expected"),
        ("checkout_base_url", "http://checkout.example.com", "extra.checkout_base_url: expected"),
        ("timeout", "0", "extra.timeout: expected a finite number > 0"),
        ("timeout", "soon", "extra.timeout: expected"),
        ("max_retries", "21", "extra.max_retries: expected a finite number >= 0 and <= 20"),
        ("cache_mode", "redis", "extra.cache_mode: expected 'memory' or 'variable'"),
        ("refresh_margin", "-1", "extra.refresh_margin: expected"),
        ("max_pages", "0", "extra.max_pages: expected a finite number >= 1"),
        ("proxies", "http://127.0.0.1:3128", "extra.proxies: expected"),
    ],
)
def test_the_form_refuses_on_save_what_the_hook_refuses(field: str, value: str, expected: str) -> None:
    form = _form({"account_id": "T11200000", field: value})

    assert not form.validate()
    assert list(form.errors) == [field]
    assert expected in form.errors[field][0]


def test_a_form_saved_with_only_the_required_fields_works_with_every_default(
    dintero_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    form = _form({"account_id": dintero_emulator.partner_id, "checkout_base_url": dintero_emulator.base_url})
    assert form.validate(), form.errors
    extra = {name: value for name, value in form.data.items() if value != ""}  # as Airflow 2.11 saves it
    _set_conn(monkeypatch, "dintero_form", _conn(dintero_emulator, extra=extra))

    hook = DinteroPartnerHook("dintero_form")

    assert (hook.timeout, hook.max_retries, hook.token_cache_mode) == (30, 5, "memory")
    assert hook.checkout_base_url == dintero_emulator.base_url
    assert hook.test_connection()[0]


def test_json_connection_from_environment(dintero_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _set_conn(monkeypatch, "dintero_json", _conn(dintero_emulator))
    hook = DinteroPartnerHook("dintero_json")
    assert (hook.account_id, hook.base_url, hook.is_partner) == (
        dintero_emulator.partner_id,
        dintero_emulator.base_url,
        True,
    )
    assert hook.get_token()


def test_uri_connection_from_environment(dintero_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from urllib.parse import quote

    port = dintero_emulator.base_url.rsplit(":", 1)[1]
    uri = (
        f"dintero://{quote(dintero_emulator.partner_client_id, safe='')}:"
        f"{quote(dintero_emulator.partner_client_secret, safe='')}@127.0.0.1:{port}"
        f"?account_id={dintero_emulator.partner_id}&scheme=http"
        f"&checkout_base_url={quote(dintero_emulator.base_url, safe='')}"
    )
    _set_conn(monkeypatch, "dintero_uri", uri)
    hook = DinteroPartnerHook("dintero_uri")
    assert hook.base_url == dintero_emulator.base_url
    assert hook.get_token()


def test_base_url_defaults_to_dintero(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_conn(
        monkeypatch,
        "dintero_default_host",
        {
            "conn_type": "dintero",
            "login": "id",
            "password": "form-test-client-secret-4f9c2a",
            "extra": {"account_id": "P11200000"},
        },
    )
    hook = DinteroPartnerHook("dintero_default_host")
    assert hook.base_url == DEFAULT_BASE_URL
    assert hook.checkout_base_url == "https://checkout.dintero.com"


BAD_CONNECTIONS = [
    pytest.param({"extra": {"account_id": "X11200000"}}, "extra.account_id", id="account-wrong-prefix"),
    pytest.param({"extra": {"account_id": "T1120000"}}, "extra.account_id", id="account-too-short"),
    pytest.param({"extra": {"account_id": ""}}, "extra.account_id", id="account-empty"),
    pytest.param({"extra": {"account_id": "t11200000"}}, "extra.account_id", id="account-lowercase"),
    pytest.param({"login": ""}, "login", id="client-id-missing"),
    pytest.param({"password": ""}, "password", id="secret-missing"),
    pytest.param({"host": "http://api.example.com"}, "host", id="plain-http-remote"),
    pytest.param({"host": "ftp://127.0.0.1"}, "host", id="wrong-scheme"),
    pytest.param(
        {"extra": {"checkout_base_url": "http://checkout.example.com"}},
        "extra.checkout_base_url",
        id="checkout-plain-http",
    ),
    pytest.param({"extra": {"timeout": "soon"}}, "extra.timeout", id="timeout-not-number"),
    pytest.param({"extra": {"max_retries": -1}}, "extra.max_retries", id="retries-negative"),
    pytest.param({"extra": {"token_cache": "redis"}}, "extra.token_cache", id="old-token-cache-unknown"),
    pytest.param({"extra": {"cache_mode": "redis"}}, "extra.cache_mode", id="cache-mode-unknown"),
    pytest.param({"extra": {"refresh_margin": "soon"}}, "extra.refresh_margin", id="refresh-margin-text"),
    pytest.param({"extra": {"cache_lease_settle": -1}}, "extra.cache_lease_settle", id="settle-negative"),
    pytest.param({"extra": {"cache_lease_ttl": 0}}, "extra.cache_lease_ttl", id="lease-ttl-zero"),
]


@pytest.mark.parametrize(("overrides", "field"), BAD_CONNECTIONS)
def test_bad_connection_field_is_named_before_any_request(
    dintero_emulator: Any, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any], field: str
) -> None:
    _set_conn(monkeypatch, "dintero_bad", _conn(dintero_emulator, **overrides))
    hook = DinteroPartnerHook("dintero_bad")
    with pytest.raises(DinteroInputError) as err:
        hook.validate_connection()
        hook.get_token()
    assert err.value.field == field
    assert field in str(err.value)
    assert dintero_emulator.count() == 0


@pytest.mark.parametrize(
    "account_id",
    ["T1120000", "11200001", "T11200001 ", "Q11200001", "", "T112000011"],
)
def test_bad_account_id_argument_is_refused_before_any_request(
    dintero_emulator: Any, dintero_connection: str, account_id: str
) -> None:
    hook = DinteroPartnerHook(dintero_connection)
    with pytest.raises(DinteroInputError, match="account_id"):
        hook.get_account(account_id)
    assert dintero_emulator.count() == 0


def test_merchant_connection_cannot_act_on_another_account(
    dintero_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    client_id, secret = dintero_emulator.merchant_credentials(merchant)
    _set_conn(
        monkeypatch,
        "dintero_merchant",
        _conn(dintero_emulator, login=client_id, password=secret, extra={"account_id": merchant}),
    )
    hook = DinteroPartnerHook("dintero_merchant")
    with pytest.raises(DinteroInputError, match="00000"):
        hook.get_token(dintero_emulator.merchant_ids[1])
    assert dintero_emulator.count() == 0


def test_merchant_connection_acts_on_itself(dintero_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    merchant = dintero_emulator.merchant_ids[0]
    client_id, secret = dintero_emulator.merchant_credentials(merchant)
    _set_conn(
        monkeypatch,
        "dintero_merchant",
        _conn(dintero_emulator, login=client_id, password=secret, extra={"account_id": merchant}),
    )
    hook = DinteroPartnerHook("dintero_merchant")
    assert hook.get_account()["account_id"] == merchant
    assert dintero_emulator.count(path_regex=r".*/exchange_token$") == 0


def test_test_connection_names_the_account(dintero_emulator: Any, dintero_connection: str) -> None:
    ok, message = DinteroPartnerHook(dintero_connection).test_connection()
    assert ok, message
    assert dintero_emulator.partner_id in message
    assert "partner" in message


@pytest.mark.parametrize(
    ("overrides", "cause"),
    [
        pytest.param({"password": "not-the-secret"}, "rejected the client credentials", id="bad-credentials"),
        pytest.param({"extra": {"account_id": "T1120000"}}, "misconfigured", id="malformed-account"),
        pytest.param({"host": "unreachable"}, "Cannot reach", id="unreachable-host"),
    ],
)
def test_test_connection_names_the_cause(
    dintero_emulator: Any, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any], cause: str
) -> None:
    if overrides.get("host") == "unreachable":
        overrides = {"host": f"http://127.0.0.1:{_free_port()}", "extra": {"max_retries": 0}}
    _set_conn(monkeypatch, "dintero_test", _conn(dintero_emulator, **overrides))
    ok, message = DinteroPartnerHook("dintero_test").test_connection()
    assert not ok
    assert cause in message
    assert "not-the-secret" not in message


def test_no_form_field_has_a_name_airflow_hides_as_sensitive() -> None:
    try:
        from airflow.sdk._shared.secrets_masker.secrets_masker import should_hide_value_for_key
    except ImportError:  # Airflow 2.11
        from airflow.utils.log.secrets_masker import should_hide_value_for_key  # type: ignore[no-redef]

    # but proxies: a proxy URL may hold a password (the http provider's extra has the same name)
    assert [name for name in CONNECTION_FIELDS if should_hide_value_for_key(name)] in ([], ["proxies"])


@pytest.mark.parametrize("name", sorted(CONNECTION_FIELDS))
def test_every_form_field_shows_its_help_and_default(name: str) -> None:
    spec = CONNECTION_FIELDS[name]
    assert spec["description"] and spec["label"]
    assert "default" in spec["schema"] or name in ("account_id", "proxies")  # proxies: none to mask
    assert str(spec.get("placeholder", "")) == str(
        DinteroPartnerHook.get_ui_field_behaviour()["placeholders"].get(name, "")
    )


@pytest.mark.parametrize(
    ("extra", "mode", "margin"),
    [
        ({"cache_mode": "variable", "refresh_margin": 60}, "variable", 60.0),
        (
            {"token_cache": "variable", "token_refresh_margin": 60},
            "variable",
            60.0,
        ),  # saved before the rename
        ({}, "memory", 300.0),
    ],
)
def test_cache_mode_and_refresh_margin_read_new_and_old_keys(
    dintero_emulator: Any, monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], mode: str, margin: float
) -> None:
    conn = _conn(dintero_emulator)
    conn["extra"].update(extra)
    _set_conn(monkeypatch, "dintero_keys", conn)
    hook = DinteroPartnerHook("dintero_keys")

    assert (hook.token_cache_mode, hook.token_refresh_margin) == (mode, margin)
