"""
Sensor that waits for new Dintero settlements of an account, of a list of merchants, or of every
merchant of a partner.

Example::

    from datetime import timedelta

    from airflow_provider_dintero.sensors.settlements import SettlementSensor

    wait = SettlementSensor(
        task_id="wait_for_settlements",
        account_id="T11200001",
        payment_providers=["vipps", "swedbank_pay"],
        lookback=timedelta(hours=2),
        mode="reschedule",
        poke_interval=600,
        timeout=6 * 3600,
    )

    # every merchant of the partner in one sensor; the copy maps over the merchants found
    wait_all = SettlementSensor(task_id="wait_for_any", all_merchants=True, deferrable=True)
    SettlementsToS3Operator.partial(task_id="copy", s3_bucket="finance").expand_kwargs(
        wait_all.output.map(settlement_copy_kwargs)
    )
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_dintero.exceptions import DinteroApiError, DinteroInputError
from airflow_provider_dintero.hooks.dintero import DinteroAsyncHook, DinteroPartnerHook
from airflow_provider_dintero.poller import (
    DEFAULT_MAX_CONCURRENCY,
    SettlementPoller,
    access_error_message,
    check_account_ids,
    check_concurrency,
    listed_ids,
    listing_keys,
    payload_settlement_ids,
    settlement_summary,
    sweep_blocking,
    sweep_error,
    sweep_payload,
)
from airflow_provider_dintero.settlements import format_timestamp, parse_payment_providers, run_window
from airflow_provider_dintero.triggers.settlements import PartnerSettlementTrigger, SettlementTrigger
from airflow_provider_dintero.validation import validate_account_id

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: The XCom key under which a many-merchant sensor names the merchants it could not read.
NOT_COLLECTED = "not_collected"


def _as_bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise DinteroInputError(field, "true or false", value)


#: The most merchants one batch may hold (a mapped copy task handles one batch).
MAX_BATCH_SIZE = 10_000


def check_batch_size(value: Any) -> int:
    """
    Return ``value`` as a batch size (1 to :data:`MAX_BATCH_SIZE`); raise otherwise.

    :param value: the configured batch size.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BATCH_SIZE:
        raise DinteroInputError("batch_size", f"a whole number from 1 to {MAX_BATCH_SIZE}", value)
    return value


def settlement_copy_kwargs(result: dict[str, Any]) -> dict[str, Any]:
    """
    The :class:`~airflow_provider_dintero.transfers.settlements_to_s3.SettlementsToS3Operator`
    keyword arguments for one merchant of a many-merchant sensor's result: ``{"account_id",
    "settlement_ids"}``. Use it as ``wait.output.map(settlement_copy_kwargs)`` with
    ``.expand_kwargs(...)``.

    :param result: one item of the sensor's result list.
    """
    return {"account_id": result["account_id"], "settlement_ids": list(result["settlement_ids"])}


class SettlementSensor(BaseSensorOperator):
    """
    Wait until settlements recorded by Dintero on or after ``since`` exist for an account.

    "Recorded" is the settlement's ``created_at`` (the list's ``item_created_at`` filter), not
    its settlement date: a provider's file that arrives late still counts when it arrives.

    ``since`` defaults to the data interval start minus ``lookback`` (the overlap catches files
    recorded just before the interval began while the previous run was checking). When the
    interval is empty (Airflow 3's ``CronTriggerTimetable``) or missing (a manual run), the
    window is the day ending at the interval end, the logical date, or now: see :func:`run_window`.

    On success the sensor returns (pushes to XCom)
    ``{"account_id", "since", "settlement_ids": [...], "settlements": [{"id", "provider",
    "created_at", "settled_at", "attachments": [{"id", "created_by", "extension",
    "content_type"}]}]}``.

    **Many merchants.** With ``account_ids=[...]`` or ``all_merchants=True`` (instead of
    ``account_id``) one sensor watches many merchants in one sweep, at most ``max_concurrency``
    at a time (partner-wide: every merchant the partner connection lists, again at each sweep).
    Each merchant is polled on its own, with its own deadline: one that cannot be read
    (403/404) or fails is named with its reason and delays no other. It succeeds when **at
    least one** merchant has new settlements and returns a list with one item
    ``{"account_id", "since", "settlement_ids": [...], "count"}`` (ids only, no settlement
    summaries: the result stays small in XCom whatever the number of merchants) for **every
    merchant found in that sweep** (merchants without new settlements are left out); the
    merchants not read in that sweep are pushed under the XCom key ``not_collected``
    (``{account id: {"status": "could not be read" | "failed", "reason"}}``).
    While nothing is found it keeps waiting, except that an explicit list naming a merchant the
    connection may not read fails at once, as does a sweep in which no merchant could be read.
    Map the copy over it:
    ``SettlementsToS3Operator.partial(...).expand_kwargs(wait.output.map(settlement_copy_kwargs))``.
    Deferred, the sweep runs in the triggerer as one
    :class:`~airflow_provider_dintero.triggers.settlements.PartnerSettlementTrigger` whatever the
    number of merchants; poke and reschedule modes run the same sweep in the worker.

    It works in ``poke`` and ``reschedule`` modes and, with ``deferrable=True``, checks once and
    then waits in the triggerer (:class:`~airflow_provider_dintero.triggers.settlements.SettlementTrigger`).
    An API error never counts as found: a 403 or 404 fails the task at once with a message
    naming the account and the grant it needs; other errors (after the hook's retries) fail the
    try, so the task's ``retries`` apply.

    :param account_id: the merchant (or the connection's own account). Templated.
    :param account_ids: many merchants instead of one. Templated.
    :param all_merchants: every merchant of the connection's partner instead of one.
    :param max_concurrency: merchants polled at the same time in a many-merchant sweep.
    :param batch_size: many merchants only: return the merchants found grouped into batches of
        at most this many, each ``{account id: [settlement ids]}`` (ids only, small in XCom),
        to map ``SettlementsToS3Operator.partial(...).expand(merchants=wait.output)`` over:
        one mapped task per batch, so the number of mapped tasks stays under Airflow's
        ``[core] max_map_length`` (1,024) at 10,000 merchants and more.
    :param payment_providers: only settlements from these payout providers (API or product
        names, e.g. ``["vipps", "Walley"]``); ``None`` for all. Templated.
    :param since: date or ISO-8601 timestamp; settlements created on or after it count.
        Templated. Default: see above.
    :param lookback: overlap subtracted from the default ``since``.
    :param deferrable: wait in the triggerer instead of a worker slot (not templated: Airflow
        decides how the task waits from the operator as written).
    :param poll_interval: seconds between two checks (also the default ``poke_interval``).
    :param dintero_conn_id: the Dintero connection id.
    """

    template_fields: Sequence[str] = ("account_id", "account_ids", "payment_providers", "since")
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        account_id: str | None = None,
        account_ids: Sequence[str] | None = None,
        all_merchants: bool = False,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        batch_size: int | None = None,
        payment_providers: Sequence[str] | str | None = None,
        since: str | datetime | None = None,
        lookback: timedelta = timedelta(hours=1),
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 60.0,
        dintero_conn_id: str = DinteroPartnerHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.account_id = account_id
        self.account_ids = account_ids
        self.all_merchants = all_merchants
        self.max_concurrency = max_concurrency
        self.batch_size = batch_size
        self.payment_providers = payment_providers
        self.since = since
        self.lookback = lookback
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.dintero_conn_id = dintero_conn_id

    @cached_property
    def hook(self) -> DinteroPartnerHook:
        """The Dintero hook."""
        return DinteroPartnerHook(dintero_conn_id=self.dintero_conn_id)

    # ------------------------------------------------------------------ inputs

    def resolve_since(self, context: Context) -> str:
        """
        Return ``since`` as Dintero's ISO-8601 UTC form (see the class docstring for the default).

        :param context: the task context.
        """
        if self.since not in (None, ""):
            return format_timestamp(self.since, "since")
        if not isinstance(self.lookback, timedelta):
            raise DinteroInputError("lookback", "a datetime.timedelta", self.lookback)
        start, _end = run_window(context)
        return format_timestamp(start - self.lookback, "since")

    def _many(self) -> tuple[bool, list[str] | None]:
        """``(many merchants?, the explicit list or None for all)``; raise on a bad combination."""
        everyone = _as_bool(self.all_merchants, "all_merchants")
        given = [
            name
            for name, on in (
                ("account_id", self.account_id not in (None, "")),
                ("account_ids", self.account_ids is not None),
                ("all_merchants", everyone),
            )
            if on
        ]
        if len(given) != 1:
            raise DinteroInputError(
                ", ".join(given) or "account_id",
                "exactly one of account_id, account_ids or all_merchants=True",
            )
        if given[0] == "account_id":
            return False, None
        check_concurrency(self.max_concurrency)
        if self.batch_size is not None:
            check_batch_size(self.batch_size)
        return True, check_account_ids(self.account_ids) if given[0] == "account_ids" else None

    def _validate(self, context: Context) -> tuple[str, str, list[str] | None]:
        account_id = validate_account_id(self.account_id)
        providers = parse_payment_providers(self.payment_providers)
        return account_id, self.resolve_since(context), providers

    # ------------------------------------------------------------------ modes

    def execute(self, context: Context) -> Any:
        """Check once; then poke/reschedule, or defer to the trigger when ``deferrable``."""
        many, account_ids = self._many()
        if many:
            return self._execute_many(context, account_ids)
        account_id, since, providers = self._validate(context)
        if not _as_bool(self.deferrable, "deferrable"):
            return super().execute(context)
        found = self._find(account_id, since, providers)
        if found is not None:
            return found
        self._defer(
            f"account {account_id}",
            since,
            SettlementTrigger(
                account_id=account_id,
                since=since,
                payment_providers=providers,
                dintero_conn_id=self.dintero_conn_id,
                poll_interval=self.poll_interval,
                first_poll_after=self.poll_interval,
            ),
        )

    def poke(self, context: Context) -> PokeReturnValue:
        """
        Look for settlements once.

        :param context: the task context.
        """
        many, account_ids = self._many()
        if many:
            since = self.resolve_since(context)
            results = self._sweep(
                account_ids, since, parse_payment_providers(self.payment_providers), context
            )
            return PokeReturnValue(is_done=bool(results), xcom_value=results or None)
        account_id, since, providers = self._validate(context)
        found = self._find(account_id, since, providers)
        return PokeReturnValue(is_done=found is not None, xcom_value=found)

    def _execute_many(self, context: Context, account_ids: list[str] | None) -> Any:
        if not _as_bool(self.deferrable, "deferrable"):
            return super().execute(context)
        since = self.resolve_since(context)
        providers = parse_payment_providers(self.payment_providers)
        found = self._sweep(account_ids, since, providers, context)
        if found:
            return found
        self._defer(
            f"{len(account_ids)} merchant(s)" if account_ids else "any merchant of the partner",
            since,
            PartnerSettlementTrigger(
                since=since,
                account_ids=account_ids,
                payment_providers=providers,
                dintero_conn_id=self.dintero_conn_id,
                poll_interval=self.poll_interval,
                max_concurrency=self.max_concurrency,
                first_poll_after=self.poll_interval,
            ),
        )

    def _defer(self, what: str, since: str, trigger: SettlementTrigger | PartnerSettlementTrigger) -> None:
        self.log.info("No settlements yet for %s created since %s; deferring to the triggerer", what, since)
        self.defer(
            trigger=trigger,
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """
        Handle the trigger's event: return what was found, or fail.

        :param context: the task context.
        :param event: the trigger's event payload.
        """
        if not event:
            raise AirflowException(
                f"The settlement trigger for account {self.account_id or 'the merchants'} sent no event"
            )
        if event.get("status") == "success" and "merchants" in event:
            return self._many_result(event, context)
        if event.get("status") == "success":
            settlements = event.get("settlements") or []
            self.log.info(
                "The triggerer found %s settlement(s) for account %s",
                len(settlements),
                event.get("account_id"),
            )
            return self._result(str(event.get("account_id")), str(event.get("since")), settlements)
        message = str(event.get("message") or "unknown error")
        if event.get("status_code") in (403, 404):
            raise AirflowFailException(message)
        raise DinteroApiError(message, status=event.get("status_code"), account_id=event.get("account_id"))

    # ------------------------------------------------------------------ helpers

    def _find(self, account_id: str, since: str, providers: list[str] | None) -> dict[str, Any] | None:
        try:
            items = list(
                self.hook.list_settlements(account_id, item_created_at_gte=since, payment_providers=providers)
            )
        except DinteroApiError as exc:
            if exc.status in (403, 404):
                raise AirflowFailException(access_error_message(account_id, exc)) from exc
            raise
        if not items:
            self.log.info(
                "No settlements for account %s created since %s%s",
                account_id,
                since,
                f" from {', '.join(providers)}" if providers else "",
            )
            return None
        self.log.info("Found %s settlement(s) for account %s created since %s", len(items), account_id, since)
        return self._result(account_id, since, [settlement_summary(s) for s in items])

    def _sweep(
        self, account_ids: list[str] | None, since: str, providers: list[str] | None, context: Context
    ) -> list[dict[str, Any]]:
        poller = SettlementPoller(
            self.hook_async(),
            account_ids=account_ids,
            payment_providers=providers,
            max_concurrency=self.max_concurrency,
            each=listing_keys,
        )
        try:
            sweep = sweep_blocking(poller, lambda _aid: since, listed_ids)
        except DinteroApiError as exc:
            if exc.status in (403, 404):
                raise AirflowFailException(access_error_message(str(exc.account_id), exc)) from exc
            raise
        if not sweep.found:
            error = sweep_error(sweep, partner_wide=account_ids is None)
            if isinstance(error, DinteroApiError) and error.status in (403, 404):
                raise AirflowFailException(access_error_message(str(error.account_id), error)) from error
            if error is not None:
                raise error
            self.log.info(
                "No settlements created since %s for any of %s merchant(s) read (%s could not be read, "
                "%s failed)",
                since,
                sweep.read,
                len(sweep.skipped),
                len(sweep.failed),
            )
            return []
        return self._many_result(sweep_payload(sweep, since), context)

    def hook_async(self) -> DinteroAsyncHook:
        """The async hook a many-merchant sweep runs with (the same connection)."""
        return DinteroAsyncHook(dintero_conn_id=self.dintero_conn_id)

    def _many_result(self, event: dict[str, Any], context: Context) -> list[dict[str, Any]]:
        """
        One item per merchant found; merchants not read are pushed under the XCom key
        :data:`NOT_COLLECTED` (``{account id: {"status": "could not be read" | "failed",
        "reason": ...}}``) and logged, so that a report can name them.
        """
        not_collected = {
            **{
                aid: {"status": "could not be read", "reason": str(why)}
                for aid, why in (event.get("unreadable") or {}).items()
            },
            **{
                aid: {"status": "failed", "reason": str(why)}
                for aid, why in (event.get("failed") or {}).items()
            },
        }
        ti = context.get("ti")
        if ti is not None:
            ti.xcom_push(key=NOT_COLLECTED, value=not_collected)
        for aid, line in list(not_collected.items())[:20]:
            self.log.warning("Merchant %s %s: %s", aid, line["status"], line["reason"])
        if len(not_collected) > 20:
            self.log.warning(
                "... and %s more merchant(s) not read (XCom %r)", len(not_collected) - 20, NOT_COLLECTED
            )
        since = str(event.get("since"))
        results: list[dict[str, Any]] = []
        for merchant in event.get("merchants") or []:  # either event shape (an upgrade mid-wait)
            aid = validate_account_id(merchant.get("account_id"))
            ids = payload_settlement_ids(merchant)
            results.append({"account_id": aid, "since": since, "settlement_ids": ids, "count": len(ids)})
        self.log.info(
            "Found new settlements for %s of %s merchant(s) created since %s: %s",
            len(results),
            event.get("checked"),
            since,
            ", ".join(r["account_id"] for r in results[:20]) + (" ..." if len(results) > 20 else ""),
        )
        if self.batch_size is None:
            return results
        size = check_batch_size(self.batch_size)
        return [
            {r["account_id"]: r["settlement_ids"] for r in results[i : i + size]}
            for i in range(0, len(results), size)
        ]

    @staticmethod
    def _result(account_id: str, since: str, settlements: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "account_id": account_id,
            "since": since,
            "settlement_ids": [s["id"] for s in settlements],
            "settlements": settlements,
        }
