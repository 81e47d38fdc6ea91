"""``docedge gallery build|add|remove|list|info|compact|rebuild``: manage a gallery file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict

from ..backend_flags import add_backend_flags, backend_options
from ..output import add_json_flag, human_size, print_json


def _embedder_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", type=Path, help="model bundle directory")
    p.add_argument("gallery", type=Path, help="gallery file (created when absent)")
    p.add_argument("--precision", default="fp32",
                   help="artifact to embed with (fp32/fp16/int8; bf16 with --backend openvino)")
    add_backend_flags(p)


def register(sub: Any) -> None:
    p = sub.add_parser("gallery", help="manage a gallery of registered documents")
    g = p.add_subparsers(dest="gallery_command", metavar="ACTION", required=True)

    b = g.add_parser("build", help="build or incrementally sync from a register folder")
    _embedder_args(b)
    b.add_argument("register_dir", type=Path, help="DocClassifier-style register folder")
    b.add_argument("--dtype", default="float16", choices=["float16", "float32"],
                   help="embedding storage of a new gallery (default float16)")  # fmt: skip
    add_json_flag(b)
    b.set_defaults(func=run_build)

    a = g.add_parser("add", help="add image files (label = --label or file stem) or folders")
    _embedder_args(a)
    a.add_argument("images", nargs="+", type=Path)
    a.add_argument("--label", action="append", help="label per image (repeat, in order)")
    a.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    add_json_flag(a)
    a.set_defaults(func=run_add)

    r = g.add_parser("remove", help="remove entries by label or entry id")
    r.add_argument("gallery", type=Path)
    r.add_argument("--label", action="append", default=[], help="every exemplar of this label")
    r.add_argument("--id", action="append", type=int, default=[], help="one entry id")
    add_json_flag(r)
    r.set_defaults(func=run_remove)

    li = g.add_parser("list", help="list entries")
    li.add_argument("gallery", type=Path)
    li.add_argument("--label", help="only this label (and its sub-labels)")
    add_json_flag(li)
    li.set_defaults(func=run_list)

    i = g.add_parser("info", help="header, fingerprint, counts; verifies every checksum")
    i.add_argument("gallery", type=Path)
    i.add_argument("--bundle", type=Path, help="also check the gallery fits this bundle")
    i.add_argument("--precision", default="fp32", help="precision for --bundle")
    i.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "openvino"],
                   help="engine for --bundle (openvino: the bundle's OpenVINO IR of the "
                   "precision, as the classifier would run it)")  # fmt: skip
    i.add_argument("--no-verify", action="store_true", help="skip the full checksum read")
    add_json_flag(i)
    i.set_defaults(func=run_info)

    c = g.add_parser("compact", help="rewrite the file (optionally change the dtype); removes "
                     "temporary files of crashed writers")  # fmt: skip
    c.add_argument("gallery", type=Path)
    c.add_argument("--dtype", choices=["float16", "float32"])
    add_json_flag(c)
    c.set_defaults(func=run_compact)

    rb = g.add_parser("rebuild", help="re-embed every entry from its recorded source file "
                      "(after a model or precision change)")  # fmt: skip
    _embedder_args(rb)
    rb.add_argument("--out", type=Path, help="write here instead of replacing the gallery")
    rb.add_argument("--drop-missing", action="store_true",
                    help="drop entries whose source file is missing or changed")  # fmt: skip
    add_json_flag(rb)
    rb.set_defaults(func=run_rebuild)


def _embedder(args: argparse.Namespace) -> Any:
    from docedge.runtime.embedder import Embedder

    options: Dict[str, Any] = {}
    options.update(backend_options(args))
    return Embedder(args.bundle, precision=args.precision, backend=args.backend, **options)


def _report(args: argparse.Namespace, rep: Any, what: str) -> int:
    from docedge.runtime.gallery import Gallery

    d = rep.to_dict()
    target = getattr(args, "out", None) or args.gallery
    count = len(Gallery.open(target, lazy=True))
    if args.json:
        print_json({"ok": not rep.failed, "gallery": str(target), "count": count, **d})
    else:
        reused = f", {d['reused']} reused (same content)" if d["reused"] else ""
        print(f"{what} {target}: {d['added']} embedded{reused}, {d['unchanged']} unchanged, "
              f"{d['changed']} re-embedded, {d['removed']} removed; {count} entries")  # fmt: skip
        for src, problem in rep.failed.items():
            print(f"  failed: {src}: {problem}")
        for label, n in rep.duplicates.items():
            print(f"  duplicate label kept as {n} exemplars: {label}")
    return 0 if not rep.failed else 1


def run_build(args: argparse.Namespace) -> int:
    from docedge.runtime.gallery_sync import sync_register

    rep = sync_register(args.gallery, _embedder(args), args.register_dir, args.dtype)
    return _report(args, rep, "synced")


def run_add(args: argparse.Namespace) -> int:
    from docedge.runtime.errors import DocedgeError
    from docedge.runtime.gallery_sync import add_images

    if args.label and len(args.label) != len(args.images):
        raise DocedgeError("give one --label per image")
    rep = add_images(args.gallery, _embedder(args), args.images, args.label, args.dtype)
    return _report(args, rep, "added to")


def run_remove(args: argparse.Namespace) -> int:
    from docedge.runtime.errors import DocedgeError
    from docedge.runtime.gallery import Gallery

    if not args.label and not args.id:
        raise DocedgeError("give --label and/or --id")
    n = Gallery.open(args.gallery).remove(labels=args.label, ids=args.id)
    if args.json:
        print_json({"ok": n > 0, "removed": n})
    else:
        print(f"removed {n} entries from {args.gallery}" if n else
              f"nothing matched in {args.gallery}; nothing changed")  # fmt: skip
    return 0 if n else 1


def run_list(args: argparse.Namespace) -> int:
    from docedge.runtime.gallery import Gallery

    g = Gallery.open(args.gallery)
    entries = g.entries
    if args.label:
        entries = [e for e in entries
                   if e.label == args.label or e.label.startswith(args.label + "/")]  # fmt: skip
    if args.json:
        print_json({"ok": True, "count": len(entries), "entries": [e.to_dict() for e in entries]})
        return 0
    for e in entries:
        parent = f" (parent {e.parent})" if e.parent else ""
        print(f"{e.id:>6}  {e.label}{parent}  {e.source or '-'}  {e.added}")
    print(f"{len(entries)} entries, {len({e.label for e in entries})} labels")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from docedge.runtime.gallery import Gallery, describe_fingerprint_difference

    g = Gallery.open(args.gallery, verify=not args.no_verify)
    info = g.info()
    info["verified"] = not args.no_verify
    ok = True
    if args.bundle:
        from docedge.runtime.bundle import load_bundle

        bundle = load_bundle(args.bundle)
        art = bundle.embedding_artifact(args.precision, args.backend)
        accepted = bundle.gallery_fingerprints(art)
        diffs = describe_fingerprint_difference(g.fingerprint, accepted[0])
        if diffs and any(not describe_fingerprint_difference(g.fingerprint, fp)
                         for fp in accepted[1:]):  # fmt: skip
            diffs = []  # made by an artifact the bundle records as interchangeable
        info["bundle_compatible"] = not diffs
        info["bundle_differences"] = diffs
        ok = not diffs
    if args.json:
        print_json({"ok": ok, **info})
        return 0 if ok else 1
    for k in ("path", "schema_version", "count", "labels", "sub_labels", "dim", "dtype",
              "created", "updated", "next_id"):  # fmt: skip
        print(f"{k + ':':<26} {info[k]}")
    print(f"{'size:':<26} {human_size(info['size_bytes'])}")
    for k, v in info["fingerprint"].items():
        print(f"{'fingerprint.' + k + ':':<26} {str(v)[:72]}")
    if info["verified"]:
        print(f"{'verified:':<26} yes (header, label sections and embedding checksums)")
    if args.bundle:
        print(f"{'bundle:':<26} " + ("compatible" if ok else "NOT compatible: "
                                    + "; ".join(info["bundle_differences"])))  # fmt: skip
    return 0 if ok else 1


def run_compact(args: argparse.Namespace) -> int:
    from docedge.runtime.gallery import Gallery

    g = Gallery.open(args.gallery)
    done = g.compact(args.dtype)
    if args.json:
        print_json({"ok": True, **g.info(), "compact": done})
    else:
        print(f"compacted {args.gallery}: {len(g)} entries, {g.dtype}, "
              f"{human_size(done['size_before'])} -> {human_size(done['size_after'])}, "
              f"{done['stale_temp_files_removed']} stale temporary files removed")  # fmt: skip
    return 0


def run_rebuild(args: argparse.Namespace) -> int:
    from docedge.runtime.gallery_sync import rebuild

    rep = rebuild(args.gallery, _embedder(args), args.out, drop_missing=args.drop_missing)
    return _report(args, rep, "rebuilt")
