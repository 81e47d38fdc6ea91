"""The backend options every command that runs the model shares, parsed one way.

``--backend``, ``--providers``, ``--threads``, ``--spinning`` and ``--performance-hint`` become
the keyword options of :class:`docedge.runtime.Embedder` (and so of
:func:`docedge.runtime.backends.create_backend`). With ``--backend auto`` the chosen backend
and the reason are printed on stderr (stdout stays clean for ``--json``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List

from docedge.runtime.backends import BACKEND_CHOICES


def add_backend_flags(p: argparse.ArgumentParser, backend: bool = True) -> None:
    """Add ``--backend`` (optional), ``--providers``, ``--threads``, ``--spinning`` and
    ``--performance-hint``."""
    if backend:
        p.add_argument("--backend", default="onnxruntime", choices=BACKEND_CHOICES,
                       help="inference backend (default onnxruntime; auto: OpenVINO where the "
                       "bundle's OpenVINO artifact measured faster, printed with the reason)")  # fmt: skip
    p.add_argument("--providers", default="cpu",
                   help="ONNX Runtime providers in priority order, comma-separated "
                   "(cpu, cuda, tensorrt, coreml, ...; default cpu)")  # fmt: skip
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help="intra-op threads (0: the engine's default, one per core)")
    p.add_argument("--spinning", action="store_true",
                   help="let idle ONNX Runtime threads busy-wait (faster on an idle machine, "
                   "much slower when another process shares the cores; default off)")  # fmt: skip
    p.add_argument("--performance-hint", choices=["LATENCY", "THROUGHPUT"], default="LATENCY",
                   help="OpenVINO's PERFORMANCE_HINT (default LATENCY)")


def providers(args: argparse.Namespace) -> List[str]:
    """``--providers`` as a list (never empty)."""
    return [p.strip() for p in str(args.providers).split(",") if p.strip()] or ["cpu"]


def announce_choice(choice: Any) -> None:
    """Print what ``--backend auto`` chose, and why, on stderr."""
    print(f"docedge: {choice}", file=sys.stderr)


def backend_options(args: argparse.Namespace) -> Dict[str, Any]:
    """Keyword options for the backend ``args.backend`` names."""
    backend = getattr(args, "backend", "onnxruntime")
    hint = str(getattr(args, "performance_hint", "LATENCY"))
    if backend == "openvino":
        return {"threads": int(args.threads), "performance_hint": hint}
    if backend == "auto":
        return {"threads": int(args.threads), "providers": providers(args),
                "allow_spinning": bool(args.spinning), "performance_hint": hint,
                "on_choice": announce_choice}  # fmt: skip
    if backend != "onnxruntime":
        return {}
    return {"providers": providers(args), "intra_op_threads": int(args.threads),
            "allow_spinning": bool(args.spinning)}  # fmt: skip
