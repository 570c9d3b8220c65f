"""
One templating rule for every operator, sensor and transfer: the run's ids, bodies, dates and
keys are templated; connection ids (``dintero_conn_id``, ``aws_conn_id``) and how the task waits
(``deferrable``) are not: they are decided when the DAG is written.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import airflow_provider_dintero

NEVER_TEMPLATED = {"dintero_conn_id", "aws_conn_id", "deferrable"}


def _task_classes() -> list[type]:
    found: dict[str, type] = {}
    for kind in ("operators", "sensors", "transfers"):
        package = importlib.import_module(f"{airflow_provider_dintero.__name__}.{kind}")
        for module in pkgutil.iter_modules(package.__path__):
            loaded = importlib.import_module(f"{package.__name__}.{module.name}")
            for name, cls in inspect.getmembers(loaded, inspect.isclass):
                if cls.__module__ == loaded.__name__ and "template_fields" in vars(cls):
                    found[f"{cls.__module__}.{name}"] = cls
    return [found[name] for name in sorted(found)]


TASK_CLASSES = _task_classes()


def test_the_rule_sees_every_kind_of_task() -> None:
    modules = {cls.__module__.split(".")[1] for cls in TASK_CLASSES}
    assert modules == {"operators", "sensors", "transfers"}


@pytest.mark.parametrize("cls", TASK_CLASSES, ids=lambda cls: cls.__name__)
def test_connection_ids_and_deferrable_are_not_templated(cls: type) -> None:
    assert NEVER_TEMPLATED & set(cls.template_fields) == set()  # type: ignore[attr-defined]
