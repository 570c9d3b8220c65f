"""
Each name has one home: every module imports a name from the module that defines it.

The check reads the source (no import runs) of the package, the tests, the example DAGs, the
benches and the scripts. For each ``from <module> import <name>`` and each ``<module alias>.<name>``
whose module lives in this repository, ``<name>`` must be defined in ``<module>`` (a class, a
function or an assignment at module level) or be one of its submodules. A package's
``__init__`` may offer the names listed in its ``__all__`` (its documented entry point, e.g.
``airflow_provider_dintero.webhooks``); no other module re-exports.

``python -m tests.architecture.test_name_homes`` prints every import that breaks the rule.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOTS = ("airflow_provider_dintero", "tests", "example_dags", "bench", "scripts")


@dataclass(frozen=True)
class Reexport:
    """One import of a name through a module that does not define it."""

    where: str
    line: int
    name: str
    through: str
    home: str | None

    def __str__(self) -> str:
        home = f"defined in {self.home}" if self.home else "defined nowhere in the repository"
        return f"{self.where}:{self.line}: {self.name} imported from {self.through}, which does not define it ({home})"  # noqa: E501


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Module-level statements, including those under ``if``/``try``/``with`` blocks."""
    out: list[ast.stmt] = []
    for node in body:
        out.append(node)
        if isinstance(node, ast.If | ast.With):
            out += _top_level(node.body) + _top_level(getattr(node, "orelse", []))
        elif isinstance(node, ast.Try):
            out += _top_level(node.body) + _top_level(node.orelse) + _top_level(node.finalbody)
            for handler in node.handlers:
                out += _top_level(handler.body)
    return out


def _targets(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Tuple | ast.List):
        return [name for elt in node.elts for name in _targets(elt)]
    return []


class Repository:
    """The Python modules under ``root``'s :data:`ROOTS`, read as syntax trees.

    :param root: the repository's top directory.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, Path] = {}
        for top in ROOTS:
            for path in sorted((root / top).rglob("*.py")):
                if not any(part.startswith(".") for part in path.relative_to(root).parts):
                    self.files[self.module_name(path)] = path

    def module_name(self, path: Path) -> str:
        """The dotted name of the module at ``path``.

        :param path: a ``.py`` file under the root.
        """
        parts = list(path.relative_to(self.root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        return ".".join(parts)

    @functools.cache  # noqa: B019 (one Repository per test)
    def tree(self, module: str) -> ast.Module:
        """The syntax tree of ``module``.

        :param module: a dotted module name in the repository.
        """
        return ast.parse(self.files[module].read_text(encoding="utf-8"))

    @functools.cache  # noqa: B019
    def defined(self, module: str) -> frozenset[str]:
        """The names ``module`` defines at module level (imports excluded).

        :param module: a dotted module name in the repository.
        """
        names: set[str] = set()
        for node in _top_level(self.tree(module).body):
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names.update(n for target in node.targets for n in _targets(target))
            elif isinstance(node, ast.AnnAssign | ast.AugAssign):
                names.update(_targets(node.target))
        return frozenset(names)

    def public_entry(self, module: str) -> frozenset[str]:
        """The names a package ``__init__`` lists in ``__all__`` (empty for other modules).

        :param module: a dotted module name in the repository.
        """
        if self.files[module].name == "__init__.py":
            for node in _top_level(self.tree(module).body):
                if isinstance(node, ast.Assign) and "__all__" in _targets(node.targets[0]):
                    return frozenset(ast.literal_eval(node.value))
        return frozenset()

    def absolute(self, module: str, node: ast.ImportFrom) -> str:
        """The absolute name of the module ``node`` (in ``module``) imports from.

        :param module: the importing module.
        :param node: the import statement.
        """
        if not node.level:
            return node.module or ""
        base = module.split(".")
        if self.files[module].name != "__init__.py":
            base.pop()
        base = base[: len(base) - (node.level - 1)]
        return ".".join([*base, node.module] if node.module else base)

    def imported_from(self, module: str, name: str) -> tuple[str, str] | None:
        """Where ``module`` imports ``name`` from at module level, and its name there.

        :param module: a dotted module name in the repository.
        :param name: the name as ``module`` binds it.
        """
        for node in _top_level(self.tree(module).body):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if (alias.asname or alias.name) == name:
                        return self.absolute(module, node), alias.name
        return None

    def home_of(self, module: str, name: str) -> tuple[str, str] | None:
        """The module that defines what ``module`` calls ``name``, and its name there.

        :param module: a dotted module name in the repository.
        :param name: the name as ``module`` binds it.
        """
        seen: set[str] = set()
        while module in self.files and module not in seen:
            seen.add(module)
            if name in self.defined(module):
                return module, name
            source = self.imported_from(module, name)
            if source is None:
                return None
            module, name = source
        return None if module in self.files else (module, name)

    def is_home(self, module: str, name: str) -> bool:
        """Whether importing ``name`` from ``module`` is importing it from its home.

        :param module: a dotted module name in the repository.
        :param name: the imported name.
        """
        return (
            f"{module}.{name}" in self.files
            or name in self.defined(module)
            or name in self.public_entry(module)
            or name == "*"
        )

    def _found(self, where: str, line: int, name: str, through: str) -> Reexport:
        home = self.home_of(through, name)
        return Reexport(where, line, name, through, home[0] if home else None)

    def reexports(self) -> list[Reexport]:
        """Every import, in the repository, of a name through a module that does not define it."""
        found: list[Reexport] = []
        for module, path in self.files.items():
            where = path.relative_to(self.root).as_posix()
            aliases: dict[str, str] = {}  # local name -> repository module imported as a whole
            for node in ast.walk(self.tree(module)):
                if isinstance(node, ast.ImportFrom):
                    source = self.absolute(module, node)
                    for alias in node.names:
                        if f"{source}.{alias.name}" in self.files:
                            aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
                        elif source in self.files and not self.is_home(source, alias.name):
                            found.append(self._found(where, node.lineno, alias.name, source))
                        elif source.startswith(f"{ROOTS[0]}.") and source not in self.files:
                            found.append(Reexport(where, node.lineno, alias.name, source, None))
                elif isinstance(node, ast.Import):
                    aliases.update(
                        {a.asname: a.name for a in node.names if a.asname and a.name in self.files}
                    )
            for node in ast.walk(self.tree(module)):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id in aliases
                ):
                    source = aliases[node.value.id]
                    if not self.is_home(source, node.attr) and self.home_of(source, node.attr):
                        found.append(self._found(where, node.lineno, node.attr, source))
        return found


def test_every_name_is_imported_from_its_home() -> None:
    found = Repository(REPO).reexports()
    assert not found, "imported through a module that does not define them:\n" + "\n".join(map(str, found))


FIXTURE = {
    "airflow_provider_dintero/__init__.py": "",
    "airflow_provider_dintero/errors.py": "class Boom(Exception): ...\n",
    "airflow_provider_dintero/facade.py": "from airflow_provider_dintero.errors import Boom as Bang\n",
    "airflow_provider_dintero/kit/__init__.py": "from ..errors import Boom\n__all__ = ['Boom']\n",
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("from airflow_provider_dintero.errors import Boom", [], id="from-its-home"),
        pytest.param(
            "from airflow_provider_dintero.gone import Boom",
            ["Boom imported from airflow_provider_dintero.gone"],
            id="from-a-module-that-is-gone",
        ),
        pytest.param("from airflow_provider_dintero.kit import Boom", [], id="package-entry-point"),
        pytest.param("from airflow_provider_dintero import errors\nerrors.Boom", [], id="module-attribute"),
        pytest.param(
            "from airflow_provider_dintero.facade import Bang",
            ["Bang imported from airflow_provider_dintero.facade"],
            id="through-a-facade",
        ),
        pytest.param(
            "from airflow_provider_dintero import facade\nfacade.Bang",
            ["Bang imported from airflow_provider_dintero.facade"],
            id="attribute-of-a-facade",
        ),
    ],
)
def test_the_check_names_each_reexport(tmp_path: Path, source: str, expected: list[str]) -> None:
    for name, text in {**FIXTURE, "tests/test_x.py": source + "\n"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    found = Repository(tmp_path).reexports()
    assert [f"{r.name} imported from {r.through}" for r in found] == expected
    assert all(r.where == "tests/test_x.py" for r in found)
    assert all(
        r.home == ("airflow_provider_dintero.errors" if "gone" not in r.through else None) for r in found
    )


if __name__ == "__main__":
    for reexport in Repository(REPO).reexports():
        print(reexport)


HTTP_CLIENTS = {
    "requests",
    "httpx",
    "airflow_provider_dintero.transport",
    "airflow_provider_dintero.hooks.dintero",
}


def _loads(repo: Repository, module: str) -> set[str]:
    """Every module ``module`` imports at load time, following the package's own modules."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        for node in _top_level(repo.tree(current).body):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = repo.absolute(current, node)
                names = [
                    source,
                    *(f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in repo.files),
                ]
            else:
                continue
            for name in names:
                if name not in seen:
                    seen.add(name)
                    if name in repo.files:
                        todo.append(name)
    return seen


@pytest.mark.parametrize("module", ["receiver", "delivery", "assets", "plugin"])
def test_the_webhook_receiver_loads_no_http_client(module: str) -> None:
    loads = _loads(Repository(REPO), f"airflow_provider_dintero.webhooks.{module}")
    assert not {name for name in loads if name.split(".")[0] in HTTP_CLIENTS or name in HTTP_CLIENTS}
