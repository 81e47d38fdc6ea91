"""The samples run as documented (the device sample needs a GPU and is only imported-checked)."""

from __future__ import annotations

import ast
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
def test_qa_parity_sample_passes_on_the_demo_bundle(tmp_path):
    from docedge.calibration.int8 import calibrate_int8
    from docedge.export.bundle_writer import export_bundle
    from docedge.export.fp16 import add_fp16_artifact
    from docedge.export.reference import load_reference
    from docedge.synth.dataset import write_documents

    ref = load_reference()
    export_bundle(tmp_path / "b", reference=ref)
    add_fp16_artifact(tmp_path / "b", ref)
    write_documents(tmp_path / "calib", types=60, per_type=3, first_type_id=5000, capture_strength=0.7)
    calibrate_int8(tmp_path / "b", tmp_path / "calib", reference=ref, progress=False)
    out = run("qa_parity.py", str(tmp_path / "b"), str(tmp_path / "qa"))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert (tmp_path / "qa" / "report" / "parity.md").is_file()
    assert (tmp_path / "qa" / "report" / "roc.png").is_file()


def test_device_sample_is_valid_python():
    ast.parse((SAMPLES / "jetson_device.py").read_text())
