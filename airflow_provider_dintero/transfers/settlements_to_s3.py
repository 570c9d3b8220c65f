"""
Copy Dintero settlement attachments, and a manifest per settlement, into S3.

Example::

    from airflow_provider_dintero.transfers.settlements_to_s3 import SettlementsToS3Operator

    copy = SettlementsToS3Operator(
        task_id="copy_settlements",
        account_id="T11200001",
        s3_bucket="my-finance-bucket",
        attachments="normalized",
        # the data interval by default; or the sensor's find:
        # settlement_ids=wait.output["settlement_ids"],
    )
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, Asset, timezone

from airflow_provider_dintero.events import EventSelection, event_selections, run_events
from airflow_provider_dintero.exceptions import DinteroApiError, DinteroInputError, DinteroStreamError
from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
from airflow_provider_dintero.poller import access_error_message, check_concurrency
from airflow_provider_dintero.redaction import redact_text
from airflow_provider_dintero.settlements import date_part as _date_part
from airflow_provider_dintero.settlements import (
    format_timestamp,
    parse_payment_providers,
    parse_timestamp,
    run_window,
)
from airflow_provider_dintero.transfers._base import DinteroToS3BaseOperator, api_id
from airflow_provider_dintero.transfers._s3_stream import (
    check_unique_keys,
    key_part,
    key_template_fields,
    render_key,
)
from airflow_provider_dintero.validation import validate_account_id
from airflow_provider_dintero.vocabulary import AttachmentKind, Settlement, SettlementAttachment

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: Where attachments go by default: partitioned by account, provider and settlement date.
DEFAULT_KEY_TEMPLATE = (
    "dintero/settlements/account={account_id}/provider={provider}/settled_date={settled_date}/"
    "{settlement_id}/{attachment_id}.{extension}"
)

#: The fields a key template may use.
KEY_FIELDS: tuple[str, ...] = (
    "account_id",
    "provider",
    "settlement_id",
    "settled_date",
    "settled_year",
    "settled_month",
    "created_date",
    "attachment_id",
    "extension",
    "created_by",
    "kind",
)

#: The manifest is the key template rendered with these attachment fields
#: (``.../{settlement_id}/manifest.json`` with the default template).
MANIFEST_FIELDS: dict[str, str] = {
    "attachment_id": "manifest",
    "extension": "json",
    "created_by": "dintero",
    "kind": "manifest",
}
MANIFEST_VERSION = 1

#: Merchants of a batch copied at the same time by default.
DEFAULT_BATCH_CONCURRENCY = 4
#: The XCom key of a batch's per-merchant lines.
MERCHANTS_XCOM = "merchants"

#: A wake-up (a settlement event naming no id) with no earlier wake-up collection of the account
#: recorded copies the settlements recorded this long before it.
WAKE_UP_LOOKBACK = timedelta(days=1)
#: A wake-up re-lists this far behind the last wake-up collection (settlements recorded late).
WAKE_UP_OVERLAP = timedelta(hours=1)


def settlements_asset(bucket: str, s3_key: str = DEFAULT_KEY_TEMPLATE) -> Asset:
    """
    Return the Asset (a Dataset on Airflow 2.11) for settlements copied to ``bucket``.

    Its URI is ``s3://<bucket>/<the key template's fixed prefix>``, e.g.
    ``s3://my-bucket/dintero/settlements`` for the default template.

    :param bucket: the bucket name.
    :param s3_key: the key template.
    """
    prefix = s3_key.split("{", 1)[0].rsplit("/", 1)[0].strip("/")
    return Asset(f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}")


def _attachment_kind(attachment: SettlementAttachment) -> str:
    return "normalized" if attachment.get("created_by") == "dintero" else "source"


@dataclass
class _Plan:
    """One settlement's copy: its attachments with their keys, and its manifest's key."""

    settlement: Settlement
    settlement_id: str
    manifest_key: str
    attachments: list[tuple[SettlementAttachment, str, str]] = field(default_factory=list)
    """``(attachment, attachment id, key)`` of each attachment to copy."""


class SettlementsToS3Operator(DinteroToS3BaseOperator):
    """
    Stream the attachments of an account's settlements into S3, then a manifest per settlement.

    **Which settlements.** With ``use_triggering_events=True`` in a run scheduled on assets, exactly
    the settlements named by the run's triggering asset events (``triggering_asset_events``;
    ``triggering_dataset_events`` on Airflow 2.11), and by the events recorded on the same assets
    after the run was queued (:func:`~airflow_provider_dintero.events.run_events`: Airflow gives
    such an event to no run), whose extra is ``{"account_id", "settlement_ids", "providers"}`` and
    whose ``account_id`` is this task's: events of other accounts are left to their own copies
    (counted in one log line); the settlements are re-read from the API by id, so an event cannot
    inject data. A run without such events (a manual run) selects as below. Otherwise
    ``settlement_ids`` when given (e.g. the sensor's ``settlement_ids`` XCom; an empty list copies
    nothing); otherwise those recorded (``created_at``, the ``item_created_at`` filter) on or after
    ``since``; and by default those recorded within the run's data interval ``[start, end]`` (when
    it is empty or missing, the day ending at its end, the logical date or now: see
    :func:`~airflow_provider_dintero.settlements.run_window`).

    **Keys.** Every attachment goes to ``s3_key`` rendered with :data:`KEY_FIELDS`
    (``settled_date`` and ``created_date`` are ``YYYY-MM-DD`` in UTC, ``kind`` is ``source`` or
    ``normalized``). The template must use ``{settlement_id}`` and ``{attachment_id}``; an unknown
    field fails before any request. Keys are deterministic: a re-run writes to the same keys.
    ``{account_id}`` is always the operator's own (checked) account: a settlement that Dintero's
    answer says belongs to another account fails the task before anything is written. Every
    other value comes from the API and is made safe with
    :func:`~airflow_provider_dintero.transfers._s3_stream.key_part` (``/``, ``%``, control
    characters and the like percent-encoded; ``.``/``..`` and an attachment id ``manifest``
    escaped), so a value never changes the key's levels and two attachments never share a key;
    a settlement or attachment without an id, or two objects the template would put on one key,
    fail the task before anything is written.

    **Manifest.** ``manifest.json`` is the template rendered with ``attachment_id="manifest"``,
    ``extension="json"`` (beside the attachments with the default template). It holds the
    settlement's metadata and, per attachment, its S3 URI, size and SHA-256, and is written
    last, only after every attachment is in S3: its presence means the settlement is complete.

    **S3.** Everything goes through the amazon provider's ``S3Hook`` of ``aws_conn_id``: its
    transfer config (``transfer_config_args`` in the aws connection's ``service_config``; the
    number of parts in flight defaults to 2 so memory stays flat) and its ``extra_args``, then
    ``s3_extra_args``, ``encrypt`` and ``acl_policy``, applied to every object, manifest
    included.

    **Idempotence and failures.** Objects that already exist are skipped unless ``replace``
    (one ``HEAD`` each; a re-run downloads nothing). Uploads are streamed in multipart parts
    with flat memory; a broken download aborts the upload, so no partial object is left, and the
    task fails naming the account, settlement and attachment; a retry copies what is missing.
    Before each upload, multipart uploads of that key left open by an earlier killed copy are
    aborted. The bucket is checked before anything is downloaded.

    **Ids Dintero does not confirm** (404 when read by id, or a settlement that Dintero's answer
    gives to another account) are logged and named in the result's ``unconfirmed``
    (``{id: reason}``); every confirmed settlement is still copied and the task succeeds. This is
    the same in the by-id, by-event and by-window forms.

    **Wake-ups.** A triggering event that names no settlement (``events.SettlementEvent.is_wake_up``:
    a verified webhook whose body could not be read) makes the copy collect what is new for its
    account since its last wake-up collection (less :data:`WAKE_UP_OVERLAP`; the first time,
    :data:`WAKE_UP_LOOKBACK`), recorded in S3 at ``<key prefix>/_collections/account=<id>.json``.

    **Batches** (``merchants=``, with or without ``use_triggering_events``): every merchant of
    the batch is copied on its own; each ends in
    exactly one of ``copied`` (counts), ``could not be read`` (403/404, the reason names the
    grant) or ``failed`` (the step and error); the per-merchant lines are pushed under the XCom
    key :data:`MERCHANTS_XCOM` and returned as ``{"merchants": {...}}``; the task fails after
    the whole batch when any merchant was not copied.

    **Return value** (XCom): ``{"account_id", "settlement_ids": [...], "written": [s3 URIs],
    "skipped": [s3 URIs], "unconfirmed": {id: reason}}``; manifests are included in
    ``written``/``skipped``.

    **Lineage.** When ``outlets`` is not given and ``s3_bucket`` is not templated, the outlet is
    :func:`settlements_asset` of the bucket. Each Asset outlet gets the run's counts as event
    extra (``account_id``, ``settlements``, ``written``, ``skipped``) where Airflow supports it.
    With the OpenLineage provider installed, :meth:`get_openlineage_facets_on_complete` reports
    the input ``dintero://<API host>`` / ``accounts/<account_id>/settlements`` and every object
    written (``s3://<bucket>`` / key, with its size and SHA-256).

    :param account_id: the merchant (or the connection's own account). Templated.
    :param merchants: a batch instead of one account: ``{account id: [settlement ids]}`` (one
        item of ``SettlementSensor(batch_size=...)``'s result) or ``{account id:
        {"settlement_ids": [...], "wake_up": bool}}`` (one item of
        ``events.event_selection_batches``: what a run's events ask, read once upstream),
        copied ``max_concurrency`` merchants at a time; with ``use_triggering_events=True``, also
        a list of account ids whose settlements the run's events name, read by this task
        (every mapped copy then reads all the run's events: prefer the selections at scale).
        Templated.
    :param max_concurrency: merchants of a batch copied at the same time (threads).
    :param s3_bucket: the destination bucket. Templated.
    :param s3_key: the key template (:meth:`str.format` fields from :data:`KEY_FIELDS`). Templated.
    :param settlement_ids: copy exactly these settlements: a list of ids, or the sensor's XCom
        (a mapping with ``settlement_ids``). Templated.
    :param since: date or ISO-8601 timestamp; copy settlements recorded on or after it. Templated.
    :param payment_providers: only these payout providers (API or product names). Templated.
    :param attachments: ``"all"``, ``"source"`` (the provider's files) or ``"normalized"``
        (Dintero's). Templated.
    :param use_triggering_events: copy the settlements named by the run's triggering asset events
        (see above); not together with ``settlement_ids``.
    :param replace: overwrite objects that already exist.
    :param aws_conn_id: the AWS connection for S3.
    :param encrypt: server-side encryption with S3-managed keys (SSE-S3, ``AES256``) for every
        object, as the amazon transfers' ``encrypt``.
    :param acl_policy: a canned ACL for every object, e.g. ``"bucket-owner-full-control"``.
    :param s3_extra_args: more upload arguments for every object (boto3's upload ``ExtraArgs``),
        e.g. ``{"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "<key id or ARN>"}``. Templated.
    :param dintero_conn_id: the Dintero connection id.
    """

    template_fields: Sequence[str] = (
        "account_id",
        "merchants",
        "s3_bucket",
        "s3_key",
        "settlement_ids",
        "since",
        "payment_providers",
        "attachments",
        "s3_extra_args",
    )
    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        account_id: str | None = None,
        merchants: Mapping[str, Sequence[str]] | None = None,
        max_concurrency: int = DEFAULT_BATCH_CONCURRENCY,
        s3_bucket: str,
        s3_key: str = DEFAULT_KEY_TEMPLATE,
        settlement_ids: Sequence[str] | Mapping[str, Any] | str | None = None,
        since: str | datetime | None = None,
        payment_providers: Sequence[str] | str | None = None,
        attachments: str = AttachmentKind.ALL.value,
        use_triggering_events: bool = False,
        replace: bool = False,
        aws_conn_id: str | None = "aws_default",
        encrypt: bool = False,
        acl_policy: str | None = None,
        s3_extra_args: dict[str, Any] | None = None,
        dintero_conn_id: str = DinteroPartnerHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        static = all(isinstance(v, str) and v.strip() and "{{" not in v for v in (s3_bucket, s3_key))
        if kwargs.get("outlets") is None and static:
            kwargs["outlets"] = [settlements_asset(s3_bucket, s3_key)]
        super().__init__(dintero_conn_id=dintero_conn_id, **kwargs)
        self.account_id = account_id
        self.merchants = merchants
        self.max_concurrency = max_concurrency
        self.s3_bucket = s3_bucket
        self.s3_key = s3_key
        self.settlement_ids = settlement_ids
        self.since = since
        self.payment_providers = payment_providers
        self.attachments = attachments
        self.use_triggering_events = use_triggering_events
        self.replace = replace
        self.aws_conn_id = aws_conn_id
        self.encrypt = encrypt
        self.acl_policy = acl_policy
        self.s3_extra_args = s3_extra_args

    # ------------------------------------------------------------------ inputs

    def _settlement_ids(self) -> list[str] | None:
        value: Any = self.settlement_ids
        if value is None:
            return None
        if isinstance(value, Mapping) and "settlement_ids" in value:  # the sensor's whole XCom
            value = value["settlement_ids"]
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):  # a list rendered by a non-native Jinja template
                try:
                    value = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    raise DinteroInputError("settlement_ids", "a list of settlement ids", value) from None
            else:
                value = [text] if text else []
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            raise DinteroInputError("settlement_ids", "a list of settlement ids", self.settlement_ids)
        return list(dict.fromkeys(value))

    def _event_selections(self, context: Context) -> dict[str, EventSelection] | None:
        """
        What the run's settlement events (:func:`~airflow_provider_dintero.events.run_events`)
        ask of each account they name: the ids, and whether any is a wake-up (names no id).
        ``None`` when no event is a settlement event (a manual run). Read once per task.
        """
        return event_selections(run_events(context))

    def _from_events(
        self, selections: dict[str, EventSelection] | None, account_id: str, *, mapped: bool = True
    ) -> EventSelection | None:
        """
        What the run's settlement events ask of ``account_id`` (``None``: a manual run). Other
        accounts' events are left to their own copies (counted in one log line).
        """
        if selections is None:
            self.log.info("No triggering asset event names settlements; selecting them as without events")
            return None
        others = len(selections) - (account_id in selections)
        if others and mapped:  # a mapped copy sees every account's events: each has its own copy
            self.log.info(
                "Left the events of %s other account(s) to their own copies (this task copies account %s)",
                others,
                account_id,
            )
        selection = selections.get(account_id) or EventSelection()
        self.log.info(
            "Triggering asset events name %s settlement(s) of account %s%s",
            len(selection.ids),
            account_id,
            " and wake it up: copying what is new since its last collection" if selection.wake_up else "",
        )
        return selection

    def _marker_key(self, account_id: str) -> str:
        """Where the account's last wake-up collection is recorded (beside its settlements)."""
        prefix = self._key_template().split("{", 1)[0].rsplit("/", 1)[0].strip("/")
        return f"{prefix + '/' if prefix else ''}_collections/account={account_id}.json"

    def _wake_up_window(self, account_id: str) -> tuple[str, str | None]:
        """
        A wake-up's window: from the last wake-up collection less :data:`WAKE_UP_OVERLAP`, or
        :data:`WAKE_UP_LOOKBACK` ago, to now.
        """
        now = timezone.utcnow()
        start = now - WAKE_UP_LOOKBACK
        key = self._marker_key(account_id)
        if self.store.exists(key):
            body = self.store.read_bytes(key)
            try:
                through = parse_timestamp(json.loads(body).get("collected_through"))
            except (ValueError, AttributeError):
                through = None
            if through is not None:
                start = min(through, now) - WAKE_UP_OVERLAP
        return format_timestamp(start, "since"), None

    def _mark_collected(self, account_id: str, through: datetime) -> None:
        body = json.dumps(
            {"account_id": account_id, "collected_through": format_timestamp(through, "collected_through")}
        ).encode()
        self.store.put_stream(
            io.BytesIO(body),
            self._marker_key(account_id),
            content_type="application/json",
            expected_size=len(body),
        )

    def _window(self, context: Context) -> tuple[str, str | None]:
        if self.since not in (None, ""):
            return format_timestamp(self.since, "since"), None
        start, end = run_window(context)
        return format_timestamp(start, "data_interval_start"), format_timestamp(end, "data_interval_end")

    # ------------------------------------------------------------------ run

    def _kind(self) -> AttachmentKind:
        try:
            return AttachmentKind(str(self.attachments).strip().lower())
        except ValueError:
            raise DinteroInputError(
                "attachments", "one of " + ", ".join(k.value for k in AttachmentKind), self.attachments
            ) from None

    def execute(self, context: Context) -> dict[str, Any]:
        """Validate, check the bucket, then copy settlement by settlement (or merchant by merchant)."""
        if self.merchants is not None:
            return self._execute_batch(context)
        account_id = validate_account_id(self.account_id)
        kind = self._kind()
        providers = parse_payment_providers(self.payment_providers)
        key_template_fields(
            self._key_template(),
            KEY_FIELDS,
            field=self._key_param,
            required=("settlement_id", "attachment_id"),
        )
        ids = self._settlement_ids()
        if not isinstance(self.use_triggering_events, bool):
            raise DinteroInputError("use_triggering_events", "True or False", self.use_triggering_events)
        wake_up = False
        if self.use_triggering_events:
            if ids is not None:
                raise DinteroInputError(
                    "settlement_ids", "None when use_triggering_events=True (the events name the settlements)"
                )
            selection = self._from_events(self._event_selections(context), account_id)
            if selection is not None:
                ids, wake_up = selection.ids, selection.wake_up
        window = self._window(context) if ids is None else None
        self.store.check()
        self._lineage_inputs = [f"accounts/{account_id}/settlements"]
        self._lineage_outputs = []

        result = self._copy_account(account_id, ids, window, wake_up, kind, providers)
        self._emit_asset_extra(context, result)
        return result

    def _copy_account(
        self,
        account_id: str,
        ids: list[str] | None,
        window: tuple[str, str | None] | None,
        wake_up: bool,
        kind: AttachmentKind,
        providers: list[str] | None,
    ) -> dict[str, Any]:
        """Copy one account's selected settlements; return its result (see the class docstring)."""
        started = timezone.utcnow()
        unconfirmed: dict[str, str] = {}
        settlements = self._settlements(account_id, ids, window, providers, unconfirmed)
        if wake_up:
            settlements += self._settlements(
                account_id, None, self._wake_up_window(account_id), providers, unconfirmed
            )
        plans = self._plan(account_id, settlements, kind, unconfirmed)
        written: list[str] = []
        skipped: list[str] = []
        for plan in plans:
            w, s = self._copy_settlement(account_id, plan, kind)
            written.extend(w)
            skipped.extend(s)
        if wake_up:
            self._mark_collected(account_id, started)
        self.log.info(
            "Account %s: %s settlement(s), %s object(s) written, %s already in %s",
            account_id,
            len(plans),
            len(written),
            len(skipped),
            self.store.describe(),
        )
        if unconfirmed:
            self.log.warning(
                "Account %s: %s settlement id(s) not confirmed by Dintero, not copied: %s",
                account_id,
                len(unconfirmed),
                "; ".join(f"{sid} ({why})" for sid, why in list(unconfirmed.items())[:20]),
            )
        result = {
            "account_id": account_id,
            "settlement_ids": [plan.settlement_id for plan in plans],
            "written": written,
            "skipped": skipped,
            "unconfirmed": unconfirmed,
        }
        return result

    def _merchants(self) -> dict[str, EventSelection | None]:
        """The batch: each account's selection, or ``None`` where this task reads the run's events."""
        value: Any = self.merchants
        if self.use_triggering_events is True and isinstance(value, list | tuple) and value:
            # the run's events name each account's settlements: read by this task
            return {validate_account_id(aid, "merchants"): None for aid in value}
        if not isinstance(value, Mapping) or not value:
            expected = "a non-empty mapping of account id to settlement ids"
            if self.use_triggering_events is True:
                expected = "a non-empty list of account ids (the run's events name their settlements)"
            raise DinteroInputError("merchants", expected, value)
        batch: dict[str, EventSelection | None] = {}
        for aid, chosen in value.items():
            validate_account_id(aid, "merchants")
            wake_up: Any = False
            ids = chosen
            if isinstance(chosen, Mapping) and set(chosen) <= {"settlement_ids", "wake_up"}:
                ids, wake_up = chosen.get("settlement_ids", []), chosen.get("wake_up", False)
            if not isinstance(ids, list | tuple) or not all(isinstance(i, str) and i for i in ids):
                expected = 'a list of settlement ids, or {"settlement_ids": [...], "wake_up": bool}'
                raise DinteroInputError(f"merchants[{aid}]", expected, chosen)
            if not isinstance(wake_up, bool):
                raise DinteroInputError(f"merchants[{aid}].wake_up", "True or False", wake_up)
            batch[aid] = EventSelection(list(dict.fromkeys(ids)), wake_up)
        return batch

    def _execute_batch(self, context: Context) -> dict[str, Any]:
        """Copy a batch of merchants by id, ``max_concurrency`` at a time, each on its own."""
        if self.account_id not in (None, "") or self.settlement_ids is not None:
            raise DinteroInputError("merchants", "not together with account_id or settlement_ids")
        if not isinstance(self.use_triggering_events, bool):
            raise DinteroInputError("use_triggering_events", "True or False", self.use_triggering_events)
        batch = self._merchants()
        from_events = any(chosen is None for chosen in batch.values())
        selections = self._event_selections(context) if from_events else None
        window = self._window(context) if from_events and selections is None else None
        workers = check_concurrency(self.max_concurrency)
        kind = self._kind()
        providers = parse_payment_providers(self.payment_providers)
        key_template_fields(
            self._key_template(),
            KEY_FIELDS,
            field=self._key_param,
            required=("settlement_id", "attachment_id"),
        )
        self.store.check()
        self._lineage_inputs = [f"accounts/{aid}/settlements" for aid in batch]
        self._lineage_outputs = []

        def one(aid: str) -> dict[str, Any]:
            selection = batch[aid]
            if selection is None:
                selection = self._from_events(selections, aid, mapped=False)
            ids, wake_up = (selection.ids, selection.wake_up) if selection is not None else (None, False)
            try:
                r = self._copy_account(aid, ids, window if ids is None else None, wake_up, kind, providers)
            except DinteroApiError as exc:
                if exc.status in (403, 404):
                    return {"status": "could not be read", "reason": access_error_message(aid, exc)}
                return {"status": "failed", "step": "copy_to_s3", "error": redact_text(exc)}
            except Exception as exc:  # S3 or anything else: this merchant only
                return {
                    "status": "failed",
                    "step": "copy_to_s3",
                    "error": redact_text(f"{type(exc).__name__}: {exc}"),
                }
            line: dict[str, Any] = {
                "status": "copied",
                "settlement_ids": r["settlement_ids"],
                "settlements": len(r["settlement_ids"]),
                "written": len(r["written"]),
                "skipped": len(r["skipped"]),
            }
            if r["unconfirmed"]:
                line["unconfirmed"] = r["unconfirmed"]
            return line

        with ThreadPoolExecutor(
            max_workers=min(workers, len(batch)), thread_name_prefix="dintero-copy"
        ) as pool:
            lines = dict(zip(batch, pool.map(one, batch), strict=True))
        ti = context.get("ti")
        if ti is not None:  # kept even when the task fails below: the report reads it
            ti.xcom_push(key=MERCHANTS_XCOM, value=lines)
        not_copied = {aid: line for aid, line in lines.items() if line["status"] != "copied"}
        for aid, line in not_copied.items():
            self.log.error("Merchant %s %s: %s", aid, line["status"], line.get("reason") or line.get("error"))
        if not_copied:
            raise AirflowException(
                f"{len(not_copied)} of {len(batch)} merchant(s) of this batch were not copied ("
                + ", ".join(list(not_copied)[:20])
                + (" ..." if len(not_copied) > 20 else "")
                + "); the others were"
            )
        return {"merchants": lines}

    def _settlements(
        self,
        account_id: str,
        ids: list[str] | None,
        window: tuple[str, str | None] | None,
        providers: list[str] | None,
        unconfirmed: dict[str, str],
    ) -> list[Settlement]:
        if ids is not None:
            self.log.info("Copying %s settlement(s) of account %s by id", len(ids), account_id)
            found: list[Settlement] = []
            for sid in ids:
                try:
                    found.append(self.hook.get_settlement(account_id, sid))
                except DinteroApiError as exc:
                    if exc.status != 404:
                        raise
                    self.log.warning(
                        "Settlement %s of account %s: Dintero does not know it (404)", sid, account_id
                    )
                    unconfirmed[sid] = "not found (404)"
            if providers:
                found = [s for s in found if s.get("provider") in providers]
            return found
        assert window is not None
        since, until = window
        self.log.info(
            "Copying settlements of account %s recorded from %s%s",
            account_id,
            since,
            f" to {until}" if until else "",
        )
        return list(
            self.hook.list_settlements(
                account_id,
                item_created_at_gte=since,
                item_created_at_lte=until,
                payment_providers=providers,
            )
        )

    def _fields(
        self, account_id: str, settlement_id: str, settlement: Settlement, attachment: SettlementAttachment
    ) -> dict[str, str]:
        settled = _date_part(settlement.get("settled_at") or settlement.get("created_at"))
        fields = {
            "provider": str(settlement.get("provider") or "unknown"),
            "settlement_id": settlement_id,
            "settled_date": settled,
            "settled_year": settled[:4],
            "settled_month": settled[5:7],
            "created_date": _date_part(settlement.get("created_at")),
            "extension": str(attachment.get("extension") or "bin"),
            "created_by": str(attachment.get("created_by") or ""),
            "kind": _attachment_kind(attachment),
        }
        # API values never add, climb or merge key levels (see key_part); the account is ours.
        safe = {name: key_part(value) for name, value in fields.items()}
        safe["account_id"] = account_id
        safe["attachment_id"] = key_part(
            attachment.get("id") or "", reserved=(MANIFEST_FIELDS["attachment_id"],)
        )
        return safe

    def _plan(
        self,
        account_id: str,
        settlements: list[Settlement],
        kind: AttachmentKind,
        unconfirmed: dict[str, str],
    ) -> list[_Plan]:
        """
        Decide every key before anything is written; fail on answers that cannot be copied safely.

        A settlement that Dintero's answer gives to another account is left out and recorded in
        ``unconfirmed``; a settlement or attachment without an id, or two objects on one key,
        raise here, so nothing of the run is written.
        """
        plans: dict[str, _Plan] = {}
        planned: list[tuple[str, tuple[str, ...], str]] = []
        for settlement in settlements:
            sid = api_id(settlement, "settlement", account_id)
            owner = settlement.get("account_id")
            if owner not in (None, "") and str(owner) != account_id:
                self.log.warning(
                    "Settlement %s: Dintero's answer gives it to account %s, not %s; not copied",
                    sid,
                    str(owner)[:40],
                    account_id,
                )
                unconfirmed[sid] = "belongs to another account"
                continue
            if sid in plans:
                continue
            manifest_key = self.store.object_key(
                render_key(
                    self._key_template(),
                    {**self._fields(account_id, sid, settlement, {}), **MANIFEST_FIELDS},
                    field=self._key_param,
                )
            )
            plan = plans[sid] = _Plan(settlement, sid, manifest_key)
            planned.append((manifest_key, ("manifest", sid), f"the manifest of settlement {sid}"))
            chosen: dict[str, SettlementAttachment] = {}
            for attachment in settlement.get("attachments") or []:
                att_id = api_id(attachment, f"attachment of settlement {sid}", account_id)
                if kind is AttachmentKind.ALL or _attachment_kind(attachment) == kind.value:
                    chosen.setdefault(att_id, attachment)
            for att_id, attachment in chosen.items():
                key = self.store.object_key(
                    render_key(
                        self._key_template(),
                        self._fields(account_id, sid, settlement, attachment),
                        field=self._key_param,
                    )
                )
                plan.attachments.append((attachment, att_id, key))
                planned.append((key, ("attachment", sid, att_id), f"attachment {att_id} of settlement {sid}"))
        check_unique_keys(planned, field=self._key_param)
        return list(plans.values())

    def _copy_settlement(
        self, account_id: str, plan: _Plan, kind: AttachmentKind
    ) -> tuple[list[str], list[str]]:
        sid, settlement, manifest_key = plan.settlement_id, plan.settlement, plan.manifest_key
        written: list[str] = []
        skipped: list[str] = []
        entries: list[dict[str, Any]] = []
        for attachment, att_id, key in plan.attachments:
            uri = self.store.uri(key)
            entry: dict[str, Any] = {
                "id": att_id,
                "created_by": attachment.get("created_by"),
                "kind": _attachment_kind(attachment),
                "extension": attachment.get("extension"),
                "content_type": attachment.get("content_type"),
                "uri": uri,
            }
            if self.store.location.scheme == "s3":
                entry["s3_uri"] = uri  # manifest version 1's name, kept for S3
            if not self.replace and self.store.exists(key):
                self.log.info("Already there, skipping: %s", uri)
                skipped.append(uri)
            else:
                entry["size"], entry["sha256"] = self._copy_attachment(
                    account_id, sid, att_id, attachment, key
                )
                written.append(uri)
            entries.append(entry)

        manifest_uri = self.store.uri(manifest_key)
        if not written and not self.replace and self.store.exists(manifest_key):
            skipped.append(manifest_uri)
            return written, skipped
        self._fill_skipped_entries(entries, manifest_key)
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "account_id": account_id,
            "settlement_id": sid,
            "attachments_filter": kind.value,
            "settlement": dict(settlement),
            "attachments": entries,
            "written_at": format_timestamp(timezone.utcnow(), "written_at"),
        }
        body = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
        size = self.store.put_stream(
            io.BytesIO(body), manifest_key, content_type="application/json", expected_size=len(body)
        )
        self._record_output(manifest_key, size, hashlib.sha256(body).hexdigest(), "application/json")
        self.log.info("Settlement %s of account %s is complete: wrote %s", sid, account_id, manifest_uri)
        written.append(manifest_uri)
        return written, skipped

    def _copy_attachment(
        self,
        account_id: str,
        settlement_id: str,
        att_id: str,
        attachment: SettlementAttachment,
        key: str,
    ) -> tuple[int, str]:
        uri = self.store.uri(key)
        self.log.info(
            "Copying attachment %s (%s) of settlement %s, account %s, to %s",
            att_id,
            attachment.get("extension"),
            settlement_id,
            account_id,
            uri,
        )
        try:
            with self.hook.stream_settlement_attachment(account_id, settlement_id, att_id) as stream:
                content_type = str(attachment.get("content_type") or stream.content_type)
                size = self.store.put_stream(
                    stream,
                    key,
                    content_type=content_type,
                    expected_size=stream.content_length,
                    metadata={
                        "dintero-account-id": account_id,
                        "dintero-settlement-id": settlement_id,
                        "dintero-attachment-id": att_id,
                    },
                )
                self._record_output(key, size, stream.sha256, content_type)
                return size, stream.sha256
        except DinteroStreamError as exc:
            raise DinteroStreamError(
                f"Copy of attachment {att_id} of settlement {settlement_id} (account {account_id}) to "
                f"{uri} failed: the download broke off ({exc}). No object was left at that key; "
                "a retry copies what is missing.",
                account_id=account_id,
            ) from exc

    def _fill_skipped_entries(self, entries: list[dict[str, Any]], manifest_key: str) -> None:
        """Give attachments copied by an earlier run their size and SHA-256 for the manifest."""
        missing = [e for e in entries if "sha256" not in e]
        if not missing:
            return
        store = self.store
        previous: dict[str, dict[str, Any]] = {}
        if store.exists(manifest_key):
            old = json.loads(store.read_bytes(manifest_key))
            previous = {
                a.get("uri") or a.get("s3_uri"): a for a in old.get("attachments") or [] if a.get("sha256")
            }
        for entry in missing:
            known = previous.get(entry["uri"])
            if known:
                entry["size"], entry["sha256"] = known.get("size"), known["sha256"]
                continue
            key = store.key_of(entry["uri"])
            info = store.head(key)
            if info is not None and info.sha256:  # kept as metadata by the store (Azure)
                entry["size"], entry["sha256"] = info.size, info.sha256
                continue
            # Copied by a run that failed before its manifest: hash the stored object (streamed).
            digest = hashlib.sha256()
            size = 0
            for chunk in store.iter_bytes(key):
                digest.update(chunk)
                size += len(chunk)
            entry["size"], entry["sha256"] = size, digest.hexdigest()

    def _emit_asset_extra(self, context: Context, result: dict[str, Any]) -> None:
        events = context.get("outlet_events")
        if events is None:
            return
        extra = {
            "account_id": result["account_id"],
            "settlements": len(result["settlement_ids"]),
            "written": len(result["written"]),
            "skipped": len(result["skipped"]),
        }
        for outlet in self.outlets or []:
            if not isinstance(outlet, Asset):
                continue
            try:
                events[outlet].extra = extra
            except Exception as exc:  # older Airflow: no per-event extra
                self.log.debug("Could not attach extra to the asset event: %s", exc)
