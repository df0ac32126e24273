"""Lower layers never import upper ones, and no module imports itself round a circle.

Read from the source (ast, nothing is executed), every import counts: at module level, inside a
function (a lazy import) and under `if TYPE_CHECKING:` (a dependency all the same). The layers,
bottom up:

    devices, models  <-  edge  <-  sync, edge.kiosk  <-  edge.app, edge.cli  <-  simulators, benchmarks

`edge.app` and `edge.cli` build the node from all its parts (drivers, lane core, kiosk, sync), so
they sit above kiosk and sync. A module may import its own layer and the layers below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
PACKAGES = ("devices", "models", "edge", "sync", "simulators", "benchmarks")

# The most specific prefix decides a module's layer (a higher number is a higher layer).
LAYERS = {
    "devices": 0,
    "models": 0,
    "edge": 1,
    "sync": 2,
    "edge.kiosk": 2,
    "edge.app": 3,
    "edge.cli": 3,
    "simulators": 4,
    "benchmarks": 4,
}

# Imports from a higher layer that are allowed only inside a function, never at module level.
LAZY_UPWARD = {
    # `smartgate simulate|scenario|bench|central|link-proxy`: the CLI is the one front door to the simulators
    # and benchmarks, which import them only inside the command that runs them, so the node never loads them.
    "edge.cli": ("simulators", "benchmarks"),
}

# Imports that break the layers or close a circle today and are being removed elsewhere. Each entry is
# (importer, imported): the list may only shrink, and an entry whose import is gone must leave it.
# Empty since issue #25 point 4: the kiosk, telemetry, metrics and Sparkplug read the node through
# edge.node_view.NodeView and no longer import edge.app.
KNOWN: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (PROJECT / package).rglob("*.py"):
            parts = path.relative_to(PROJECT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _project_module(name: str) -> str | None:
    """The project module a dotted name refers to (a name inside a module counts as the module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every project import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    in_function = {id(node) for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
                   for node in ast.walk(fn) if node is not fn}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            module = _project_module(target)
            if module is not None and module != name:
                found.append((module, node.lineno, id(node) not in in_function))
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def layer_of(module: str) -> int:
    """The layer of a module: that of the most specific prefix in LAYERS."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS")


def _lazy_upward_allowed(importer: str, imported: str, top_level: bool) -> bool:
    allowed = LAZY_UPWARD.get(importer, ())
    return not top_level and imported.split(".")[0] in allowed


def test_no_module_imports_from_a_layer_above_it():
    upward = [f"{importer} (line {line}) imports {imported} from a layer above"
              for importer, imports in GRAPH.items() for imported, line, top_level in imports
              if layer_of(imported) > layer_of(importer) and (importer, imported) not in KNOWN
              and not _lazy_upward_allowed(importer, imported, top_level)]
    assert not upward, "\n".join(sorted(set(upward)))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def test_no_import_circles_between_modules():
    graph = {name: {imported for imported, _, _ in imports if (name, imported) not in KNOWN}
             for name, imports in GRAPH.items()}
    assert not _cycles(graph), "import circles:\n" + "\n".join(" <-> ".join(c) for c in _cycles(graph))


def test_the_known_exceptions_are_still_there_so_the_list_only_shrinks():
    present = {(name, imported) for name, imports in GRAPH.items() for imported, _, _ in imports}
    assert not KNOWN - present, f"these imports are gone: remove them from KNOWN: {sorted(KNOWN - present)}"


def test_the_walk_sees_a_circle_and_an_upward_import_when_there_is_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer_of("edge.kiosk.views") > layer_of("edge.lane") > layer_of("devices.protocols.framing")
    assert ("devices.eseal", "edge.config") not in {(n, i) for n, imports in GRAPH.items() for i, _, _ in imports}
