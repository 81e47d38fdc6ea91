"""``docedge info BUNDLE``: identity, pre-processing, artifacts (sizes), threshold tables."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..output import add_json_flag, human_size, print_json


def register(sub: Any) -> None:
    p = sub.add_parser("info", help="describe a bundle (verifies checksums)")
    p.add_argument("bundle", type=Path)
    p.add_argument("--no-verify", action="store_true", help="skip checksum verification")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from docedge.runtime.bundle import load_bundle

    b = load_bundle(args.bundle, verify=not args.no_verify)
    m = b.manifest
    if args.json:
        print_json({"ok": True, "verified": not args.no_verify, "manifest": m})
        return 0
    model = m.get("model", {})
    src = model.get("source", {})
    print(
        f"bundle      {b.path}  (schema v{m['schema_version']}, docedge {m.get('docedge_version')})"
    )
    print(
        f"model       {model.get('name')}  cfg={model.get('model_cfg') or '-'}  "
        f"arch={model.get('architecture')}"
    )
    print(
        f"source      {src.get('kind')} {src.get('file', '')} "
        f"sha256={str(src.get('sha256', ''))[:16]}"
    )
    pp = m.get("preprocess", {})
    print(
        f"preprocess  {pp.get('color_order')} resize {pp.get('width')}x{pp.get('height')} "
        f"{pp.get('interpolation')} x{pp.get('scale'):.6g} {pp.get('layout')}"
    )
    io = m.get("io", {})
    print(
        f"io          {io['input']['name']} {io['input']['shape']} {io['input']['dtype']} -> "
        f"{io['output']['name']} {io['output']['shape']} {io['output']['dtype']}"
    )
    print(
        f"score       {m.get('score', {}).get('space')}, match if {m.get('score', {}).get('match')}"
    )
    print("artifacts")
    for a in b.artifacts:
        print(
            f"  {a.precision:<5} {a.format:<22} {a.file:<26} {human_size(a.size):>10}  "
            f"sha256={a.sha256[:16]}"
        )
    tables = m.get("thresholds") or {}
    if not tables:
        print(
            "thresholds  none: classification needs an explicit --threshold "
            "(or run `docedge calibrate thresholds`)"
        )
    for prec, t in sorted(tables.items()):
        rows = [r for r in t.get("rows", []) if r.get("supported", True)]
        pts = ", ".join(f"FPR {r['fpr']:g}: {r['threshold']:.3f}" for r in rows)
        auroc = t.get("auroc")
        print(f"thresholds  {prec}: {pts}" + (f"  (AUROC {auroc:.4f})" if auroc else ""))
    print("verified    " + ("yes (every checksum)" if not args.no_verify else "skipped"))
    return 0
