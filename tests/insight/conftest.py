"""Fixtures of the insight report tests."""

from __future__ import annotations
