"""roan's modules form layers: each imports only from its own layer or those below, and
no import cycle exists anywhere, function-level imports included.

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
#: package of it.
LAYERS: list[tuple[str, list[str]]] = [
    (
        "foundation: settings, words, access, templating, shared cache, context, retries",
        [
            "roan.conf",
            "roan.vocabulary",
            "roan.access",
            "roan.templating",
            "roan.shared_cache",
            "roan.render_guard",
            "roan.context",
            "roan.tag_names",
            "roan.retrying",
        ],
    ),
    ("backends: the caches and how to talk to them", ["roan.backends"]),
    (
        "validation: what editors and programs may ask for",
        ["roan.targets", "roan.validation"],
    ),
    ("storage: models and managers", ["roan.signals", "roan.managers", "roan.models"]),
    ("the rule index, rendering, the tag index", ["roan.rules", "roan.render", "roan.tag_index"]),
    (
        "the sender and its policies",
        [
            "roan.limits",
            "roan.pauses",
            "roan.layers",
            "roan.verify",
            "roan.completion",
            "roan.key_misses",
            "roan.sender",
        ],
    ),
    ("the pipeline and tasks", ["roan.pipeline", "roan.tasks", "roan.schedule"]),
    (
        "the public API and integrations",
        [
            "roan.tag_purges",
            "roan.receivers",
            "roan.bulk_writes",
            "roan.tags",
            "roan.api",
            "roan.middleware",
            "roan.templatetags",
            "roan.checks",
            "roan.resources",
            "roan.outcome",
            "roan.testing",
            "roan.management",
        ],
    ),
    # The admin's template tags ({% load roan_admin %}) belong to the admin.
    ("the admin", ["roan.admin", "roan.templatetags.roan_admin"]),
    ("the entry points", ["roan.apps", "roan"]),
]


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
        "def f():\n    from roan.models import PurgeRule\n    from roan import pipeline\n"
    )
    walker = _Walker("roan.conf", False, {"roan", "roan.models", "roan.pipeline", "roan.admin"})
    walker.visit(ast.parse(source))
    assert sorted(target for target, _ in walker.imports) == ["roan.models", "roan.pipeline"]


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
        "roan.pipeline.send",
        "roan.pipeline.submit",
        "roan.pipeline.hold_dispatch",
        "roan.pauses.pause",
        "roan.pauses.resume",
        "roan.limits.pause",
        "roan.limits.resume",
        "roan.limits.paused_backends",
        "roan.api.parse_target",
    ],
)
def test_public_name_still_imports(name: str) -> None:
    import importlib

    module_name, _, attribute = name.rpartition(".")
    module = importlib.import_module(module_name)
    assert getattr(module, attribute) is not None
