"""``docedge export`` and ``docedge import-onnx``: make a verified model bundle."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List

from ..output import add_json_flag, human_size, print_json


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint (default: the demo model) to a verified bundle",
        description="Export the reference model to ONNX, verify it against PyTorch with ONNX "
        "Runtime, and write a bundle. Without --checkpoint or --random-init, the shipped demo "
        "model is exported.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--checkpoint", type=Path, help="DocClassifier checkpoint, state dict or .safetensors"
    )
    src.add_argument(
        "--random-init", action="store_true", help="seeded random weights (tests/demos)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed for --random-init (default 0)")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to create")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 16; must be < 21)")
    p.add_argument(
        "--precision",
        default="fp32",
        help="comma-separated precisions to produce: fp32,fp16,int8 (fp32 always)",
    )
    p.add_argument("--calib-images", type=Path, help="image folder for INT8 calibration")
    p.add_argument(
        "--calib-method", default=None, help="INT8 calibration method (see `calibrate int8`)"
    )
    p.add_argument("--threshold-images", type=Path, default=None,
                   help="labelled images (DIR/<class>/*) to measure a TPR@FPR table for every "
                   "precision exported (default: the model card's fp32 table; fp16 inherits it "
                   "when its agreement allows)")  # fmt: skip
    p.add_argument("--formats", default="onnx",
                   help="artifact formats: onnx (always) plus any of ort,tflite,coreml,ncnn,openvino "
                   "(the converters need their extras)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing bundle (atomically: the old one stays loadable "
                   "until the new one is committed)")  # fmt: skip
    add_json_flag(p)
    p.set_defaults(func=run_export)

    q = sub.add_parser(
        "import-onnx",
        help="wrap a released fp32 ONNX file (input img, output feats) into a bundle",
    )
    q.add_argument("onnx", type=Path, help="the fp32 ONNX file")
    q.add_argument("--out", type=Path, required=True, help="bundle directory to create")
    q.add_argument("--name", help="model name to record (default: file stem)")
    q.add_argument(
        "--model-cfg", help="DocClassifier model_cfg to record, e.g. 20240326 (default: from the "
        "file's metadata, else none)"
    )
    q.add_argument("--table", default=None,
                   help="attach an fp32 threshold table: 'published-20240326' (DocClassifier's "
                   "published table; only valid if the file is the released model) or a table "
                   "JSON file. Default: none (docedge calibrate thresholds)")  # fmt: skip
    q.add_argument("--overwrite", action="store_true")
    add_json_flag(q)
    q.set_defaults(func=run_import)


def artifact_lines(manifest: Dict[str, Any]) -> List[str]:
    lines = []
    for a in manifest["artifacts"]:
        v = a.get("verification", {})
        gate = ""
        if "cos_min" in v:
            gate = f"  cos min {v['cos_min']:.6f} mean {v.get('cos_mean', float('nan')):.6f}"
            gate += "  PASS" if v.get("passed") else "  FAIL"
        lines.append(
            f"  {a['precision']:<5} {a['format']:<22} {a['file']:<24} "
            f"{human_size(a['size']):>10}{gate}"
        )
    return lines


def run_export(args: argparse.Namespace) -> int:
    from docedge.calibration.pipeline import make_bundle, parse_precisions
    from docedge.export.reference import load_reference

    precisions = parse_precisions(args.precision)
    ref = load_reference(args.checkpoint, args.seed if args.random_init else None)
    formats = [f for f in (args.formats or "onnx").split(",") if f.strip()]
    result = make_bundle(args.out, ref, precisions, formats=formats, calib_images=args.calib_images,
                         calib_method=args.calib_method, threshold_images=args.threshold_images,
                         opset=args.opset, overwrite=args.overwrite,
                         progress=not args.json)  # fmt: skip
    bundle = result.bundle
    if args.json:
        print_json({"ok": True, "bundle": str(bundle.path), "notes": result.notes,
                    "tables": result.tables, "manifest": bundle.manifest})  # fmt: skip
    else:
        print(f"bundle written: {bundle.path}  (model {bundle.model.get('name')})")
        print("\n".join(artifact_lines(bundle.manifest)))
        tables = ", ".join(f"{p} ({how})" for p, how in result.tables.items())
        print(f"threshold tables: {tables or 'none'}")
        for note in result.notes:
            print(f"note: {note}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from docedge.export.import_onnx import import_onnx

    bundle = import_onnx(args.onnx, args.out, overwrite=args.overwrite, name=args.name,
                         model_cfg=args.model_cfg, table=args.table)  # fmt: skip
    if args.json:
        print_json({"ok": True, "bundle": str(bundle.path), "manifest": bundle.manifest})
    else:
        print(
            f"bundle written: {bundle.path} (imported {args.onnx.name}, "
            f"model_cfg {bundle.model.get('model_cfg') or 'unknown'})"
        )
        print("\n".join(artifact_lines(bundle.manifest)))
    return 0
