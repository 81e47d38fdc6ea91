"""On a runtime-only install the heavy commands say which extra to install and exit 2, never a
ModuleNotFoundError traceback (issue 15, §4). The install is simulated by blocking imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

BLOCK = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = set(sys.argv[1].split(","))
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, Block())
    from docedge.tools.cli import main
    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.parametrize("argv, extra", [
    (["export", "--out", "OUT"], "export"),
    (["import-onnx", "x.onnx", "--out", "OUT"], "export"),
    (["synth", "documents", "--types", "2", "--out", "OUT"], None),
    (["calibrate", "int8", "B", "--images", "D"], "export"),
])  # fmt: skip
def test_a_missing_extra_is_named_and_exits_2(tmp_path, argv, extra):
    argv = [a.replace("OUT", str(tmp_path / "o")) for a in argv]
    blocked = "torch,onnx,onnxsim,timm,sklearn,matplotlib"
    res = subprocess.run([sys.executable, "-c", BLOCK, blocked, *argv], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    if extra is None:  # synth needs no heavy library: it just works
        assert res.returncode == 0, res.stderr[-1500:]
        return
    assert res.returncode == 2, res.stderr[-1500:]
    assert "Traceback" not in res.stderr
    assert f"pip install 'docedge[{extra}]'" in res.stderr
