"""Timing helpers for ``docedge bench``: latency percentiles and throughput.

Warm-up runs are excluded. Figures are for reports, never asserted in unit tests.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List

import numpy as np


def time_call(
    fn: Callable[[], Any], batch: int, warmup: int = 3, iters: int = 20, min_seconds: float = 0.5
) -> Dict[str, float]:
    """Time ``fn`` (one call processes ``batch`` images).

    Runs ``warmup`` untimed calls, then at least ``iters`` timed calls and at least
    ``min_seconds`` in total. Returns ``batch``, ``calls``, latency ``p50_ms``/``p99_ms``/
    ``mean_ms`` per call, and ``images_per_s``.
    """
    for _ in range(warmup):
        fn()
    times: List[float] = []
    start = time.perf_counter()
    while len(times) < iters or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 20 * iters:
            break
    arr = np.asarray(times) * 1000.0
    total_s = float(np.sum(times))
    return {
        "batch": float(batch),
        "calls": float(len(times)),
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "mean_ms": float(arr.mean()),
        "images_per_s": float(batch * len(times) / total_s) if total_s > 0 else float("nan"),
    }
