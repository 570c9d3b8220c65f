"""
Provision a merchant of a Dintero partner for data collection, safely re-runnable.

Trigger with ``{"merchant_id": "T11200001"}``. The DAG reads the merchant's details, creates
an API client on the merchant (its secret goes to an encrypted Airflow Variable, never to logs
or XCom), grants it the scopes a data-collection client needs on the merchant, makes sure a
payment profile exists and subscribes a URL (the ``webhook_url`` param) to ``settlement_add``
webhooks, signed with the secret the webhook receiver checks (Variable
``dintero_webhook_secret_<partner>``, generated when missing). Point ``webhook_url`` at
``https://<your proxy>/dintero-webhooks/<partner>`` to have new settlements wake
``example_dags/settlements_on_event.py`` within seconds (Airflow 3). Every step looks before it
writes: a second run creates nothing.

Connection ``dintero_default``: the partner's API client (type ``dintero``, extra
``{"account_id": "T11200000"}``).
"""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_dintero.operators.accounts import GetAccountOperator
from airflow_provider_dintero.operators.api_clients import CreateApiClientOperator, GrantOperator
from airflow_provider_dintero.operators.payment_profiles import CreatePaymentProfileOperator
from airflow_provider_dintero.operators.webhooks import CreateWebhookSubscriptionOperator

MERCHANT = "{{ params.merchant_id }}"

# [START howto_provision_merchant]
with DAG(
    dag_id="dintero_provision_merchant",
    description="Provision a Dintero merchant: API client, grants, payment profile, settlement webhook",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    params={
        "merchant_id": "T11200001",
        "client_name": "airflow-data-collection",
        "webhook_url": "https://example.com/hooks/dintero",
    },
    tags=["dintero", "example"],
) as dag:
    account = GetAccountOperator(task_id="account_details", account_id=MERCHANT)

    api_client = CreateApiClientOperator(
        task_id="api_client",
        account_id=MERCHANT,
        name="{{ params.client_name }}",
        client_id="{{ params.client_name }}",
        description="Reads settlements and reports for Airflow",
        secret_destination="variable",
        secret_variable_key="dintero_client_secret_{{ params.merchant_id }}",
    )

    grants = GrantOperator(
        task_id="grants",
        account_id=MERCHANT,
        client_id="{{ ti.xcom_pull(task_ids='api_client')['client']['id'] }}",
        scopes=["read:settlements", "read:reports", "admin:insight", "read:hooks"],
    )

    payment_profile = CreatePaymentProfileOperator(
        task_id="payment_profile",
        account_id=MERCHANT,
        profile={
            "profile_id": "airflow-default",
            "description": "Payment profile provisioned by Airflow",
            "configuration": {"active_payment_types": {"enabled": True}, "auto_capture": False},
        },
    )

    settlement_webhook = CreateWebhookSubscriptionOperator(
        task_id="settlement_webhook",
        account_id=MERCHANT,
        url="{{ params.webhook_url }}",
        events=["settlement_add"],
        # signed with the secret in Variable dintero_webhook_secret_<partner>, which the webhook
        # receiver at /dintero-webhooks/<partner> reads (made here when missing; never logged)
        generate_secret=True,
    )

    account >> api_client >> grants >> payment_profile >> settlement_webhook
    # [END howto_provision_merchant]
