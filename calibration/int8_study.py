"""The INT8 measurement behind docs/int8.md: range methods x nodes kept float x calibration
data, each QDQ model scored against the reference on the gate image sets and on a labelled
zero-shot protocol. Re-run it whenever the demo weights change::

    python -m docedge.calibration.int8_study BUNDLE --work /tmp/int8_study

``BUNDLE`` is an fp32 bundle of the model (``docedge export``). Writes ``results.json`` and
``results.md`` (a Markdown table) into ``--work``; data and ranges are cached there.

Labelled protocol (the demo model card's): document types 0..199 (never trained on), one clean
render each as the registered exemplar, 3 simulated captures each as probes (strength
U(0.3, 1.0), seed 7); genuine = probe vs its own exemplar, impostor = probe vs the others; TPR at
FPR 1e-2 and 1e-3 with at most floor(FPR * N) false accepts.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np
import onnx

from docedge.export.gates import ort_embed, torch_embed
from docedge.export.manifest import FP32_FILE
from docedge.export.verify import agreement

from .calib_data import ImageSet
from .int8 import depthwise_convs, quantize_qdq
from .ranges import RangeResult, compute_ranges
from .roc import tpr_at_fpr_table

logger = logging.getLogger(__name__)

#: (label, options). Options: method, pct, keep (groups or node names), ops, per_channel,
#: calib (data set name), ort (use ONNX Runtime's own calibrator for the ranges).
VARIANTS: List[Dict[str, Any]] = [
    {"label": "ORT MinMax (quantize_static)", "method": "minmax", "ort": "MinMax"},
    {"label": "ORT Entropy (quantize_static defaults)", "method": "entropy", "ort": "Entropy"},
    {"label": "ORT Percentile 99.999", "method": "percentile", "pct": 99.999, "ort": "Percentile"},
    {"label": "minmax", "method": "minmax"},
    {"label": "entropy (TensorRT KL)", "method": "entropy"},
    {"label": "percentile 99.9", "method": "percentile", "pct": 99.9},
    {"label": "percentile 99.99", "method": "percentile", "pct": 99.99},
    {"label": "percentile 99.999", "method": "percentile", "pct": 99.999},
    {"label": "mse", "method": "mse"},
    {"label": "minmax, depthwise float", "method": "minmax", "keep": ["dw"]},
    {"label": "entropy, depthwise float", "method": "entropy", "keep": ["dw"]},
    {"label": "percentile 99.99, depthwise float", "method": "percentile", "pct": 99.99, "keep": ["dw"]},
    {"label": "percentile 99.999, depthwise float", "method": "percentile", "pct": 99.999,
     "keep": ["dw"]},
    {"label": "mse, depthwise float", "method": "mse", "keep": ["dw"]},
    {"label": "percentile 99.99, depthwise + stem float", "method": "percentile", "pct": 99.99,
     "keep": ["dw", "stem"]},
    {"label": "percentile 99.99, depthwise + SE float", "method": "percentile", "pct": 99.99,
     "keep": ["dw", "se"]},
    {"label": "percentile 99.99, depthwise + head float", "method": "percentile", "pct": 99.99,
     "keep": ["dw", "head"]},
    {"label": "percentile 99.99, depthwise float, Conv only", "method": "percentile", "pct": 99.99,
     "keep": ["dw"], "ops": ["Conv"]},
    {"label": "percentile 99.99, depthwise float, per-tensor weights", "method": "percentile",
     "pct": 99.99, "keep": ["dw"], "per_channel": False},
    {"label": "percentile 99.99, depthwise float, 100 images", "method": "percentile",
     "pct": 99.99, "keep": ["dw"], "calib": "docs100"},
    {"label": "percentile 99.99, depthwise float, 1000 images", "method": "percentile",
     "pct": 99.99, "keep": ["dw"], "calib": "docs1000"},
    {"label": "percentile 99.99, depthwise float, calibrated on check images", "method": "percentile",
     "pct": 99.99, "keep": ["dw"], "calib": "check300"},
]  # fmt: skip

CALIB_SETS = {"docs300": (100, 3), "docs100": (50, 2), "docs1000": (250, 4)}


def prepare(work: Path, bundle: Path, reference: Any) -> Dict[str, np.ndarray]:
    """Calibration folders, gate batches, the labelled set and reference embeddings (cached)."""
    from docedge.export.check_images import check_batch, document_check_batch, write_check_images
    from docedge.runtime.preprocess import preprocess_bgr
    from docedge.synth.captures import capture
    from docedge.synth.dataset import write_documents
    from docedge.synth.documents import DocumentType, render

    for name, (types, per) in CALIB_SETS.items():
        if not (work / name).exists():
            write_documents(work / name, types=types, per_type=per, first_type_id=5000,
                            capture_strength=0.7)  # fmt: skip
    if not (work / "check300").exists():
        write_check_images(work / "check300", count=300, seed=2024)
    data = work / "data.npz"
    if not data.exists():
        rng = np.random.default_rng(7)
        reg, probes, labels = [], [], []
        for tid in range(200):
            t = DocumentType.from_id(tid)
            reg.append(preprocess_bgr(render(t, 0)))
            for k in range(3):
                probes.append(preprocess_bgr(capture(render(t, 100 + k), rng, float(rng.uniform(0.3, 1.0)))))
                labels.append(tid)
        np.savez(data, check=check_batch(36), documents=document_check_batch(64),
                 reg=np.stack(reg), probes=np.stack(probes), labels=np.asarray(labels))  # fmt: skip
    d = dict(np.load(data))
    refs = work / f"refs_{model_key(bundle)}.npz"
    if not refs.exists():
        fp32 = bundle / FP32_FILE

        def emb(x: np.ndarray) -> np.ndarray:
            return torch_embed(reference.net, x) if reference is not None else ort_embed(fp32, x)

        np.savez(refs, check=emb(d["check"]), documents=emb(d["documents"]),
                 reg=ort_embed(fp32, d["reg"]), probes=ort_embed(fp32, d["probes"]))  # fmt: skip
    d.update({f"ref_{k}": v for k, v in np.load(refs).items()})
    return d


def model_key(bundle: Path) -> str:
    """Short hash of the bundle's fp32 ONNX (caches are per model, not per folder name)."""
    from docedge.runtime.hashing import sha256_file

    return sha256_file(bundle / FP32_FILE)[:12]


def zero_shot(reg: np.ndarray, probes: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """TPR at FPR 1e-2 / 1e-3 and top-1 of probes against one exemplar per type."""
    s = (probes @ reg.T + 1.0) / 2.0
    idx = np.arange(labels.size)
    genuine = s[idx, labels]
    mask = np.ones_like(s, bool)
    mask[idx, labels] = False
    rows = tpr_at_fpr_table(genuine, s[mask], [1e-3, 1e-2])
    return {"tpr@1e-3": rows[0]["tpr"], "tpr@1e-2": rows[1]["tpr"],
            "top1": float((s.argmax(1) == labels).mean())}  # fmt: skip


def ort_ranges(fp32_path: Path, images: ImageSet, method: str, pct: float) -> Dict[str, float]:
    """amax per tensor from ONNX Runtime's own calibrator, as ``quantize_static`` runs it."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    from .calib_data import ImageSetReader

    extra: Dict[str, Any] = {"symmetric": True}
    if method == "Percentile":
        extra["percentile"] = pct
    with tempfile.TemporaryDirectory() as tmp:
        cal = create_calibrator(fp32_path, None, Path(tmp) / "aug.onnx",
                                getattr(CalibrationMethod, method), extra_options=extra)  # fmt: skip
        # ORT's histogram calibrators stack every batch's outputs: all batches must have the
        # same size (a short last batch raises "inhomogeneous shape").
        bs = max(b for b in range(1, 33) if len(images) % b == 0)
        cal.collect_data(ImageSetReader(images, batch_size=bs))
        data = cal.compute_data().data
    return {t: float(np.max(np.abs(np.concatenate([np.ravel(v.range_value[0]),
                                                   np.ravel(v.range_value[1])]))))
            for t, v in data.items()}  # fmt: skip


def _batches(images: ImageSet) -> Callable[[], Iterable[np.ndarray]]:
    return lambda: images.batches(32)


def node_groups(model: onnx.ModelProto) -> Dict[str, List[str]]:
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    return {
        "dw": depthwise_convs(model),
        "stem": convs[:1],
        "se": [n for n in convs if "/se/" in n],
        "head": [n.name for n in model.graph.node if "/head/" in n.name],
        "norm": [n.name for n in model.graph.node if n.op_type == "ReduceL2"],
    }


def run_study(bundle: Path, work: Path, variants: Sequence[Dict[str, Any]] = VARIANTS,
              reference: Any = None, log: Callable[[str], None] = print) -> List[Dict[str, Any]]:  # fmt: skip
    """Score every variant; returns one result dict per variant (also written to ``work``)."""
    work.mkdir(parents=True, exist_ok=True)
    d = prepare(work, bundle, reference)
    fp32_path = bundle / FP32_FILE
    fp32 = onnx.load(str(fp32_path))
    groups = node_groups(fp32)
    base = zero_shot(d["ref_reg"], d["ref_probes"], d["labels"])
    results: List[Dict[str, Any]] = [{"label": "fp32 (reference)", **base}]
    log(json.dumps(results[0]))
    cache: Dict[str, RangeResult] = {}
    for v in variants:
        calib = v.get("calib", "docs300")
        pct = float(v.get("pct", 99.99))
        key = f"{model_key(bundle)}_{calib}_{v['method']}_{pct}_{v.get('ort', '')}"
        t0 = time.time()
        if key not in cache:  # ranges are recomputed per run (no on-disk cache: no pickle)
            images = ImageSet.scan(work / calib)
            if v.get("ort"):
                amax = ort_ranges(fp32_path, images, v["ort"], pct)
                cache[key] = RangeResult(amax, v["method"], pct)
            else:
                cache[key] = compute_ranges(fp32, _batches(images), v["method"], pct,
                                            progress=False)  # fmt: skip
        r = cache[key]
        keep = [n for g in ["norm", *v.get("keep", [])] for n in groups.get(g, [g])]
        q = work / "q.onnx"
        quantize_qdq(fp32_path, q, r.amax, keep, v.get("per_channel", True),
                     v.get("ops", ("Conv", "MatMul", "Gemm")))  # fmt: skip
        res: Dict[str, Any] = {"label": v["label"]}
        for s in ("check", "documents"):
            a = agreement(d[f"ref_{s}"], ort_embed(q, d[s]))
            res[f"{s}_mean"], res[f"{s}_min"] = a.cos_mean, a.cos_min
        res.update(zero_shot(ort_embed(q, d["reg"]), ort_embed(q, d["probes"]), d["labels"]))
        res["fallbacks"] = len(r.fallbacks)
        res["seconds"] = round(time.time() - t0, 1)
        results.append(res)
        log(json.dumps(res))
    (work / "results.json").write_text(json.dumps(results, indent=1))
    (work / "results.md").write_text(markdown_table(results))
    return results


def markdown_table(results: Sequence[Dict[str, Any]]) -> str:
    def f(x: Optional[float], n: int = 4) -> str:
        return "" if x is None else f"{x:.{n}f}"

    lines = ["| variant | check mean | check min | documents mean | documents min | TPR@1e-2 "
             "| TPR@1e-3 | top-1 |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        lines.append(f"| {r['label']} | {f(r.get('check_mean'))} | {f(r.get('check_min'))} | "
                     f"{f(r.get('documents_mean'))} | {f(r.get('documents_min'))} | "
                     f"{f(r.get('tpr@1e-2'), 3)} | {f(r.get('tpr@1e-3'), 3)} | "
                     f"{f(r.get('top1'), 3)} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--only", nargs="*", help="labels (substrings) of the variants to run")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from docedge.export.reference import reference_for_bundle
    from docedge.runtime.bundle import load_bundle

    ref = reference_for_bundle(load_bundle(a.bundle).model, strict=False)
    variants = [v for v in VARIANTS if not a.only or any(s in v["label"] for s in a.only)]
    run_study(a.bundle, a.work, variants, ref)
    print(markdown_table(json.loads((a.work / "results.json").read_text())))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
