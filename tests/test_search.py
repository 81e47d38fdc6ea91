"""Search: scores in (cos+1)/2, exact top-k across chunks, float16 galleries converted exactly."""

from __future__ import annotations

import numpy as np

from docedge.runtime.search import as_float32, best_per_label, pairwise_scores, scores, top_k


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
    np.testing.assert_array_equal(best_per_label(row, np.array([0, 1, 0, 2]), 4),
                                  np.array([0.5, 0.9, 0.7, -np.inf], np.float32))
