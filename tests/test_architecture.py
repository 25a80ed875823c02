"""roan is arranged by subject: packages (``roan.rules``, ``roan.tags``, ``roan.outbox``,
``roan.backends``, ``roan.admin``) and Django's conventional modules at the root. Three
rules hold, each a test below:

- its modules form layers: each imports only from its own layer or those below, and no
  import cycle exists anywhere, function-level imports included;
- no module imports a private name (``_name``) from another package;
- no module outside ``roan.outbox.sql`` tells databases apart (``connection.vendor``).

Only two kinds of import are not walked: those under ``if TYPE_CHECKING:`` (never run)
and those in ``AppConfig.ready()`` (Django runs it once every app is loaded; that is
where the receivers and checks get connected).
"""

from __future__ import annotations

import ast
import pathlib
from collections import defaultdict

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "roan"

#: From the bottom up. A module's layer is that of the longest entry naming it or a
#: package of it. A package's modules sit on as few layers as its imports allow.
LAYERS: list[tuple[str, list[str]]] = [
    (
        "foundation: settings, words, context, retries, the shared cache",
        [
            "roan.conf",
            "roan.vocabulary",
            "roan.context",
            "roan.retrying",
            "roan.shared_cache",
            "roan.outbox.render_guard",
            "roan.outbox.after_response",
            "roan.tags.names",
            "roan.rules.access",
            "roan.rules.templating",
        ],
    ),
    ("backends: the caches and how to talk to them", ["roan.backends"]),
    ("what a purge is", ["roan.purges"]),
    (
        "rules: what editors and programs may ask for",
        ["roan.rules.targets", "roan.rules.validation"],
    ),
    (
        "storage: vendor SQL, models and managers",
        ["roan.outbox.sql", "roan.signals", "roan.managers", "roan.models"],
    ),
    ("rules: the index and rendering; the tag index", ["roan.rules", "roan.tags.index"]),
    (
        "the outbox: pauses, the sender and its policies",
        [
            "roan.pauses",
            "roan.outbox.background",
            "roan.outbox.limits",
            "roan.outbox.layers",
            "roan.outbox.verify",
            "roan.outbox.completion",
            "roan.outbox.key_misses",
            "roan.outbox.outcome",
            "roan.outbox.expansion",
            "roan.outbox.sender",
            "roan.outbox.warming",
        ],
    ),
    ("the task that sends", ["roan.tasks"]),
    ("the outbox: a transaction's purges", ["roan.outbox.pipeline", "roan.outbox.schedule"]),
    (
        "tags, the public API and integrations",
        [
            "roan.tags",
            "roan.receivers",
            "roan.api",
            "roan.middleware",
            "roan.templatetags",
            "roan.checks",
            "roan.resources",
            "roan.audit",
            "roan.testing",
            "roan.management",
        ],
    ),
    # The admin's template tags ({% load roan_admin %}) belong to the admin.
    ("the admin", ["roan.admin", "roan.templatetags.roan_admin"]),
    # A package's __init__ names its public functions, imported on first use.
    ("the entry points", ["roan.apps", "roan", "roan.outbox"]),
]

#: A package of roan's; the modules at the root form the package ``roan``.
PACKAGES = ("roan.rules", "roan.tags", "roan.outbox", "roan.backends", "roan.admin", "roan.testing")


def package_of(module: str) -> str:
    for package in PACKAGES:
        if module == package or module.startswith(package + "."):
            return package
    return "roan"


def module_names() -> dict[str, pathlib.Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if "migrations" in parts:
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def layer_of(module: str) -> int:
    """The layer of the longest entry naming ``module`` or a package of it."""
    found: tuple[int, int] | None = None  # (length of the entry, layer)
    for number, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if prefix == "roan" and module != "roan":
                continue
            names = module == prefix or module.startswith(prefix + ".")
            if names and (found is None or len(prefix) > found[0]):
                found = (len(prefix), number)
    if found is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return found[1]


class _Walker(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, known: set[str]) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.known = known
        self.imports: list[tuple[str, int]] = []

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        bases = {getattr(base, "attr", getattr(base, "id", "")) for base in node.bases}
        for child in node.body:
            if (
                "AppConfig" in bases
                and isinstance(child, ast.FunctionDef)
                and child.name == "ready"
            ):
                continue
            self.visit(child)

    def _add(self, target: str, line: int) -> None:
        # An import of roan.a.b is one of roan.a.b (the closest module that exists).
        while target and target not in self.known:
            target = target.rpartition(".")[0]
        if target and target != self.module:
            self.imports.append((target, line))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name == "roan" or alias.name.startswith("roan."):
                self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")[: len(self.package.split(".")) - node.level + 1]
            source = ".".join([*base, *([node.module] if node.module else [])])
        else:
            source = node.module or ""
        if not (source == "roan" or source.startswith("roan.")):
            return
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            self._add(submodule if submodule in self.known else source, node.lineno)


def import_graph() -> dict[str, list[tuple[str, int]]]:
    modules = module_names()
    known = set(modules)
    graph = {}
    for name, path in modules.items():
        walker = _Walker(name, path.name == "__init__.py", known)
        walker.visit(ast.parse(path.read_text(), filename=str(path)))
        graph[name] = walker.imports
    return graph


def test_every_module_has_a_layer() -> None:
    for module in module_names():
        layer_of(module)


def test_no_module_imports_from_a_layer_above_it() -> None:
    upward = []
    for module, imports in sorted(import_graph().items()):
        for target, line in imports:
            if layer_of(target) > layer_of(module):
                upward.append(
                    f"{module}:{line} imports {target} "
                    f"({LAYERS[layer_of(module)][0]!r} -> {LAYERS[layer_of(target)][0]!r})"
                )
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_cycle() -> None:
    graph = {
        module: {target for target, _ in imports} for module, imports in import_graph().items()
    }
    cycles = []
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the path, 2 done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state[target] == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif state[target] == 0:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if state[module] == 0:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_walker_sees_function_level_imports(tmp_path: pathlib.Path) -> None:
    """The test above would pass vacuously if the walker missed imports inside functions."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from roan.admin import x\n"
        "def f():\n    from roan.models import PurgeRule\n    from roan import elsewhere\n"
    )
    known = {"roan", "roan.models", "roan.elsewhere", "roan.admin"}
    walker = _Walker("roan.conf", False, known)
    walker.visit(ast.parse(source))
    assert sorted(target for target, _ in walker.imports) == ["roan.elsewhere", "roan.models"]


@pytest.mark.parametrize(
    "name",
    [
        "roan.purge",
        "roan.purge_urls",
        "roan.purge_object",
        "roan.purge_tags",
        "roan.purge_model",
        "roan.suppress_purges",
        "roan.testing.capture_purges",
        "roan.models.PurgeRule",
        "roan.models.PurgeAttempt",
        "roan.models.BackendState",
        "roan.models.TaggedURL",
        "roan.admin.PurgeCacheMixin",
        "roan.middleware.CacheTagMiddleware",
        "roan.tags.add_tags",
        "roan.tags.cache_tags",
        "roan.backends.base.BaseBackend",
        "roan.backends.base.PurgeRequest",
        "roan.backends.base.PurgeResult",
        "roan.backends.nginx.NginxBackend",
        "roan.backends.varnish.VarnishBackend",
        "roan.backends.http.HTTPBackend",
        "roan.backends.django_cache.DjangoCacheBackend",
        "roan.backends.locmem.LocMemBackend",
        "roan.backends.cloudflare.CloudflareBackend",
        "roan.backends.fastly.FastlyBackend",
        "roan.backends.bunny.BunnyBackend",
        "roan.backends.cloudfront.CloudFrontBackend",
        "roan.backends.akamai.AkamaiBackend",
        "roan.backends.azure.AzureFrontDoorBackend",
        "roan.outbox.send",
        "roan.outbox.submit",
        "roan.outbox.dispatch",
        "roan.context.hold_dispatch",
        "roan.pauses.pause",
        "roan.pauses.resume",
        "roan.pauses.paused_backends",
        "roan.purges.Purge",
        "roan.purges.Cause",
        "roan.tasks.send_attempts",
        "roan.admin.register",
        "roan.api.parse_target",
    ],
)
def test_public_name_still_imports(name: str) -> None:
    import importlib

    module_name, _, attribute = name.rpartition(".")
    module = importlib.import_module(module_name)
    assert getattr(module, attribute) is not None


def test_no_module_imports_a_private_name_of_another_package() -> None:
    """``_name`` is a module's own business, or its package's: another package that needs
    it needs a public name instead."""
    modules = module_names()
    found = []
    for name, path in sorted(modules.items()):
        package = package_of(name)
        tree = ast.parse(path.read_text(), filename=str(path))
        bound: dict[str, str] = {}  # local name -> roan module it stands for
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("roan"):
                source = node.module or ""
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    if submodule in modules:
                        bound[alias.asname or alias.name] = submodule
                    elif alias.name.startswith("_") and package_of(source) != package:
                        found.append(f"{name}:{node.lineno} imports {source}.{alias.name}")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and package_of(bound[node.value.id]) != package
            ):
                found.append(f"{name}:{node.lineno} reads {bound[node.value.id]}.{node.attr}")
    assert not found, "private names used across packages:\n" + "\n".join(found)


def test_only_the_sql_package_tells_databases_apart() -> None:
    """What differs between PostgreSQL, SQLite and MySQL lives in ``roan.outbox.sql``, a
    module per database: elsewhere no ``connection.vendor``, no version of a database."""
    telling = {"vendor", "mysql_is_mariadb", "mysql_version", "sqlite_version_info"}
    found = []
    for name, path in sorted(module_names().items()):
        if name == "roan.outbox.sql" or name.startswith("roan.outbox.sql."):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Attribute) and node.attr in telling:
                found.append(f"{name}:{node.lineno} reads .{node.attr}")
    assert not found, "database vendors told apart outside roan.outbox.sql:\n" + "\n".join(found)


@pytest.mark.parametrize("module", ["roan", "roan.testing", "roan.tags", "roan.outbox"])
def test_a_public_module_imports_before_django_is_set_up(module: str) -> None:
    """A settings file, a conftest or a script imports these before ``django.setup()``
    (and benchmarks start nginx with roan.testing before it): importing them must read
    neither the settings nor the app registry."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=ROOT.parent, env={**env, "PYTHONPATH": str(ROOT.parent)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
