"""Activation ranges (amax per tensor) for symmetric INT8: minmax, percentile, entropy, mse.

Why docedge computes the ranges instead of ONNX Runtime's calibrators (all measured with
onnxruntime 1.31, see docs/precision.md):

- ``quantize_static(calibrate_method=Entropy)`` gives exactly the MinMax ranges: its
  ``EntropyCalibrater`` defaults to ``num_bins=128 == num_quantized_bins=128``, so the KL search
  has a single candidate (the full range), and ``quantize_static`` has no option to change it.
- Its histogram calibrators keep every batch's intermediate outputs in memory until the end of
  ``collect_data`` (memory grows with the number of images).
- Its Percentile calibrator histograms ``|x|`` over ``[min|x|, max|x|]`` in float32 and aborts
  the whole calibration with "Too many bins for data range" on a tensor whose values all lie
  within a few float32 steps of each other.
- The TensorRT calibration cache must hold the same ranges as the QDQ model.

So the fp32 model runs here over streamed batches (memory: one batch of activations plus a
2048-bin ``|x|`` histogram per tensor; histogram methods read the images twice), ranges are
computed per tensor with a recorded minmax fallback for degenerate tensors, and
:mod:`docedge.calibration.int8` hands them to ``quantize_static`` as ``TensorQuantOverrides``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional

import numpy as np
import onnx

logger = logging.getLogger(__name__)

METHODS = ("minmax", "percentile", "entropy", "mse")
NUM_BINS = 2048
#: |x| ranges at or below this are treated as all-zero tensors.
ZERO_RANGE = 1e-12
#: A tensor whose (max - min) is below this fraction of max|x| is near-constant: its histogram
#: holds no shape (all values in one bin), so histogram methods fall back to minmax for it.
TINY_RELATIVE_RANGE = 1e-5
#: amax given to all-zero tensors (any positive value represents zero exactly).
ZERO_AMAX = 1e-6


@dataclass
class RangeResult:
    """``amax`` per tensor (float32 activations), the method, and the tensors that fell back
    to minmax (name -> reason); ``images``/``batches`` seen."""

    amax: Dict[str, float]
    method: str
    percentile: Optional[float] = None
    fallbacks: Dict[str, str] = field(default_factory=dict)
    batches: int = 0
    images: int = 0


def activation_tensors(model: onnx.ModelProto) -> List[str]:
    """Names of the graph's activations in topological order: graph inputs, then every node
    output (not weights, not Constant outputs). Non-float ones are dropped after the first run."""
    inits = {i.name for i in model.graph.initializer}
    names: List[str] = [i.name for i in model.graph.input if i.name not in inits]
    seen = set(names)
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        for t in node.output:
            if t and t not in seen:
                seen.add(t)
                names.append(t)
    return names


def _augmented_session(model: onnx.ModelProto, tensors: List[str]) -> Any:
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
    total_batches: Optional[int] = None,
) -> RangeResult:
    """Run the fp32 ``model`` over calibration batches; symmetric amax for every float
    activation tensor (graph input, every node output).

    ``batches`` is called once per pass (two passes for histogram methods) and yields float32
    ``(n, 3, 128, 128)`` arrays. ``progress`` shows a tqdm bar per pass (``total_batches`` sets
    its length).
    """
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose from {METHODS}")
    if method == "percentile" and not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    tensors = activation_tensors(model)
    sess = _augmented_session(model, tensors)
    input_name = model.graph.input[0].name
    out_names = [o.name for o in sess.get_outputs()]
    result = RangeResult({}, method, percentile if method == "percentile" else None)
    lo: Dict[str, float] = {}
    hi: Dict[str, float] = {}

    def run_pass(desc: str) -> Iterable[Dict[str, np.ndarray]]:
        it: Iterable[np.ndarray] = batches()
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc=desc, unit="batch", total=total_batches)
        for x in it:
            values = dict(zip(out_names, sess.run(out_names, {input_name: x})))
            values[input_name] = x
            yield values

    for values in run_pass("calibration: ranges"):
        result.batches += 1
        result.images += int(values[input_name].shape[0])
        for t in tensors:
            v = values.get(t)
            if v is None or v.size == 0 or not np.issubdtype(v.dtype, np.floating):
                continue
            vmin, vmax = float(np.min(v)), float(np.max(v))
            lo[t] = min(lo.get(t, vmin), vmin)
            hi[t] = max(hi.get(t, vmax), vmax)
    if result.batches == 0:
        raise ValueError("no calibration images could be read")
    floating = [t for t in tensors if t in lo]
    absmax = {t: max(abs(lo[t]), abs(hi[t])) for t in floating}
    bad = [t for t in floating if not np.isfinite(absmax[t])]
    if bad:
        raise ValueError(f"non-finite activations in {len(bad)} tensor(s) (first: {bad[0]}); "
                         "the fp32 model or the calibration images are broken")  # fmt: skip

    use_hist: List[str] = []
    for t in floating:
        if absmax[t] <= ZERO_RANGE:
            result.fallbacks[t] = f"all-zero tensor (max |x| {absmax[t]:.3g}); amax {ZERO_AMAX:g}"
        elif method != "minmax" and hi[t] - lo[t] <= TINY_RELATIVE_RANGE * absmax[t]:
            result.fallbacks[t] = (f"tiny value range [{lo[t]:.9g}, {hi[t]:.9g}]: no histogram "
                                   "shape; minmax used")  # fmt: skip
        elif method != "minmax":
            use_hist.append(t)
    hists = {t: np.zeros(NUM_BINS, np.int64) for t in use_hist}
    if hists:
        for values in run_pass(f"calibration: {method} histograms"):
            for t in list(hists):
                try:
                    h, _ = np.histogram(np.abs(values[t]), bins=NUM_BINS, range=(0.0, absmax[t]))
                except ValueError as e:  # "Too many bins for data range" and relatives
                    result.fallbacks[t] = f"histogram failed ({e}); minmax used"
                    del hists[t]
                    continue
                hists[t] += h

    for t in floating:
        a = absmax[t]
        if a <= ZERO_RANGE:
            result.amax[t] = ZERO_AMAX
        elif t not in hists:
            result.amax[t] = a
        elif method == "percentile":
            result.amax[t] = percentile_amax(hists[t], a, percentile)
        elif method == "entropy":
            result.amax[t] = entropy_amax(hists[t], a)
        else:
            result.amax[t] = mse_amax(hists[t], a)
    if result.fallbacks:
        logger.warning("calibration: %d tensor(s) fell back to minmax: %s",
                       len(result.fallbacks), "; ".join(f"{k}: {v}" for k, v in
                                                        list(result.fallbacks.items())[:5]))  # fmt: skip
    return result


def percentile_amax(hist: np.ndarray, amax: float, percentile: float) -> float:
    """Upper edge of the bin where the ``|x|`` CDF reaches ``percentile`` %."""
    cdf = np.cumsum(hist) / max(1, int(hist.sum()))
    idx = int(np.searchsorted(cdf, percentile / 100.0))
    return float(min(amax, (idx + 1) * amax / len(hist)))


def entropy_amax(hist: np.ndarray, amax: float, num_quant_bins: int = 128,
                 stride: int = 1) -> float:  # fmt: skip
    """TensorRT's entropy calibration (``EntropyCalibration2``) on a ``|x|`` histogram.

    For each clip bin ``i`` (from 128 to 2048): reference ``p`` = ``hist[:i]`` with the clipped
    tail added to its last bin, candidate ``q`` = ``hist[:i]`` merged into 128 levels and spread
    back over the non-empty bins; amax = upper edge of the bin with the smallest KL(p||q) (the
    largest such bin on ties, as TensorRT's reference implementation does). ``hist[0]`` is set to
    ``hist[1]`` first: exact zeros (ReLU/HardSwish outputs) would otherwise dominate.
    """
    bins = hist.astype(np.float64)
    n = len(bins)
    if n > 1:
        bins[0] = bins[1]
    if bins.sum() == 0:
        return amax
    tail = np.concatenate([np.cumsum(bins[::-1])[::-1], [0.0]])  # tail[i] = bins[i:].sum()
    best_i, best_kl = n, np.inf
    for i in range(num_quant_bins, n + 1, stride):
        ref = bins[:i].copy()
        ref[-1] += tail[i]
        nonzero = bins[:i] != 0
        idx = (np.arange(i) * num_quant_bins) // i
        sums = np.bincount(idx, weights=bins[:i], minlength=num_quant_bins)
        counts = np.bincount(idx, weights=nonzero.astype(np.float64), minlength=num_quant_bins)
        q = np.where(nonzero, sums[idx] / np.maximum(counts[idx], 1.0), 0.0)
        qs, ps = q.sum(), ref.sum()
        if qs == 0 or ps == 0:
            continue
        p = ref / ps
        q = q / qs
        mask = p > 0
        with np.errstate(divide="ignore"):
            kl = float(np.sum(p[mask] * np.log(p[mask] / q[mask])))  # inf where q == 0 < p
        if kl <= best_kl:
            best_kl, best_i = kl, i
    return float(min(amax, best_i * amax / n))


def mse_amax(hist: np.ndarray, amax: float, start_bin: int = 128, stride: int = 2) -> float:
    """amax minimizing the squared error of symmetric INT8 fake quantization (clipping and
    rounding) over the ``|x|`` histogram's bin centres."""
    n = len(hist)
    width = amax / n
    centers = (np.arange(n) + 0.5) * width
    counts = hist.astype(np.float64)
    best, best_err = amax, np.inf
    for i in range(start_bin, n + 1, stride):
        a = i * width
        s = a / 127.0
        q = np.minimum(np.round(centers / s), 127.0) * s
        err = float(np.sum(counts * (q - centers) ** 2))
        if err < best_err:
            best, best_err = a, err
    return float(best)
