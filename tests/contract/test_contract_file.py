"""
The contract file itself: every fact cites a known source or says ``inferred``, every request
path in the provider's code is in the contract, and the README's table says what the contract says.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.contract import Contract

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "airflow_provider_dintero"
README_SECTION = "## What is confirmed against Dintero's own material"
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


def _readme_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert README_SECTION in text
    return text.split(README_SECTION, 1)[1].split("\n## ", 1)[0]


def _readme_rows() -> dict[str, list[str]]:
    section = _readme_section()
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].startswith("`") and cells[0].endswith("`"):
            rows[cells[0].strip("`")] = cells
    return rows


def test_the_readme_table_matches_the_contract(contract: Contract) -> None:
    rows = _readme_rows()
    listed = {
        name: sorted(re.findall(r"\b(spec2024|node_sdk|dotnet|docs)\b", cells[2]))
        for name, cells in rows.items()
    }
    expected = {name: sorted(op.spec["confirmed_by"]) for name, op in contract.operations.items()}

    assert listed == expected
    assert all(("inferred" in cells[2]) == (not expected[name]) for name, cells in rows.items())


def test_the_readme_counts_match_the_contract(contract: Contract) -> None:
    ops = [op.spec["confirmed_by"] for op in contract.operations.values()]
    per_source = Counter(source for confirmed in ops for source in confirmed)
    by_source = ", ".join(f"`{name}` {count}" for name, count in per_source.most_common())
    inferred = sum(1 for confirmed in ops if not confirmed)
    expected = (
        f"Counts: {len(ops)} operations; {inferred} inferred, {len(ops) - inferred} confirmed ({by_source})."
    )

    assert expected in " ".join(_readme_section().split())
