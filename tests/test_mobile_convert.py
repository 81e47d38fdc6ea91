"""convert_bundle: staged artifacts, gates, one manifest commit, extras, the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from docedge.export.bundle_writer import GateError
from docedge.runtime.bundle import load_bundle, read_manifest
from docedge.runtime.errors import BundleError


@pytest.fixture(scope="module")
def ort_bundle(seeded_bundle, seeded_reference, tmp_path_factory):
    """The seeded bundle converted to ORT Mobile (+ fixed-shape ONNX and test vectors)."""
    from docedge.export.formats.convert import convert_bundle

    dst = tmp_path_factory.mktemp("ort") / "bundle"
    shutil.copytree(seeded_bundle, dst)
    report = convert_bundle(dst, ["ort"], reference=seeded_reference, benchmark=False)
    return dst, report


def test_ort_artifacts_are_recorded_gated_and_verified(ort_bundle):
    root, _report = ort_bundle
    b = load_bundle(root)  # every file (and every file of multi-file artifacts) hash-checked
    by_file = {a.file: a.record for a in b.artifacts}
    for name in (
        "model_fp32.ort",
        "model_fp32_b1_accel.ort",
        "model_fp32_b1.onnx",
        "model_fp32_b1_accel.onnx",
        "model_fp32_b1_nhwc.onnx",
    ):
        rec = by_file[name]
        v = rec["verification"]
        assert v["passed"] is True and v["against"] == "pytorch-reference"
        assert v["cos_min"] >= 0.9999 and v["decision_agreement"] == 1.0
        assert v["verified_with"]["providers"] == ["CPUExecutionProvider"]
        assert "onnxruntime" in rec["producers"] and rec["input"]["layout"] in ("NCHW", "NHWC")
    assert by_file["model_fp32_b1_accel.ort"]["normalized_output"] is False
    assert by_file["model_fp32_b1_accel.ort"]["optimization"]["style"] == "runtime"
    assert by_file["model_fp32.ort"]["optimization"] == {"style": "fixed", "level": "extended",
                                                         "target_platform": "arm"}  # fmt: skip
    cfg = by_file["required_operators_and_types.config"]
    assert "verification" not in cfg and set(cfg["for"]) >= {"model_fp32.ort", "model_fp32_b1_accel.ort"}
    usab = by_file["mobile_usability.json"]
    assert [f["file"] for f in usab["files"]] == ["mobile_usability.txt"]
    assert "model_fp32_b1.onnx" in usab["summary"]
    # the accelerator variant is one NNAPI partition (ONNX Runtime's own checker)
    assert usab["summary"]["model_fp32_b1_accel.onnx"]["NNAPI"].endswith("in 1 partitions")
    vec = by_file["test_vectors.zip"]
    assert any(f["path"] == "test_vectors/index.json" for f in vec["contents"])
    # decisions include probes without an exemplar (must stay "unknown")
    assert by_file["model_fp32.ort"]["verification"]["decisions"]["probes_without_exemplar"] > 0
    # the main ONNX artifacts are unchanged and still the default lookups
    assert b.precisions == ["fp32"]
    assert b.artifact("fp32", "onnx").file == "model_fp32.onnx"
    assert b.artifact("fp32", "onnx", variant="b1-nhwc").file == "model_fp32_b1_nhwc.onnx"
    assert not any(p.name.endswith(".staged") or p.is_dir() for p in root.iterdir())  # nothing left over


@pytest.mark.parametrize("victim", ["mobile_usability.txt", "test_vectors.zip", "model_fp32_b1_accel.ort"])
def test_tampered_part_of_a_multi_file_artifact_is_refused(ort_bundle, tmp_path, victim):
    root = tmp_path / "b"
    shutil.copytree(ort_bundle[0], root)
    p = root / victim
    p.write_bytes(p.read_bytes() + b" ")
    with pytest.raises(BundleError, match=victim):
        load_bundle(root)


def test_failed_gate_commits_nothing(bundle_copy, seeded_reference, monkeypatch):
    from docedge.export.formats import convert, gate

    before = (bundle_copy / "manifest.json").read_bytes()
    monkeypatch.setitem(gate.GATES, "fp32", {"cos_min": 1.1, "cos_mean": 1.1, "decision_agreement": 1.0})
    with pytest.raises(GateError, match="failed the gate, nothing committed"):
        convert.convert_bundle(bundle_copy, ["ort"], reference=seeded_reference, benchmark=False,
                               options={"nhwc_onnx": False, "vectors": False})  # fmt: skip
    assert (bundle_copy / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in bundle_copy.iterdir() if p.name != ".docedge-bundle.lock") == [
        "manifest.json",
        "model_fp32.onnx",
    ]


def test_missing_converter_is_skipped_naming_the_extra(bundle_copy, seeded_reference, monkeypatch):
    from docedge.export.formats import _common, convert

    real = _common.importlib.import_module

    def fake(name, *a, **k):
        if name.split(".")[0] in ("litert_torch", "coremltools", "pnnx"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *a, **k)

    monkeypatch.setattr(_common.importlib, "import_module", fake)
    report = convert.convert_bundle(bundle_copy, ["tflite", "coreml", "ncnn"], reference=seeded_reference,
                                    benchmark=False, options={"vectors": False})  # fmt: skip
    reasons = {s["format"]: s["reason"] for s in report.skipped}
    assert "pip install 'docedge[litert]'" in reasons["tflite"]
    assert "pip install 'docedge[coreml]'" in reasons["coreml"]
    assert "pip install 'docedge[ncnn]'" in reasons["ncnn"]
    assert report.records == []


def test_parse_formats():
    from docedge.export.formats.convert import parse_formats

    assert parse_formats("ort, litert") == ["ort", "tflite"]
    assert parse_formats("all") == ["ort", "tflite", "coreml", "ncnn"]
    assert parse_formats("onnx,ncnn") == ["ncnn"]
    with pytest.raises(ValueError, match="unknown format"):
        parse_formats("ort,pb")


@pytest.mark.slow
def test_cli_convert_json(bundle_copy, capsys):
    from docedge.tools.cli import main

    rc = main(["convert", str(bundle_copy), "--formats", "ort", "--random-init", "--seed", "0",
               "--no-benchmark", "--json"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["ok"] is True
    files = {a["file"] for a in out["artifacts"]}
    assert {"model_fp32.ort", "required_operators_and_types.config", "test_vectors.zip"} <= files
    assert read_manifest(bundle_copy)["artifacts"][0]["file"] == "model_fp32.onnx"


def test_cli_convert_refuses_unknown_format(bundle_copy, capsys):
    from docedge.tools.cli import main

    assert main(["convert", str(bundle_copy), "--formats", "pb"]) == 2  # a usage error
    assert "unknown format" in capsys.readouterr().err


def test_gate_marks_unrunnable_artifacts_not_run():
    from docedge.export.formats import gate

    v = gate.not_run("needs macOS")
    assert v["passed"] is None and v["verified_with"] == {"status": "not run", "reason": "needs macOS"}


def test_gate_normalizes_unnormalized_output_and_catches_wrong_models(seeded_reference):
    from docedge.export.bundle_writer import torch_embed
    from docedge.export.formats import gate

    data = gate.gate_data(lambda x: torch_embed(seeded_reference.net, x), "pytorch-reference")
    scaled = gate.gate(
        data, lambda x: 3.0 * torch_embed(seeded_reference.net, x), "fp32", normalized_output=False
    )
    assert scaled["passed"] is True and scaled["output_norm_min"] > 2.9
    # claimed normalized but is not: refused even though the direction is right
    assert gate.gate(data, lambda x: 3.0 * torch_embed(seeded_reference.net, x), "fp32")["passed"] is False
    rgb = gate.gate(
        data, lambda x: torch_embed(seeded_reference.net, np.ascontiguousarray(x[:, ::-1])), "fp32"
    )
    assert rgb["passed"] is False and rgb["cos_min"] < 0.99


def test_coreml_check_sample_refuses_to_run_off_macos(ort_bundle):
    import platform
    import subprocess
    import sys
    from pathlib import Path

    sample = Path(__file__).resolve().parents[1] / "samples" / "coreml_check.py"
    out = subprocess.run([sys.executable, str(sample), str(ort_bundle[0])], capture_output=True, text=True)
    if platform.system() == "Darwin":  # pragma: no cover - CI is Linux
        assert out.returncode in (0, 1, 2)
    else:
        assert out.returncode == 2 and "needs macOS" in out.stderr


def test_cli_table_marks_not_run_and_never_passed():
    from docedge.tools.commands.convert import table_lines

    lines = table_lines([
        {"file": "m.mlpackage.zip", "format": "coreml", "precision": "fp16", "size": 10,
         "verification": {"passed": None, "verified_with": {"status": "not run", "reason": "needs macOS"}}},
        {"file": "m.ort", "format": "ort", "precision": "fp32", "size": 10,
         "verification": {"passed": True, "cos_min": 1.0, "cos_mean": 1.0, "decision_agreement": 1.0}},
    ])  # fmt: skip
    assert "NOT RUN (needs macOS)" in lines[1] and "PASS" not in lines[1]
    assert lines[2].rstrip().endswith("PASS")


def test_mobile_runs_reproduce_the_gate(ort_bundle, seeded_reference):
    from docedge.export.check_images import check_batch
    from docedge.export.formats.run import mobile_runs
    from docedge.export.gates import torch_embed
    from docedge.export.verify import agreement

    b = load_bundle(ort_bundle[0])
    runs = {name: factory for name, _, factory in mobile_runs(b)}
    assert "fp32/ort" in runs and "fp32/ort-b1-accelerator" in runs and "fp32/onnx-b1-nhwc" in runs
    assert "fp32/onnx" not in runs  # the main ONNX files are parity's own business
    x = check_batch(4, seed=21)
    ref = torch_embed(seeded_reference.net, x)
    for name, factory in runs.items():
        embed, _ = factory()
        got = embed(x)
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4), name  # accel output normalized here
        assert agreement(ref, got).cos_min > 0.9999, name


def test_vectors_alone(bundle_copy, seeded_reference):
    from docedge.export.formats.convert import add_test_vectors
    from docedge.runtime.test_vectors import load_test_vectors

    report = add_test_vectors(bundle_copy, seeded_reference)
    assert [r["file"] for r in report.records] == ["test_vectors.zip"]
    b = load_bundle(bundle_copy)
    assert b.artifact("fp32", "test-vectors").file == "test_vectors.zip"
    tv = load_test_vectors(bundle_copy)
    assert len(tv.names) >= 5
    # converting again replaces the record (one per format/precision/variant), no duplicates
    add_test_vectors(bundle_copy, seeded_reference)
    assert [a.file for a in load_bundle(bundle_copy).artifacts].count("test_vectors.zip") == 1


def test_export_formats_goes_through_convert(tmp_path):
    """``docedge export --formats onnx,ort`` (the lead's pipeline) lands the ORT artifacts."""
    from docedge.tools.cli import main

    out = tmp_path / "b"
    rc = main(["export", "--random-init", "--seed", "0", "--out", str(out), "--formats", "onnx,ort"])
    assert rc == 0
    files = {a.file for a in load_bundle(out).artifacts}
    assert {"model_fp32.onnx", "model_fp32.ort", "model_fp32_b1_accel.ort", "test_vectors.zip"} <= files


def test_cli_gate_failure_exits_1_and_names_the_file(bundle_copy, capsys, monkeypatch):
    from docedge.export.formats import gate
    from docedge.tools.cli import main

    monkeypatch.setitem(gate.GATES, "fp32", {"cos_min": 1.1, "cos_mean": 1.1, "decision_agreement": 1.0})
    rc = main(["convert", str(bundle_copy), "--formats", "ort", "--random-init", "--no-benchmark", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1 and out["ok"] is False and out["error"] == "GateError"
    assert "model_fp32.ort" in out["message"] and any(f["file"] == "model_fp32.ort" for f in out["failed"])


def test_mobile_backend_adapter(ort_bundle, monkeypatch):
    from docedge.export.check_images import check_batch
    from docedge.export.formats import run
    from docedge.runtime.errors import BackendUnavailableError

    b = load_bundle(ort_bundle[0])
    name, rec, factory = next(r for r in run.mobile_runs(b) if r[0] == "fp32/ort")
    backend = run.MobileBackend.from_factory(name, rec, factory)
    assert backend.max_batch == 32 and backend.describe()["artifact"] == "fp32/ort"
    assert backend.run(check_batch(2)).shape == (2, 256)
    backend.close()

    def missing():
        raise run.ConverterUnavailableError("needs the ncnn package: pip install 'docedge[ncnn]'")

    with pytest.raises(BackendUnavailableError, match=r"docedge\[ncnn\]"):
        run.MobileBackend.from_factory("fp16/ncnn", {"input": {}}, missing)


def test_imported_onnx_bundle_gates_against_its_fp32_onnx(seeded_bundle, tmp_path):
    """No PyTorch model exists: ORT artifacts are gated against the fp32 ONNX (recorded as
    such); LiteRT/Core ML, which convert from PyTorch, are skipped with the reason."""
    from docedge.tools.cli import main

    out = tmp_path / "imported"
    assert main(["import-onnx", str(seeded_bundle / "model_fp32.onnx"), "--out", str(out)]) == 0
    from docedge.export.formats.convert import convert_bundle

    report = convert_bundle(out, ["ort", "tflite", "coreml"], benchmark=False, options={"vectors": False})
    recs = {r["file"]: r for r in report.records}
    assert recs["model_fp32.ort"]["verification"]["against"].startswith("fp32-onnx")
    assert recs["model_fp32.ort"]["verification"]["passed"] is True
    reasons = {s["format"]: s["reason"] for s in report.skipped}
    assert "PyTorch reference" in reasons["tflite"] and "PyTorch reference" in reasons["coreml"]


def _fp32_demo_bundle(tmp_path):
    """The demo model, fp32 only (its INT8 .ort has its own gate, tested elsewhere)."""
    from docedge.export.bundle_writer import export_bundle
    from docedge.export.reference import load_reference

    return export_bundle(tmp_path / "b", reference=load_reference()).path


def test_parity_includes_the_converted_artifacts(tmp_path):
    """Issue 11: every converted artifact that runs here is also part of `docedge parity`."""

    from docedge.calibration.parity import run_parity
    from docedge.export.formats import convert_bundle
    from docedge.synth.dataset import write_documents

    b = _fp32_demo_bundle(tmp_path)
    convert_bundle(b, ["ort"], benchmark=False)
    write_documents(tmp_path / "lab", types=6, per_type=3, first_type_id=960, capture_strength=0.5)
    res = run_parity(b, tmp_path / "lab", tensorrt=False, progress=False, precisions=["fp32"])
    names = {a["name"] for a in res.artifacts}
    assert {"fp32/ort", "fp32/onnx-b1", "fp32/ort-b1-accelerator"} <= names
    assert all(a["artifact"]["format"] in ("onnx", "ort") for a in res.artifacts)
    assert res.passed, res.failures


@pytest.mark.slow
def test_benchmark_has_one_row_per_artifact_with_accuracy_and_speed(tmp_path, capsys):
    import json

    from docedge.export.formats import convert_bundle
    from docedge.synth.dataset import write_documents
    from docedge.tools.cli import main

    b = _fp32_demo_bundle(tmp_path)
    convert_bundle(b, ["ort"], benchmark=False)
    write_documents(tmp_path / "lab", types=6, per_type=3, first_type_id=960, capture_strength=0.5)
    assert main(["benchmark", str(b), "--images", str(tmp_path / "lab"), "--rounds", "1",
                 "--seconds", "0.05", "--json"]) == 0  # fmt: skip
    rows = json.loads(capsys.readouterr().out)["rows"]
    by = {r["artifact"]: r for r in rows}
    assert {"fp32/onnxruntime-cpu", "fp32/ort", "fp32/onnx-b1", "fp32/ort-b1-accelerator"} <= set(by)
    for r in rows:
        assert r["size_bytes"] > 0 and 0.9 < r["cos_mean"] <= 1.0 + 1e-6
        assert r["images_per_cpu_s_b1"] and r["images_per_cpu_s_b32"]
