"""Threshold calibration: TPR@FPR tables per precision from labelled images, into the manifest.

Labelled images: one folder per class (``DIR/<class>/*.jpg``). Genuine pairs are all
same-class pairs, impostor pairs all different-class pairs (a seeded uniform sample when there
are more than ``max_impostors``; the counts are recorded). Embeddings come from the runtime
(the artifact of each precision, through :class:`~docedge.runtime.embedder.Embedder`, the
device path) and scores are computed in float32 by the classifier's own score code
(:func:`docedge.runtime.search.to_score`, via :func:`.roc.pair_scores`). The table rule and
AUROC are :mod:`.roc`'s. Tables go into ``manifest["thresholds"][precision]`` with their
provenance; only ``manifest.json`` changes (atomically), so the artifacts' checksums and the
ONNX metadata (which holds no thresholds) are untouched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from docedge.export.provenance import utc_now
from docedge.runtime import __version__ as DOCEDGE_VERSION
from docedge.runtime.bundle import load_bundle
from docedge.runtime.embedder import Embedder
from docedge.runtime.errors import DocedgeError
from docedge.runtime.preprocess import list_images
from docedge.runtime.thresholds import commit_tables, table_key

from .calib_data import ImageSet
from .roc import DEFAULT_FPRS, auroc, format_table, pair_scores, tpr_at_fpr_table

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
    seed: int = 0,
    replace: bool = False,
    **backend_options: Any,
) -> Dict[str, Dict[str, Any]]:
    """Compute a TPR@FPR table per precision (default: every ONNX precision of the bundle)
    with the artifact that embeds it (``backend="openvino"``: the bundle's OpenVINO IR of the
    precision, ``bf16`` or the NNCF ``int8``, whose table is keyed ``int8/openvino``:
    :func:`~docedge.runtime.thresholds.table_key`) and, with ``write``, store them in the
    manifest with provenance (one atomic commit; a precision that already has a table is
    refused unless ``replace``). Returns the tables
    (``{table key: {"precision", "rows", "auroc", "source"}}``, as written).

    ``max_impostors``: above this many impostor pairs a uniform sample (seeded by ``seed``)
    is used, and ``source.impostors_sampled`` says so. ``backend_options`` go to
    :class:`Embedder` (e.g. ``providers=["cuda"]``).
    """
    bundle = load_bundle(bundle_dir)
    data = LabelledImages.scan(images_dir)
    backend = str(backend_options.get("backend", "onnxruntime"))
    tables: Dict[str, Dict[str, Any]] = {}
    for prec in precisions or bundle.precisions:
        if backend != "auto":  # fail early, naming what the bundle has
            bundle.embedding_artifact(prec, backend)
        with Embedder(bundle, precision=prec, **backend_options) as emb:
            art = emb.artifact
            vectors, labels = embed_labelled(data, emb)
        if art is None:
            raise DocedgeError(f"{bundle.path}: cannot tell which artifact embedded {prec}")
        if len(labels) < len(data.labels):
            logger.warning("%s: %d of %d images could not be read (skipped)", prec,
                           len(data.labels) - len(labels), len(data.labels))  # fmt: skip
        t = table_from_embeddings(vectors, labels, fprs, max_impostors, seed)
        key = table_key(art)
        source: Dict[str, Any] = {
            "origin": "docedge calibrate thresholds", "precision": prec,
            "data_sha256": data.sha256, "images_dir": str(data.root),
            "classes": len(set(labels)), "images": len(labels),
            **t["pairs"], "artifact_sha256": art.sha256,
            "date": utc_now(), "docedge_version": DOCEDGE_VERSION,
            "images_skipped": len(data.labels) - len(labels), "sample_seed": seed,
            "score_space": "(cos+1)/2", "score_dtype": "float32",
            "rule": "at most floor(FPR*N) false accepts",
        }  # fmt: skip
        if key != prec:  # an OpenVINO IR: its own table, named by artifact
            source.update(artifact_file=art.file, artifact_format=art.format, engine=emb.engine)
        tables[key] = {"precision": prec, "rows": t["rows"], "auroc": t["auroc"], "source": source}
        logger.info("%s: AUROC %.4f", key, t["auroc"])
    if write:
        commit_tables(bundle_dir, tables, replace=replace)
    return tables


def fpr_key(fpr: float) -> str:
    """JSON key of a table FPR, as the published table writes it: ``1e-5`` ... ``1e-1``, ``1``."""
    if fpr == 1.0:
        return "1"
    exp = float(np.log10(fpr)) if fpr > 0 else 0.5
    return f"1e{round(exp)}" if abs(exp - round(exp)) < 1e-9 else f"{fpr:g}"


def describe_table(table: Dict[str, Any], key: Optional[str] = None) -> str:
    """A calibrated table for people: a provenance line, then the published layout
    (rows FPR / TPR / Threshold, a column per target FPR, ``n/a`` where unsupported)."""
    s = table["source"]
    pairs = f"{s['impostor_pairs']:,} impostor pairs"
    if s.get("impostors_sampled"):
        pairs += f" (uniform sample of {s['impostor_pairs_total']:,})"
    head = (f"{key or table['precision']}: {s['images']} images, {s['classes']} classes, "
            f"{s['genuine_pairs']:,} genuine / {pairs}, AUROC {table['auroc']:.4f}")
    unsupported = [r["fpr"] for r in table["rows"] if not r["supported"]]
    tail = ""
    if unsupported:
        tail = ("\nunsupported (floor(FPR*N) = 0 false accepts allowed): FPR "
                + ", ".join(fpr_key(f) for f in unsupported))
    return f"{head}\n{format_table(table['rows'])}{tail}"
