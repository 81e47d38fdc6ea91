"""``backend="auto"`` (issue 12): OpenVINO where the bundle's gated OpenVINO artifact of the
precision was measured faster than ONNX Runtime on x86, ONNX Runtime otherwise; the choice and
its reason are logged, printed by the CLI and recorded. The rule runs on faked facts: no
timing here."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from docedge.runtime.backends import auto
from docedge.runtime.bundle import Bundle
from docedge.runtime.errors import BundleError


def ir(speedups=None, passed=True, hint="f32", file="model_int8.xml"):
    """An OpenVINO artifact record as ``docedge convert --formats openvino`` writes it."""
    rec = {"file": file, "format": "openvino", "precision": "int8", "inference_precision_hint": hint,
           "verification": {"passed": passed}}  # fmt: skip
    if speedups is not None:
        rec["benchmark"] = {"speedup_vs_onnxruntime": speedups, "measured_on": "a test CPU"}
    return rec


FAST = {"batch_1": 1.5, "batch_32": 2.1}


def decide(record, **kw):
    args = {"precision": "int8", "ir_record": record, "has_onnx": True, "machine": "x86_64",
            "openvino_version": "2026.4", "cpu_caps": ["FP32", "INT8", "BF16"]}  # fmt: skip
    args.update(kw)
    return auto.decide(**args)


def test_openvino_is_chosen_where_its_artifact_measured_faster_and_the_reason_says_so():
    c = decide(ir(FAST))
    assert (c.requested, c.backend, c.precision) == ("auto", "openvino", "int8")
    assert "2.10x ONNX Runtime at batch 32 on a test CPU" in c.reason and "model_int8.xml" in c.reason
    assert decide(ir(FAST), batch=1).reason.count("1.50x ONNX Runtime at batch 1") == 1
    assert "openvino" in str(c) and c.to_dict()["reason"] == c.reason


@pytest.mark.parametrize(
    "record, kw, why",
    [
        (None, {}, "no OpenVINO artifact of int8"),
        (ir(FAST), {"openvino_version": None}, "OpenVINO is not installed"),
        (ir(FAST), {"machine": "aarch64"}, "aarch64, not x86"),
        (ir(FAST, passed=None), {}, "not a passed gate"),
        (ir(FAST, passed=False), {}, "not a passed gate"),
        (ir({"batch_1": 0.9, "batch_32": 1.05}), {}, "1.05x ONNX Runtime at batch 32"),
        (ir({"batch_1": 0.6, "batch_32": 2.0}), {"batch": 1}, "0.60x ONNX Runtime at batch 1"),
        (ir(None), {}, "no recorded speed"),
        (ir(FAST, hint="bf16"), {"cpu_caps": ["FP32", "INT8"]}, "no bf16"),
        (ir(FAST), {"providers": ["cuda"]}, "providers ['cuda']"),
    ],
)
def test_onnx_runtime_otherwise_with_the_reason(record, kw, why):
    c = decide(record, **kw)
    assert c.backend == "onnxruntime" and why in c.reason


def test_bf16_runs_only_on_openvino():
    c = decide(ir(None, hint="bf16", file="model_bf16.xml"), precision="bf16", has_onnx=False)
    assert c.backend == "openvino" and "only OpenVINO runs bf16" in c.reason
    with pytest.raises(BundleError, match=r"no engine for bf16.*OpenVINO is not installed"):
        decide(ir(None, hint="bf16"), precision="bf16", has_onnx=False, openvino_version=None)
    with pytest.raises(BundleError, match=r"no engine for bf16.*no OpenVINO artifact of bf16"):
        decide(None, precision="bf16", has_onnx=False)


def test_select_backend_reads_the_bundle_and_this_machine(monkeypatch, caplog):
    manifest = {"artifacts": [
        {"file": "model_fp32.onnx", "format": "onnx", "precision": "fp32", "sha256": "0" * 64, "size": 1},
        {"file": "model_int8.onnx", "format": "onnx", "precision": "int8", "sha256": "1" * 64, "size": 1},
        {**ir(FAST), "sha256": "2" * 64, "size": 1,
         "files": [{"file": "model_int8.bin", "sha256": "3" * 64, "size": 1}]},
    ]}  # fmt: skip
    bundle = Bundle(Path("fake-bundle"), manifest)
    monkeypatch.setattr(auto, "openvino_version", lambda: "2026.4")
    monkeypatch.setattr(auto.platform, "machine", lambda: "AMD64")
    with caplog.at_level(logging.INFO, logger="docedge.runtime.backends.auto"):
        c = auto.select_backend(bundle, "int8")
    assert c.backend == "openvino" and "backend openvino for int8" in caplog.text
    assert auto.select_backend(bundle, "fp32").backend == "onnxruntime"
    monkeypatch.setattr(auto.platform, "machine", lambda: "arm64")
    assert auto.select_backend(bundle, "int8").backend == "onnxruntime"


def test_auto_is_recorded_and_announced(bundle_copy):
    from docedge.runtime import Embedder

    seen = []
    with Embedder(bundle_copy, backend="auto", threads=1, on_choice=seen.append) as emb:
        d = emb.describe()
    assert d["backend"] == "onnxruntime" and d["intra_op_threads"] == 1
    choice = d["backend_choice"]
    assert choice["requested"] == "auto" and "no OpenVINO artifact" in choice["reason"]
    assert [c.backend for c in seen] == ["onnxruntime"]
    with pytest.raises(TypeError, match="backend 'auto' takes the options"):
        Embedder(bundle_copy, backend="auto", intra_op_threads=1)


def test_cli_prints_the_choice_on_stderr_and_keeps_json_clean(bundle_copy, check_image_files, capsys):
    from docedge.tools.cli import main

    rc = main(["embed", str(bundle_copy), str(check_image_files[0]), "--backend", "auto", "--json"])
    out = capsys.readouterr()
    assert rc == 0 and json.loads(out.out)["embedded"] == 1
    assert "docedge: backend onnxruntime for fp32 (auto: the bundle has no OpenVINO artifact" in out.err


@pytest.mark.parametrize("missing, skipped", [("openvino", "openvino"), ("nncf", "openvino int8")])
def test_conversion_without_openvino_or_nncf_is_skipped_naming_the_extra(
    bundle_copy, seeded_reference, monkeypatch, missing, skipped
):
    from docedge.export.formats import _common, convert

    real = _common.importlib.import_module

    def fake(name, *a, **k):
        if name.split(".")[0] == missing:
            raise ImportError(f"No module named {name!r}")
        return real(name, *a, **k)

    monkeypatch.setattr(_common.importlib, "import_module", fake)
    opts = {"vectors": False, "openvino_precisions": ["int8"]}
    report = convert.convert_bundle(bundle_copy, ["openvino"], reference=seeded_reference,
                                    benchmark=False, options=opts)  # fmt: skip
    assert report.records == [] and len(report.skipped) == 1
    s = report.skipped[0]
    assert " ".join(filter(None, (s["format"], s.get("precision")))) == skipped
    assert "pip install 'docedge[openvino-export]'" in s["reason"] and s["extra"] == "openvino-export"
