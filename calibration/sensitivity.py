"""Which quantized layers cost the INT8 model the most: leave-one-out float fallback, measured on
the final embedding.

For every node the INT8 model would quantize, a QDQ model is built with that one node kept
float (every other choice as in the real model, same ranges), and the cosine of its embeddings
to fp32 is measured on calibration images. The nodes whose fallback raises the mean cosine most
are the ones to keep float (:func:`most_sensitive`). Written here rather than taken from ONNX
Runtime's ``qdq_loss_debug``: that tool compares each tensor's activations between the float and
QDQ models, which says where error shows up, not which layer's fallback buys the most
final-embedding cosine, the quantity the INT8 gate checks.

Measured on the demo model (real-page captures): the early pointwise convolutions dominate;
keeping the 4 most sensitive float moved cosine mean 0.9927 -> 0.9988 and min 0.974 -> 0.997.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sensitivity:
    """Cosine to fp32 (mean, min over the images) with ``node`` kept float."""

    node: str
    cos_mean: float
    cos_min: float

    def to_json(self) -> Dict[str, Any]:
        return {"node": self.node, "cos_mean": round(self.cos_mean, 6),
                "cos_min": round(self.cos_min, 6)}  # fmt: skip


def layer_sensitivity(fp32_path: Path, amax: Dict[str, float], images: np.ndarray,
                      float_nodes: Sequence[str], candidates: Sequence[str],
                      **quant_options: Any) -> List[Sensitivity]:  # fmt: skip
    """For each node of ``candidates``: the INT8 model (ranges ``amax``, ``float_nodes`` kept
    float, ``quant_options`` as for :func:`~docedge.calibration.int8.quantize_qdq`) with that node
    also float, embedded on ``images`` float32 ``(N, 3, 128, 128)`` and compared with fp32.
    Sorted by mean cosine, best first."""
    from docedge.export.verify import cosine_rows
    from docedge.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    from .int8 import quantize_qdq

    ref = OnnxRuntimeBackend(fp32_path, intra_op_threads=1).run(images)
    out: List[Sensitivity] = []
    with tempfile.TemporaryDirectory(prefix="docedge-sensitivity-") as tmp:
        path = Path(tmp) / "q.onnx"
        for i, node in enumerate(candidates):
            quantize_qdq(fp32_path, path, amax, [*float_nodes, node],
                         calibration_batch=images[:2], **quant_options)  # fmt: skip
            c = cosine_rows(OnnxRuntimeBackend(path, intra_op_threads=1).run(images), ref)
            out.append(Sensitivity(node, float(c.mean()), float(c.min())))
            logger.debug("sensitivity %d/%d %s: %.5f", i + 1, len(candidates), node, c.mean())
    return sorted(out, key=lambda s: (-s.cos_mean, -s.cos_min, s.node))


def most_sensitive(ranked: Sequence[Sensitivity], count: int) -> List[str]:
    """The ``count`` nodes whose float fallback helps most (``ranked`` from
    :func:`layer_sensitivity`)."""
    return [s.node for s in ranked[: max(0, count)]]
