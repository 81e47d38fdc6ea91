"""ONNX export is verified against PyTorch and keeps the documented interface."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from docedge.export.bundle_writer import export_bundle
from docedge.export.check_images import check_batch
from docedge.export.gates import GateError, torch_embed
from docedge.export.model import build_model
from docedge.export.onnx_export import get_metadata
from docedge.export.reference import ReferenceModel
from docedge.export.verify import agreement
from docedge.runtime import Embedder, load_bundle


def test_fp32_export_passes_its_gate_and_records_it(seeded_bundle):
    rec = load_bundle(seeded_bundle).artifact("fp32").record
    v = rec["verification"]
    assert v["passed"] is True
    assert v["n"] >= 32
    assert v["cos_min"] >= 0.99999 and v["max_abs_diff"] <= 1e-5
    assert v["reference_mean_pairwise_cosine"] < 0.5  # parity on a collapsed model means nothing
    assert rec["opset"] < 21
    assert {"torch", "onnx", "onnxruntime", "docedge"} <= set(rec["producers"])


def test_onnx_interface_has_dynamic_batch_on_input_and_output(seeded_bundle):
    m = onnx.load(str(seeded_bundle / "model_fp32.onnx"))
    inp, out = m.graph.input[0], m.graph.output[0]
    assert inp.name == "img" and out.name == "feats"
    dims = lambda vi: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]  # noqa: E731
    assert dims(inp) == ["N", 3, 128, 128]
    assert dims(out) == ["N", 256]


@pytest.mark.parametrize("batch", [1, 3, 17])
def test_dynamic_batch_sizes_match_pytorch(seeded_bundle, seeded_reference, batch):
    x = check_batch(batch, seed=4242)
    emb = Embedder(seeded_bundle, batch_size=64)
    out = emb.run_tensor(x)
    ref = torch_embed(seeded_reference.net, x)
    a = agreement(ref, out)
    assert out.shape == (batch, 256) and out.dtype == np.float32
    assert a.cos_min >= 0.99999 and a.max_abs_diff <= 1e-5


def test_onnx_file_is_self_describing(seeded_bundle):
    meta = get_metadata(onnx.load(str(seeded_bundle / "model_fp32.onnx")))
    assert meta["precision"] == "fp32"
    pre = meta["preprocess"]
    assert pre["color_order"] == "BGR" and pre["interpolation"] == "INTER_LINEAR"
    assert meta["io"]["output"]["name"] == "feats"
    assert meta["source_sha256"] == load_bundle(seeded_bundle).model["source"]["sha256"]


def test_collapsed_model_is_refused(tmp_path):
    """Default BatchNorm statistics make every embedding nearly identical: refuse to 'verify'."""
    torch.manual_seed(0)
    ref = ReferenceModel(
        build_model(), {"kind": "random-init", "seed": 0, "sha256": "x"}, "collapsed"
    )
    # A constant offset dominating the output: every image gets (nearly) the same direction.
    with torch.no_grad():
        ref.net.head.embed_feats[5].bias.fill_(50.0)
    with pytest.raises(GateError, match="nearly the same embedding"):
        export_bundle(tmp_path / "b", reference=ref)


def test_existing_directory_is_not_overwritten_silently(seeded_bundle, tmp_path):
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(Exception, match="not empty"):
        export_bundle(tmp_path, random_init_seed=0)
    assert (tmp_path / "keep.txt").read_text() == "user data"
