"""``docedge build-engine BUNDLE --precision ...``: build a TensorRT engine on this device."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..output import add_json_flag, print_json


def register(sub: Any) -> None:
    p = sub.add_parser("build-engine", help="build a TensorRT engine for this GPU (run on the device)")
    p.add_argument("bundle", type=Path)
    p.add_argument("--precision", default="fp16", choices=["fp32", "fp16", "int8"])
    p.add_argument("--min-batch", type=int, default=1)
    p.add_argument("--opt-batch", type=int, default=32, help="optimized batch (default 32)")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--workspace", type=int, default=1024, metavar="MB")
    p.add_argument("--timing-cache", type=Path, help="read/update a TensorRT timing cache file")
    p.add_argument("--dla-core", type=int, help="build for this DLA core (Jetson), GPU fallback on")
    p.add_argument("--version-compatible", action="store_true")
    p.add_argument("--implicit", action="store_true",
                   help="TensorRT 8.5/10: fp32 ONNX + FP16/INT8 builder flags (INT8 uses the "
                        "bundle's calibration cache) instead of a strongly typed build")
    p.add_argument("--cache-dir", type=Path, help="engine cache (default ~/.cache/docedge/engines)")
    p.add_argument("--force", action="store_true", help="rebuild even when cached")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from docedge.export.engine import Profile, build_engine
    from docedge.runtime.bundle import load_bundle
    from docedge.runtime.engine_cache import read_sidecar, sidecar_path

    path, built = build_engine(
        load_bundle(args.bundle), args.precision,
        Profile(args.min_batch, args.opt_batch, args.max_batch), workspace_mb=args.workspace,
        timing_cache=args.timing_cache, dla_core=args.dla_core,
        version_compatible=args.version_compatible, implicit=args.implicit,
        cache_dir=args.cache_dir, force=args.force,
    )  # fmt: skip
    side = read_sidecar(sidecar_path(path))
    if args.json:
        print_json({"ok": True, "engine": str(path), "built": built, "sidecar": side})
    else:
        print(f"{'built' if built else 'cached'}: {path}")
        print(f"  TensorRT {side['trt_version']} on {side['gpu_name']} (sm {side['compute_capability']}), "
              f"{side['precision']} {side['mode']}, batch {side['profile']}")
    return 0
