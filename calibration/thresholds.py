"""Threshold calibration: TPR@FPR tables per precision from labelled images, into the manifest.

Labelled images: one folder per class (``DIR/<class>/*.jpg``). Genuine pairs are all
same-class pairs, impostor pairs all different-class pairs (a seeded uniform sample when there
are more than ``max_impostors``; the counts are recorded). Embeddings come from the runtime
(the artifact of each precision) and scores are computed in float32 by the same code the
classifier uses (:func:`docedge.runtime.search.pairwise_scores`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from docedge.export.bundle_writer import utc_now
from docedge.runtime import __version__ as DOCEDGE_VERSION
from docedge.runtime.bundle import load_bundle, read_manifest, write_manifest
from docedge.runtime.embedder import Embedder
from docedge.runtime.errors import DocedgeError
from docedge.runtime.preprocess import list_images

from .calib_data import ImageSet
from .roc import DEFAULT_FPRS, auroc, pair_scores, tpr_at_fpr_table

logger = logging.getLogger(__name__)

DEFAULT_MAX_IMPOSTORS = 2_000_000


@dataclass
class LabelledImages:
    """Image paths with class labels (folder names), and the set's SHA-256."""

    root: Path
    paths: List[Path]
    labels: List[str]
    sha256: str

    @classmethod
    def scan(cls, root: Union[str, Path]) -> LabelledImages:
        base = Path(root)
        classes = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
        paths: List[Path] = []
        labels: List[str] = []
        for c in classes:
            for f in list_images(c):
                paths.append(f)
                labels.append(c.name)
        if len(set(labels)) < 2:
            raise DocedgeError(f"{base}: need labelled images in at least two class folders "
                               "(DIR/<class>/*.jpg)")  # fmt: skip
        return cls(base, paths, labels, ImageSet.scan(base).sha256)


def embed_labelled(data: LabelledImages, embedder: Embedder) -> Tuple[np.ndarray, List[str]]:
    """Embeddings ``(n_ok, D)`` and labels of the readable images (failures logged, skipped)."""
    res = embedder.embed_many([str(p) for p in data.paths])
    labels = [lbl for lbl, ok in zip(data.labels, res.ok) if ok]
    return res.valid, labels


def table_from_embeddings(
    emb: np.ndarray, labels: Sequence[str], fprs: Sequence[float] = DEFAULT_FPRS,
    max_impostors: Optional[int] = DEFAULT_MAX_IMPOSTORS, seed: int = 0,
) -> Dict[str, Any]:  # fmt: skip
    """``{"rows", "auroc", "pairs"}`` for unit embeddings with class labels."""
    gen, imp, info = pair_scores(emb, labels, max_impostors, seed)
    if gen.size == 0:
        raise DocedgeError("no genuine pairs: every class needs at least two images")
    return {"rows": tpr_at_fpr_table(gen, imp, fprs), "auroc": auroc(gen, imp), "pairs": info,
            "genuine": gen, "impostor": imp}  # fmt: skip


def calibrate_thresholds(
    bundle_dir: Union[str, Path],
    images_dir: Union[str, Path],
    precisions: Optional[Sequence[str]] = None,
    fprs: Sequence[float] = DEFAULT_FPRS,
    max_impostors: Optional[int] = DEFAULT_MAX_IMPOSTORS,
    write: bool = True,
    **backend_options: Any,
) -> Dict[str, Dict[str, Any]]:
    """Compute a TPR@FPR table per precision (default: every ONNX precision of the bundle)
    and, with ``write``, store them in the manifest with provenance. Returns the tables."""
    bundle = load_bundle(bundle_dir)
    data = LabelledImages.scan(images_dir)
    tables: Dict[str, Dict[str, Any]] = {}
    for prec in precisions or bundle.precisions:
        with Embedder(bundle, precision=prec, **backend_options) as emb:
            vectors, labels = embed_labelled(data, emb)
        t = table_from_embeddings(vectors, labels, fprs, max_impostors)
        tables[prec] = {
            "precision": prec,
            "rows": t["rows"],
            "auroc": t["auroc"],
            "source": {
                "origin": "docedge calibrate thresholds",
                "data_sha256": data.sha256, "images_dir": str(data.root),
                "classes": len(set(labels)), "images": len(labels),
                **t["pairs"], "artifact_sha256": bundle.artifact(prec).sha256,
                "date": utc_now(), "docedge_version": DOCEDGE_VERSION,
                "score_space": "(cos+1)/2", "rule": "at most floor(FPR*N) false accepts",
            },
        }  # fmt: skip
        logger.info("%s: AUROC %.4f", prec, t["auroc"])
    if write:
        manifest = read_manifest(bundle_dir)
        manifest.setdefault("thresholds", {}).update(tables)
        write_manifest(bundle_dir, manifest)
    return tables
