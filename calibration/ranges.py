"""Activation ranges (amax per tensor) for symmetric INT8: minmax, percentile, entropy.

Why not ONNX Runtime's calibrators directly: their histogram collectors call ``np.histogram``
on every tensor and abort the whole calibration with "Too many bins for data range" when one
tensor has a tiny value range; and the TensorRT calibration cache must be written from the
same ranges as the QDQ model. So ranges are computed here, per tensor, with a fallback to
minmax for degenerate tensors (recorded), and handed to ONNX Runtime's ``quantize_static``
as ``TensorQuantOverrides`` (rmin = -amax, rmax = amax). The entropy method is TensorRT's
(KL divergence between the 2048-bin |x| histogram and its 128-level quantization).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Set

import numpy as np
import onnx

logger = logging.getLogger(__name__)

METHODS = ("minmax", "percentile", "entropy")
NUM_BINS = 2048
#: Ranges at or below this are degenerate (constant tensors): minmax fallback.
TINY_RANGE = 1e-12


@dataclass
class RangeResult:
    """``amax`` per tensor name, the method, and tensors that fell back to minmax (why)."""

    amax: Dict[str, float]
    method: str
    fallbacks: Dict[str, str] = field(default_factory=dict)
    batches: int = 0
    images: int = 0


def activation_tensors(model: onnx.ModelProto) -> List[str]:
    """Float tensors that feed a node and are not weights: the graph input and intermediates."""
    inits = {i.name for i in model.graph.initializer}
    consts = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    names: List[str] = []
    seen = set()
    for node in model.graph.node:
        for t in node.input:
            if t and t not in inits and t not in consts and t not in seen:
                seen.add(t)
                names.append(t)
    return names


def _augmented_session(model: onnx.ModelProto, tensors: List[str]) -> object:
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    existing = {o.name for o in m.graph.output}
    for t in tensors:
        if t not in existing:
            m.graph.output.append(onnx.ValueInfoProto(name=t))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def compute_ranges(
    model: onnx.ModelProto,
    batches: Callable[[], Iterable[np.ndarray]],
    method: str = "percentile",
    percentile: float = 99.99,
    progress: bool = True,
) -> RangeResult:
    """Run the fp32 model over calibration batches and compute |x| amax per activation.

    ``batches`` is called once per pass (two passes for histogram methods) and yields float32
    ``(n, 3, 128, 128)``. Memory: one batch of activations plus a 2048-bin histogram per tensor.
    """
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose from {METHODS}")
    tensors = activation_tensors(model)
    sess = _augmented_session(model, tensors)
    input_name = model.graph.input[0].name
    out_names = [o.name for o in sess.get_outputs()]  # type: ignore[attr-defined]
    absmax: Dict[str, float] = {t: 0.0 for t in tensors}
    result = RangeResult({}, method)
    floating: Set[str] = set()

    def run_pass(desc: str) -> Iterable[Dict[str, np.ndarray]]:
        it: Iterable[np.ndarray] = batches()
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc=desc, unit="batch")
        for x in it:
            outs = sess.run(out_names, {input_name: x})  # type: ignore[attr-defined]
            values = dict(zip(out_names, outs))
            values[input_name] = x
            yield values

    for values in run_pass("calibration (ranges)"):
        result.batches += 1
        result.images += int(values[input_name].shape[0])
        for t in tensors:
            v = values.get(t)
            if v is not None and np.issubdtype(np.asarray(v).dtype, np.floating) and v.size:
                floating.add(t)
                absmax[t] = max(absmax[t], float(np.max(np.abs(v))))
    if result.batches == 0:
        raise ValueError("no calibration images could be read")
    tensors = [t for t in tensors if t in floating]
    if method == "minmax":
        result.amax = {t: absmax[t] for t in tensors}
        return _guard(result, absmax)

    hists = {t: np.zeros(NUM_BINS, np.int64) for t in tensors}
    for values in run_pass(f"calibration ({method} histograms)"):
        for t in tensors:
            if t not in hists:
                continue
            v = values.get(t)
            if v is None or absmax[t] <= TINY_RANGE:
                continue
            try:
                h, _ = np.histogram(np.abs(v), bins=NUM_BINS, range=(0.0, absmax[t]))
            except ValueError as e:  # "Too many bins for data range" and relatives
                result.fallbacks[t] = f"histogram failed ({e}); minmax used"
                del hists[t]
                continue
            hists[t] += h
    for t in tensors:
        if t not in hists:
            result.amax[t] = absmax[t]
        elif absmax[t] <= TINY_RANGE:
            result.amax[t] = absmax[t]
        elif method == "percentile":
            result.amax[t] = _percentile_amax(hists[t], absmax[t], percentile)
        else:
            result.amax[t] = _entropy_amax(hists[t], absmax[t])
    return _guard(result, absmax)


def _guard(result: RangeResult, absmax: Dict[str, float]) -> RangeResult:
    for t, a in list(result.amax.items()):
        if not np.isfinite(a) or a <= TINY_RANGE:
            result.fallbacks.setdefault(t, f"degenerate range (amax {absmax.get(t, a):.3g}); "
                                           "minimum range 1e-6 used")  # fmt: skip
            result.amax[t] = max(float(absmax.get(t, 0.0)), 1e-6)
    if result.fallbacks:
        logger.warning("%d tensor(s) fell back to minmax/minimum range: %s",
                       len(result.fallbacks), sorted(result.fallbacks)[:8])  # fmt: skip
    return result


def _percentile_amax(hist: np.ndarray, amax: float, percentile: float) -> float:
    cdf = np.cumsum(hist) / max(1, hist.sum())
    idx = int(np.searchsorted(cdf, percentile / 100.0))
    width = amax / NUM_BINS
    return float(min(amax, (idx + 1) * width))


def _entropy_amax(hist: np.ndarray, amax: float, num_quant_bins: int = 128,
                  start_bin: Optional[int] = None) -> float:  # fmt: skip
    """TensorRT's entropy calibration on a |x| histogram: the clip point that minimizes the
    KL divergence between the clipped reference and its 128-level quantization."""
    bins = hist.astype(np.float64)
    bins[0] = bins[1] if len(bins) > 1 else bins[0]  # zeros (ReLU outputs) dominate otherwise
    total = bins.sum()
    if total == 0:
        return amax
    best_i, best_kl = len(bins), np.inf
    start = start_bin or num_quant_bins
    for i in range(start, len(bins) + 1, 4):
        ref = bins[:i].copy()
        ref[-1] += bins[i:].sum()
        nonzero = ref != 0
        # Quantize bins[:i] into num_quant_bins levels, then expand back over non-zero bins.
        idx = np.minimum(np.floor(np.arange(i) * num_quant_bins / i).astype(int), num_quant_bins - 1)
        sums = np.bincount(idx, weights=bins[:i], minlength=num_quant_bins)
        counts = np.bincount(idx, weights=nonzero.astype(np.float64), minlength=num_quant_bins)
        q = np.where(nonzero, sums[idx] / np.maximum(counts[idx], 1), 0.0)
        p = ref / ref.sum()
        qs = q.sum()
        if qs == 0:
            continue
        q = q / qs
        mask = p > 0
        kl = float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return float(min(amax, (best_i + 0.5) * amax / len(bins)))
