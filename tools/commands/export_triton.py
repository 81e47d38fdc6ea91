"""``docedge export-triton BUNDLE --out REPO``: a Triton Inference Server model repository."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict

from ..output import add_json_flag, positive_int, print_json


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export-triton",
        help="write a Triton model repository (ONNX Runtime / TensorRT models, a bytes-in "
        "ensemble) from a bundle",
        description="ONNX Runtime backend models per precision (GPU and CPU instance groups, "
        "TensorRT accelerator for fp16/int8), TensorRT backend models from engines built by "
        "`docedge build-engine`, and an ensemble that takes encoded image bytes and runs "
        "docedge's pre-processing. Every config.pbtxt is validated with tritonclient.",
    )
    p.add_argument("bundle", type=Path)
    p.add_argument("--out", type=Path, required=True, help="model repository folder to create")
    p.add_argument("--precision", default="all", help="fp32,fp16,int8 (comma list) or all")
    p.add_argument("--engine", action="append", default=[], metavar="PREC=PATH",
                   help="a TensorRT engine (from docedge build-engine) to serve, e.g. fp16=e.plan")
    p.add_argument("--max-batch", type=positive_int, default=64)
    p.add_argument("--queue-delay-us", type=int, default=500, help="dynamic batching delay")
    p.add_argument("--overwrite", action="store_true")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from docedge.export.triton import export_triton
    from docedge.runtime.errors import DocedgeError

    engines: Dict[str, str] = {}
    for item in args.engine:
        prec, _, path = item.partition("=")
        if not prec or not path:
            raise DocedgeError(f"--engine expects PREC=PATH, got {item!r}")
        engines[prec] = path
    precs = None if args.precision == "all" else [p for p in args.precision.split(",") if p]
    res = export_triton(args.bundle, args.out, precs, engines, max_batch=args.max_batch,
                        delay_us=args.queue_delay_us, overwrite=args.overwrite)  # fmt: skip
    if args.json:
        print_json({"ok": True, **res})
    else:
        print(f"Triton model repository: {res['repository']}")
        for name, m in res["models"].items():
            print(f"  {name:<44} {m['kind']:<12} {m['precision'] or ''}")
        print("(configs validated with tritonclient; the Triton backends were not run here)")
    return 0
