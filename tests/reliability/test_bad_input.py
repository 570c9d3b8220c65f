"""
Bad input fails before any request, naming the field: a table over every connection field and
every operator, sensor and transfer parameter (plain and through Jinja templates), plus
property-based tests of the validation helpers and of the pagination code.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_dintero.auth import TOKEN_CACHE
from airflow_provider_dintero.emulator import DinteroEmulator, EmulatorSeed
from airflow_provider_dintero.exceptions import DinteroInputError
from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from airflow_provider_dintero.operators.accounts import GetAccountOperator
from airflow_provider_dintero.operators.api_clients import CreateApiClientOperator, GrantOperator
from airflow_provider_dintero.operators.payment_profiles import (
    CreatePaymentProfileOperator,
    ListPaymentProfilesOperator,
    UpdatePaymentProfileOperator,
)
from airflow_provider_dintero.operators.report_configurations import (
    CreateReportConfigurationOperator,
    CreateSettlementReportConfigurationOperator,
    DeleteReportConfigurationOperator,
    DeleteSettlementReportConfigurationOperator,
    UpdateReportConfigurationOperator,
)
from airflow_provider_dintero.operators.webhooks import CreateWebhookSubscriptionOperator
from airflow_provider_dintero.pipeline import parse_retry_after
from airflow_provider_dintero.sensors.settlements import SettlementSensor
from airflow_provider_dintero.settlements import format_timestamp, settlement_query
from airflow_provider_dintero.transfers._s3_stream import key_template_fields
from airflow_provider_dintero.transfers.insight_report_to_s3 import InsightReportToS3Operator
from airflow_provider_dintero.transfers.settlements_to_s3 import KEY_FIELDS, SettlementsToS3Operator
from airflow_provider_dintero.validation import validate_account_id
from airflow_provider_dintero.vocabulary import PayoutProvider
from tests.provisioning.helpers import settle as settled
from tests.reliability.conftest import STATS, reliability_connection, s3_objects

M = "T11200001"  # the seed's first merchant
BUCKET = "<bucket>"  # replaced by the test's bucket
INSIGHT_CONFIG = {"dataType": "checkout/transactions", "schedule": "monthly", "language": "en", "name": "x"}
SETTLEMENT_CONFIG = {"filetypes": ["pdf"], "destinations": [], "providers": []}
PROFILE = {"profile_id": "p", "description": "d", "configuration": {}}

#: operator class and valid keyword arguments; each case below changes one of them.
OPERATORS: dict[str, tuple[type[Any], dict[str, Any]]] = {
    "settlements_to_s3": (SettlementsToS3Operator, {"account_id": M, "s3_bucket": BUCKET}),
    "insight_to_s3": (InsightReportToS3Operator, {"account_id": M, "s3_bucket": BUCKET}),
    "sensor": (SettlementSensor, {"account_id": M, "since": "2026-10-01"}),
    "get_account": (GetAccountOperator, {"account_id": M}),
    "api_client": (CreateApiClientOperator, {"account_id": M, "name": "n", "secret_variable_key": "k"}),
    "grant": (GrantOperator, {"account_id": M, "client_id": "c", "scopes": ["read:settlements"]}),
    "webhook": (CreateWebhookSubscriptionOperator, {"account_id": M, "url": "https://example.com/h"}),
    "create_profile": (CreatePaymentProfileOperator, {"account_id": M, "profile": PROFILE}),
    "list_profiles": (ListPaymentProfilesOperator, {"account_id": M}),
    "update_profile": (
        UpdatePaymentProfileOperator,
        {"account_id": M, "profile_id": "p", "changes": {"description": "e"}},
    ),
    "create_insight_config": (
        CreateReportConfigurationOperator,
        {"account_id": M, "configuration": INSIGHT_CONFIG},
    ),
    "update_insight_config": (
        UpdateReportConfigurationOperator,
        {"account_id": M, "config_id": "c", "configuration": INSIGHT_CONFIG},
    ),
    "delete_insight_config": (DeleteReportConfigurationOperator, {"account_id": M, "config_id": "c"}),
    "create_settlement_config": (
        CreateSettlementReportConfigurationOperator,
        {"account_id": M, "configuration": SETTLEMENT_CONFIG},
    ),
    "delete_settlement_config": (
        DeleteSettlementReportConfigurationOperator,
        {"account_id": M, "config_id": "c"},
    ),
}

BAD_ACCOUNT_IDS = {
    "empty": "",
    "too short": "T1120000",
    "too long": "T112000011",
    "wrong prefix": "X11200001",
    "lower case": "t11200001",
    "no prefix": "11200001",
    "spaces inside": "T112 00001",
    "newline inside": "T1120\n0001",
    "non-ASCII digits": "T\u0661\u0661\u0662\u0660\u0660\u0660\u0660\u0661",
    "not a string": 11200001,
    "None": None,
}

# (operator, parameter overrides, field named by the error)
CASES: list[tuple[str, dict[str, Any], str]] = [
    *[(op, {"account_id": bad}, "account_id") for op in OPERATORS for bad in BAD_ACCOUNT_IDS.values()],
    # settlements transfer
    ("settlements_to_s3", {"s3_bucket": ""}, "s3_bucket"),
    ("settlements_to_s3", {"s3_key": "x/{account}/{settlement_id}/{attachment_id}"}, "s3_key"),
    ("settlements_to_s3", {"s3_key": "x/{settlement_id}.{extension}"}, "s3_key"),
    ("settlements_to_s3", {"s3_key": "x/{}/{settlement_id}/{attachment_id}"}, "s3_key"),
    ("settlements_to_s3", {"s3_key": "x/{settlement_id.a}/{attachment_id}"}, "s3_key"),
    ("settlements_to_s3", {"s3_key": "x/{settlement_id/{attachment_id}"}, "s3_key"),
    ("settlements_to_s3", {"s3_key": ""}, "s3_key"),
    ("settlements_to_s3", {"s3_key": "/abs/{settlement_id}/{attachment_id}"}, "s3_key"),
    ("settlements_to_s3", {"settlement_ids": [""]}, "settlement_ids"),
    ("settlements_to_s3", {"settlement_ids": 42}, "settlement_ids"),
    ("settlements_to_s3", {"settlement_ids": "[unclosed"}, "settlement_ids"),
    ("settlements_to_s3", {"since": "not a date"}, "since"),
    ("settlements_to_s3", {"since": "2026-13-45"}, "since"),
    ("settlements_to_s3", {"payment_providers": ["pay/pal"]}, "payment_providers"),
    ("settlements_to_s3", {"payment_providers": ["vipps", ""]}, "payment_providers"),
    ("settlements_to_s3", {"payment_providers": 42}, "payment_providers"),
    ("settlements_to_s3", {"attachments": "pdf"}, "attachments"),
    ("settlements_to_s3", {"attachments": ""}, "attachments"),
    # insight transfer
    ("insight_to_s3", {"s3_bucket": ""}, "s3_bucket"),
    ("insight_to_s3", {"s3_key": "x/{nope}"}, "s3_key"),
    ("insight_to_s3", {"since": "2026-11-01", "until": "2026-10-01"}, "until"),
    ("insight_to_s3", {"since": "2026-11-01", "until": "2026-11-01"}, "until"),
    ("insight_to_s3", {"since": "yesterday-ish"}, "since"),
    ("insight_to_s3", {"until": "2026-02-30"}, "until"),
    # sensor
    ("sensor", {"since": "not a date"}, "since"),
    ("sensor", {"payment_providers": ["pay/pal"]}, "payment_providers"),
    ("sensor", {"since": None, "lookback": "1h"}, "lookback"),
    ("sensor", {"deferrable": "maybe"}, "deferrable"),
    # API clients
    ("api_client", {"name": ""}, "name"),
    ("api_client", {"name": "   "}, "name"),
    ("api_client", {"client_id": ""}, "client_id"),
    ("api_client", {"description": ""}, "description"),
    ("api_client", {"callbacks": "https://example.com/cb"}, "callbacks"),
    ("api_client", {"callbacks": [""]}, "callbacks"),
    ("api_client", {"secret_destination": "vault"}, "secret_destination"),
    ("api_client", {"secret_variable_key": "bad key!"}, "secret_variable_key"),
    ("api_client", {"secret_variable_key": ""}, "secret_variable_key"),
    (
        "api_client",
        {"secret_destination": "secrets_manager", "secrets_manager_secret_name": "bad name!"},
        "secrets_manager_secret_name",
    ),
    ("api_client", {"if_exists": "replace"}, "if_exists"),
    ("api_client", {"rotate_if_secret_missing": "yes"}, "rotate_if_secret_missing"),
    # grants
    ("grant", {"client_id": ""}, "client_id"),
    ("grant", {"scopes": ["read:setlements"]}, "scopes"),
    ("grant", {"scopes": []}, "scopes"),
    ("grant", {"scopes": ""}, "scopes"),
    ("grant", {"scopes": 7}, "scopes"),
    ("grant", {"grant_type": "implicit"}, "grant_type"),
    ("grant", {"audience": "https://example.com/not-an-account"}, "audience"),
    # webhooks
    ("webhook", {"url": ""}, "url"),
    ("webhook", {"url": "http://example.com/h"}, "url"),
    ("webhook", {"url": "http://10.0.0.1/h"}, "url"),
    ("webhook", {"url": "ftp://example.com/h"}, "url"),
    ("webhook", {"events": ["settlement nope"]}, "events"),
    ("webhook", {"events": []}, "events"),
    ("webhook", {"secret": ""}, "secret"),
    ("webhook", {"active": "yes"}, "active"),
    # payment profiles
    ("create_profile", {"profile": "not a dict"}, "profile"),
    ("create_profile", {"profile": {"configuration": {}}}, "profile.description"),
    ("create_profile", {"profile": {"description": "d", "configuration": []}}, "profile.configuration"),
    ("create_profile", {"if_exists": "replace"}, "if_exists"),
    ("update_profile", {"profile_id": ""}, "profile_id"),
    ("update_profile", {"changes": {}}, "changes"),
    ("update_profile", {"changes": {"profile_id": "q"}}, "changes.profile_id"),
    ("update_profile", {"dry_run": "no"}, "dry_run"),
    # report configurations
    ("create_insight_config", {"configuration": "x"}, "configuration"),
    (
        "create_insight_config",
        {"configuration": {**INSIGHT_CONFIG, "schedule": "hourly"}},
        "configuration.schedule",
    ),
    (
        "create_insight_config",
        {"configuration": {**INSIGHT_CONFIG, "language": "xx"}},
        "configuration.language",
    ),
    ("create_insight_config", {"configuration": {**INSIGHT_CONFIG, "name": ""}}, "configuration.name"),
    (
        "create_insight_config",
        {"configuration": {**INSIGHT_CONFIG, "dataType": ""}},
        "configuration.dataType",
    ),
    (
        "create_insight_config",
        {"configuration": {**INSIGHT_CONFIG, "contentTypes": ["text/html"]}},
        "configuration.contentTypes[0]",
    ),
    ("create_insight_config", {"if_exists": "nope"}, "if_exists"),
    ("update_insight_config", {"config_id": "a/b"}, "config_id"),
    ("delete_insight_config", {"config_id": ""}, "config_id"),
    (
        "create_settlement_config",
        {"configuration": {**SETTLEMENT_CONFIG, "providers": ["pay/pal"]}},
        "configuration.providers[0]",
    ),
    (
        "create_settlement_config",
        {"configuration": {**SETTLEMENT_CONFIG, "filetypes": []}},
        "configuration.filetypes",
    ),
    (
        "create_settlement_config",
        {"configuration": {**SETTLEMENT_CONFIG, "destinations": [{"destination_type": "fax"}]}},
        "configuration.destinations[0].destination_type",
    ),
    ("delete_settlement_config", {"config_id": ""}, "config_id"),
]


def _case_id(case: tuple[str, dict[str, Any], str]) -> str:
    op, overrides, _ = case
    return f"{op}-" + ",".join(f"{k}={v!r}" for k, v in overrides.items())[:60]


def _build(op: str, overrides: dict[str, Any], bucket: str) -> Any:
    cls, base = OPERATORS[op]
    kwargs = {**base, **overrides}
    kwargs = {k: bucket if v == BUCKET else v for k, v in kwargs.items()}
    return cls(task_id=f"bad_{op}", **kwargs)


def _fails_before_any_request(
    emu: Any, s3_client: Any, bucket: str, field: str, run: Callable[[], Any]
) -> DinteroInputError:
    STATS["bad_inputs"] += 1
    with pytest.raises(DinteroInputError) as err:
        run()
    assert err.value.field == field, str(err.value)
    assert field in str(err.value)
    assert settled(emu).requests == []
    assert s3_objects(s3_client, bucket) == {}
    return err.value


@pytest.mark.parametrize(("op", "overrides", "field"), CASES, ids=[_case_id(c) for c in CASES])
def test_bad_parameter_fails_before_any_request_naming_the_field(
    emu: Any, s3_bucket: str, s3_client: Any, op: str, overrides: dict[str, Any], field: str
) -> None:
    operator = _build(op, overrides, s3_bucket)
    _fails_before_any_request(emu, s3_client, s3_bucket, field, lambda: operator.execute({}))


# (operator, templated overrides, params the templates render with, field)
TEMPLATED: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    (
        "settlements_to_s3",
        {"account_id": "{{ params.merchant }}"},
        {"merchant": "merchant-one"},
        "account_id",
    ),
    ("settlements_to_s3", {"account_id": "{{ params.missing }}"}, {}, "account_id"),
    ("settlements_to_s3", {"since": "{{ params.day }}"}, {"day": "the 1st of November"}, "since"),
    ("settlements_to_s3", {"s3_key": "{{ params.key }}"}, {"key": "x/{settlement_id}/{nope}"}, "s3_key"),
    ("settlements_to_s3", {"settlement_ids": "{{ params.ids }}"}, {"ids": "[1, 2"}, "settlement_ids"),
    ("settlements_to_s3", {"payment_providers": "{{ params.p }}"}, {"p": "pay/pal"}, "payment_providers"),
    ("insight_to_s3", {"until": "{{ params.u }}"}, {"u": "end of October"}, "until"),
    ("grant", {"scopes": "{{ params.s }}"}, {"s": "read:settlements, write everything"}, "scopes"),
    ("webhook", {"events": "{{ params.e }}"}, {"e": "settlement_add account-gone!"}, "events"),
    ("webhook", {"url": "{{ params.u }}"}, {"u": "http://example.com/h"}, "url"),
    ("api_client", {"secret_variable_key": "secret {{ params.k }}"}, {"k": "x"}, "secret_variable_key"),
]


@pytest.mark.parametrize(
    ("op", "overrides", "params", "field"),
    TEMPLATED,
    ids=[f"{op}-{next(iter(o))}-{i}" for i, (op, o, _p, _f) in enumerate(TEMPLATED)],
)
def test_template_rendering_to_garbage_fails_before_any_request(
    emu: Any,
    s3_bucket: str,
    s3_client: Any,
    op: str,
    overrides: dict[str, Any],
    params: dict[str, Any],
    field: str,
) -> None:
    operator = _build(op, overrides, s3_bucket)
    context: dict[str, Any] = {"params": params}
    for name in operator.template_fields:
        setattr(operator, name, operator.render_template(getattr(operator, name), context))
    _fails_before_any_request(emu, s3_client, s3_bucket, field, lambda: operator.execute(context))


# (connection overrides: top-level or extra, field)
BAD_CONNECTIONS: list[tuple[dict[str, Any], str]] = [
    ({"host": "http://example.com"}, "host"),
    ({"host": "http://10.0.0.1:8080"}, "host"),
    ({"host": "ftp://127.0.0.1"}, "host"),
    ({"login": ""}, "login"),
    ({"password": ""}, "password"),
    ({"extra": {"account_id": "X11200000"}}, "extra.account_id"),
    ({"extra": {"account_id": ""}}, "extra.account_id"),
    ({"extra": {"account_id": "T11200000\n"}}, "extra.account_id"),
    ({"extra": {"checkout_base_url": "http://checkout.example.com"}}, "extra.checkout_base_url"),
    ({"extra": {"timeout": "soon"}}, "extra.timeout"),
    ({"extra": {"timeout": 0}}, "extra.timeout"),
    ({"extra": {"max_retries": -1}}, "extra.max_retries"),
    ({"extra": {"max_retries": "many"}}, "extra.max_retries"),
    ({"extra": {"retry_backoff": "x"}}, "extra.retry_backoff"),
    ({"extra": {"retry_max_wait": -5}}, "extra.retry_max_wait"),
    ({"extra": {"token_refresh_margin": "soon"}}, "extra.token_refresh_margin"),
    ({"extra": {"token_cache": "redis"}}, "extra.token_cache"),
]


@pytest.mark.parametrize(
    ("overrides", "field"), BAD_CONNECTIONS, ids=[f"{f}={json.dumps(o)[:40]}" for o, f in BAD_CONNECTIONS]
)
def test_bad_connection_field_fails_a_transfer_before_any_request(
    emu: Any,
    s3_bucket: str,
    s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    overrides: dict[str, Any],
    field: str,
) -> None:
    conn = json.loads(reliability_connection(emu))
    conn["extra"].update(overrides.pop("extra", {}) if "extra" in overrides else {})
    conn.update(overrides)
    monkeypatch.setenv("AIRFLOW_CONN_DINTERO_DEFAULT", json.dumps(conn))
    operator = SettlementsToS3Operator(task_id="copy", account_id=M, s3_bucket=s3_bucket, since="2026-10-01")
    _fails_before_any_request(emu, s3_client, s3_bucket, field, lambda: operator.execute({}))


LIMITS: dict[str, tuple[Callable[[DinteroPartnerHook, Any], Any], list[Any]]] = {
    "list_settlements": (
        lambda h, n: list(h.list_settlements(M, limit=n)),
        [0, -1, 1001, 10**9, True, "10", 2.5],
    ),
    "list_report_metadata": (
        lambda h, n: list(h.list_report_metadata(M, limit=n)),
        [0, -3, 101, 10**12, None],
    ),
    "list_merchants": (lambda h, n: list(h.list_merchants(limit=n)), [0, -1, 101, False, "100"]),
}
LIMIT_CASES = [(name, bad) for name, (_call, bads) in LIMITS.items() for bad in bads]


@pytest.mark.parametrize(("method", "limit"), LIMIT_CASES, ids=[f"{m}-{b!r}" for m, b in LIMIT_CASES])
def test_negative_or_huge_limit_fails_before_any_request(
    emu: Any, s3_bucket: str, s3_client: Any, method: str, limit: Any
) -> None:
    call, _bads = LIMITS[method]
    hook = DinteroPartnerHook()
    _fails_before_any_request(emu, s3_client, s3_bucket, "limit", lambda: call(hook, limit))


# ------------------------------------------------------------------ properties of the helpers

PURE = settings(max_examples=300, deadline=None)
ACCOUNT = re.compile(r"[PT][0-9]{8}")


@PURE
@given(
    st.one_of(st.text(max_size=12), st.from_regex(r"\A[PT][0-9]{8}\Z"), st.from_regex(r"\A[PT]\d{8}\s?\Z"))
)
def test_validate_account_id_accepts_exactly_t_or_p_and_eight_ascii_digits(value: str) -> None:
    if ACCOUNT.fullmatch(value):
        assert validate_account_id(value, "f") == value
        return
    STATS["bad_inputs"] += 1
    with pytest.raises(DinteroInputError) as err:
        validate_account_id(value, "f")
    assert err.value.field == "f"


@PURE
@given(st.datetimes(timezones=st.one_of(st.none(), st.timezones())))
def test_format_timestamp_of_a_datetime_is_the_same_instant_in_utc(value: datetime) -> None:
    aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    try:
        expected = aware.astimezone(timezone.utc)
    except OverflowError:  # near datetime.min/max there is no UTC equivalent: refused
        STATS["bad_inputs"] += 1
        with pytest.raises(DinteroInputError):
            format_timestamp(value, "since")
        return
    text = format_timestamp(value, "since")
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert parsed == expected  # compared in UTC: a folded local time never equals another zone's


@PURE
@given(st.dates())
def test_format_timestamp_of_a_date_or_its_text_is_the_date(value: date) -> None:
    assert format_timestamp(value, "since") == value.isoformat()


@PURE
@given(
    st.one_of(
        st.text(max_size=30), st.integers(), st.none(), st.floats(), st.lists(st.integers(), max_size=2)
    )
)
def test_format_timestamp_refuses_anything_else_naming_the_field(value: Any) -> None:
    try:
        text = format_timestamp(value, "since")
    except DinteroInputError as exc:
        STATS["bad_inputs"] += 1
        assert exc.field == "since"
        return
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}\.\d{6}Z)?", text), text


def _spellings(member: PayoutProvider) -> list[str]:
    name = member.name.lower()
    return [member.value, member.value.upper(), name, name.replace("_", " ").title(), name.replace("_", "-")]


@PURE
@given(st.sampled_from(list(PayoutProvider)), st.data())
def test_payout_provider_parse_accepts_api_and_product_spellings(member: PayoutProvider, data: Any) -> None:
    spelling = data.draw(st.sampled_from(_spellings(member)))
    assert PayoutProvider.parse(f"  {spelling} ") is member


@PURE
@given(st.text(max_size=15))
def test_payout_provider_parse_refuses_unknown_names_naming_the_field(value: str) -> None:
    key = value.strip().lower().replace(" ", "_").replace("-", "_")
    known = {m.value for m in PayoutProvider} | {m.name.lower() for m in PayoutProvider}
    if key in known:
        return
    STATS["bad_inputs"] += 1
    with pytest.raises(DinteroInputError) as err:
        PayoutProvider.parse(value, field="providers")
    assert err.value.field == "providers"


@PURE
@given(
    limit=st.one_of(st.integers(min_value=-(10**6), max_value=10**6), st.booleans()),
    created=st.booleans(),
    item_created=st.booleans(),
)
def test_settlement_query_checks_limit_and_exclusive_filters(
    limit: Any, created: bool, item_created: bool
) -> None:
    kwargs: dict[str, Any] = {"limit": limit}
    if created:
        kwargs["created_at_gte"] = "2026-10-01"
    if item_created:
        kwargs["item_created_at_gte"] = "2026-10-01"
    limit_ok = not isinstance(limit, bool) and 1 <= limit <= 1000
    if limit_ok and not (created and item_created):
        params = settlement_query(**kwargs)
        assert params["limit"] == limit
        return
    STATS["bad_inputs"] += 1
    with pytest.raises(DinteroInputError) as err:
        settlement_query(**kwargs)
    assert err.value.field == ("limit" if not limit_ok else "created_at_gte")


@PURE
@given(st.integers(min_value=0, max_value=10**6))
def test_parse_retry_after_reads_delta_seconds(seconds: int) -> None:
    assert parse_retry_after(f" {seconds} ") == float(seconds)


@PURE
@given(st.text(max_size=40))
def test_parse_retry_after_never_raises_and_never_goes_negative(value: str) -> None:
    wait = parse_retry_after(value)
    if wait is None:
        STATS["bad_inputs"] += 1
    assert wait is None or wait >= 0


@PURE
@given(
    st.lists(
        st.one_of(
            st.text(alphabet=string.ascii_letters + "/=-_.", max_size=6),
            st.sampled_from([f"{{{f}}}" for f in KEY_FIELDS]),
            st.sampled_from(
                ["{", "}", "{}", "{0}", "{x}", "{account_id!r}", "{settlement_id:>4}", "{a.b}", "{a[0]}"]
            ),
        ),
        max_size=8,
    ).map("".join)
)
def test_key_template_check_accepts_only_known_plain_fields(template: str) -> None:
    try:
        used = key_template_fields(template, KEY_FIELDS)
    except DinteroInputError as exc:
        STATS["bad_inputs"] += 1
        assert exc.field == "s3_key"
        return
    assert set(used) <= set(KEY_FIELDS)
    template.format(**{f: "v" for f in KEY_FIELDS})  # whatever passes the check renders


# ------------------------------------------------------------------ properties of the pagination

PAGING = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _fresh(emu: Any) -> None:
    emu.reset()
    TOKEN_CACHE.clear()


@PAGING
@given(
    extra=st.integers(min_value=0, max_value=14),
    limit=st.integers(min_value=1, max_value=7),
    mode=st.sampled_from(["absent", "when_full"]),
    by_created=st.booleans(),
)
def test_list_settlements_returns_every_item_once_in_order(
    emu: Any, extra: int, limit: int, mode: str, by_created: bool
) -> None:
    _fresh(emu)
    emu.settings.last_page_key_mode = mode
    base = datetime(2026, 10, 1, tzinfo=timezone.utc)
    for i in range(extra):  # some share a settlement date: the key must break the tie
        emu.add_settlement(
            M,
            provider="vipps",
            created_at=base + timedelta(hours=i),
            settled_at=base + timedelta(days=i // 3),
        )
    hook = DinteroPartnerHook()
    filters = {"item_created_at_gte": "2026-01-01"} if by_created else {"created_at_gte": "2026-01-01"}

    reference = [s["id"] for s in hook.list_settlements(M, limit=1000, **filters)]
    paged = [s["id"] for s in hook.list_settlements(M, limit=limit, **filters)]

    assert len(reference) == 6 + extra
    assert paged == reference


@PAGING
@given(
    extra=st.integers(min_value=0, max_value=12),
    limit=st.integers(min_value=1, max_value=5),
    mode=st.sampled_from(["absent", "when_full"]),
)
def test_list_report_metadata_returns_every_report_once_in_order(
    emu: Any, extra: int, limit: int, mode: str
) -> None:
    _fresh(emu)
    emu.settings.reports_cursor_mode = mode
    for i in range(extra):
        emu.add_report(M, data_from=f"2025-{1 + i % 12:02d}-01", data_to=f"2025-{1 + i % 12:02d}-28")
    hook = DinteroPartnerHook()

    reference = [r["id"] for r in hook.list_report_metadata(M, limit=100)]
    paged = [r["id"] for r in hook.list_report_metadata(M, limit=limit)]

    assert len(set(reference)) == len(reference) >= extra
    assert paged == reference


@pytest.fixture(scope="module")
def many_merchants() -> Any:
    """A second emulator whose partner has nine merchants."""
    with DinteroEmulator(EmulatorSeed(merchants=9)) as emu:
        yield emu


@PAGING
@given(limit=st.integers(min_value=1, max_value=10))
def test_list_merchants_returns_every_merchant_once_in_order(
    many_merchants: Any, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    TOKEN_CACHE.clear()
    monkeypatch.setenv("AIRFLOW_CONN_DINTERO_MANY", reliability_connection(many_merchants))
    hook = DinteroPartnerHook("dintero_many")

    paged = [m["account_id"] for m in hook.list_merchants(limit=limit)]

    assert paged == [m["account_id"] for m in hook.list_merchants(limit=100)]
    assert sorted(paged) == sorted(many_merchants.merchant_ids)
