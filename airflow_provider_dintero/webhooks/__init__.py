"""
Dintero webhooks as an Airflow wake-up: a receiver for ``settlement_add`` deliveries that records
an asset event, so a DAG scheduled on the asset runs within seconds of a new settlement.

**Airflow 3 only, and off unless asked.** The receiver is a FastAPI app mounted in the api-server by
an Airflow plugin (:mod:`airflow_provider_dintero.webhooks.plugin`, registered through this
package's ``airflow.plugins`` entry point) only when ``[dintero] webhook_receiver_enabled = True``,
and it serves only the accounts in ``[dintero] webhook_accounts``
(:mod:`airflow_provider_dintero.webhooks.settings`). It records the event in-process through Airflow's
``AssetManager.register_asset_change``, the same code path as ``POST /api/v2/assets/events``, so
it needs no Airflow credentials of its own. On Airflow 2.11 the modules import cleanly, the
plugin carries no app, and the settlement sensor DAG is the way to react to new settlements.

How it fits together::

    CreateWebhookSubscriptionOperator(
        task_id="subscribe",
        account_id=merchant_id,
        url="https://airflow.example.com/dintero-webhooks/P11200000",
        generate_secret=True,   # stored in Variable dintero_webhook_secret_P11200000
    )

    with DAG("settlements_on_webhook", schedule=[settlement_events_asset("P11200000")]): ...

Each verified ``settlement_add`` becomes one event on ``settlement_events_asset(<account in the
path>)`` with extra ``{"version": 1, "account_id", "settlement_ids", "providers", "source":
"webhook", "event_delivery"}``: ids only, never a credential. A body whose settlements cannot be
read is still a wake-up (``"settlement_ids": []``, ``"shape": "unrecognised"``).

**The webhook is only a wake-up.** The consumer re-reads every settlement by id from Dintero's
API with its own credentials, so a forged delivery cannot inject data (at worst it wakes a DAG
that finds ids the API does not confirm, and a merchant outside the partner's reach answers 403)
and a lost delivery cannot drop data (the polling watcher or the daily sensor DAG still finds
the settlement). Verification keeps forged and replayed deliveries from waking DAGs at all.

**Exposing it safely.** The api-server is not meant to face the internet. Put a reverse proxy
with TLS in front of it and forward only this path; Dintero delivers to https URLs and does
not follow redirects:

* forward only ``POST /dintero-webhooks/`` (everything else, ``/api``, ``/ui``, ``/auth`` and
  ``/execution``, stays private), for example with nginx::

      location /dintero-webhooks/ {
          limit_except POST { deny all; }
          client_max_body_size 256k;
          proxy_pass http://127.0.0.1:8080;
      }

* cap the body at the proxy too (the receiver refuses more than 256 KiB with 413; change it with
  ``[dintero] webhook_max_body_bytes``), and rate-limit the path;
* keep the signing secret only in the Variable ``dintero_webhook_secret_<account_id>`` (or the
  secrets backend serving it): the receiver answers 404 for an account without one, and never
  logs it.

Refusals: 404 unlisted account or no secret, 413 too large, 401 unsigned or bad signature, 415 not
JSON, 400 not a JSON object; a replayed delivery answers 200 ``duplicate`` and records nothing
(see :mod:`airflow_provider_dintero.webhooks.receiver` and
:mod:`airflow_provider_dintero.webhooks.replay`).
"""

from __future__ import annotations

from airflow_provider_dintero.webhooks.assets import (
    SECRET_VARIABLE_PREFIX,
    URL_PREFIX,
    receiver_path,
    settlement_events_asset,
    webhook_secret_variable,
)

__all__ = [
    "SECRET_VARIABLE_PREFIX",
    "URL_PREFIX",
    "receiver_path",
    "settlement_events_asset",
    "webhook_secret_variable",
]
