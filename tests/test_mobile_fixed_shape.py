"""Fixed-shape ONNX variants (batch 1, NHWC input, no final normalization) and .ort files:
ONNX Runtime's own tools, no extra needed."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from docedge.export.check_images import check_batch
from docedge.export.formats import fixed_shape as fs
from docedge.export.formats import ort_mobile as om
from docedge.export.formats._common import ConversionError
from docedge.export.verify import agreement


def _run(path, x, opts=None):
    from docedge.export.formats.convert import ort_runner

    return ort_runner(path, opts)[0](x)


@pytest.fixture(scope="module")
def x():
    return check_batch(6, seed=99)


@pytest.fixture(scope="module")
def fp32_out(seeded_bundle, x):
    return _run(seeded_bundle / "model_fp32.onnx", x)


@pytest.mark.parametrize("kw,layout,normalized", [({}, "NCHW", True), ({"nhwc": True}, "NHWC", True),
                                                  ({"normalize": False}, "NCHW", False),
                                                  ({"normalize": False, "decompose_hard_activations": True},
                                                   "NCHW", False)])  # fmt: skip
def test_fixed_shape_variants_match_the_dynamic_model(
    seeded_bundle, tmp_path, x, fp32_out, kw, layout, normalized
):
    out = tmp_path / "v.onnx"
    rec = fs.convert_fixed_shape(seeded_bundle / "model_fp32.onnx", out, **kw)
    assert rec["input"]["layout"] == layout and rec["input"]["batch"] == "fixed"
    assert rec["normalized_output"] is normalized
    m = onnx.load(str(out))
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ([1, 128, 128, 3] if layout == "NHWC" else [1, 3, 128, 128])
    assert [d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim] == [1, 256]
    assert m.graph.input[0].name == "img" and m.graph.output[0].name == "feats"
    got = _run(out, x)
    norms = np.linalg.norm(got, axis=1)
    if normalized:
        assert np.allclose(norms, 1.0, atol=1e-5)
    else:
        assert not np.allclose(norms, 1.0, atol=1e-2)  # really un-normalized
        assert not {"ReduceL2", "Expand"} & {n.op_type for n in m.graph.node}
    if kw.get("decompose_hard_activations"):
        assert not {"HardSwish", "HardSigmoid"} & {n.op_type for n in m.graph.node}
    assert agreement(fp32_out, got).cos_min > 0.99999


def test_strip_normalization_refuses_a_graph_without_it(tmp_path):
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["img"], ["feats"])],
        "g",
        [helper.make_tensor_value_info("img", TensorProto.FLOAT, ["N", 3, 4, 4])],
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, ["N", 3, 4, 4])],
    )
    with pytest.raises(ConversionError, match="not by an L2 normalization"):
        fs.strip_normalization(helper.make_model(g), "relu.onnx")


def test_fixed_shape_names_an_unreadable_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(ConversionError, match=r"bad\.onnx"):
        fs.convert_fixed_shape(bad, tmp_path / "o.onnx")


@pytest.mark.parametrize("style,level", [("fixed", "extended"), ("runtime", "basic")])
def test_ort_file_equals_its_onnx(seeded_bundle, tmp_path, x, fp32_out, style, level):
    out = tmp_path / "m.ort"
    rec = om.convert_ort(seeded_bundle / "model_fp32.onnx", out, style, level)
    assert out.read_bytes()[4:8] == b"ORTM"  # flatbuffer file identifier of ORT format models
    assert rec["optimization"] == {"style": style, "level": level, "target_platform": "arm"}
    assert ("NNAPI" in rec["valid_for"]) is (style == "runtime")
    got = _run(out, x, rec["session_options"])
    assert agreement(fp32_out, got).max_abs_diff < 1e-5


def test_operator_config_and_usability_report(seeded_bundle, tmp_path):
    a = tmp_path / "a.ort"
    om.convert_ort(seeded_bundle / "model_fp32.onnx", a, "fixed", "extended")
    cfg = tmp_path / om.CONFIG_NAME
    om.write_operator_config([a], cfg)
    text = cfg.read_text()
    assert "# - a.ort" in text and str(tmp_path) not in text  # reproducible comment lines
    assert any(line.startswith("ai.onnx;") and "Conv" in line for line in text.splitlines())

    dyn = om.usability_report(seeded_bundle / "model_fp32.onnx")
    b1 = tmp_path / "b1.onnx"
    fs.convert_fixed_shape(seeded_bundle / "model_fp32.onnx", b1)
    fixed = om.usability_report(b1)
    assert "NNAPI" in dyn["text"]
    # a dynamic batch axis blocks NNAPI entirely; fixing it to 1 lets NNAPI take most nodes
    assert dyn["eps"]["NNAPI"]["supported_nodes"] < fixed["eps"]["NNAPI"]["supported_nodes"]
    assert fixed["eps"]["NNAPI"]["supported_nodes"] > fixed["eps"]["NNAPI"]["nodes"] // 2
    assert "ai.onnx:HardSigmoid" in fixed["eps"]["NNAPI"]["unsupported_ops"]


def test_ort_conversion_error_names_the_file(tmp_path):
    with pytest.raises(ConversionError, match=r"missing\.onnx"):
        om.convert_ort(tmp_path / "missing.onnx", tmp_path / "m.ort")
