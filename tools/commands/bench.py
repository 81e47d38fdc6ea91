"""``docedge bench BUNDLE``: throughput and latency per precision, side by side with the
PyTorch reference (same run, same inputs), pre-processing timed separately, and gallery
search figures. Report ratios: absolute numbers depend on the (shared) machine."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..output import add_json_flag, print_json

logger = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="benchmark a bundle (and PyTorch, gallery search)")
    p.add_argument("bundle", type=Path)
    p.add_argument("--precision", default="all", help="fp32,fp16,int8 or all (default)")
    p.add_argument("--batch-sizes", default="1,32", help="comma-separated (default 1,32)")
    p.add_argument("--backend", default="onnxruntime", help="onnxruntime | tensorrt")
    p.add_argument(
        "--providers", default="cpu", help="ONNX Runtime providers (cpu, cuda, tensorrt)"
    )
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: library default)")
    p.add_argument("--iters", type=int, default=20, help="timed calls per case (min)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    p.add_argument(
        "--gallery-sizes",
        default="10000,100000,1000000",
        help="gallery search sizes (comma-separated; '' to skip)",
    )
    add_json_flag(p)
    p.set_defaults(func=run)


def _ints(text: str) -> List[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from docedge.runtime.benchmark import time_call
    from docedge.runtime.bundle import load_bundle
    from docedge.runtime.preprocess import preprocess_bgr

    bundle = load_bundle(args.bundle)
    precisions = bundle.precisions if args.precision == "all" else args.precision.split(",")
    batch_sizes = _ints(args.batch_sizes)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    report: Dict[str, Any] = {"bundle": str(bundle.path), "cases": [], "preprocess": {}}
    report["preprocess"] = time_call(lambda: preprocess_bgr(img), 1, iters=args.iters)
    report["preprocess"]["input"] = "640x480 BGR uint8"
    torch_net = None
    if not args.no_torch:
        try:
            from docedge.export.reference import reference_for_bundle
        except ImportError:  # a device install without the [export] extra
            logger.info("torch not installed: PyTorch reference skipped")
        else:
            ref = reference_for_bundle(bundle.model, strict=False)
            torch_net = ref.net if ref is not None else None
    options: Dict[str, Any] = {}
    if args.backend == "onnxruntime":
        options = {"providers": args.providers.split(","), "intra_op_threads": args.threads}
    report["cases"] = measure(bundle, precisions, batch_sizes, torch_net, args.backend, options,
                              iters=args.iters, threads=args.threads)  # fmt: skip
    sizes = _ints(args.gallery_sizes) if args.gallery_sizes else []
    report["gallery_search"] = _gallery_bench(sizes) if sizes else []
    if args.json:
        print_json(report)
        return 0
    _print_report(report)
    return 0


def measure(bundle: Any, precisions: List[str], batch_sizes: List[int], torch_net: Any = None,
            backend: str = "onnxruntime", options: Optional[Dict[str, Any]] = None, iters: int = 20,
            threads: int = 0, min_seconds: float = 0.5) -> List[Dict[str, Any]]:  # fmt: skip
    """Throughput and latency per (engine, precision, batch) on the same random inputs, with
    ``speedup_vs_pytorch`` when ``torch_net`` (the reference) is given. Warm-up excluded."""
    import numpy as np

    from docedge.runtime.benchmark import time_call
    from docedge.runtime.embedder import Embedder

    rng = np.random.default_rng(0)
    xs = {b: rng.random((b, 3, 128, 128), dtype=np.float32) for b in batch_sizes}
    cases: List[Dict[str, Any]] = []
    if torch_net is not None:
        import torch

        torch.set_num_threads(threads or torch.get_num_threads())
        for b in batch_sizes:
            t = torch.from_numpy(xs[b])

            def fwd(t: Any = t) -> Any:
                with torch.inference_mode():
                    return torch_net(t)

            stats = time_call(fwd, b, iters=iters, min_seconds=min_seconds)
            cases.append({"engine": "pytorch-eager", "precision": "fp32", **stats})
    for prec in precisions:
        emb = Embedder(bundle, precision=prec, backend=backend, batch_size=max(batch_sizes),
                       **(options or {}))  # fmt: skip
        for b in batch_sizes:

            def infer(b: int = b, emb: Embedder = emb) -> Any:
                return emb.backend.run(xs[b])

            stats = time_call(infer, b, iters=iters, min_seconds=min_seconds)
            cases.append({"engine": backend, "precision": prec, **stats})
        emb.close()
    torch_ips = {c["batch"]: c["images_per_s"] for c in cases if c["engine"] == "pytorch-eager"}
    for c in cases:
        ref = torch_ips.get(c["batch"])
        c["speedup_vs_pytorch"] = c["images_per_s"] / ref if ref else None
    return cases


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


def _print_report(r: Dict[str, Any]) -> None:
    pp = r["preprocess"]
    print(f"bundle {r['bundle']}")
    print(
        f"pre-processing ({pp['input']} -> 1x3x128x128): p50 {pp['p50_ms']:.3f} ms, "
        f"{pp['images_per_s']:.0f} images/s"
    )
    print(
        f"{'engine':<16}{'prec':<6}{'batch':>6}{'images/s':>11}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'vs torch':>10}"
    )
    for c in r["cases"]:
        ratio = f"{c['speedup_vs_pytorch']:.2f}x" if c.get("speedup_vs_pytorch") else "-"
        print(
            f"{c['engine']:<16}{c['precision']:<6}{int(c['batch']):>6}{c['images_per_s']:>11.0f}"
            f"{c['p50_ms']:>9.3f}{c['p99_ms']:>9.3f}{ratio:>10}"
        )
    if r["gallery_search"]:
        print("gallery search (1 query, top-5) and gallery open times:")
        for g in r["gallery_search"]:
            keys = ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in g.items()
            )
            print(f"  {keys}")
