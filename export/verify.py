"""Compare an artifact's embeddings with the PyTorch reference's (numpy only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict

import numpy as np


@dataclass
class Agreement:
    """Cosine similarity (per row) and absolute difference between two ``(N, D)`` sets."""

    n: int
    cos_min: float
    cos_p1: float
    cos_mean: float
    max_abs_diff: float

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two float ``(N, D)`` arrays, in float64, ``(N,)``."""
    a64 = np.asarray(a, np.float64)
    b64 = np.asarray(b, np.float64)
    num = np.sum(a64 * b64, axis=1)
    den = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    out: np.ndarray = num / np.maximum(den, 1e-30)
    return out


def agreement(reference: np.ndarray, candidate: np.ndarray) -> Agreement:
    """How close ``candidate`` embeddings are to ``reference`` ones (same rows, same order)."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shape mismatch: reference {reference.shape} vs {candidate.shape}")
    cos = cosine_rows(reference, candidate)
    return Agreement(
        n=int(reference.shape[0]),
        cos_min=float(cos.min()),
        cos_p1=float(np.percentile(cos, 1)),
        cos_mean=float(cos.mean()),
        max_abs_diff=float(np.max(np.abs(np.asarray(reference, np.float64) - candidate))),
    )


def mean_pairwise_cosine(emb: np.ndarray) -> float:
    """Mean cosine over distinct pairs of rows: near 1.0 means a collapsed (useless) model."""
    e = np.asarray(emb, np.float64)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    s = e @ e.T
    n = len(e)
    return float((s.sum() - np.trace(s)) / (n * (n - 1)))
