"""The documentation site (docs/) keeps up with the code: every setting roan reads, every
system check id and every management command has its entry in the reference, and the
pages other work adds are picked up without editing a toctree.

The site itself is built by `make docs` (warnings and unresolved references fail it),
a step of CI.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from roan.conf import RoanSettings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"


def labels() -> set[str]:
    """Every MyST target, `(name)=`, in the reference pages."""
    found: set[str] = set()
    for page in REFERENCE.glob("*.md"):
        found |= set(re.findall(r"^\(([^)\s]+)\)=$", page.read_text(), re.MULTILINE))
    return found


def settings_read() -> set[str]:
    """The ROAN_* settings the code reads: one property of RoanSettings per setting, and
    any ``getattr(settings, "ROAN_...")`` or ``settings.ROAN_...`` anywhere in roan."""
    names = {f"ROAN_{name}" for name in vars(RoanSettings) if name.isupper()}
    for module in (ROOT / "roan").rglob("*.py"):
        text = module.read_text()
        names |= set(re.findall(r"getattr\(\s*settings,\s*\"(ROAN_[A-Z_]+)\"", text))
        names |= set(re.findall(r"\bsettings\.(ROAN_[A-Z_]+)", text))
    return names


def check_ids() -> set[str]:
    ids: set[str] = set()
    for module in (ROOT / "roan").rglob("*.py"):
        ids |= set(re.findall(r"id=\"(roan\.[EW]\d{3})\"", module.read_text()))
    return ids


def commands() -> set[str]:
    folder = ROOT / "roan" / "management" / "commands"
    return {p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")}


def test_the_code_is_found() -> None:
    # A broken pattern would make the tests below pass on nothing.
    assert {"ROAN_BACKENDS", "ROAN_PURGE_URL", "ROAN_TAG_INDEX_MAX_ROWS"} <= settings_read()
    assert {"roan.E001", "roan.E005", "roan.W001", "roan.W005"} <= check_ids()
    assert {"roan_dispatch", "roan_purge", "roan_prune"} <= commands()


def test_every_setting_the_code_reads_has_a_reference_entry() -> None:
    missing = {name for name in settings_read() if f"setting-{name}" not in labels()}
    assert missing == set(), "add them to docs/reference/settings.md"


def test_every_system_check_id_has_a_reference_entry() -> None:
    missing = check_ids() - labels()
    assert missing == set(), "add them to docs/reference/checks.md"


def test_every_management_command_has_a_reference_entry() -> None:
    missing = commands() - labels()
    assert missing == set(), "add them to docs/reference/commands.md"


def test_the_reference_documents_no_setting_roan_does_not_read() -> None:
    documented = {
        label.removeprefix("setting-") for label in labels() if label.startswith("setting-")
    }
    assert documented - settings_read() == set()


@pytest.mark.parametrize("folder", ["howto", "topics"])
def test_pages_added_to_a_folder_appear_without_editing_a_toctree(folder: str) -> None:
    index = (DOCS / "index.md").read_text()
    toctree = re.search(r"```\{toctree\}\n((?::[^\n]*\n)*)\n" + folder + r"/\*\n```", index)
    assert toctree, f"index.md has no :glob: toctree of {folder}/*"
    assert ":glob:" in toctree.group(1)
    for page in (DOCS / folder).glob("*.md"):
        first = page.read_text().lstrip().splitlines()[0]
        assert first.startswith("# "), f"{page.name} must start with a '# Title'"


def test_the_supported_versions_are_the_ones_pyproject_declares() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    classifiers = project["classifiers"]
    pythons = [
        c.rsplit(" ", 1)[1]
        for c in classifiers
        if re.match(r"Programming Language :: Python :: 3\.\d+$", c)
    ]
    djangos = [
        c.rsplit(" ", 1)[1] for c in classifiers if re.match(r"Framework :: Django :: \d", c)
    ]
    assert pythons and djangos
    for page in (DOCS / "index.md", DOCS / "install.md", ROOT / "README.md"):
        text = page.read_text()
        for version in pythons + djangos:
            assert re.search(rf"\b{re.escape(version)}\b", text), f"{page.name} omits {version}"


def test_the_tutorials_files_are_usable_as_they_are() -> None:
    for name in ("nginx.conf", "default.vcl", "settings_roan.py", "urls.py"):
        text = (DOCS / "tutorial" / name).read_text()
        assert not re.search(r"@[A-Z_]+@", text), f"{name} has a placeholder"
    nginx = (DOCS / "tutorial" / "nginx.conf").read_text()
    # Debian's nginx loads the purge module itself; a second load_module stops it.
    assert not re.search(r"^\s*load_module", nginx, re.MULTILINE)
    tutorial = (DOCS / "tutorial" / "index.md").read_text()
    for name in ("nginx.conf", "blog/models.py", "blog/views.py", "settings_roan.py", "urls.py"):
        assert f"```{{literalinclude}} {name}" in tutorial
