"""``docedge bench BUNDLE``: engines in separate processes, interleaved rounds, CPU and wall time
per image with their spread (:mod:`docedge.calibration.benchmark`), and gallery search."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Dict, List

from ..output import add_json_flag, positive_int, print_json

logger = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark a bundle: one process per engine, interleaved rounds, CPU and wall time",
        description="Each engine (ONNX Runtime per precision, PyTorch eager) runs in its own "
        "process; rounds are interleaved (engine order rotated each round); per image CPU time "
        "and wall time are reported as the median over rounds with min-max, beside the load "
        "average and the fraction of this core's float32 GEMM peak. Gallery search is timed "
        "in this process on random galleries of --gallery-sizes entries.",
    )
    p.add_argument("bundle", type=Path)
    p.add_argument("--precision", default="all", help="fp32,fp16,int8 or all (default)")
    p.add_argument("--batch-sizes", default="1,32", help="comma-separated (default 1,32)")
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads per engine (default 1: per-core figures)")
    p.add_argument("--spinning", choices=["off", "on", "both"], default="off",
                   help="ONNX Runtime thread spinning (both: each engine twice, compared)")
    p.add_argument("--rounds", type=positive_int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--seconds", type=float, default=1.0, help="timing per engine, batch and round")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch eager")
    p.add_argument("--openvino", action="store_true",
                   help="also time OpenVINO: the fp32 ONNX (f32 pinned, and bf16) and the "
                   "bundle's OpenVINO IR artifacts (docedge convert --formats openvino)")
    p.add_argument("--compare", action="store_true",
                   help="one table of the bundle's fp32 ONNX in every docedge backend that can run "
                   "here (ONNX Runtime, OpenVINO f32, TensorRT) and PyTorch eager; backends that "
                   "cannot run are listed as not run with the reason")
    p.add_argument("--tensorrt", action="store_true",
                   help="also time the cached TensorRT engine of each precision (GPU)")
    p.add_argument("--gallery-sizes", default="10000,100000",
                   help="gallery search sizes, comma-separated (default 10000,100000; a 1000000 "
                   "gallery needs about 2 GB of memory); '' to skip")  # fmt: skip
    p.add_argument("--report", type=Path, help="write bench.json and bench.md here")
    add_json_flag(p)
    p.set_defaults(func=run)


def _ints(text: str) -> List[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def run(args: argparse.Namespace) -> int:
    from docedge.calibration.benchmark import (
        compare_engines,
        default_engines,
        markdown,
        run_benchmark,
        write_benchmark,
    )
    from docedge.runtime.bundle import load_bundle
    from docedge.runtime.errors import DocedgeError

    if args.compare and (args.precision != "all" or args.openvino or args.tensorrt
                         or args.no_torch):  # fmt: skip
        raise DocedgeError("--compare runs fp32 in every backend; it cannot be combined with "
                           "--precision, --openvino, --tensorrt or --no-torch")
    bundle = load_bundle(args.bundle)
    precisions = bundle.precisions if args.precision == "all" else args.precision.split(",")
    for prec in precisions:
        bundle.artifact(prec)
    not_run: Dict[str, str] = {}
    if args.compare:
        engines, not_run = compare_engines(str(bundle.path), args.threads)
    else:
        engines = default_engines(str(bundle.path), precisions, args.threads, not args.no_torch,
                                  args.tensorrt, args.openvino)  # fmt: skip
    if args.spinning != "off":
        from dataclasses import replace

        spin = [replace(e, name=e.name + "-spinning", spinning=True) for e in engines
                if e.kind == "onnxruntime"]  # fmt: skip
        engines = spin + [e for e in engines if e.kind != "onnxruntime"] if args.spinning == "on" \
            else engines + spin  # fmt: skip
    res = run_benchmark(engines, _ints(args.batch_sizes), rounds=args.rounds, seconds=args.seconds)
    res.not_run = not_run
    report: Dict[str, Any] = {"bundle": str(bundle.path), **res.to_json()}
    sizes = _ints(args.gallery_sizes) if args.gallery_sizes else []
    report["gallery_search"] = _gallery_bench(sizes) if sizes else []
    if args.report:
        report["files"] = write_benchmark(res, args.report)
    if args.json:
        print_json(report)
        return 0
    print(f"bundle {bundle.path}")
    print(markdown(res))
    for g in report["gallery_search"]:
        keys = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in g.items())
        print(f"  {keys}")
    return 0


def _gallery_bench(sizes: List[int]) -> List[Dict[str, Any]]:
    try:
        from docedge.runtime.search import benchmark_search
    except ImportError:
        logger.warning("gallery search benchmark unavailable in this installation")
        return []
    from docedge.runtime.gallery import benchmark_open

    rows = []
    for n in sizes:
        for dtype in ("float16", "float32"):
            rows.append(benchmark_search(n, dtype))
    for n in sizes:
        if n <= 100_000:
            rows.append(benchmark_open(n, "float16"))
    return rows
