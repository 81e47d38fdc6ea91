"""LiteRT artifacts (needs the [litert] extra: litert-torch, ai-edge-litert, ai-edge-quantizer)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("litert_torch", reason="LiteRT converter not installed: pip install 'docedge[litert]'")
pytest.importorskip(
    "ai_edge_litert", reason="LiteRT interpreter not installed: pip install 'docedge[litert]'"
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_reference():
    """The shipped demo model: quantized variants are only meaningful on a trained model."""
    from docedge.export.reference import load_reference

    return load_reference()


@pytest.fixture(scope="module")
def litert_bundle(demo_reference, tmp_path_factory):
    from docedge.export.bundle_writer import export_bundle
    from docedge.export.formats.convert import convert_bundle

    dst = tmp_path_factory.mktemp("litert") / "bundle"
    export_bundle(dst, reference=demo_reference)
    report = convert_bundle(
        dst,
        ["tflite"],
        reference=demo_reference,
        benchmark=False,
        options={"tflite_variants": ("fp32", "fp16", "int8-dynamic"), "vectors": False},
    )
    return dst, report


def test_litert_float_and_dynamic_int8_pass_their_gates(litert_bundle):
    from docedge.runtime.bundle import load_bundle

    root, report = litert_bundle
    recs = {r["file"]: r for r in report.records}
    assert set(recs) == {"model_fp32.tflite", "model_fp16.tflite", "model_int8_dynamic.tflite"}
    for name, rec in recs.items():
        v = rec["verification"]
        assert v["passed"] is True, (name, v)
        assert "ai-edge-litert" in v["verified_with"] and v["verified_with"]["input"]["dtype"] == "float32"
        assert rec["input"] == {"name": "img", "layout": "NHWC", "shape": [1, 128, 128, 3], "batch": "fixed"}
        assert "litert-torch" in rec["producers"]
    assert recs["model_fp32.tflite"]["verification"]["cos_min"] > 0.99999
    assert recs["model_int8_dynamic.tflite"]["variant"] == "int8-dynamic"
    assert recs["model_int8_dynamic.tflite"]["quantization"] == "dynamic-range"
    assert "tflite-runtime 2.14" in recs["model_int8_dynamic.tflite"]["interpreter_notes"]
    assert recs["model_fp16.tflite"]["size"] < 0.6 * recs["model_fp32.tflite"]["size"]
    b = load_bundle(root)
    assert b.artifact("fp32", "tflite").file == "model_fp32.tflite"
    assert b.artifact("int8", "tflite", variant="int8-dynamic").file == "model_int8_dynamic.tflite"


def test_litert_runner_matches_the_signature(litert_bundle, demo_reference):
    from docedge.export.bundle_writer import torch_embed
    from docedge.export.check_images import check_batch
    from docedge.export.formats.litert import litert_runner

    x = check_batch(3, seed=5)
    embed, _io = litert_runner(litert_bundle[0] / "model_fp32.tflite")
    got, ref = embed(x), torch_embed(demo_reference.net, x)
    assert got.shape == (3, 256) and np.allclose(got, ref, atol=1e-5)


def test_static_int8_is_calibrated_and_has_int8_input(tmp_path, demo_reference):
    """Full-integer static int8 (PT2E) on a few calibration images: runs, int8 input with the
    recorded quantization, close to the reference on documents (32 calibration images only;
    the conversion default is 200)."""
    from docedge.export.bundle_writer import torch_embed
    from docedge.export.check_images import document_check_batch
    from docedge.export.formats.litert import convert_litert_static_int8, litert_runner

    calib = document_check_batch(32, seed=11)
    out = tmp_path / "m.tflite"
    rec = convert_litert_static_int8(demo_reference.net, out, lambda: [calib[:16], calib[16:]],
                                     calibration_info={"origin": "test"})  # fmt: skip
    assert rec["calibration"] == {"origin": "test", "images": 32} and rec["quantization"] == "static"
    embed, io = litert_runner(out)
    assert io["dtype"] == "int8" and io["quantization"]["zero_point"] == -128
    x = document_check_batch(8, seed=3)
    cos = np.sum(embed(x) * torch_embed(demo_reference.net, x), axis=1)
    assert cos.min() > 0.95 and cos.mean() > 0.98


def test_litert_error_names_the_file(tmp_path):
    from docedge.export.formats._common import ConversionError
    from docedge.export.formats.litert import litert_runner

    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"nope")
    with pytest.raises(ConversionError, match=r"bad\.tflite"):
        litert_runner(bad)
