"""Fixtures of the insight report tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _fresh_secrets_masker() -> Iterator[None]:
    """
    Start each test with an empty secrets masker, as each task process does on Airflow 3.

    Every signed URL the hook sees is registered with the masker, and Airflow 3's masker
    recompiles one regex over all registered secrets on each registration; in one long test
    process that cost grows with every test.
    """
    try:
        from airflow.sdk._shared.secrets_masker import reset_secrets_masker
    except ImportError:  # Airflow 2.11: one masker, cheap enough
        yield
        return
    reset_secrets_masker()
    yield
    reset_secrets_masker()
