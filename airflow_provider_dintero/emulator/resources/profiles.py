"""Payment profiles (checkout session profiles, ``/v1/admin/session/profiles``).

Profiles belong to the token's account (the path names none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_dintero.emulator.collection import Collection, Paging, Record
from airflow_provider_dintero.emulator.core import Request, now, require_str
from airflow_provider_dintero.emulator.models import ApiError, field_error
from airflow_provider_dintero.emulator.seed import iso

if TYPE_CHECKING:
    from airflow_provider_dintero.emulator.app import EmulatorApp

PROFILES_READ = ("admin:checkout", "read:checkout", "write:checkout")
PROFILES_WRITE = ("admin:checkout", "write:checkout", "write:checkout:/admin/session/profiles")

#: Top-level keys of a payment profile ``configuration`` (checkout PaymentConfiguration and friends).
PROFILE_CONFIGURATION_KEYS = frozenset(
    {
        "auto_capture",
        "channel",
        "publish",
        "active_payment_types",
        "default_payment_type",
        "bambora",
        "dintero",
        "dintero_psp",
        "instabank",
        "netaxept",
        "payex",
        "vipps",
        "collector",
        "klarna",
        "santander",
        "swish",
        "payout",
        "discounts",
        "theme",
        "countries",
        "default_customer_type",
        "allow_different_billing_shipping_address",
    }
)


def _validate(body: Record) -> None:
    require_str(body, "description")
    config = body.get("configuration")
    if config is None:
        raise field_error("configuration", "is required")
    if not isinstance(config, dict):
        raise field_error("configuration", "must be an object")
    unknown = sorted(set(config) - PROFILE_CONFIGURATION_KEYS)
    if unknown:
        raise ApiError(
            400,
            f"unknown configuration field(s): {', '.join(unknown)}",
            code="VALIDATION_ERROR",
            errors=[{"field": f"configuration.{k}", "message": "unknown field"} for k in unknown],
        )
    if "profile_id" in body and (not isinstance(body["profile_id"], str) or not body["profile_id"]):
        raise field_error("profile_id", "must be a non-empty string")


def _build(app: EmulatorApp, req: Request, body: Record) -> Record:
    pid = body.get("profile_id") or f"{req.account}.{app.next_id('profile').replace('-', '')}"
    created = iso(now())
    return {**body, "profile_id": pid, "created_at": created, "updated_at": created}


def _replace(app: EmulatorApp, req: Request, old: Record, body: Record) -> Record:
    return {**body, "profile_id": old["profile_id"], "created_at": old["created_at"]}


PROFILES = Collection(
    endpoint="profiles",
    label="profile",
    path="/v1/admin/session/profiles",
    store="profiles",
    read_scopes=PROFILES_READ,
    write_scopes=PROFILES_WRITE,
    validate=_validate,
    build=_build,
    replace=_replace,
    id_field="profile_id",
    duplicate_kind="profile",
    duplicate_key=lambda r: r["profile_id"],
    duplicate_code="DUPLICATE_PROFILE",
    paging=Paging(default=10, maximum=100, setting="profiles_paging"),
)

ROUTES = PROFILES.routes()
