"""The OpenVINO backend (x86 edge boxes): same interface as the others, f32 pinned so it
matches the reference, errors typed; skipped with the extra to install when absent."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'docedge[openvino]')")

from docedge.export.check_images import check_batch
from docedge.export.verify import agreement
from docedge.runtime import BundleError, Embedder


def test_openvino_f32_matches_onnx_runtime(bundle_copy):
    x = check_batch(8)
    ort = Embedder(bundle_copy).run_tensor(x)
    ov = Embedder(bundle_copy, backend="openvino")
    assert ov.describe()["INFERENCE_PRECISION_HINT"] == "f32"
    a = agreement(ort, ov.run_tensor(x))
    assert a.cos_min > 0.99999 and a.max_abs_diff < 1e-4


def test_openvino_embeds_files_like_every_backend(bundle_copy, check_image_files):
    res = Embedder(bundle_copy, backend="openvino", threads=1).embed_many(
        [str(p) for p in check_image_files[:3]] + [b"junk"])
    assert res.ok.tolist() == [True, True, True, False]
    assert np.allclose(np.linalg.norm(res.embeddings[:3], axis=1), 1.0, atol=1e-4)


def test_bad_options_and_files_are_typed_errors(bundle_copy):
    from docedge.runtime.backends.openvino_backend import OpenVINOBackend

    with pytest.raises(ValueError, match="inference_precision"):
        OpenVINOBackend(bundle_copy / "model_fp32.onnx", inference_precision="int4")
    (bundle_copy / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(BundleError, match="OpenVINO cannot load"):
        OpenVINOBackend(bundle_copy / "bad.onnx")
