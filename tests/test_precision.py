"""Reduced precision: FP16 gate, INT8 mechanics (every method, tiny-range tensors), and the
TensorRT calibration cache (format, round trip, consistency with the QDQ scales, refusal)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from docedge.calibration.int8 import calibrate_int8, qdq_activation_scales
from docedge.calibration.ranges import compute_ranges
from docedge.calibration.trt_cache import (
    CalibrationCacheError,
    cache_text,
    decode_scale,
    encode_scale,
    load_calibration_cache,
    read_cache,
)
from docedge.export.check_images import write_check_images
from docedge.export.fp16 import add_fp16_artifact
from docedge.export.gates import GateError
from docedge.runtime import Embedder, load_bundle


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("calib")
    write_check_images(d, count=12, seed=31)
    return d


@pytest.fixture(scope="module")
def int8_bundle(seeded_bundle, seeded_reference, calib_dir, tmp_path_factory):
    dst = tmp_path_factory.mktemp("int8") / "bundle"
    shutil.copytree(seeded_bundle, dst)
    # The seeded network is chaotic, so INT8 accuracy is judged on the demo model; here the
    # mechanics are checked with the gate off.
    result = calibrate_int8(dst, calib_dir, method="minmax", reference=seeded_reference,
                            enforce_gate=False, progress=False, batch_size=4)
    return dst, result


def test_fp16_artifact_passes_its_gate_and_keeps_float32_io(seeded_bundle, seeded_reference, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(seeded_bundle, dst)
    rec = add_fp16_artifact(dst, seeded_reference)
    v = rec["verification"]
    assert v["passed"] and v["cos_min"] >= 0.999 and v["cos_mean"] >= 0.9995
    assert rec["kept_fp32_nodes"], "sensitive nodes must be listed"
    m = onnx.load(str(dst / "model_fp16.onnx"))
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert any(i.data_type == TensorProto.FLOAT16 for i in m.graph.initializer)
    b = load_bundle(dst)
    out = Embedder(b, precision="fp16").run_tensor(np.zeros((2, 3, 128, 128), np.float32))
    assert out.dtype == np.float32 and out.shape == (2, 256)
    assert b.artifact("fp16").size < 0.6 * b.artifact("fp32").size


def test_int8_artifacts_are_recorded_with_provenance(int8_bundle, calib_dir):
    dst, _result = int8_bundle
    b = load_bundle(dst)
    onnx_rec = b.artifact("int8").record
    cal = onnx_rec["calibration"]
    assert cal["method"] == "minmax" and cal["images"] == 12 and len(cal["data_sha256"]) == 64
    cache = b.artifact("int8", "trt-calibration-cache").record
    assert cache["model_sha256"] == b.artifact("fp32").sha256
    assert cache["data_sha256"] == cal["data_sha256"]
    assert {"cos_mean", "cos_min", "passed"} <= set(onnx_rec["verification"])
    q = onnx.load(str(dst / "model_int8.onnx"))
    ops = {n.op_type for n in q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    zps = [i for i in q.graph.initializer if "zero_point" in i.name]
    assert zps and all(not np.any(onnx.numpy_helper.to_array(z)) for z in zps)  # symmetric
    act = [z for z in zps if onnx.numpy_helper.to_array(z).dtype != np.int32]  # int32: biases
    assert act and all(onnx.numpy_helper.to_array(z).dtype == np.int8 for z in act)


def test_trt_cache_scales_equal_the_qdq_scales(int8_bundle):
    dst, _ = int8_bundle
    cache = read_cache(dst / "int8_calibration.cache")
    header, scales = cache.header, cache.scales
    assert header == "TRT-8502-EntropyCalibration2"
    qdq = qdq_activation_scales(onnx.load(str(dst / "model_int8.onnx")))
    # The cache covers every float activation (TensorRT's implicit INT8 needs them all); the
    # tensors the QDQ model quantizes carry bit-identical scales.
    assert set(qdq) <= set(scales) and "img" in scales
    for name, s in qdq.items():
        assert scales[name] == pytest.approx(s, rel=1e-7)
    fp32_names = {o for n in onnx.load(str(dst / "model_fp32.onnx")).graph.node for o in n.output}
    assert set(scales) - {"img"} <= fp32_names  # names TensorRT's parser sees


def test_cache_encoding_matches_tensorrt():
    assert encode_scale(1.0) == "3f800000"
    assert decode_scale("3c010204") == pytest.approx(0.00787402, rel=1e-5)  # 1/127
    text = cache_text({"a": 0.5, "b:c": 2.0}, version="8601")
    assert text.splitlines() == ["TRT-8601-EntropyCalibration2", "a: 3f000000", "b:c: 40000000"]


def test_cache_round_trip_and_malformed_cache(tmp_path):
    p = tmp_path / "c.cache"
    p.write_text(cache_text({"x": 0.25, "y": 1e-3}))
    scales = read_cache(p).scales
    assert scales["x"] == 0.25 and scales["y"] == pytest.approx(1e-3)
    p.write_text("TRT-8502-EntropyCalibration2\nx: zz\n")
    with pytest.raises(CalibrationCacheError, match="line 2"):
        read_cache(p)


def test_cache_reuse_with_other_model_or_data_is_refused(int8_bundle):
    dst, _ = int8_bundle
    b = load_bundle(dst)
    assert load_calibration_cache(b).startswith(b"TRT-")
    with pytest.raises(CalibrationCacheError, match="model_sha256"):
        load_calibration_cache(b, expect_model_sha256="0" * 64)
    with pytest.raises(CalibrationCacheError, match="data_sha256"):
        load_calibration_cache(b, expect_data_sha256="1" * 64)


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_every_method_survives_tiny_range_tensors(method):
    """x*0 is constant: ORT's histogram calibrators abort the whole run on such tensors."""
    x = helper.make_tensor_value_info("img", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4])
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    tiny = helper.make_tensor("tiny", TensorProto.FLOAT, [], [1e-30])
    nodes = [helper.make_node("Mul", ["img", "zero"], ["flat"]),
             helper.make_node("Add", ["flat", "tiny"], ["flat2"]),
             helper.make_node("Add", ["flat2", "img"], ["out"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [zero, tiny]),
                              opset_imports=[helper.make_opsetid("", 16)], ir_version=8)
    rng = np.random.default_rng(0)
    res = compute_ranges(model, lambda: (rng.random((8, 4), dtype=np.float32) for _ in range(3)),
                         method, progress=False)
    assert set(res.fallbacks) >= {"flat"}
    assert res.amax["img"] > 0.5 and all(a > 0 for a in res.amax.values())


def test_failed_int8_gate_leaves_the_bundle_unchanged(seeded_bundle, seeded_reference, calib_dir, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(seeded_bundle, dst)
    before = json.loads((dst / "manifest.json").read_text())
    with pytest.raises(GateError, match="int8 gate failed"):
        calibrate_int8(dst, calib_dir, method="minmax", reference=seeded_reference,
                       progress=False, mean_cosine=0.9999, min_cosine=0.9999)
    assert json.loads((dst / "manifest.json").read_text()) == before
    assert not (dst / "model_int8.onnx").exists()
