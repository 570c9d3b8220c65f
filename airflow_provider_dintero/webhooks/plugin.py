"""
The Airflow plugin that mounts the Dintero webhook receiver in Airflow 3's api-server.

Registered through the ``airflow.plugins`` entry point of this package, so installing the
provider is enough: the api-server serves ``POST /dintero-webhooks/<account_id>``. The route
answers 404 for every account until a signing secret is stored for it (Variable
``dintero_webhook_secret_<account_id>``), so the plugin is inert until you opt in.

On Airflow 2.11 this module imports cleanly and the plugin carries no app: the receiver is
Airflow 3 only (2.11's webserver has no FastAPI app to mount it in).
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_dintero.webhooks.assets import URL_PREFIX

log = logging.getLogger(__name__)


def fastapi_apps() -> list[dict[str, Any]]:
    """The plugin's ``fastapi_apps``: the receiver on Airflow 3, nothing on 2.11."""
    try:
        import fastapi  # noqa: F401
    except ImportError:  # Airflow 2.11
        return []
    from airflow_provider_dintero.webhooks.receiver import create_app

    return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Dintero webhook receiver"}]


class DinteroWebhooksPlugin(AirflowPlugin):
    """Mounts the Dintero webhook receiver at ``/dintero-webhooks`` (Airflow 3 api-server only)."""

    name = "dintero_webhooks"
    fastapi_apps = fastapi_apps()
