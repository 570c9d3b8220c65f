"""
Shared plumbing of the Dintero -> object storage transfers: the destination (S3, GCS or Azure,
see :mod:`~airflow_provider_dintero.transfers.destinations`), the S3 upload arguments every
object gets (``encrypt``, ``acl_policy``, ``s3_extra_args`` on top of the hook's ``extra_args``),
the record of what was written, and its OpenLineage facets. This module is private; import the
operators from their own modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_dintero.exceptions import DinteroApiError
from airflow_provider_dintero.operators._base import DinteroBaseOperator
from airflow_provider_dintero.transfers._s3_stream import upload_args

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from airflow_provider_dintero.transfers.destinations._base import Destination


def api_id(item: Any, what: str, account_id: str) -> str:
    """
    Return the ``id`` of an item from a Dintero answer, or raise :class:`DinteroApiError`.

    A missing, empty or non-scalar id is an error (it would otherwise become the key part
    ``None`` and collide with every other item without an id).

    :param item: the item (a settlement, attachment or report), as the API answered.
    :param what: what the item is, for the message, e.g. ``"attachment of settlement S1"``.
    :param account_id: the account, for the message.
    """
    value = item.get("id") if isinstance(item, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value).strip() == "":
        raise DinteroApiError(
            f"Dintero answered a {what} of account {account_id} without a usable id ({value!r}); "
            "nothing of this run was written",
            account_id=account_id,
        )
    return str(value)


def check_owner(item: Mapping[str, Any], what: str, account_id: str) -> None:
    """
    Raise :class:`DinteroApiError` when an item from a Dintero answer names another account.

    An item without ``account_id`` is taken as the requested account's (the API does not
    always say).

    :param item: the item as the API answered.
    :param what: what the item is, for the message, e.g. ``"insight report R1"``.
    :param account_id: the account the task asked for.
    """
    owner = item.get("account_id")
    if owner is None or owner == "":
        return
    if str(owner) != account_id:
        raise DinteroApiError(
            f"Dintero answered {what} as belonging to account {str(owner)[:40]!r} to a request for account "
            f"{account_id}; refusing to copy another account's data (nothing of this run was written)",
            account_id=account_id,
        )


class DinteroToS3BaseOperator(DinteroBaseOperator):
    """
    Base of the transfers that copy Dintero files into object storage.

    Subclasses assign ``aws_conn_id``, ``encrypt``, ``acl_policy``, ``s3_extra_args`` and
    ``s3_bucket`` in ``__init__`` (the S3 operators), or override :meth:`_destination` (the
    operators taking a destination URI); they write through :attr:`store`, call
    :meth:`_record_output` for every object they write and set ``_lineage_inputs`` to the
    Dintero resources they read.

    :param dintero_conn_id: the Dintero connection id.
    :param kwargs: passed to :class:`~airflow_provider_dintero.operators._base.DinteroBaseOperator`.
    """

    aws_conn_id: str | None
    encrypt: bool
    acl_policy: str | None
    s3_extra_args: dict[str, Any] | None
    s3_bucket: str
    #: The parameter holding the key template, for error messages.
    _key_param: str = "s3_key"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._lineage_inputs: list[str] = []
        self._lineage_outputs: list[dict[str, Any]] = []

    @cached_property
    def s3_hook(self) -> S3Hook:
        """The amazon provider's S3 hook of ``aws_conn_id``."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=self.aws_conn_id)

    def _destination(self) -> Destination:
        """The destination written (S3 operators: ``s3://<s3_bucket>`` with ``s3_hook``)."""
        from airflow_provider_dintero.transfers.destinations._base import parse_destination
        from airflow_provider_dintero.transfers.destinations.s3 import S3Destination

        if not isinstance(self.s3_bucket, str) or not self.s3_bucket.strip():
            from airflow_provider_dintero.exceptions import DinteroInputError

            raise DinteroInputError("s3_bucket", "an S3 bucket name", self.s3_bucket)
        return S3Destination(
            parse_destination(f"s3://{self.s3_bucket}", field="s3_bucket"),
            self.aws_conn_id,
            encrypt=self.encrypt,
            acl_policy=self.acl_policy,
            s3_extra_args=self.s3_extra_args,
            hook=self.s3_hook,
        )

    @cached_property
    def store(self) -> Destination:
        """Where this task writes (built once per task run, after templates are rendered)."""
        return self._destination()

    def _key_template(self) -> str:
        """The key template (``s3_key`` of the S3 operators)."""
        return str(getattr(self, "s3_key", ""))

    def _upload_args(self) -> dict[str, Any]:
        """The checked ``ExtraArgs`` of every object (raises ``DinteroInputError`` naming the field)."""
        return upload_args(
            self.s3_hook, encrypt=self.encrypt, acl_policy=self.acl_policy, s3_extra_args=self.s3_extra_args
        )

    def _record_output(
        self, key: str, size: int | None, sha256: str | None, content_type: str | None
    ) -> None:
        """
        Remember one object written by this run, for lineage.

        :param key: the full object key in the destination.
        :param size: its size in bytes.
        :param sha256: hex SHA-256 of its content.
        :param content_type: its content type.
        """
        self._lineage_outputs.append(
            {
                "namespace": self.store.lineage_namespace,
                "key": key,
                "size": size,
                "sha256": sha256,
                "content_type": content_type,
            }
        )

    def _lineage_namespace(self) -> str:
        """``dintero://<API host>``, e.g. ``dintero://api.dintero.com``."""
        host = urlsplit(self.hook.base_url).netloc or "api.dintero.com"
        return f"dintero://{host}"

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """
        Return the run's OpenLineage inputs (the Dintero resources read) and outputs (each object written).

        Inputs are named ``accounts/<account_id>/<resource>`` in the namespace
        ``dintero://<API host>``; outputs are named as the stores' providers and OpenLineage name
        them: namespace ``s3://<bucket>``, ``gs://<bucket>``,
        ``wasbs://<container>@<account>.blob.core.windows.net`` or
        ``abfss://<container>@<account>.dfs.core.windows.net``, name the key,
        with the dataset version (the content's SHA-256), storage and output
        statistics (bytes) facets and a ``dinteroObject`` facet with ``size``, ``sha256`` and
        ``contentType``. Needs the ``apache-airflow-providers-openlineage`` package, imported
        only here.

        :param task_instance: the finished task instance (unused: the operator remembers its run).
        """
        from airflow_provider_dintero.transfers._lineage import operator_lineage

        return operator_lineage(self._lineage_namespace(), self._lineage_inputs, self._lineage_outputs)
