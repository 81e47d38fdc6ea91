"""``docedge synth documents|captures``: labelled synthetic image sets (always marked synthetic).

docedge synth documents --types 200 --per-type 4 --out synth_docs     # type ids 0..199
docedge synth captures my_register/ --per-image 5 --out my_eval_set    # folder per label
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..output import add_json_flag, print_json


def register(sub: Any) -> None:
    p = sub.add_parser("synth", help="generate synthetic documents or captures")
    group = p.add_subparsers(dest="synth_command", metavar="KIND", required=True)

    d = group.add_parser("documents", help="N document types x K instances, a folder per type")
    d.add_argument("--types", type=_positive, required=True, help="number of document types")
    d.add_argument("--per-type", type=_positive, default=1, help="instances per type")
    d.add_argument("--out", type=Path, required=True)
    d.add_argument(
        "--first-type-id",
        type=int,
        default=0,
        help="first type id (ids >= 1000 were used to train the demo model)",
    )
    d.add_argument("--seed", type=int, default=0, help="universe of types (same id, other layout)")
    d.add_argument("--long-side", type=int, default=256, help="long side of each image in pixels")
    d.add_argument(
        "--capture-strength",
        type=float,
        default=0.0,
        help="pass instances through the capture simulator (0 = clean renders)",
    )
    add_json_flag(d)
    d.set_defaults(func=run_documents)

    c = group.add_parser("captures", help="simulated captures of a register folder's images")
    c.add_argument("register_dir", type=Path)
    c.add_argument("--per-image", type=_positive, default=3, help="captures per register image")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--strength", type=float, default=1.0, help="overall severity in [0, 1]")
    for name in ("crop", "light", "shadow", "color-cast", "glare", "blur", "low-res", "noise",
                 "jpeg"):  # fmt: skip
        c.add_argument(
            f"--{name}",
            type=float,
            default=1.0,
            metavar="X",
            help=f"{name} strength multiplier (0 disables)",
        )
    add_json_flag(c)
    c.set_defaults(func=run_captures)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def run_documents(args: argparse.Namespace) -> int:
    from docedge.synth.dataset import write_documents
    from docedge.synth.documents import FIRST_TRAIN_TYPE_ID

    rep = write_documents(args.out, args.types, args.per_type, args.first_type_id, args.seed,
                          args.capture_strength, long_side=args.long_side,
                          progress=not args.json)  # fmt: skip
    if args.json:
        print_json({"ok": True, **rep.to_dict()})
    else:
        print(f"wrote {rep.files} synthetic images of {len(rep.labels)} types to {rep.out}")
        if args.first_type_id + args.types > FIRST_TRAIN_TYPE_ID:
            print(f"note: type ids >= {FIRST_TRAIN_TYPE_ID} were used to train the demo model; "
                  "this set is not zero-shot for it")  # fmt: skip
    return 0


def run_captures(args: argparse.Namespace) -> int:
    from docedge.synth.captures import CaptureConditions
    from docedge.synth.dataset import write_captures

    cond = CaptureConditions(crop=args.crop, light=args.light, shadow=args.shadow,
                             color_cast=args.color_cast, glare=args.glare, blur=args.blur,
                             low_res=args.low_res, noise=args.noise, jpeg=args.jpeg)  # fmt: skip
    rep = write_captures(args.register_dir, args.out, args.per_image, args.seed, args.strength,
                         cond, progress=not args.json)  # fmt: skip
    if args.json:
        print_json({"ok": not rep.skipped, **rep.to_dict()})
    else:
        print(f"wrote {rep.files} synthetic captures of {len(rep.labels)} labels to {rep.out}")
        for path, problem in rep.skipped.items():
            print(f"skipped {path}: {problem}")
        if rep.skipped:
            print(f"{len(rep.skipped)} register image(s) skipped; the set is incomplete")
    return 0 if not rep.skipped else 1
