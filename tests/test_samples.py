"""The samples run as documented (the device sample needs a GPU and is only imported-checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SAMPLES / script), *args], capture_output=True,
                          text=True, timeout=600)


def test_quickstart_registers_and_classifies(tmp_path):
    out = run("quickstart.py", str(tmp_path))
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stdout.splitlines() if "->" in line]
    assert len(lines) == 10
    correct = sum(line.split("->")[0].strip().startswith(line.split("->")[1].split()[0]) for line in lines)
    assert correct >= 9, out.stdout


@pytest.mark.slow
def test_qa_parity_sample_passes_on_the_demo_bundle(demo_release, tmp_path):
    import shutil

    shutil.copytree(demo_release, tmp_path / "b")
    out = run("qa_parity.py", str(tmp_path / "b"), str(tmp_path / "qa"))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert (tmp_path / "qa" / "report" / "parity.md").is_file()
    assert (tmp_path / "qa" / "report" / "roc.png").is_file()


def test_device_sample_says_what_is_missing_without_a_gpu(seeded_bundle, tmp_path):
    """On a machine without TensorRT the Jetson sample exits 2 naming what to install."""
    from docedge.runtime.backends.tensorrt import compat
    from docedge.runtime.errors import BackendUnavailableError

    try:
        compat.import_tensorrt()
        pytest.skip("TensorRT is usable here: the sample would build an engine")
    except BackendUnavailableError:
        pass  # the machine this test is for: no TensorRT library (type stubs at most)
    out = run("jetson_device.py", str(seeded_bundle), str(tmp_path / "g.gal"), "x.jpg")
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "TensorRT" in out.stderr
