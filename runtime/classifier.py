"""Zero-shot classification: nearest registered exemplar, per-label aggregation, threshold.

``Classifier(bundle, gallery, fpr=1e-2)`` embeds images with the bundle's artifact for the
chosen precision, refuses a gallery made with another model, artifact, precision or
pre-processing, and answers, per image, the best label (or None = "unknown"), its parent
label, score, threshold, the FPR of the operating point, the margin to the second-best label,
and the top-k labels (each with its best exemplar's entry id).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from .bundle import Bundle, load_bundle
from .embedder import Embedder
from .errors import GalleryError, ImageError
from .gallery import Gallery
from .preprocess import ImageInput
from .search import top_labels
from .thresholds import DEFAULT_FPR, OperatingPoint, bundle_operating_point

logger = logging.getLogger(__name__)

#: Queries searched together (bounds the score buffers).
_QUERY_BLOCK = 64


@dataclass
class Candidate:
    """A label and its best exemplar's score (and entry id)."""

    label: str
    parent: Optional[str]
    score: float
    entry_id: int

    def to_dict(self) -> Dict[str, Any]:
        return {"label": self.label, "parent": self.parent, "score": self.score,
                "entry_id": self.entry_id}  # fmt: skip


@dataclass
class Decision:
    """The answer for one image. ``label`` is None for "unknown" (or for a failed image, with
    ``error`` set); ``best`` is the best candidate even when it did not clear the threshold.
    ``score`` is the best label's score, ``margin`` its lead over the second-best label."""

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
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> Dict[str, Any]:
        best = self.best
        return {"label": self.label, "parent": self.parent, "score": self.score,
                "threshold": self.threshold, "fpr": self.fpr, "margin": self.margin,
                "matched": self.label is not None,
                "best": best.to_dict() if best else None,
                "top_k": [c.to_dict() for c in self.top_k], "error": self.error}  # fmt: skip


class Classifier:
    """Nearest-exemplar classifier over a gallery (see module docstring).

    ``fpr`` picks the operating point from the bundle's table for ``precision`` (default
    1e-2); ``threshold`` (score space) overrides it; a bundle without a table for that
    precision needs ``threshold`` (:class:`ThresholdError` says so). ``top_k`` labels are
    reported per image. ``backend`` and ``backend_options`` go to :class:`Embedder`.
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
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, not {top_k}")
        self.top_k = top_k
        # The embedder first: which artifact embeds (an OpenVINO IR for bf16, or for int8 on
        # OpenVINO; auto's choice) decides the gallery fingerprint and the threshold table.
        self.embedder = Embedder(self.bundle, precision=precision, backend=backend,
                                 **backend_options)  # fmt: skip
        try:
            art = self.embedder.artifact
            self._accept = (self.bundle.gallery_fingerprints(art) if art is not None
                            else [self.embedder.fingerprint()])  # fmt: skip
            expected = self._accept[0]
            if isinstance(gallery, Gallery):
                g = gallery
                g.check_fingerprint(expected, self._accept[1:])
            else:
                g = Gallery.open(gallery, expect_fingerprint=expected,
                                 also_accept=self._accept[1:])  # fmt: skip
            if g.dim != self.bundle.embedding_dim:
                raise GalleryError(f"{g.path}: {g.dim}-d embeddings, the bundle makes "
                                   f"{self.bundle.embedding_dim}-d")  # fmt: skip
            g.check_embeddings()  # a flipped bit is refused before the first search
            self.gallery = g
            self.operating_point: OperatingPoint = bundle_operating_point(
                self.bundle, precision, fpr, threshold, artifact=art
            )
            self._load_index(g)
        except BaseException:
            self.embedder.close()
            raise

    def _load_index(self, g: Gallery) -> None:
        # One object swapped in one assignment: a search running while refresh() loads a new
        # snapshot uses the old index or the new one, never a mixture.
        self._index = load_index(g)
        self.gallery = g

    def refresh(self) -> bool:
        """Re-open the gallery if another process committed a change since it was opened
        (each commit renames a new file into place); True when a new snapshot was loaded."""
        if _file_signature(self._index.gallery.path) == self._index.signature:
            return False
        g = Gallery.open(self._index.gallery.path, expect_fingerprint=self._accept[0],
                         also_accept=self._accept[1:])  # fmt: skip
        g.check_embeddings()
        self._load_index(g)
        return True

    def classify(self, images: Union[ImageInput, Sequence[ImageInput]]) -> List[Decision]:
        """One :class:`Decision` per image, in order. A bad image gets ``error`` (and label
        None); the other images of the batch are classified normally."""
        items: List[ImageInput]
        if isinstance(images, (str, bytes, bytearray, memoryview, os.PathLike, np.ndarray)):
            items = [images]
        else:
            items = list(images)
        result = self.embedder.embed_many(items)
        op = self.operating_point
        valid = np.flatnonzero(result.ok)
        decided = dict(zip(valid.tolist(), self.decide(result.embeddings[valid])))
        out: List[Decision] = []
        for i in range(len(items)):
            if i in decided:
                out.append(decided[i])
            else:
                err: Optional[ImageError] = result.errors.get(i)
                out.append(Decision(None, None, None, op.threshold, op.fpr, None, [],
                                    error=str(err) if err else "embedding failed"))  # fmt: skip
        return out

    def decide(self, embeddings: np.ndarray[Any, Any]) -> List[Decision]:
        """Decisions for already-computed unit embeddings ``(N, D)`` (no image decoding)."""
        return decide(self._index, self.operating_point, self.top_k, embeddings)

    def close(self) -> None:
        """Release the backend (when it has something to release)."""
        close = getattr(self.embedder, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Index(NamedTuple):
    gallery: Gallery
    matrix: np.ndarray[Any, Any]  # the gallery's memory map (float16 stays float16)
    labels: List[str]
    label_ids: np.ndarray[Any, Any]
    parents: List[Optional[str]]
    ids: np.ndarray[Any, Any]
    signature: Tuple[int, int, int]


def load_index(g: Gallery) -> _Index:
    """What a search needs from an opened (checked) gallery: its memory-mapped embeddings
    (no float32 copy), the label table's columns and the file's signature for refresh()."""
    return _Index(g, g.embeddings, g.labels, g.label_ids(), g.label_parents(), g.entry_ids(),
                  _file_signature(g.path))  # fmt: skip


def decide(index: _Index, op: OperatingPoint, top_k: int,
           embeddings: np.ndarray[Any, Any]) -> List[Decision]:  # fmt: skip
    """Decisions of unit embeddings ``(N, D)`` against ``index`` at operating point ``op``,
    reporting ``top_k`` labels (what :meth:`Classifier.decide` runs)."""
    emb = np.asarray(embeddings, np.float32)
    if emb.ndim == 1:
        emb = emb[None]
    if len(index.label_ids) == 0:
        return [Decision(None, None, None, op.threshold, op.fpr, None, [])
                for _ in range(len(emb))]  # fmt: skip
    want = max(top_k, 2)  # the second-best label gives the margin
    labels, parents, ids = index.labels, index.parents, index.ids
    out: List[Decision] = []
    for start in range(0, len(emb), _QUERY_BLOCK):
        per_query = top_labels(emb[start : start + _QUERY_BLOCK], index.matrix,
                               index.label_ids, want, n_labels=len(labels))  # fmt: skip
        for found in per_query:
            _check_scores(index.gallery.path, found)
            cands = [Candidate(labels[li], parents[li], score, int(ids[row]))
                     for li, score, row in found]  # fmt: skip
            best = cands[0]
            margin = best.score - cands[1].score if len(cands) > 1 else None
            matched = best.score > op.threshold  # strict, as DocClassifier
            out.append(Decision(best.label if matched else None,
                                best.parent if matched else None, best.score,
                                op.threshold, op.fpr, margin, cands[:top_k]))  # fmt: skip
    return out


def _file_signature(path: Path) -> Tuple[int, int, int]:
    """(inode, size, mtime ns): changes with every committed gallery file."""
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0, 0)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


#: Scores live in [0, 1]; float16 rounding of unit vectors can pass 1 by this much.
_SCORE_SLACK = 2e-3


def _check_scores(path: Any, found: Sequence[Any]) -> None:
    """A score outside [0, 1] (or NaN) means a non-unit vector reached the search: refuse it
    rather than report a match with score 1.97."""
    for _li, score, _row in found:
        if not (-_SCORE_SLACK <= score <= 1.0 + _SCORE_SLACK):
            raise GalleryError(f"{path}: similarity score {score!r} outside [0, 1]: the gallery "
                               "or the query holds a vector that is not unit-length (corrupt "
                               "gallery or failed embedding)")  # fmt: skip
