"""Apache Airflow provider for Dintero's Partner API.

Provision merchants (account details, API clients, grants, payment profiles, webhook
subscriptions) and collect settlement and insight reports into S3.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
