"""TPR@FPR tables follow the false-accept budget rule: for target FPR f with N impostor scores,
at most floor(f*N) false accepts (score > threshold, strict), the threshold maximizing TPR within
that budget; unsupported FPRs get no threshold; the f=1 row accepts every score."""

from __future__ import annotations

import numpy as np
import pytest

from docedge.calibration import roc
from docedge.calibration.roc import (
    auroc,
    false_accept_budget,
    format_table,
    pair_scores,
    tpr_at_fpr_table,
)

KEYS = {"fpr", "tpr", "threshold", "achieved_fpr", "false_accepts", "supported"}


def row(genuine, impostor, fpr):
    (r,) = tpr_at_fpr_table(
        np.asarray(genuine, np.float32), np.asarray(impostor, np.float32), [fpr]
    )
    assert set(r) == KEYS
    return r


def test_budget_allows_floor_f_times_n_false_accepts():
    impostor = np.arange(1, 11) / 20  # 0.05 .. 0.50, N = 10
    r = row([0.45, 0.48, 0.9], impostor, 0.1)  # budget 1: only 0.50 may pass
    assert r["supported"] and r["false_accepts"] == 1 and r["achieved_fpr"] == pytest.approx(0.1)
    assert r["threshold"] == pytest.approx(0.45)  # the 2nd highest impostor: accepts > 0.45
    assert r["tpr"] == pytest.approx(2 / 3)  # 0.45 itself is not > 0.45


def test_tied_impostors_at_the_threshold_are_all_rejected():
    impostor = [0.9, 0.8, 0.8, 0.8] + [0.1] * 6  # N = 10; f = 0.2 -> budget 2
    r = row([0.85, 0.8, 0.95], impostor, 0.2)
    # Any threshold below 0.8 would accept 4 impostors; 0.8 accepts 1 (the ties are excluded).
    assert r["threshold"] == pytest.approx(0.8)
    assert r["false_accepts"] == 1 and r["achieved_fpr"] == pytest.approx(0.1)
    assert r["tpr"] == pytest.approx(2 / 3)


def test_threshold_is_the_best_one_within_the_budget_on_random_data():
    rng = np.random.default_rng(3)
    gen = np.round(rng.uniform(0.4, 1.0, 300), 2).astype(np.float32)  # rounding makes ties
    imp = np.round(rng.uniform(0.0, 0.7, 2000), 2).astype(np.float32)
    candidates = np.unique(np.r_[gen, imp, -1.0]).astype(np.float64)
    for r in tpr_at_fpr_table(gen, imp, [1e-3, 1e-2, 0.05, 0.1, 0.5]):
        budget = false_accept_budget(r["fpr"], imp.size)
        allowed = [t for t in candidates if np.count_nonzero(imp > t) <= budget]
        best_tpr = max(np.count_nonzero(gen > t) / gen.size for t in allowed)
        assert r["tpr"] == pytest.approx(best_tpr)
        assert r["threshold"] == pytest.approx(min(allowed))
        assert r["false_accepts"] <= budget
        assert r["achieved_fpr"] == r["false_accepts"] / imp.size


def test_fpr_below_one_impostor_is_unsupported_and_gets_no_threshold():
    r = row([0.9], np.linspace(0, 0.5, 50), 1e-2)  # floor(0.01 * 50) = 0
    assert r == {"fpr": 0.01, "tpr": None, "threshold": None, "achieved_fpr": None,
                 "false_accepts": None, "supported": False}  # fmt: skip


def test_fpr_one_accepts_every_score_even_compared_in_float32():
    gen = np.array([0.5, 0.7], np.float32)  # the lowest score is a genuine one
    imp = np.array([0.6, 0.55, 0.9], np.float32)
    r = row(gen, imp, 1.0)
    assert r["supported"] and r["tpr"] == 1.0 and r["achieved_fpr"] == 1.0
    assert r["false_accepts"] == 3
    assert r["threshold"] < 0.5
    assert np.all(np.r_[gen, imp] > np.float32(r["threshold"]))
    assert np.float32(r["threshold"]) == np.nextafter(np.float32(0.5), np.float32(0))


def test_budget_survives_binary_rounding():
    assert 0.29 * 100 < 29  # the trap
    assert false_accept_budget(0.29, 100) == 29
    assert false_accept_budget(1e-2, 99) == 0
    assert false_accept_budget(1.0, 7) == 7


def test_empty_scores_are_refused():
    with pytest.raises(ValueError):
        tpr_at_fpr_table(np.array([]), np.array([0.1]))


def test_auroc_matches_a_hand_computed_value():
    # Pairs (genuine > impostor): 0.9 beats both, 0.8 beats both, 0.4 beats 0.3 only -> 5 / 6.
    assert auroc(np.array([0.9, 0.8, 0.4]), np.array([0.5, 0.3])) == pytest.approx(5 / 6)
    assert auroc(np.array([0.5]), np.array([0.5])) == pytest.approx(0.5)  # ties count half


def _unit(n, d, seed):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _naive(emb, labels):
    s = (emb @ emb.T + 1) / 2
    gen, imp = [], []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            (gen if labels[i] == labels[j] else imp).append(s[i, j])
    return np.array(gen, np.float32), np.array(imp, np.float32)


def test_pair_scores_are_all_same_and_different_label_pairs(monkeypatch):
    monkeypatch.setattr(roc, "PAIR_BLOCK_ROWS", 3)  # exercise block boundaries
    emb = _unit(10, 8, 0)
    labels = ["a", "a", "b", "c", "b", "a", "c", "c", "d", "b"]
    gen, imp, info = pair_scores(emb, labels)
    want_gen, want_imp = _naive(emb, labels)
    assert gen.dtype == np.float32 and imp.dtype == np.float32
    np.testing.assert_allclose(gen, want_gen, atol=1e-6)
    np.testing.assert_allclose(imp, want_imp, atol=1e-6)
    # 3 a's, 3 b's, 3 c's, 1 d: 3 + 3 + 3 genuine pairs, 45 - 9 impostor pairs.
    assert info == {"genuine_pairs": 9, "impostor_pairs": 36, "impostor_pairs_total": 36,
                    "impostors_sampled": False}  # fmt: skip


def test_pair_scores_samples_impostors_uniformly_and_reproducibly(monkeypatch):
    monkeypatch.setattr(roc, "PAIR_BLOCK_ROWS", 7)
    emb = _unit(40, 8, 1)
    labels = [i % 5 for i in range(40)]
    _, all_imp, _ = pair_scores(emb, labels)
    gen, imp, info = pair_scores(emb, labels, max_impostors=100, seed=4)
    assert info["impostor_pairs"] == 100 and info["impostors_sampled"]
    assert info["impostor_pairs_total"] == all_imp.size == 40 * 39 // 2 - 5 * (8 * 7 // 2)
    assert info["genuine_pairs"] == gen.size == 5 * 28  # genuine pairs are never sampled
    assert np.isin(imp, all_imp).all()
    assert np.array_equal(imp, pair_scores(emb, labels, max_impostors=100, seed=4)[1])
    assert not np.array_equal(imp, pair_scores(emb, labels, max_impostors=100, seed=5)[1])


def test_format_table_uses_the_published_layout():
    gen = np.linspace(0.6, 1.0, 50)
    imp = np.linspace(0.0, 0.7, 500)
    text = format_table(tpr_at_fpr_table(gen, imp))
    lines = text.splitlines()
    assert len(lines) == 4
    assert [c.strip() for c in lines[0].strip("|").split("|")] == [
        "FPR", "1e-5", "1e-4", "1e-3", "1e-2", "1e-1", "1"]  # fmt: skip
    assert set(lines[1]) <= {"|", "-"}
    tpr = [c.strip() for c in lines[2].strip("|").split("|")]
    assert tpr[0] == "TPR" and tpr[1:4] == ["n/a"] * 3 and tpr[-1] == "1.000"
    assert lines[3].startswith("| Threshold")
