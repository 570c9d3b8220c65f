"""
The Airflow plugin that mounts the Dintero webhook receiver in Airflow 3's api-server.

Registered through the ``airflow.plugins`` entry point of this package, but **closed unless
asked**: the receiver is mounted only when ``[dintero] webhook_receiver_enabled = True`` (env
``AIRFLOW__DINTERO__WEBHOOK_RECEIVER_ENABLED``); otherwise no route exists and every path under
``/dintero-webhooks`` is the api-server's own 404. When the api-server collects the plugin's apps
every ``[dintero]`` option is checked (:mod:`airflow_provider_dintero.webhooks.settings`), and a bad
value stops the api-server's start-up with a message naming the option and the expected form
(Airflow catches a plugin's ordinary exceptions and carries on, so the plugin exits instead).
Other Airflow processes load the plugin without reading these options.

On Airflow 2.11 this module imports cleanly and the plugin carries no app: the receiver is
Airflow 3 only (2.11's webserver has no FastAPI app to mount it in). On Airflow 3.0 to 3.2,
enabling it stops the api-server's start-up with a message naming Airflow 3.3: the receiver is
tested live on 3.3 only (see the supported lines in the documentation).
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_dintero.webhooks.assets import URL_PREFIX
from airflow_provider_dintero.webhooks.settings import DinteroConfigError, load_settings

log = logging.getLogger(__name__)

#: The oldest Airflow line the receiver is tested on (live, in the system suite).
RECEIVER_MIN_AIRFLOW = "3.3"


def _airflow_line() -> str:
    """The running Airflow's ``major.minor``."""
    from airflow import __version__ as version

    return ".".join(str(version).split(".")[:2])


def _older_line(line: str, minimum: str) -> bool:
    """Whether ``line`` (``major.minor``) is before ``minimum``."""

    def key(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.split(".") if part.isdigit())

    return key(line) < key(minimum)


def receiver_apps() -> list[dict[str, Any]]:
    """
    The plugin's ``fastapi_apps``: the receiver when enabled (Airflow 3), else nothing.

    Raises :class:`SystemExit` with the option's name and expected form when a ``[dintero]``
    option is invalid.
    """
    try:
        import fastapi  # noqa: F401
    except ImportError:  # Airflow 2.11
        return []
    try:
        settings = load_settings()
    except DinteroConfigError as error:
        message = f"The Dintero webhook receiver cannot start: {error}"
        log.error("%s", message)
        raise SystemExit(message) from None
    if not settings.enabled:
        log.info(
            "Dintero webhook receiver is off ([dintero] webhook_receiver_enabled = False): no route mounted"
        )
        return []
    line = _airflow_line()
    if _older_line(line, RECEIVER_MIN_AIRFLOW):
        message = (
            f"The Dintero webhook receiver cannot start: it needs Airflow {RECEIVER_MIN_AIRFLOW} or later "
            f"(this api-server runs Airflow {line}). Set [dintero] webhook_receiver_enabled = False, "
            "and wait for settlements with the settlement sensor (example_dags/settlements_to_s3.py)"
        )
        log.error("%s", message)
        raise SystemExit(message)
    from airflow_provider_dintero.webhooks.receiver import create_app

    if not settings.accounts:
        log.warning(
            "Dintero webhook receiver is on but [dintero] webhook_accounts is empty: every delivery "
            "is refused (404) until accounts are listed"
        )
    return [{"app": create_app(settings), "url_prefix": URL_PREFIX, "name": "Dintero webhook receiver"}]


class DinteroWebhooksPlugin(AirflowPlugin):
    """Mounts the Dintero webhook receiver at ``/dintero-webhooks`` when enabled (Airflow 3 only)."""

    name = "dintero_webhooks"

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """The receiver app, built (and the configuration checked) when the api-server asks."""
        return receiver_apps()
