"""The import contract: imports point one way, down DESIGN's table of packages and down the layers inside
`factory/`, and no two modules import each other (directly or round a longer loop), lazy imports included.

Read from the source with `ast`, so it costs nothing and a new import that crosses a layer fails here with the
module and line that does it.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("factory", "compression", "targets", "retrieval", "benchmarks", "serving", "chat_ui")

# DESIGN.md "Top-level layout": what each package may import besides itself
MAY_IMPORT = {
    "factory": set(),
    "compression": {"factory"},
    "targets": {"factory", "compression"},
    "retrieval": {"factory"},
    "benchmarks": {"factory", "targets", "retrieval"},
    "serving": {"factory", "targets", "retrieval", "benchmarks"},
    "chat_ui": {"factory", "compression", "targets", "retrieval", "benchmarks", "serving"},
    # the project's own measurements (python -m benchmarks.perf.<name>) drive every layer, the server included
    "benchmarks.perf": {"factory", "compression", "targets", "retrieval", "benchmarks", "serving"},
}


def package_of(name: str) -> str:
    return "benchmarks.perf" if name == "benchmarks.perf" or name.startswith("benchmarks.perf.") else name.split(".")[0]

# inside factory/, bottom first: a module may import its own layer and the layers below it. Names are exact,
# except "pkg.*" (every module of that package not named elsewhere) and "task packages" (factory/tasks/<task>/).
FACTORY_LAYERS = [
    ("core", ["factory", "factory.errors", "factory.registry", "factory.workspace", "factory.config", "factory.catalog",
              "factory.catalog_db",
              "factory.refs", "factory.progress", "factory.signal_stack", "factory.isolated", "factory.text",
              "factory.processes", "factory.params", "factory.i18n", "factory.zh"]),
    ("datasets", ["factory.datasets.*"]),
    ("engine", ["factory.training", "factory.training.engine", "factory.training.data", "factory.training.defaults",
                "factory.training.distributed", "factory.executors", "factory.executors.base",
                "factory.executors.ray_cluster"]),
    ("task protocol", ["factory.tasks", "factory.tasks.base", "factory.tasks.cost", "factory.tasks.efficientnet_lite"]),
    ("task packages", []),
    ("pipeline", ["factory.models", "factory.datasets.importer", "factory.training.run", "factory.training.rank",
                  "factory.jobs"]),
    ("api", ["factory.api"]),
    ("cli", ["factory.cli"]),
]
TASK_PACKAGES = [name for name, _ in FACTORY_LAYERS].index("task packages")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))
            if "node_modules" not in p.parts}


def imports_of(name: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported project module, line) for every import in the file, at any depth (lazy imports count)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a module, or a name inside one
                target = target.rpartition(".")[0]
            if target and target != name:
                found.append((target, node.lineno))
    return found


def factory_layer(name: str) -> int:
    for index, (_, names) in enumerate(FACTORY_LAYERS):
        if name in names:
            return index
    parts = name.split(".")
    if parts[:2] == ["factory", "tasks"] and len(parts) > 2 and (REPO / "factory" / "tasks" / parts[2]).is_dir():
        return TASK_PACKAGES
    for index, (_, names) in enumerate(FACTORY_LAYERS):
        if any(n.endswith(".*") and name.startswith(n[:-1]) for n in names):
            return index
    raise AssertionError(f"{name} is in no layer of FACTORY_LAYERS: add it")


def graph() -> dict[str, list[tuple[str, int]]]:
    modules = project_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def test_packages_import_only_what_designs_table_allows():
    crossing = [f"{name}:{line} imports {target}" for name, edges in graph().items() for target, line in edges
                if target.split(".")[0] != package_of(name).split(".")[0]
                and target.split(".")[0] not in MAY_IMPORT[package_of(name)]]
    assert not crossing, "\n".join(crossing)


def test_factory_layers_point_down():
    upward = []
    for name, edges in graph().items():
        if not name.startswith("factory"):
            continue
        for target, line in edges:
            if target.startswith("factory") and factory_layer(target) > factory_layer(name):
                upward.append(f"{name}:{line} ({FACTORY_LAYERS[factory_layer(name)][0]}) imports {target} "
                              f"({FACTORY_LAYERS[factory_layer(target)][0]})")
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    edges = {name: sorted({t for t, _ in targets}) for name, targets in graph().items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, "modules that import each other: " + "; ".join(" <-> ".join(c) for c in cycles)
