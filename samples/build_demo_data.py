"""Build the demo model's data (not committed; this script regenerates it):

- ``real_train/``: pages of the TRAIN packages' PDFs (poppler, long side 800 px);
- ``real_eval/``: pages of the EVAL and CALIB packages' PDFs (long side 640 px), for
  ``samples/evaluate_real_documents.py`` (never used for training);
- ``synth_pages/``: a pool of text pages set in real fonts (``docedge.synth.layouts``), page
  ids from ``FIRST_TRAIN_PAGE_ID`` (ids below are kept for evaluation), long side 640 px.

Needs ``poppler-utils``, the font packages of ``docedge.synth.fonts.FONT_PACKAGES`` and the doc
packages of ``docedge.synth.real_pages.TRAIN_PACKAGES`` / ``EVAL_PACKAGES`` (``--install``
installs them with apt-get; ``texlive-latex-base-doc`` is reserved and never installed).

    python samples/build_demo_data.py --out /work/demo_data [--install]
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import cv2

from docedge.synth.fonts import FONT_PACKAGES
from docedge.synth.layouts import FIRST_TRAIN_PAGE_ID, LAYOUT_VERSION, render_page
from docedge.synth.real_pages import (
    CALIB_PACKAGES,
    EVAL_PACKAGES,
    TRAIN_PACKAGES,
    TRAIN_PAGES_PER_PDF,
    build_page_set,
    check_disjoint,
)

log = logging.getLogger("build_demo_data")


def install() -> None:
    pkgs = ["poppler-utils", *FONT_PACKAGES, *TRAIN_PACKAGES, *EVAL_PACKAGES, *CALIB_PACKAGES]
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *pkgs],
                   check=True)  # fmt: skip


def synth_pool(out: Path, count: int, long_side: int, seed: int = 0) -> None:
    out.mkdir(parents=True, exist_ok=True)
    t = time.time()
    for k in range(count):
        pid = FIRST_TRAIN_PAGE_ID + k
        path = out / f"page{pid:07d}_synthetic.png"
        if not path.exists():
            cv2.imwrite(str(path), render_page(pid, seed, long_side))
        if (k + 1) % 500 == 0:
            log.info("synthetic pages: %d/%d (%.0f s)", k + 1, count, time.time() - t)
    meta = {"synthetic": True, "generator": LAYOUT_VERSION, "first_page_id": FIRST_TRAIN_PAGE_ID,
            "count": count, "seed": seed, "long_side": long_side}  # fmt: skip
    (out / "synth_manifest.json").write_text(json.dumps(meta, indent=2) + "\n")


LICENCE_NOTES = {
    "python-reportlab-doc": "BSD-style ReportLab licence (LGPL/MPL parts)",
    "gri-pdf-doc": "GPL-2 / GPL-3",
    "maxima-doc": "GPL-2 (free-form copyright file)",
}
TEXLIVE = "TeX Live terms: DFSG-free parts (LPPL, GPL, public domain, ...)"


def sources(out: Path) -> Dict[str, Any]:
    """``{package: {role, pdfs, pages, licences}}`` from the page sets' manifests."""
    roles = {**{p: "train" for p in TRAIN_PACKAGES}, **{p: "eval" for p in EVAL_PACKAGES},
             **{p: "threshold-calib" for p in CALIB_PACKAGES}}  # fmt: skip
    result: Dict[str, Any] = {}
    for sub in ("real_train", "real_eval"):
        path = out / sub / "pages_manifest.json"
        if not path.is_file():
            continue
        man = json.loads(path.read_text())
        for pkg, src in man["sources"].items():
            lic = src["licences"]
            if pkg.startswith("texlive-"):
                text = TEXLIVE
            else:
                text = LICENCE_NOTES.get(pkg) or ", ".join(lic)
            result[pkg] = {"role": roles.get(pkg, "?"), "pdfs": src["pdfs"],
                           "pages": src["pages"], "licence": text,
                           "long_side": man["long_side"]}  # fmt: skip
    return result


def sources_markdown(src: Dict[str, Any]) -> str:
    order = {"train": 0, "threshold-calib": 1, "eval": 2}
    rows = sorted(src.items(), key=lambda kv: (order.get(kv[1]["role"], 3), kv[0]))
    return "\n".join(f"| {v['role']} | `{k}` | {v['pdfs']} | {v['pages']} | {v['licence']} |"
                     for k, v in rows)  # fmt: skip


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("/work/demo_data"))
    p.add_argument("--install", action="store_true", help="apt-get install the packages first")
    p.add_argument("--synthetic-pages", type=int, default=6000)
    p.add_argument("--train-pages-per-pdf", type=int, default=8)
    p.add_argument("--eval-pages-per-pdf", type=int, default=3)
    p.add_argument("--train-long-side", type=int, default=800,
                   help="long side of training pages (large: the runtime's bilinear resize of "
                        "large images aliases, and training must see that)")
    p.add_argument("--synthetic-long-side", type=int, default=640)
    p.add_argument("--only", choices=["real_train", "real_eval", "synth_pages"], nargs="*")
    p.add_argument("--packages", nargs="+", metavar="PKG",
                   help="(re)build only these training packages of real_train, keeping the "
                        "others already built (same result as a full build)")
    p.add_argument("--workers", type=int, default=2, help="PDFs rendered at once")
    p.add_argument("--sources", type=Path,
                   help="only write the list of sources (json) from the built sets and print "
                        "it as a markdown table")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    check_disjoint(TRAIN_PACKAGES, EVAL_PACKAGES)
    check_disjoint(TRAIN_PACKAGES, CALIB_PACKAGES)
    check_disjoint(EVAL_PACKAGES, CALIB_PACKAGES)
    if a.sources:
        src = sources(a.out)
        a.sources.write_text(json.dumps(src, indent=2) + "\n")
        print(sources_markdown(src))
        return 0
    if a.install:
        install()
    only = set(a.only or ["real_train", "real_eval", "synth_pages"])
    if "real_train" in only:
        if a.packages and not set(a.packages) <= set(TRAIN_PACKAGES):
            p.error(f"not training packages: {sorted(set(a.packages) - set(TRAIN_PACKAGES))}")
        build_page_set(a.packages or TRAIN_PACKAGES, a.out / "real_train", a.train_pages_per_pdf,
                       a.train_long_side, per_package=TRAIN_PAGES_PER_PDF, workers=a.workers,
                       keep_other_packages=bool(a.packages))  # fmt: skip
    if "synth_pages" in only:
        synth_pool(a.out / "synth_pages", a.synthetic_pages, a.synthetic_long_side)
    if "real_eval" in only:
        build_page_set((*EVAL_PACKAGES, *CALIB_PACKAGES), a.out / "real_eval",
                       a.eval_pages_per_pdf, 640, seed=1, workers=a.workers)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
