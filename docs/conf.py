"""Sphinx configuration of the sklearn-dsparse documentation site.

Build from the repository root (README): ``python -m sphinx -W --keep-going
-b html docs docs/_build/html``.
"""

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Document (and run the gallery against) the checkout being built, even when
# another copy of the package is installed; PYTHONPATH carries it to worker
# processes an example may start (n_jobs).
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PYTHONPATH", str(ROOT))
# The gallery runs each example from its own folder; the examples find the
# datasets the repository carries through sklearn_dsparse._testing.datasets_dir.
os.environ.setdefault("DSPARSE_DATASETS", str(ROOT / "datasets"))

import sklearn_dsparse  # noqa: E402

project = "sklearn-dsparse"
author = "sklearn-dsparse developers"
copyright = "sklearn-dsparse developers"
release = version = sklearn_dsparse.__version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
templates_path = ["_templates"]

# The Markdown pages are also read on GitHub: heading anchors let their
# links such as method.md#step-size resolve in the site too.
myst_heading_anchors = 3

autosummary_generate = True
# scikit-learn's metadata-routing methods are generated per estimator and
# say nothing about this package.
autodoc_default_options = {
    "exclude-members": "get_metadata_routing, set_fit_request, "
                       "set_predict_request, set_score_request",
}
# The class pages list their methods through autodoc; numpydoc's own member
# tables would repeat them.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    # Every example runs at each build, so a broken one fails the build.
    "filename_pattern": r"\.py$",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
}

html_theme = "pydata_sphinx_theme"
html_title = f"sklearn-dsparse {version}"
html_theme_options = {"navigation_with_keys": False}
html_show_sourcelink = False

# docs/index.md is the landing page and is also read on GitHub, where a
# toctree directive would show as a code block: the site's table of contents
# is added to it here, at build time.
SITE_TOCTREE = """

```{toctree}
:hidden:

user_guide
api
auto_examples/index
```
"""


def _add_site_toctree(app, docname, source):
    if docname == app.config.root_doc:
        source[0] += SITE_TOCTREE


# Methods inherited from scikit-learn (score, get_params, ...) cite its
# glossary and labels, which exist only on its own site (the build is
# offline, without intersphinx): they are shown as plain text.
_SKLEARN_XREF = re.compile(r":(?:ref|term):`([^`<]*?)\s*(?:<[^`>]*>)?`")


def _unlink_sklearn_xrefs(app, what, name, obj, options, lines):
    if getattr(obj, "__module__", "").startswith("sklearn."):
        lines[:] = [_SKLEARN_XREF.sub(r"\1", line) for line in lines]


def setup(app):
    app.connect("source-read", _add_site_toctree)
    app.connect("autodoc-process-docstring", _unlink_sklearn_xrefs)
