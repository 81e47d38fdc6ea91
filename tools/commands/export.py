"""``docedge export`` and ``docedge import-onnx``: make a verified model bundle."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List

from ..output import add_json_flag, human_size, print_json

PRECISIONS = ("fp32", "fp16", "int8")


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
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle directory")
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
        "--model-cfg", help="DocClassifier model_cfg, e.g. 20240326 (default: from the file name)"
    )
    q.add_argument("--overwrite", action="store_true")
    add_json_flag(q)
    q.set_defaults(func=run_import)


def parse_precisions(text: str) -> List[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in PRECISIONS]
    if bad:
        raise SystemExit(f"error: unknown precision(s) {bad}; choose from {list(PRECISIONS)}")
    return ["fp32"] + [t for t in PRECISIONS[1:] if t in items]


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
    from docedge.export.bundle_writer import export_bundle
    from docedge.export.onnx_export import DEFAULT_OPSET
    from docedge.export.reference import load_reference

    precisions = parse_precisions(args.precision)
    ref = load_reference(args.checkpoint, args.seed if args.random_init else None)
    if "int8" in precisions and args.calib_images is None and ref.source["kind"] != "demo-weights":
        raise SystemExit("error: --precision int8 needs --calib-images DIR (images like the ones "
                         "the device will see)")
    bundle = export_bundle(
        args.out, reference=ref, opset=args.opset or DEFAULT_OPSET, overwrite=args.overwrite
    )
    if "fp16" in precisions:
        from docedge.export.fp16 import add_fp16_artifact

        add_fp16_artifact(args.out, ref)
    if "int8" in precisions:
        import tempfile

        from docedge.calibration.int8 import calibrate_int8

        options = {"method": args.calib_method} if args.calib_method else {}
        with tempfile.TemporaryDirectory(prefix="docedge-calib-") as tmp:
            calib = args.calib_images
            if calib is None:  # the demo model: calibrate on synthetic document captures
                from docedge.synth.dataset import write_documents

                calib = Path(tmp) / "synthetic_calibration"
                write_documents(calib, types=100, per_type=3, first_type_id=5000,
                                capture_strength=0.7, progress=not args.json)  # fmt: skip
            calibrate_int8(args.out, calib, reference=ref, progress=not args.json, **options)
    from docedge.runtime.bundle import load_bundle

    bundle = load_bundle(args.out)
    if args.json:
        print_json({"ok": True, "bundle": str(bundle.path), "manifest": bundle.manifest})
    else:
        print(f"bundle written: {bundle.path}  (model {bundle.model.get('name')})")
        print("\n".join(artifact_lines(bundle.manifest)))
        tables = sorted(bundle.manifest.get("thresholds", {}))
        print(f"threshold tables: {', '.join(tables) if tables else 'none (calibrate thresholds)'}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from docedge.export.import_onnx import import_onnx

    bundle = import_onnx(
        args.onnx, args.out, overwrite=args.overwrite, name=args.name, model_cfg=args.model_cfg
    )
    if args.json:
        print_json({"ok": True, "bundle": str(bundle.path), "manifest": bundle.manifest})
    else:
        print(
            f"bundle written: {bundle.path} (imported {args.onnx.name}, "
            f"model_cfg {bundle.model.get('model_cfg') or 'unknown'})"
        )
        print("\n".join(artifact_lines(bundle.manifest)))
    return 0
