"""
The documentation site (``docs/``): it builds with warnings as errors, its reference lists every
public name of the package, every example DAG is shown by a guide, its internal links resolve, and
it renders in a browser (screenshots kept in ``build/docs/screenshots/`` for a person to look at).

The site is built once per session with Sphinx (``$DOCS_BUILD_DIR`` when ``scripts/test.sh`` built it
already). Sphinx is in the Airflow 3.3 dev lock only: on other lines these tests are skipped.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import CHROMIUM_ARGS, chromium_path
from tests.docs import checks

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
SCREENSHOTS = REPO / "build" / "docs" / "screenshots"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built HTML site: ``$DOCS_BUILD_DIR`` if it holds a build, else built here with ``-W``."""
    import os

    given = os.environ.get("DOCS_BUILD_DIR")
    if given and (Path(given) / "objects.inv").exists():
        return Path(given)
    build_main = pytest.importorskip("sphinx.cmd.build").build_main
    out = tmp_path_factory.mktemp("docs") / "html"
    status = build_main(["-q", "-W", "--keep-going", "-b", "html", str(DOCS), str(out)])
    assert status == 0, "the docs do not build with -W: run sphinx-build -W -b html docs build/docs/html"
    return out


def test_every_public_name_is_in_the_reference(site: Path) -> None:
    expected = checks.public_names(checks.public_modules("airflow_provider_dintero"))

    missing = expected - checks.inventory_names(site / "objects.inv")

    assert not missing, f"public names missing from the API reference: {sorted(missing)}"


def test_every_example_dag_is_included_by_a_guide() -> None:
    assert checks.uncovered_example_dags(REPO / "example_dags", DOCS) == []


def test_internal_links_resolve(site: Path) -> None:
    assert checks.broken_links(site) == []


def test_a_name_left_out_of_the_reference_is_reported(site: Path, tmp_path: Path) -> None:
    names = checks.inventory_names(site / "objects.inv")

    assert "airflow_provider_dintero.hooks.dintero.DinteroPartnerHook" in names
    assert "airflow_provider_dintero.hooks.dintero.NotAHook" not in names


def test_an_example_dag_no_guide_includes_is_reported(tmp_path: Path) -> None:
    dags, docs = tmp_path / "example_dags", tmp_path / "docs" / "howto"
    dags.mkdir()
    docs.mkdir(parents=True)
    (dags / "shown.py").write_text("# [START x]\n# [END x]\n")
    (dags / "forgotten.py").write_text("")
    (docs / "guide.md").write_text("```{literalinclude} ../../example_dags/shown.py\n```\n")

    assert checks.uncovered_example_dags(dags, tmp_path / "docs") == ["forgotten.py"]


@pytest.mark.parametrize(
    ("href", "broken"),
    [
        ("other.html", False),
        ("other.html#there", False),
        ("#here", False),
        ("missing.html", True),
        ("other.html#nowhere", True),
        ("#nowhere", True),
        ("https://example.com/elsewhere", False),
    ],
)
def test_a_broken_internal_link_is_reported(tmp_path: Path, href: str, broken: bool) -> None:
    (tmp_path / "index.html").write_text(f'<p id="here"><a href="{href}">x</a></p>')
    (tmp_path / "other.html").write_text('<h1 id="there">x</h1>')

    assert bool(checks.broken_links(tmp_path)) is broken


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    """The built site over HTTP on 127.0.0.1 (a port chosen by the OS)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("page", "name"), [("index.html", "index"), ("howto/settlements.html", "howto-settlements")]
)
def test_the_site_renders_in_chromium(served: str, page: str, name: str) -> None:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.route("**/*", lambda r: r.continue_() if r.request.url.startswith(served) else r.abort())
            tab.goto(f"{served}/{page}")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
            layout = tab.evaluate(
                """() => ({
                    overflow: document.documentElement.scrollWidth - window.innerWidth,
                    article: document.querySelector('article')?.getBoundingClientRect().width ?? 0,
                    sidebar: document.querySelector('.sidebar-tree')?.getBoundingClientRect().width ?? 0,
                    styled: getComputedStyle(document.body).fontFamily,
                })"""
            )
        finally:
            browser.close()

    assert layout["overflow"] <= 0, f"{page} scrolls sideways by {layout['overflow']} px"
    assert layout["article"] > 500, f"{page}'s content column is {layout['article']} px wide"
    assert layout["sidebar"] > 100, f"{page} shows no navigation sidebar"
    assert "serif" in layout["styled"] and layout["styled"] != "Times New Roman", "the theme's CSS is missing"
