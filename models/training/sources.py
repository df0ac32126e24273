"""Which code renders a training crop, found by walking imports, and a digest of it for the cache key.

The rendered training set is cached (tens of minutes to render); a cached set made by older
rendering code must not be reused. Walking the imports from the dataset module, rather than keeping
a list by hand, means a new rendering module or a changed grammar in devices/ cannot be missed.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = ("models", "devices", "edge", "sync", "simulators")
RENDERER_ROOT = "models.synth.dataset"


def _module_file(name: str) -> Path | None:
    """The project file behind a dotted module name, or None for third-party names and non-modules."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = PROJECT.joinpath(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _imported_names(path: Path) -> list[str]:
    """Absolute module names a file imports; for `from a.b import c` both a.b and a.b.c (c may be a module)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def renderer_sources(root: str = RENDERER_ROOT) -> list[Path]:
    """Every project module `root` imports, directly or not, itself included (paths, sorted)."""
    found: dict[str, Path] = {}
    pending = [root]
    while pending:
        name = pending.pop()
        if name in found:
            continue
        path = _module_file(name)
        if path is None:
            continue
        found[name] = path
        pending.extend(_imported_names(path))
    return sorted(set(found.values()))


def renderer_version() -> str:
    """A short digest of the rendering code, so a cached training set from older code is not reused."""
    digest = hashlib.sha256()
    for path in renderer_sources():
        digest.update(path.relative_to(PROJECT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
