"""The emulator's endpoints, one module per resource; :data:`ROUTES` lists them all."""

from __future__ import annotations

from airflow_provider_dintero.emulator.resources import (
    accounts,
    auth,
    clients,
    control,
    profiles,
    reports,
    settlements,
    webhooks,
)

ROUTES = [
    *auth.ROUTES,
    *accounts.ROUTES,
    *clients.ROUTES,
    *profiles.ROUTES,
    *settlements.ROUTES,
    *reports.ROUTES,
    *webhooks.ROUTES,
    *control.ROUTES,
]
