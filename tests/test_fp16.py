"""FP16 artifact: converter settings, float32 I/O, kept-float32 nodes listed, gate pass/fail,
atomic failure, runtime use."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from docedge.export.fp16 import DEFAULT_KEEP_FP32_OPS, add_fp16_artifact, convert_fp16
from docedge.export.gates import GateError
from docedge.export.onnx_export import get_metadata
from docedge.runtime import Embedder, load_bundle


@pytest.fixture(scope="module")
def fp16_bundle(seeded_bundle, seeded_reference, tmp_path_factory):
    dst = tmp_path_factory.mktemp("fp16") / "bundle"
    shutil.copytree(seeded_bundle, dst)
    add_fp16_artifact(dst, seeded_reference)
    return dst


def test_fp16_artifact_passes_its_gate_with_float32_io(fp16_bundle):
    b = load_bundle(fp16_bundle)
    rec = b.artifact("fp16").record
    v = rec["verification"]
    assert v["against"] == "pytorch-reference" and v["passed"]
    assert v["cos_min"] >= 0.999 and v["cos_mean"] >= 0.9995
    assert v["gate"] == {"cos_min": 0.999, "cos_mean": 0.9995}
    m = onnx.load(str(fp16_bundle / "model_fp16.onnx"))
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert any(i.data_type == TensorProto.FLOAT16 for i in m.graph.initializer)
    assert get_metadata(m)["precision"] == "fp16"
    assert b.artifact("fp16").size < 0.6 * b.artifact("fp32").size
    assert "onnxconverter-common" in rec["producers"]
    assert rec["converter"]["keep_io_types"] is True


def test_kept_float32_nodes_are_listed_and_really_float32(fp16_bundle):
    rec = load_bundle(fp16_bundle).artifact("fp16").record
    kept = rec["kept_fp32_nodes"]
    assert rec["converter"]["op_block_list"] == list(DEFAULT_KEEP_FP32_OPS)
    assert "/ReduceL2" in kept
    assert any("embed_feats.1/Pow" in k for k in kept) and any("Sqrt" in k for k in kept)
    m = onnx.shape_inference.infer_shapes(onnx.load(str(fp16_bundle / "model_fp16.onnx")))
    types = {v.name: v.type.tensor_type.elem_type for v in [*m.graph.value_info, *m.graph.input,
                                                             *m.graph.output]}  # fmt: skip
    types.update({i.name: i.data_type for i in m.graph.initializer})
    by_name = {n.name: n for n in m.graph.node}
    for name in kept:  # every kept node computes in float32
        node = by_name[name]
        assert types[node.input[0]] == TensorProto.FLOAT, name
        assert types.get(node.output[0], TensorProto.FLOAT) == TensorProto.FLOAT, name


def test_block_list_is_configurable():
    x = onnx.helper.make_tensor_value_info("img", TensorProto.FLOAT, ["N", 4])
    y = onnx.helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 1])
    nodes = [onnx.helper.make_node("Relu", ["img"], ["r"]),
             onnx.helper.make_node("ReduceL2", ["r"], ["out"], keepdims=1)]  # fmt: skip
    g = onnx.helper.make_graph(nodes, "g", [x], [y])
    model = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 16)], ir_version=8)
    kept = convert_fp16(model, ("ReduceL2",))
    none = convert_fp16(model, ())
    assert sum(n.op_type == "Cast" for n in kept.graph.node) > sum(
        n.op_type == "Cast" for n in none.graph.node)


def test_runtime_runs_fp16_through_the_same_api(fp16_bundle):
    b = load_bundle(fp16_bundle)
    x = np.random.default_rng(0).random((3, 3, 128, 128), dtype=np.float32)
    e16 = Embedder(b, precision="fp16").run_tensor(x)
    e32 = Embedder(b, precision="fp32").run_tensor(x)
    assert e16.dtype == np.float32 and e16.shape == (3, 256)
    assert np.min(np.sum(e16 * e32, axis=1)) > 0.999


def test_failed_fp16_gate_leaves_the_bundle_unchanged(fp16_bundle, seeded_reference, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(fp16_bundle, dst)
    before = {p.name: p.read_bytes() for p in dst.iterdir() if p.is_file()}
    with pytest.raises(GateError, match="fp16 gate failed"):
        add_fp16_artifact(dst, seeded_reference, min_cosine=1.0001)
    assert {p.name: p.read_bytes() for p in dst.iterdir() if p.is_file()} == before
    assert [p for p in dst.iterdir() if p.is_dir()] == []
    load_bundle(dst)


def test_fp16_without_reference_compares_with_fp32_onnx(seeded_bundle, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(seeded_bundle, dst)
    rec = add_fp16_artifact(dst)
    assert rec["verification"]["against"].startswith("fp32-onnx")
    assert rec["verification"]["passed"]
