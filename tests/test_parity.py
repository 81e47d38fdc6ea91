"""QA parity: exit codes, report files, tolerances, a deliberately corrupted artifact, threshold
tables written into the manifest, and golden files that NVIDIA Polygraphy itself accepts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from docedge.calibration.parity import load_tolerances, run_parity
from docedge.export.check_images import make_image
from docedge.runtime.bundle import artifact_record, read_manifest, upsert_artifact, write_manifest
from docedge.runtime.errors import DocedgeError
from docedge.tools.cli import main


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """6 classes x 3 images; the images of a class are small perturbations of one drawing."""
    import cv2

    root = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(0)
    for c in range(6):
        base = make_image(100 + c, 160, 240)
        (root / f"class{c}").mkdir()
        for k in range(3):
            noisy = np.clip(base.astype(int) + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / f"class{c}" / f"{k}.png"), noisy)
    return root


def test_thresholds_are_written_per_precision_with_provenance(bundle_copy, labelled, capsys):
    assert main(["calibrate", "thresholds", str(bundle_copy), "--images", str(labelled)]) == 0
    out = capsys.readouterr().out
    assert "FPR" in out and "Threshold" in out and "AUROC" in out
    t = read_manifest(bundle_copy)["thresholds"]["fp32"]
    s = t["source"]
    assert s["classes"] == 6 and s["images"] == 18 and s["genuine_pairs"] == 18
    assert s["impostor_pairs"] == 135 and len(s["data_sha256"]) == 64
    rows = {r["fpr"]: r for r in t["rows"]}
    assert rows[1e-3]["supported"] is False and rows[1e-3]["threshold"] is None  # floor(0.135) = 0
    assert rows[1e-1]["supported"] and rows[1e-1]["false_accepts"] <= 13


def test_parity_passes_and_writes_reports(bundle_copy, labelled, tmp_path, capsys):
    code = main(["parity", str(bundle_copy), "--images", str(labelled), "--report", str(tmp_path / "r"),
                 "--no-tensorrt", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0 and res["passed"] and res["schema"] == "docedge.parity"
    (art,) = res["artifacts"]
    assert art["name"] == "fp32/onnxruntime-cpu" and art["decision_agreement"] == 1.0
    assert art["embedding"]["cos_min"] >= 0.99999
    for f in ("parity.json", "parity.md", "roc.png", "scores.png", "cosine.png"):
        assert (tmp_path / "r" / f).stat().st_size > 0, f


def test_a_corrupted_artifact_fails_naming_the_checks(bundle_copy, labelled, capsys):
    path = bundle_copy / "model_fp32.onnx"
    m = onnx.load(str(path))
    biggest = max(m.graph.initializer, key=lambda t: np.prod(t.dims))
    w = numpy_helper.to_array(biggest).copy()
    w *= 1 + np.random.default_rng(0).normal(0, 0.2, w.shape).astype(w.dtype)
    biggest.CopyFrom(numpy_helper.from_array(w, biggest.name))
    onnx.save(m, str(path))
    manifest = read_manifest(bundle_copy)
    upsert_artifact(manifest, artifact_record(bundle_copy, "model_fp32.onnx", "onnx", "fp32"))
    write_manifest(bundle_copy, manifest)  # checksums updated: the bundle_copy verifies, but decides wrongly
    code = main(["parity", str(bundle_copy), "--images", str(labelled), "--no-tensorrt", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 1 and not res["passed"]
    assert any("cos_min" in f for f in res["failures"])


def test_tolerances_from_config_and_flags(tmp_path):
    cfg = tmp_path / "tol.json"
    cfg.write_text(json.dumps({"int8": {"cos_mean": 0.95}}))
    tol = load_tolerances(cfg, {"fp16": {"cos_min": 0.99}})
    assert tol["int8"]["cos_mean"] == 0.95 and tol["fp16"]["cos_min"] == 0.99
    assert tol["fp32"]["cos_min"] == 0.99999
    with pytest.raises(DocedgeError, match="unknown precision"):
        load_tolerances(overrides={"fp8": {"cos_min": 1.0}})


def test_strict_flag_override_turns_a_pass_into_a_fail(bundle_copy, labelled, capsys):
    code = main(["parity", str(bundle_copy), "--images", str(labelled), "--no-tensorrt", "--json",
                 "--tol", "fp32.cos_min=1.01"])
    assert code == 1
    assert "cos_min" in json.loads(capsys.readouterr().out)["failures"][0]


def test_golden_files_are_accepted_by_polygraphy(bundle_copy, labelled, tmp_path):
    result = run_parity(bundle_copy, labelled, tensorrt=False, progress=False)
    from docedge.calibration.golden import write_golden

    files = write_golden(tmp_path / "golden", result.raw["inputs"], result.raw["reference"])
    exe = Path(sys.executable).with_name("polygraphy")
    cmd = [str(exe), "run", str(bundle_copy / "model_fp32.onnx"), "--onnxrt",
           "--load-inputs", files["inputs"], "--load-outputs", files["outputs"],
           "--atol", "1e-5", "--rtol", "1e-4"]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    assert "PASSED" in ok.stdout + ok.stderr
    bad_outputs = write_golden(tmp_path / "bad", result.raw["inputs"], result.raw["reference"] * -1)
    cmd[cmd.index("--load-outputs") + 1] = bad_outputs["outputs"]
    assert subprocess.run(cmd, capture_output=True, text=True, timeout=300).returncode != 0
