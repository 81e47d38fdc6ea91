"""``docedge serve BUNDLE [GALLERY]``: an HTTP/JSON API on Ray Serve (``docedge[serve]``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..backend_flags import add_backend_flags, backend_options
from ..output import add_json_flag, positive_int, print_json


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve embed/classify over HTTP on Ray Serve (pip install 'docedge[serve]')",
        description="Start (or join) a local Ray cluster and serve POST /embed and POST /classify "
        "(raw image bytes in, JSON out), GET /healthz and /readyz. Requests are batched by Ray "
        "Serve; the gallery is re-opened when it changes. See docs/serving.md.",
    )
    p.add_argument("bundle", type=Path)
    p.add_argument("gallery", type=Path, nargs="?", help="gallery file (needed for /classify)")
    p.add_argument("--host", default="127.0.0.1", help="HTTP host (default 127.0.0.1)")
    p.add_argument("--port", type=positive_int, default=8000)
    p.add_argument("--replicas", type=positive_int, default=1)
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per replica")
    p.add_argument("--max-batch", type=positive_int, default=32, help="dynamic batch size")
    p.add_argument("--batch-wait-ms", type=float, default=5.0)
    p.add_argument("--max-request-mb", type=float, default=16.0)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--fpr", type=float, default=1e-2)
    p.add_argument("--threshold", type=float)
    add_backend_flags(p, backend=False)
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from docedge.runtime.serve import _import_ray, build_app

    serve, _ = _import_ray()
    app = build_app(str(args.bundle), str(args.gallery) if args.gallery else None,
                    precision=args.precision, fpr=args.fpr, threshold=args.threshold,
                    num_replicas=args.replicas, num_cpus=args.num_cpus, max_batch_size=args.max_batch,
                    batch_wait_timeout_s=args.batch_wait_ms / 1000.0,
                    max_request_bytes=int(args.max_request_mb * (1 << 20)),
                    **backend_options(args))  # fmt: skip
    serve.start(http_options={"host": args.host, "port": args.port})
    url = f"http://{args.host}:{args.port}"
    if args.json:
        print_json({"ok": True, "serving": str(args.bundle), "url": url, "replicas": args.replicas})
    else:
        print(f"docedge serving {args.bundle} on {url} ({args.replicas} replica(s)); Ctrl-C stops",
              flush=True)
    serve.run(app, blocking=True)
    return 0
