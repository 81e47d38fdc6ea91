"""``docedge parity BUNDLE --images DIR``: exit 0 when every check passes, 1 otherwise."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict

from ..output import add_json_flag, print_json


def register(sub: Any) -> None:
    p = sub.add_parser("parity", help="compare every artifact with the PyTorch reference")
    p.add_argument("bundle", type=Path)
    p.add_argument("--images", type=Path, required=True,
                   help="images (DIR/<class>/*.jpg for TPR/AUROC checks, or a flat folder)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", type=Path, help="the bundle's source checkpoint")
    src.add_argument("--random-init", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", default="all")
    p.add_argument("--providers", default="cpu", help="ONNX Runtime providers to test, e.g. cpu,cuda")
    p.add_argument("--no-tensorrt", action="store_true", help="do not try a TensorRT backend")
    p.add_argument("--fpr", type=float, default=1e-2, help="operating point for decisions")
    p.add_argument("--config", type=Path, help="JSON tolerances {precision: {check: limit}}")
    p.add_argument("--tol", action="append", default=[], metavar="PREC.CHECK=VALUE",
                   help="override one tolerance, e.g. int8.cos_mean=0.98 (repeatable)")
    p.add_argument("--report", type=Path, help="write parity.json, parity.md and PNG plots here")
    p.add_argument("--golden", type=Path, help="write Polygraphy inputs/outputs JSON here")
    add_json_flag(p)
    p.set_defaults(func=run)


def _overrides(items: Any) -> Dict[str, Dict[str, float]]:
    out: Dict[str, Dict[str, float]] = {}
    for item in items:
        key, _, value = item.partition("=")
        prec, _, check = key.partition(".")
        if not (prec and check and value):
            raise SystemExit(f"error: --tol expects PREC.CHECK=VALUE, got {item!r}")
        out.setdefault(prec, {})[check] = float(value)
    return out


def run(args: argparse.Namespace) -> int:
    from docedge.calibration.parity import load_tolerances, run_parity

    tol = load_tolerances(args.config, _overrides(args.tol))
    result = run_parity(
        args.bundle, args.images, checkpoint=args.checkpoint,
        random_init_seed=args.seed if args.random_init else None,
        precisions=None if args.precision == "all" else args.precision.split(","),
        providers=[p for p in args.providers.split(",") if p], tensorrt=not args.no_tensorrt,
        tolerances=tol, fpr=args.fpr, progress=not args.json,
    )  # fmt: skip
    files: Dict[str, str] = {}
    commands: Dict[str, str] = {}
    if args.report:
        from docedge.calibration.reports import write_report

        files = write_report(result, args.report)
    if args.golden:
        from docedge.calibration.golden import polygraphy_commands, write_golden
        from docedge.runtime.bundle import load_bundle

        golden = write_golden(args.golden, result.raw["inputs"], result.raw["reference"])
        files.update(golden)
        commands = polygraphy_commands(load_bundle(args.bundle), golden)
    if args.json:
        print_json({**result.to_json(), "files": files, "polygraphy": commands})
    else:
        from docedge.calibration.reports import markdown

        print(markdown(result))
        for kind, path in files.items():
            print(f"{kind}: {path}")
        for prec, cmd in commands.items():
            print(f"check {prec} with NVIDIA Polygraphy:\n  {cmd}")
    return 0 if result.passed else 1
