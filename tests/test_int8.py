"""INT8 calibration mechanics on the seeded model: every range method, QDQ structure (what
TensorRT accepts), provenance in the manifest, the gate (cosine and labelled TPR), atomicity,
the tiny-range fallback, and the CLI. Accuracy itself is gated on the trained demo model
(tests/test_end_to_end.py, docs/precision.md): the seeded network is chaotic."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from docedge.calibration.calib_data import ImageSet, ImageSetReader
from docedge.calibration.int8 import (
    DEFAULT_FLOAT_FALLBACK,
    calibrate_int8,
    depthwise_convs,
    qdq_activation_scales,
    quantized_node_names,
)
from docedge.calibration.ranges import METHODS, compute_ranges
from docedge.export.check_images import write_check_images
from docedge.export.gates import GateError
from docedge.export.onnx_export import get_metadata
from docedge.runtime import Embedder, load_bundle


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("calib")
    write_check_images(d, count=8, seed=31)
    return d


@pytest.fixture(scope="module")
def int8_bundle(seeded_bundle, seeded_reference, calib_dir, tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("int8") / "bundle"
    shutil.copytree(seeded_bundle, dst)
    calibrate_int8(dst, calib_dir, method="minmax", reference=seeded_reference,
                   enforce_gate=False, progress=False, batch_size=4,
                   gate_sets=("check", "documents"))  # fmt: skip
    return dst


@pytest.fixture(scope="module")
def fp32_model(seeded_bundle) -> onnx.ModelProto:
    return onnx.load(str(seeded_bundle / "model_fp32.onnx"))


def _batches(calib_dir: Path):
    images = ImageSet.scan(calib_dir)
    return lambda: images.batches(4)


def test_image_set_hash_covers_names_and_contents(calib_dir, tmp_path):
    a = ImageSet.scan(calib_dir)
    assert len(a) == 8 and a.files_total == 8 and len(a.sha256) == 64
    assert ImageSet.scan(calib_dir).sha256 == a.sha256
    copy = tmp_path / "c"
    shutil.copytree(calib_dir, copy)
    assert ImageSet.scan(copy).sha256 == a.sha256  # relative names: the folder may move
    first = sorted(copy.iterdir())[0]
    first.rename(first.with_name("renamed" + first.suffix))
    assert ImageSet.scan(copy).sha256 != a.sha256
    sub = ImageSet.scan(calib_dir, max_images=5)
    assert len(sub) == 5 and sub.files_total == 8 and sub.sha256 != a.sha256
    assert ImageSet.scan(calib_dir, max_images=5).files == sub.files  # seeded subset


def test_reader_streams_batches_for_onnxruntime(calib_dir):
    reader = ImageSetReader(ImageSet.scan(calib_dir), batch_size=3)
    shapes = []
    while (item := reader.get_next()) is not None:
        shapes.append(item["img"].shape)
    assert shapes == [(3, 3, 128, 128), (3, 3, 128, 128), (2, 3, 128, 128)]
    reader.rewind()
    x = reader.get_next()["img"]
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0


@pytest.mark.slow
def test_every_method_gives_ranges_within_minmax(fp32_model, calib_dir):
    batches = _batches(calib_dir)
    res = {m: compute_ranges(fp32_model, batches, m, progress=False) for m in METHODS}
    mm = res["minmax"].amax
    assert mm["img"] <= 1.0 and mm["feats"] <= 1.0 + 1e-6
    for m in ("percentile", "entropy", "mse"):
        r = res[m]
        assert r.images == 8 and set(r.amax) == set(mm), m
        assert all(0 < r.amax[t] <= mm[t] * (1 + 1e-6) for t in mm), m
        assert any(r.amax[t] < 0.99 * mm[t] for t in mm), f"{m} clipped nothing"
    lo = compute_ranges(fp32_model, batches, "percentile", 99.0, progress=False).amax
    hi = res["percentile"].amax  # 99.99
    assert all(lo[t] <= hi[t] for t in hi)
    with pytest.raises(ValueError, match="unknown calibration method"):
        compute_ranges(fp32_model, batches, "kl", progress=False)


def _tiny_range_model() -> onnx.ModelProto:
    """img * 1e-6 + 5: every value within a few float32 steps of 5.0; and img * 0."""
    x = helper.make_tensor_value_info("img", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4])
    inits = [helper.make_tensor("eps", TensorProto.FLOAT, [], [1e-6]),
             helper.make_tensor("five", TensorProto.FLOAT, [], [5.0]),
             helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])]  # fmt: skip
    nodes = [helper.make_node("Mul", ["img", "eps"], ["small"]),
             helper.make_node("Add", ["small", "five"], ["near_const"]),
             helper.make_node("Mul", ["img", "zero"], ["zeros"]),
             helper.make_node("Add", ["zeros", "img"], ["img2"]),
             helper.make_node("Mul", ["near_const", "img2"], ["out"])]  # fmt: skip
    return helper.make_model(helper.make_graph(nodes, "tiny", [x], [y], inits),
                             opset_imports=[helper.make_opsetid("", 16)], ir_version=8)  # fmt: skip


def _random_batches():
    rng = np.random.default_rng(0)
    return (rng.random((8, 4), dtype=np.float32) for _ in range(3))


@pytest.mark.parametrize("method", METHODS)
def test_tiny_range_and_zero_tensors_fall_back_to_minmax(method):
    res = compute_ranges(_tiny_range_model(), _random_batches, method, progress=False)
    assert res.amax["near_const"] == pytest.approx(5.0, rel=1e-6)
    assert "zeros" in res.fallbacks and res.amax["zeros"] > 0
    if method != "minmax":
        assert "tiny value range" in res.fallbacks["near_const"]
    assert res.amax["img"] > 0.5


def test_fallback_tensors_are_recorded_in_the_manifest(tmp_path):
    """A bundle whose model has a near-constant tensor: calibration completes and lists it."""
    from docedge.export.manifest import FP32_FILE, base_manifest, onnx_metadata
    from docedge.export.onnx_export import save_onnx, set_metadata
    from docedge.runtime.bundle import artifact_record, upsert_artifact, write_manifest

    rng = np.random.default_rng(3)
    x = helper.make_tensor_value_info("img", TensorProto.FLOAT, ["N", 3, 128, 128])
    y = helper.make_tensor_value_info("feats", TensorProto.FLOAT, ["N", 256])
    w = rng.standard_normal((256, 3, 1, 1)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w"),
             helper.make_tensor("eps", TensorProto.FLOAT, [], [1e-6]),
             helper.make_tensor("five", TensorProto.FLOAT, [], [5.0]),
             helper.make_tensor("axes", TensorProto.INT64, [1], [1])]  # fmt: skip
    nodes = [helper.make_node("Mul", ["img", "eps"], ["small"]),
             helper.make_node("Add", ["small", "five"], ["near_const"]),
             helper.make_node("Conv", ["near_const", "w"], ["conv"]),
             helper.make_node("Conv", ["img", "w"], ["conv2"]),
             helper.make_node("Add", ["conv", "conv2"], ["sum"]),
             helper.make_node("GlobalAveragePool", ["sum"], ["pool"]),
             helper.make_node("Flatten", ["pool"], ["flat"]),
             helper.make_node("ReduceL2", ["flat"], ["norm"], keepdims=1),
             helper.make_node("Div", ["flat", "norm"], ["feats"])]  # fmt: skip
    model = helper.make_model(helper.make_graph(nodes, "toy", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 16)], ir_version=8)  # fmt: skip
    bundle = tmp_path / "b"
    bundle.mkdir()
    manifest = base_manifest({"name": "toy", "architecture": "toy", "embedding_dim": 256,
                              "source": {"kind": "test"}})  # fmt: skip
    set_metadata(model, onnx_metadata(manifest, "fp32"))
    save_onnx(model, bundle / FP32_FILE)
    upsert_artifact(manifest, artifact_record(bundle, FP32_FILE, "onnx", "fp32"))
    write_manifest(bundle, manifest)
    calib = tmp_path / "calib"
    write_check_images(calib, count=6, seed=5)
    res = calibrate_int8(bundle, calib, method="percentile", enforce_gate=False, progress=False,
                         batch_size=3, gate_sets=("check",))  # fmt: skip
    assert "near_const" in res["onnx"]["calibration"]["fallback_tensors"]
    assert "near_const" in res["cache"]["fallback_tensors"]
    rec = load_bundle(bundle).artifact("int8").record
    assert "tiny value range" in rec["calibration"]["fallback_tensors"]["near_const"]


def test_qdq_model_is_what_tensorrt_accepts(int8_bundle):
    """Symmetric INT8 (zero points 0), per-channel weights as float + Q/DQ, float biases, no
    INT32 DequantizeLinear, depthwise convs and the final normalization left float."""
    q = onnx.load(str(int8_bundle / "model_int8.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    nodes = list(q.graph.node)
    for n in nodes:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp = inits[n.input[2]]
            assert zp.dtype == np.int8 and not zp.any(), n.name
            assert n.input[0] not in inits or inits[n.input[0]].dtype == np.float32, n.name
    # weights: one scale per output channel
    weight_scales = [inits[n.input[1]] for n in nodes
                     if n.op_type == "QuantizeLinear" and n.input[0] in inits]  # fmt: skip
    assert weight_scales and any(s.size > 1 for s in weight_scales)
    # conv biases stay float initializers
    convs = [n for n in nodes if n.op_type == "Conv" and len(n.input) == 3]
    assert convs and all(inits[n.input[2]].dtype == np.float32 for n in convs if n.input[2] in inits)
    quantized = set(quantized_node_names(q))
    fp32 = onnx.load(str(int8_bundle / "model_fp32.onnx"))
    dw = depthwise_convs(fp32)
    assert dw and not quantized & set(dw)
    assert "/ReduceL2" not in quantized
    assert any("conv_pw" in n for n in quantized) and any("MatMul" in n for n in quantized)
    assert get_metadata(q)["precision"] == "int8"


def test_the_convolution_that_reads_the_image_stays_float(int8_bundle, fp32_model):
    """Symmetric int8 would give the image's 256 levels only 128: the stem is kept float, the
    image is never quantized, and the record says so."""
    from docedge.calibration.int8 import input_convs

    stem = input_convs(fp32_model)
    assert stem == ["/backbone/backbone/conv_stem/Conv"]
    q = onnx.load(str(int8_bundle / "model_int8.onnx"))
    assert not set(quantized_node_names(q)) & set(stem)
    assert "img" not in qdq_activation_scales(q)
    quant = load_bundle(int8_bundle).artifact("int8").record["quantization"]
    assert quant["input_conv_kept_float"] is True and stem[0] in quant["float_nodes"]


def test_int8_provenance_and_runtime(int8_bundle, calib_dir):
    b = load_bundle(int8_bundle)  # verifies every checksum
    rec = b.artifact("int8").record
    cal = rec["calibration"]
    assert cal["method"] == "minmax" and cal["images"] == 8
    assert cal["data_sha256"] == ImageSet.scan(calib_dir).sha256
    assert cal["fallback_tensors"] == {}
    quant = rec["quantization"]
    assert quant["weight_storage"] == "qdq-float" and quant["depthwise_kept_float"]
    assert quant["quantized_activations"] == len(
        qdq_activation_scales(onnx.load(str(int8_bundle / "model_int8.onnx"))))
    v = rec["verification"]
    assert v["against"] == "pytorch-reference" and set(v["sets"]) == {"check", "documents"}
    assert v["cos_min"] == min(s["cos_min"] for s in v["sets"].values())
    assert {"onnxruntime.quantization", "onnx", "torch"} <= set(rec["producers"])
    out = Embedder(b, precision="int8").run_tensor(np.zeros((2, 3, 128, 128), np.float32))
    assert out.shape == (2, 256) and out.dtype == np.float32


def test_gate_failure_leaves_the_bundle_unchanged(int8_bundle, seeded_reference, calib_dir,
                                                  tmp_path):  # fmt: skip
    """Even over an existing INT8 artifact: the old files and manifest stay as they were."""
    dst = tmp_path / "b"
    shutil.copytree(int8_bundle, dst)
    before = {p.name: p.read_bytes() for p in dst.iterdir() if p.is_file()}
    with pytest.raises(GateError, match="int8 gate failed"):
        calibrate_int8(dst, calib_dir, method="percentile", reference=seeded_reference,
                       progress=False, batch_size=4, mean_cosine=0.9999, min_cosine=0.9999,
                       gate_sets=("check",))  # fmt: skip
    after = {p.name: p.read_bytes() for p in dst.iterdir() if p.is_file()}
    assert after == before
    assert [p for p in dst.iterdir() if p.is_dir()] == []  # no temporary folder left
    load_bundle(dst)


def test_gate_thresholds_decide_pass_and_fail(int8_bundle, calib_dir, tmp_path):
    """Same calibration, gate thresholds just below and above what it achieved."""
    v = load_bundle(int8_bundle).artifact("int8").record["verification"]
    lo, mn = v["sets"]["check"]["cos_mean"], v["sets"]["check"]["cos_min"]
    dst = tmp_path / "b"
    shutil.copytree(int8_bundle, dst)
    res = calibrate_int8(dst, calib_dir, method="minmax", progress=False, batch_size=4,
                         gate_sets=("check",), mean_cosine=lo - 0.05, min_cosine=mn - 0.05)  # fmt: skip
    assert res["onnx"]["verification"]["passed"]
    res = calibrate_int8(dst, calib_dir, method="minmax", progress=False, batch_size=4,
                         gate_sets=("check",), mean_cosine=1.0, enforce_gate=False)  # fmt: skip
    assert not res["onnx"]["verification"]["passed"]
    assert not load_bundle(dst).artifact("int8").record["verification"]["passed"]


def test_labelled_tpr_gate(int8_bundle, calib_dir, tmp_path):
    from docedge.synth.dataset import write_documents

    labelled = tmp_path / "labelled"
    write_documents(labelled, types=8, per_type=3, first_type_id=900, capture_strength=0.5)
    dst = tmp_path / "b"
    shutil.copytree(int8_bundle, dst)
    res = calibrate_int8(dst, calib_dir, method="minmax", progress=False, batch_size=4,
                         gate_sets=("check",), labelled_images=labelled, enforce_gate=False,
                         max_tpr_drop=1.0, mean_cosine=-1.0, min_cosine=-1.0)  # fmt: skip
    t = res["onnx"]["verification"]["tpr"]
    assert t["images"] == 24 and t["classes"] == 8 and t["genuine_pairs"] == 24
    assert 0.0 <= t["tpr_int8"] <= 1.0 and t["tpr_drop"] == t["tpr_fp32"] - t["tpr_int8"]
    assert t["passed"] and res["onnx"]["verification"]["passed"]
    res = calibrate_int8(dst, calib_dir, method="minmax", progress=False, batch_size=4,
                         gate_sets=("check",), labelled_images=labelled, enforce_gate=False,
                         max_tpr_drop=-1.0, mean_cosine=-1.0, min_cosine=-1.0)  # fmt: skip
    assert not res["onnx"]["verification"]["passed"]


@pytest.mark.parametrize("method", ["percentile", pytest.param("entropy", marks=pytest.mark.slow),
                                    "mse"])
def test_calibrate_with_each_method(int8_bundle, calib_dir, tmp_path, method):
    dst = tmp_path / "b"
    shutil.copytree(int8_bundle, dst)
    # every candidate quantized (float_fallback=0): the file holds int8 weights only
    res = calibrate_int8(dst, calib_dir, method=method, percentile=99.9, progress=False,
                         batch_size=4, gate_sets=("check",), enforce_gate=False,
                         weight_storage="int8", float_fallback=0)  # fmt: skip
    cal = res["onnx"]["calibration"]
    assert cal["method"] == method and res["cache"]["method"] == method
    assert cal["percentile"] == (99.9 if method == "percentile" else None)
    assert res["onnx"]["size"] < 0.5 * load_bundle(dst).artifact("fp32").size  # INT8 weights
    assert load_bundle(dst).artifact("int8").record["quantization"]["weight_storage"] == "int8"


def test_cli_parser_and_summary(int8_bundle):
    from docedge.tools.cli import build_parser
    from docedge.tools.commands.calibrate_int8 import METHODS as CLI_METHODS
    from docedge.tools.commands.calibrate_int8 import run, summary_lines

    args = build_parser().parse_args(["calibrate", "int8", "B", "--images", "D", "--method",
                                      "entropy", "--keep-float", "n1", "--keep-float", "n2",
                                      "--labelled", "L", "--weight-storage", "int8"])  # fmt: skip
    assert args.func is run and args.method == "entropy" and args.keep_float == ["n1", "n2"]
    assert CLI_METHODS == METHODS
    assert str(args.labelled) == "L" and args.trt_version == "8502" and args.max_images == 1000
    b = load_bundle(int8_bundle)
    res = {"onnx": b.artifact("int8").record,
           "cache": b.artifact("int8", "trt-calibration-cache").record}  # fmt: skip
    text = "\n".join(summary_lines(res))
    assert "int8 calibration: minmax on 8 images" in text
    assert "check" in text and "documents" in text and "TRT-8502-EntropyCalibration2" in text


@pytest.mark.slow
def test_cli_calibrate_int8(int8_bundle, calib_dir, tmp_path, capsys):
    from docedge.tools.cli import main

    dst = tmp_path / "b"
    shutil.copytree(int8_bundle, dst)
    code = main(["calibrate", "int8", str(dst), "--images", str(calib_dir), "--method",
                 "percentile", "--percentile", "99.9", "--no-gate", "--batch-size", "4",
                 "--trt-version", "10.3.0", "--json"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"]
    assert out["cache"]["trt_version_line"] == "TRT-100300-EntropyCalibration2"
    assert out["onnx"]["calibration"]["percentile"] == 99.9
    code = main(["calibrate", "int8", str(dst), "--images", str(calib_dir), "--no-gate",
                 "--batch-size", "4", "--no-progress"])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0 and "int8 calibration: percentile 99.99 on 8 images" in text
    assert "int8_calibration.cache" in text
    # the gate failure is an error exit with a message, not a traceback
    code = main(["calibrate", "int8", str(dst), "--images", str(calib_dir), "--batch-size", "4",
                 "--no-progress"])  # fmt: skip
    assert code == 2 and "int8 gate failed" in capsys.readouterr().err


def test_the_most_sensitive_layers_are_kept_float_and_the_ranking_is_recorded(int8_bundle):
    rec = load_bundle(int8_bundle).artifact("int8").record["quantization"]
    fb = rec["float_fallback"]
    assert fb["count"] == len(fb["nodes"]) == DEFAULT_FLOAT_FALLBACK
    means = [r["cos_mean"] for r in fb["ranking"]]
    assert means == sorted(means, reverse=True)  # best fallback first
    assert fb["nodes"] == [r["node"] for r in fb["ranking"][:DEFAULT_FLOAT_FALLBACK]]
    quantized = set(quantized_node_names(onnx.load(str(int8_bundle / "model_int8.onnx"))))
    assert not quantized & set(fb["nodes"]) and set(fb["nodes"]) <= set(rec["float_nodes"])


def test_the_cli_states_the_library_default_float_fallback(capsys):
    from docedge.tools.cli import main

    with pytest.raises(SystemExit):
        main(["calibrate", "int8", "--help"])
    assert f"(default {DEFAULT_FLOAT_FALLBACK}; 0:" in " ".join(capsys.readouterr().out.split())


def test_float_fallback_zero_quantizes_every_candidate(int8_bundle, seeded_reference, calib_dir,
                                                       tmp_path):  # fmt: skip
    dst = tmp_path / "b"
    shutil.copytree(int8_bundle, dst)
    calibrate_int8(dst, calib_dir, method="minmax", reference=seeded_reference, progress=False,
                   batch_size=4, float_fallback=0, enforce_gate=False)  # fmt: skip
    rec = load_bundle(dst).artifact("int8").record["quantization"]
    assert rec["float_fallback"] == {"count": 0}
    assert not [n for n in rec["float_nodes"] if "conv_pw" in n]
