"""
The README's generated tables, and the command that rewrites them.

``python -m tests.contract.readme --write`` rewrites, in ``README.md``, the blocks between
``<!-- BEGIN ... -->`` and ``<!-- END ... -->`` comments:

- ``confirmed``: the table "What is confirmed against Dintero's own material" and its counts,
  generated from ``tests/contract/dintero.yaml`` (operation, request, ``confirmed_by``,
  ``open_points``);
- ``operators <module> ...``: an operator table for the listed ``airflow_provider_dintero.operators``
  modules (``*``: every module no other block lists). Each row's first cell is regenerated from
  the operators' ``__init__`` signatures; the other cells are kept as written. An operator with no
  row gets one, after the rows of operators on the same resource (``GetWidgetOperator`` after
  ``CreateWidgetOperator``'s row), else at the table's end: its class docstring's first paragraph
  as a sentence ("Create a widget." -> "creates a widget"), and what follows ``Returns`` in its
  ``Returns ...`` paragraph (else in its ``execute`` docstring's first line). A row naming an
  operator that does not exist is an error.

Without ``--write`` it only checks, prints what would change and exits 1 when README is stale.
``tests/contract/test_readme.py`` runs the same check.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import json
import pkgutil
import re
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.contract.contract import Contract, Operation

README = Path(__file__).resolve().parents[2] / "README.md"
COMMAND = "python -m tests.contract.readme --write"
BLOCK = re.compile(r"(<!-- BEGIN (\w+)([^\n]*?)(?::[^\n]*)? -->\n)(.*?)(<!-- END \2 -->)", re.S)
OPERATOR_SPAN = re.compile(r"`([A-Z]\w*Operator)(\([^`]*\))?`")
#: ``__init__`` parameters every operator has, left out of the tables
COMMON_PARAMS = {"self", "dintero_conn_id"}


class ReadmeError(Exception):
    """The README cannot be generated as it stands (e.g. it names an unknown operator)."""


# ---------------------------------------------------------------------- confirmed


def _resource(path: str) -> str:
    """The resource a path acts on: the path without its trailing ``/{id}`` segments."""
    return re.sub(r"(/\{[^}]+\})+$", "", path)


def by_resource(contract: Contract) -> list[tuple[str, Operation]]:
    """The operations in contract order, each moved up to the first one on the same resource.

    :param contract: the contract.
    """
    ops = list(contract.operations.items())
    first: dict[str, int] = {}
    for index, (_, op) in enumerate(ops):
        if op.spec.get("path"):
            first.setdefault(_resource(str(op.spec["path"])), index)

    def place(item: tuple[int, tuple[str, Operation]]) -> tuple[int, int]:
        index, (_, op) = item
        return (first.get(_resource(str(op.spec.get("path") or "")), index), index)

    return [op for _, op in sorted(enumerate(ops), key=place)]


def confirmed_block(contract: Contract) -> str:
    """The table "What is confirmed against Dintero's own material" and its counts line.

    :param contract: the contract the table states.
    """
    lines = ["| Operation | Request | Confirmed by | Open points |", "|---|---|---|---|"]
    for name, op in by_resource(contract):
        spec = op.spec
        if spec.get("path"):
            request = f"`{op.method} {spec['path']}` ({op.host})"
        else:
            request = f"{spec['external_url']} ({op.host})"
        confirmed = ", ".join(spec["confirmed_by"]) or "inferred"
        lines.append(f"| `{name}` | {request} | {confirmed} | {spec['open_points']} |")
    ops = [op.spec["confirmed_by"] for op in contract.operations.values()]
    per_source = Counter(source for confirmed in ops for source in confirmed)
    by_source = ", ".join(f"`{name}` {count}" for name, count in per_source.most_common())
    inferred = sum(1 for confirmed in ops if not confirmed)
    counts = (
        f"Counts: {len(ops)} operations; {inferred} inferred, {len(ops) - inferred} confirmed ({by_source}). "
        f"Generated from the contract by `{COMMAND}`; a test keeps it current."
    )
    wrapped = textwrap.fill(counts, width=95, break_on_hyphens=False, break_long_words=False)
    return "\n".join([*lines, "", wrapped]) + "\n"


# ---------------------------------------------------------------------- operators


def operator_classes() -> dict[str, dict[str, type]]:
    """``{module: {class name: class}}`` for the public operators of each operators module."""
    import airflow_provider_dintero.operators as package

    found: dict[str, dict[str, type]] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        found[info.name] = {
            name: cls
            for name, cls in vars(module).items()
            if inspect.isclass(cls)
            and cls.__module__ == module.__name__
            and name.endswith("Operator")
            and not name.startswith("_")
        }
    return found


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        inner = ", ".join(_literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return repr(value)


def signature(cls: type) -> str:
    """``Name(required, optional=default, ...)``: the operator's own ``__init__`` parameters.

    :param cls: the operator class.
    """
    params = []
    for param in inspect.signature(cls.__init__).parameters.values():  # type: ignore[misc]
        if param.name in COMMON_PARAMS or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        default = "" if param.default is param.empty else f"={_literal(param.default)}"
        params.append(f"{param.name}{default}")
    return f"{cls.__name__}({', '.join(params)})"


def _markdown(rst: str) -> str:
    text = " ".join(rst.split())
    text = re.sub(r":[a-z]+:`~?(?:[\w.]+\.)?([\w]+)`", r"`\1`", text)
    return text.replace("``", "`").replace("|", "\\|")


def _third_person(sentence: str) -> str:
    """``"Create an API client."`` -> ``"creates an API client"``: a docstring's imperative as a cell."""
    sentence = sentence.strip().rstrip(".")
    verb, _, rest = sentence.partition(" ")
    if not verb[:1].isupper() or verb[1:2].isupper() or not verb.isalpha():
        return sentence
    verb = verb.lower()
    if re.search(r"(s|sh|ch|x|z)$", verb):
        verb += "es"
    elif re.search(r"[^aeiou]y$", verb):
        verb = verb[:-1] + "ies"
    else:
        verb += "s"
    return f"{verb} {rest}".strip()


def _noun_phrase(sentence: str) -> str:
    """``"Returns the account."`` / ``"Return the account."`` -> ``"the account"``."""
    return re.sub(r"^Returns? ", "", sentence.strip()).rstrip(".")


def new_row(cls: type, columns: int) -> str:
    """A table row for an operator README does not list yet, from its docstrings.

    :param cls: the operator class.
    :param columns: the table's number of columns (3: operator, what it does, returns; 2: the
        returns go at the end of the second cell).
    """
    paragraphs = [p for p in (inspect.getdoc(cls) or "").split("\n\n") if p.strip()]
    what = _third_person(_markdown(paragraphs[0])) if paragraphs else ""
    execute = _markdown((inspect.getdoc(cls.execute) or "").split("\n\n")[0])  # type: ignore[attr-defined]
    returns = next((_markdown(p) for p in paragraphs if p.startswith("Returns ")), "")
    returns = _noun_phrase(returns or (execute if re.match(r"Returns? ", execute) else ""))
    cells = (
        [f"`{signature(cls)}`", what, returns]
        if columns >= 3
        else [f"`{signature(cls)}`", f"{what}; returns {returns}" if returns else what]
    )
    return "| " + " | ".join(cells + [""] * (columns - len(cells))) + " |"


def _cells(row: str) -> list[str]:
    """The cells of a markdown table row (a ``|`` inside backticks or escaped is text)."""
    cells, current, code = [], "", False
    body = row.strip()[1:-1] if row.strip().endswith("|") else row.strip()[1:]
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            current += body[i : i + 2]
            i += 2
            continue
        if char == "`":
            code = not code
        if char == "|" and not code:
            cells.append(current)
            current = ""
        else:
            current += char
        i += 1
    return [*cells, current]


def _subject(operator: str | tuple[str, str]) -> str:
    """The resource an operator acts on: ``ListWidgetsOperator`` -> ``Widget``."""
    name = operator[0] if isinstance(operator, tuple) else operator
    return re.sub(r"^[A-Z][a-z]+|s?Operator$", "", name)


def operators_block(content: str, modules: list[str], known: dict[str, type]) -> tuple[str, set[str]]:
    """An operator block with signatures regenerated and missing operators added.

    :param content: the block as written.
    :param modules: the operators that belong in it (class names, in module order).
    :param known: every operator class by name.
    :returns: the new block and the operators it lists.
    """
    lines = content.splitlines()
    table = [i for i, line in enumerate(lines) if line.startswith("|")]
    header = _cells(lines[table[0]]) if table else ["operator", "what it does", "returns"]
    listed: set[str] = set()

    def current(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in known:
            raise ReadmeError(f"README's operator table names {name}, which no operators module defines")
        if name in listed:
            raise ReadmeError(f"README's operator tables list {name} twice")
        listed.add(name)
        return f"`{signature(known[name])}`"

    for i in table[2:]:
        cells = _cells(lines[i])
        cells[0] = OPERATOR_SPAN.sub(current, cells[0])
        lines[i] = "|" + "|".join(cells) + "|"
    missing = [name for name in modules if name not in listed]
    if missing and not table:
        lines += ["### More operators", "", "| operator | what it does | returns |", "|---|---|---|"]
        table = [len(lines) - 2, len(lines) - 1]
    for name in missing:  # after the last row of the same resource, else at the table's end
        rows = table[2:] or [table[-1]]
        same = [i for i in rows if _subject(name) in {_subject(n) for n in OPERATOR_SPAN.findall(lines[i])}]
        at = (same or [max(table)])[-1] + 1
        lines.insert(at, new_row(known[name], len(header)))
        table = [i + (i >= at) for i in table] + [at]
        table.sort()
    return ("\n".join(lines) + "\n" if lines else ""), listed | set(modules)


def render(text: str, contract: Contract | None = None) -> str:
    """README ``text`` with every generated block rewritten.

    :param text: the README as it stands.
    :param contract: the contract (default: ``tests/contract/dintero.yaml``).
    """
    contract = contract or Contract.load()
    by_module = operator_classes()
    known = {name: cls for classes in by_module.values() for name, cls in classes.items()}
    blocks = list(BLOCK.finditer(text))
    claimed = {m for b in blocks if b.group(2) == "operators" for m in b.group(3).split() if m != "*"}
    unknown = claimed - set(by_module)
    if unknown:
        raise ReadmeError(f"README's operator blocks name modules that do not exist: {sorted(unknown)}")
    out, end, listed = [], 0, set[str]()
    for block in blocks:
        kind, args = block.group(2), block.group(3).split()
        if kind == "confirmed":
            new = confirmed_block(contract)
        elif kind == "operators":
            modules = [m for m in by_module if (m in args or ("*" in args and m not in claimed))]
            names = [name for m in modules for name in by_module[m]]
            new, names_listed = operators_block(block.group(4), names, known)
            listed |= names_listed
        else:
            raise ReadmeError(f"README has a generated block of unknown kind {kind!r}")
        out += [text[end : block.start(4)], new, block.group(5)]
        end = block.end()
    out.append(text[end:])
    missing = set(known) - listed
    if missing and any(b.group(2) == "operators" for b in blocks):
        raise ReadmeError(f"no README operator block takes {sorted(missing)} (add a `*` block)")
    return "".join(out)


def diff(old: str, new: str) -> Iterator[str]:
    """A unified diff of README, old to new."""
    return difflib.unified_diff(
        old.splitlines(True), new.splitlines(True), "README.md", "README.md (generated)"
    )


def main(argv: list[str] | None = None) -> int:
    """Check (default) or rewrite (``--write``) README's generated blocks; 1 when stale.

    :param argv: command-line arguments.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help="rewrite README.md instead of checking it")
    args = parser.parse_args(argv)
    old = README.read_text(encoding="utf-8")
    new = render(old)
    if new == old:
        print("README.md is current")
        return 0
    if args.write:
        README.write_text(new, encoding="utf-8")
        print("README.md rewritten")
        return 0
    sys.stdout.writelines(diff(old, new))
    print(f"\nREADME.md is stale: run `{COMMAND}`")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
