"""Classifier decisions equal a plain reference: every label ranked by its best exemplar
(higher score first, ties to the exemplar registered first; a label's exemplar is its first
row among its best score), margin to the second label, parents and entry ids, threshold
strict. Random and adversarial galleries: many rows per label, one row per label, single-row
labels, queries equal to rows, exact ties, float16 and float32, empty, top_k above the number
of labels, many spans and several threads."""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from docedge.runtime import search
from docedge.runtime.classifier import decide, load_index
from docedge.runtime.gallery import Gallery, write_gallery
from docedge.runtime.search import to_score, top_k, top_labels
from docedge.runtime.thresholds import OperatingPoint

FP = {"model_sha256": "m" * 64, "artifact_sha256": "a" * 64, "precision": "fp32",
      "preprocess": "{}"}  # fmt: skip


# --- the reference (deliberately simple: full score matrix, Python loops) ---------------------
def ref_rank(s_row: np.ndarray, row_labels: Sequence[int]) -> List[tuple]:
    """``[(label, score, row)]`` of every label, best first, for one query's scores."""
    best: dict = {}
    for r, lbl in enumerate(row_labels):  # ascending rows: a later equal score never wins
        if lbl not in best or s_row[r] > best[lbl][0]:
            best[lbl] = (s_row[r], r)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[1][1]))
    return [(lbl, float(sc), r) for lbl, (sc, r) in ranked]


def ref_decisions(g32, labels, parents, ids, queries, threshold, k):
    """Per query ``(label or None, parent or None, score, margin, [(label, parent, score,
    entry id)] * k)`` as the classifier defines them."""
    parent_of: dict = {}
    for lbl, par in zip(labels, parents):
        parent_of.setdefault(lbl, par)
    s = to_score(np.asarray(queries, np.float32) @ g32.T)
    out = []
    for s_row in s:
        ranked = ref_rank(s_row, labels)[: max(k, 2)]
        cands = [(lbl, parent_of[lbl], sc, ids[r]) for lbl, sc, r in ranked]
        best = cands[0]
        margin = best[2] - cands[1][2] if len(cands) > 1 else None
        hit = best[2] > threshold
        out.append((best[0] if hit else None, best[1] if hit else None, best[2], margin,
                    cands[:k]))  # fmt: skip
    return out


def _assert_same(got, want, exact_scores: bool):
    assert len(got) == len(want)
    tol = 0 if exact_scores else 2e-6
    for d, (label, parent, score, margin, cands) in zip(got, want):
        assert (d.label, d.parent) == (label, parent)
        assert [(c.label, c.parent, c.entry_id) for c in d.top_k] == \
            [(lbl, par, eid) for lbl, par, _, eid in cands]  # fmt: skip
        np.testing.assert_allclose([c.score for c in d.top_k], [c[2] for c in cands],
                                   atol=tol, rtol=0)  # fmt: skip
        assert d.score == pytest.approx(score, abs=tol)
        if margin is None:
            assert d.margin is None
        else:
            assert d.margin == pytest.approx(margin, abs=2 * tol)


# --- galleries -----------------------------------------------------------------------------
def _vectors(rng, n: int, kind: str) -> np.ndarray:
    if kind == "ties":  # 4 entries of +-1/2 among 8 dims: scores are multiples of 1/8, exact
        v = np.zeros((n, 256), np.float32)
        for i in range(n):
            dims = rng.choice(8, 4, replace=False)
            v[i, dims] = rng.choice([-0.5, 0.5], 4)
        return v
    v = rng.standard_normal((n, 256)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _row_labels(rng, n: int, layout: str, n_labels: int) -> List[int]:
    if layout == "one_per_label":
        return list(rng.permutation(n))
    if layout == "many_per_label":
        return list(rng.integers(0, min(n_labels, 3), n))
    if layout == "single_rows":  # half the rows in two big labels, the rest one row each
        big = rng.integers(0, 2, n)
        return [int(b) if rng.random() < 0.5 else 2 + i for i, b in enumerate(big)]
    return list(rng.integers(0, n_labels, n))


def _gallery(tmp_path, rng, n, layout, n_labels, values, dtype, name="g.gal"):
    codes = _row_labels(rng, n, layout, n_labels)
    labels = [f"type{c}/v{c % 3}" if c % 2 else f"type{c}" for c in codes]
    # some rows name another parent explicitly ("": derived from the label): a label's
    # parent is its first row's
    parents = [f"alt{c}" if rng.random() < 0.3 else "" for c in codes]
    emb = _vectors(rng, n, values)
    g = write_gallery(tmp_path / name, FP, emb, labels, dtype=dtype, parents=parents)
    g = Gallery.open(g.path)
    return g, np.asarray(g.embeddings, np.float32)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 300), n_labels=st.integers(1, 40), k=st.integers(1, 9),
       layout=st.sampled_from(["random", "one_per_label", "many_per_label", "single_rows"]),
       values=st.sampled_from(["gauss", "ties"]), dtype=st.sampled_from(["float16", "float32"]),
       queries=st.sampled_from(["rows", "random"]), seed=st.integers(0, 2**16))  # fmt: skip
def test_decisions_equal_the_reference(tmp_path_factory, n, n_labels, k, layout, values, dtype,
                                       queries, seed):  # fmt: skip
    rng = np.random.default_rng(seed)
    tmp = tmp_path_factory.mktemp("g")
    g, g32 = _gallery(tmp, rng, n, layout, n_labels, values, dtype)
    q = g32[rng.integers(0, n, 5)] if queries == "rows" else _vectors(rng, 5, values)
    op = OperatingPoint(float(rng.uniform(0.3, 0.95)), None, None, "explicit")
    got = decide(load_index(g), op, k, q)
    want = ref_decisions(g32, g.row_labels, g.row_parents, g.ids, q, op.threshold, k)
    _assert_same(got, want, exact_scores=values == "ties")


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 700), n_labels=st.integers(1, 60), k=st.integers(1, 12),
       nq=st.sampled_from([1, 3, 17]), threads=st.sampled_from([1, 3]),
       values=st.sampled_from(["gauss", "ties"]), dense_min=st.sampled_from([0, 4096]),
       runs=st.booleans(), seed=st.integers(0, 2**16))  # fmt: skip
def test_labels_are_exact_across_many_spans_and_threads(n, n_labels, k, nq, threads, values,
                                                        dense_min, runs, seed):  # fmt: skip
    """Blocks of 8 rows and spans of a few blocks: the streaming merge, the dense merges (best
    rows first, then every label where those do not settle it) and the merge across threads
    all run."""
    rng = np.random.default_rng(seed)
    g = _vectors(rng, n, values)
    lab = rng.integers(0, n_labels, n)
    if runs:  # each label's exemplars registered together (a register folder per label)
        lab = np.sort(lab)
    q = np.concatenate([g[rng.integers(0, n, nq - nq // 2)], _vectors(rng, nq // 2, values)])
    saved = search._SPAN_VALUES, search._DENSE_MIN, search._DENSE_EXTRA
    # spans of a few blocks; dense merges for any span with survivors, taking few rows first
    search._SPAN_VALUES, search._DENSE_MIN, search._DENSE_EXTRA = 64, dense_min, 0
    try:
        got = top_labels(q, g, lab, k, chunk_rows=8, threads=threads)
        rows, sc = top_k(q, g, k, chunk_rows=8, threads=threads)
    finally:
        search._SPAN_VALUES, search._DENSE_MIN, search._DENSE_EXTRA = saved
    s = to_score(q @ g.T)
    tol = 0 if values == "ties" else 2e-6
    for j in range(nq):
        want = ref_rank(s[j], lab.tolist())[:k]
        assert [(lbl, r) for lbl, _, r in got[j]] == [(lbl, r) for lbl, _, r in want]
        np.testing.assert_allclose([x[1] for x in got[j]], [x[1] for x in want], atol=tol, rtol=0)
        want_rows = ref_rank(s[j], list(range(n)))[:k]
        assert rows[j].tolist() == [r for _, _, r in want_rows]
        np.testing.assert_allclose(sc[j], [x[1] for x in want_rows], atol=tol, rtol=0)


def test_identical_exemplars_rank_in_registration_order_beyond_k(tmp_path):
    """More exact ties than the labels asked for: the first registered ones win. (The
    previous search fetched 32 rows by an unordered partition and then reported rows 197-199
    of 200 identical exemplars, and labels 18-20 of 50.)"""
    v = _vectors(np.random.default_rng(1), 1, "gauss")
    g = np.repeat(v, 200, axis=0)
    assert top_k(v, g, 3)[0].tolist() == [[0, 1, 2]]
    got = top_labels(v, g, np.arange(200) % 50, 3)
    assert [(lbl, r) for lbl, _, r in got[0]] == [(0, 0), (1, 1), (2, 2)]


def test_an_empty_gallery_and_top_k_beyond_the_labels(tmp_path):
    empty = Gallery.create(tmp_path / "e.gal", FP)
    op = OperatingPoint(0.5, None, None, "explicit")
    (d,) = decide(load_index(Gallery.open(empty.path)), op, 5, np.eye(1, 256, dtype=np.float32))
    assert (d.label, d.best, d.margin, d.top_k) == (None, None, None, [])
    rng = np.random.default_rng(3)
    g, g32 = _gallery(tmp_path, rng, 6, "many_per_label", 2, "gauss", "float16", "two.gal")
    got = decide(load_index(g), op, 10, g32[:2])
    want = ref_decisions(g32, g.row_labels, g.row_parents, g.ids, g32[:2], 0.5, 10)
    _assert_same(got, want, exact_scores=False)
    assert all(len(d.top_k) == len(set(g.row_labels)) for d in got)


def test_a_nan_query_is_refused_not_hidden(tmp_path):
    from docedge.runtime.errors import GalleryError

    g, _ = _gallery(tmp_path, np.random.default_rng(0), 20, "random", 4, "gauss", "float32")
    q = np.full((1, 256), np.nan, np.float32)
    with pytest.raises(GalleryError, match="outside"):
        decide(load_index(g), OperatingPoint(0.5, None, None, "explicit"), 3, q)


def _no_copy(index) -> Optional[bool]:
    return isinstance(index.matrix, np.memmap) or index.matrix.base is not None


def test_float16_galleries_are_searched_without_a_float32_copy(tmp_path):
    g, g32 = _gallery(tmp_path, np.random.default_rng(5), 50, "random", 7, "gauss", "float16")
    index = load_index(g)
    assert index.matrix.dtype == np.float16 and _no_copy(index)
    op = OperatingPoint(0.5, None, None, "explicit")
    _assert_same(decide(index, op, 4, g32[:3]),
                 ref_decisions(g32, g.row_labels, g.row_parents, g.ids, g32[:3], 0.5, 4),
                 exact_scores=False)  # fmt: skip


def test_a_dense_merge_that_fills_up_on_old_labels_still_sees_the_whole_span(monkeypatch):
    """The first span holds only label C (low scores); the second span's best rows are all
    label A, so taking them fills the two slots with A and the old C; label B, below those
    rows but above C, must still be found (a merge stopping at "k labels held" missed it)."""
    monkeypatch.setattr(search, "_SPAN_VALUES", 64)
    monkeypatch.setattr(search, "_DENSE_EXTRA", 0)
    cos = np.concatenate([np.full(64, -0.5), np.full(8, 0.9), [0.5], np.zeros(55)])
    g = np.zeros((128, 256), np.float32)
    g[:, 0], g[:, 1] = cos, np.sqrt(1 - cos**2)
    lab = np.array([2] * 64 + [0] * 8 + [1] + [0] * 55)  # C = 2, A = 0, B = 1
    q = np.eye(1, 256, dtype=np.float32)
    got = top_labels(q, g, lab, 2, chunk_rows=8, threads=1)
    assert [(lbl, r) for lbl, _, r in got[0]] == [(0, 64), (1, 72)]
