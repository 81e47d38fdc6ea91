"""``docedge classify BUNDLE GALLERY IMAGES... [--fpr F | --threshold T] [--top-k K]``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..backend_flags import add_backend_flags, backend_options
from ..output import add_json_flag, positive_int, print_json


def register(sub: Any) -> None:
    p = sub.add_parser("classify", help="classify images against a gallery")
    p.add_argument("bundle", type=Path)
    p.add_argument("gallery", type=Path)
    p.add_argument("images", nargs="+", type=Path, help="image files or folders")
    op = p.add_mutually_exclusive_group()
    op.add_argument("--fpr", type=float, default=None,
                    help="operating point from the bundle's TPR@FPR table for the precision "
                    "(default 1e-2)")  # fmt: skip
    op.add_argument(
        "--threshold",
        type=float,
        help="explicit threshold in the (cos+1)/2 score space (match: score > T)",
    )
    p.add_argument("--top-k", type=positive_int, default=5,
                   help="labels reported per image (default 5)")
    p.add_argument("--precision", default="fp32",
                   help="fp32|fp16|int8, or bf16 with --backend openvino (with it int8 runs the "
                   "bundle's NNCF INT8 IR when it has one; default fp32)")  # fmt: skip
    add_backend_flags(p)
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from docedge.runtime.classifier import Classifier
    from docedge.runtime.thresholds import DEFAULT_FPR

    from .embed import expand_images

    paths = expand_images(args.images)
    options = backend_options(args)
    fpr = DEFAULT_FPR if args.fpr is None else args.fpr
    clf = Classifier(args.bundle, args.gallery, fpr=fpr, threshold=args.threshold,
                     precision=args.precision, top_k=args.top_k, backend=args.backend,
                     **options)  # fmt: skip
    decisions = clf.classify([str(p) for p in paths])
    op = clf.operating_point
    ok = all(d.error is None for d in decisions)
    if args.json:
        art = clf.embedder.artifact
        print_json({"ok": ok, "precision": args.precision, "artifact": art.file if art else None,
                    "operating_point": op.to_dict(),
                    "results": [{"image": str(p), **d.to_dict()}
                                for p, d in zip(paths, decisions)]})  # fmt: skip
        return 0 if ok else 1
    where = f"FPR {op.fpr:g}, TPR {op.tpr:g}" if op.fpr is not None and op.tpr is not None else (
        f"FPR {op.fpr:g}" if op.fpr is not None else "explicit")  # fmt: skip
    print(f"threshold {op.threshold:.3f} ({where}, {args.precision}); match: score > threshold")
    for p, d in zip(paths, decisions):
        if d.error:
            print(f"{p}: ERROR {d.error}")
            continue
        best = d.best
        margin = f"  margin {d.margin:.3f}" if d.margin is not None else ""
        if d.label is not None:
            parent = f" (parent {d.parent})" if d.parent else ""
            print(f"{p}: {d.label}{parent}  score {d.score:.3f}{margin}")
        elif best is not None:
            print(f"{p}: unknown  (best {best.label} {best.score:.3f} <= {op.threshold:.3f})"
                  f"{margin}")  # fmt: skip
        else:
            print(f"{p}: unknown  (empty gallery)")
        if args.top_k > 1 and len(d.top_k) > 1:
            print("    top: " + ", ".join(f"{c.label} {c.score:.3f}" for c in d.top_k))
    return 0 if ok else 1
