"""The distributions a user installs: built here from the checkout, the way PyPI gets them."""

from __future__ import annotations

import os
import re
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ["de", "fr"]  # the catalogs roan ships


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    hatchling_build = pytest.importorskip("hatchling.build")
    out = tmp_path_factory.mktemp("dist")
    # hatchling builds the project in the current directory.
    previous = Path.cwd()
    try:
        os.chdir(ROOT)
        wheel = out / hatchling_build.build_wheel(str(out))
        sdist = out / hatchling_build.build_sdist(str(out))
    finally:
        os.chdir(previous)
    return wheel, sdist


def wheel_metadata(wheel: Path) -> tuple[list[str], dict[str, list[str]]]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [meta] = [n for n in names if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(archive.read(meta).decode())
    fields: dict[str, list[str]] = {}
    for key, value in message.items():
        fields.setdefault(key, []).append(value)
    return names, fields


def test_the_wheel_carries_the_license_and_says_so(built) -> None:
    wheel, _ = built
    names, fields = wheel_metadata(wheel)
    [licence] = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    with zipfile.ZipFile(wheel) as archive:
        assert "BSD 3-Clause License" in archive.read(licence).decode()
    assert fields["License-Expression"] == ["BSD-3-Clause"]
    assert fields["License-File"] == ["LICENSE"]
    urls = dict(value.split(", ", 1) for value in fields["Project-URL"])
    assert {"Source", "Issues", "Changelog"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())
    classifiers = fields["Classifier"]
    for version in ("5.2", "6.0", "6.1"):
        assert f"Framework :: Django :: {version}" in classifiers
    for version in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers


def test_the_wheel_carries_what_roan_reads_at_run_time(built) -> None:
    wheel, _ = built
    names, _ = wheel_metadata(wheel)
    assert "roan/py.typed" in names
    assert "roan/migrations/0001_initial.py" in names
    assert any(n.startswith("roan/templates/admin/roan/") for n in names)
    assert any(n.startswith("roan/static/roan/") for n in names)
    # The configurations roan.testing runs its nginx and Varnish from.
    assert {"roan/deploy/nginx.conf", "roan/deploy/varnish.vcl"} <= set(names)
    for language in LANGUAGES:
        for suffix in ("po", "mo"):
            assert f"roan/locale/{language}/LC_MESSAGES/django.{suffix}" in names
    # Nothing from the checkout that is not roan's.
    assert not [n for n in names if n.startswith(("tests/", "example/", "bench/", "docs/"))]


def sdist_names(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as archive:
        return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}


def test_the_sdist_carries_the_license_and_the_catalogs(built) -> None:
    _, sdist = built
    names = sdist_names(sdist)
    assert {"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml"} <= names
    for language in LANGUAGES:
        assert f"roan/locale/{language}/LC_MESSAGES/django.mo" in names


def test_the_sdist_carries_the_tests_and_the_docs(built) -> None:
    # A packager builds, tests and documents roan from the sdist alone.
    _, sdist = built
    names = sdist_names(sdist)
    assert {"Makefile", "tests/conftest.py", "tests/test_docs.py", "tests/settings.py"} <= names
    assert {"example/manage.py", "example/deploy/nginx.conf"} <= names
    assert {"docs/conf.py", "docs/index.md", "docs/tutorial/index.md"} <= names
    # The tutorial's configurations, usable as they are.
    assert {"docs/tutorial/nginx.conf", "docs/tutorial/default.vcl"} <= names
    assert "docs/dashboard.png" in names
    # Nothing built or installed locally.
    assert not [n for n in names if "/_build/" in n or "node_modules" in n or "__pycache__" in n]


def test_the_readme_links_work_on_the_package_index() -> None:
    # The README is the package index page, which has no repository files beside it and
    # no heading anchors: a relative link or image there is dead.
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)", text) + re.findall(r'src="([^"]+)"', text)
    assert targets
    relative = [t for t in targets if not t.startswith(("https://", "http://"))]
    assert relative == []
