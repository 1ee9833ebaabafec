"""Sphinx configuration of the iov-env documentation (``make docs``; warnings are errors there)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import iov_env  # noqa: E402 - after the path set-up above

# the API pages are generated afresh by every build: stubs of modules that have since moved must not linger
shutil.rmtree(DOCS / "api", ignore_errors=True)

project = "iov-env"
author = "iov-env contributors"
copyright = "2026, iov-env contributors"  # noqa: A001 - Sphinx's name
release = iov_env.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "iov_tables",
]
if importlib.util.find_spec("sphinx_click") is not None:
    extensions.append("sphinx_click")

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "api/_autosummary/*.tmp"]
templates_path = ["_templates"]

myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3

# the API reference imports every module; the heavy libraries are only needed to run them, not to read them
autodoc_mock_imports = [
    "torch", "transformers", "peft", "datasets", "safetensors", "stable_baselines3", "sb3_contrib", "ray",
    "libsumo", "traci", "sumolib", "rliable",
    "iov_env.cli.__main__",  # runs the command when imported; autosummary's module scan would run it
]
# a package documents what it defines; what it re-exports (``__all__``) is documented where it is defined
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autosummary_generate = True
autosummary_imported_members = False

html_theme = "furo"
html_title = f"iov-env {release}"
html_static_path: list[str] = []
html_theme_options = {
    "source_repository": "",
    "navigation_with_keys": True,
}


def _literal_command_blocks(app, what, name, obj, options, lines: list[str]) -> None:  # noqa: ANN001
    """Module docstrings show commands as indented blocks after a plain paragraph (the way ``--help`` prints
    them); reStructuredText needs ``::`` for a literal block, so add it there, and escape ``|R|`` (the rank
    set's size), which reStructuredText reads as a substitution."""
    out: list[str] = []
    for raw in lines:
        line = raw.replace("|R|", r"\|R\|")
        prev = out[-1] if out else ""
        before = next((x for x in reversed(out) if x.strip()), "")
        if (line.startswith("    ") and not prev.strip() and before and not before.startswith(" ")
                and not before.rstrip().endswith("::") and not before.lstrip().startswith(("*", "-", ".."))):
            out[-1:] = ["", "::", ""]
        out.append(line)
    lines[:] = out


def _index_lists_every_page(app, docname: str, source: list[str]) -> None:  # noqa: ANN001
    """A page added to docs/ without an entry in the index's tables of contents still gets one, under "More"
    (otherwise it would be built but unreachable, and -W would fail the build on it)."""
    if docname != "index":
        return
    listed = set(re.findall(r"^([\w-]+)$", source[0], flags=re.M))
    missing = sorted(p.stem for p in DOCS.glob("*.md") if p.stem != "index" and p.stem not in listed)
    if missing:
        source[0] += "\n```{toctree}\n:caption: More\n:maxdepth: 1\n\n" + "\n".join(missing) + "\n```\n"


def setup(app) -> None:  # noqa: ANN001 - Sphinx's application
    """Connect the docstring fix-up and the index completion above."""
    app.connect("autodoc-process-docstring", _literal_command_blocks)
    app.connect("source-read", _index_lists_every_page)
