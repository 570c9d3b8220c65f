"""Sphinx configuration of the airflow-provider-dintero documentation site.

Built by ``scripts/test.sh`` (and Read the Docs, ``.readthedocs.yaml``) with warnings as errors:
``sphinx-build -W --keep-going -b html docs build/docs/html``. Pages are Markdown (MyST); the API
reference is generated from the package's docstrings by autosummary, so a new module is listed
without a line here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# autodoc imports every module: give Airflow a throwaway home so that importing it writes nothing
# into the user's ~/airflow and needs no metadata DB.
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / "build" / "docs" / "airflow-home"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from airflow_provider_dintero import __version__  # noqa: E402

project = "airflow-provider-dintero"
author = "airflow-provider-dintero maintainers"
copyright = "2026, airflow-provider-dintero maintainers"
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 4

autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "show-inheritance": True, "member-order": "bysource"}
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_class_signature = "separated"
autodoc_preserve_defaults = True
templates_path = ["_templates"]
# The emulator and the pipeline each define a ``Request``; an unqualified type hint naming one is
# ambiguous to Sphinx, not to a reader of the page it is on.
suppress_warnings = ["ref.python"]

html_theme = "furo"
html_title = f"airflow-provider-dintero {release}"
html_static_path = ["_static"]
html_theme_options = {
    "source_repository": "https://github.com/airflow-provider-dintero/airflow-provider-dintero/",
    "source_branch": "main",
    "source_directory": "docs/",
}
