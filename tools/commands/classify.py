"""``docedge classify BUNDLE GALLERY IMAGES...``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..output import add_json_flag, print_json


def register(sub: Any) -> None:
    p = sub.add_parser("classify", help="classify images against a gallery")
    p.add_argument("bundle", type=Path)
    p.add_argument("gallery", type=Path)
    p.add_argument("images", nargs="+", type=Path, help="image files or folders")
    op = p.add_mutually_exclusive_group()
    op.add_argument("--fpr", type=float, default=1e-2,
                    help="operating point from the bundle's table (default 1e-2)")
    op.add_argument("--threshold", type=float, help="explicit threshold in (cos+1)/2 space")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--providers", default="cpu", help="ONNX Runtime providers (cpu, cuda, tensorrt)")
    p.add_argument("--backend", default="onnxruntime", help="onnxruntime | tensorrt")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from docedge.runtime.classifier import Classifier

    from .embed import expand_images

    paths = expand_images(args.images)
    options = {}
    if args.backend == "onnxruntime":
        options["providers"] = [p for p in args.providers.split(",") if p]
    clf = Classifier(args.bundle, args.gallery, fpr=args.fpr, threshold=args.threshold,
                     precision=args.precision, top_k=args.top_k, backend=args.backend,
                     **options)  # fmt: skip
    decisions = clf.classify([str(p) for p in paths])
    op = clf.operating_point
    if args.json:
        print_json({"ok": all(d.error is None for d in decisions),
                    "operating_point": op.to_dict(),
                    "results": [{"image": str(p), **d.to_dict()}
                                for p, d in zip(paths, decisions)]})  # fmt: skip
    else:
        where = f"FPR {op.fpr:g}" if op.fpr is not None else "explicit"
        print(f"threshold {op.threshold:.3f} ({where}, {args.precision})")
        for p, d in zip(paths, decisions):
            if d.error:
                print(f"{p}: ERROR {d.error}")
                continue
            best = d.best
            shown = d.label or "unknown"
            if d.parent:
                shown += f" (parent {d.parent})"
            cand = f" best {best.label} {best.score:.3f}" if best and d.label is None else ""
            margin = f" margin {d.margin:.3f}" if d.margin is not None else ""
            print(f"{p}: {shown}  score {d.score:.3f}{margin}{cand}")
    return 0 if all(d.error is None for d in decisions) else 1
