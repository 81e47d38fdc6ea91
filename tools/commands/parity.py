"""``docedge parity BUNDLE --images DIR``: exit 0 when every check passes, 1 when any fails
(the failing checks are named), 2 on usage or input errors."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List

from ..output import add_json_flag, print_json


def register(sub: Any) -> None:
    p = sub.add_parser(
        "parity",
        help="compare every artifact with the PyTorch reference (embeddings, neighbours, "
        "decisions, TPR@FPR)",
        description="Run the reference and every artifact of the bundle on the same images and "
        "check embeddings, top-1 neighbours, decisions and (labelled images) TPR@FPR against "
        "per-precision tolerances. Exit 0: all pass; 1: a check failed; 2: usage/input error.",
    )
    p.add_argument("bundle", type=Path)
    p.add_argument("--images", type=Path, required=True,
                   help="DIR/<class>/*.jpg (labelled: TPR/AUROC checks) or a flat folder")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", type=Path,
                     help="the bundle's source checkpoint (required for checkpoint bundles)")
    src.add_argument("--random-init", action="store_true",
                     help="the reference is the seeded random init of --seed")
    p.add_argument("--seed", type=int, default=0, help="seed for --random-init")
    p.add_argument("--gallery", type=Path,
                   help="a docedge gallery file, or a register folder (default: built from "
                   "the images: first image of each class as exemplar)")  # fmt: skip
    p.add_argument("--precision", default="all",
                   help="fp32,fp16,int8,bf16 (comma list: each runs every artifact of it, the "
                   "OpenVINO IR artifacts included) or all")
    p.add_argument("--providers", default="cpu",
                   help="ONNX Runtime providers to test, each on its own (e.g. cpu,cuda)")
    p.add_argument("--no-tensorrt", action="store_true", help="do not try a TensorRT engine")
    p.add_argument("--fpr", type=float, default=1e-2,
                   help="operating point: the table row used for decisions (default 1e-2)")
    p.add_argument("--threshold", type=float,
                   help="explicit decision threshold in score space (overrides the tables)")
    p.add_argument("--max-impostors", type=int, default=2_000_000, metavar="N",
                   help="uniform sample of impostor pairs above N (TPR/AUROC)")
    p.add_argument("--config", type=Path,
                   help="tolerances file (.json or .toml): {precision: {check: limit}}")
    p.add_argument("--tol", action="append", default=[], metavar="PREC.CHECK=VALUE",
                   help="override one tolerance, e.g. int8.cos_mean=0.98 or "
                   "fp32.decision_agreement=off (repeatable)")  # fmt: skip
    p.add_argument("--report", type=Path,
                   help="write parity.json, parity.md, PNG plots and golden/ files here")
    p.add_argument("--golden", type=Path,
                   help="write the Polygraphy golden files here (default: REPORT/golden)")
    p.add_argument("--golden-images", type=int, default=16, metavar="N",
                   help="images in the golden files (default 16; 0: none)")
    p.add_argument("--reference", type=Path, default=None, metavar="BUNDLE",
                   help="compare against another bundle's fp32 artifact instead of the PyTorch "
                   "reference (same as `docedge compare`)")  # fmt: skip
    add_json_flag(p)
    p.set_defaults(func=run)

    c = sub.add_parser(
        "compare",
        help="task-level comparison of two bundles (a new release against the last one, or "
        "against an imported released ONNX file) with parity's checks, report and exit codes",
        description="Embed the same images with BUNDLE_A's fp32 artifact (the reference) and "
        "every artifact of BUNDLE_B; check embeddings, neighbours, decisions, TPR@FPR and "
        "ranking (NDCG, mAP@R, recall@k). Exit 0: all pass; 1: a check failed; 2: usage/input.",
    )
    c.add_argument("bundle_a", type=Path, help="the reference bundle (e.g. the last release)")
    c.add_argument("bundle_b", type=Path, help="the bundle under test")
    c.add_argument("--images", type=Path, required=True, help="labelled images DIR/<class>/*")
    for flag in ("--precision", "--providers", "--fpr", "--threshold", "--config", "--tol",
                 "--report", "--max-impostors"):  # fmt: skip
        action = next(a for a in p._actions if flag in a.option_strings)
        c.add_argument(flag, default=action.default, type=action.type, help=action.help,
                       metavar=action.metavar,
                       **({"action": "append"} if flag == "--tol" else {}))  # fmt: skip
    add_json_flag(c)
    c.set_defaults(func=run_compare)


def parse_overrides(items: List[str]) -> Dict[str, Dict[str, Any]]:
    """``["int8.cos_mean=0.98", "fp32.cos_p1=off"]`` -> ``{"int8": {"cos_mean": "0.98"}, ...}``."""
    from docedge.runtime.errors import DocedgeError

    out: Dict[str, Dict[str, Any]] = {}
    for item in items:
        key, _, value = item.partition("=")
        prec, _, check = key.partition(".")
        if not (prec and check and value):
            raise DocedgeError(f"--tol expects PREC.CHECK=VALUE, got {item!r}")
        out.setdefault(prec, {})[check] = None if value.lower() == "off" else value
    return out


def run_compare(args: argparse.Namespace) -> int:
    """``compare A B`` is ``parity B --reference A`` without TensorRT or goldens."""
    ns = argparse.Namespace(**vars(args), bundle=args.bundle_b, reference=args.bundle_a,
                            checkpoint=None, random_init=False, seed=0, gallery=None,
                            no_tensorrt=True, golden=None, golden_images=0)  # fmt: skip
    if ns.tol is None:
        ns.tol = []
    return run(ns)


def run(args: argparse.Namespace) -> int:
    from docedge.calibration.parity import load_tolerances, run_parity
    from docedge.calibration.reports import markdown, write_report

    tol = load_tolerances(args.config, parse_overrides(args.tol))
    result = run_parity(
        args.bundle, args.images, checkpoint=args.checkpoint,
        random_init_seed=args.seed if args.random_init else None,
        precisions=None if args.precision == "all" else args.precision.split(","),
        providers=[p for p in args.providers.split(",") if p] or ["cpu"],
        tensorrt=not args.no_tensorrt, tolerances=tol, fpr=args.fpr, threshold=args.threshold,
        gallery=args.gallery, max_impostors=args.max_impostors,
        reference_bundle=getattr(args, "reference", None),
    )  # fmt: skip
    files: Dict[str, str] = {}
    commands: Dict[str, str] = {}
    golden_dir = args.golden or (args.report / "golden" if args.report else None)
    if golden_dir is not None and args.golden_images > 0:
        from docedge.calibration.golden import write_golden_for_bundle
        from docedge.runtime.bundle import load_bundle

        golden = write_golden_for_bundle(golden_dir, load_bundle(args.bundle, verify=False),
                                         result, max_images=args.golden_images)  # fmt: skip
        commands = golden.pop("commands")
        files.update(golden)
    if args.report:
        files.update(write_report(result, args.report, polygraphy=commands))
    if args.json:
        print_json({**result.to_json(), "files": files, "polygraphy": commands})
    else:
        print(markdown(result, polygraphy=commands))
        for kind, path in files.items():
            print(f"{kind}: {path}")
    return 0 if result.passed else 1
