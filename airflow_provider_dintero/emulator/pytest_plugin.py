"""pytest fixtures for testing DAGs against the Dintero emulator (registered via ``pytest11``).

Fixtures:

- ``dintero_emulator_server`` (session): one started :class:`DinteroEmulator`.
- ``dintero_emulator`` (function): the same server, reset to the seed state for each test.
- ``dintero_connection`` (function): sets ``AIRFLOW_CONN_DINTERO_DEFAULT`` to a JSON connection
  pointing at the emulator and returns the conn id ``"dintero_default"``.

Loading the plugin costs nothing: it imports only pytest and the standard library, and the
emulator is imported and started the first time a test asks for one of these fixtures. Settings
for a whole module or test: ``@pytest.mark.dintero_emulator(strict_dates="spec", ...)`` (any
:class:`~airflow_provider_dintero.emulator.EmulatorSettings` field) or ``dintero_emulator.settings``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_dintero.emulator.server import DinteroEmulator

CONN_ID = "dintero_default"
MARKER = "dintero_emulator"


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``dintero_emulator`` marker.

    :param config: the pytest configuration.
    """
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**settings): EmulatorSettings values the dintero_emulator fixture applies after its reset",
    )


@pytest.fixture(scope="session")
def dintero_emulator_server() -> Iterator[DinteroEmulator]:
    """One emulator for the whole test session, bound to 127.0.0.1 on a free port."""
    from airflow_provider_dintero.emulator.server import DinteroEmulator

    with DinteroEmulator() as emu:
        yield emu


@pytest.fixture
def dintero_emulator(
    dintero_emulator_server: DinteroEmulator, request: pytest.FixtureRequest
) -> DinteroEmulator:
    """The session emulator, reset to its deterministic seed state, then given the marker's settings.

    :param dintero_emulator_server: the session-scoped emulator.
    :param request: the requesting test (for ``@pytest.mark.dintero_emulator(...)``; the closest
        marker wins per setting).
    """
    dintero_emulator_server.reset()
    settings: dict[str, object] = {}
    for marker in reversed(list(request.node.iter_markers(MARKER))):
        settings.update(marker.kwargs)
    dintero_emulator_server.settings.update(settings)
    return dintero_emulator_server


def connection_json(emu: DinteroEmulator) -> str:
    """The ``AIRFLOW_CONN_*`` JSON for a connection to ``emu`` with the partner credentials.

    :param emu: a started emulator.
    """
    return json.dumps(
        {
            "conn_type": "dintero",
            "login": emu.partner_client_id,
            "password": emu.partner_client_secret,
            "host": emu.base_url,
            "extra": {"account_id": emu.partner_id, "checkout_base_url": emu.base_url},
        }
    )


@pytest.fixture
def dintero_connection(dintero_emulator: DinteroEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the ``dintero_default`` Airflow connection at the emulator; returns the conn id.

    :param dintero_emulator: the reset emulator.
    :param monkeypatch: pytest's monkeypatch (restores the environment afterwards).
    """
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", connection_json(dintero_emulator))
    return CONN_ID
