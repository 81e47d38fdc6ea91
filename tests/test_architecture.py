"""The stages and their allowed imports (docs/architecture.md), enforced on the source.

    runtime  <-  synth  <-  export  <-  calibration  <-  tools

An arrow points from a stage to one it may import. No stage imports one to its right, no two
packages import each other (also inside runtime), and the stages that promise to work without
torch / onnx / matplotlib import without them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["runtime", "synth", "export", "calibration", "tools"]
FOLDER = {s: ROOT / s for s in STAGES}


def _module_name(path: Path) -> str:
    stage = next(s for s in STAGES if FOLDER[s] in path.parents)
    rel = path.relative_to(FOLDER[stage]).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["docedge", stage, *parts])


def _imports(path: Path) -> Set[str]:
    """docedge modules imported by ``path`` at module level or inside functions (all of them:
    a lazy import still is a dependency)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    out: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("docedge.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("docedge."):
                out.add(mod)
    return out


def _graph() -> Dict[str, Set[str]]:
    g: Dict[str, Set[str]] = {}
    for stage in STAGES:
        for path in FOLDER[stage].rglob("*.py"):
            g[_module_name(path)] = _imports(path)
    return g


def _stage(module: str) -> str:
    return module.split(".")[1]


def test_no_stage_imports_a_later_stage():
    order = {s: i for i, s in enumerate(STAGES)}
    bad = sorted(f"{m} -> {d}" for m, deps in _graph().items() for d in deps
                 if _stage(d) in order and order[_stage(d)] > order[_stage(m)])  # fmt: skip
    assert not bad, "upward imports:\n" + "\n".join(bad)


def _unit(module: str) -> str:
    """A sub-package one level below its stage (``docedge.runtime.backends`` for
    ``docedge.runtime.backends.tensorrt.builder``), or the module itself."""
    parts = module.split(".")
    pkg = ".".join(parts[:3])
    return pkg if any(k.startswith(pkg + ".") for k in _graph_cache()) else module


def _is_package(unit: str) -> bool:
    return any(k.startswith(unit + ".") for k in _graph_cache())


_CACHE: Dict[str, Set[str]] = {}


def _graph_cache() -> Dict[str, Set[str]]:
    if not _CACHE:
        _CACHE.update(_graph())
    return _CACHE


def test_no_package_and_module_import_each_other():
    """E.g. ``runtime.engine_cache`` importing ``runtime.backends`` while a backend imports
    ``engine_cache`` (a package-level cycle on c7066f8)."""
    edges: Dict[str, Set[str]] = {}
    for m, deps in _graph_cache().items():
        for d in deps:
            a, b = _unit(m), _unit(d)
            if a != b and (_is_package(a) or _is_package(b)) and _stage(a) == _stage(b):
                edges.setdefault(a, set()).add(b)
    cycles = sorted(f"{a} <-> {b}" for a in edges for b in edges[a] if a in edges.get(b, set()))
    assert not cycles, "package cycles:\n" + "\n".join(cycles)


def _import_without(modules, blocked) -> subprocess.CompletedProcess:
    code = textwrap.dedent(f"""
        import importlib, importlib.abc, sys
        BLOCKED = {sorted(blocked)!r}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is blocked for this test")
                return None
        sys.meta_path.insert(0, Block())
        for m in {list(modules)!r}:
            importlib.import_module(m)
        heavy = [m for m in BLOCKED if m in sys.modules]
        assert not heavy, heavy
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_every_runtime_module_imports_without_torch_onnx_or_matplotlib():
    mods = sorted(m for m in _graph_cache() if _stage(m) == "runtime")
    res = _import_without(mods, {"torch", "onnx", "matplotlib", "timm", "onnxsim", "sklearn"})
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.mark.parametrize("modules", [
    ["docedge.synth.documents", "docedge.synth.captures", "docedge.synth.dataset"],
    ["docedge.export.gates", "docedge.export.manifest", "docedge.export.provenance",
     "docedge.export.verify", "docedge.export.check_images"],
    ["docedge.export.import_onnx", "docedge.calibration.thresholds", "docedge.calibration.parity",
     "docedge.calibration.roc", "docedge.calibration.calib_data"],
])  # fmt: skip
def test_stages_that_need_no_pytorch_reference_import_without_torch(modules):
    res = _import_without(modules, {"torch", "timm", "torchvision"})
    assert res.returncode == 0, res.stderr[-3000:]


def test_the_runtime_package_exports_only_what_it_defines():
    import docedge.runtime as rt

    missing = [name for name in rt.__all__ if not hasattr(rt, name)]
    assert not missing
