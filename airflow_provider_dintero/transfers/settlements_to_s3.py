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
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import Asset, timezone

from airflow_provider_dintero.hooks.dintero import (
    AttachmentKind,
    DinteroInputError,
    DinteroPartnerHook,
    DinteroStreamError,
    Settlement,
    SettlementAttachment,
    format_timestamp,
    validate_account_id,
)
from airflow_provider_dintero.operators._base import DinteroBaseOperator
from airflow_provider_dintero.settlements import date_part as _date_part
from airflow_provider_dintero.settlements import parse_payment_providers, run_window
from airflow_provider_dintero.transfers._s3_stream import (
    ensure_bucket,
    key_template_fields,
    object_exists,
    render_key,
    s3_uri,
    stream_to_s3,
)

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
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


class SettlementsToS3Operator(DinteroBaseOperator):
    """
    Stream the attachments of an account's settlements into S3, then a manifest per settlement.

    **Which settlements.** ``settlement_ids`` when given (e.g. the sensor's
    ``settlement_ids`` XCom; an empty list copies nothing); otherwise those recorded
    (``created_at``, the ``item_created_at`` filter) on or after ``since``; and by default those
    recorded within the run's data interval ``[start, end]`` (when it is empty or missing, the
    day ending at its end, the logical date or now: see
    :func:`~airflow_provider_dintero.sensors.settlements.run_window`).

    **Keys.** Every attachment goes to ``s3_key`` rendered with :data:`KEY_FIELDS`
    (``settled_date`` and ``created_date`` are ``YYYY-MM-DD`` in UTC, ``kind`` is ``source`` or
    ``normalized``). The template must use ``{settlement_id}`` and ``{attachment_id}``; an unknown
    field fails before any request. Keys are deterministic: a re-run writes to the same keys.

    **Manifest.** ``manifest.json`` is the template rendered with ``attachment_id="manifest"``,
    ``extension="json"`` (beside the attachments with the default template). It holds the
    settlement's metadata and, per attachment, its S3 URI, size and SHA-256, and is written
    last, only after every attachment is in S3: its presence means the settlement is complete.

    **Idempotence and failures.** Objects that already exist are skipped unless ``replace``
    (one ``HEAD`` each; a re-run downloads nothing). Uploads are streamed in multipart parts
    with flat memory; a broken download aborts the upload, so no partial object is left, and the
    task fails naming the account, settlement and attachment; a retry copies what is missing.
    The bucket is checked before anything is downloaded.

    **Return value** (XCom): ``{"account_id", "settlement_ids": [...], "written": [s3 URIs],
    "skipped": [s3 URIs]}``; manifests are included in ``written``/``skipped``.

    **Lineage.** When ``outlets`` is not given and ``s3_bucket`` is not templated, the outlet is
    :func:`settlements_asset` of the bucket. Each Asset outlet gets the run's counts as event
    extra (``account_id``, ``settlements``, ``written``, ``skipped``) where Airflow supports it.

    :param account_id: the merchant (or the connection's own account). Templated.
    :param s3_bucket: the destination bucket. Templated.
    :param s3_key: the key template (:meth:`str.format` fields from :data:`KEY_FIELDS`). Templated.
    :param settlement_ids: copy exactly these settlements: a list of ids, or the sensor's XCom
        (a mapping with ``settlement_ids``). Templated.
    :param since: date or ISO-8601 timestamp; copy settlements recorded on or after it. Templated.
    :param payment_providers: only these payout providers (API or product names). Templated.
    :param attachments: ``"all"``, ``"source"`` (the provider's files) or ``"normalized"``
        (Dintero's). Templated.
    :param replace: overwrite objects that already exist.
    :param aws_conn_id: the AWS connection for S3.
    :param dintero_conn_id: the Dintero connection id.
    """

    template_fields: Sequence[str] = (
        "account_id",
        "s3_bucket",
        "s3_key",
        "settlement_ids",
        "since",
        "payment_providers",
        "attachments",
    )
    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        account_id: str,
        s3_bucket: str,
        s3_key: str = DEFAULT_KEY_TEMPLATE,
        settlement_ids: Sequence[str] | Mapping[str, Any] | str | None = None,
        since: str | datetime | None = None,
        payment_providers: Sequence[str] | str | None = None,
        attachments: str = AttachmentKind.ALL.value,
        replace: bool = False,
        aws_conn_id: str | None = "aws_default",
        dintero_conn_id: str = DinteroPartnerHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        static = all(isinstance(v, str) and v.strip() and "{{" not in v for v in (s3_bucket, s3_key))
        if kwargs.get("outlets") is None and static:
            kwargs["outlets"] = [settlements_asset(s3_bucket, s3_key)]
        super().__init__(dintero_conn_id=dintero_conn_id, **kwargs)
        self.account_id = account_id
        self.s3_bucket = s3_bucket
        self.s3_key = s3_key
        self.settlement_ids = settlement_ids
        self.since = since
        self.payment_providers = payment_providers
        self.attachments = attachments
        self.replace = replace
        self.aws_conn_id = aws_conn_id

    @cached_property
    def s3_hook(self) -> S3Hook:
        """The amazon provider's S3 hook."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=self.aws_conn_id)

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

    def _window(self, context: Context) -> tuple[str, str | None]:
        if self.since not in (None, ""):
            return format_timestamp(self.since, "since"), None
        start, end = run_window(context)
        return format_timestamp(start, "data_interval_start"), format_timestamp(end, "data_interval_end")

    # ------------------------------------------------------------------ run

    def execute(self, context: Context) -> dict[str, Any]:
        """Validate, check the bucket, then copy settlement by settlement."""
        account_id = validate_account_id(self.account_id)
        try:
            kind = AttachmentKind(str(self.attachments).strip().lower())
        except ValueError:
            raise DinteroInputError(
                "attachments", "one of " + ", ".join(k.value for k in AttachmentKind), self.attachments
            ) from None
        providers = parse_payment_providers(self.payment_providers)
        key_template_fields(self.s3_key, KEY_FIELDS, required=("settlement_id", "attachment_id"))
        ids = self._settlement_ids()
        window = self._window(context) if ids is None else None
        ensure_bucket(self.s3_hook, self.s3_bucket)

        settlements = self._settlements(account_id, ids, window, providers)
        written: list[str] = []
        skipped: list[str] = []
        for settlement in settlements:
            w, s = self._copy_settlement(account_id, settlement, kind)
            written.extend(w)
            skipped.extend(s)
        self.log.info(
            "Account %s: %s settlement(s), %s object(s) written, %s already in s3://%s",
            account_id,
            len(settlements),
            len(written),
            len(skipped),
            self.s3_bucket,
        )
        result = {
            "account_id": account_id,
            "settlement_ids": [str(s.get("id")) for s in settlements],
            "written": written,
            "skipped": skipped,
        }
        self._emit_asset_extra(context, result)
        return result

    def _settlements(
        self,
        account_id: str,
        ids: list[str] | None,
        window: tuple[str, str | None] | None,
        providers: list[str] | None,
    ) -> list[Settlement]:
        if ids is not None:
            self.log.info("Copying %s settlement(s) of account %s by id", len(ids), account_id)
            found = [self.hook.get_settlement(account_id, sid) for sid in ids]
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
        self, account_id: str, settlement: Settlement, attachment: SettlementAttachment
    ) -> dict[str, str]:
        settled = _date_part(settlement.get("settled_at") or settlement.get("created_at"))
        fields = {
            "account_id": account_id,
            "provider": str(settlement.get("provider") or "unknown"),
            "settlement_id": str(settlement["id"]),
            "settled_date": settled,
            "settled_year": settled[:4],
            "settled_month": settled[5:7],
            "created_date": _date_part(settlement.get("created_at")),
            "attachment_id": str(attachment.get("id")),
            "extension": str(attachment.get("extension") or "bin"),
            "created_by": str(attachment.get("created_by") or ""),
            "kind": _attachment_kind(attachment),
        }
        # A value never adds a path level: keys stay partitioned exactly as the template says.
        return {name: value.replace("/", "_") for name, value in fields.items()}

    def _copy_settlement(
        self, account_id: str, settlement: Settlement, kind: AttachmentKind
    ) -> tuple[list[str], list[str]]:
        sid = str(settlement["id"])
        chosen = [
            a
            for a in settlement.get("attachments") or []
            if kind is AttachmentKind.ALL or _attachment_kind(a) == kind.value
        ]
        written: list[str] = []
        skipped: list[str] = []
        entries: list[dict[str, Any]] = []
        for attachment in chosen:
            key = render_key(self.s3_key, self._fields(account_id, settlement, attachment))
            uri = s3_uri(self.s3_bucket, key)
            entry: dict[str, Any] = {
                "id": attachment.get("id"),
                "created_by": attachment.get("created_by"),
                "kind": _attachment_kind(attachment),
                "extension": attachment.get("extension"),
                "content_type": attachment.get("content_type"),
                "s3_uri": uri,
            }
            if not self.replace and object_exists(self.s3_hook, self.s3_bucket, key):
                self.log.info("Already in S3, skipping: %s", uri)
                skipped.append(uri)
            else:
                entry["size"], entry["sha256"] = self._copy_attachment(account_id, sid, attachment, key)
                written.append(uri)
            entries.append(entry)

        manifest_key = render_key(
            self.s3_key, {**self._fields(account_id, settlement, {}), **MANIFEST_FIELDS}
        )
        manifest_uri = s3_uri(self.s3_bucket, manifest_key)
        if not written and not self.replace and object_exists(self.s3_hook, self.s3_bucket, manifest_key):
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
        self.s3_hook.get_conn().put_object(
            Bucket=self.s3_bucket, Key=manifest_key, Body=body, ContentType="application/json"
        )
        self.log.info("Settlement %s of account %s is complete: wrote %s", sid, account_id, manifest_uri)
        written.append(manifest_uri)
        return written, skipped

    def _copy_attachment(
        self, account_id: str, settlement_id: str, attachment: SettlementAttachment, key: str
    ) -> tuple[int, str]:
        att_id = str(attachment.get("id"))
        uri = s3_uri(self.s3_bucket, key)
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
                size = stream_to_s3(
                    self.s3_hook,
                    stream,
                    self.s3_bucket,
                    key,
                    content_type=str(attachment.get("content_type") or stream.content_type),
                    expected_size=stream.content_length,
                    metadata={
                        "dintero-account-id": account_id,
                        "dintero-settlement-id": settlement_id,
                        "dintero-attachment-id": att_id,
                    },
                )
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
        previous: dict[str, dict[str, Any]] = {}
        client = self.s3_hook.get_conn()
        if object_exists(self.s3_hook, self.s3_bucket, manifest_key):
            old = json.loads(client.get_object(Bucket=self.s3_bucket, Key=manifest_key)["Body"].read())
            previous = {a.get("s3_uri"): a for a in old.get("attachments") or [] if a.get("sha256")}
        for entry in missing:
            known = previous.get(entry["s3_uri"])
            if known:
                entry["size"], entry["sha256"] = known.get("size"), known["sha256"]
                continue
            # Copied by a run that failed before its manifest: hash the stored object (streamed).
            key = entry["s3_uri"].split("/", 3)[3]
            body = client.get_object(Bucket=self.s3_bucket, Key=key)["Body"]
            digest = hashlib.sha256()
            size = 0
            while chunk := body.read(1024 * 1024):
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
