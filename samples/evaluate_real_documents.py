"""Evaluate demo-model weights on real documents and on synthetic ones, fp32 and INT8, through
docedge's own export, INT8 calibration and runtime (``docedge.runtime.Embedder``), with the
16x16 grey thumbnail cosine baseline in the same table.

Sets (see ``docedge.calibration.real_eval.PROTOCOL``):

- ``real``: pages of the EVAL packages (``docedge.synth.real_pages.EVAL_PACKAGES``): 150
  registered as clean renders, 50 unknown pages never registered, 2 captures of each page;
- ``real_flat``: the same pages, queried with the flat capture simulator alone at strength 1.0
  (what ``docedge synth captures`` writes by default);
- ``real_calib``: the same protocol on the CALIB package (``CALIB_PACKAGES``, disjoint from
  training and from ``real``): the shipped threshold tables are measured here, per precision;
- ``synthetic``: held-out synthetic document types 0..199 (1 clean render registered, 5
  captures of other instances), unknown types 200..249.

INT8: ``docedge.calibration.int8.calibrate_int8`` on a calibration folder of captures of
training data only (synthetic types >= 1000, synthetic text pages, TRAIN-package real pages).
Agreement: the share of queries (registered and unknown) for which fp32 and INT8 make the same
decision (same page, or both "unknown") at the fp32 FPR 1e-2 threshold of each table; cosine:
per-image cosine between the fp32 and INT8 embeddings.

    python samples/evaluate_real_documents.py                       # the shipped demo weights
    python samples/evaluate_real_documents.py W.safetensors --json out.json
    python samples/evaluate_real_documents.py --write-card          # put tables in the card

Needs the page sets of ``samples/build_demo_data.py`` (``--data``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2
import numpy as np

from docedge.calibration.real_eval import (
    PROTOCOL,
    EvalSet,
    build_eval_set,
    decisions,
    metrics,
    threshold_at,
    thumbnails,
    tpr_at,
)
from docedge.synth.backgrounds import capture_mix
from docedge.synth.captures import capture
from docedge.synth.documents import DocumentType, render
from docedge.synth.mix import list_pool
from docedge.synth.real_pages import CALIB_PACKAGES, EVAL_PACKAGES, TRAIN_PACKAGES

log = logging.getLogger("evaluate_real_documents")
ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "export" / "weights"
FPRS = (1e-3, 1e-2)


def synthetic_set(n_types: int = 200, probes: int = 5, n_unknown: int = 50, seed: int = 7
                  ) -> EvalSet:  # fmt: skip
    """Held-out synthetic types (as ``samples/evaluate_demo_model.py``), unknown types after."""
    rng = np.random.default_rng(seed)
    reg, ids, q, ql, unk, uids = [], [], [], [], [], []
    for tid in range(n_types + n_unknown):
        t = DocumentType.from_id(tid)
        caps = [capture(render(t, 100 + k), rng, float(rng.uniform(0.3, 1.0)))
                for k in range(probes)]  # fmt: skip
        if tid < n_types:
            reg.append(render(t, 0))
            ids.append(t.name)
            q.extend(caps)
            ql.extend([tid] * probes)
        else:
            unk.extend(caps[:2])
            uids.append(t.name)
    info = {"types": n_types, "probes_per_type": probes, "unknown_types": n_unknown,
            "queries": len(q), "unknown_queries": len(unk), "seed": seed}  # fmt: skip
    return EvalSet(reg, ids, q, ql, unk, uids, info)


def calibration_images(out: Path, data: Path, n: int = 600, seed: int = 3) -> Path:
    """Captures of training data only, for INT8 calibration: a third each of synthetic types
    (ids >= 1000), synthetic text pages and TRAIN-package real pages."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pages, real = list_pool(data / "synth_pages"), list_pool(data / "real_train")
    for k in range(n):
        path = out / f"calib{k:04d}_synthetic.jpg"
        src = k % 3
        if src == 0 or not (pages and real):
            img = render(DocumentType.from_id(int(rng.integers(1000, 2_000_000))), k)
        else:
            pool = pages if src == 1 else real
            img = cv2.imread(str(pool[int(rng.integers(len(pool)))]), cv2.IMREAD_COLOR)
        cap = capture_mix(img, rng) if rng.random() < 0.8 else img
        cv2.imwrite(str(path), cap, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return out


def embed_all(embedder: Any, s: EvalSet) -> Dict[str, np.ndarray]:
    return {"register": embedder.embed(s.register), "queries": embedder.embed(s.queries),
            "unknown": embedder.embed(s.unknown)}  # fmt: skip


def evaluate_set(name: str, s: EvalSet, embs: Dict[str, Dict[str, np.ndarray]],
                 thresholds: Dict[str, float]) -> Dict[str, Any]:  # fmt: skip
    """Metrics per precision and for the thumbnail baseline; INT8 vs fp32 agreement."""
    res: Dict[str, Any] = {"set": name, "info": s.info}
    for prec, e in embs.items():
        res[prec] = metrics(e["queries"], e["register"], s.query_labels, e["unknown"], thresholds)
    tb = {"register": thumbnails(s.register), "queries": thumbnails(s.queries),
          "unknown": thumbnails(s.unknown)}  # fmt: skip
    res["thumbnail16"] = metrics(tb["queries"], tb["register"], s.query_labels, tb["unknown"], {})
    if "int8" in embs:
        a, b = embs["fp32"], embs["int8"]
        cos = np.concatenate([np.sum(a[k] * b[k], 1) for k in ("register", "queries", "unknown")])
        agree = {}
        for tname, t in thresholds.items():
            agree[tname] = float((decisions(a, t) == decisions(b, t)).mean())
        res["int8_vs_fp32"] = {"cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
                               "decision_agreement": agree}  # fmt: skip
    return res


def row(label: str, m: Dict[str, Any], tname: str) -> str:
    at = (m.get("at_thresholds") or {}).get(tname, {})
    f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    return (f"| {label} | {f(m['top1'])} | {f(tpr_at(m['rows'], 1e-3))} | "
            f"{f(tpr_at(m['rows'], 1e-2))} | {f(m['auroc'])} | {f(at.get('tpr'))} | "
            f"{f(at.get('unknown_rejected'))} |")  # fmt: skip


def markdown(results: List[Dict[str, Any]], tname: str) -> str:
    lines = [f"Thresholds: `{tname}`", "",
             "| set / model | top-1 | TPR@1e-3 | TPR@1e-2 | AUROC | TPR at thr | unknown rejected at thr |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        for prec in ("fp32", "int8", "thumbnail16"):
            if prec in r:
                lines.append(row(f"{r['set']} {prec}", r[prec], tname))
    for r in results:
        if "int8_vs_fp32" in r:
            x = r["int8_vs_fp32"]
            ag = ", ".join(f"{k} {v:.3f}" for k, v in x["decision_agreement"].items())
            lines.append(f"\n{r['set']}: INT8 vs fp32 cosine mean {x['cos_mean']:.4f} "
                         f"(min {x['cos_min']:.4f}); decision agreement {ag}")  # fmt: skip
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", type=Path, nargs="?", default=WEIGHTS / "demo_lcnet050_synth.safetensors")
    p.add_argument("--data", type=Path, default=Path("/work/demo_data"))
    p.add_argument("--work", type=Path, default=Path("/tmp/docedge_real_eval"))
    p.add_argument("--register", type=int, default=150)
    p.add_argument("--unknown", type=int, default=50)
    p.add_argument("--captures", type=int, default=2)
    p.add_argument("--no-int8", action="store_true")
    p.add_argument("--no-synthetic", action="store_true")
    p.add_argument("--json", type=Path, help="write all results here")
    p.add_argument("--write-card", action="store_true",
                   help="store the real-page tables and evaluation in the demo card")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    import torch

    torch.set_num_threads(a.threads)
    from docedge.calibration.int8 import calibrate_int8
    from docedge.export.bundle_writer import export_bundle
    from docedge.runtime.embedder import Embedder

    t0 = time.time()
    bundle = a.work / "bundle"
    export_bundle(bundle, checkpoint=a.weights, overwrite=True)
    precisions = ["fp32"]
    int8_gate = None
    if not a.no_int8:
        calib = calibration_images(a.work / "calib_images", a.data)
        # evaluate INT8 even when the export gate fails, and report the gate's verdict
        rec = calibrate_int8(bundle, calib, progress=False, enforce_gate=False)
        v = rec["onnx"]["verification"]
        int8_gate = {k: v.get(k) for k in ("passed", "cos_mean", "cos_min", "gate", "images")}
        if not v.get("passed"):
            log.warning("INT8 export gate failed (%s); evaluating INT8 anyway", int8_gate)
        precisions.append("int8")
    sets = {
        "real_calib": build_eval_set(a.data / "real_eval", CALIB_PACKAGES, a.register,
                                     a.unknown, a.captures, seed=1),
        "real": build_eval_set(a.data / "real_eval", EVAL_PACKAGES, a.register, a.unknown,
                               a.captures, seed=0),
        "real_flat": build_eval_set(a.data / "real_eval", EVAL_PACKAGES, a.register, a.unknown,
                                    a.captures, seed=0, kind="flat"),
    }  # fmt: skip
    if not a.no_synthetic:
        sets["synthetic"] = synthetic_set()
    log.info("sets built (%.0f s): %s", time.time() - t0, {k: v.info for k, v in sets.items()})
    embs: Dict[str, Dict[str, Dict[str, np.ndarray]]] = {k: {} for k in sets}
    for prec in precisions:
        with Embedder(bundle, precision=prec, batch_size=64, intra_op_threads=a.threads) as emb:
            for k, s in sets.items():
                embs[k][prec] = embed_all(emb, s)
    # tables per precision on the calibration set (what ships); the card's current table
    card_path = WEIGHTS / "demo_lcnet050_synth.json"
    card = json.loads(card_path.read_text())
    shipped = card.get("threshold_table", {}).get("rows", [])
    thresholds = {f"shipped@{f:g}": threshold_at(shipped, f) for f in FPRS}
    thresholds = {k: v for k, v in thresholds.items() if v is not None}
    calib_res = evaluate_set("real_calib", sets["real_calib"], embs["real_calib"], {})
    for f in FPRS:
        t = threshold_at(calib_res["fp32"]["rows"], f)
        if t is not None:
            thresholds[f"real_calib_fp32@{f:g}"] = t
    results = [evaluate_set(k, sets[k], embs[k], thresholds) for k in sets]
    out = {"weights": str(a.weights), "protocol": PROTOCOL, "packages": {
        "train": list(TRAIN_PACKAGES), "threshold_calibration": list(CALIB_PACKAGES),
        "evaluation": list(EVAL_PACKAGES)}, "thresholds": thresholds, "results": results,
        "int8_export_gate": int8_gate,
        "seconds": round(time.time() - t0, 1)}  # fmt: skip
    for tname in thresholds:
        print(markdown(results, tname) + "\n")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")
    if a.write_card:
        write_card(card_path, card, out)
    return 0


def _table(m: Dict[str, Any], prec: str, origin: str, info: Dict[str, Any]) -> Dict[str, Any]:
    import datetime as dt

    return {"precision": prec, "rows": m["rows"], "auroc": m["auroc"], "source": {
        "origin": origin, **info, "genuine_pairs": m["genuine_pairs"],
        "impostor_pairs": m["impostor_pairs"], "score_space": "(cos+1)/2",
        "rule": "at most floor(FPR*N) false accepts",
        "date": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()}}


def write_card(path: Path, card: Dict[str, Any], out: Dict[str, Any]) -> None:
    """The card's ``threshold_table`` (fp32) becomes the real-page calibration table;
    ``threshold_tables`` holds it per precision; the synthetic table moves to
    ``threshold_table_synthetic``; ``evaluation_real`` holds every result."""
    res = {r["set"]: r for r in out["results"]}
    calib = res["real_calib"]
    origin = ("docedge demo model card: real PDF pages of " + ", ".join(CALIB_PACKAGES) +
              " (never trained on), clean renders registered, camera-like captures as queries")
    tables = {prec: _table(calib[prec], prec, origin, calib["info"])
              for prec in ("fp32", "int8") if prec in calib}  # fmt: skip
    if "threshold_table_synthetic" not in card:
        card["threshold_table_synthetic"] = card.get("threshold_table")
    card["threshold_table"] = tables["fp32"]
    card["threshold_tables"] = tables
    card["evaluation_real"] = {"protocol": out["protocol"], "packages": out["packages"],
                               "thresholds": out["thresholds"], "results": out["results"]}
    path.write_text(json.dumps(card, indent=2) + "\n")
    log.info("wrote %s", path)


if __name__ == "__main__":
    raise SystemExit(main())
