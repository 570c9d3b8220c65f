"""
Where the Dintero transfers write: one module per object store behind one interface
(:class:`~airflow_provider_dintero.transfers.destinations._base.Destination`).

- :mod:`~airflow_provider_dintero.transfers.destinations.s3`: ``s3://`` through the amazon
  provider's ``S3Hook`` (extra ``amazon``).
- :mod:`~airflow_provider_dintero.transfers.destinations.gcs`: ``gs://`` through the google
  provider's ``GCSHook`` (extra ``google``).
- :mod:`~airflow_provider_dintero.transfers.destinations.azure`: ``wasb[s]://`` and
  ``abfs[s]://`` through the microsoft-azure provider's ``WasbHook`` (extra ``azure``).

:func:`open_destination` picks the store from the URI; each store's module (and its provider)
is imported only then.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_dintero.exceptions import DinteroInputError
from airflow_provider_dintero.transfers.destinations._base import Destination, parse_destination

#: Each store's default Airflow connection id.
DEFAULT_CONN_IDS = {"s3": "aws_default", "gcs": "google_cloud_default", "azure": "wasb_default"}
#: The extra that installs each store's provider.
EXTRAS = {"s3": "amazon", "gcs": "google", "azure": "azure"}


def open_destination(
    uri: Any,
    *,
    conn_id: str | None = None,
    encrypt: Any = False,
    acl_policy: Any = None,
    s3_extra_args: Any = None,
    kms_key_name: Any = None,
    encryption_scope: Any = None,
    field: str = "destination",
) -> Destination:
    """
    Return the :class:`Destination` of a URI, with its store's options; nothing is requested yet.

    Options of another store than the URI's raise :class:`DinteroInputError` (a CMEK key for an
    S3 bucket would otherwise be silently ignored), as does a missing provider (naming the extra).

    :param uri: ``s3://``, ``gs://``, ``wasb[s]://`` or ``abfs[s]://`` (see
        :func:`~airflow_provider_dintero.transfers.destinations._base.parse_destination`).
    :param conn_id: the store's connection (default: ``aws_default``, ``google_cloud_default``,
        ``wasb_default``).
    :param encrypt: S3 only: SSE-S3.
    :param acl_policy: S3 only: a canned ACL.
    :param s3_extra_args: S3 only: more upload arguments (e.g. SSE-KMS).
    :param kms_key_name: GCS only: a customer-managed Cloud KMS key.
    :param encryption_scope: Azure only: an encryption scope.
    :param field: the parameter name of ``uri`` for error messages.
    """
    location = parse_destination(uri, field=field)
    store = location.store
    given = {
        "s3": {"encrypt": encrypt, "acl_policy": acl_policy, "s3_extra_args": s3_extra_args},
        "gcs": {"kms_key_name": kms_key_name},
        "azure": {"encryption_scope": encryption_scope},
    }
    for other, options in given.items():
        if other == store:
            continue
        for name, value in options.items():
            if value not in (None, False, {}, ""):
                raise DinteroInputError(name, f"not set for a {location.scheme}:// destination", value)
    conn = conn_id if conn_id not in (None, "") else DEFAULT_CONN_IDS[store]
    try:
        if store == "s3":
            from airflow_provider_dintero.transfers.destinations.s3 import S3Destination

            return S3Destination(
                location, conn, encrypt=encrypt, acl_policy=acl_policy, s3_extra_args=s3_extra_args
            )
        if store == "gcs":
            import airflow.providers.google.cloud.hooks.gcs

            from airflow_provider_dintero.transfers.destinations.gcs import GCSDestination

            return GCSDestination(location, conn, kms_key_name=kms_key_name)
        import airflow.providers.microsoft.azure.hooks.wasb  # noqa: F401

        from airflow_provider_dintero.transfers.destinations.azure import AzureBlobDestination

        return AzureBlobDestination(location, conn, encryption_scope=encryption_scope)
    except ImportError as exc:
        raise DinteroInputError(
            field,
            f"a destination whose provider is installed: pip install "
            f"'airflow-provider-dintero[{EXTRAS[store]}]' ({exc.name or exc} is missing)",
            uri,
        ) from None
