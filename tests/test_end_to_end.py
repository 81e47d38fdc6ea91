"""End to end on the shipped demo model: the export command's three precisions pass their
gates, and the README's main job (`docedge demo`) classifies and rejects unknown types."""

from __future__ import annotations

import json

import pytest

from docedge.runtime import load_bundle
from docedge.tools.cli import main


@pytest.mark.slow
def test_export_all_precisions_with_calibration_images(tmp_path, capsys):
    from docedge.synth.dataset import write_documents

    write_documents(tmp_path / "calib", types=40, per_type=3, first_type_id=5000, capture_strength=0.7)
    code = main(["export", "--out", str(tmp_path / "b"), "--precision", "fp32,fp16,int8",
                 "--calib-images", str(tmp_path / "calib"), "--json"])
    assert code == 0
    capsys.readouterr()
    b = load_bundle(tmp_path / "b")  # verifies every checksum
    for prec in ("fp32", "fp16", "int8"):
        assert b.artifact(prec).record["verification"]["passed"], prec
    cache = b.artifact("int8", "trt-calibration-cache").record
    assert cache["model_sha256"] == b.artifact("fp32").sha256
    assert b.thresholds("fp32")["source"]["origin"] == "demo model card"


@pytest.mark.slow
def test_demo_main_job(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path / "demo"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["parity"]["passed"]
    for key, c in report["classification"].items():
        assert c["top1_registered"] >= 0.9, key
        if c["fpr"] == 1e-3:
            assert c["unknown_rejection"] >= 0.8, key
    assert {b["engine"] for b in report["bench"]} == {"pytorch-eager", "onnxruntime-fp32",
                                                      "onnxruntime-fp16", "onnxruntime-int8"}
    assert (tmp_path / "demo" / "demo.json").is_file()
