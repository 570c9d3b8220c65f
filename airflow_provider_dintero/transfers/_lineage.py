"""
OpenLineage facets of the Dintero -> object storage transfers.

Imported only from ``get_openlineage_facets_on_complete``: it needs the
``apache-airflow-providers-openlineage`` package, which the provider does not require.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attr
from airflow.providers.common.compat.openlineage.facet import (
    Dataset,
    DatasetFacet,
    OutputDataset,
    OutputStatisticsOutputDatasetFacet,
)
from airflow.providers.openlineage.extractors import OperatorLineage
from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet


@attr.define
class DinteroObjectDatasetFacet(DatasetFacet):
    """
    A schema-free custom dataset facet (OpenLineage's generic ``DatasetFacet`` schema): what one
    copy wrote to object storage.

    :param size: the object's size in bytes.
    :param sha256: hex SHA-256 of its content (as downloaded from Dintero).
    :param contentType: its content type.
    """

    size: int | None = attr.field(default=None)
    sha256: str | None = attr.field(default=None)
    contentType: str | None = attr.field(default=None)  # OpenLineage spells facet fields in camelCase


def operator_lineage(
    namespace: str, inputs: Iterable[str], outputs: Iterable[Mapping[str, Any]]
) -> OperatorLineage:
    """
    Build the :class:`OperatorLineage` of one transfer run.

    :param namespace: the Dintero namespace, e.g. ``dintero://api.dintero.com``.
    :param inputs: names of the Dintero resources read, e.g. ``accounts/T11200001/settlements``.
    :param outputs: the objects written: ``namespace`` (e.g. ``gs://bucket``; or ``bucket`` for
        S3), ``key``, ``size``, ``sha256``, ``content_type``.
    """
    datasets: list[Dataset] = []
    for out in outputs:
        facets: dict[str, Any] = {
            "dinteroObject": DinteroObjectDatasetFacet(
                size=out.get("size"), sha256=out.get("sha256"), contentType=out.get("content_type")
            )
        }
        if out.get("sha256"):
            facets["version"] = DatasetVersionDatasetFacet(datasetVersion=f"sha256:{out['sha256']}")
        datasets.append(
            OutputDataset(
                namespace=str(out.get("namespace") or f"s3://{out['bucket']}"),
                name=str(out["key"]),
                facets=facets,
                outputFacets={
                    "outputStatistics": OutputStatisticsOutputDatasetFacet(size=out.get("size"), fileCount=1)
                },
            )
        )
    return OperatorLineage(
        inputs=[Dataset(namespace=namespace, name=name) for name in dict.fromkeys(inputs)],
        outputs=datasets,
    )
