"""
What the docs check looks for, as functions of their inputs (so that each can be shown to fail):
public names missing from the built reference, example DAGs no guide includes, and internal links
of the built site that lead nowhere.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import zlib
from collections.abc import Iterable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: ``{literalinclude} ../../example_dags/<file>`` in a page
INCLUDE = re.compile(r"^```\{literalinclude\}\s+(\S+)", re.M)


def public_modules(package: str) -> Iterator[str]:
    """
    The package's public modules: none of the dotted name's parts starts with ``_``.

    :param package: the top-level package name.
    """
    root = importlib.import_module(package)
    yield package
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            yield info.name


def public_names(modules: Iterable[str]) -> set[str]:
    """
    Dotted names of the classes and functions each module defines, and of the public methods and
    properties those classes define themselves.

    :param modules: dotted module names.
    """
    names: set[str] = set()
    for name in modules:
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if attr.startswith("_") or getattr(obj, "__module__", None) != name:
                continue
            if inspect.isclass(obj):
                names.add(f"{name}.{attr}")
                for member, value in vars(obj).items():
                    if member.startswith("_"):
                        continue
                    if inspect.isfunction(value) or isinstance(value, (classmethod, staticmethod, property)):
                        names.add(f"{name}.{attr}.{member}")
            elif inspect.isfunction(obj):
                names.add(f"{name}.{attr}")
    return names


def inventory_names(objects_inv: Path) -> set[str]:
    """
    Every Python object a built site documents, read from its ``objects.inv``.

    :param objects_inv: the inventory file Sphinx writes at the root of an HTML build.
    """
    data = objects_inv.read_bytes()
    header_end = 0
    for _ in range(4):  # four plain-text header lines, then the zlib-compressed body
        header_end = data.index(b"\n", header_end) + 1
    body = zlib.decompress(data[header_end:]).decode("utf-8")
    names = set()
    for line in body.splitlines():
        match = re.match(r"(.+?)\s+py:(\w+)\s", line)
        if match:
            names.add(match.group(1))
    return names


def uncovered_example_dags(example_dags: Path, docs: Path) -> list[str]:
    """
    Example DAG files that no page includes with ``literalinclude``.

    :param example_dags: the folder of example DAGs.
    :param docs: the docs source folder.
    """
    included = set()
    for page in docs.rglob("*.md"):
        for target in INCLUDE.findall(page.read_text(encoding="utf-8")):
            included.add((page.parent / target).resolve())
    return sorted(p.name for p in example_dags.glob("*.py") if p.resolve() not in included)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key == "id" and value:
                self.ids.add(value)
            if key in ("href", "src") and value and tag in ("a", "img", "link", "script"):
                self.hrefs.append(value)


def broken_links(site: Path) -> list[str]:
    """
    Internal links of a built HTML site whose file or ``#fragment`` does not exist, as
    ``page -> link``.

    :param site: the root of the HTML build.
    """
    site = site.resolve()
    pages = {page: _parse(page) for page in site.rglob("*.html")}
    broken = []
    for page, parsed in pages.items():
        for href in parsed.hrefs:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith(("mailto:", "javascript:")):
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(site)} -> {href}")
                continue
            if parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{page.relative_to(site)} -> {href}")
    return broken


def _parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8", errors="replace"))
    return parser
