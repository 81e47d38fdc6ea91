"""The backend options every command that runs the model shares, parsed one way.

``--backend``, ``--providers``, ``--threads`` and ``--spinning`` become the keyword options of
:class:`docedge.runtime.Embedder` (and so of :func:`docedge.runtime.backends.create_backend`).
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, List

from docedge.runtime.backends import BACKENDS


def add_backend_flags(p: argparse.ArgumentParser, backend: bool = True) -> None:
    """Add ``--backend`` (optional), ``--providers``, ``--threads`` and ``--spinning``."""
    if backend:
        p.add_argument("--backend", default="onnxruntime", choices=BACKENDS,
                       help="inference backend (default onnxruntime)")  # fmt: skip
    p.add_argument("--providers", default="cpu",
                   help="ONNX Runtime providers in priority order, comma-separated "
                   "(cpu, cuda, tensorrt, coreml, ...; default cpu)")  # fmt: skip
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help="intra-op threads (0: ONNX Runtime's default, one per core)")
    p.add_argument("--spinning", action="store_true",
                   help="let idle ONNX Runtime threads busy-wait (faster on an idle machine, "
                   "much slower when another process shares the cores; default off)")  # fmt: skip


def providers(args: argparse.Namespace) -> List[str]:
    """``--providers`` as a list (never empty)."""
    return [p.strip() for p in str(args.providers).split(",") if p.strip()] or ["cpu"]


def backend_options(args: argparse.Namespace) -> Dict[str, Any]:
    """Keyword options for the backend ``args.backend`` names."""
    backend = getattr(args, "backend", "onnxruntime")
    if backend == "openvino":
        return {"threads": int(args.threads)}
    if backend != "onnxruntime":
        return {}
    return {"providers": providers(args), "intra_op_threads": int(args.threads),
            "allow_spinning": bool(args.spinning)}  # fmt: skip
