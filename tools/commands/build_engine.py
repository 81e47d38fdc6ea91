"""``docedge build-engine BUNDLE --precision ...``: build a TensorRT engine on this device."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict

from ..output import add_json_flag, print_json


def register(sub: Any) -> None:
    p = sub.add_parser(
        "build-engine",
        help="build a TensorRT engine for this GPU from a bundle (run on the device)",
        description="Parse the bundle's ONNX for the precision and build a TensorRT engine for "
        "this GPU (strongly typed where TensorRT supports it), cached with a sidecar JSON.",
    )
    p.add_argument("bundle", type=Path)
    p.add_argument("--precision", default="fp16", choices=["fp32", "fp16", "int8"])
    p.add_argument("--min-batch", type=int, help="profile min batch (default 1)")
    p.add_argument("--opt-batch", type=int, help="batch the kernels are tuned for (default 32, "
                   "clamped to the max)")  # fmt: skip
    p.add_argument("--max-batch", type=int, help="profile max batch (default 64)")
    p.add_argument("--workspace", type=int, default=1024, metavar="MB",
                   help="builder workspace limit (default 1024 MB)")  # fmt: skip
    p.add_argument("--timing-cache", type=Path, metavar="FILE",
                   help="TensorRT timing cache to read and update (faster rebuilds)")  # fmt: skip
    p.add_argument("--dla-core", type=int, metavar="N",
                   help="build for DLA core N (Jetson Xavier/Orin), GPU fallback on")  # fmt: skip
    p.add_argument("--version-compatible", action="store_true",
                   help="engine loadable by later TensorRT versions (8.6+; may be slower)")
    p.add_argument("--implicit", action="store_true",
                   help="TensorRT 8.5/10 only: build from the fp32 ONNX with FP16/INT8 builder "
                        "flags (INT8 replays the bundle's calibration cache) instead of the "
                        "precision's own ONNX")  # fmt: skip
    tf32 = p.add_mutually_exclusive_group()
    tf32.add_argument("--tf32", dest="tf32", action="store_const", const=True, default=None,
                      help="allow TF32 math in fp32 layers (default: off for fp32 engines only)")
    tf32.add_argument("--no-tf32", dest="tf32", action="store_const", const=False,
                      help="forbid TF32 math in every precision")
    p.add_argument("--cache-dir", type=Path,
                   help="engine cache (default $DOCEDGE_ENGINE_CACHE or ~/.cache/docedge/engines)")
    p.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
    p.add_argument("--force", action="store_true", help="rebuild even when a cached engine fits")
    add_json_flag(p)
    p.set_defaults(func=run)


def _summary(record: Dict[str, Any]) -> str:
    prof = record.get("profile") or {}
    cal = record.get("calibration_cache") or {}
    lines = [
        f"  TensorRT {record.get('trt_version')} on {record.get('gpu_name')} "
        f"(sm {record.get('compute_capability')})",
        f"  {record.get('precision')} {record.get('mode')} from {record.get('source_onnx')} "
        f"(sha256 {str(record.get('source_onnx_sha256'))[:16]}...)",
        f"  batch min/opt/max {prof.get('min')}/{prof.get('opt')}/{prof.get('max')}, "
        f"builder flags {record.get('builder_flags') or 'none'}, "
        f"built in {record.get('build_seconds')} s at {record.get('built_at')}",
    ]
    if cal:
        lines.append(f"  calibration cache {cal.get('file')} ({cal.get('header')})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import sys

    from docedge.runtime.backends.tensorrt.builder import build

    if args.workspace < 1:
        print(f"error: --workspace must be >= 1 MB, got {args.workspace}", file=sys.stderr)
        return 2
    result = build(args.bundle, args.precision, min_batch=args.min_batch,
                   opt_batch=args.opt_batch, max_batch=args.max_batch,
                   workspace_mb=args.workspace, timing_cache=args.timing_cache,
                   dla_core=args.dla_core, version_compatible=args.version_compatible,
                   implicit=args.implicit, cache_dir=args.cache_dir, force=args.force,
                   tf32=args.tf32, device=args.device)  # fmt: skip
    if args.json:
        print_json({"ok": True, "engine": str(result.engine), "sidecar": str(result.sidecar),
                    "built": result.built, "record": result.record})  # fmt: skip
        return 0
    print(f"{'built' if result.built else 'cached'}: {result.engine}")
    print(_summary(result.record))
    return 0
