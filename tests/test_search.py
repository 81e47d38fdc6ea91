"""Search: scores in (cos+1)/2, exact top-k across chunks, float16 galleries converted exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docedge.runtime.search import (
    as_float32,
    benchmark_search,
    best_per_label,
    pairwise_scores,
    scores,
    top_k,
    top_labels,
)


def unit(n, seed=0):
    v = np.random.default_rng(seed).standard_normal((n, 256)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_scores_are_cosine_mapped_to_unit_interval():
    g = unit(4)
    s = scores(g[:2], g)
    np.testing.assert_allclose(s, (g[:2] @ g.T + 1) / 2, atol=1e-6)
    np.testing.assert_allclose(np.diag(pairwise_scores(g)), 1.0, atol=1e-6)
    assert s.dtype == np.float32


def test_top_k_is_exact_across_chunks():
    g, q = unit(1000), unit(3, seed=1)
    idx, sc = top_k(q, g, k=7, chunk_rows=64)
    ref = np.argsort(-(q @ g.T), axis=1)[:, :7]
    np.testing.assert_array_equal(idx, ref)
    assert np.all(np.diff(sc, axis=1) <= 0)


def test_float16_galleries_are_converted_exactly():
    g16 = unit(300).astype(np.float16)
    np.testing.assert_array_equal(as_float32(g16), g16.astype(np.float32))
    q = unit(2, seed=3)
    i16, s16 = top_k(q, g16, 5, chunk_rows=50)
    i32, s32 = top_k(q, g16.astype(np.float32), 5)
    np.testing.assert_array_equal(i16, i32)
    np.testing.assert_array_equal(s16, s32)


def test_best_per_label_aggregates_exemplars():
    row = np.array([0.2, 0.9, 0.5, 0.7], np.float32)
    np.testing.assert_array_equal(
        best_per_label(row, np.array([0, 1, 0, 2]), 4),
        np.array([0.5, 0.9, 0.7, -np.inf], np.float32),
    )


def test_threads_and_chunking_do_not_change_results():
    g, q = unit(5000).astype(np.float16), unit(4, seed=2)
    i1, s1 = top_k(q, g, 9, threads=1)
    i3, s3 = top_k(q, g, 9, threads=3)  # same chunks, split between threads: identical
    np.testing.assert_array_equal(i1, i3)
    np.testing.assert_array_equal(s1, s3)
    i4, s4 = top_k(q, g, 9, chunk_rows=256, threads=2)  # other BLAS block shapes: within 1 ulp
    np.testing.assert_array_equal(i1, i4)
    np.testing.assert_allclose(s1, s4, atol=1e-7, rtol=0)
    np.testing.assert_array_equal(scores(q, g, threads=1), scores(q, g, threads=4))
    np.testing.assert_allclose(scores(q, g), scores(q, g, chunk_rows=100), atol=1e-7, rtol=0)


def test_edge_cases():
    g = unit(3)
    idx, sc = top_k(g[0], g, k=10)  # 1-D query, k > gallery size
    assert idx.shape == (1, 3) and idx[0, 0] == 0 and sc[0, 0] == np.float32(1.0)
    idx, sc = top_k(unit(2), np.empty((0, 256), np.float32), 5)
    assert idx.shape == (2, 0) and sc.shape == (2, 0)
    assert scores(unit(2), np.empty((0, 256), np.float32)).shape == (2, 0)
    tied = np.repeat(unit(1), 4, axis=0)
    assert top_k(tied[0], tied, 4)[0].tolist() == [[0, 1, 2, 3]]  # ties: registration order
    assert top_labels(unit(1), np.empty((0, 256), np.float32), np.array([], np.int64), 3) == [[]]


def _brute_labels(q, g, ids, k):
    s = (q @ g.T + 1) / 2
    out = []
    for row in s:
        best = {}
        for r in np.lexsort((np.arange(len(row)), -row)):
            best.setdefault(int(ids[r]), (float(row[r]), int(r)))
        ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[1][1]))[:k]
        out.append([(lbl, sc, r) for lbl, (sc, r) in ranked])
    return out


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 400), n_labels=st.integers(1, 30), k=st.integers(1, 8),
       skew=st.booleans(), seed=st.integers(0, 10_000))  # fmt: skip
def test_top_labels_is_exact(n, n_labels, k, skew, seed):
    rng = np.random.default_rng(seed)
    g = unit(n, seed=seed)
    q = unit(3, seed=seed + 1)
    ids = rng.integers(0, n_labels, n)
    if skew:  # one label owns the neighbourhood of query 0: forces a wider fetch
        near = np.argsort(-(g @ q[0]))[: n // 2]
        ids[near] = 0
    got = top_labels(q, g, ids, k, chunk_rows=64)
    want = _brute_labels(q, g, ids, k)
    for a, b in zip(got, want):
        assert [(lbl, r) for lbl, _, r in a] == [(lbl, r) for lbl, _, r in b]
        np.testing.assert_allclose([s for _, s, _ in a], [s for _, s, _ in b], atol=1e-6)


def test_benchmark_search_reports_the_floor():
    r = benchmark_search(2000, "float16", repeats=2)
    assert r["entries"] == 2000 and r["dtype"] == "float16" and r["read_floor_ms"] > 0
    assert r["ratio_to_floor"] == pytest.approx(r["search_ms"] / r["read_floor_ms"])
    assert r["gallery_mb"] == pytest.approx(2000 * 256 * 2 / 2**20)


@pytest.mark.parametrize("nq", [1, 3, 40])
def test_selection_across_many_spans_is_exact(monkeypatch, nq):
    import docedge.runtime.search as search

    monkeypatch.setattr(search, "_SPAN_VALUES", 256)  # spans of 64 rows: the merge path
    g, q = unit(3000), unit(nq, seed=4)
    g[2500] = g[100]  # an exact tie across spans: the earlier row wins
    q[0] = g[100]
    for threads in (1, 2):
        idx, _ = top_k(q, g, 6, chunk_rows=64, threads=threads)
        s = (q @ g.T + 1) / 2
        ref = np.lexsort((np.broadcast_to(np.arange(3000), s.shape), -s), axis=1)[:, :6]
        np.testing.assert_array_equal(idx, ref)
        assert idx[0, 0] == 100 and idx[0, 1] == 2500
    labels = np.arange(3000) % 7
    got = top_labels(q, g, labels, 4, chunk_rows=64)
    assert [[(lbl, r) for lbl, _, r in x] for x in got] == \
        [[(lbl, r) for lbl, _, r in x] for x in _brute_labels(q, g, labels, 4)]  # fmt: skip


def test_concurrent_searches_leave_the_blas_threads_as_they_were():
    """BLAS is limited to one thread while searches run; overlapping searches in several
    threads restore the process's setting only when the last one ends."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from concurrent.futures import ThreadPoolExecutor

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas"]  # fmt: skip

    before = blas_threads()
    g, q = unit(20000).astype(np.float16), unit(3, seed=5)
    with ThreadPoolExecutor(4) as ex:
        ref = top_k(q, g, 5)
        for rows, _ in ex.map(lambda _: top_k(q, g, 5, threads=2), range(24)):
            np.testing.assert_array_equal(rows, ref[0])
    assert blas_threads() == before
