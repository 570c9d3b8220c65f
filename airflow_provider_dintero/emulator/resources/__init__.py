"""The emulator's endpoints, one module per resource; :data:`ROUTES` lists them all."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

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

#: the modules whose paths overlap, in the order their routes are tried
ORDERED = (auth, accounts, clients, profiles, settlements, reports, webhooks, control)


def _other_modules() -> list[ModuleType]:
    """Every other resource module of this package (by name): a new one needs no line here."""
    listed = {module.__name__ for module in ORDERED}
    names = sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))
    modules = [importlib.import_module(f"{__name__}.{name}") for name in names]
    return [module for module in modules if module.__name__ not in listed]


ROUTES = [route for module in (*ORDERED, *_other_modules()) for route in module.ROUTES]
