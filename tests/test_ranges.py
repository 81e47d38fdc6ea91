"""Why docedge computes activation ranges itself, reproduced; and its entropy method checked
against a plain implementation of TensorRT's documented algorithm (issue 10)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from docedge.calibration.ranges import compute_ranges, entropy_amax


def _relu_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 64])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])


def _narrow_offset_batches():
    """Values within 1e-4 of 1000: a narrow range with a large offset (a few float32 steps)."""
    for i in range(4):
        yield np.random.default_rng(i).random((2, 64)).astype(np.float32) * 1e-4 + 1000


@pytest.mark.parametrize("method_name", ["Percentile", "Entropy"])
def test_onnxruntime_calibrators_fail_on_a_narrow_range_with_a_large_offset(tmp_path, method_name):
    from onnxruntime.quantization.calibrate import (
        CalibrationDataReader,
        CalibrationMethod,
        create_calibrator,
    )

    path = tmp_path / "m.onnx"
    onnx.save(_relu_model(), str(path))

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.it = iter(list(_narrow_offset_batches()))

        def get_next(self):
            return {"x": b} if (b := next(self.it, None)) is not None else None

    cal = create_calibrator(str(path), ["y"], calibrate_method=getattr(CalibrationMethod, method_name),
                            augmented_model_path=str(tmp_path / "aug.onnx"))  # fmt: skip
    with pytest.raises(Exception):  # noqa: B017 (any failure: that is the point)
        cal.collect_data(Reader())
        cal.compute_data()


@pytest.mark.parametrize("method", ["percentile", "entropy", "mse", "minmax"])
def test_docedge_ranges_cover_the_same_tensor(method):
    res = compute_ranges(_relu_model(), lambda: _narrow_offset_batches(), method, progress=False)
    assert 1000.0 <= res.amax["y"] <= 1000.001 + 1e-3
    if method != "minmax":
        assert "y" in res.fallbacks  # near-constant tensor: minmax, and the run says so


def _tensorrt_entropy_reference(hist, amax, num_quant_bins=128):
    """TensorRT's entropy calibration as its documentation describes it, written plainly
    (one loop per clip bin, explicit merge and expand), for comparison only."""
    hist = [float(v) for v in hist]
    hist[0] = hist[1]
    n = len(hist)
    best_kl, best_i = float("inf"), n
    for i in range(num_quant_bins, n + 1):
        p = hist[:i]
        p[-1] += sum(hist[i:])
        q = [0.0] * i
        for j in range(num_quant_bins):
            start, stop = (j * i) // num_quant_bins, ((j + 1) * i) // num_quant_bins
            chunk = hist[start:stop]
            nonzero = sum(1 for v in chunk if v != 0)
            if nonzero:
                avg = sum(chunk) / nonzero
                for k in range(start, stop):
                    q[k] = avg if hist[k] != 0 else 0.0
        ps, qs = sum(p), sum(q)
        if ps == 0 or qs == 0:
            continue
        kl = 0.0
        for pv, qv in zip(p, q):
            if pv > 0:
                kl += float("inf") if qv == 0 else (pv / ps) * np.log((pv / ps) / (qv / qs))
        if kl <= best_kl:
            best_kl, best_i = kl, i
    return min(amax, best_i * amax / n)


@pytest.mark.parametrize("seed", range(3))
def test_entropy_amax_matches_tensorrts_algorithm(seed):
    rng = np.random.default_rng(seed)
    x = np.abs(rng.laplace(0, 1.0, 20000))
    x[:50] *= 40  # a long tail worth clipping
    hist, _ = np.histogram(x, bins=512, range=(0, x.max()))
    ours = entropy_amax(hist, float(x.max()), num_quant_bins=128)
    ref = _tensorrt_entropy_reference(hist, float(x.max()), num_quant_bins=128)
    assert ours == pytest.approx(ref, rel=1e-12)
    assert ours < x.max()  # it clipped the tail
