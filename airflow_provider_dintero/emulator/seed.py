"""Deterministic seed data and file content for the Dintero emulator.

Everything here is a pure function of :class:`EmulatorSeed`: the same seed always yields the same
account ids, settlement ids, timestamps and attachment bytes.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Namespace for all uuid5 ids the emulator derives.
EMULATOR_NAMESPACE = uuid.UUID("6f1d6d2e-3c1b-4d7e-9a55-0d1c7e2b9a10")

#: Payout providers seeded for every merchant: ``provider`` string -> (display name, source file type).
PROVIDERS: dict[str, tuple[str, str]] = {
    "dintero_psp": ("Dintero Payout", "csv"),
    "vipps": ("Vipps", "csv"),
    "payex": ("Swedbank Pay", "xml"),
    "bambora": ("Bambora", "csv"),
    "collector": ("Walley", "xml"),
    "klarna": ("Klarna", "csv"),
}

#: The normalized Dintero report formats (extension -> content type).
DINTERO_FORMATS: dict[str, str] = {
    "pdf": "application/pdf",
    "csv": "text/csv",
    "xml": "application/xml",
    "json": "application/json",
}

CONTENT_TYPES: dict[str, str] = {**DINTERO_FORMATS, "txt": "text/plain"}

_CHUNK = 64 * 1024
_TEXT_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789,;"
# Maps every byte value onto a printable alphabet (plus a newline every so often).
_TEXT_TABLE = bytes(_TEXT_ALPHABET[i % len(_TEXT_ALPHABET)] if i % 61 else 0x0A for i in range(256))


@dataclass(frozen=True)
class EmulatorSeed:
    """Parameters of the deterministic start state of the emulator.

    :param merchants: number of merchant accounts of the partner (``T11200001`` ...).
    :param partner_id: the partner account id (three digits followed by ``00000``).
    :param foreign_partner_id: another partner, whose merchants the main partner may not access.
    :param foreign_merchant_id: a merchant of ``foreign_partner_id``.
    :param random_seed: seed for every derived id, secret and byte stream.
    :param partner_client_id: login of the seeded partner API client.
    :param settlements_per_provider: settlements seeded per merchant and payout provider.
    :param attachment_size: size in bytes of each seeded settlement attachment.
    :param reports_per_merchant: monthly insight reports (each as pdf and csv) per merchant.
    """

    merchants: int = 3
    partner_id: str = "T11200000"
    foreign_partner_id: str = "T99900000"
    foreign_merchant_id: str = "T99900001"
    random_seed: str = "dintero-emulator"
    partner_client_id: str = "partner-client"
    settlements_per_provider: int = 1
    attachment_size: int = 4096
    reports_per_merchant: int = 2

    def __post_init__(self) -> None:
        if not 0 <= self.merchants <= 99999:
            raise ValueError("merchants must be between 0 and 99999")
        if len(self.partner_id) != 9 or not self.partner_id.endswith("00000"):
            raise ValueError("partner_id must look like T11200000")
        if self.settlements_per_provider < 0 or self.attachment_size < 0 or self.reports_per_merchant < 0:
            raise ValueError("counts and sizes must not be negative")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmulatorSeed:
        """Build a seed from a JSON object; unknown keys are rejected.

        :param data: the parsed JSON object.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown seed keys: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str) -> EmulatorSeed:
        """Read a seed from a JSON file.

        :param path: path of a JSON file holding an object with :class:`EmulatorSeed` fields.
        """
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        if not isinstance(data, dict):
            raise ValueError("seed file must hold a JSON object")
        return cls.from_dict(data)

    @property
    def partner_short_id(self) -> str:
        """The partner id as account settings report it (``T112``)."""
        return self.partner_id[:4]

    @property
    def merchant_ids(self) -> list[str]:
        """Ids of the partner's merchants, in order."""
        prefix = self.partner_id[:4]
        return [f"{prefix}{n:05d}" for n in range(1, self.merchants + 1)]

    def derive(self, *parts: object) -> str:
        """A stable hex digest of the seed and ``parts``.

        :param parts: anything with a stable ``str()``.
        """
        text = "\x1f".join([self.random_seed, *map(str, parts)])
        return hashlib.sha256(text.encode()).hexdigest()

    def uuid(self, *parts: object) -> str:
        """A stable uuid5 of the seed and ``parts``.

        :param parts: anything with a stable ``str()``.
        """
        return str(uuid.uuid5(EMULATOR_NAMESPACE, self.derive(*parts)))

    def secret(self, *parts: object) -> str:
        """A stable client secret (43 url-safe characters) for ``parts``.

        :param parts: anything with a stable ``str()``.
        """
        return self.derive("secret", *parts)[:43]


@dataclass
class SeedData:
    """The materialised seed state (plain JSON-able dicts); see :func:`build_seed_data`."""

    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    settlements: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    insight_configs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reports: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    profiles: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def iso(ts: datetime) -> str:
    """Format a datetime as ISO-8601 UTC with milliseconds and ``Z``.

    :param ts: an aware datetime.
    """
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def account_settings(
    seed: EmulatorSeed, account_id: str, partner_short_id: str, index: int
) -> dict[str, Any]:
    """Account details as ``GET /management/settings`` returns them.

    :param seed: the seed.
    :param account_id: the account id.
    :param partner_short_id: the owning partner (``T112``).
    :param index: a number used to vary names.
    """
    slug = f"merchant-{index:03d}"
    return {
        "account_id": account_id,
        "partner_id": partner_short_id,
        "active": True,
        "livemode": account_id.startswith("P"),
        "created_at": iso(datetime(2026, 9, 1, 8, 0, tzinfo=timezone.utc) + timedelta(days=index)),
        "company": {
            "business_name": f"Emulated Merchant {index:03d} AS",
            "display_name": f"Merchant {index:03d}",
            "organization_number": f"{900000000 + index}",
            "website": f"https://{slug}.example.com",
            "address": {
                "address_line": f"Testveien {index}",
                "postal_code": "0150",
                "postal_place": "Oslo",
                "country": "NO",
            },
        },
        "applicant": {
            "first_name": "Test",
            "last_name": f"Applicant {index}",
            "email": f"owner@{slug}.example.com",
            "signup_reference": f"ref-{seed.derive('signup', account_id)[:8]}",
        },
    }


def make_attachment(
    seed: EmulatorSeed,
    account_id: str,
    settlement_id: str,
    created_by: str,
    extension: str,
    size: int,
    salt: object = "",
) -> dict[str, Any]:
    """An internal attachment record (public fields plus ``size``).

    :param seed: the seed.
    :param account_id: owning account.
    :param settlement_id: owning settlement.
    :param created_by: ``dintero`` or the provider.
    :param extension: file extension, decides the content type.
    :param size: size of the content in bytes.
    :param salt: extra input for the id (used for added settlements).
    """
    att_id = seed.uuid("attachment", account_id, settlement_id, created_by, extension, salt)
    return {
        "id": att_id,
        "key": f"settlements/{account_id}/{settlement_id}/{att_id}.{extension}",
        "content_type": CONTENT_TYPES.get(extension, "application/octet-stream"),
        "extension": extension,
        "created_by": created_by,
        "size": size,
    }


def make_settlement(
    seed: EmulatorSeed,
    account_id: str,
    provider: str,
    created_at: datetime,
    settled_at: datetime,
    attachment_sizes: dict[str, int] | None,
    salt: object,
) -> dict[str, Any]:
    """An internal settlement record (public fields plus ``account_id`` and attachment sizes).

    :param seed: the seed.
    :param account_id: owning merchant.
    :param provider: payout provider string, e.g. ``vipps``.
    :param created_at: when Dintero registered the settlement.
    :param settled_at: the settlement date.
    :param attachment_sizes: ``{extension: size}`` for the normalized Dintero attachments; the key
        ``source`` sizes the provider's own file. ``None`` means every format at the seed's size.
    :param salt: makes the ids unique (e.g. a sequence number).
    """
    sid = seed.uuid("settlement", account_id, provider, salt)
    rng = random.Random(seed.derive("amounts", sid))
    capture = rng.randrange(10_000, 5_000_000)
    refund = rng.randrange(0, capture // 10)
    fee = capture * 2 // 100
    source_ext = PROVIDERS.get(provider, (provider, "csv"))[1]
    sizes = (
        {"source": seed.attachment_size, **dict.fromkeys(DINTERO_FORMATS, seed.attachment_size)}
        if attachment_sizes is None
        else dict(attachment_sizes)
    )
    attachments = []
    if "source" in sizes:
        attachments.append(
            make_attachment(seed, account_id, sid, provider, source_ext, int(sizes.pop("source")), salt)
        )
    for ext, size in sizes.items():
        attachments.append(make_attachment(seed, account_id, sid, "dintero", ext, int(size), salt))
    return {
        "id": sid,
        "account_id": account_id,
        "start_at": iso(settled_at - timedelta(days=3)),
        "end_at": iso(settled_at - timedelta(days=1)),
        "created_at": iso(created_at),
        "updated_at": iso(created_at),
        "settled_at": iso(settled_at),
        "email_received_at": iso(created_at - timedelta(minutes=5)),
        "provider": provider,
        "provider_reference": f"{provider}-{seed.derive('ref', sid)[:12]}",
        "attachments": attachments,
        "amounts": [
            {
                "amount": capture - refund - fee,
                "capture": capture,
                "refund": refund,
                "fee": fee,
                "currency": "NOK",
            }
        ],
        "payment_status": "paid",
    }


def make_report(
    seed: EmulatorSeed,
    account_id: str,
    *,
    report_config_id: str | None,
    data_from: datetime,
    data_to: datetime,
    content_type: str,
    size: int,
    salt: object,
    job_id: str | None = None,
    name: str = "Monthly transactions",
) -> dict[str, Any]:
    """An internal report metadata record (public fields minus ``signed_url``, plus ``size``).

    :param seed: the seed.
    :param account_id: owning merchant.
    :param report_config_id: the insight configuration the report came from.
    :param data_from: start of the data interval.
    :param data_to: end of the data interval.
    :param content_type: ``application/pdf`` or ``text/csv``.
    :param size: size of the report file.
    :param salt: makes the id unique.
    :param job_id: shared by the pdf/csv siblings of one run.
    :param name: the custom report name.
    """
    rid = seed.uuid("report", account_id, salt, content_type)
    ext = "pdf" if content_type == "application/pdf" else "csv"
    return {
        "id": rid,
        "report_job_id": job_id or seed.uuid("report-job", account_id, salt),
        "account_id": account_id,
        "template_id": "checkout-transactions-v1",
        "content_type": content_type,
        "content_language": "en",
        "created_by": seed.uuid("report-creator"),
        "created_at": iso(data_to + timedelta(hours=2)),
        "data_from": iso(data_from),
        "data_to": iso(data_to),
        "schedule": "monthly",
        "report_file_name": f"{name.replace(' ', '_')}_{data_from:%Y-%m}_{rid[:8]}.{ext}",
        "custom_report_name": name,
        "report_config_id": report_config_id or "",
        "data_type": "checkout/transactions",
        "report_filters": [],
        "size": size,
    }


def build_seed_data(seed: EmulatorSeed) -> SeedData:
    """Materialise the whole deterministic start state.

    :param seed: the seed.
    """
    data = SeedData()
    data.accounts[seed.partner_id] = account_settings(seed, seed.partner_id, seed.partner_short_id, 0)
    data.accounts[seed.foreign_partner_id] = account_settings(
        seed, seed.foreign_partner_id, seed.foreign_partner_id[:4], 900
    )
    merchants = [(mid, seed.partner_short_id) for mid in seed.merchant_ids]
    merchants.append((seed.foreign_merchant_id, seed.foreign_partner_id[:4]))
    base = datetime(2026, 10, 1, 6, 0, tzinfo=timezone.utc)
    for index, (mid, partner_short) in enumerate(merchants, start=1):
        data.accounts[mid] = account_settings(seed, mid, partner_short, index)
        settlements: list[dict[str, Any]] = []
        for n in range(seed.settlements_per_provider):
            for p_index, provider in enumerate(PROVIDERS):
                settled = base + timedelta(days=(p_index * 4 + n * 2) % 40, hours=p_index)
                # Klarna files arrive late: created long after the settlement date, so that
                # created_at and settled_at orders differ (exercises item_created_at filters).
                lag = timedelta(days=30 if provider == "klarna" else 1, minutes=7 * p_index + n)
                settlements.append(
                    make_settlement(seed, mid, provider, settled + lag, settled, None, f"seed-{n}")
                )
        data.settlements[mid] = settlements
        config_id = seed.uuid("insight-config", mid)
        data.insight_configs[mid] = [
            {
                "id": config_id,
                "accountId": mid,
                "dataType": "checkout/transactions",
                "schedule": "monthly",
                "language": "en",
                "name": "Monthly transactions",
                "emails": [],
                "reportFilters": [],
                "contentTypes": ["application/pdf", "text/csv"],
                "created_at": iso(base - timedelta(days=20)),
                "created_by": seed.uuid("report-creator"),
            }
        ]
        reports: list[dict[str, Any]] = []
        for r in range(seed.reports_per_merchant):
            month = 9 + r  # 2026-09, 2026-10, ...
            year = 2026 + (month - 1) // 12
            month = (month - 1) % 12 + 1
            start = datetime(year, month, 1, tzinfo=timezone.utc)
            nxt = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=timezone.utc)
            job = seed.uuid("report-job", mid, r)
            for ctype in ("application/pdf", "text/csv"):
                reports.append(
                    make_report(
                        seed,
                        mid,
                        report_config_id=config_id,
                        data_from=start,
                        data_to=nxt - timedelta(milliseconds=1),
                        content_type=ctype,
                        size=seed.attachment_size,
                        salt=f"seed-{r}",
                        job_id=job,
                    )
                )
        data.reports[mid] = reports
        data.profiles[mid] = [
            {
                "profile_id": "default",
                "description": "Default payment profile",
                "configuration": {"active_payment_types": {"enabled": True}},
                "created_at": iso(base - timedelta(days=30)),
                "updated_at": iso(base - timedelta(days=30)),
            }
        ]
    return data


_MAGIC: dict[str, bytes] = {
    "pdf": b"%PDF-1.4\n% Dintero emulator\n",
    "csv": b"id;line;amount;currency\n",
    "xml": b'<?xml version="1.0" encoding="UTF-8"?>\n<!-- Dintero emulator -->\n',
    "json": b'{"emulator": "dintero", "filler": "',
}


def content_stream(key: str, size: int, extension: str, chunk_size: int = _CHUNK) -> Iterator[bytes]:
    """Yield exactly ``size`` deterministic bytes in chunks, using constant memory.

    The content starts with a header typical of the format (``%PDF``, an XML prolog, ...) and
    continues with seeded pseudo-random filler (printable for text formats). It is not meant to
    be parsed, only to be stable: the same ``key`` always gives the same bytes.

    :param key: identifies the content (e.g. seed-derived attachment key).
    :param size: number of bytes to yield.
    :param extension: file type; decides the header and whether the filler is printable.
    :param chunk_size: maximum size of each yielded chunk.
    """
    rng = random.Random(hashlib.sha256(key.encode()).digest())
    textual = extension != "pdf" and extension in CONTENT_TYPES
    head = _MAGIC.get(extension, b"")[:size]
    remaining = size
    if head:
        yield head
        remaining -= len(head)
    while remaining > 0:
        n = min(chunk_size, remaining)
        block = rng.randbytes(n)
        if textual:
            block = block.translate(_TEXT_TABLE)
        yield block
        remaining -= n


def content_sha256(key: str, size: int, extension: str) -> str:
    """The sha256 hex digest of :func:`content_stream` output.

    :param key: as for :func:`content_stream`.
    :param size: as for :func:`content_stream`.
    :param extension: as for :func:`content_stream`.
    """
    digest = hashlib.sha256()
    for chunk in content_stream(key, size, extension):
        digest.update(chunk)
    return digest.hexdigest()
