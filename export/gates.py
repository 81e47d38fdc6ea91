"""Accuracy gates: an artifact's embeddings against the PyTorch reference (or, where a bundle
has none, its own fp32 ONNX), and the error a failed gate raises.

torch is imported only where a PyTorch reference is actually used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Tuple

import numpy as np

from docedge.runtime.errors import BundleError

if TYPE_CHECKING:  # pragma: no cover
    from .reference import ReferenceModel

#: fp32 export gate (ONNX Runtime vs PyTorch on the check images).
FP32_MIN_COSINE = 0.99999
FP32_MAX_ABS_DIFF = 1e-5
#: fp16 conversion gate (cosine to the reference on the check images).
FP16_MIN_COSINE = 0.999
FP16_MEAN_COSINE = 0.9995
#: Collapse guard: embeddings of different images must differ before parity means anything.
MAX_MEAN_PAIRWISE_COSINE = 0.5


class GateError(BundleError):
    """An artifact failed its accuracy gate against the reference; the bundle is unchanged."""


def ort_embed(onnx_path: Path, x: np.ndarray, threads: int = 2) -> np.ndarray:
    """Run an ONNX file on pre-processed float32 ``(N, 3, 128, 128)`` with ONNX Runtime CPU;
    float32 ``(N, 256)``."""
    from docedge.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(onnx_path, intra_op_threads=threads)
    return backend.run(x)


def torch_embed(net: Any, x: np.ndarray) -> np.ndarray:
    """Reference embeddings of a PyTorch module, float32 ``(N, 256)``."""
    import torch

    with torch.no_grad():
        out: np.ndarray = net.eval()(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    return out


def reference_embed(x: np.ndarray, reference: Optional[ReferenceModel],
                    fp32_onnx: Path) -> Tuple[np.ndarray, str]:  # fmt: skip
    """Embeddings to gate against, and what they are: the PyTorch reference when given, else
    the bundle's fp32 ONNX (recorded as such: that is not an independent reference)."""
    if reference is not None:
        return torch_embed(reference.net, x), "pytorch-reference"
    return ort_embed(fp32_onnx, x), "fp32-onnx (no PyTorch reference)"
