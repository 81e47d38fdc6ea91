"""No silent CPU fall-back, and a runtime import that stays slim."""

from __future__ import annotations

import subprocess
import sys

import pytest

from docedge.runtime import Embedder, ProviderUnavailableError


def test_unavailable_provider_is_an_error_not_a_cpu_fallback(seeded_bundle):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA; the refusal path needs a build without it")
    with pytest.raises(ProviderUnavailableError, match="CUDAExecutionProvider"):
        Embedder(seeded_bundle, providers=["cuda"])


def test_cpu_provider_is_the_default_and_is_reported(seeded_bundle):
    e = Embedder(seeded_bundle)
    assert e.describe()["providers"] == ["CPUExecutionProvider"]


def test_importing_the_runtime_loads_no_heavy_libraries():
    code = (
        "import sys, docedge.runtime, docedge.runtime.backends, docedge.runtime.embedder\n"
        "import docedge.runtime.backends.onnxruntime_backend\n"
        "heavy = [m for m in ('torch', 'onnx', 'matplotlib', 'timm', 'tensorrt', 'pycuda', "
        "'sklearn', 'onnxruntime') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
