"""``docedge export-triton``: every config parses with tritonclient's ModelConfig and says
what a Triton server needs (backend, batching, I/O names and shapes, instance groups)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed (docedge[triton])")

from docedge.export.triton import export_triton, validate_config
from docedge.runtime.errors import BundleError


@pytest.fixture()
def repo(demo_release, tmp_path):
    return tmp_path / "repo", export_triton(demo_release, tmp_path / "repo")


def test_one_onnx_model_per_precision_plus_preprocess_and_ensemble(repo):
    root, res = repo
    kinds = {n: m["kind"] for n, m in res["models"].items()}
    assert sorted(kinds.values()) == ["ensemble", "onnxruntime", "onnxruntime", "onnxruntime", "python"]
    for name in kinds:
        cfg = validate_config((root / name / "config.pbtxt").read_text())
        assert cfg.name == name
    onnx_fp16 = next(n for n, k in kinds.items() if k == "onnxruntime" and n.endswith("fp16"))
    assert (root / onnx_fp16 / "1" / "model.onnx").is_file()


def test_onnx_model_config_matches_the_bundle_interface(repo):
    root, res = repo
    name = next(n for n in res["models"] if n.endswith("_onnx_int8"))
    cfg = validate_config((root / name / "config.pbtxt").read_text())
    assert cfg.backend == "onnxruntime" and cfg.max_batch_size == 64
    assert cfg.input[0].name == "img" and list(cfg.input[0].dims) == [3, 128, 128]
    assert cfg.output[0].name == "feats" and list(cfg.output[0].dims) == [256]
    assert list(cfg.dynamic_batching.preferred_batch_size) == [16, 32, 64]
    assert {g.kind for g in cfg.instance_group} == {1, 2}  # KIND_GPU, KIND_CPU
    acc = cfg.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert acc.name == "tensorrt" and acc.parameters["precision_mode"] == "INT8"


def test_the_ensemble_takes_image_bytes_and_returns_the_embedding(repo):
    root, res = repo
    name = next(n for n, m in res["models"].items() if m["kind"] == "ensemble")
    cfg = validate_config((root / name / "config.pbtxt").read_text())
    assert cfg.platform == "ensemble" and cfg.input[0].data_type == 13  # TYPE_STRING
    steps = [s.model_name for s in cfg.ensemble_scheduling.step]
    assert steps[0].endswith("_preprocess") and steps[1].endswith("_onnx_fp32")
    pre = validate_config((root / steps[0] / "config.pbtxt").read_text())
    spec = json.loads(pre.parameters["preprocess"].string_value)
    assert spec["color_order"] == "BGR" and spec["height"] == 128
    assert "docedge.runtime.preprocess" in (root / steps[0] / "1" / "model.py").read_text()


def test_a_tensorrt_engine_becomes_a_tensorrt_model_sized_from_its_profile(demo_release, tmp_path):
    engine = tmp_path / "e.plan"
    engine.write_bytes(b"not a real engine: Triton is not run here")
    (tmp_path / "e.plan.json").write_text(json.dumps({"key": {"profile": {"min": 1, "opt": 8,
                                                                           "max": 16}}}))
    res = export_triton(demo_release, tmp_path / "repo", ["fp32"], {"fp16": engine})
    name = next(n for n, m in res["models"].items() if m["kind"] == "tensorrt")
    cfg = validate_config((tmp_path / "repo" / name / "config.pbtxt").read_text())
    assert cfg.platform == "tensorrt_plan" and cfg.max_batch_size == 16


def test_bad_requests_are_typed_errors(demo_release, tmp_path):
    with pytest.raises(BundleError, match="not found"):
        export_triton(demo_release, tmp_path / "r1", engines={"fp16": tmp_path / "missing.plan"})
    with pytest.raises(BundleError, match="not a valid Triton ModelConfig"):
        validate_config("name: \"x\"\nmax_batch_size: lots\n")
    (tmp_path / "r2").mkdir()
    (tmp_path / "r2" / "keep.txt").write_text("user data")
    with pytest.raises(BundleError, match="not empty"):
        export_triton(demo_release, tmp_path / "r2")
    assert (tmp_path / "r2" / "keep.txt").read_text() == "user data"
