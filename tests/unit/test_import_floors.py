"""The package's import floors (docs/ARCHITECTURE.md): a module imports only from lower floors, never sideways or up.

Read with ``ast`` (nothing is imported), so a violation anywhere in ``hlrp_core`` fails here, including imports
written inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "hlrp_core"

#: Top-level unit of ``hlrp_core`` -> floor. Same floor = siblings that must not import each other.
FLOORS = {
    "paths": 0, "io": 0, "storage": 0, "sysmem": 0, "progress": 0,
    "config": 1, "inputs": 1,
    "runs": 2,
    "stopping": 3,
    "data": 4, "metrics": 4,
    "models": 5,
    "training": 6,
    "analysis": 7,
    "launch": 8,
    "cluster": 9, "viz": 9, "demo": 9, "resume_run": 9,
    "ladder": 10,
    "cli": 11,
}
#: Inside ``training/``: the shared floor (``training/*.py``), the two wings above it, the srun entry point on top.
#: A wing imports the floor and never the other wing, except the one thing Stage 2 consumes of Stage 1.
TRAINING_FLOORS = {"floor": 0, "laq": 1, "policy": 1, "srun": 2}
WING_CROSSINGS = {("policy", "hlrp_core.training.laq.artifact")}  # Stage 2 reads the Stage-1 artifact
#: Packages whose modules must stay free of these libraries at any import (pure numpy/scipy layers).
FORBIDDEN_LIBS = {"metrics": {"torch", "tensorflow", "tensorflow_datasets", "lightning"},
                  "config": {"torch", "tensorflow", "tensorflow_datasets", "lightning"}}


def _unit(path: Path) -> str:
    return path.relative_to(PKG).with_suffix("").parts[0]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative imports resolved."""
    rel = path.relative_to(PKG).with_suffix("").parts
    package = ["hlrp_core", *rel[:-1]] if path.name != "__init__.py" else ["hlrp_core", *rel[:-1]]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod == "hlrp_core":  # from hlrp_core import runs
                out += [(node.lineno, f"hlrp_core.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, mod))
    return out


def _files() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if p.name != "__init__.py" or p.parent != PKG)


def test_every_unit_has_a_floor():
    units = {_unit(p) for p in _files()}
    assert units - set(FLOORS) == set(), "give each new top-level module a floor here and in docs/ARCHITECTURE.md"


def test_no_import_reaches_up_or_sideways():
    bad = []
    for path in _files():
        src = _unit(path)
        for line, mod in _imports(path):
            if not mod.startswith("hlrp_core."):
                continue
            dst = mod.split(".")[1]
            if dst != src and dst in FLOORS and FLOORS[dst] >= FLOORS.get(src, 99):
                bad.append(f"{path.relative_to(PKG.parent)}:{line} ({src}, floor {FLOORS.get(src)}) imports "
                           f"{mod} (floor {FLOORS[dst]})")
    assert not bad, "imports against the floors:\n" + "\n".join(bad)


@pytest.mark.parametrize("unit", sorted(FORBIDDEN_LIBS))
def test_pure_layers_import_no_frameworks(unit):
    bad = [f"{p.relative_to(PKG.parent)}:{line} imports {mod}"
           for p in _files() if _unit(p) == unit
           for line, mod in _imports(p) if mod.split(".")[0] in FORBIDDEN_LIBS[unit]]
    assert not bad, "\n".join(bad)


def _training_part(parts: tuple[str, ...]) -> str:
    """(``training``, ``laq``, ...) -> ``laq`` (a wing); (``training``, ``srun``) -> ``srun``; any other module of
    ``training/`` -> ``floor``."""
    name = parts[1] if len(parts) > 1 else ""
    return name if name in ("laq", "policy", "srun") else "floor"


def test_training_wings_stand_on_the_shared_floor():
    bad = []
    for path in _files():
        if _unit(path) != "training":
            continue
        src = _training_part(path.relative_to(PKG).with_suffix("").parts)
        for line, mod in _imports(path):
            parts = tuple(mod.split(".")[1:])
            if parts[:1] != ("training",) or len(parts) < 2:
                continue
            dst = _training_part(parts)
            if dst != src and TRAINING_FLOORS[dst] >= TRAINING_FLOORS[src] and (src, mod) not in WING_CROSSINGS:
                bad.append(f"{path.relative_to(PKG.parent)}:{line} ({src}) imports {mod} ({dst})")
    assert not bad, "imports against the training wings (docs/ARCHITECTURE.md):\n" + "\n".join(bad)
