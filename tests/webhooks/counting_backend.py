"""
A secrets backend that answers nothing and counts what it was asked: configured in front of
Airflow's own (``[secrets] backend = tests.webhooks.counting_backend.CountingSecretsBackend``) it
shows how many look-ups the webhook receiver caused, as Vault or AWS Secrets Manager would bill
them. With ``backend_kwargs = {"path": ...}`` every look-up is also appended to that file (one
line per key), so a test can count the look-ups of another process (the api-server).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from airflow.secrets import BaseSecretsBackend


class CountingSecretsBackend(BaseSecretsBackend):
    """
    Counts ``get_variable`` and ``get_conn_value`` calls by key; always answers ``None``.

    :param path: a file each looked-up key is appended to (optional).
    :param kwargs: ignored (what Airflow passes through ``backend_kwargs``).
    """

    def __init__(self, path: str | None = None, **kwargs: Any) -> None:
        super().__init__()
        self.path = path
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _count(self, key: str) -> None:
        with self._lock:
            self.calls[key] += 1
            if self.path:
                with open(self.path, "a", encoding="utf-8") as out:
                    out.write(f"{key}\n")

    def get_variable(self, key: str, *args: Any, **kwargs: Any) -> str | None:
        """
        Count the look-up of Variable ``key``; answer ``None`` (the next backend decides).

        :param key: the Variable key.
        :param args: ignored.
        :param kwargs: ignored.
        """
        self._count(f"variable:{key}")
        return None

    def get_conn_value(self, conn_id: str, *args: Any, **kwargs: Any) -> str | None:
        """
        Count the look-up of connection ``conn_id``; answer ``None``.

        :param conn_id: the connection id.
        :param args: ignored.
        :param kwargs: ignored.
        """
        self._count(f"connection:{conn_id}")
        return None
