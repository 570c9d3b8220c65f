"""
Rotate the webhook signing secret of a Dintero partner without losing a delivery, or recover a
lost one, in one run.

Trigger with ``{"webhook_url": "https://<your proxy>/dintero-webhooks/T11200000"}`` (the URL the
merchants' ``settlement_add`` subscriptions point at) and optionally ``"merchant_ids": [...]``
(default: every merchant of the partner subscribed to that URL).

``rotate`` keeps the current secret (Variable ``dintero_webhook_secret_<partner>``) as the
previous one, accepted by the receiver for 24 hours (``previous_valid_for``), and stores a new
one; ``re_sign`` then re-signs each merchant's subscription with the new secret (a subscription
still signed with the previous one is replaced; one already signed with the new one is left
alone, so a retried run changes nothing). When the secret Variable was lost, ``rotate`` stores a
new one and ``re_sign`` re-signs every subscription: the same run recovers.

Connection ``dintero_default``: the partner's API client (type ``dintero``, extra
``{"account_id": "T11200000"}``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_dintero.operators.webhooks import (
    CreateWebhookSubscriptionOperator,
    RotateWebhookSecretOperator,
)

with DAG(
    dag_id="dintero_rotate_webhook_secret",
    description="Rotate or recover the Dintero webhook signing secret; re-sign each merchant's subscription",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    params={"webhook_url": "https://example.com/hooks/dintero", "merchant_ids": []},
    tags=["dintero", "example"],
) as dag:
    rotate = RotateWebhookSecretOperator(task_id="rotate", previous_valid_for=timedelta(hours=24))

    @task
    def merchants(params: dict | None = None) -> list[str]:  # type: ignore[type-arg]
        """
        The merchants whose subscriptions are re-signed: ``merchant_ids``, or every merchant of the
        partner subscribed to ``webhook_url`` (one whose list Dintero answers 404/405 is kept: the
        re-sign task finds its subscription by the id it remembered).
        """
        from airflow_provider_dintero.exceptions import DinteroApiError
        from airflow_provider_dintero.hooks.dintero import DinteroPartnerHook
        from airflow_provider_dintero.poller import listed_account_ids

        chosen = list((params or {}).get("merchant_ids") or [])
        if chosen:
            return chosen
        hook, url = DinteroPartnerHook(), (params or {}).get("webhook_url")
        subscribed = []
        for merchant in listed_account_ids(hook.list_merchants()):
            try:
                urls = {(s.get("config") or {}).get("url") for s in hook.list_webhook_subscriptions(merchant)}
            except DinteroApiError as error:
                if error.status not in (404, 405):
                    raise
                urls = {url}
            if url in urls:
                subscribed.append(merchant)
        return subscribed

    re_sign = CreateWebhookSubscriptionOperator.partial(
        task_id="re_sign", url="{{ params.webhook_url }}", events=["settlement_add"], generate_secret=True
    ).expand(account_id=merchants())

    rotate >> re_sign
