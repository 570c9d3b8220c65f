"""
The contract file itself: every fact cites a known source or says ``inferred``, every request
path in the provider's code is in the contract, and every operation says what is still open.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.contract import Contract

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "airflow_provider_dintero"
FACT_SECTIONS = ("path_params", "query", "body")


def _facts(op: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for section in FACT_SECTIONS:
        entries = op.get(section)
        if isinstance(entries, dict):
            for name, spec in entries.items():
                yield f"{section}.{name}", spec
    response = op.get("response") or {}
    for group in ("fields", "item_fields"):
        for name, spec in (response.get(group) or {}).items():
            yield f"response.{name}", spec
    for index, alternative in enumerate(response.get("any_of") or []):
        for name, spec in alternative.items():
            yield f"response.any_of[{index}].{name}", spec


def _cited_keys(text: str) -> set[str]:
    """Source keys a citation names: ``key:`` prefixes, or the word ``inferred``."""
    keys = set(re.findall(r"(?:^|;\s*)([a-z0-9_]+):", text))
    if text.strip().startswith("inferred"):
        keys.add("inferred")
    return keys


@pytest.mark.parametrize("operation", Contract.load().operations)
def test_every_fact_names_its_source(contract: Contract, operation: str) -> None:
    known = set(contract.data["sources"])
    op = contract.data["operations"][operation]
    citations = {"operation": str(op["source"])}
    citations.update({where: str(spec.get("source", "")) for where, spec in _facts(op)})

    missing = {where: text for where, text in citations.items() if not _cited_keys(text)}
    unknown = {
        where: _cited_keys(text) - known for where, text in citations.items() if _cited_keys(text) - known
    }
    assert missing == {}
    assert unknown == {}
    assert set(op["confirmed_by"]) <= known - {"inferred"}
    assert bool(op["confirmed_by"]) != str(op["source"]).startswith("inferred")


@pytest.mark.parametrize("operation", Contract.load().operations)
def test_every_operation_has_its_readme_words(contract: Contract, operation: str) -> None:
    op = contract.data["operations"][operation]

    assert isinstance(op.get("open_points"), str) and op["open_points"].strip()
    assert bool(op.get("path")) != bool(op.get("external_url")), "a path, or an external_url for README"


def _request_paths_in_code() -> set[str]:
    """Every ``"/v1/..."`` path literal (f-strings too) in the provider, with ``{}`` for each value."""
    found: set[str] = set()
    for file in PACKAGE.rglob("*.py"):
        if "emulator" in file.relative_to(PACKAGE).parts:
            continue
        tree = ast.parse(file.read_text(encoding="utf-8"))
        parts = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
        for node in ast.walk(tree):
            text = None
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in parts:
                text = node.value
            if text and text.startswith("/v1/"):
                found.add(text)
    return found


def test_every_path_the_code_requests_is_in_the_contract(contract: Contract) -> None:
    in_contract = {
        re.sub(r"\{[^}]+\}", "{}", str(op.spec["path"]))
        for op in contract.operations.values()
        if op.spec["path"]
    }
    in_code = _request_paths_in_code()

    assert in_code, "no request paths found in the provider's code"
    assert in_code - in_contract == set()
