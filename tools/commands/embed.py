"""``docedge embed BUNDLE IMAGES...``: embeddings as .npy or printed summaries."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, List

from ..backend_flags import add_backend_flags, backend_options
from ..output import add_json_flag, positive_int, print_json


def register(sub: Any) -> None:
    p = sub.add_parser("embed", help="embed images (files or folders) with a bundle")
    p.add_argument("bundle", type=Path)
    p.add_argument("images", nargs="+", type=Path, help="image files or folders (recursive)")
    p.add_argument("--out", type=Path, help="write float32 (N, 256) embeddings to this .npy")
    p.add_argument("--precision", default="fp32", help="fp32 | fp16 | int8")
    add_backend_flags(p)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--ray", action="store_true",
                   help="bulk job on Ray Data: one docedge actor per worker, Parquet shards of "
                   "(path, ok, error, embedding) written to --out (a folder); docedge[serve]")  # fmt: skip
    p.add_argument("--actors", type=positive_int, default=1, help="Ray actors (with --ray)")
    add_json_flag(p)
    p.set_defaults(func=run)


def expand_images(items: List[Path]) -> List[Path]:
    from docedge.runtime.preprocess import list_images

    out: List[Path] = []
    for item in items:
        out.extend(list_images(item) if item.is_dir() else [item])
    return out


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from docedge.runtime.embedder import Embedder
    from docedge.runtime.errors import DocedgeError

    if args.ray:
        return _run_ray(args)
    if args.out is not None and not args.out.parent.is_dir():
        raise DocedgeError(f"{args.out}: its folder {args.out.parent} does not exist")
    paths = expand_images(args.images)
    with Embedder(
        args.bundle,
        precision=args.precision,
        backend=args.backend,
        batch_size=args.batch_size,
        **backend_options(args),
    ) as emb:
        result = emb.embed_many([str(p) for p in paths])
    if args.out:
        np.save(args.out, result.embeddings)
    failed = {str(paths[i]): str(e.problem) for i, e in sorted(result.errors.items())}
    if args.json:
        print_json(
            {
                "ok": not failed,
                "count": len(paths),
                "embedded": int(result.ok.sum()),
                "failed": failed,
                "out": str(args.out) if args.out else None,
                "embeddings": None if args.out else result.embeddings.tolist(),
                "files": [str(p) for p in paths],
            }
        )
    else:
        for i, p in enumerate(paths):
            if result.ok[i]:
                v = result.embeddings[i]
                head = " ".join(f"{x:+.3f}" for x in v[:6])
                print(f"{p}: [{head} ...] |v|={np.linalg.norm(v):.4f}")
            else:
                print(f"{p}: FAILED ({result.errors[i].problem})")
        if args.out:
            print(f"wrote {args.out} {result.embeddings.shape} float32 (failed rows are NaN)")
    return 1 if failed else 0


def _run_ray(args: argparse.Namespace) -> int:
    from docedge.runtime.bulk import _import_ray_data, embed_archive
    from docedge.runtime.errors import DocedgeError

    if args.out is None:
        raise DocedgeError("--ray needs --out FOLDER for the Parquet shards")
    ray = _import_ray_data()
    inputs = str(args.images[0]) if len(args.images) == 1 else [str(p) for p in args.images]
    ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    try:
        res = embed_archive(args.bundle, inputs, args.out, precision=args.precision,
                            num_actors=args.actors, batch_size=args.batch_size,
                            **backend_options(args))  # fmt: skip
    finally:
        ray.shutdown()
    if args.json:
        print_json({"ok": res["failed"] == 0, **res})
    else:
        print(f"embedded {res['embedded']} of {res['images']} images into {res['out']} "
              f"({res['failed']} failed; see the shards' error column)")
    return 0 if res["failed"] == 0 else 1
