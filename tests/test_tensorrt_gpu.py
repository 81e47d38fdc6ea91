"""Real-GPU tests (``pytest -m gpu``): engine builds per precision, parity of each engine
against the PyTorch reference with the ONNX gates, and the bench command. They skip, with the
reason, where TensorRT, pycuda or a GPU is missing; run them as-is on Jetson or a CUDA machine."""

from __future__ import annotations

import importlib.util
import shutil

import pytest

pytestmark = pytest.mark.gpu


def _gpu_ready() -> str:
    try:
        import tensorrt
    except ImportError:
        return "tensorrt is not installed"
    if not hasattr(tensorrt, "Builder"):
        return "tensorrt is not installed (type stubs only)"
    if importlib.util.find_spec("pycuda") is None:
        return "pycuda is not installed"
    if shutil.which("nvidia-smi") is None and not __import__("os").path.exists("/etc/nv_tegra_release"):
        return "no NVIDIA GPU found"
    return ""


REASON = _gpu_ready()
requires_gpu = pytest.mark.skipif(bool(REASON), reason=REASON or "gpu present")

GATES = {"fp32": ("cos_min", 0.99999), "fp16": ("cos_min", 0.999), "int8": ("cos_mean", 0.99)}


@pytest.fixture(scope="module")
def gpu_bundle(tmp_path_factory):
    from docedge.calibration.int8 import calibrate_int8
    from docedge.calibration.synth.dataset import write_documents
    from docedge.export.bundle_writer import export_bundle
    from docedge.export.fp16 import add_fp16_artifact
    from docedge.export.reference import load_reference

    root = tmp_path_factory.mktemp("gpu")
    ref = load_reference()
    export_bundle(root / "b", reference=ref)
    add_fp16_artifact(root / "b", ref)
    write_documents(root / "calib", types=64, per_type=4, first_type_id=600, capture_strength=0.6)
    calibrate_int8(root / "b", root / "calib", reference=ref, progress=False)
    return root / "b", ref


@requires_gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("implicit", [False, True])
def test_engine_builds_and_matches_the_reference(gpu_bundle, precision, implicit, tmp_path):
    from docedge.export.bundle_writer import torch_embed
    from docedge.export.check_images import check_batch
    from docedge.export.engine import build_engine
    from docedge.export.verify import agreement
    from docedge.runtime import load_bundle
    from docedge.runtime.backends.tensorrt_backend import TensorRTBackend

    bundle_dir, ref = gpu_bundle
    try:
        path, built = build_engine(load_bundle(bundle_dir), precision, implicit=implicit,
                                   cache_dir=tmp_path)
    except Exception as e:  # implicit builds are impossible on TensorRT 11
        if implicit and "no FP16/INT8 builder flags" in str(e):
            pytest.skip(str(e))
        raise
    assert built and path.is_file()
    x = check_batch(70)  # > max batch 64: exercises splitting
    out = TensorRTBackend(path, precision).run(x)
    a = agreement(torch_embed(ref.net, x), out)
    key, limit = GATES[precision]
    assert getattr(a, key) >= limit, a


@requires_gpu
def test_bench_runs_tensorrt(gpu_bundle, capsys):
    import json

    from docedge.tools.cli import main

    bundle_dir, _ = gpu_bundle
    main(["build-engine", str(bundle_dir), "--precision", "fp16"])
    capsys.readouterr()
    assert main(["bench", str(bundle_dir), "--backend", "tensorrt", "--precision", "fp16",
                 "--gallery-sizes", "", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cases"]
