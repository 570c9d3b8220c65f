"""A standard-library emulator of the Dintero partner APIs for tests and local demos.

Start one with ``with DinteroEmulator() as emu: ...`` or ``python -m airflow_provider_dintero.emulator``.
It never imports Airflow. The names below are imported on first use, so that loading the
package (as the ``pytest11`` plugin does in every test run) costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_dintero.emulator.models import (
        EmulatorSettings,
        QueryPairs,
        RateLimitRule,
        RequestRecord,
        WebhookDelivery,
    )
    from airflow_provider_dintero.emulator.seed import EmulatorSeed
    from airflow_provider_dintero.emulator.server import DinteroEmulator

_HOMES = {
    "DinteroEmulator": "server",
    "EmulatorSeed": "seed",
    "EmulatorSettings": "models",
    "QueryPairs": "models",
    "RateLimitRule": "models",
    "RequestRecord": "models",
    "WebhookDelivery": "models",
}

__all__ = [
    "DinteroEmulator",
    "EmulatorSeed",
    "EmulatorSettings",
    "QueryPairs",
    "RateLimitRule",
    "RequestRecord",
    "WebhookDelivery",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
