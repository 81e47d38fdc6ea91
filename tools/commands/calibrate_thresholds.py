"""``docedge calibrate thresholds BUNDLE --images DIR``: TPR@FPR tables per precision, written
into the bundle manifest.

Registered by the ``calibrate`` group (tools/commands/calibrate.py) through
:func:`register_thresholds`; this module defines no top-level ``register`` on purpose.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..backend_flags import add_backend_flags, backend_options
from ..output import add_json_flag, print_json


def register_thresholds(subparsers: Any, /) -> None:
    """Add the ``thresholds`` subcommand to the ``calibrate`` group's subparsers."""
    t = subparsers.add_parser(
        "thresholds",
        help="TPR@FPR tables per precision from labelled images, into the manifest",
        description="Embed labelled images (DIR/<class>/*.jpg) with each precision's artifact, "
        "score all same-class (genuine) and different-class (impostor) pairs in float32, and "
        "write a TPR@FPR table (FPR 1e-5 ... 1e-1 and 1, with AUROC) per precision into the "
        "bundle manifest. For target FPR f with N impostor pairs at most floor(f*N) false "
        "accepts are allowed; rows with floor(f*N) = 0 are marked unsupported.",
    )
    t.add_argument("bundle", type=Path, help="bundle directory")
    t.add_argument("--images", type=Path, required=True, help="labelled images: DIR/<class>/*.jpg")
    t.add_argument("--precision", default="all",
                   help="fp32|fp16|int8 (bf16|int8 with --backend openvino: the bundle's "
                   "OpenVINO IR), a comma list, or all (default: every ONNX precision)")
    t.add_argument("--max-impostors", type=int, default=2_000_000, metavar="N",
                   help="use a uniform sample of N impostor pairs when there are more "
                   "(default 2,000,000; the count is recorded)")  # fmt: skip
    t.add_argument("--seed", type=int, default=0, help="seed of the impostor sample")
    add_backend_flags(t)
    t.add_argument("--dry-run", action="store_true", help="print the tables, do not write")
    t.add_argument("--replace", action="store_true",
                   help="replace tables the bundle already has (their provenance is kept in "
                   "the new table's source.replaces); without it an existing table is refused")
    add_json_flag(t)
    t.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Calibrate, write (unless ``--dry-run``) and print; returns the exit code."""
    from docedge.calibration.thresholds import calibrate_thresholds, describe_table

    precs = None if args.precision == "all" else [p for p in args.precision.split(",") if p]
    tables = calibrate_thresholds(args.bundle, args.images, precs,
                                  max_impostors=args.max_impostors, write=not args.dry_run,
                                  seed=args.seed, replace=args.replace, backend=args.backend,
                                  **backend_options(args))  # fmt: skip
    if args.json:
        print_json({"ok": True, "bundle": str(args.bundle), "written": not args.dry_run,
                    "tables": tables})  # fmt: skip
        return 0
    for key, table in tables.items():
        print(describe_table(table, key), end="\n\n")
    where = args.bundle / "manifest.json"
    print(f"(dry run: {where} unchanged)" if args.dry_run else
          f"written to {where} (thresholds.{', thresholds.'.join(tables)})")  # fmt: skip
    return 0
