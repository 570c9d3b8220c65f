"""
The contract file itself: every fact cites a known source or says ``inferred``, every request
(method and path) the provider's code sends is an operation of the contract, every public hook
method is called by an operation's ``hook:`` entry, and every operation says what is still open.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_dintero.hooks.dintero import DinteroAsyncHook, DinteroPartnerHook
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


_HOST = {"base_url", "checkout_base_url"}  # ``{self.base_url}`` in a URL: the host, not the path


def _declared(trees: list[ast.Module], kind: str) -> dict[str, ast.Call]:
    """Module-level ``NAME = <kind>(...)`` / ``NAME: ... = <kind>(...)`` declarations."""
    found: dict[str, ast.Call] = {}
    for tree in trees:
        for node in tree.body:
            value, target = getattr(node, "value", None), None
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
            elif isinstance(node, ast.AnnAssign):
                target = node.target
            if (
                isinstance(target, ast.Name)
                and isinstance(value, ast.Call)
                and isinstance(value.func, ast.Name)
                and value.func.id == kind
            ):
                found[target.id] = value
    return found


class _CodeRequests:
    """
    Every ``(method, path)`` the provider's code can send, read from its source: a request built
    with ``method=`` and a ``path=``/``url=`` (an f-string, a literal, or a resource's
    ``.collection(...)``/``.item(...)``), and a resource helper called with a verb (``READ``) and a
    resource (``API_CLIENTS``), or a helper that always sends one verb (``_all``: ``LIST``).
    """

    def __init__(self) -> None:
        files = [f for f in PACKAGE.rglob("*.py") if "emulator" not in f.relative_to(PACKAGE).parts]
        self.trees = [ast.parse(f.read_text(encoding="utf-8")) for f in files]
        self.resources = {
            name: str(ast.literal_eval(call.args[0]))
            for name, call in _declared(self.trees, "Resource").items()
        }
        self.verbs = {
            name: (str(ast.literal_eval(call.args[0])), bool(ast.literal_eval(call.args[1])))
            for name, call in _declared(self.trees, "Verb").items()
        }
        self.found: set[tuple[str, str]] = set()
        self.helpers: dict[str, str] = {}
        functions = [n for t in self.trees for n in ast.walk(t) if isinstance(n, ast.FunctionDef)]
        for function in functions:  # helpers that send one verb to the resource they are given
            params = {a.arg for a in function.args.args + function.args.kwonlyargs}
            for call in self._calls(function):
                names = [a.id for a in call.args if isinstance(a, ast.Name)]
                verbs = [n for n in names if n in self.verbs]
                if verbs and not any(n in self.resources for n in names) and set(names) & params:
                    self.helpers[function.name] = verbs[0]
        for function in functions:
            self._read(function)

    @staticmethod
    def _calls(function: ast.FunctionDef) -> list[ast.Call]:
        return [n for n in ast.walk(function) if isinstance(n, ast.Call)]

    def _path(self, node: ast.AST | None, local: dict[str, ast.expr]) -> str | None:
        if isinstance(node, ast.Name) and node.id in local:
            return self._path(local[node.id], local)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in self.resources
        ):
            return self.resources[node.func.value.id] + ("/{}" if node.func.attr == "item" else "")
        if isinstance(node, ast.JoinedStr):
            text = ""
            for part in node.values:
                if isinstance(part, ast.FormattedValue):
                    value = part.value
                    if isinstance(value, ast.Attribute) and value.attr in _HOST:
                        continue
                    text += self._path(value, local) or "{}"
                else:
                    text += str(getattr(part, "value", ""))
            return text
        return None

    def _add(self, method: str, path: str | None, on_item: bool = False) -> None:
        if path and path.startswith("/v1/"):
            self.found.add((method, re.sub(r"\{[^}]*\}", "{}", path + ("/{}" if on_item else ""))))

    def _read(self, function: ast.FunctionDef) -> None:
        local = {
            t.id: n.value
            for n in ast.walk(function)
            if isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        for call in self._calls(function):
            keywords = {k.arg: k.value for k in call.keywords}
            method = keywords.get("method")
            if isinstance(method, ast.Constant):
                self._add(str(method.value), self._path(keywords.get("path", keywords.get("url")), local))
            names = [a.id for a in call.args if isinstance(a, ast.Name)]
            resources = [n for n in names if n in self.resources]
            helper = call.func.attr if isinstance(call.func, ast.Attribute) else None
            verbs = [n for n in names if n in self.verbs] or [self.helpers.get(helper or "", "")]
            if resources and verbs[0]:
                method_name, on_item = self.verbs[verbs[0]]
                self._add(method_name, self.resources[resources[0]], on_item)


def _requests_in_code() -> set[tuple[str, str]]:
    """``(method, path)`` of every request the provider's code sends, ``{}`` for each value."""
    return _CodeRequests().found


def test_every_request_the_code_sends_is_in_the_contract(contract: Contract) -> None:
    in_contract = {
        (op.method, re.sub(r"\{[^}]+\}", "{}", str(op.spec["path"])))
        for op in contract.operations.values()
        if op.spec["path"]
    }
    in_code = _requests_in_code()

    assert len(in_code) >= len(in_contract) - 1, f"the source scan found too few requests: {sorted(in_code)}"
    missing = sorted(f"{method} {path}" for method, path in in_code - in_contract)
    assert missing == [], "sent by the code but in no operation of tests/contract/dintero.yaml"


def _public_methods(cls: type) -> set[str]:
    return {
        name
        for name, value in vars(cls).items()
        if not name.startswith("_") and callable(value) and name not in _NOT_API
    }


#: public hook methods that send no API operation of their own (Airflow's hook interface, helpers)
_NOT_API = {"get_conn", "close", "perform", "aperform", "audience", "test_connection", "invalidate_token"}


def test_every_public_hook_method_has_a_contract_call(contract: Contract) -> None:
    called = {
        method
        for op in contract.data["operations"].values()
        for key in ("hook", "async_hook")
        for entry in op.get(key) or []
        if isinstance(entry, dict)
        for method in entry
    }
    public = _public_methods(DinteroPartnerHook) | _public_methods(DinteroAsyncHook)

    assert sorted(public - called) == [], "public hook methods without a `hook:` call in dintero.yaml"
