"""Vectorized nearest-neighbour search in DocClassifier's score space.

Scores are ``(cos + 1) / 2`` of unit vectors. The gallery is scanned in chunks of
:data:`CHUNK_ROWS` rows: a float16 chunk is converted to float32 (exactly, through OpenCV's
F16C path where available), then multiplied by the queries (BLAS). A chunk fits in the L2
cache, so the converted copy never goes to memory and each gallery byte is read once: the scan
runs near the memory-bandwidth floor for float32 galleries; float16 galleries are bound by the
conversion and use several threads (OpenCV and BLAS release the GIL). Top-k selection keeps
only ``k`` candidates per span, so memory stays bounded for any gallery size.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

#: Gallery rows per chunk (256-d: 1 MiB as float32, fits L2 together with its float16 source;
#: small enough that OpenBLAS runs each product single-threaded, without thread hand-offs).
CHUNK_ROWS = 1024
#: Score buffer per worker (float32 values) before a top-k reduction.
_SPAN_VALUES = 1 << 21
#: Galleries smaller than this many values are searched by one thread.
_THREAD_MIN_VALUES = 1 << 20
#: Environment override of the number of search threads.
THREADS_ENV = "DOCEDGE_SEARCH_THREADS"


def _probe_cv2_half() -> bool:
    """Whether OpenCV converts float16 arrays (CV_16F) to float32 here, exactly (about 4x
    faster than numpy's ``astype``). Older OpenCV builds fall back to numpy."""
    try:
        import cv2

        x = np.array([[0.5, -1.25, 65504.0, 6e-8, -0.0]], np.float16)
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


# --- threading ---------------------------------------------------------------------------------
_POOL: Optional[ThreadPoolExecutor] = None
_POOL_LOCK = threading.Lock()


def _cpu_count() -> int:
    getaff = getattr(os, "sched_getaffinity", None)
    if getaff is not None:
        try:
            return max(1, len(getaff(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


def search_threads(rows: int, dim: int, dtype: Any) -> int:
    """Threads used to scan a gallery: ``$DOCEDGE_SEARCH_THREADS`` if set; else one for small
    or float32 galleries (memory-bound: one core reads at the floor) and up to 4 (the cores
    available) for large float16 galleries (bound by the float16 -> float32 conversion)."""
    env = os.environ.get(THREADS_ENV)
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    if np.dtype(dtype) == np.float32 or rows * dim < _THREAD_MIN_VALUES:
        return 1
    return min(4, _cpu_count())


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(4, _cpu_count()),
                                       thread_name_prefix="docedge-search")  # fmt: skip
        return _POOL


def _ranges(n: int, parts: int, align: int) -> List[Tuple[int, int]]:
    """Split ``[0, n)`` into up to ``parts`` contiguous ranges aligned to ``align`` rows."""
    blocks = -(-n // align)
    parts = max(1, min(parts, blocks))
    edges = [min(n, (blocks * i // parts) * align) for i in range(parts + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _prepare(queries: np.ndarray[Any, Any], gallery: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    q = np.asarray(queries, np.float32)
    if q.ndim == 1:
        q = q[None]
    if q.ndim != 2 or gallery.ndim != 2 or q.shape[1] != gallery.shape[1]:
        raise ValueError(f"queries {q.shape} and gallery {gallery.shape} do not match")
    qt: np.ndarray[Any, Any] = np.ascontiguousarray(q.T)  # (D, Q)
    return qt


def _cos_into(qt: np.ndarray[Any, Any], gallery: np.ndarray[Any, Any], a: int, b: int,
              out: np.ndarray[Any, Any], chunk_rows: int) -> None:  # fmt: skip
    """Cosines of gallery rows ``[a, b)`` with the queries into ``out`` ``(b - a, Q)``."""
    for c0 in range(a, b, chunk_rows):
        c1 = min(b, c0 + chunk_rows)
        np.matmul(as_float32(gallery[c0:c1]), qt, out=out[c0 - a : c1 - a])


def scores(
    queries: np.ndarray[Any, Any],
    gallery: np.ndarray[Any, Any],
    chunk_rows: int = CHUNK_ROWS,
    threads: Optional[int] = None,
) -> np.ndarray[Any, Any]:
    """Scores ``(Q, G)`` float32 of queries ``(Q, D)`` against gallery rows ``(G, D)``."""
    qt = _prepare(queries, gallery)
    n = gallery.shape[0]
    out_t = np.empty((n, qt.shape[1]), np.float32)
    t = threads or search_threads(n, gallery.shape[1], gallery.dtype)
    ranges = _ranges(n, t, chunk_rows)
    if len(ranges) <= 1:
        for a, b in ranges:
            _cos_into(qt, gallery, a, b, out_t[a:b], chunk_rows)
    else:
        futures = [_pool().submit(_cos_into, qt, gallery, a, b, out_t[a:b], chunk_rows)
                   for a, b in ranges]  # fmt: skip
        for f in futures:
            f.result()
    out_t += np.float32(1)
    out_t *= np.float32(0.5)
    result: np.ndarray[Any, Any] = out_t.T
    return result


def _top_cos_range(
    qt: np.ndarray[Any, Any], gallery: np.ndarray[Any, Any], a: int, b: int, k: int, chunk_rows: int
) -> Tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Best ``k`` rows of ``[a, b)`` per query: ``(rows (Q, k'), cosines (Q, k'))``, unsorted.

    Once ``k`` candidates are held, a span only contributes values above each query's current
    k-th best (one comparison pass; the few survivors are merged by sorting), so selection
    costs little beside the products even for many queries."""
    nq = qt.shape[1]
    span = max(chunk_rows, (_SPAN_VALUES // max(1, nq)) // chunk_rows * chunk_rows)
    buf = np.empty((min(span, b - a), nq), np.float32)
    best_i: Optional[np.ndarray[Any, Any]] = None
    best_c: Optional[np.ndarray[Any, Any]] = None
    for s0 in range(a, b, span):
        s1 = min(b, s0 + span)
        w = s1 - s0
        cos = buf[:w]  # (w, Q)
        _cos_into(qt, gallery, s0, s1, cos, chunk_rows)
        if best_i is not None and best_c is not None and best_c.shape[1] == k:
            tau = best_c.min(axis=1)  # current k-th best per query
            ri, qi = np.nonzero(cos > tau)
            if ri.size:
                best_i, best_c = _merge(best_i, best_c, qi, ri + s0, cos[ri, qi], k)
            continue
        ct = np.ascontiguousarray(cos.T)  # (Q, w)
        kk = min(k, w)
        if kk < w:
            part = np.argpartition(ct, w - kk, axis=1)[:, w - kk :]
            pc = np.take_along_axis(ct, part, axis=1)
        else:
            part = np.broadcast_to(np.arange(w), (nq, w))
            pc = ct
        pi = part + s0
        if best_i is None or best_c is None:
            best_i, best_c = pi, pc
            continue
        best_i = np.concatenate([best_i, pi], axis=1)
        best_c = np.concatenate([best_c, pc], axis=1)
        m = best_i.shape[1]
        if m > k:
            keep = np.argpartition(best_c, m - k, axis=1)[:, m - k :]
            best_i = np.take_along_axis(best_i, keep, axis=1)
            best_c = np.take_along_axis(best_c, keep, axis=1)
    assert best_i is not None and best_c is not None
    return best_i, best_c


def _merge(
    best_i: np.ndarray[Any, Any],
    best_c: np.ndarray[Any, Any],
    qi: np.ndarray[Any, Any],
    rows: np.ndarray[Any, Any],
    cos: np.ndarray[Any, Any],
    k: int,
) -> Tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Best ``k`` per query of the held ``(Q, k)`` candidates plus scattered new ones."""
    nq = best_i.shape[0]
    all_q = np.concatenate([np.repeat(np.arange(nq), k), qi])
    all_r = np.concatenate([best_i.reshape(-1), rows])
    all_c = np.concatenate([best_c.reshape(-1), cos])
    order = np.lexsort((all_r, -all_c, all_q))
    grouped = all_q[order]
    rank = np.arange(order.size) - np.searchsorted(grouped, np.arange(nq))[grouped]
    sel = order[rank < k]  # exactly k per query, grouped by query
    return all_r[sel].reshape(nq, k), all_c[sel].reshape(nq, k)


def top_k(
    queries: np.ndarray[Any, Any],
    gallery: np.ndarray[Any, Any],
    k: int = 5,
    chunk_rows: int = CHUNK_ROWS,
    threads: Optional[int] = None,
) -> Tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Best ``k`` gallery rows per query: ``(rows (Q, k) int64, scores (Q, k) float32)``,
    best first (ties: lower row first). One pass over the gallery; memory is bounded by the
    score span per thread, whatever the gallery size."""
    qt = _prepare(queries, gallery)
    nq, n = qt.shape[1], gallery.shape[0]
    k = max(0, min(int(k), n))
    if k == 0:
        return np.empty((nq, 0), np.int64), np.empty((nq, 0), np.float32)
    t = threads or search_threads(n, gallery.shape[1], gallery.dtype)
    ranges = _ranges(n, t, chunk_rows)
    if len(ranges) == 1:
        parts = [_top_cos_range(qt, gallery, 0, n, k, chunk_rows)]
    else:
        futures = [_pool().submit(_top_cos_range, qt, gallery, a, b, k, chunk_rows)
                   for a, b in ranges]  # fmt: skip
        parts = [f.result() for f in futures]
    rows = np.concatenate([p[0] for p in parts], axis=1).astype(np.int64)  # (Q, m)
    cos = np.concatenate([p[1] for p in parts], axis=1)
    sc = to_score(cos)
    order = np.lexsort((rows, -sc), axis=1)[:, :k]
    return np.take_along_axis(rows, order, axis=1), np.take_along_axis(sc, order, axis=1)


def best_per_label(score_row: np.ndarray[Any, Any], label_ids: np.ndarray[Any, Any],
                   n_labels: int) -> np.ndarray[Any, Any]:  # fmt: skip
    """Best score per label (``-inf`` for labels without entries), ``(n_labels,)``.

    ``score_row``: scores ``(G,)`` of one query; ``label_ids``: label index ``(G,)`` per entry.
    """
    best = np.full(n_labels, -np.inf, np.float32)
    np.maximum.at(best, label_ids, np.asarray(score_row, np.float32))
    return best


def top_labels(queries: np.ndarray[Any, Any], gallery: np.ndarray[Any, Any],
               label_ids: np.ndarray[Any, Any], k: int = 5, chunk_rows: int = CHUNK_ROWS,
               threads: Optional[int] = None) -> List[List[Tuple[int, float, int]]]:  # fmt: skip
    """Per query, the best ``k`` labels by their best exemplar: ``(label index, score, row of
    that exemplar)``, best first. Exact: a label's best exemplar is its first row in the
    score order, so the labels are read off the top entries (more are fetched when many
    exemplars of few labels fill the top)."""
    qt = _prepare(queries, gallery)
    nq, n = qt.shape[1], gallery.shape[0]
    ids = np.asarray(label_ids, np.int64)
    if n == 0 or k <= 0:
        return [[] for _ in range(nq)]
    want = min(k, int(np.unique(ids).size))
    out: List[List[Tuple[int, float, int]]] = [[] for _ in range(nq)]
    todo = list(range(nq))
    m = min(n, max(4 * k, 32))
    while todo:
        rows, sc = top_k(qt.T[todo], gallery, m, chunk_rows, threads)
        again = []
        for j, qi in enumerate(todo):
            lids = ids[rows[j]]
            _, first = np.unique(lids, return_index=True)
            first.sort()
            if len(first) >= want or m >= n:
                out[qi] = [(int(lids[p]), float(sc[j, p]), int(rows[j, p]))
                           for p in first[:want]]  # fmt: skip
            else:
                again.append(qi)
        todo = again
        m = min(n, m * 8)
    return out


# --- benchmark ---------------------------------------------------------------------------------
def benchmark_search(
    n_entries: int,
    dtype: str = "float32",
    dim: int = 256,
    queries: int = 1,
    repeats: int = 7,
    k: int = 5,
    seed: int = 0,
    threads: Optional[int] = None,
) -> Dict[str, Any]:
    """Time a top-k search over a random unit-vector gallery against the bandwidth floor.

    The floor is the time to read the same embedding bytes once (a single-threaded read-only
    XOR reduction over them as 64-bit words, chunk by chunk). Medians and minima over
    ``repeats`` runs after one warm-up (minima are the better estimate on a busy machine).
    Returns ``entries, dtype, queries, threads, search_ms, search_min_ms, read_floor_ms,
    read_floor_min_ms, ratio_to_floor`` (median / median), ``ratio_to_floor_min`` (min / min),
    ``gallery_mb``.
    """
    rng = np.random.default_rng(seed)
    g = np.empty((n_entries, dim), dtype)
    for s in range(0, n_entries, 65536):  # generate in blocks (bounded float32 memory)
        block = rng.standard_normal((min(65536, n_entries - s), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        g[s : s + block.shape[0]] = block
    q = np.asarray(g[:queries], np.float32)
    raw = g.reshape(-1).view(np.uint8)
    step = 1 << 22

    def floor() -> None:  # read every byte once (a read-only integer reduction)
        words = raw[: raw.size // 8 * 8].view(np.uint64)
        for start in range(0, words.size, step):
            np.bitwise_xor.reduce(words[start : start + step])

    def search() -> None:
        top_k(q, g, k, threads=threads)

    times: Dict[str, List[float]] = {"floor": [], "search": []}
    for _ in range(repeats + 1):  # interleaved, so both see the same machine load
        for name, fn in (("floor", floor), ("search", search)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    s_arr = np.asarray(times["search"][1:]) * 1000
    f_arr = np.asarray(times["floor"][1:]) * 1000
    s_ms, f_ms = float(np.median(s_arr)), float(np.median(f_arr))
    s_min, f_min = float(s_arr.min()), float(f_arr.min())
    return {"entries": n_entries, "dtype": dtype, "queries": queries,
            "threads": threads or search_threads(n_entries, dim, dtype),
            "search_ms": s_ms, "search_min_ms": s_min, "read_floor_ms": f_ms,
            "read_floor_min_ms": f_min,
            "ratio_to_floor": s_ms / f_ms if f_ms > 0 else float("nan"),
            "ratio_to_floor_min": s_min / f_min if f_min > 0 else float("nan"),
            "gallery_mb": g.nbytes / 2**20}  # fmt: skip
