"""``docedge calibrate int8|thresholds``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..output import add_json_flag, print_json


def register(sub: Any) -> None:
    p = sub.add_parser("calibrate", help="INT8 calibration or threshold tables for a bundle")
    g = p.add_subparsers(dest="calibrate_command", metavar="WHAT", required=True)

    i = g.add_parser("int8", help="QDQ INT8 ONNX + TensorRT calibration cache from images")
    i.add_argument("bundle", type=Path)
    i.add_argument("--images", type=Path, required=True, help="calibration image folder")
    i.add_argument("--method", default="percentile", choices=["minmax", "percentile", "entropy"])
    i.add_argument("--percentile", type=float, default=99.99)
    i.add_argument("--max-images", type=int, default=1000)
    i.add_argument("--trt-version", default="8502",
                   help="version in the cache header (8502 = TensorRT 8.5.2, JetPack 5.1)")
    i.add_argument("--checkpoint", type=Path, help="reference checkpoint (for checkpoint bundles)")
    i.add_argument("--no-gate", action="store_true", help="record the gate result but never fail")
    add_json_flag(i)
    i.set_defaults(func=run_int8)

    t = g.add_parser("thresholds", help="TPR@FPR tables per precision from labelled images")
    t.add_argument("bundle", type=Path)
    t.add_argument("--images", type=Path, required=True, help="DIR/<class>/*.jpg")
    t.add_argument("--precision", default="all", help="fp32|fp16|int8|all (default all)")
    t.add_argument("--max-impostors", type=int, default=2_000_000,
                   help="uniformly sample impostor pairs above this count")
    t.add_argument("--dry-run", action="store_true", help="print, do not write the manifest")
    add_json_flag(t)
    t.set_defaults(func=run_thresholds)


def run_int8(args: argparse.Namespace) -> int:
    from docedge.calibration.int8 import calibrate_int8
    from docedge.export.reference import reference_for_bundle
    from docedge.runtime.bundle import load_bundle

    ref = reference_for_bundle(load_bundle(args.bundle).model, args.checkpoint)
    res = calibrate_int8(args.bundle, args.images, method=args.method, percentile=args.percentile,
                         reference=ref, max_images=args.max_images, trt_version=args.trt_version,
                         enforce_gate=not args.no_gate, progress=not args.json)  # fmt: skip
    v = res["onnx"]["verification"]
    if args.json:
        print_json({"ok": True, **res})
    else:
        c = res["onnx"]["calibration"]
        print(f"int8 ({c['method']}, {c['images']} images): cos mean {v['cos_mean']:.4f} "
              f"min {v['cos_min']:.4f} -> {'PASS' if v['passed'] else 'FAIL'}")
        print(f"wrote {res['onnx']['file']} ({res['onnx']['size']} bytes) and "
              f"{res['cache']['file']} ({res['cache']['tensors']} tensors)")
        if c["fallback_tensors"]:
            print(f"fell back to minmax: {', '.join(c['fallback_tensors'])}")
    return 0


def run_thresholds(args: argparse.Namespace) -> int:
    from docedge.calibration.roc import format_table
    from docedge.calibration.thresholds import calibrate_thresholds

    precs = None if args.precision == "all" else args.precision.split(",")
    tables = calibrate_thresholds(args.bundle, args.images, precs,
                                  max_impostors=args.max_impostors, write=not args.dry_run)  # fmt: skip
    if args.json:
        print_json({"ok": True, "written": not args.dry_run, "tables": tables})
        return 0
    for prec, t in tables.items():
        s = t["source"]
        sampled = " (sampled)" if s["impostors_sampled"] else ""
        print(f"\n{prec}: {s['images']} images, {s['classes']} classes, "
              f"{s['genuine_pairs']} genuine / {s['impostor_pairs']}{sampled} impostor pairs, "
              f"AUROC {t['auroc']:.4f}")
        print(format_table(t["rows"]))
    print("\nwritten to the manifest" if not args.dry_run else "\n(dry run: manifest unchanged)")
    return 0
