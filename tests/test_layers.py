"""The layers import one way (DESIGN.md §7, README "Layout"), read from the source with ``ast``.

converters (pure) <- sync_service's base (config, errors) <- edges (Label Studio, S3, Redis) <- domain
<- jobs <- web <- plugin's base (progress, files, pipelines) <- the local stack (its modules in their own
order, lowest first: errors, processes and HTTP calls; the home; its private files; the servers; the
plan; the record; S3 and Redis; the demo; signals; the stack; its supervisor; the up/down commands; the
doctor; the package's ``add_parsers``) <- the command line, plugin.cli (what its groups share, the byte-level fast
path, the convert, validate and split commands, the dataset commands, the service and project commands,
the root). A module may import its own layer and the ones below it, never one above; no cycle between
modules, counting the imports made inside functions too; and every import made inside a function says
why (a comment naming the start-up time it saves).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("converters", "sync_service", "plugin")

LAYERS: tuple[tuple[str, ...], ...] = (
    ("converters",),
    ("sync_service", "sync_service.config", "sync_service.errors"),
    ("sync_service.edges",),
    ("sync_service.domain",),
    ("sync_service.jobs",),
    ("sync_service.web",),
    ("plugin", "plugin.progress", "plugin.fileio", "plugin.pipelines"),
    ("plugin.localstack.errors", "plugin.localstack.processes", "plugin.localstack.http_calls"),
    ("plugin.localstack.layout",),
    ("plugin.localstack.private_files",),
    ("plugin.localstack.label_studio", "plugin.localstack.moto_s3", "plugin.localstack.redis_server"),
    ("plugin.localstack.plan",),
    ("plugin.localstack.record",),
    ("plugin.localstack.s3_store", "plugin.localstack.redis_db"),
    ("plugin.localstack.demo",),
    ("plugin.localstack.stop_signals",),
    ("plugin.localstack.stack",),
    ("plugin.localstack.supervisor",),
    ("plugin.localstack.commands",),
    ("plugin.localstack.doctor",),
    ("plugin.localstack",),
    ("plugin.cli.common",),
    ("plugin.cli.fastpath",),
    ("plugin.cli.convert", "plugin.cli.validate", "plugin.cli.split"),
    ("plugin.cli.dataset",),
    ("plugin.cli.service",),
    ("plugin.cli",),
)


@dataclass(frozen=True, slots=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (a package's ``__init__`` counts as the package)
    line: int
    local: bool  # made inside a function
    reason: str  # the comment on its line


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The product module ``name`` means: itself, or the package holding the attribute it names."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text, filename=str(path))
    local_nodes = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for inner in ast.walk(node)
    }
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                drop = node.level - (1 if is_package else 0)
                anchor = anchor[: len(anchor) - drop] if drop else anchor
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports the module ``pkg.mod`` when there is one.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
            ]
        else:
            continue
        line = lines[node.lineno - 1]
        reason = line.partition("#")[2].strip()
        for target in targets:
            resolved = _resolve(target, modules)
            if resolved is not None and resolved != module:
                yield Import(module, resolved, node.lineno, id(node) in local_nodes, reason)


def layer_of(module: str) -> int:
    best, rank = -1, -1
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, rank = len(name), index
    assert rank >= 0, f"{module} is in no layer of LAYERS: add it"
    return rank


def all_imports() -> list[Import]:
    modules = product_modules()
    return [found for module, path in modules.items() for found in imports_of(module, path, modules)]


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph (its modules in order, the first repeated at the end), or None."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if colour.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in colour and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(edges):
        if node not in colour and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_every_product_module_sits_in_a_layer() -> None:
    for module in product_modules():
        layer_of(module)


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        f"{i.source}:{i.line} imports {i.target} (layer {layer_of(i.source)} -> {layer_of(i.target)})"
        for i in all_imports()
        if layer_of(i.target) > layer_of(i.source)
    ]
    assert upward == []


def test_no_import_cycle_between_modules() -> None:
    edges: dict[str, set[str]] = {}
    for found in all_imports():
        # A package's __init__ importing its own modules is how a package presents itself, not a cycle.
        if found.target.startswith(found.source + "."):
            continue
        edges.setdefault(found.source, set()).add(found.target)
    assert find_cycle(edges) is None


def test_no_import_cycle_between_packages() -> None:
    def package(module: str) -> str:
        return module.rpartition(".")[0] if module in packages_with_modules else module

    packages_with_modules = {m for m, p in product_modules().items() if p.name != "__init__.py"}
    edges: dict[str, set[str]] = {}
    for found in all_imports():
        source, target = package(found.source), package(found.target)
        if source != target and not target.startswith(source + ".") and not source.startswith(target + "."):
            edges.setdefault(source, set()).add(target)
    assert find_cycle(edges) is None


def test_every_function_local_import_says_what_it_saves() -> None:
    silent = [
        f"{i.source}:{i.line} imports {i.target}"
        for i in all_imports()
        if i.local and "start" not in i.reason
    ]
    assert silent == []


@pytest.mark.parametrize(
    ("edges", "cyclic"),
    [
        ({"a": {"b"}, "b": {"c"}}, False),
        ({"a": {"b"}, "b": {"a"}}, True),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
        ({"a": {"b", "c"}, "b": {"c"}}, False),
    ],
)
def test_the_cycle_finder_finds_cycles(edges: dict[str, set[str]], cyclic: bool) -> None:
    assert (find_cycle(edges) is not None) is cyclic


def test_an_upward_import_is_seen(tmp_path: Path) -> None:
    """The reader sees a function-local import and resolves ``from package import module``."""
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from sync_service.web import app  # noqa: PLC0415\n", encoding="utf-8")
    modules = product_modules()
    found = list(imports_of("sync_service.domain.mod", source, modules))
    assert [(i.target, i.local) for i in found] == [("sync_service.web.app", True)]
    assert layer_of(found[0].target) > layer_of("sync_service.domain.mod")
