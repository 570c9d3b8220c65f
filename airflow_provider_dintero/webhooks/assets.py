"""
Names shared by the webhook receiver, the subscription operator and event-driven DAGs: the asset
a settlement wake-up is recorded on, the Variable holding the signing secret, and the receiver's
URL path. Importing this module works on Airflow 3 and 2.11 alike.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_dintero.validation import validate_account_id

#: Where the receiver's FastAPI app is mounted in Airflow 3's api-server.
URL_PREFIX = "/dintero-webhooks"

#: Prefix of the Airflow Variable that holds the signing secret of an account's subscriptions.
SECRET_VARIABLE_PREFIX = "dintero_webhook_secret_"


def settlement_events_asset(account_id: str) -> Any:
    """
    The asset a new settlement of ``account_id`` (a partner, or a merchant on its own) wakes.

    ``Asset(name="dintero_settlements_<aid>", uri="dintero://<aid>/settlements")`` on Airflow 3
    (``Dataset("dintero://<aid>/settlements")`` on 2.11, where only the URI exists). The webhook
    receiver records one asset event on it per ``settlement_add`` delivery; a DAG scheduled on
    it re-reads the settlements the events name.

    :param account_id: the account whose settlements the asset stands for, e.g. ``P11200000``.
    """
    from airflow.providers.common.compat.sdk import Asset

    aid = validate_account_id(account_id)
    uri = f"dintero://{aid}/settlements"
    try:
        return Asset(name=f"dintero_settlements_{aid}", uri=uri)
    except TypeError:  # Airflow 2.11: Dataset(uri) has no name
        return Asset(uri)


def webhook_secret_variable(account_id: str) -> str:
    """
    The Airflow Variable key of the signing secret for webhooks received for ``account_id``.

    :param account_id: the account in the receiver's path (a partner, or a merchant on its own).
    """
    return f"{SECRET_VARIABLE_PREFIX}{validate_account_id(account_id)}"


def previous_secret_variable(account_id: str) -> str:
    """
    The Variable key of the previous signing secret while a rotation window lasts:
    ``dintero_webhook_secret_<aid>_previous``, holding ``{"secret": ..., "expires_at": <ISO 8601>}``.

    :param account_id: the account in the receiver's path.
    """
    return f"{webhook_secret_variable(account_id)}_previous"


def receiver_path(account_id: str) -> str:
    """
    The receiver's URL path for ``account_id`` under the api-server, e.g. ``/dintero-webhooks/P11200000``.

    Prefix it with the public base URL of the reverse proxy in front of the api-server to get
    the subscription URL.

    :param account_id: the account whose settlements the deliveries wake.
    """
    return f"{URL_PREFIX}/{validate_account_id(account_id)}"
