"""Accuracy parity: does every artifact decide like the PyTorch reference?

Three levels per artifact (precision x backend/provider), on the same images through the
runtime's pre-processing: embeddings (cosine to the reference: min, p1, mean; max abs diff),
neighbours (top-1 agreement against a gallery), decisions (same label or same "unknown" at the
operating point), and, on labelled images (one folder per class), TPR at every table FPR and
AUROC beside the reference's. Each check has a tolerance per precision; the run passes when
all checks pass. JSON schema: docs/parity.md.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from docedge.export.verify import agreement, cosine_rows
from docedge.runtime.backends import create_backend
from docedge.runtime.bundle import Bundle, load_bundle
from docedge.runtime.errors import BackendUnavailableError, DocedgeError, ImageError
from docedge.runtime.preprocess import list_images, load_image, preprocess_bgr
from docedge.runtime.search import scores

from .roc import DEFAULT_FPRS
from .thresholds import table_from_embeddings

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: Default tolerances per precision (overridable by CLI flags and a JSON config file).
DEFAULT_TOLERANCES: Dict[str, Dict[str, float]] = {
    "fp32": {"cos_min": 0.99999, "decision_agreement": 0.999, "tpr_drop_at_1e-2": 0.01},
    "fp16": {"cos_min": 0.999, "decision_agreement": 0.99, "tpr_drop_at_1e-2": 0.01},
    "int8": {"cos_mean": 0.99, "decision_agreement": 0.97, "tpr_drop_at_1e-2": 0.01},
}


@dataclass
class ParityResult:
    """Outcome of :func:`run_parity`; ``to_json()`` follows the documented schema."""

    bundle: str
    images: int
    labelled: bool
    reference: str
    artifacts: List[Dict[str, Any]] = field(default_factory=list)
    reference_metrics: Dict[str, Any] = field(default_factory=dict)
    skipped: List[Dict[str, str]] = field(default_factory=list)
    tolerances: Dict[str, Dict[str, float]] = field(default_factory=dict)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def failures(self) -> List[str]:
        return [f"{a['name']}: {c['check']} {c['value']:.6g} vs {c['op']} {c['limit']:g}"
                for a in self.artifacts for c in a["checks"] if not c["passed"]]  # fmt: skip

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> Dict[str, Any]:
        return {"schema": "docedge.parity", "schema_version": SCHEMA_VERSION,
                "bundle": self.bundle, "images": self.images, "labelled": self.labelled,
                "reference": self.reference, "passed": self.passed,
                "failures": self.failures, "tolerances": self.tolerances,
                "reference_metrics": self.reference_metrics, "artifacts": self.artifacts,
                "skipped": self.skipped}  # fmt: skip


def load_tolerances(config: Optional[Union[str, Path]] = None,
                    overrides: Optional[Dict[str, Dict[str, float]]] = None
                    ) -> Dict[str, Dict[str, float]]:  # fmt: skip
    """Defaults, then a JSON config (``{"fp16": {"cos_min": 0.998}, ...}``), then overrides."""
    tol: Dict[str, Dict[str, float]] = json.loads(json.dumps(DEFAULT_TOLERANCES))
    layers = []
    if config is not None:
        try:
            layers.append(json.loads(Path(config).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as e:
            raise DocedgeError(f"{config}: cannot read parity config ({e})") from None
    layers.append(overrides or {})
    for layer in layers:
        for prec, values in layer.items():
            if prec not in tol:
                raise DocedgeError(f"unknown precision {prec!r} in tolerances")
            for key, v in values.items():
                tol[prec][key] = float(v)
    return tol


def _scan(images_dir: Path) -> Tuple[List[Path], Optional[List[str]]]:
    classes = sorted(p for p in images_dir.iterdir() if p.is_dir())
    if len(classes) >= 2:
        paths, labels = [], []
        for c in classes:
            for f in list_images(c):
                paths.append(f)
                labels.append(c.name)
        return paths, labels
    return list_images(images_dir), None


def _reference(bundle: Bundle, checkpoint: Optional[Path], seed: Optional[int]) -> Tuple[Any, str]:
    from docedge.export.reference import reference_for_bundle

    ref = reference_for_bundle(bundle.model, checkpoint, seed)
    if ref is None:
        return None, "fp32 onnx artifact (imported bundle: no PyTorch reference)"
    return ref.net, f"pytorch ({ref.source['kind']})"


def _batched(fn: Any, x: np.ndarray, bs: int = 32) -> np.ndarray:
    return np.concatenate([fn(x[i : i + bs]) for i in range(0, len(x), bs)])


def _decisions(probes: np.ndarray, gallery: np.ndarray, glabels: Sequence[str],
               threshold: float) -> Tuple[List[Optional[str]], np.ndarray]:  # fmt: skip
    s = scores(probes, gallery)
    best = s.argmax(1)
    top = s[np.arange(len(s)), best]
    return [glabels[b] if t > threshold else None for b, t in zip(best, top)], best


def run_parity(
    bundle_dir: Union[str, Path],
    images_dir: Union[str, Path],
    checkpoint: Optional[Union[str, Path]] = None,
    random_init_seed: Optional[int] = None,
    precisions: Optional[Sequence[str]] = None,
    providers: Sequence[str] = ("cpu",),
    tensorrt: bool = True,
    tolerances: Optional[Dict[str, Dict[str, float]]] = None,
    fpr: float = 1e-2,
    progress: bool = True,
) -> ParityResult:
    """Compare every artifact of the bundle with the reference on ``images_dir``."""
    from docedge.export.bundle_writer import torch_embed

    bundle = load_bundle(bundle_dir)
    tol = tolerances or load_tolerances()
    paths, labels = _scan(Path(images_dir))
    xs, keep = [], []
    for i, p in enumerate(paths):
        try:
            xs.append(preprocess_bgr(load_image(str(p), i), bundle.preprocess))
            keep.append(i)
        except ImageError as e:
            logger.warning("parity: skipping %s", e)
    if len(xs) < 2:
        raise DocedgeError(f"{images_dir}: need at least two readable images")
    x = np.stack(xs)
    labels = [labels[i] for i in keep] if labels else None
    net, ref_name = _reference(bundle, Path(checkpoint) if checkpoint else None, random_init_seed)
    if net is not None:
        ref = _batched(lambda b: torch_embed(net, b), x)
    else:
        ref = _batched(create_backend(bundle, "fp32").run, x)

    # Gallery: first image of each class is its exemplar; the others are probes. Without
    # labels, every image is both (leave-one-out nearest neighbour).
    if labels:
        first: Dict[str, int] = {}
        for i, lbl in enumerate(labels):
            first.setdefault(lbl, i)
        g_idx = np.array(sorted(first.values()))
        p_idx = np.array([i for i in range(len(labels)) if i not in set(g_idx.tolist())])
        glabels = [labels[i] for i in g_idx]
    else:
        g_idx = p_idx = np.arange(len(x))
        glabels = [str(paths[keep[i]].name) for i in g_idx]

    def level_metrics(emb: np.ndarray, precision: str) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        if labels:
            t = table_from_embeddings(emb, labels, DEFAULT_FPRS, max_impostors=2_000_000)
            out["tpr_at_fpr"] = {f"{r['fpr']:g}": r["tpr"] for r in t["rows"]}
            out["auroc"] = t["auroc"]
            out["_scores"] = (t["genuine"], t["impostor"])
        return out

    ref_metrics = level_metrics(ref, "fp32")
    ref_threshold = _threshold(bundle, "fp32", fpr, ref_metrics)
    ref_dec, ref_nn = _decisions(ref[p_idx], ref[g_idx], glabels, ref_threshold)
    if not labels:  # leave-one-out: exclude self matches
        ref_nn = _loo_nn(ref)
    result = ParityResult(str(bundle.path), len(x), bool(labels), ref_name, tolerances=tol)
    result.reference_metrics = {k: v for k, v in ref_metrics.items() if not k.startswith("_")}
    result.reference_metrics["threshold"] = ref_threshold
    result.raw = {"reference": ref, "reference_scores": ref_metrics.get("_scores"),
                  "inputs": x, "artifacts": {}}  # fmt: skip

    runs: List[Tuple[str, str, Any]] = []
    for prec in precisions or bundle.precisions:
        for prov in providers:
            runs.append((f"{prec}/onnxruntime-{prov}", prec, ("onnxruntime", {"providers": [prov]})))
        if tensorrt:
            runs.append((f"{prec}/tensorrt", prec, ("tensorrt", {})))
    iterator: Any = runs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(runs, desc="parity", unit="artifact")
    for name, prec, (backend_name, opts) in iterator:
        try:
            backend = create_backend(bundle, prec, backend_name, **opts)
        except (BackendUnavailableError, ImportError) as e:
            result.skipped.append({"name": name, "reason": str(e).splitlines()[0]})
            continue
        emb = _batched(backend.run, x, backend.max_batch or 32)
        backend.close()
        agree = agreement(ref, emb)
        m = level_metrics(emb, prec)
        thr = _threshold(bundle, prec, fpr, m)
        dec, nn = _decisions(emb[p_idx], emb[g_idx], glabels, thr)
        if not labels:
            nn = _loo_nn(emb)
        rec: Dict[str, Any] = {
            "name": name, "precision": prec, "backend": backend_name,
            "embedding": agree.to_dict(),
            "neighbour_agreement": float(np.mean(nn == ref_nn)),
            "decision_agreement": float(np.mean([a == b for a, b in zip(dec, ref_dec)])),
            "threshold": thr,
        }  # fmt: skip
        if labels:
            rec["tpr_at_fpr"] = m["tpr_at_fpr"]
            rec["auroc"] = m["auroc"]
            rec["tpr_delta"] = {k: _delta(m["tpr_at_fpr"][k], ref_metrics["tpr_at_fpr"][k])
                                for k in m["tpr_at_fpr"]}  # fmt: skip
            rec["auroc_delta"] = m["auroc"] - ref_metrics["auroc"]
        rec["checks"] = _checks(rec, tol.get(prec, {}))
        result.artifacts.append(rec)
        result.raw["artifacts"][name] = {"embeddings": emb, "cosine": cosine_rows(ref, emb),
                                         "scores": m.get("_scores")}  # fmt: skip
    return result


def _loo_nn(emb: np.ndarray) -> np.ndarray:
    s = scores(emb, emb)
    np.fill_diagonal(s, -np.inf)
    nn: np.ndarray = s.argmax(1)
    return nn


def _delta(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else a - b


def _threshold(bundle: Bundle, precision: str, fpr: float, metrics: Dict[str, Any]) -> float:
    """The bundle's operating point for ``precision`` (its own table, else fp32's); without any
    table, the threshold at ``fpr`` measured on these (labelled) images."""
    from docedge.runtime.thresholds import operating_point

    for table in (bundle.thresholds(precision), bundle.thresholds("fp32")):
        if table:
            try:
                return operating_point(table, fpr).threshold
            except DocedgeError:
                continue
    if "_scores" in metrics:
        from .roc import tpr_at_fpr_table

        gen, imp = metrics["_scores"]
        row = tpr_at_fpr_table(gen, imp, fprs=[fpr])[0]
        if row["threshold"] is not None:
            return float(row["threshold"])
    return 0.5  # cos = 0: documented fallback for unlabelled images and no table


def _checks(rec: Dict[str, Any], tol: Dict[str, float]) -> List[Dict[str, Any]]:
    checks = []
    emb = rec["embedding"]
    for key in ("cos_min", "cos_mean", "cos_p1"):
        if key in tol:
            checks.append({"check": key, "value": emb[key], "op": ">=", "limit": tol[key],
                           "passed": emb[key] >= tol[key]})  # fmt: skip
    if "decision_agreement" in tol:
        v = rec["decision_agreement"]
        checks.append({"check": "decision_agreement", "value": v, "op": ">=",
                       "limit": tol["decision_agreement"],
                       "passed": v >= tol["decision_agreement"]})  # fmt: skip
    if "neighbour_agreement" in tol:
        v = rec["neighbour_agreement"]
        checks.append({"check": "neighbour_agreement", "value": v, "op": ">=",
                       "limit": tol["neighbour_agreement"],
                       "passed": v >= tol["neighbour_agreement"]})  # fmt: skip
    drop = rec.get("tpr_delta", {}).get("0.01")
    if drop is not None and "tpr_drop_at_1e-2" in tol:
        checks.append({"check": "tpr_drop_at_1e-2", "value": -drop, "op": "<=",
                       "limit": tol["tpr_drop_at_1e-2"],
                       "passed": -drop <= tol["tpr_drop_at_1e-2"] + 1e-12})  # fmt: skip
    return checks
