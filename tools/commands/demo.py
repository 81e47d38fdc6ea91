"""``docedge demo``: the main job end to end on the embedded demo model (no user data).

1. export the demo model to a verified bundle (fp32, fp16, INT8 + TensorRT cache);
2. calibrate threshold tables per precision on generated labelled captures;
3. build a gallery per precision from generated register documents (one image per type);
4. classify generated captures of registered types and of types never registered
   (which must come out "unknown"), and report accuracy and unknown rejection per precision;
5. a parity summary against the PyTorch reference and a throughput comparison.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict, List

from ..output import add_json_flag, print_json


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on the embedded demo model")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="work folder (default demo_out/)")
    p.add_argument("--registered", type=int, default=30, help="document types to register")
    p.add_argument("--unregistered", type=int, default=10, help="types never registered")
    p.add_argument("--captures", type=int, default=3, help="captures per type")
    p.add_argument("--fpr", type=float, nargs="+", default=[1e-2, 1e-3],
                   help="operating points to report (default 1e-2 and 1e-3)")
    add_json_flag(p)
    p.set_defaults(func=run)


def _step(args: argparse.Namespace, text: str) -> None:
    if not args.json:
        print(f"\n== {text}", flush=True)


def run(args: argparse.Namespace) -> int:
    import shutil

    import numpy as np

    from docedge.calibration.parity import run_parity
    from docedge.calibration.pipeline import DEMO_THRESHOLDS, make_bundle
    from docedge.export.reference import load_reference
    from docedge.runtime.classifier import Classifier
    from docedge.runtime.embedder import Embedder
    from docedge.runtime.gallery_sync import sync_register
    from docedge.synth.captures import capture
    from docedge.synth.documents import DocumentType, render

    t_start = time.perf_counter()
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    report: Dict[str, Any] = {"out": str(out)}

    _step(args, "1/5 export the demo model (fp32, fp16, int8) and verify against PyTorch")
    ref = load_reference()
    bundle_dir = out / "bundle"
    labelled = DEMO_THRESHOLDS.write(out / "labelled", progress=not args.json)
    result = make_bundle(bundle_dir, ref, ("fp32", "fp16", "int8"), threshold_images=labelled,
                         progress=not args.json)  # fmt: skip
    bundle = result.bundle
    report["artifacts"] = [{"precision": a.precision, "format": a.format, "file": a.file,
                            "bytes": a.size, "gate": a.record.get("verification", {}).get("passed")}
                           for a in bundle.artifacts]  # fmt: skip
    if not args.json:
        for a in report["artifacts"]:
            gate = {True: "gate PASS", False: "gate FAIL", None: ""}[a["gate"]]
            print(f"  {a['precision']:<5} {a['format']:<22} {a['bytes'] / 1e6:5.2f} MB  {gate}")

    card = ref.extra.get("card") or {}
    report["model_card"] = _card_summary(card)
    if not args.json and report["model_card"]:
        print("  the demo model, as its card measured it (samples/evaluate_real_documents.py):")
        for row in report["model_card"]:
            print(f"    {row['set']:<11} {row['what']:<46} top-1 {row['top1']:.3f}  "
                  f"TPR@1e-2 {row['tpr_1e-2']:.3f}  AUROC {row['auroc']:.3f}")

    _step(args, "2/5 TPR@FPR thresholds per precision, measured on labelled synthetic captures")
    tables = {p: bundle.thresholds(p) or {} for p in bundle.precisions}
    report["thresholds"] = {p: {f"{r['fpr']:g}": r["threshold"] for r in t.get("rows", [])}
                            for p, t in tables.items()}  # fmt: skip
    if not args.json:
        for p, t in tables.items():
            pts = ", ".join(f"{r['threshold']:.3f} at FPR {r['fpr']:g} (TPR {r['tpr']:.3f})"
                            for r in t.get("rows", []) if r["fpr"] in args.fpr and r["supported"])
            print(f"  {p}: {pts}; AUROC {t.get('auroc', float('nan')):.4f}")

    _step(args, f"3/5 register {args.registered} document types (one clean image each)")
    register_dir = out / "register"
    probes: List[np.ndarray] = []
    truth: List[Any] = []
    rng = np.random.default_rng(2024)
    import cv2

    for tid in range(args.registered + args.unregistered):
        doc_type = DocumentType.from_id(tid)
        if tid < args.registered:
            register_dir.mkdir(exist_ok=True)
            cv2.imwrite(str(register_dir / f"{doc_type.name}.jpg"), render(doc_type, 0))
        for k in range(args.captures):
            probes.append(capture(render(doc_type, 100 + k), rng, float(rng.uniform(0.3, 1.0))))
            truth.append(doc_type.name if tid < args.registered else None)

    _step(args, f"4/5 classify {len(probes)} captures ({args.unregistered} types never registered)")
    report["classification"] = {}
    if not args.json:
        print("  (pair FPR f with G registered types: an unknown document is falsely accepted with "
              "probability about 1-(1-f)^G)")
    for prec in bundle.precisions:
        gallery = out / f"gallery_{prec}.gal"
        sync_register(gallery, Embedder(bundle, precision=prec), register_dir)
        for fpr in args.fpr:
            clf = Classifier(bundle, gallery, fpr=fpr, precision=prec)
            decisions = clf.classify(probes)
            known = [(d, y) for d, y in zip(decisions, truth) if y is not None]
            unknown = [d for d, y in zip(decisions, truth) if y is None]
            acc = float(np.mean([d.label == y for d, y in known]))
            rej = float(np.mean([d.label is None for d in unknown])) if unknown else float("nan")
            top1 = float(np.mean([d.best is not None and d.best.label == y for d, y in known]))
            report["classification"][f"{prec}@{fpr:g}"] = {
                "precision": prec, "fpr": fpr, "accuracy_registered": acc, "top1_registered": top1,
                "unknown_rejection": rej, "threshold": clf.operating_point.threshold}  # fmt: skip
            if not args.json:
                print(f"  {prec} FPR {fpr:<6g}: registered types correct {acc:6.1%} (top-1 {top1:6.1%}), "
                      f"unknown types rejected {rej:6.1%}, threshold {clf.operating_point.threshold:.3f}")
    if not args.json:
        d = decisions[0]
        v = Embedder(bundle).embed([probes[0]])[0]
        print(f"  e.g. capture 0 -> {d.label} (score {d.score:.3f}, margin {d.margin:.3f}); "
              f"embedding [{' '.join(f'{x:+.3f}' for x in v[:6])} ...] |v|={np.linalg.norm(v):.4f}")

    _step(args, "5/5 parity against the PyTorch reference, and throughput")
    parity = run_parity(bundle_dir, out / "labelled", tensorrt=False, progress=not args.json)
    report["parity"] = {"passed": parity.passed, "failures": parity.failures,
                        "artifacts": [{"name": a["name"], **a["embedding"],
                                       "decision_agreement": a["decision_agreement"]}
                                      for a in parity.artifacts]}  # fmt: skip
    if not args.json:
        for a in parity.artifacts:
            e = a["embedding"]
            print(f"  {a['name']:<22} cos min {e['cos_min']:.5f} mean {e['cos_mean']:.5f}  decisions "
                  f"agree {a['decision_agreement']:.1%}  "
                  f"{'PASS' if all(c['passed'] for c in a['checks']) else 'FAIL'}")
    from docedge.calibration.benchmark import default_engines, run_benchmark

    bench = run_benchmark(default_engines(str(bundle_dir), bundle.precisions), [1, 32], rounds=1,
                          seconds=0.3, gemm=False)  # fmt: skip
    report["bench"] = bench.summary
    if not args.json:
        print("  (one process per engine, one thread each; `docedge bench` for rounds and spread)")
        for b in bench.summary:
            ratio = b.get("cpu_speedup_vs_pytorch")
            ratio_s = f"{ratio:.1f}x PyTorch" if ratio and b["engine"] != "pytorch-eager" else ""
            print(f"  {b['engine']:<18} batch {int(b['batch']):>2}: {b['images_per_cpu_s']:7.0f} "
                  f"images per CPU-second, {b['wall_ms_per_image']:.3f} ms/image wall  {ratio_s}")
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    (out / "demo.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print_json(report)
    else:
        print(f"\ndone in {report['seconds']} s; report: {out / 'demo.json'}, parity: "
              f"{'PASS' if parity.passed else 'FAIL'}")
    ok = parity.passed and all(c["top1_registered"] > 0.8 for c in report["classification"].values())
    return 0 if ok else 1


def _card_summary(card: Dict[str, Any]) -> List[Dict[str, Any]]:
    """fp32 top-1, TPR@1e-2 and AUROC per evaluation set recorded in the demo model's card."""
    out: List[Dict[str, Any]] = []
    for res in (card.get("evaluation_real") or {}).get("results", []):
        fp32 = res.get("fp32") or {}
        tpr = next((r.get("tpr") for r in fp32.get("rows", []) if r.get("fpr") == 1e-2), None)
        if fp32.get("top1") is None or tpr is None:
            continue
        info = res.get("info") or {}
        what = (", ".join(info.get("packages", [])) or f"{info.get('types', '?')} synthetic types")
        out.append({"set": res.get("set"), "what": what[:46], "top1": float(fp32["top1"]),
                    "tpr_1e-2": float(tpr), "auroc": float(fp32.get("auroc", float("nan")))})
    return out
