"""
Operators for Dintero report schedules: insight report configurations (scheduled custom
reports, camelCase bodies) and settlement report configurations (email delivery of settlement
reports).

Creating is idempotent: Dintero does not deduplicate, so each create operator first lists the
account's configurations and reuses a matching one (insight: same ``name``; settlement: same
``filetypes``, ``destinations`` and ``providers``).

Example::

    from airflow_provider_dintero.operators.report_configurations import (
        CreateReportConfigurationOperator,
    )

    ensure_schedule = CreateReportConfigurationOperator(
        task_id="ensure_monthly_schedule",
        account_id="T11200001",
        configuration={
            "name": "Monthly transactions",
            "dataType": "checkout/transactions",
            "schedule": "monthly",
            "language": "en",
            "contentTypes": ["application/pdf", "text/csv"],
        },
    )
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_dintero.exceptions import DinteroInputError, DinteroNotFoundError
from airflow_provider_dintero.operators._base import DinteroBaseOperator
from airflow_provider_dintero.validation import validate_account_id
from airflow_provider_dintero.vocabulary import payout_provider_names

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

IfExists = Literal["reuse", "fail", "update"]

INSIGHT_SCHEDULES = ("monthly", "weekly", "daily")
INSIGHT_LANGUAGES = ("no", "en")
INSIGHT_CONTENT_TYPES = ("application/pdf", "text/csv")
INSIGHT_NAME_MAX_LENGTH = 64
SETTLEMENT_DESTINATION_TYPES = ("account_email", "email")
SETTLEMENT_FILTERS = ("payout_destination_id",)
IF_EXISTS_CHOICES = ("reuse", "fail", "update")

# snake_case spellings people reach for, since the rest of Dintero's API uses them
_INSIGHT_CAMEL_CASE = {
    "data_type": "dataType",
    "content_types": "contentTypes",
    "report_filters": "reportFilters",
}
# fields Dintero sets itself; dropped from request bodies so a fetched configuration can be reused
_INSIGHT_READ_ONLY = ("id", "accountId", "account_id", "created_at", "created_by", "updated_at")
_SETTLEMENT_READ_ONLY = (
    "id",
    "account_id",
    "created_at",
    "updated_at",
    "last_send_at",
    "last_modified_at",
)


# ------------------------------------------------------------------------------------ validation


def validate_insight_configuration(configuration: Any, field: str = "configuration") -> dict[str, Any]:
    """
    Check an insight report configuration and return the body to send (read-only fields dropped).

    Raises :class:`DinteroInputError` naming the field at fault, before any request.

    :param configuration: camelCase: ``dataType``, ``schedule``, ``language``, ``name`` required;
        ``emails``, ``reportFilters``, ``contentTypes`` optional.
    :param field: the parameter name used in error messages.
    """
    body = _mapping(configuration, field, "an insight report configuration dict (camelCase fields)")
    for snake, camel in _INSIGHT_CAMEL_CASE.items():
        if snake in body:
            raise DinteroInputError(
                f"{field}.{snake}", f"the camelCase name {camel!r} (insight configurations use camelCase)"
            )
    data_type = body.get("dataType")
    if not isinstance(data_type, str) or not data_type.strip():
        raise DinteroInputError(
            f"{field}.dataType", "a report data type such as 'checkout/transactions'", data_type
        )
    _one_of(body, "schedule", INSIGHT_SCHEDULES, field)
    _one_of(body, "language", INSIGHT_LANGUAGES, field)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > INSIGHT_NAME_MAX_LENGTH:
        raise DinteroInputError(f"{field}.name", f"a name of 1 to {INSIGHT_NAME_MAX_LENGTH} characters", name)
    if "emails" in body:
        emails = _list(body, "emails", field)
        for i, email in enumerate(emails):
            if not isinstance(email, str) or "@" not in email:
                raise DinteroInputError(f"{field}.emails[{i}]", "an email address", email)
    if "contentTypes" in body:
        types = _list(body, "contentTypes", field)
        if not types:
            raise DinteroInputError(
                f"{field}.contentTypes", f"one or more of {', '.join(INSIGHT_CONTENT_TYPES)}"
            )
        for i, content_type in enumerate(types):
            if content_type not in INSIGHT_CONTENT_TYPES:
                raise DinteroInputError(
                    f"{field}.contentTypes[{i}]", f"one of {', '.join(INSIGHT_CONTENT_TYPES)}", content_type
                )
    if "reportFilters" in body:
        _filters(body, "reportFilters", field, None)
    return {k: v for k, v in body.items() if k not in _INSIGHT_READ_ONLY}


def validate_settlement_report_configuration(
    configuration: Any, field: str = "configuration"
) -> dict[str, Any]:
    """
    Check a settlement report configuration and return the body to send.

    Providers are normalised to the API's spelling (``"Swedbank Pay"`` becomes ``payex``);
    read-only fields are dropped. Raises :class:`DinteroInputError` naming the field at fault.

    :param configuration: ``filetypes`` (e.g. ``["pdf", "csv"]``), ``destinations``
        (``[{"destination_type": "email", "destination_value": "..."}]``, empty = store only)
        and ``providers`` (empty = all) required; ``filters`` optional.
    :param field: the parameter name used in error messages.
    """
    body = _mapping(configuration, field, "a settlement report configuration dict")
    filetypes = _list(body, "filetypes", field, required=True)
    if not filetypes:
        raise DinteroInputError(f"{field}.filetypes", "one or more file types, e.g. ['pdf', 'csv']")
    for i, filetype in enumerate(filetypes):
        if not isinstance(filetype, str) or not filetype.strip():
            raise DinteroInputError(f"{field}.filetypes[{i}]", "a file type such as 'pdf' or 'csv'", filetype)
    destinations = _list(body, "destinations", field, required=True)
    for i, dest in enumerate(destinations):
        where = f"{field}.destinations[{i}]"
        if not isinstance(dest, Mapping):
            raise DinteroInputError(where, "a dict with destination_type and destination_value", dest)
        kind = dest.get("destination_type")
        if kind not in SETTLEMENT_DESTINATION_TYPES:
            raise DinteroInputError(
                f"{where}.destination_type", f"one of {', '.join(SETTLEMENT_DESTINATION_TYPES)}", kind
            )
        value = dest.get("destination_value")
        if kind == "email" and (not isinstance(value, str) or "@" not in value):
            raise DinteroInputError(f"{where}.destination_value", "an email address", value)
    providers = _list(body, "providers", field, required=True)
    normalised = list(
        dict.fromkeys(
            name
            for i, p in enumerate(providers)
            for name in payout_provider_names(p, field=f"{field}.providers[{i}]")
        )
    )
    if "filters" in body:
        _filters(body, "filters", field, SETTLEMENT_FILTERS)
    out = {k: v for k, v in body.items() if k not in _SETTLEMENT_READ_ONLY}
    out["providers"] = normalised
    out["destinations"] = [dict(d) for d in destinations]
    return out


def _mapping(value: Any, field: str, expected: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise DinteroInputError(field, expected, value)
    return dict(value)


def _one_of(body: Mapping[str, Any], name: str, choices: Sequence[str], field: str) -> None:
    if body.get(name) not in choices:
        raise DinteroInputError(f"{field}.{name}", f"one of {', '.join(choices)}", body.get(name))


def _list(body: Mapping[str, Any], name: str, field: str, *, required: bool = False) -> list[Any]:
    if name not in body:
        if required:
            raise DinteroInputError(f"{field}.{name}", "a list (required)")
        return []
    value = body[name]
    if not isinstance(value, (list, tuple)):
        raise DinteroInputError(f"{field}.{name}", "a list", value)
    return list(value)


def _filters(body: Mapping[str, Any], name: str, field: str, allowed: Sequence[str] | None) -> None:
    for i, item in enumerate(_list(body, name, field)):
        where = f"{field}.{name}[{i}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("filter"), str) or "value" not in item:
            raise DinteroInputError(where, "a dict with 'filter' and 'value'", item)
        if allowed is not None and item["filter"] not in allowed:
            raise DinteroInputError(f"{where}.filter", f"one of {', '.join(allowed)}", item["filter"])


def _check_if_exists(value: Any) -> IfExists:
    if value not in IF_EXISTS_CHOICES:
        raise DinteroInputError("if_exists", f"one of {', '.join(IF_EXISTS_CHOICES)}", value)
    return value


def _check_config_id(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or "/" in value:
        raise DinteroInputError("config_id", "a report configuration id", value)
    return value.strip()


def _differs(wanted: Mapping[str, Any], existing: Mapping[str, Any]) -> list[str]:
    """The fields of ``wanted`` whose value ``existing`` does not have."""
    return sorted(k for k, v in wanted.items() if existing.get(k) != v)


def _settlement_identity(
    config: Mapping[str, Any],
) -> tuple[frozenset[str], frozenset[tuple[str, str]], frozenset[str]]:
    """What makes two settlement report configurations the same: file types, destinations, providers."""
    destinations = frozenset(
        (str(d.get("destination_type")), str(d.get("destination_value") or ""))
        for d in config.get("destinations") or []
        if isinstance(d, Mapping)
    )
    return (
        frozenset(str(f).lower() for f in config.get("filetypes") or []),
        destinations,
        frozenset(str(p) for p in config.get("providers") or []),
    )


# ------------------------------------------------------------------------------------ base


class _ReportConfigurationOperator(DinteroBaseOperator):
    """Shared set-up: the account on top of the connection and the hook."""

    template_fields: Sequence[str] = ("account_id",)
    ui_color = "#f0e6ff"

    def __init__(self, *, account_id: str, dintero_conn_id: str = "dintero_default", **kwargs: Any) -> None:
        super().__init__(dintero_conn_id=dintero_conn_id, **kwargs)
        self.account_id = account_id

    def _account(self) -> str:
        return validate_account_id(self.account_id)


class _UpdateConfigurationOperator(_ReportConfigurationOperator):
    """Replace one configuration by id; subclasses say which kind (validation and endpoint)."""

    template_fields: Sequence[str] = ("account_id", "config_id", "configuration")
    template_fields_renderers = {"configuration": "json"}
    _what = "report configuration"

    def __init__(
        self,
        *,
        account_id: str,
        config_id: str,
        configuration: dict[str, Any],
        dintero_conn_id: str = "dintero_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(account_id=account_id, dintero_conn_id=dintero_conn_id, **kwargs)
        self.config_id = config_id
        self.configuration = configuration

    def _validate(self, configuration: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _put(self, account_id: str, config_id: str, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def execute(self, context: Context) -> dict[str, Any]:
        """Replace the configuration; return it."""
        account_id = self._account()
        config_id = _check_config_id(self.config_id)
        body = self._validate(self.configuration)
        updated = self._put(account_id, config_id, body)
        self.log.info("Updated %s %s of account %s", self._what, config_id, account_id)
        return updated


class _DeleteConfigurationOperator(_ReportConfigurationOperator):
    """Delete one configuration by id; subclasses say which kind (endpoint)."""

    template_fields: Sequence[str] = ("account_id", "config_id")
    _what = "report configuration"

    def __init__(
        self,
        *,
        account_id: str,
        config_id: str,
        missing_ok: bool = True,
        dintero_conn_id: str = "dintero_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(account_id=account_id, dintero_conn_id=dintero_conn_id, **kwargs)
        self.config_id = config_id
        self.missing_ok = missing_ok

    def _delete(self, account_id: str, config_id: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def execute(self, context: Context) -> dict[str, Any] | None:
        """Delete the configuration."""
        account_id = self._account()
        config_id = _check_config_id(self.config_id)
        try:
            deleted = self._delete(account_id, config_id)
        except DinteroNotFoundError:
            if not self.missing_ok:
                raise
            self.log.info(
                "%s %s of account %s does not exist; nothing to delete",
                self._what.capitalize(),
                config_id,
                account_id,
            )
            return None
        self.log.info("Deleted %s %s of account %s", self._what, config_id, account_id)
        return deleted


# ------------------------------------------------------------------------------------ insight


class CreateReportConfigurationOperator(_ReportConfigurationOperator):
    """
    Make sure an insight report schedule exists; idempotent by ``name``.

    When the account already has a configuration with the same ``name``: ``if_exists="reuse"``
    returns it unchanged, ``"update"`` replaces it if any given field differs, ``"fail"`` raises.
    Returns the configuration (with its ``id``).

    :param account_id: the merchant account, e.g. ``T11200001``.
    :param configuration: camelCase body: ``dataType``, ``schedule`` (monthly, weekly, daily),
        ``language`` (no, en) and ``name`` required; ``emails``, ``reportFilters``,
        ``contentTypes`` (application/pdf, text/csv) optional.
    :param if_exists: ``reuse`` (default), ``fail`` or ``update``.
    :param dintero_conn_id: the Dintero connection.

    Example::

        CreateReportConfigurationOperator(
            task_id="ensure_monthly_schedule",
            account_id="T11200001",
            configuration={"name": "Monthly", "dataType": "checkout/transactions",
                           "schedule": "monthly", "language": "en"},
            if_exists="update",
        )
    """

    template_fields: Sequence[str] = ("account_id", "configuration")
    template_fields_renderers = {"configuration": "json"}

    def __init__(
        self,
        *,
        account_id: str,
        configuration: dict[str, Any],
        if_exists: IfExists = "reuse",
        dintero_conn_id: str = "dintero_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(account_id=account_id, dintero_conn_id=dintero_conn_id, **kwargs)
        self.configuration = configuration
        self.if_exists = if_exists

    def execute(self, context: Context) -> dict[str, Any]:
        """Create, reuse or update the configuration; return it."""
        account_id = self._account()
        body = validate_insight_configuration(self.configuration)
        if_exists = _check_if_exists(self.if_exists)
        name = body["name"]
        matches = [c for c in self.hook.list_report_configurations(account_id) if c.get("name") == name]
        if not matches:
            created = self.hook.create_report_configuration(account_id, body)
            self.log.info(
                "Created insight report configuration %s (%r, %s) for account %s",
                created.get("id"),
                name,
                body["schedule"],
                account_id,
            )
            return created
        existing = matches[0]
        if len(matches) > 1:
            self.log.warning(
                "Account %s has %s insight report configurations named %r; using %s",
                account_id,
                len(matches),
                name,
                existing.get("id"),
            )
        if if_exists == "fail":
            raise AirflowException(
                f"Account {account_id} already has insight report configuration {existing.get('id')} "
                f"named {name!r} (if_exists='fail')"
            )
        changed = _differs(body, existing)
        if if_exists == "update" and changed:
            updated = self.hook.update_report_configuration(account_id, str(existing["id"]), body)
            self.log.info(
                "Updated insight report configuration %s (%r) of account %s: %s changed",
                existing.get("id"),
                name,
                account_id,
                ", ".join(changed),
            )
            return updated
        self.log.info(
            "Account %s already has insight report configuration %s named %r; reusing it%s",
            account_id,
            existing.get("id"),
            name,
            f" (differs in {', '.join(changed)}; pass if_exists='update' to change it)" if changed else "",
        )
        return existing


class ListReportConfigurationsOperator(_ReportConfigurationOperator):
    """
    Return the insight report configurations of an account.

    :param account_id: the merchant account, e.g. ``T11200001``.
    :param dintero_conn_id: the Dintero connection.

    Example::

        ListReportConfigurationsOperator(task_id="list_schedules", account_id="T11200001")
    """

    def execute(self, context: Context) -> list[dict[str, Any]]:
        """List the configurations."""
        account_id = self._account()
        configs = self.hook.list_report_configurations(account_id)
        self.log.info("Account %s has %s insight report configuration(s)", account_id, len(configs))
        return configs


class UpdateReportConfigurationOperator(_UpdateConfigurationOperator):
    """
    Replace an insight report configuration (Dintero's PUT takes the full configuration).

    :param account_id: the merchant account, e.g. ``T11200001``.
    :param config_id: the configuration's id.
    :param configuration: the full camelCase configuration (see
        :class:`CreateReportConfigurationOperator`).
    :param dintero_conn_id: the Dintero connection.

    Example::

        UpdateReportConfigurationOperator(
            task_id="weekly_instead",
            account_id="T11200001",
            config_id="{{ ti.xcom_pull(task_ids='ensure_monthly_schedule')['id'] }}",
            configuration={"name": "Weekly", "dataType": "checkout/transactions",
                           "schedule": "weekly", "language": "en"},
        )
    """

    _what = "insight report configuration"

    def _validate(self, configuration: Any) -> dict[str, Any]:
        return validate_insight_configuration(configuration)

    def _put(self, account_id: str, config_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.hook.update_report_configuration(account_id, config_id, body)


class DeleteReportConfigurationOperator(_DeleteConfigurationOperator):
    """
    Delete an insight report configuration; a missing one is fine unless ``missing_ok=False``.

    Returns the deleted configuration, or ``None`` when there was none.

    :param account_id: the merchant account, e.g. ``T11200001``.
    :param config_id: the configuration's id.
    :param missing_ok: treat an unknown configuration as already deleted.
    :param dintero_conn_id: the Dintero connection.

    Example::

        DeleteReportConfigurationOperator(task_id="drop_schedule", account_id="T11200001", config_id="...")
    """

    _what = "insight report configuration"

    def _delete(self, account_id: str, config_id: str) -> dict[str, Any] | None:
        return self.hook.delete_report_configuration(account_id, config_id)


# ------------------------------------------------------------------------------------ settlement


class CreateSettlementReportConfigurationOperator(_ReportConfigurationOperator):
    """
    Make sure a settlement report configuration exists; idempotent by its content.

    A configuration with the same ``filetypes``, ``destinations`` (type and value) and
    ``providers`` (order ignored) counts as existing: ``if_exists="reuse"`` returns it,
    ``"update"`` replaces it if any other given field (``filters``) differs, ``"fail"`` raises.

    :param account_id: the merchant account, e.g. ``T11200001``.
    :param configuration: ``filetypes``, ``destinations`` and ``providers`` required (empty
        ``destinations`` = store only, empty ``providers`` = all); ``filters`` optional.
    :param if_exists: ``reuse`` (default), ``fail`` or ``update``.
    :param dintero_conn_id: the Dintero connection.

    Example::

        CreateSettlementReportConfigurationOperator(
            task_id="email_settlements",
            account_id="T11200001",
            configuration={
                "filetypes": ["pdf", "csv"],
                "destinations": [{"destination_type": "email", "destination_value": "finance@example.com"}],
                "providers": [],
            },
        )
    """

    template_fields: Sequence[str] = ("account_id", "configuration")
    template_fields_renderers = {"configuration": "json"}

    def __init__(
        self,
        *,
        account_id: str,
        configuration: dict[str, Any],
        if_exists: IfExists = "reuse",
        dintero_conn_id: str = "dintero_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(account_id=account_id, dintero_conn_id=dintero_conn_id, **kwargs)
        self.configuration = configuration
        self.if_exists = if_exists

    def execute(self, context: Context) -> dict[str, Any]:
        """Create, reuse or update the configuration; return it."""
        account_id = self._account()
        body = validate_settlement_report_configuration(self.configuration)
        if_exists = _check_if_exists(self.if_exists)
        identity = _settlement_identity(body)
        existing = next(
            (
                c
                for c in self.hook.list_settlement_report_configurations(account_id)
                if _settlement_identity(c) == identity
            ),
            None,
        )
        if existing is None:
            created = self.hook.create_settlement_report_configuration(account_id, body)
            self.log.info(
                "Created settlement report configuration %s (%s) for account %s",
                created.get("id"),
                ", ".join(body["filetypes"]),
                account_id,
            )
            return created
        if if_exists == "fail":
            raise AirflowException(
                f"Account {account_id} already has settlement report configuration {existing.get('id')} "
                "with these filetypes, destinations and providers (if_exists='fail')"
            )
        changed = [k for k in _differs(body, existing) if k not in ("filetypes", "destinations", "providers")]
        if if_exists == "update" and changed:
            updated = self.hook.update_settlement_report_configuration(account_id, str(existing["id"]), body)
            self.log.info(
                "Updated settlement report configuration %s of account %s: %s changed",
                existing.get("id"),
                account_id,
                ", ".join(changed),
            )
            return updated
        self.log.info(
            "Account %s already has settlement report configuration %s with these filetypes, "
            "destinations and providers; reusing it",
            account_id,
            existing.get("id"),
        )
        return existing


class ListSettlementReportConfigurationsOperator(_ReportConfigurationOperator):
    """
    Return the settlement report configurations of an account (all pages).

    :param account_id: the merchant account, e.g. ``T11200001``.
    :param dintero_conn_id: the Dintero connection.

    Example::

        ListSettlementReportConfigurationsOperator(task_id="list_deliveries", account_id="T11200001")
    """

    def execute(self, context: Context) -> list[dict[str, Any]]:
        """List the configurations."""
        account_id = self._account()
        configs = list(self.hook.list_settlement_report_configurations(account_id))
        self.log.info("Account %s has %s settlement report configuration(s)", account_id, len(configs))
        return configs


class UpdateSettlementReportConfigurationOperator(_UpdateConfigurationOperator):
    """
    Replace a settlement report configuration.

    :param account_id: the merchant account, e.g. ``T11200001``.
    :param config_id: the configuration's id.
    :param configuration: the full configuration (see
        :class:`CreateSettlementReportConfigurationOperator`).
    :param dintero_conn_id: the Dintero connection.

    Example::

        UpdateSettlementReportConfigurationOperator(
            task_id="pdf_only",
            account_id="T11200001",
            config_id="...",
            configuration={"filetypes": ["pdf"], "destinations": [], "providers": []},
        )
    """

    _what = "settlement report configuration"

    def _validate(self, configuration: Any) -> dict[str, Any]:
        return validate_settlement_report_configuration(configuration)

    def _put(self, account_id: str, config_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.hook.update_settlement_report_configuration(account_id, config_id, body)


class DeleteSettlementReportConfigurationOperator(_DeleteConfigurationOperator):
    """
    Delete a settlement report configuration; a missing one is fine unless ``missing_ok=False``.

    :param account_id: the merchant account, e.g. ``T11200001``.
    :param config_id: the configuration's id.
    :param missing_ok: treat an unknown configuration as already deleted.
    :param dintero_conn_id: the Dintero connection.

    Example::

        DeleteSettlementReportConfigurationOperator(
            task_id="stop_emails", account_id="T11200001", config_id="..."
        )
    """

    _what = "settlement report configuration"

    def _delete(self, account_id: str, config_id: str) -> dict[str, Any] | None:
        return self.hook.delete_settlement_report_configuration(account_id, config_id)
