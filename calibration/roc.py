"""TPR@FPR tables and AUROC in DocClassifier's score space ((cos+1)/2; match if score > t).

The table rule (stricter than DocClassifier's "nearest ROC point", as face-recognition
evaluators do): for a target FPR ``f`` with ``N`` impostor scores, at most ``floor(f * N)``
false accepts are allowed; the threshold is the smallest one that keeps the false accepts
within that budget, which maximizes TPR. The achieved FPR is recorded. When
``floor(f * N) == 0`` the data cannot support that FPR and the row is marked unsupported,
with no threshold (one is never invented). The ``f = 1`` row accepts everything.

Why not ``sklearn.metrics.roc_curve`` for the table: its points are the ROC's vertices, and
picking "the nearest point" to each target FPR can exceed the FPR budget; the budget rule
needs the exact order statistic of the impostor scores, which is one ``np.partition`` away.
AUROC does use scikit-learn (``roc_auc_score``), which handles ties correctly.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

DEFAULT_FPRS: Tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def tpr_at_fpr_table(
    genuine: np.ndarray, impostor: np.ndarray, fprs: Sequence[float] = DEFAULT_FPRS
) -> List[Dict[str, Any]]:
    """One row per target FPR: ``fpr, tpr, threshold, achieved_fpr, false_accepts, supported``.

    ``genuine`` / ``impostor``: 1-D scores in [0, 1] of same-class / different-class pairs.
    """
    gen = np.asarray(genuine, np.float64).ravel()
    imp = np.asarray(impostor, np.float64).ravel()
    if gen.size == 0 or imp.size == 0:
        raise ValueError("need at least one genuine and one impostor score")
    n = imp.size
    desc = np.sort(imp)[::-1]
    rows: List[Dict[str, Any]] = []
    for f in fprs:
        budget = n if f >= 1.0 else math.floor(f * n)
        if budget == 0:
            rows.append({"fpr": float(f), "tpr": None, "threshold": None, "achieved_fpr": None,
                         "false_accepts": None, "supported": False})  # fmt: skip
            continue
        if budget >= n:
            threshold = float(np.nextafter(min(desc[-1], gen.min()), -np.inf))
        else:
            # Scores strictly above the threshold are accepted. Taking the (budget+1)-th
            # highest impostor score as the threshold accepts at most `budget` impostors
            # (ties at that score are all rejected, never over the budget).
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
    labels = np.r_[np.ones(g.size), np.zeros(i.size)]
    return float(roc_auc_score(labels, np.r_[g, i]))


def pair_scores(
    embeddings: np.ndarray,
    labels: Sequence[Any],
    max_impostors: Optional[int] = None,
    seed: int = 0,
) -> Tuple[np.ndarray, np.ndarray, Dict[str, Any]]:
    """Scores of all same-label pairs and all different-label pairs (i < j), float32.

    ``embeddings``: unit vectors ``(N, D)``. With more than ``max_impostors`` impostor pairs,
    a uniform sample (seeded) of that many is returned; ``info`` says so with the counts.
    """
    from docedge.runtime.search import pairwise_scores

    lab = np.asarray([str(x) for x in labels])
    s = pairwise_scores(np.asarray(embeddings, np.float32))
    iu, ju = np.triu_indices(len(lab), k=1)
    same = lab[iu] == lab[ju]
    genuine = s[iu[same], ju[same]]
    impostor = s[iu[~same], ju[~same]]
    total = int(impostor.size)
    sampled = False
    if max_impostors is not None and total > max_impostors:
        rng = np.random.default_rng(seed)
        impostor = impostor[rng.choice(total, size=max_impostors, replace=False)]
        sampled = True
    info = {"genuine_pairs": int(genuine.size), "impostor_pairs": int(impostor.size),
            "impostor_pairs_total": total, "impostors_sampled": sampled}  # fmt: skip
    return genuine, impostor, info


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
    """The table in the published layout: rows FPR / TPR / Threshold, a column per FPR."""
    def cell(v: Any, fmt: str) -> str:
        return "n/a" if v is None else format(v, fmt)

    head = ["FPR      "] + [f"{r['fpr']:<7g}" for r in rows]
    tpr = ["TPR      "] + [f"{cell(r['tpr'], '.3f'):<7}" for r in rows]
    thr = ["Threshold"] + [f"{cell(r['threshold'], '.3f'):<7}" for r in rows]
    return "\n".join(" | ".join(line) for line in (head, tpr, thr))
