"""
Debian's Chromium for the suites that look at pages (the system suite, the docs site): found, or
installed with apt-get when missing and we are root; never downloaded by a test tool.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
#: no sandbox (root), and none of Chromium's own network traffic: only 127.0.0.1 is reachable here
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def missing(message: str) -> None:
    """
    Fail under CI (the browser is part of the suite there), else skip with ``message``.

    :param message: what is missing and how to get it.
    """
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: this check must run)")
    pytest.skip(message)


def _install_chromium() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600, check=False)
    subprocess.run(
        ["apt-get", "install", "-y", "chromium"], env=env, capture_output=True, timeout=900, check=False
    )


def chromium_path() -> str:
    """Debian's Chromium, installed with apt-get when missing and we are root; else skip (fail under CI)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("Python playwright is not installed (it is in the dev locks in requirements/)")
    if (
        not Path(CHROMIUM).exists()
        and hasattr(os, "geteuid")
        and os.geteuid() == 0
        and shutil.which("apt-get")
    ):
        _install_chromium()
    if not Path(CHROMIUM).exists():
        missing(f"{CHROMIUM} not found: install Debian's chromium package (apt-get install -y chromium)")
    return CHROMIUM
