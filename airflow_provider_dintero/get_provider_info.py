"""Provider metadata that Airflow reads through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_dintero import __version__

_INTEGRATION = "Dintero"


def get_provider_info() -> dict[str, Any]:
    """
    Describe this provider to Airflow's providers manager.

    The connection form is declared here (``conn-fields`` / ``ui-field-behaviour``, read by
    Airflow 3's UI) and again on the hook (``get_connection_form_widgets`` /
    ``get_ui_field_behaviour``, read by Airflow 2.11's UI).
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
                "python-modules": [
                    "airflow_provider_dintero.operators.accounts",
                    "airflow_provider_dintero.operators.api_clients",
                    "airflow_provider_dintero.operators.payment_profiles",
                    "airflow_provider_dintero.operators.webhooks",
                    "airflow_provider_dintero.operators.report_configurations",
                ],
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
                "conn-fields": {
                    "account_id": {
                        "label": "Account ID",
                        "schema": {"type": ["string", "null"], "pattern": "^[PT][0-9]{8}$"},
                        "description": "Partner (ends in 00000) or merchant account: T (test) or P "
                        "(production) and 8 digits, e.g. T11200000.",
                    },
                    "checkout_base_url": {
                        "label": "Checkout base URL",
                        "schema": {"type": ["string", "null"], "default": "https://checkout.dintero.com"},
                    },
                    "timeout": {
                        "label": "Request timeout (seconds)",
                        "schema": {"type": ["number", "null"], "default": 30},
                    },
                    "max_retries": {
                        "label": "Retries on 429/5xx/connection errors",
                        "schema": {"type": ["integer", "null"], "default": 5, "minimum": 0},
                    },
                    "cache_mode": {
                        "label": "Token cache",
                        "schema": {
                            "type": ["string", "null"],
                            "default": "memory",
                            "enum": ["memory", "variable"],
                        },
                        "description": "memory: per worker process; variable: shared by all "
                        "workers through an (encrypted) Airflow Variable.",
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {
                        "host": "Base URL",
                        "login": "Client ID",
                        "password": "Client secret",
                    },
                    "placeholders": {
                        "host": "https://api.dintero.com",
                        "login": "API client id",
                        "password": "API client secret",
                        "account_id": "T11200000",
                    },
                },
            }
        ],
    }
