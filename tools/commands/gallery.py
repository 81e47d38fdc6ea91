"""``docedge gallery build|add|remove|list|info|compact|rebuild``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..output import add_json_flag, print_json


def _embedder_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", type=Path)
    p.add_argument("gallery", type=Path)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--providers", default="cpu", help="ONNX Runtime providers (cpu, cuda, ...)")


def register(sub: Any) -> None:
    p = sub.add_parser("gallery", help="manage a gallery of registered documents")
    g = p.add_subparsers(dest="gallery_command", metavar="ACTION", required=True)

    b = g.add_parser("build", help="build or incrementally sync from a register folder")
    _embedder_args(b)
    b.add_argument("register_dir", type=Path)
    b.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    add_json_flag(b)
    b.set_defaults(func=run_build)

    a = g.add_parser("add", help="add image files (label = --label or file stem) or folders")
    _embedder_args(a)
    a.add_argument("images", nargs="+", type=Path)
    a.add_argument("--label", action="append", help="label per image (repeat, in order)")
    a.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    add_json_flag(a)
    a.set_defaults(func=run_add)

    r = g.add_parser("remove", help="remove entries by label or id")
    r.add_argument("gallery", type=Path)
    r.add_argument("--label", action="append", default=[])
    r.add_argument("--id", action="append", type=int, default=[])
    add_json_flag(r)
    r.set_defaults(func=run_remove)

    li = g.add_parser("list", help="list entries")
    li.add_argument("gallery", type=Path)
    add_json_flag(li)
    li.set_defaults(func=run_list)

    i = g.add_parser("info", help="header, fingerprint, counts; verifies checksums")
    i.add_argument("gallery", type=Path)
    add_json_flag(i)
    i.set_defaults(func=run_info)

    c = g.add_parser("compact", help="rewrite the file (optionally change dtype)")
    c.add_argument("gallery", type=Path)
    c.add_argument("--dtype", choices=["float16", "float32"])
    add_json_flag(c)
    c.set_defaults(func=run_compact)

    rb = g.add_parser("rebuild", help="re-embed every entry from its recorded source file")
    _embedder_args(rb)
    rb.add_argument("--out", type=Path, help="write here instead of replacing the gallery")
    add_json_flag(rb)
    rb.set_defaults(func=run_rebuild)


def _embedder(args: argparse.Namespace) -> Any:
    from docedge.runtime.embedder import Embedder

    return Embedder(args.bundle, precision=args.precision,
                    providers=[p for p in args.providers.split(",") if p])  # fmt: skip


def _report(args: argparse.Namespace, rep: Any, what: str) -> int:
    d = rep.to_dict()
    if args.json:
        print_json({"ok": not rep.failed, "gallery": str(args.gallery), **d})
    else:
        print(f"{what} {args.gallery}: {d['added']} added, {d['unchanged']} unchanged, "
              f"{d['changed']} re-embedded, {d['removed']} removed")  # fmt: skip
        for src, problem in rep.failed.items():
            print(f"  failed: {src}: {problem}")
        for label, n in rep.duplicates.items():
            print(f"  duplicate label kept as {n} exemplars: {label}")
    return 0 if not rep.failed else 1


def run_build(args: argparse.Namespace) -> int:
    from docedge.runtime.gallery_sync import sync_register

    return _report(args, sync_register(args.gallery, _embedder(args), args.register_dir,
                                       args.dtype), "synced")  # fmt: skip


def run_add(args: argparse.Namespace) -> int:
    from docedge.runtime.gallery_sync import add_images

    if args.label and len(args.label) != len(args.images):
        raise SystemExit("error: give one --label per image")
    return _report(args, add_images(args.gallery, _embedder(args), args.images, args.label,
                                    args.dtype), "added to")  # fmt: skip


def run_remove(args: argparse.Namespace) -> int:
    from docedge.runtime.gallery import Gallery

    n = Gallery.open(args.gallery).remove(labels=args.label, ids=args.id)
    if args.json:
        print_json({"ok": True, "removed": n})
    else:
        print(f"removed {n} entries from {args.gallery}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from docedge.runtime.gallery import Gallery

    g = Gallery.open(args.gallery)
    if args.json:
        print_json({"ok": True, "entries": [e.to_dict() for e in g.entries]})
        return 0
    for e in g.entries:
        parent = f" (parent {e.parent})" if e.parent else ""
        print(f"{e.id:>6}  {e.label}{parent}  {e.source or ''}")
    print(f"{len(g)} entries, {len(g.labels)} labels")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from docedge.runtime.gallery import Gallery

    g = Gallery.open(args.gallery, verify=True)
    info = g.info()
    if args.json:
        print_json({"ok": True, "verified": True, **info})
        return 0
    for k in ("path", "count", "labels", "dim", "dtype", "size_bytes", "created", "updated"):
        print(f"{k:<12}{info[k]}")
    for k, v in info["fingerprint"].items():
        print(f"{'fp.' + k:<12}{str(v)[:64]}")
    print("verified    yes (header, label table and embedding checksums)")
    return 0


def run_compact(args: argparse.Namespace) -> int:
    from docedge.runtime.gallery import Gallery

    g = Gallery.open(args.gallery)
    g.compact(args.dtype)
    if args.json:
        print_json({"ok": True, **g.info()})
    else:
        print(f"compacted {args.gallery}: {len(g)} entries, {g.dtype}")
    return 0


def run_rebuild(args: argparse.Namespace) -> int:
    from docedge.runtime.gallery_sync import rebuild

    return _report(args, rebuild(args.gallery, _embedder(args), args.out), "rebuilt")
