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

from airflow_provider_dintero.exceptions import DinteroNotFoundError
from airflow_provider_dintero.operators._base import DinteroBaseOperator
from airflow_provider_dintero.validation import (
    validate_account_id,
    validate_choice,
    validate_config_id,
    validate_insight_configuration,
    validate_settlement_report_configuration,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

IfExists = Literal["reuse", "fail", "update"]
IF_EXISTS_CHOICES: tuple[IfExists, ...] = ("reuse", "fail", "update")


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
        config_id = validate_config_id(self.config_id)
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
        config_id = validate_config_id(self.config_id)
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


class _CreateConfigurationOperator(_ReportConfigurationOperator):
    """
    Make sure one configuration exists: reuse the one matching the body, else create it;
    subclasses say which kind (validation, matching rule and endpoints).
    """

    template_fields: Sequence[str] = ("account_id", "configuration")
    template_fields_renderers = {"configuration": "json"}
    _what = "report configuration"

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

    def _validate(self, configuration: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _find(self, account_id: str, body: dict[str, Any]) -> dict[str, Any] | None:
        raise NotImplementedError

    def _matching(self, body: dict[str, Any]) -> str:
        """How the existing configuration matches ``body``, for logs and errors."""
        raise NotImplementedError

    def _changed(self, body: dict[str, Any], existing: dict[str, Any]) -> list[str]:
        """The fields ``if_exists="update"`` would change."""
        return _differs(body, existing)

    def _post(self, account_id: str, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _put(self, account_id: str, config_id: str, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def execute(self, context: Context) -> dict[str, Any]:
        """Create, reuse or update the configuration; return it."""
        account_id = self._account()
        body = self._validate(self.configuration)
        if_exists = validate_choice(self.if_exists, "if_exists", IF_EXISTS_CHOICES)
        existing = self._find(account_id, body)
        if existing is None:
            return self._create(account_id, body)
        return self._reuse(existing, body, if_exists, account_id)

    def _create(self, account_id: str, body: dict[str, Any]) -> dict[str, Any]:
        created = self._post(account_id, body)
        self.log.info(
            "Created %s %s %s for account %s", self._what, created.get("id"), self._matching(body), account_id
        )
        return created

    def _reuse(
        self, existing: dict[str, Any], body: dict[str, Any], if_exists: IfExists, account_id: str
    ) -> dict[str, Any]:
        """Return ``existing``, replaced by ``body`` first with ``"update"``; fail with ``"fail"``."""
        if if_exists == "fail":
            raise AirflowException(
                f"Account {account_id} already has {self._what} {existing.get('id')} "
                f"{self._matching(body)} (if_exists='fail')"
            )
        changed = self._changed(body, existing)
        if if_exists == "update" and changed:
            updated = self._put(account_id, str(existing["id"]), body)
            self.log.info(
                "Updated %s %s of account %s: %s changed",
                self._what,
                existing.get("id"),
                account_id,
                ", ".join(changed),
            )
            return updated
        self.log.info(
            "Account %s already has %s %s %s; reusing it%s",
            account_id,
            self._what,
            existing.get("id"),
            self._matching(body),
            f" (differs in {', '.join(changed)}; pass if_exists='update' to change it)" if changed else "",
        )
        return existing


# ------------------------------------------------------------------------------------ insight


class CreateReportConfigurationOperator(_CreateConfigurationOperator):
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

    _what = "insight report configuration"

    def _validate(self, configuration: Any) -> dict[str, Any]:
        return validate_insight_configuration(configuration)

    def _find(self, account_id: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The first configuration with the same ``name`` (more than one is logged)."""
        name = body["name"]
        matches = [c for c in self.hook.list_report_configurations(account_id) if c.get("name") == name]
        if len(matches) > 1:
            self.log.warning(
                "Account %s has %s insight report configurations named %r; using %s",
                account_id,
                len(matches),
                name,
                matches[0].get("id"),
            )
        return matches[0] if matches else None

    def _matching(self, body: dict[str, Any]) -> str:
        return f"named {body['name']!r}"

    def _post(self, account_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.hook.create_report_configuration(account_id, body)

    def _put(self, account_id: str, config_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.hook.update_report_configuration(account_id, config_id, body)


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


class CreateSettlementReportConfigurationOperator(_CreateConfigurationOperator):
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

    _what = "settlement report configuration"

    def _validate(self, configuration: Any) -> dict[str, Any]:
        return validate_settlement_report_configuration(configuration)

    def _find(self, account_id: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The first configuration with the same file types, destinations and providers."""
        identity = _settlement_identity(body)
        return next(
            (
                c
                for c in self.hook.list_settlement_report_configurations(account_id)
                if _settlement_identity(c) == identity
            ),
            None,
        )

    def _matching(self, body: dict[str, Any]) -> str:
        return "with these filetypes, destinations and providers"

    def _changed(self, body: dict[str, Any], existing: dict[str, Any]) -> list[str]:
        return [k for k in _differs(body, existing) if k not in ("filetypes", "destinations", "providers")]

    def _post(self, account_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.hook.create_settlement_report_configuration(account_id, body)

    def _put(self, account_id: str, config_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.hook.update_settlement_report_configuration(account_id, config_id, body)


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
