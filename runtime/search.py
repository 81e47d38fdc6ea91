"""Vectorized nearest-neighbour search in DocClassifier's score space.

Scores are ``(cos + 1) / 2`` of unit vectors, computed in float32 by matrix products over
chunks of the gallery (float16 galleries are converted chunk by chunk), so memory stays
bounded and the scan runs near memory bandwidth.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Tuple

import numpy as np

#: Gallery rows per chunk (256-d float32: 16 MiB per chunk).
CHUNK_ROWS = 16384


def _probe_cv2_half() -> bool:
    """Whether OpenCV converts float16 arrays (CV_16F) to float32 here (about 2.7x faster than
    numpy's ``astype``, and exact). Older OpenCV builds fall back to numpy."""
    try:
        import cv2

        x = np.array([[0.5, -1.25, 65504.0, 6e-8]], np.float16)
        y = cv2.add(x, 0.0, dtype=cv2.CV_32F)  # type: ignore[call-overload]  # scalar src2
        return bool(np.array_equal(np.asarray(y, np.float32), x.astype(np.float32)))
    except Exception:  # any cv2 error: use numpy
        return False


_CV2_HALF = _probe_cv2_half()


def as_float32(block: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A float32 view/copy of a gallery block ``(n, D)`` (float16 converted exactly)."""
    if block.dtype == np.float32:
        return block
    if block.dtype == np.float16 and _CV2_HALF and block.ndim == 2 and block.shape[0] > 0:
        import cv2

        half = np.ascontiguousarray(block)
        out: np.ndarray[Any, Any] = cv2.add(half, 0.0, dtype=cv2.CV_32F)  # type: ignore[call-overload]
        return out.reshape(block.shape)
    return np.asarray(block, np.float32)


def to_score(cos: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Cosine -> score in [0, 1]: ``(cos + 1) / 2`` (float32)."""
    out: np.ndarray[Any, Any] = (np.asarray(cos, np.float32) + np.float32(1)) * np.float32(0.5)
    return out


def pairwise_scores(embeddings: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """All-pairs scores ``(N, N)`` float32 of unit vectors ``(N, D)``."""
    e = np.asarray(embeddings, np.float32)
    return to_score(e @ e.T)


def scores(
    queries: np.ndarray[Any, Any], gallery: np.ndarray[Any, Any], chunk_rows: int = CHUNK_ROWS
) -> np.ndarray[Any, Any]:
    """Scores ``(Q, G)`` float32 of queries ``(Q, D)`` against gallery rows ``(G, D)``."""
    q = np.asarray(queries, np.float32)
    out = np.empty((q.shape[0], gallery.shape[0]), np.float32)
    for start in range(0, gallery.shape[0], chunk_rows):
        block = as_float32(gallery[start : start + chunk_rows])
        np.matmul(q, block.T, out=out[:, start : start + block.shape[0]])
    return to_score(out)


def top_k(
    queries: np.ndarray[Any, Any],
    gallery: np.ndarray[Any, Any],
    k: int = 5,
    chunk_rows: int = CHUNK_ROWS,
) -> Tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Best ``k`` gallery rows per query: ``(indices (Q, k) int64, scores (Q, k) float32)``,
    best first. Keeps only ``k`` candidates per chunk, so memory is O(Q * (chunk + k))."""
    q = np.asarray(queries, np.float32)
    n = gallery.shape[0]
    k = min(k, n)
    best_i = np.empty((q.shape[0], 0), np.int64)
    best_s = np.empty((q.shape[0], 0), np.float32)
    for start in range(0, n, chunk_rows):
        block = as_float32(gallery[start : start + chunk_rows])
        s = to_score(q @ block.T)
        kk = min(k, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        best_i = np.concatenate([best_i, part + start], axis=1)
        best_s = np.concatenate([best_s, np.take_along_axis(s, part, axis=1)], axis=1)
        if best_i.shape[1] > k:
            keep = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
            best_i = np.take_along_axis(best_i, keep, axis=1)
            best_s = np.take_along_axis(best_s, keep, axis=1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, axis=1), np.take_along_axis(best_s, order, axis=1)


def best_per_label(
    score_row: np.ndarray[Any, Any], label_ids: np.ndarray[Any, Any], n_labels: int
) -> np.ndarray[Any, Any]:
    """Best score per label (``-inf`` for labels without entries), ``(n_labels,)``.

    ``score_row``: scores ``(G,)`` of one query; ``label_ids``: label index ``(G,)`` per entry.
    """
    best = np.full(n_labels, -np.inf, np.float32)
    np.maximum.at(best, label_ids, score_row)
    return best


def benchmark_search(
    n_entries: int, dtype: str = "float32", dim: int = 256, queries: int = 1, repeats: int = 5,
    k: int = 5, seed: int = 0,
) -> Dict[str, Any]:
    """Time a top-k search over a random unit-vector gallery against the bandwidth floor.

    The floor is the time to read the same embedding bytes once (a read-only XOR reduction
    over them as 64-bit words). float16 galleries are converted to float32 chunk by chunk
    (numpy's conversion, about 1 ns per value here, dominates their search time).
    Returns ``entries, dtype, search_ms, read_floor_ms, ratio_to_floor, gallery_mb``.
    """
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((n_entries, dim), dtype=np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    g = g.astype(dtype)
    q = g[:queries].astype(np.float32)
    chunk = CHUNK_ROWS

    raw = g.view(np.uint64)

    def floor() -> None:  # read every byte once (a read-only integer reduction)
        for start in range(0, n_entries, chunk):
            np.bitwise_xor.reduce(raw[start : start + chunk], axis=None)

    def search() -> None:
        top_k(q, g, k)

    times: Dict[str, List[float]] = {"floor": [], "search": []}
    for name, fn in (("floor", floor), ("search", search)):
        fn()
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    s_ms = 1000 * float(np.median(times["search"]))
    f_ms = 1000 * float(np.median(times["floor"]))
    return {"entries": n_entries, "dtype": dtype, "queries": queries, "search_ms": s_ms,
            "read_floor_ms": f_ms, "ratio_to_floor": s_ms / f_ms if f_ms > 0 else float("nan"),
            "gallery_mb": g.nbytes / 2**20}  # fmt: skip
