"""Vectorized nearest-neighbour search in DocClassifier's score space.

Scores are ``(cos + 1) / 2`` of unit vectors. The gallery is scanned block by block: a block
of :data:`CHUNK_ROWS` rows is converted to float32 into one buffer per thread (float16 rows
exactly, through OpenCV's F16C path where available) and multiplied by the queries (BLAS) while
it is still in the L2 cache, so each gallery byte is read from memory once and no float32 copy
of the gallery is ever made. Threads split the gallery into contiguous ranges (OpenCV and BLAS
release the GIL); BLAS itself is kept to one thread per call while the search runs when
``threadpoolctl`` is installed (otherwise BLAS keeps its own threading).

Selection is exact and streaming: each thread holds, per query, its best ``k`` rows (or
labels: a label ranks by its best exemplar) seen so far; once ``k`` are held, a span of scores
contributes only its values above each query's current ``k``-th best (one comparison pass; the
few survivors are merged by sorting). Order: higher score first, ties to the lower row (a
label's exemplar is its lowest row among its best score). Memory stays bounded by a span of
scores per thread for any gallery size.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

#: Gallery rows per block (256-d: 1 MiB as float32, in L2 with its float16 source; small
#: enough that one BLAS call stays single-threaded even where BLAS threading is not limited).
CHUNK_ROWS = 1024
#: Scores per selection span (256 KiB of float32: stays in L2 between product and selection).
_SPAN_VALUES = 1 << 16
#: Galleries with fewer multiply-adds than this are searched by one thread.
_THREAD_MIN_MACS = 1 << 22
#: Environment override of the number of search threads.
THREADS_ENV = "DOCEDGE_SEARCH_THREADS"
#: A span with more survivors than this (or a 16th of its scores) is merged densely.
_DENSE_MIN = 4096
#: Rows per query a dense merge takes first: ``4 k`` plus this many.
_DENSE_EXTRA = 28
#: Row index of an empty candidate slot (sorts after every real row).
_NO_ROW = np.iinfo(np.int64).max
#: Cosine slack when a score threshold is turned into a cosine one: a superset of the rows
#: that can pass (the exact score test follows); float32 rounding of ``(c + 1) / 2`` is below
#: 1.2e-7.
_COS_SLACK = 1e-6


def _probe_cv2_half() -> bool:
    """Whether OpenCV converts float16 arrays (CV_16F) to float32 here, exactly and into a
    given buffer (about 4x faster than numpy's ``astype``). Older OpenCV builds fall back to
    numpy."""
    try:
        import cv2

        x = np.array([[0.5, -1.25, 65504.0, 6e-8, -0.0]], np.float16)
        dst = np.empty(x.shape, np.float32)
        y = cv2.add(x, 0.0, dst=dst, dtype=cv2.CV_32F)  # type: ignore[call-overload]
        return bool(y is dst or np.shares_memory(y, dst)) and bool(
            np.array_equal(dst, x.astype(np.float32))
        )
    except Exception:  # any cv2 error: use numpy
        return False


_CV2_HALF = _probe_cv2_half()


def _convert_into(block: np.ndarray[Any, Any], dst: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """float16 block ``(n, D)`` -> float32 ``dst`` ``(n, D)`` (exact); returns ``dst``."""
    if _CV2_HALF and block.shape[0] > 0:
        import cv2

        cv2.add(np.ascontiguousarray(block), 0.0, dst=dst, dtype=cv2.CV_32F)  # type: ignore[call-overload]
        return dst
    np.copyto(dst, block)
    return dst


def as_float32(block: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A float32 view/copy of a gallery block ``(n, D)`` (float16 converted exactly)."""
    if block.dtype == np.float32:
        return block
    if block.dtype == np.float16 and block.ndim == 2:
        return _convert_into(block, np.empty(block.shape, np.float32))
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
_BLAS: List[Any] = []  # [threadpoolctl controller or None], probed once


def _cpu_count() -> int:
    getaff = getattr(os, "sched_getaffinity", None)
    if getaff is not None:
        try:
            return max(1, len(getaff(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


def search_threads(rows: int, dim: int, dtype: Any, queries: int = 1) -> int:
    """Threads used to scan a gallery: ``$DOCEDGE_SEARCH_THREADS`` if set; else one for small
    galleries and for one float32 query (memory-bound: one core reads at the floor), and up to
    4 (the cores available) otherwise (float16 conversion or matrix products bound)."""
    env = os.environ.get(THREADS_ENV)
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    if rows * dim * max(1, queries) < _THREAD_MIN_MACS:
        return 1
    if np.dtype(dtype) == np.float32 and queries <= 1:
        return 1
    return min(4, _cpu_count())


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(4, _cpu_count()),
                                       thread_name_prefix="docedge-search")  # fmt: skip
        return _POOL


_BLAS_LOCK = threading.Lock()
_BLAS_LIMIT: List[Any] = [0, None]  # [searches running, the limiter that restores BLAS]


@contextlib.contextmanager
def _blas_single_thread() -> Iterator[None]:
    """BLAS limited to one thread per call while searches run (the search threads over
    blocks itself; a threaded BLAS call per block would wait for busy cores). Uses
    threadpoolctl when installed; without it BLAS keeps its own setting. The limit is
    process-wide, so it is set by the first search that starts and restored by the last one
    that ends (concurrent searches never restore a limit another one set)."""
    with _BLAS_LOCK:
        if not _BLAS:
            try:
                from threadpoolctl import ThreadpoolController

                _BLAS.append(ThreadpoolController())
            except Exception:  # not installed (it is optional) or no BLAS found
                _BLAS.append(None)
        ctl = _BLAS[0]
        if ctl is not None:
            if _BLAS_LIMIT[0] == 0:
                _BLAS_LIMIT[1] = ctl.limit(limits=1, user_api="blas")  # applied now
            _BLAS_LIMIT[0] += 1
    try:
        yield
    finally:
        if ctl is not None:
            with _BLAS_LOCK:
                _BLAS_LIMIT[0] -= 1
                if _BLAS_LIMIT[0] == 0:
                    _BLAS_LIMIT[1].restore_original_limits()
                    _BLAS_LIMIT[1] = None


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
              out: np.ndarray[Any, Any], chunk_rows: int,
              conv: Optional[np.ndarray[Any, Any]]) -> None:  # fmt: skip
    """Cosines of gallery rows ``[a, b)`` with the queries into ``out`` ``(b - a, Q)``; float16
    blocks go through ``conv`` ``(chunk_rows, D)`` float32 (one buffer per thread, in L2)."""
    for c0 in range(a, b, chunk_rows):
        c1 = min(b, c0 + chunk_rows)
        block = gallery[c0:c1]
        if conv is not None:
            block = _convert_into(block, conv[: c1 - c0])
        np.matmul(block, qt, out=out[c0 - a : c1 - a])


def _conv_buffer(gallery: np.ndarray[Any, Any], chunk_rows: int) -> Optional[np.ndarray[Any, Any]]:
    if gallery.dtype == np.float32:
        return None
    return np.empty((min(chunk_rows, max(1, gallery.shape[0])), gallery.shape[1]), np.float32)


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
    t = threads or search_threads(n, gallery.shape[1], gallery.dtype, qt.shape[1])

    def run(a: int, b: int) -> None:
        _cos_into(qt, gallery, a, b, out_t[a:b], chunk_rows, _conv_buffer(gallery, chunk_rows))

    with _blas_single_thread():
        ranges = _ranges(n, t, chunk_rows)
        if len(ranges) <= 1:
            for a, b in ranges:
                run(a, b)
        else:
            for f in [_pool().submit(run, a, b) for a, b in ranges]:
                f.result()
    out_t += np.float32(1)
    out_t *= np.float32(0.5)
    result: np.ndarray[Any, Any] = out_t.T
    return result


# --- exact streaming selection -----------------------------------------------------------------
class _Held:
    """Per query, the best ``k`` candidates so far, best first: ``score`` (Q, k) float32
    (``-inf`` in empty slots), ``row`` (Q, k) int64 (``_NO_ROW`` when empty), ``label``
    (Q, k) int64 (the row itself when searching rows)."""

    def __init__(self, nq: int, k: int) -> None:
        self.k = k
        self.score = np.full((nq, k), -np.inf, np.float32)
        self.row = np.full((nq, k), _NO_ROW, np.int64)
        self.label = np.full((nq, k), -1, np.int64)

    def tau(self) -> np.ndarray[Any, Any]:
        """Per query the score a new (later) row must beat: the ``k``-th best, or ``-inf``
        while fewer than ``k`` are held (NaN scores rank as +inf, see :func:`_key`)."""
        last = _key(self.score[:, -1])
        out: np.ndarray[Any, Any] = np.where(self.row[:, -1] == _NO_ROW, -np.inf, last)
        return out

    def full(self) -> bool:
        return bool(np.all(self.row[:, -1] != _NO_ROW))

    def merge(self, q: np.ndarray[Any, Any], score: np.ndarray[Any, Any],
              row: np.ndarray[Any, Any], label: Optional[np.ndarray[Any, Any]]) -> None:  # fmt: skip
        """Merge flat candidates (query index, score, row, label; ``label`` None: rows) into
        the held best ``k`` per query: one per label (its best score, then lowest row)."""
        nq, k = self.score.shape
        have = self.row.reshape(-1) != _NO_ROW
        all_q = np.concatenate([np.repeat(np.arange(nq), k)[have], q])
        all_s = np.concatenate([self.score.reshape(-1)[have], score])
        all_r = np.concatenate([self.row.reshape(-1)[have], row])
        neg = -_key(all_s)
        if label is not None:
            all_l = np.concatenate([self.label.reshape(-1)[have], label])
            order = np.lexsort((all_r, neg, all_l, all_q))
            gq, gl = all_q[order], all_l[order]
            first = np.ones(order.size, bool)
            first[1:] = (gq[1:] != gq[:-1]) | (gl[1:] != gl[:-1])
            sel = order[first]  # each (query, label) once: its best score, lowest row
            all_q, all_s, all_r, all_l, neg = all_q[sel], all_s[sel], all_r[sel], all_l[sel], neg[sel]
        else:
            all_l = all_r
        order = np.lexsort((all_r, neg, all_q))
        gq = all_q[order]
        rank = np.arange(order.size) - np.searchsorted(gq, np.arange(nq))[gq]
        keep = rank < k
        o, qq, rr = order[keep], gq[keep], rank[keep]
        self.score.fill(-np.inf)
        self.row.fill(_NO_ROW)
        self.label.fill(-1)
        self.score[qq, rr] = all_s[o]
        self.row[qq, rr] = all_r[o]
        self.label[qq, rr] = all_l[o]


def _key(score: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Sort key of scores: NaN (a non-unit vector) ranks first, so it is reported and refused
    rather than hidden."""
    s = np.asarray(score, np.float32)
    out: np.ndarray[Any, Any] = np.where(np.isnan(s), np.float32(np.inf), s)
    return out


def _dense_span(held: _Held, cos: np.ndarray[Any, Any], s0: int,
                labels: Optional[np.ndarray[Any, Any]]) -> None:  # fmt: skip
    """Merge a whole span of cosines ``(w, Q)`` (rows ``s0 + i``) into ``held``: first each
    query's best rows, then, where those do not settle the best ``k`` labels, every label's
    best score and lowest row of that score (segmented max over the span's rows grouped by
    label)."""
    w, nq = cos.shape
    k = held.k
    sc = _key(to_score(cos))  # (w, Q); NaN -> +inf (reported as NaN below)
    # The best m rows of each query and all rows tied with the m-th (at least the k-th best
    # held): exact for rows. For labels it is exact where the k-th label held afterwards
    # scores at least that threshold, as every row left out scores below it.
    m = min(w, 4 * k + _DENSE_EXTRA)
    thr = held.tau()
    if m < w:
        thr = np.maximum(np.partition(sc, w - m, axis=0)[w - m], thr)
    ri, qi = np.divmod(np.flatnonzero(sc >= thr[None, :]), nq)
    held.merge(qi, to_score(cos[ri, qi]), ri.astype(np.int64) + s0,
               None if labels is None else labels[ri + s0].astype(np.int64))  # fmt: skip
    if labels is None or m == w or np.all(held.tau() >= thr):
        return
    # Some query's best rows hold fewer than k labels: every label's best row in the span.
    lab = labels[s0 : s0 + w]
    perm = np.argsort(lab, kind="stable")  # rows grouped by label, ascending within
    sl = lab[perm]
    starts = np.flatnonzero(np.concatenate([[True], sl[1:] != sl[:-1]]))
    sp = sc[perm]
    cand_s = np.maximum.reduceat(sp, starts, axis=0)  # (L, Q) best score per label
    seg = np.cumsum(np.concatenate([[False], sl[1:] != sl[:-1]]))  # segment of each row
    pos = np.where(sp == cand_s[seg], np.arange(w)[:, None], w)
    first = np.minimum.reduceat(pos, starts, axis=0)  # (L, Q) first row at the best
    cand_row = perm[first]  # (L, Q)
    cand_lab = sl[starts]
    n_lab = cand_s.shape[0]
    if n_lab > k:  # whatever cannot be in the best k (ties at the k-th value are all kept)
        kth = np.partition(cand_s, n_lab - k, axis=0)[n_lab - k]
        keep = cand_s >= np.maximum(kth, held.tau())[None, :]
    else:
        keep = cand_s >= held.tau()[None, :]
    ci, qi = np.divmod(np.flatnonzero(keep), nq)
    rows = cand_row[ci, qi].astype(np.int64)
    held.merge(qi, to_score(cos[rows, qi]), rows + s0, cand_lab[ci].astype(np.int64))


def _scan(qt: np.ndarray[Any, Any], gallery: np.ndarray[Any, Any], a: int, b: int, k: int,
          labels: Optional[np.ndarray[Any, Any]], chunk_rows: int) -> _Held:  # fmt: skip
    """The best ``k`` rows (``labels`` None) or labels of gallery rows ``[a, b)`` per query."""
    nq = qt.shape[1]
    held = _Held(nq, k)
    span = max(chunk_rows, (_SPAN_VALUES // max(1, nq)) // chunk_rows * chunk_rows)
    buf = np.empty((min(span, b - a), nq), np.float32)
    maskbuf = np.empty(buf.shape, bool)
    conv = _conv_buffer(gallery, chunk_rows)
    for s0 in range(a, b, span):
        s1 = min(b, s0 + span)
        cos = buf[: s1 - s0]
        _cos_into(qt, gallery, s0, s1, cos, chunk_rows, conv)
        if not held.full():
            _dense_span(held, cos, s0, labels)
            continue
        tau = held.tau()
        lo = (2.0 * tau.astype(np.float64) - 1.0 - _COS_SLACK).astype(np.float32)
        mask = np.less_equal(cos, lo, out=maskbuf[: s1 - s0])
        np.logical_not(mask, out=mask)  # NaN passes (reported, then refused)
        count = int(np.count_nonzero(mask))  # usually 0 once k are held: no index pass
        if count == 0:
            continue
        if count > max(_DENSE_MIN, cos.size // 16):  # many survivors: merge densely
            _dense_span(held, cos, s0, labels)
            continue
        ri, qi = np.divmod(np.flatnonzero(mask), nq)  # (2-D nonzero is 30x slower)
        sc = to_score(cos[ri, qi])
        ok = _key(sc) > tau[qi]  # a later row must beat the k-th best (ties: lower row)
        if not np.any(ok):
            continue
        ri, qi, sc = ri[ok], qi[ok], sc[ok]
        rows = ri.astype(np.int64) + s0
        held.merge(qi, sc, rows, None if labels is None else labels[rows].astype(np.int64))
    return held


def _search(queries: np.ndarray[Any, Any], gallery: np.ndarray[Any, Any], k: int,
            labels: Optional[np.ndarray[Any, Any]], chunk_rows: int,
            threads: Optional[int]) -> _Held:  # fmt: skip
    qt = _prepare(queries, gallery)
    nq, n = qt.shape[1], gallery.shape[0]
    t = threads or search_threads(n, gallery.shape[1], gallery.dtype, nq)
    ranges = _ranges(n, t, chunk_rows)
    with _blas_single_thread():
        if len(ranges) == 1:
            return _scan(qt, gallery, 0, n, k, labels, chunk_rows)
        futures = [_pool().submit(_scan, qt, gallery, a, b, k, labels, chunk_rows)
                   for a, b in ranges]  # fmt: skip
        parts = [f.result() for f in futures]
    # Each range holds its exact best k (labels: by their best exemplar in the range), so the
    # best k of their union is the best k of the gallery.
    held = _Held(nq, k)
    have = [p.row != _NO_ROW for p in parts]
    held.merge(np.concatenate([np.nonzero(h)[0] for h in have]),
               np.concatenate([p.score[h] for p, h in zip(parts, have)]),
               np.concatenate([p.row[h] for p, h in zip(parts, have)]),
               None if labels is None else
               np.concatenate([p.label[h] for p, h in zip(parts, have)]))  # fmt: skip
    return held


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
    held = _search(qt.T, gallery, k, None, chunk_rows, threads)
    return held.row, held.score


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
               threads: Optional[int] = None,
               n_labels: Optional[int] = None) -> List[List[Tuple[int, float, int]]]:  # fmt: skip
    """Per query, the best ``k`` labels by their best exemplar: ``(label index, score, row of
    that exemplar)``, best first (ties: the exemplar's lower row first; a label's exemplar is
    its lowest row among its best score). ``label_ids``: ``(G,)`` label index per row;
    ``n_labels``: how many distinct labels they hold (counted when not given). One pass over
    the gallery, selecting labels as it goes (no per-label scan)."""
    qt = _prepare(queries, gallery)
    nq, n = qt.shape[1], gallery.shape[0]
    if n == 0 or k <= 0:
        return [[] for _ in range(nq)]
    ids = np.asarray(label_ids, np.int64)
    if ids.shape != (n,):
        raise ValueError(f"label_ids {ids.shape} do not match the gallery's {n} rows")
    distinct = int(np.unique(ids).size) if n_labels is None else int(n_labels)
    held = _search(qt.T, gallery, max(1, min(int(k), distinct)), ids, chunk_rows, threads)
    out: List[List[Tuple[int, float, int]]] = []
    lab, sc, rows = held.label.tolist(), held.score.tolist(), held.row.tolist()
    for j in range(nq):
        out.append([(lab[j][p], sc[j][p], rows[j][p]) for p in range(held.k)
                    if rows[j][p] != _NO_ROW])  # fmt: skip
    return out


# --- benchmark ---------------------------------------------------------------------------------
def random_gallery(n_entries: int, dtype: str = "float32", dim: int = 256,
                   seed: int = 0) -> np.ndarray[Any, Any]:  # fmt: skip
    """Random unit vectors ``(n_entries, dim)`` in ``dtype`` (generated in bounded blocks)."""
    rng = np.random.default_rng(seed)
    g = np.empty((n_entries, dim), dtype)
    for s in range(0, n_entries, 65536):
        block = rng.standard_normal((min(65536, n_entries - s), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        g[s : s + block.shape[0]] = block
    return g


def read_floor(g: np.ndarray[Any, Any]) -> None:
    """Read every byte of ``g`` once (a single-threaded read-only XOR reduction over it as
    64-bit words, in 32 MiB steps): the memory-bandwidth floor of a search over it."""
    raw = g.reshape(-1).view(np.uint8)
    words = raw[: raw.size // 8 * 8].view(np.uint64)
    step = 1 << 22
    for start in range(0, words.size, step):
        np.bitwise_xor.reduce(words[start : start + step])


def gemm_peak_gflops(threads: int = 1, repeats: int = 5) -> float:
    """Measured float32 matrix-product peak (GFLOP/s, best of ``repeats``) of ``threads``
    threads each multiplying 1024 x 256 by 256 x 256 blocks in a loop with BLAS kept to one
    thread per call (the block shape a multi-query search uses, at full query width)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1024, 256), dtype=np.float32)
    b = rng.standard_normal((256, 256), dtype=np.float32)
    loops = 20

    def work() -> None:
        out = np.empty((1024, 256), np.float32)
        for _ in range(loops):
            np.matmul(a, b, out=out)

    best = float("inf")
    with _blas_single_thread():
        work()
        for _ in range(repeats):
            t0 = time.perf_counter()
            if threads <= 1:
                work()
            else:
                for f in [_pool().submit(work) for _ in range(threads)]:
                    f.result()
            best = min(best, time.perf_counter() - t0)
    return 2.0 * 1024 * 256 * 256 * loops * max(1, threads) / best / 1e9


def _timed(fns: Dict[str, Any], repeats: int) -> Dict[str, np.ndarray[Any, Any]]:
    """Milliseconds of each function over ``repeats`` interleaved rounds after one warm-up."""
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats + 1):  # interleaved, so all see the same machine load
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: np.asarray(v[1:]) * 1000 for name, v in times.items()}


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

    The floor is :func:`read_floor` over the same embedding bytes. Medians and minima over
    ``repeats`` runs after one warm-up (minima are the better estimate on a busy machine).
    Returns ``entries, dtype, queries, threads, search_ms, search_min_ms, read_floor_ms,
    read_floor_min_ms, ratio_to_floor`` (median / median), ``ratio_to_floor_min`` (min / min),
    ``gflops`` (multiply-adds x 2 per second at the minimum), ``gallery_mb``.
    """
    g = random_gallery(n_entries, dtype, dim, seed)
    q = np.asarray(g[:queries], np.float32)
    t = _timed({"floor": lambda: read_floor(g), "search": lambda: top_k(q, g, k, threads=threads)},
               repeats)  # fmt: skip
    s_arr, f_arr = t["search"], t["floor"]
    s_ms, f_ms = float(np.median(s_arr)), float(np.median(f_arr))
    s_min, f_min = float(s_arr.min()), float(f_arr.min())
    return {"entries": n_entries, "dtype": dtype, "queries": queries,
            "threads": threads or search_threads(n_entries, dim, dtype, queries),
            "search_ms": s_ms, "search_min_ms": s_min, "read_floor_ms": f_ms,
            "read_floor_min_ms": f_min,
            "ratio_to_floor": s_ms / f_ms if f_ms > 0 else float("nan"),
            "ratio_to_floor_min": s_min / f_min if f_min > 0 else float("nan"),
            "gflops": 2.0 * n_entries * dim * queries / (s_min / 1000) / 1e9 if s_min > 0
            else float("nan"),
            "gallery_mb": g.nbytes / 2**20}  # fmt: skip
