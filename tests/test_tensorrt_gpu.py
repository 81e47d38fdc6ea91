"""Real-GPU tests (``pytest -m gpu``): engine builds for each precision and build mode, parity
of each engine against the PyTorch reference with the ONNX gates, threads, cache reuse, and
throughput through ``docedge bench --backend tensorrt``.

They skip, saying why, where TensorRT, pycuda or a CUDA GPU is missing, and run as-is on a
Jetson (JetPack 5/6/7) or an x86 CUDA machine. NONE OF THEM HAS BEEN RUN ON HARDWARE BY THIS
PROJECT YET (see docs/jetson.md).

The bundle: ``$DOCEDGE_GPU_TEST_BUNDLE`` (a bundle with fp32/fp16/int8 ONNX and the TensorRT
calibration cache, e.g. made on a workstation with ``docedge demo`` or ``docedge export`` +
``docedge calibrate int8``), else one exported here from the demo weights (needs the
``[export,calibration]`` extras). The reference: the PyTorch model when torch is installed,
else the bundle's fp32 ONNX through ONNX Runtime (itself gated at export against PyTorch at
cosine >= 0.99999), else the parity tests skip.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

#: Same gates as the ONNX artifacts (export/ and calibration/).
GATES = {"fp32": ("cos_min", 0.99999), "fp16": ("cos_min", 0.999), "int8": ("cos_mean", 0.99)}


def _why_not() -> str:
    try:
        import tensorrt
    except Exception as e:
        return f"tensorrt is not importable ({type(e).__name__}: {e})"
    if not hasattr(tensorrt, "Builder"):
        return "tensorrt has no library here (type stubs only)"
    if importlib.util.find_spec("pycuda") is None:
        return "pycuda is not installed"
    try:
        import pycuda.driver as cuda

        cuda.init()
        if cuda.Device.count() < 1:
            return "CUDA sees no GPU"
    except Exception as e:
        return f"CUDA is not usable ({type(e).__name__}: {e})"
    return ""


REASON = _why_not()
requires_gpu = pytest.mark.skipif(bool(REASON), reason=REASON or "GPU present")


def _trt():
    import tensorrt

    return tensorrt


@pytest.fixture(scope="module")
def gpu_bundle(tmp_path_factory):
    """A bundle with fp32, fp16 and int8 (QDQ + TensorRT calibration cache) artifacts."""
    from docedge.runtime import load_bundle

    given = os.environ.get("DOCEDGE_GPU_TEST_BUNDLE")
    if given:
        return load_bundle(given)
    try:
        from docedge.calibration.pipeline import make_bundle
        from docedge.export.reference import load_reference
    except ImportError as e:
        pytest.skip(f"no DOCEDGE_GPU_TEST_BUNDLE and cannot export one here ({e}); export a "
                    "bundle on a workstation and set DOCEDGE_GPU_TEST_BUNDLE=/path/to/bundle")
    root = tmp_path_factory.mktemp("gpu")
    return make_bundle(root / "b", load_reference(), ("fp32", "fp16", "int8"), progress=False).bundle


@pytest.fixture(scope="module")
def inputs():
    from docedge.export.check_images import check_batch

    return check_batch(70)  # > the default max batch 64: exercises splitting


@pytest.fixture(scope="module")
def reference(gpu_bundle, inputs):
    """``(embeddings, what they come from)`` for ``inputs``."""
    try:
        from docedge.export.gates import torch_embed
        from docedge.export.reference import reference_for_bundle

        ref = reference_for_bundle(gpu_bundle.model, strict=False)
    except ImportError:
        ref = None
    if ref is not None:
        return torch_embed(ref.net, inputs), "pytorch-reference"
    try:
        from docedge.runtime.backends import create_backend

        cpu = create_backend(gpu_bundle, "fp32", "onnxruntime")
    except Exception as e:
        pytest.skip(f"no reference: torch and onnxruntime unavailable ({e})")
    return cpu.run(inputs), "fp32-onnx via ONNX Runtime (no torch here)"


def _agreement(ref: np.ndarray, out: np.ndarray) -> dict:
    a = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    b = out / np.linalg.norm(out, axis=1, keepdims=True)
    cos = np.sum(a * b, axis=1)
    return {"cos_min": float(cos.min()), "cos_mean": float(cos.mean()),
            "max_abs_diff": float(np.abs(ref - out).max())}


@requires_gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("implicit", [False, True], ids=["onnx-precision", "implicit"])
def test_engine_builds_and_passes_the_parity_gate(gpu_bundle, inputs, reference, precision,
                                                  implicit, tmp_path):
    from docedge.runtime.backends.tensorrt import compat
    from docedge.runtime.backends.tensorrt.builder import build_engine
    from docedge.runtime.backends.tensorrt.engine_cache import read_sidecar, sidecar_path
    from docedge.runtime.backends.tensorrt.runner import TensorRTBackend

    if implicit and not compat.has_precision_flags(_trt()):
        pytest.skip("TensorRT 11+: no FP16/INT8 builder flags, implicit builds are impossible")
    path, built = build_engine(gpu_bundle, precision, implicit=implicit, cache_dir=tmp_path)
    assert built and path.is_file()
    side = read_sidecar(sidecar_path(path))
    with TensorRTBackend(path, precision) as be:
        out = be.run(inputs)
        desc = be.describe()
    ref, against = reference
    assert out.shape == (len(inputs), 256) and out.dtype == np.float32
    agree = _agreement(ref, out)
    metric, limit = GATES[precision]
    print(json.dumps({"precision": precision, "mode": side["mode"], "against": against,
                      "trt": side["trt_version"], "gpu": side["gpu_name"], **agree}))
    assert agree[metric] >= limit, (precision, side["mode"], against, agree, desc)


@requires_gpu
def test_small_batches_run_at_their_real_size(gpu_bundle, inputs, tmp_path):
    from docedge.runtime.backends.tensorrt.builder import build_engine
    from docedge.runtime.backends.tensorrt.engine_cache import Profile
    from docedge.runtime.backends.tensorrt.runner import TensorRTBackend

    path, _ = build_engine(gpu_bundle, "fp32", Profile(2, 8, 16), cache_dir=tmp_path)
    with TensorRTBackend(path, "fp32") as be:
        whole = be.run(inputs[:40])  # 16 + 16 + 8
        for n in (1, 3, 16):  # 1 is padded to the profile's min 2
            np.testing.assert_allclose(be.run(inputs[:n]), whole[:n], atol=1e-5)


@requires_gpu
def test_one_backend_from_many_threads(gpu_bundle, inputs, tmp_path):
    from docedge.runtime.backends.tensorrt.runner import TensorRTBackend

    be = TensorRTBackend.from_bundle(gpu_bundle, "fp16", cache_dir=tmp_path, build_if_missing=True)
    expected = be.run(inputs)
    errors, diffs = [], []

    def work(i: int) -> None:
        try:
            for k in range(10):
                lo = (i * 7 + k) % 50
                diffs.append(float(np.abs(be.run(inputs[lo:lo + 20]) - expected[lo:lo + 20]).max()))
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    be.close()
    assert not errors and max(diffs) < 1e-3


@requires_gpu
def test_cache_is_reused_and_checked(gpu_bundle, tmp_path):
    from docedge.runtime.backends.tensorrt.builder import build_engine
    from docedge.runtime.backends.tensorrt.engine_cache import EngineCacheMismatch
    from docedge.runtime.backends.tensorrt.runner import TensorRTBackend

    path, built = build_engine(gpu_bundle, "fp16", cache_dir=tmp_path)
    assert built and build_engine(gpu_bundle, "fp16", cache_dir=tmp_path) == (path, False)
    with TensorRTBackend.from_bundle(gpu_bundle, "fp16", cache_dir=tmp_path) as be:
        assert be.describe()["engine"] == str(path)
    path.write_bytes(path.read_bytes()[:-16])  # a truncated engine never reaches TensorRT
    with pytest.raises(EngineCacheMismatch):
        TensorRTBackend(path)


@requires_gpu
def test_version_compatible_engine_loads(gpu_bundle, inputs, tmp_path):
    from docedge.runtime.backends.tensorrt import compat
    from docedge.runtime.backends.tensorrt.builder import build_engine
    from docedge.runtime.backends.tensorrt.runner import TensorRTBackend

    if not compat.detect_features(_trt()).version_compatible:
        pytest.skip("TensorRT < 8.6 has no version-compatible engines")
    path, _ = build_engine(gpu_bundle, "fp16", version_compatible=True, cache_dir=tmp_path)
    with TensorRTBackend(path, "fp16") as be:
        assert be.run(inputs[:4]).shape == (4, 256)


@requires_gpu
def test_bench_measures_tensorrt_throughput(gpu_bundle, tmp_path, monkeypatch, capsys):
    from docedge.tools.cli import main

    monkeypatch.setenv("DOCEDGE_ENGINE_CACHE", str(tmp_path))
    for precision in ("fp32", "fp16", "int8"):
        assert main(["build-engine", str(gpu_bundle.path), "--precision", precision]) == 0
    capsys.readouterr()
    assert main(["bench", str(gpu_bundle.path), "--tensorrt", "--precision", "all", "--rounds",
                 "2", "--batch-sizes", "1,32,64", "--gallery-sizes", "", "--no-torch",
                 "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    cases = [c for c in report["summary"] if c["engine"].startswith("tensorrt-")]
    assert {c["engine"] for c in cases} == {"tensorrt-fp32", "tensorrt-fp16", "tensorrt-int8"}
    assert all(c["images_per_s"] > 0 for c in cases)
    print(json.dumps(cases, indent=1))


def test_gpu_skip_reason_is_explicit():
    """Runs everywhere: the reason the GPU tests skip (or that they can run) is stated."""
    assert REASON == "" or any(w in REASON for w in ("tensorrt", "pycuda", "CUDA", "GPU"))
