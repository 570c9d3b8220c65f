"""Provider metadata that Airflow reads through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow_provider_dintero import __version__

_INTEGRATION = "Dintero"
#: every operators module (read from the package directory, nothing imported): a new one is listed
_OPERATOR_MODULES = sorted(
    f"airflow_provider_dintero.operators.{path.stem}"
    for path in (Path(__file__).parent / "operators").glob("*.py")
    if not path.stem.startswith("_")
)

#: Defaults of the connection's extra fields (the hook reads these when a field is empty).
DEFAULTS: dict[str, Any] = {
    "checkout_base_url": "https://checkout.dintero.com",
    "timeout": 30,
    "max_retries": 5,
    "retry_backoff": 1.0,
    "retry_max_wait": 60.0,
    "cache_mode": "memory",
    "refresh_margin": 300,
    "cache_lease_settle": 1.0,
    "cache_lease_ttl": 60,
    "max_response_bytes": 16 * 1024 * 1024,
    "max_pages": 10000,
    "min_download_rate": 1024,
}


def _field(label: str, kind: str, description: str, placeholder: Any = None, **schema: Any) -> dict[str, Any]:
    name_default = schema.pop("name", None)
    default = DEFAULTS.get(name_default) if name_default else None
    spec: dict[str, Any] = {
        "label": label,
        "schema": {"type": [kind, "null"], **({"default": default} if default is not None else {}), **schema},
        "description": description,
    }
    if placeholder is not None:  # Airflow 3's form shows a string field's ``examples`` as its hint
        spec["placeholder"] = placeholder
        if kind == "string" and "enum" not in schema:
            spec["schema"]["examples"] = [placeholder]
    return spec


#: The extra fields of the Dintero connection form, read by Airflow 3.2+ (``conn-fields``) and
#: turned into widgets for Airflow 2.11-3.1 by ``connection.connection_form_widgets`` (a schema's
#: type picks the widget class: integer -> IntegerField, boolean -> BooleanField, format password
#: -> PasswordField, anything else (string, number, enum, object) -> StringField, checked on save).
#: No name contains a word Airflow treats as sensitive ("token", "secret", "password", ...): such
#: fields come back from the UI as ``***``; but ``proxies`` (a proxy URL may hold a password): it
#: has no default for the form to mask, and a ``***`` sent back on an edit is replaced by the
#: stored value (Airflow's own merge).
CONNECTION_FIELDS: dict[str, dict[str, Any]] = {
    "account_id": _field(
        "Account ID",
        "string",
        "Partner (ends in 00000) or merchant account: T (test) or P (production) and 8 digits, "
        "e.g. T11200000.",
        "T11200000",
        pattern="^[PT][0-9]{8}$",
    ),
    "checkout_base_url": _field(
        "Checkout base URL",
        "string",
        "Checkout API for payment profiles (default https://checkout.dintero.com).",
        DEFAULTS["checkout_base_url"],
        name="checkout_base_url",
    ),
    "timeout": _field(
        "Request timeout (seconds)",
        "number",
        "Seconds to wait for a connection or a read (default 30); also the grace period before "
        "the minimum download rate applies.",
        DEFAULTS["timeout"],
        name="timeout",
        exclusiveMinimum=0,
        maximum=3600,
    ),
    "max_retries": _field(
        "Retries on 429/5xx/connection errors",
        "integer",
        "How many times a request is retried, 0 to 20 (default 5).",
        DEFAULTS["max_retries"],
        name="max_retries",
        minimum=0,
        maximum=20,
    ),
    "cache_mode": _field(
        "Access token cache",
        "string",
        "memory: per worker process (default); variable: shared by all workers through an "
        "(encrypted) Airflow Variable.",
        DEFAULTS["cache_mode"],
        name="cache_mode",
        enum=["memory", "variable"],
    ),
    "refresh_margin": _field(
        "Access token refresh margin (seconds)",
        "number",
        "Seconds before expiry at which a cached access token is replaced (default 300).",
        DEFAULTS["refresh_margin"],
        name="refresh_margin",
        minimum=0,
    ),
    "max_response_bytes": _field(
        "Largest JSON answer (bytes)",
        "integer",
        "Answers above this size are refused (default 16 MiB); downloads are not capped.",
        DEFAULTS["max_response_bytes"],
        name="max_response_bytes",
        minimum=1024,
    ),
    "max_pages": _field(
        "Page cap per listing",
        "integer",
        "A listing that returns more pages than this fails (default 10000).",
        DEFAULTS["max_pages"],
        name="max_pages",
        minimum=1,
    ),
    "proxies": _field(
        "Proxies",
        "string",
        'JSON object of a proxy URL per scheme, e.g. {"https": "http://proxy.example:3128"} (as the '
        "http provider reads it); empty: HTTPS_PROXY, HTTP_PROXY and NO_PROXY from the environment.",
        '{"https": "http://proxy.example:3128"}',
    ),
}

#: How the standard connection fields are shown (both UIs).
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port"],
    "relabeling": {"host": "Base URL", "login": "Client ID", "password": "Client secret"},
    "placeholders": {
        "host": "https://api.dintero.com",
        "login": "API client id",
        "password": "API client secret",
        **{
            name: str(spec["placeholder"])
            for name, spec in CONNECTION_FIELDS.items()
            if "placeholder" in spec
        },
    },
}


def get_provider_info() -> dict[str, Any]:
    """
    Describe this provider to Airflow's providers manager.

    The connection form is declared here (``conn-fields`` / ``ui-field-behaviour``, read by
    Airflow 3.2+) and turned into the hook's ``get_connection_form_widgets`` /
    ``get_ui_field_behaviour`` (read by Airflow 2.11, 3.0 and 3.1) by
    :mod:`airflow_provider_dintero.connection`.
    """
    return {
        "package-name": "airflow-provider-dintero",
        "name": "Dintero",
        "description": "Dintero Partner API: merchant provisioning, settlement and insight reports.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://docs.dintero.com/docs/partners/partners",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": ["airflow_provider_dintero.hooks.dintero"],
            }
        ],
        "operators": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": _OPERATOR_MODULES,
            }
        ],
        "sensors": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": ["airflow_provider_dintero.sensors.settlements"],
            }
        ],
        "triggers": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": ["airflow_provider_dintero.triggers.settlements"],
            }
        ],
        "transfers": [
            {
                "source-integration-name": _INTEGRATION,
                "target-integration-name": "Amazon Simple Storage Service (S3)",
                "python-module": "airflow_provider_dintero.transfers.settlements_to_s3",
            },
            {
                "source-integration-name": _INTEGRATION,
                "target-integration-name": "Amazon Simple Storage Service (S3)",
                "python-module": "airflow_provider_dintero.transfers.insight_report_to_s3",
            },
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_dintero.hooks.dintero.DinteroPartnerHook",
                "hook-name": "Dintero",
                "connection-type": "dintero",
                "conn-fields": CONNECTION_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
    }
