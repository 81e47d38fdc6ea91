"""``docedge benchmark BUNDLE --images LABELLED``: one table per artifact, accuracy beside speed.

Like ``yolo benchmark``, but every row is measured against the reference: format, precision,
size, cosine to the reference, decision agreement and TPR@1e-2 on a labelled folder (from
``docedge parity``), and images per CPU-second at batch 1 and 32 (from ``docedge bench``'s
process-isolated, interleaved rounds).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..output import add_json_flag, human_size, positive_int, print_json


def register(sub: Any) -> None:
    p = sub.add_parser("benchmark", help="one row per artifact (ONNX and converted formats): "
                       "size, cosine, TPR@1e-2, images/s at batch 1 and 32")  # fmt: skip
    p.add_argument("bundle", type=Path)
    p.add_argument("--images", type=Path, required=True, help="labelled images DIR/<class>/*")
    p.add_argument("--rounds", type=positive_int, default=3)
    p.add_argument("--seconds", type=float, default=0.5)
    add_json_flag(p)
    p.set_defaults(func=run)


def _f(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def run(args: argparse.Namespace) -> int:
    from docedge.calibration.benchmark import artifact_table

    rows = artifact_table(str(args.bundle), str(args.images), rounds=args.rounds,
                          seconds=args.seconds)  # fmt: skip
    if args.json:
        print_json({"ok": True, "bundle": str(args.bundle), "rows": rows})
        return 0
    print("| artifact | file | size | cos min / mean | decisions | TPR@1e-2 | img/CPU-s b1 | b32 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "not_run" in r:
            print(f"| {r['artifact']} | not run: {r['not_run']} | | | | | | |")
            continue
        print(f"| {r['artifact']} | {r['file']} | {human_size(r['size_bytes'])} | "
              f"{r['cos_min']:.6f} / {r['cos_mean']:.6f} | {r['decision_agreement']:.3f} | "
              f"{_f(r['tpr_at_1e-2'], '.3f')} | {_f(r.get('images_per_cpu_s_b1'), '.0f')} | "
              f"{_f(r.get('images_per_cpu_s_b32'), '.0f')} |")
    return 0
