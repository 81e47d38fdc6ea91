"""Zero-shot classification: nearest registered exemplar, per-label aggregation, threshold.

``Classifier(bundle, gallery, fpr=1e-2)`` embeds images with the bundle's artifact for the
chosen precision, refuses a gallery made with another model/precision, and answers, per
image, the best label (or None = "unknown"), its parent label, score, threshold, the FPR of the
operating point, the margin to the second-best label, and the top-k labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from .bundle import Bundle, load_bundle
from .embedder import Embedder
from .errors import ImageError
from .gallery import Gallery
from .preprocess import ImageInput
from .search import as_float32, best_per_label, scores
from .thresholds import DEFAULT_FPR, OperatingPoint, bundle_operating_point

#: Largest float32 copy of a float16 gallery the classifier keeps in memory (256 MiB).
FLOAT32_CACHE_BYTES = 256 << 20


@dataclass
class Candidate:
    label: str
    parent: Optional[str]
    score: float
    entry_id: int

    def to_dict(self) -> Dict[str, Any]:
        return {"label": self.label, "parent": self.parent, "score": self.score,
                "entry_id": self.entry_id}  # fmt: skip


@dataclass
class Decision:
    """The answer for one image. ``label`` is None for "unknown" (or a failed image, with
    ``error`` set); ``best`` is the best candidate even when it did not clear the threshold."""

    label: Optional[str]
    parent: Optional[str]
    score: Optional[float]
    threshold: float
    fpr: Optional[float]
    margin: Optional[float]
    top_k: List[Candidate] = field(default_factory=list)
    error: Optional[str] = None

    @property
    def best(self) -> Optional[Candidate]:
        return self.top_k[0] if self.top_k else None

    @property
    def is_unknown(self) -> bool:
        return self.label is None

    def to_dict(self) -> Dict[str, Any]:
        return {"label": self.label, "parent": self.parent, "score": self.score,
                "threshold": self.threshold, "fpr": self.fpr, "margin": self.margin,
                "top_k": [c.to_dict() for c in self.top_k], "error": self.error}  # fmt: skip


class Classifier:
    """Nearest-exemplar classifier over a gallery (see module docstring).

    ``fpr`` picks the operating point from the bundle's table for ``precision``;
    ``threshold`` overrides it. Backend options go to :class:`Embedder`.
    """

    def __init__(
        self,
        bundle: Union[Bundle, str, Path],
        gallery: Union[Gallery, str, Path],
        fpr: Optional[float] = DEFAULT_FPR,
        threshold: Optional[float] = None,
        precision: str = "fp32",
        backend: str = "onnxruntime",
        top_k: int = 5,
        **backend_options: Any,
    ) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.precision = precision
        g = gallery if isinstance(gallery, Gallery) else Gallery.open(gallery)
        g.check_fingerprint(self.bundle.fingerprint(precision))
        self.gallery = g
        self.operating_point: OperatingPoint = bundle_operating_point(
            self.bundle, precision, fpr, threshold
        )
        self.top_k = top_k
        self.embedder = Embedder(self.bundle, precision=precision, backend=backend,
                                 **backend_options)  # fmt: skip
        # float16 galleries: convert once to float32 when that fits the budget (searches then
        # run at memory bandwidth); larger ones are converted chunk by chunk per search.
        f32_bytes = len(g) * g.dim * 4
        cache = g.dtype != "float32" and f32_bytes <= FLOAT32_CACHE_BYTES
        self._matrix = as_float32(g.embeddings) if cache else g.embeddings
        self._labels = g.labels
        self._label_ids = g.label_ids()
        parents = {e.label: e.parent for e in g.entries}
        self._parents = [parents[lbl] for lbl in self._labels]

    def classify(self, images: Sequence[ImageInput]) -> List[Decision]:
        """One :class:`Decision` per image (a bad image gets ``error`` and label None)."""
        if isinstance(images, (str, bytes, Path, np.ndarray)):
            images = [images]
        result = self.embedder.embed_many(images)
        out: List[Decision] = []
        op = self.operating_point
        valid = np.flatnonzero(result.ok)
        decided = dict(zip(valid.tolist(), self.decide(result.embeddings[valid])))
        for i in range(len(images)):
            if i in decided:
                out.append(decided[i])
            else:
                err: Optional[ImageError] = result.errors.get(i)
                out.append(Decision(None, None, None, op.threshold, op.fpr, None, [],
                                    error=str(err) if err else "failed"))  # fmt: skip
        return out

    def decide(self, embeddings: np.ndarray[Any, Any]) -> List[Decision]:
        """Decisions for already-computed unit embeddings ``(N, D)``."""
        op = self.operating_point
        if len(self.gallery) == 0:
            return [Decision(None, None, None, op.threshold, op.fpr, None, [])
                    for _ in range(len(embeddings))]  # fmt: skip
        s = scores(embeddings, self._matrix)
        n_labels = len(self._labels)
        out = []
        for row in s:
            per_label = best_per_label(row, self._label_ids, n_labels)
            k = min(self.top_k, n_labels)
            order = np.argsort(-per_label, kind="stable")[:k]
            top = []
            for li in order:
                members = np.flatnonzero(self._label_ids == li)
                best_row = int(members[np.argmax(row[members])])
                top.append(Candidate(self._labels[li], self._parents[li], float(per_label[li]),
                                     self.gallery.entries[best_row].id))  # fmt: skip
            best = top[0]
            margin = best.score - top[1].score if len(top) > 1 else None
            matched = best.score > op.threshold
            out.append(Decision(best.label if matched else None,
                                best.parent if matched else None, best.score, op.threshold,
                                op.fpr, margin, top))  # fmt: skip
        return out
