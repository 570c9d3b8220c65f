"""A standard-library emulator of the Dintero partner APIs for tests and local demos.

Start one with ``with DinteroEmulator() as emu: ...`` or ``python -m airflow_provider_dintero.emulator``.
It never imports Airflow.
"""

from __future__ import annotations

from airflow_provider_dintero.emulator.models import (
    EmulatorSettings,
    QueryPairs,
    RateLimitRule,
    RequestRecord,
    WebhookDelivery,
)
from airflow_provider_dintero.emulator.seed import EmulatorSeed
from airflow_provider_dintero.emulator.server import DinteroEmulator

__all__ = [
    "DinteroEmulator",
    "EmulatorSeed",
    "EmulatorSettings",
    "QueryPairs",
    "RateLimitRule",
    "RequestRecord",
    "WebhookDelivery",
]
