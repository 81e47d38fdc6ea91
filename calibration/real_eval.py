"""Real-document evaluation sets and metrics: pages of real PDFs registered as clean renders,
queried with camera-like captures, plus unknown pages that are never registered.

Protocol (:data:`PROTOCOL`): from a page set built by :func:`.real_pages.build_page_set`, keep
the pages of the given packages, shuffle them with a seed, register the first ``n_register``
(one clean render each), keep the next ``n_unknown`` as unknown documents; every page gets
``captures`` queries (:func:`.backgrounds.capture_mix`: photographed on a desk or the flat
capture simulator, strength U(0.3, 1.0), seeded per page). Genuine pairs: a registered page's
query vs its own clean render; impostor pairs: the query vs every other registered page.
Unknown rejection at a threshold: share of unknown-page queries whose best score is not above it.

    s = build_eval_set("/work/demo_data/real_eval", ["texlive-science-doc"], 150, 50)
    m = metrics(query_emb, gallery_emb, s)       # top-1, TPR@FPR table, AUROC, ...
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import cv2
import numpy as np

from docedge.synth.backgrounds import capture_mix
from docedge.synth.captures import simulate_capture
from docedge.synth.real_pages import check_package, load_manifest

from .roc import auroc, tpr_at_fpr_table

PROTOCOL = {
    "register": "one clean render per registered page (pdftoppm, long side 640 px)",
    "queries": "captures per page: photographed on a desk (p=0.6; perspective, hand, partial "
               "crop, light) or the flat capture simulator; strength U(0.3, 1.0); seeded per page",
    "genuine": "query vs its own page's clean render",
    "impostor": "query vs every other registered page",
    "unknown": "queries of pages never registered; rejected when the best score <= threshold",
    "score": "(cos+1)/2, runtime pre-processing",
    "table_rule": "at most floor(FPR*N) false accepts; score > threshold",
}  # fmt: skip


@dataclass
class EvalSet:
    """Registered pages (clean), their queries, and unknown pages' queries (BGR uint8)."""

    register: List[np.ndarray]
    register_ids: List[str]
    queries: List[np.ndarray]
    query_labels: List[int]  # index into register
    unknown: List[np.ndarray]
    unknown_ids: List[str]
    info: Dict[str, Any] = field(default_factory=dict)


#: Query kinds: ``mix`` (photographed or flat, strength U(0.3, 1.0)); ``flat`` (the capture
#: simulator alone at strength 1.0, what ``docedge synth captures`` writes by default).
QUERY_KINDS = ("mix", "flat")


def make_queries(img: np.ndarray, key: str, captures: int, seed: int,
                 kind: str = "mix") -> List[np.ndarray]:  # fmt: skip
    if kind not in QUERY_KINDS:
        raise ValueError(f"unknown query kind {kind!r}; known: {QUERY_KINDS}")
    rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8")), 23])
    if kind == "flat":
        return [simulate_capture(img, rng, 1.0).image for _ in range(captures)]
    return [capture_mix(img, rng, (0.3, 1.0), 0.6) for _ in range(captures)]


def build_eval_set(
    root: Union[str, Path],
    packages: Sequence[str],
    n_register: int = 150,
    n_unknown: int = 50,
    captures: int = 2,
    seed: int = 0,
    kind: str = "mix",
) -> EvalSet:
    """The evaluation set of the pages of ``packages`` in page set ``root`` (see module doc)."""
    for p in packages:
        check_package(p)
    man = load_manifest(root)
    pages = [pg for pg in man["pages"] if pg["package"] in set(packages)]
    if len(pages) < n_register + n_unknown:
        raise ValueError(f"{root}: {len(pages)} pages of {list(packages)}, need "
                         f"{n_register + n_unknown}")  # fmt: skip
    order = np.random.default_rng([seed, 77]).permutation(len(pages))
    chosen = [pages[int(i)] for i in order[: n_register + n_unknown]]
    reg, reg_ids, queries, qlab, unk, unk_ids = [], [], [], [], [], []
    for k, pg in enumerate(chosen):
        img = cv2.imread(str(Path(root) / pg["file"]), cv2.IMREAD_COLOR)
        if img is None:
            raise OSError(f"{pg['file']}: cannot read")
        caps = make_queries(img, pg["file"], captures, seed, kind)
        if k < n_register:
            reg.append(img)
            reg_ids.append(pg["file"])
            queries.extend(caps)
            qlab.extend([k] * len(caps))
        else:
            unk.extend(caps)
            unk_ids.append(pg["file"])
    pdfs = {pg["pdf"] for pg in chosen[:n_register]}
    info = {"packages": list(packages), "registered_pages": n_register,
            "registered_pdfs": len(pdfs), "unknown_pages": n_unknown,
            "unknown_from_registered_pdfs": sum(pg["pdf"] in pdfs for pg in chosen[n_register:]),
            "captures_per_page": captures, "query_kind": kind, "seed": seed,
            "queries": len(queries),
            "unknown_queries": len(unk)}  # fmt: skip
    return EvalSet(reg, reg_ids, queries, qlab, unk, unk_ids, info)


def thumbnails(images: Sequence[np.ndarray], size: int = 16) -> np.ndarray:
    """The baseline's embedding: 16x16 grey thumbnail (area resize), mean-centred, unit L2."""
    out = []
    for im in images:
        g = cv2.cvtColor(im, cv2.COLOR_BGR2GRAY) if im.ndim == 3 else im
        v = cv2.resize(g, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
        v -= v.mean()
        out.append(v / max(float(np.linalg.norm(v)), 1e-6))
    return np.stack(out).astype(np.float32)


def metrics(
    query_emb: np.ndarray,
    gallery_emb: np.ndarray,
    query_labels: Sequence[int],
    unknown_emb: Optional[np.ndarray] = None,
    thresholds: Optional[Dict[str, float]] = None,
) -> Dict[str, Any]:
    """Top-1, TPR@FPR table (1e-3, 1e-2, ...), AUROC, genuine/impostor means and, for each
    named threshold, TPR (genuine score above it), unknown rejection, and open-set accuracy
    (registered queries whose best match is correct and above the threshold)."""
    S = (query_emb @ gallery_emb.T + 1) / 2
    lab = np.asarray(query_labels)
    n = np.arange(lab.size)
    genuine = S[n, lab]
    mask = np.ones_like(S, bool)
    mask[n, lab] = False
    impostor = S[mask]
    best = S.argmax(1)
    out: Dict[str, Any] = {
        "top1": float((best == lab).mean()),
        "auroc": auroc(genuine, impostor),
        "rows": tpr_at_fpr_table(genuine, impostor),
        "genuine_pairs": int(genuine.size),
        "impostor_pairs": int(impostor.size),
        "genuine_mean": float(genuine.mean()),
        "impostor_mean": float(impostor.mean()),
    }
    if unknown_emb is not None and len(unknown_emb):
        U = ((unknown_emb @ gallery_emb.T + 1) / 2).max(1)
        out["unknown_best_mean"] = float(U.mean())
        out["at_thresholds"] = {}
        for name, t in (thresholds or {}).items():
            out["at_thresholds"][name] = {
                "threshold": float(t),
                "tpr": float((genuine > t).mean()),
                "unknown_rejected": float((U <= t).mean()),
                "open_set_accuracy": float(((best == lab) & (S.max(1) > t)).mean()),
            }
    return out


def decisions(emb: Dict[str, np.ndarray], threshold: float) -> np.ndarray:
    """Per query of ``emb`` (``register``, ``queries``, ``unknown`` unit embeddings; registered
    queries first, then unknown ones): the index of the registered page it is matched to, or -1
    when its best score (cos+1)/2 is not above ``threshold``."""
    q = np.concatenate([emb["queries"], emb["unknown"]])
    S = (q @ emb["register"].T + 1) / 2
    best: np.ndarray = np.where(S.max(1) > threshold, S.argmax(1), -1)
    return best


def tpr_at(rows: Sequence[Dict[str, Any]], fpr: float) -> Optional[float]:
    return next((r["tpr"] for r in rows if r["fpr"] == fpr), None)


def threshold_at(rows: Sequence[Dict[str, Any]], fpr: float) -> Optional[float]:
    return next((r["threshold"] for r in rows if r["fpr"] == fpr), None)
