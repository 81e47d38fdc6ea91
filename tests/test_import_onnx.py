"""``import-onnx`` wraps released-format files and refuses other interfaces."""

from __future__ import annotations

import onnx
import pytest

from docedge.export.import_onnx import import_onnx
from docedge.runtime import BundleError, Embedder

RELEASED = "lcnet050_cosface_f256_r128_squeeze_lbn_imagenet_finetune_20240326_fp32.onnx"


@pytest.fixture()
def released_like(seeded_bundle, tmp_path):
    """A file shaped like the released one: auto-named output batch axis, no docedge metadata."""
    m = onnx.load(str(seeded_bundle / "model_fp32.onnx"))
    m.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "unk__1234"
    del m.metadata_props[:]
    path = tmp_path / RELEASED
    onnx.save(m, str(path))
    return path


def test_a_released_looking_name_gets_no_table_by_itself(released_like, tmp_path):
    """A file name proves nothing: a renamed demo model must not get DocClassifier's table."""
    b = import_onnx(released_like, tmp_path / "bundle")
    assert b.model["source"]["kind"] == "onnx" and b.thresholds("fp32") is None
    out = onnx.load(str(b.artifact_path("fp32"))).graph.output[0]
    assert out.type.tensor_type.shape.dim[0].dim_param == "N"
    assert Embedder(b).run_tensor(__import__("numpy").zeros((3, 3, 128, 128), "float32")).shape == (
        3,
        256,
    )


def test_the_published_table_is_attached_on_request_with_its_provenance(released_like, tmp_path):
    b = import_onnx(released_like, tmp_path / "bundle", model_cfg="20240326",
                    table="published-20240326")  # fmt: skip
    table = b.thresholds("fp32")
    fpr_1e2 = next(r for r in table["rows"] if r["fpr"] == pytest.approx(1e-2))
    assert fpr_1e2["threshold"] == pytest.approx(0.626)
    assert table["source"]["proven_released_file"] is False
    assert "user request" in table["source"]["attached_by"]
    assert b.model["model_cfg"] == "20240326"


def test_file_with_another_interface_is_refused_saying_what_differs(seeded_bundle, tmp_path):
    m = onnx.load(str(seeded_bundle / "model_fp32.onnx"))
    old = m.graph.input[0].name
    m.graph.input[0].name = "input"
    for node in m.graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = "input"
    m.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 512
    path = tmp_path / "other.onnx"
    onnx.save(m, str(path))
    with pytest.raises(BundleError) as e:
        import_onnx(path, tmp_path / "bundle")
    msg = str(e.value)
    assert "input is named 'input', expected 'img'" in msg
    assert "output shape is ['N', 512], expected [N, 256]" in msg


def test_non_onnx_file_is_refused(tmp_path):
    p = tmp_path / "x.onnx"
    p.write_bytes(b"\x01\x02garbage")
    with pytest.raises(BundleError, match=r"x\.onnx"):
        import_onnx(p, tmp_path / "bundle")
