"""TPR@FPR tables and AUROC in DocClassifier's score space ((cos+1)/2; match if score > t).

The table rule (stricter than DocClassifier's "nearest ROC point", as face-recognition
evaluators do): for a target FPR ``f`` with ``N`` impostor scores, at most ``floor(f * N)``
false accepts are allowed; the threshold is the smallest one that keeps the false accepts
within that budget, which maximizes TPR. That threshold is the ``(budget + 1)``-th highest
impostor score: matching is strict (``score > t``), so every impostor tied with it is rejected
and the budget is never exceeded. The achieved FPR is recorded. When ``floor(f * N) == 0`` the
data cannot support that FPR and the row is marked unsupported, with no threshold (one is never
invented). The ``f = 1`` row accepts everything: its threshold is the next float32 below the
lowest score (genuine or impostor), so it also holds when compared in float32.

Why not ``sklearn.metrics.roc_curve`` for the table: its points are the ROC's vertices, and
picking "the nearest point" to each target FPR can exceed the FPR budget; the budget rule
needs the exact order statistic of the impostor scores. AUROC does use scikit-learn
(``roc_auc_score``, imported lazily: this module is not on the device path), which handles ties.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

DEFAULT_FPRS: Tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
#: Rows of the pair matrix scored at once by :func:`pair_scores` (bounds its memory).
PAIR_BLOCK_ROWS = 1024


def false_accept_budget(fpr: float, n_impostors: int) -> int:
    """``floor(fpr * n)``, robust to binary rounding (``0.29 * 100`` is 29, not 28)."""
    if fpr >= 1.0:
        return n_impostors
    return max(0, math.floor(round(fpr * n_impostors, 9)))


def _below(value: float) -> float:
    """The largest float32 strictly below ``value`` (exact in float64 too)."""
    t = np.nextafter(np.float32(value), np.float32(-np.inf))
    while float(t) >= value:  # np.float32(value) may have rounded up
        t = np.nextafter(t, np.float32(-np.inf))
    return float(t)


def tpr_at_fpr_table(
    genuine: np.ndarray, impostor: np.ndarray, fprs: Sequence[float] = DEFAULT_FPRS
) -> List[Dict[str, Any]]:
    """One row per target FPR: ``fpr, tpr, threshold, achieved_fpr, false_accepts, supported``.

    ``genuine`` / ``impostor``: 1-D scores in [0, 1] of same-class / different-class pairs.
    Unsupported rows (``floor(f * N) == 0``) have ``None`` for every measured field.
    """
    gen = np.asarray(genuine, np.float64).ravel()
    imp = np.asarray(impostor, np.float64).ravel()
    if gen.size == 0 or imp.size == 0:
        raise ValueError("need at least one genuine and one impostor score")
    n = imp.size
    desc = np.sort(imp)[::-1]
    rows: List[Dict[str, Any]] = []
    for f in fprs:
        budget = false_accept_budget(float(f), n)
        if budget == 0:
            rows.append({"fpr": float(f), "tpr": None, "threshold": None, "achieved_fpr": None,
                         "false_accepts": None, "supported": False})  # fmt: skip
            continue
        if budget >= n:
            threshold = _below(min(float(desc[-1]), float(gen.min())))
        else:
            threshold = float(desc[budget])
        fa = int(np.count_nonzero(imp > threshold))
        rows.append({
            "fpr": float(f),
            "tpr": float(np.count_nonzero(gen > threshold) / gen.size),
            "threshold": threshold,
            "achieved_fpr": fa / n,
            "false_accepts": fa,
            "supported": True,
        })  # fmt: skip
    return rows


def auroc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Area under the ROC curve (scikit-learn's ``roc_auc_score``, ties counted half)."""
    from sklearn.metrics import roc_auc_score

    g = np.asarray(genuine, np.float64).ravel()
    i = np.asarray(impostor, np.float64).ravel()
    if g.size == 0 or i.size == 0:
        raise ValueError("need at least one genuine and one impostor score")
    labels = np.r_[np.ones(g.size), np.zeros(i.size)]
    return float(roc_auc_score(labels, np.r_[g, i]))


def pair_scores(
    embeddings: np.ndarray,
    labels: Sequence[Any],
    max_impostors: Optional[int] = None,
    seed: int = 0,
) -> Tuple[np.ndarray, np.ndarray, Dict[str, Any]]:
    """Scores of all same-label pairs and all different-label pairs ``(i < j)``, float32.

    ``embeddings``: unit vectors ``(N, D)``; scores are ``(E @ E.T + 1) / 2`` in float32, in
    row-major pair order. With more than ``max_impostors`` impostor pairs, a uniform sample of
    that many (without replacement, seeded by ``seed``) is returned. ``info`` gives the counts:
    ``genuine_pairs, impostor_pairs, impostor_pairs_total, impostors_sampled``. Memory is
    bounded by blocks of :data:`PAIR_BLOCK_ROWS` rows plus the returned scores.
    """
    from docedge.runtime.search import to_score

    e = np.asarray(embeddings, np.float32)
    if e.ndim != 2 or e.shape[0] != len(labels):
        raise ValueError(f"embeddings {e.shape} do not match {len(labels)} labels")
    _, codes = np.unique(np.asarray([str(x) for x in labels]), return_inverse=True)
    n = len(codes)
    class_sizes = np.bincount(codes).astype(np.int64)
    n_genuine = int((class_sizes * (class_sizes - 1) // 2).sum())
    total = n * (n - 1) // 2 - n_genuine
    sample: Optional[np.ndarray] = None
    if max_impostors is not None and total > max_impostors:
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(total, size=max_impostors, replace=False))
    genuine: List[np.ndarray] = []
    impostor: List[np.ndarray] = []
    offset = 0  # impostor pairs seen before this block, in row-major order
    cols = np.arange(n)
    for start in range(0, n, PAIR_BLOCK_ROWS):
        stop = min(n, start + PAIR_BLOCK_ROWS)
        s = to_score(e[start:stop] @ e.T)
        upper = cols[None, :] > np.arange(start, stop)[:, None]
        same = codes[start:stop, None] == codes[None, :]
        genuine.append(s[upper & same])
        imp = s[upper & ~same]
        if sample is None:
            impostor.append(imp)
        else:
            lo, hi = np.searchsorted(sample, [offset, offset + imp.size])
            impostor.append(imp[sample[lo:hi] - offset])
        offset += imp.size
    gen_all = np.concatenate(genuine) if genuine else np.zeros(0, np.float32)
    imp_all = np.concatenate(impostor) if impostor else np.zeros(0, np.float32)
    info = {"genuine_pairs": int(gen_all.size), "impostor_pairs": int(imp_all.size),
            "impostor_pairs_total": int(total),
            "impostors_sampled": sample is not None}  # fmt: skip
    return gen_all, imp_all, info


def _fpr_label(f: float) -> str:
    """``1e-05 -> "1e-5"``, ``0.1 -> "1e-1"``, ``1.0 -> "1"``, ``0.05 -> "0.05"``."""
    if f == 1.0:
        return "1"
    exp = math.log10(f) if f > 0 else 0.5
    if f > 0 and exp == round(exp):
        return f"1e{round(exp)}"
    return f"{f:g}"


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
    """The table in the published (Markdown) layout: rows FPR / TPR / Threshold, a column per
    target FPR; unsupported rows print ``n/a``."""

    def cell(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    lines = [
        ["FPR"] + [_fpr_label(float(r["fpr"])) for r in rows],
        ["TPR"] + [cell(r["tpr"]) for r in rows],
        ["Threshold"] + [cell(r["threshold"]) for r in rows],
    ]
    widths = [max(len(line[c]) for line in lines) for c in range(len(lines[0]))]

    def fmt(cells: List[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(lines[0]), rule, fmt(lines[1]), fmt(lines[2])])
