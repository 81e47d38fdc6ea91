"""Ranking quality of embeddings on labelled images: NDCG, mAP@R and recall@k.

Two models (or two precisions) can have the same top-1 accuracy and rank the rest very
differently; these tell them apart. Every query is one labelled image; its "gallery" is every
other image, sorted by similarity; the images of the query's label are relevant.

- NDCG: DCG over the ranks of the relevant images (gain 1, discount ``1/log2(rank+1)``) divided
  by the ideal DCG (all relevant images first), averaged over queries;
- mAP@R (Musgrave et al., "A Metric Learning Reality Check"): with R relevant images, the mean
  over the first R ranks of precision@i at the ranks i that are relevant, divided by R;
- recall@k: the fraction of queries with at least one relevant image in the top k.

Queries without any other image of their label are skipped (and counted).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np


def ranking_metrics(emb: np.ndarray, labels: Sequence[str], ks: Sequence[int] = (1, 5),
                    max_queries: Optional[int] = 2000, seed: int = 0) -> Dict[str, Any]:  # fmt: skip
    """``{"ndcg", "map_at_r", "recall_at_1", "recall_at_5", "queries", "skipped"}`` for unit
    embeddings ``(N, D)`` with one label per row; a seeded sample of ``max_queries`` queries."""
    e = np.asarray(emb, np.float32)
    lab = np.asarray([str(x) for x in labels])
    n = len(lab)
    rows = np.arange(n)
    if max_queries is not None and n > max_queries:
        rows = np.sort(np.random.default_rng(seed).choice(n, max_queries, replace=False))
    ndcg: List[float] = []
    map_r: List[float] = []
    hits: Dict[int, List[bool]] = {k: [] for k in ks}
    skipped = 0
    for q in rows:
        rel_mask = lab == lab[q]
        rel_mask[q] = False
        r = int(rel_mask.sum())
        if r == 0:
            skipped += 1
            continue
        sims = e @ e[q]
        sims[q] = -np.inf
        order = np.lexsort((np.arange(n), -sims))[: n - 1]  # ties: lower index first
        rel = rel_mask[order]
        ranks = np.flatnonzero(rel) + 1
        dcg = float(np.sum(1.0 / np.log2(ranks + 1)))
        idcg = float(np.sum(1.0 / np.log2(np.arange(1, r + 1) + 1)))
        ndcg.append(dcg / idcg)
        first_r = rel[:r]
        prec_at_i = np.cumsum(first_r) / np.arange(1, r + 1)
        map_r.append(float(np.sum(prec_at_i * first_r)) / r)
        for k in ks:
            hits[k].append(bool(rel[:k].any()))
    out: Dict[str, Any] = {"queries": len(ndcg), "skipped": skipped,
                           "ndcg": float(np.mean(ndcg)) if ndcg else None,
                           "map_at_r": float(np.mean(map_r)) if map_r else None}  # fmt: skip
    for k in ks:
        out[f"recall_at_{k}"] = float(np.mean(hits[k])) if hits[k] else None
    return out


def ranking_deltas(candidate: Dict[str, Any], reference: Dict[str, Any]) -> Dict[str, Any]:
    """candidate - reference for every metric both have."""
    return {k: (candidate[k] - reference[k]) for k in candidate
            if k not in ("queries", "skipped") and isinstance(candidate.get(k), float)
            and isinstance(reference.get(k), float)}  # fmt: skip
