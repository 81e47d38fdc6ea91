"""``docedge convert BUNDLE --formats ort,tflite,coreml,ncnn,openvino``: add gated mobile and
edge artifacts."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..output import add_json_flag, human_size, print_json


def register(sub: Any) -> None:
    p = sub.add_parser(
        "convert",
        help="add mobile/edge artifacts (ORT Mobile, LiteRT, Core ML, ncnn, OpenVINO) to a bundle",
        description="Convert the bundle's model to mobile formats, gate each artifact against the "
        "PyTorch reference (cosine, decision agreement), and commit them to the manifest together. "
        "Pre-processing test vectors are always written. Formats whose converter is not installed "
        "are skipped, naming the extra to install.",
    )
    p.add_argument("bundle", type=Path)
    p.add_argument(
        "--formats",
        default="ort,tflite,coreml,ncnn",
        help="comma-separated: ort (with fixed-shape ONNX), tflite, coreml, ncnn, or all (the "
        "mobile ones); openvino (x86 edge: bf16 and NNCF int8 IR, not part of all)",
    )
    p.add_argument("--openvino-precisions", default="bf16,int8",
                   help="OpenVINO artifacts to make: bf16, int8 or both (default)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", type=Path, help="the bundle's source checkpoint")
    src.add_argument("--random-init", action="store_true", help="the bundle is a seeded random init")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--calib-images",
        type=Path,
        help="images for LiteRT static int8 and OpenVINO NNCF int8 (default: the bundle's int8 "
        "calibration folder when it still holds the same images, else synthetic document captures)",
    )
    p.add_argument("--calib-max-images", type=int, default=200)
    p.add_argument(
        "--tflite-float-head",
        action="store_true",
        help="LiteRT static int8: keep the head and normalization in float",
    )
    p.add_argument("--no-benchmark", action="store_true", help="skip the batch-1 timing")
    add_json_flag(p)
    p.set_defaults(func=run)


def table_lines(records: List[Dict[str, Any]]) -> List[str]:
    lines = [f"  {'file':<30} {'format':<22} {'prec':<5} {'size':>10}  {'cos min':>9} {'cos mean':>9} "
             f"{'decis.':>6} {'img/s b1':>9}  gate"]  # fmt: skip
    for r in records:
        v = r.get("verification") or {}
        b = (r.get("benchmark") or {}).get("batch_1", {})
        if v.get("passed") is None and v:
            gate = f"NOT RUN ({v.get('verified_with', {}).get('reason', '')})"
        elif not v:
            gate = "-"
        else:
            gate = "PASS" if v.get("passed") else "FAIL"
        cmin = f"{v['cos_min']:.6f}" if "cos_min" in v else "-"
        cmean = f"{v['cos_mean']:.6f}" if "cos_mean" in v else "-"
        dec = f"{v['decision_agreement']:.3f}" if "decision_agreement" in v else "-"
        ips = f"{b['images_per_s']:.0f}" if b else "-"
        size = int(r["size"]) + sum(int(f.get("size", 0)) for f in r.get("files") or [])
        lines.append(f"  {r['file']:<30} {r['format']:<22} {r['precision']:<5} {human_size(size):>10}  "
                     f"{cmin:>9} {cmean:>9} {dec:>6} {ips:>9}  {gate}")  # fmt: skip
    return lines


def _openvino_precisions(text: str) -> List[str]:
    from docedge.runtime.errors import DocedgeError

    items = [t.strip() for t in str(text).split(",") if t.strip()]
    bad = [t for t in items if t not in ("bf16", "int8")]
    if bad or not items:
        raise DocedgeError(f"--openvino-precisions {text!r}: choose from bf16, int8")
    return items


def run(args: argparse.Namespace) -> int:
    from docedge.export.formats.convert import convert_bundle, parse_formats
    from docedge.export.gates import GateError
    from docedge.runtime.errors import DocedgeError

    try:
        formats = parse_formats(args.formats)
    except ValueError as e:
        raise DocedgeError(str(e)) from None
    ov_precisions = _openvino_precisions(args.openvino_precisions)  # a usage error: exit 2
    float_nodes: Optional[Callable[..., Any]] = None
    if "openvino" in formats:  # the NNCF INT8 keeps float what calibrate int8 would keep float
        from docedge.calibration.int8 import default_float_nodes

        float_nodes = default_float_nodes
    try:
        report = convert_bundle(
            args.bundle,
            formats,
            checkpoint=args.checkpoint,
            random_init_seed=args.seed if args.random_init else None,
            calib_images=args.calib_images,
            options={"calib_max_images": args.calib_max_images, "tflite_float_head": args.tflite_float_head,
                     "openvino_precisions": ov_precisions},
            benchmark=not args.no_benchmark,
            int8_float_nodes=float_nodes,
        )
    except GateError as e:  # a failed check: exit 1, nothing committed
        failed = getattr(e, "report", None)
        if args.json:
            print_json(
                {**(failed.to_json() if failed else {}), "ok": False, "error": "GateError", "message": str(e)}
            )
        else:
            print(f"gate failed: {e}")
        return 1
    if args.json:
        print_json(report.to_json())
    else:
        print(f"converted {args.bundle}: {len(report.records)} artifact(s) committed")
        print("\n".join(table_lines(report.records)))
        for s in report.skipped:
            what = f"{s['format']} {s['precision']}" if s.get("precision") else s["format"]
            print(f"  skipped {what}: {s['reason']}")
    return 0 if not report.failed else 1
