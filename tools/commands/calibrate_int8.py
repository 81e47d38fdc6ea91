"""``docedge calibrate int8 BUNDLE --images DIR``: QDQ INT8 ONNX + TensorRT calibration cache.

Registered by :mod:`.calibrate` (no top-level ``register`` here on purpose).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List

from ..output import add_json_flag, human_size, non_negative_int, print_json

#: Same as docedge.calibration.ranges.METHODS (not imported: keeps ``docedge --help`` fast).
METHODS = ("minmax", "percentile", "entropy", "mse")


def register_int8(sub: Any) -> None:
    """Add the ``int8`` subcommand to the ``calibrate`` group's subparsers."""
    p = sub.add_parser(
        "int8",
        help="QDQ INT8 ONNX + TensorRT calibration cache from calibration images",
        description="Calibrate INT8 activation ranges on images like the ones the device will "
        "see (they go through the runtime's pre-processing), write model_int8.onnx (explicit "
        "QDQ) and int8_calibration.cache (TensorRT implicit INT8) from the same ranges, gate "
        "the INT8 model against the PyTorch reference and record everything in the manifest.",
    )
    p.add_argument("bundle", type=Path, help="bundle directory (with model_fp32.onnx)")
    p.add_argument("--images", type=Path, required=True, help="calibration image folder")
    p.add_argument("--method", choices=list(METHODS),
                   help="range method (default: the measured choice, see docs/precision.md)")  # fmt: skip
    p.add_argument("--percentile", type=float,
                   help="for --method percentile (default: the measured choice)")  # fmt: skip
    p.add_argument("--max-images", type=int, default=1000,
                   help="use a seeded random subset of at most N images (default 1000)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--trt-version", default="8502",
                   help="TensorRT version in the cache header: 8502 (8.5.2, JetPack 5.1, "
                   "default), 8601, 100300 (10.3, JetPack 6) or a dotted version")  # fmt: skip
    p.add_argument("--quantize-depthwise", action="store_true",
                   help="also quantize depthwise convolutions (measured: costs accuracy)")  # fmt: skip
    p.add_argument("--quantize-stem", action="store_true",
                   help="also quantize the convolution that reads the image (measured: costs "
                   "accuracy; its int8 input has half the image's levels)")  # fmt: skip
    p.add_argument("--float-fallback", type=non_negative_int, default=None, metavar="N",
                   help="keep the N quantized layers float whose fallback raises the embedding "
                   "cosine most, measured one by one on the calibration images (default 12; 0: "
                   "none)")  # fmt: skip
    p.add_argument("--keep-float", action="append", default=[], metavar="NODE",
                   help="ONNX node name to leave unquantized (repeatable)")  # fmt: skip
    p.add_argument("--weight-storage", choices=["qdq-float", "int8"], default="qdq-float",
                   help="qdq-float: float weights behind Q/DQ, float bias (TensorRT 8.x-11, "
                   "default); int8: INT8 weights, 3x smaller (ONNX Runtime, NPU toolchains)")  # fmt: skip
    p.add_argument("--labelled", type=Path,
                   help="labelled images DIR/<class>/*: also gate TPR@FPR=1e-2 within 1 point")  # fmt: skip
    p.add_argument("--checkpoint", type=Path, help="reference checkpoint (for checkpoint bundles)")
    p.add_argument("--no-gate", action="store_true", help="record the gate result but never fail")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from docedge.calibration.int8 import calibrate_int8
    from docedge.export.reference import reference_for_bundle
    from docedge.runtime.bundle import load_bundle

    ref = reference_for_bundle(load_bundle(args.bundle).model, args.checkpoint)
    options: Dict[str, Any] = {}
    if args.method:
        options["method"] = args.method
    if args.percentile is not None:
        options["percentile"] = args.percentile
    if args.float_fallback is not None:
        options["float_fallback"] = args.float_fallback
    res = calibrate_int8(
        args.bundle, args.images, reference=ref, **options, max_images=args.max_images,
        batch_size=args.batch_size, trt_version=args.trt_version,
        keep_depthwise_float=not args.quantize_depthwise, exclude_nodes=args.keep_float,
        keep_input_conv_float=not args.quantize_stem,
        weight_storage=args.weight_storage, labelled_images=args.labelled,
        enforce_gate=not args.no_gate, progress=not (args.json or args.no_progress),
    )  # fmt: skip
    if args.json:
        print_json({"ok": True, **res})
    else:
        print("\n".join(summary_lines(res)))
    return 0


def summary_lines(res: Dict[str, Any]) -> List[str]:
    """Human summary of :func:`docedge.calibration.int8.calibrate_int8`'s result."""
    o, c = res["onnx"], res["cache"]
    cal, v = o["calibration"], o["verification"]
    pct = f" {cal['percentile']}" if cal.get("percentile") else ""
    lines = [f"int8 calibration: {cal['method']}{pct} on {cal['images']} images "
             f"(of {cal['images_in_folder']}; data sha256 {cal['data_sha256'][:12]}...)"]  # fmt: skip
    for name, s in v["sets"].items():
        lines.append(f"  {name:<10} cos mean {s['cos_mean']:.4f}  min {s['cos_min']:.4f}  "
                     f"{'PASS' if s['passed'] else 'FAIL'}")  # fmt: skip
    if v.get("tpr"):
        t = v["tpr"]
        lines.append(f"  labelled   TPR@{t['fpr']:g} fp32 {t['tpr_fp32']:.4f} int8 "
                     f"{t['tpr_int8']:.4f}  {'PASS' if t['passed'] else 'FAIL'}")  # fmt: skip
    lines.append(f"gate: {'PASS' if v['passed'] else 'FAIL (recorded, --no-gate)'} against "
                 f"{v['against']}")  # fmt: skip
    lines.append(f"wrote {o['file']} ({human_size(o['size'])}, "
                 f"{o['quantization']['quantized_nodes']} INT8 nodes, "
                 f"{len(o['quantization']['float_nodes'])} kept float) and {c['file']} "
                 f"({c['tensors']} tensors, {c['trt_version_line']})")  # fmt: skip
    if cal["fallback_tensors"]:
        lines.append(f"fell back to minmax ({len(cal['fallback_tensors'])}): "
                     + ", ".join(list(cal["fallback_tensors"])[:5]))  # fmt: skip
    if cal["skipped_images"]:
        lines.append(f"skipped {len(cal['skipped_images'])} unreadable image(s)")
    return lines
