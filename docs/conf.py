"""Sphinx configuration for roan's documentation (MyST Markdown).

Built by ``make docs`` with ``-W --keep-going -n``: every warning, and every reference
that does not resolve, fails the build.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# autodoc imports roan's modules; they need Django set up with some settings.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "_settings")
import django  # noqa: E402

django.setup()

project = "roan"
author = "roan contributors"
copyright = "roan contributors, BSD-3-Clause"
release = "1.0.0.dev0"

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"

myst_enable_extensions = ["colon_fence", "deflist"]
# Links to a heading in the same or another page: [text](page.md#the-heading).
myst_heading_anchors = 3

autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": False}

# No network while building (CI has none): types from Django and the standard library
# are named, not linked.
nitpick_ignore_regex = [
    ("py:class", r"(django|collections|typing|contextlib|datetime|roan)\..*"),
    (
        "py:class",
        r"(Model|Iterable|Iterator|Any|Callable|F|_View|Purge|AdminSite|Mapping|Sequence)",
    ),
    ("py:class", r"(str|int|float|bool|None|type|object|list|dict|tuple|frozenset)"),
    ("py:class", r"(NoneType|optional|HttpRequest|HttpResponse)"),
    # Internal names the public docstrings mention (documented in the code, not here).
    ("py:(func|meth|data|mod)", r"(settle|purge|roan\..*)"),
    ("py:data", r"(typing|collections)\..*"),
    ("py:obj", r"(typing|collections)\..*"),
]

html_theme = "furo"
html_title = "roan"
html_static_path: list[str] = []
