"""The gate of a converted artifact against the PyTorch reference.

Every artifact that an interpreter installed here can run is run on the same gate images as
the reference: the 36 generated check images of varied sizes
(:func:`docedge.export.check_images.check_batch`) and two captures each of held-out synthetic
document types (the second capture of each type is a probe against a gallery of the first).
Embedding agreement (:func:`docedge.export.verify.agreement`: cosine min/mean) and decision
agreement (the same best match or the same "unknown" at the bundle's operating threshold) are
compared with per-precision limits. An artifact no interpreter here can run gets
``{"status": "not run", "reason": ...}`` and ``passed: None``: never passed.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import cv2
import numpy as np

from docedge.export.check_images import check_batch
from docedge.export.verify import agreement, cosine_rows

logger = logging.getLogger(__name__)

#: Per precision: cosine min and mean to the reference, and decision agreement.
GATES: Dict[str, Dict[str, float]] = {
    "fp32": {"cos_min": 0.9999, "cos_mean": 0.99999, "decision_agreement": 1.0},
    "fp16": {"cos_min": 0.999, "cos_mean": 0.9995, "decision_agreement": 0.98},
    "int8": {"cos_min": 0.97, "cos_mean": 0.99, "decision_agreement": 0.95},
}
CHECK_IMAGES = 36
DOCUMENT_TYPES = 96
FPR = 1e-2

Embed = Callable[[np.ndarray], np.ndarray]


@functools.lru_cache(maxsize=2)
def document_pairs(types: int = DOCUMENT_TYPES, seed: int = 4321) -> np.ndarray:
    """Two JPEG captures of each held-out synthetic document type (ids 900..), pre-processed:
    float32 ``(2 * types, 3, 128, 128)``, rows ``2t`` and ``2t + 1`` of type ``t``."""
    from docedge.runtime.preprocess import preprocess
    from docedge.synth.captures import capture
    from docedge.synth.documents import DocumentType, render

    rng = np.random.default_rng(seed)
    blobs = []
    for t in range(types):
        doc_type = DocumentType.from_id(900 + t)
        for k in range(2):
            img = capture(render(doc_type, 50 + 2 * t + k), rng, 0.6)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
            assert ok
            blobs.append(buf.tobytes())
    out: np.ndarray = preprocess(blobs)
    return out


@dataclass
class GateData:
    """The gate images, the reference's embeddings of them and the decision setup."""

    x: np.ndarray
    reference: np.ndarray
    against: str
    threshold: float
    threshold_source: str
    gallery_rows: np.ndarray
    probe_rows: np.ndarray

    def decisions(self, emb: np.ndarray) -> List[int]:
        """Best gallery row per probe if its score beats the threshold, else -1."""
        g = emb[self.gallery_rows].astype(np.float64)
        p = emb[self.probe_rows].astype(np.float64)
        s = (p @ g.T + 1.0) / 2.0
        best = s.argmax(1)
        top = s[np.arange(len(s)), best]
        return [int(b) if t > self.threshold else -1 for b, t in zip(best, top)]


def gate_data(reference_embed: Embed, against: str, threshold_table: Optional[Dict[str, Any]] = None
              ) -> GateData:  # fmt: skip
    """Embed the gate images with the reference (``reference_embed``, a batch function)."""
    docs = document_pairs()
    x = np.concatenate([check_batch(CHECK_IMAGES), docs])
    ref = np.asarray(reference_embed(x), np.float32)
    # gallery: first capture of the first 3/4 of the types; probes: second capture of every
    # type, so a quarter of the probes have no exemplar and must come out "unknown"
    n0 = CHECK_IMAGES
    types = len(docs) // 2
    gallery = n0 + 2 * np.arange(types - types // 4)
    probes = n0 + 2 * np.arange(types) + 1
    if threshold_table:
        from docedge.runtime.thresholds import operating_point

        thr = float(operating_point(threshold_table, FPR).threshold)
        source = f"bundle fp32 table at FPR {FPR:g}"
    else:
        g, p = ref[gallery].astype(np.float64), ref[probes].astype(np.float64)
        best = np.sort(((p @ g.T + 1.0) / 2.0).max(1))
        k = max(1, len(best) // 4)
        thr = float((best[k - 1] + best[k]) / 2.0)  # midway: no reference score sits on it
        source = "lower-quartile best-match score of the reference (the bundle has no threshold table)"
    return GateData(x, ref, against, thr, source, gallery, probes)


def l2_normalize(emb: np.ndarray) -> np.ndarray:
    e = np.asarray(emb, np.float32)
    out: np.ndarray = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return out


def run_batched(embed_one: Embed, x: np.ndarray, batch: int = 1) -> np.ndarray:
    """Run a fixed-batch interpreter over ``x`` ``batch`` rows at a time."""
    outs = [np.asarray(embed_one(x[i : i + batch]), np.float32) for i in range(0, len(x), batch)]
    return np.concatenate(outs)


def gate(data: GateData, embed: Embed, precision: str, normalized_output: bool = True,
         verified_with: Optional[Dict[str, Any]] = None, limits: Optional[Dict[str, float]] = None,
         ) -> Dict[str, Any]:  # fmt: skip
    """Run ``embed`` on the gate images and compare with the reference: the ``verification``
    record (``passed`` is True or False). An un-normalized output is L2-normalized first, as
    the runtime does, and its norms are reported."""
    lim = dict(GATES.get(precision, GATES["int8"]))
    lim.update(limits or {})
    raw = np.asarray(embed(data.x), np.float32)
    if raw.shape != data.reference.shape:
        from ._common import ConversionError

        raise ConversionError(f"the artifact returned shape {raw.shape}, expected {data.reference.shape}")
    norms = np.linalg.norm(raw, axis=1)
    emb = raw if normalized_output else l2_normalize(raw)
    finite = bool(np.isfinite(emb).all())
    agree_all = agreement(data.reference, emb)
    # int8 is gated on the document captures (its calibration domain), as the ONNX int8 gate is;
    # the generated drawings are reported alongside
    docs_only = precision == "int8"
    agree = agreement(data.reference[CHECK_IMAGES:], emb[CHECK_IMAGES:]) if docs_only else agree_all
    dec_ref, dec = data.decisions(data.reference), data.decisions(emb)
    dec_agree = float(np.mean([a == b for a, b in zip(dec_ref, dec)]))
    checks = {"cos_min": agree.cos_min >= lim["cos_min"], "cos_mean": agree.cos_mean >= lim["cos_mean"],
              "decision_agreement": dec_agree >= lim["decision_agreement"], "finite": finite}  # fmt: skip
    if normalized_output:
        checks["unit_norm"] = bool(np.all(np.abs(norms - 1.0) < 1e-2))
    passed = all(checks.values())
    cos = cosine_rows(data.reference, emb)
    rec: Dict[str, Any] = {
        "against": data.against,
        "images": f"{CHECK_IMAGES} generated check images of varied sizes + {len(data.probe_rows)} "
                  "pairs of synthetic document captures (held-out types), runtime pre-processing",
        "gated_on": "document captures" if docs_only else "all gate images",
        **agree.to_dict(),
        "all_images": {"cos_min": agree_all.cos_min, "cos_mean": agree_all.cos_mean},
        "documents": {
            "cos_min": float(cos[CHECK_IMAGES:].min()),
            "cos_mean": float(cos[CHECK_IMAGES:].mean()),
        },
        "decision_agreement": dec_agree,
        "decisions": {"probes": len(dec), "threshold": data.threshold,
                      "threshold_source": data.threshold_source,
                      "reference_matches": int(sum(d >= 0 for d in dec_ref)),
                      "probes_without_exemplar": len(data.probe_rows) - len(data.gallery_rows)},
        "output_norm_min": float(norms.min()), "output_norm_max": float(norms.max()),
        "gate": lim, "checks": checks, "passed": passed,
        "verified_with": verified_with or {},
    }  # fmt: skip
    logger.info("gate %s: cos min %.6f mean %.6f, decisions %.3f -> %s", precision, agree.cos_min,
                agree.cos_mean, dec_agree, "pass" if passed else "FAIL")  # fmt: skip
    return rec


def not_run(reason: str, data: Optional[GateData] = None, precision: str = "fp32") -> Dict[str, Any]:
    """The verification record of an artifact that could not be run here (never passed)."""
    return {"against": data.against if data else "pytorch-reference", "passed": None,
            "gate": dict(GATES.get(precision, GATES["int8"])),
            "verified_with": {"status": "not run", "reason": reason}}  # fmt: skip


def speed(embed_one: Embed, x: np.ndarray, batch: int = 1, min_seconds: float = 0.5) -> Dict[str, float]:
    """Images/s and latency of ``embed_one`` on ``batch`` rows (docedge's timing helper)."""
    from docedge.runtime.benchmark import time_call

    xb = np.ascontiguousarray(x[:batch])
    t = time_call(lambda: embed_one(xb), batch, warmup=3, iters=30, min_seconds=min_seconds)
    return {"batch": batch, "images_per_s": round(t["images_per_s"], 1), "p50_ms": round(t["p50_ms"], 3),
            "threads": 2}  # fmt: skip
