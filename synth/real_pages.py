"""Real PDF pages as training and evaluation data: find the PDFs a Debian package installed,
render pages with poppler's ``pdftoppm``, and write page sets with a manifest of sources.

Only packages whose licences allow shipping weights derived from them are used (the manifest
records each package's ``copyright`` licence lines). Training and evaluation must use disjoint
packages; :data:`RESERVED_PACKAGES` are never used at all (independent acceptance checks).

    pdfs = package_pdfs("r-doc-pdf")              # sorted paths of the package's PDFs
    n = page_count(pdfs[0])                       # pdfinfo
    img = render_pdf_page(pdfs[0], 1, 320)        # BGR uint8, long side 320 px
    build_page_set(["r-doc-pdf"], "/tmp/pages", pages_per_pdf=8)
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from docedge.runtime.errors import DocedgeError

logger = logging.getLogger(__name__)

#: Packages that must never be used for training, tuning, selection or evaluation.
RESERVED_PACKAGES = ("texlive-latex-base-doc",)
#: The demo model's training packages and its real-page evaluation packages (disjoint).
TRAIN_PACKAGES = (
    "texlive-latex-recommended-doc", "texlive-pictures-doc", "texlive-humanities-doc",
    "r-doc-pdf", "python-reportlab-doc", "auto-multiple-choice-doc-pdf", "docbook-xsl-doc-pdf",
    "why3-doc-pdf",
    # Added for the run-4 demo model: more layouts than LaTeX package manuals (font specimens,
    # music scores, plots, program manuals, drawings).
    "texlive-latex-extra-doc", "texlive-fonts-extra-doc", "texlive-metapost-doc",
    "texlive-pstricks-doc", "texlive-fonts-recommended-doc", "lilypond-doc-pdf", "gnuplot-doc",
    "octave-doc", "maxima-doc", "asymptote-doc", "xfig-doc",
)  # fmt: skip
#: Pages per PDF where a package's default would flood the pool (thousands of PDFs).
TRAIN_PAGES_PER_PDF = {"texlive-latex-extra-doc": 3, "texlive-fonts-extra-doc": 3,
                       "texlive-pstricks-doc": 4}  # fmt: skip
#: Real-page evaluation (test) packages.
EVAL_PACKAGES = ("texlive-science-doc", "gri-pdf-doc")
#: Held-out package on which the shipped threshold tables are measured (neither trained on nor
#: used for the reported real-page evaluation).
CALIB_PACKAGES = ("texlive-publishers-doc",)
MANIFEST = "pages_manifest.json"


class PopplerNotFoundError(DocedgeError):
    """``pdftoppm`` / ``pdfinfo`` (Debian package ``poppler-utils``) are not installed."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PopplerNotFoundError(
            f"{name} not found: install poppler-utils (apt-get install -y poppler-utils)"
        )
    return path


def check_package(pkg: str) -> None:
    if pkg in RESERVED_PACKAGES:
        raise DocedgeError(f"{pkg} is reserved for independent acceptance checks: never use it")


def package_pdfs(pkg: str) -> List[Path]:
    """PDF files (``.pdf`` and ``.pdf.gz``) installed by Debian package ``pkg``, sorted."""
    check_package(pkg)
    try:
        out = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise DocedgeError(f"{pkg}: package not installed (dpkg -L failed: {e})") from e
    paths = [Path(x) for x in out.stdout.splitlines() if re.search(r"\.pdf(\.gz)?$", x, re.I)]
    return sorted(p for p in paths if p.is_file() and not p.is_symlink())


def licences(pkg: str) -> List[str]:
    """Unique ``License:`` values of ``/usr/share/doc/PKG/copyright`` (machine-readable format),
    or the file's first licence-looking line for free-form copyright files."""
    path = Path("/usr/share/doc") / pkg / "copyright"
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    found = sorted({m.strip() for m in re.findall(r"^License:\s*(\S.*)$", text, re.M)})
    if found:
        return found
    lines = [ln.strip() for ln in text.splitlines() if re.search(r"licen[sc]e", ln, re.I)]
    return lines[:3]


class _Unzipped:
    """A readable PDF path (``.pdf.gz`` is decompressed to a temporary file)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.tmp: Optional[Path] = None

    def __enter__(self) -> Path:
        if self.path.suffix == ".gz":
            with tempfile.NamedTemporaryFile(suffix=".pdf", delete=False) as tmp, gzip.open(
                self.path, "rb"
            ) as f:
                shutil.copyfileobj(f, tmp)
            self.tmp = Path(tmp.name)
            return self.tmp
        return self.path

    def __exit__(self, *exc: Any) -> None:
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)


def page_count(pdf: Union[str, Path]) -> int:
    """Number of pages (``pdfinfo``); 0 when poppler cannot read the file."""
    tool = _tool("pdfinfo")
    with _Unzipped(Path(pdf)) as p:
        r = subprocess.run([tool, str(p)], capture_output=True, text=True, errors="replace")
    m = re.search(r"^Pages:\s+(\d+)", r.stdout, re.M)
    return int(m.group(1)) if m else 0


def render_pdf_pages(pdf: Union[str, Path], first: int, last: int, long_side: int = 320,
                     timeout: float = 120.0) -> Dict[int, np.ndarray]:  # fmt: skip
    """Pages ``first..last`` (1-based, inclusive) as BGR uint8, long side ``long_side`` px."""
    tool = _tool("pdftoppm")
    out: Dict[int, np.ndarray] = {}
    with _Unzipped(Path(pdf)) as p, tempfile.TemporaryDirectory() as d:
        cmd = [tool, "-f", str(first), "-l", str(last), "-scale-to", str(long_side), "-png",
               "-aa", "yes", "-aaVector", "yes", str(p), str(Path(d) / "pg")]  # fmt: skip
        try:
            subprocess.run(cmd, capture_output=True, check=False, timeout=timeout)
        except subprocess.TimeoutExpired:
            logger.warning("%s: pdftoppm timed out on pages %d-%d", pdf, first, last)
        for f in sorted(Path(d).glob("pg-*.png")):
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is not None:
                out[int(f.stem.rsplit("-", 1)[1])] = img
    return out


def render_pdf_page(pdf: Union[str, Path], page: int, long_side: int = 320) -> np.ndarray:
    """One page (1-based) as BGR uint8; raises :class:`DocedgeError` when it cannot render."""
    pages = render_pdf_pages(pdf, page, page, long_side)
    if page not in pages:
        raise DocedgeError(f"{pdf}: page {page} could not be rendered")
    return pages[page]


def is_blank(img: np.ndarray, min_ink: float = 0.01) -> bool:
    """True for (nearly) empty pages: under ``min_ink`` of the pixels differ from the paper."""
    g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    paper = float(np.median(g))
    return float((np.abs(g.astype(np.float32) - paper) > 40).mean()) < min_ink


def choose_pages(n_pages: int, per_pdf: int, rng: np.random.Generator) -> List[Tuple[int, int]]:
    """Page ranges to render: the first page plus one run of ``per_pdf - 1`` consecutive pages
    at a random place (neighbouring pages are the hardest negatives)."""
    if n_pages <= 0 or per_pdf <= 0:
        return []
    if n_pages <= per_pdf:
        return [(1, n_pages)]
    start = int(rng.integers(2, n_pages - per_pdf + 3))
    return [(1, 1), (start, min(n_pages, start + per_pdf - 2))]


def _render_pdf(pdf: Path, pages_per_pdf: int, long_side: int, seed: int,
                folder: Path, pkg: str) -> List[Dict[str, Any]]:  # fmt: skip
    """Render one PDF's chosen pages into ``folder``; their manifest entries."""
    key = hashlib.sha1(str(pdf).encode()).hexdigest()[:8]
    rng = np.random.default_rng([seed, int(key, 16)])
    n = page_count(pdf)
    entries: List[Dict[str, Any]] = []
    for a, b in choose_pages(n, pages_per_pdf, rng):
        for k, img in sorted(render_pdf_pages(pdf, a, b, long_side).items()):
            if is_blank(img):
                continue
            stem = re.sub(r"[^A-Za-z0-9]+", "-", pdf.name.split(".pdf")[0])[:40]
            name = f"{stem}-{key}_p{k:04d}.png"
            cv2.imwrite(str(folder / name), img)
            entries.append({"file": f"{pkg}/{name}", "package": pkg, "pdf": str(pdf),
                            "page": k, "pdf_pages": n})  # fmt: skip
    return entries


def build_page_set(
    packages: Sequence[str],
    out: Union[str, Path],
    pages_per_pdf: int = 8,
    long_side: int = 320,
    seed: int = 0,
    max_pdfs: Optional[int] = None,
    per_package: Optional[Dict[str, int]] = None,
    workers: int = 1,
    keep_other_packages: bool = False,
) -> Dict[str, Any]:
    """Render pages of every PDF of ``packages`` into ``out/<package>/<pdf stem>_p<page>.png``
    (blank pages skipped) and write ``out/pages_manifest.json``: one entry per page (file,
    package, pdf, page) and per package (licences, PDFs, pages). ``per_package`` overrides
    ``pages_per_pdf`` by package; ``workers`` PDFs render at once (poppler processes).
    Deterministic for a seed and the same installed package versions: each PDF's pages depend
    only on ``(seed, its path)``, so building packages one call at a time with
    ``keep_other_packages`` (an existing manifest's other packages are kept) gives the same set
    as one call with all of them."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    pages: List[Dict[str, Any]] = []
    sources: Dict[str, Any] = {}
    if keep_other_packages and (root / MANIFEST).is_file():
        old = load_manifest(root)
        if (old.get("long_side"), old.get("seed")) != (long_side, seed):
            raise DocedgeError(f"{root}: existing set has long side {old.get('long_side')} and "
                               f"seed {old.get('seed')}, not {long_side} and {seed}")  # fmt: skip
        sources = {k: v for k, v in old["sources"].items() if k not in packages}
        pages = [e for e in old["pages"] if e["package"] not in packages]
    for pkg in packages:
        check_package(pkg)
        pdfs = package_pdfs(pkg)[:max_pdfs]
        per_pdf = (per_package or {}).get(pkg, pages_per_pdf)
        folder = root / pkg
        if folder.is_dir():  # a rebuild replaces the package's pages, never mixes two builds
            shutil.rmtree(folder)
        folder.mkdir()
        job = functools.partial(_render_pdf, pages_per_pdf=per_pdf, long_side=long_side,
                                seed=seed, folder=folder, pkg=pkg)  # fmt: skip
        with ThreadPoolExecutor(max(1, workers)) as pool:
            found = list(pool.map(job, pdfs))
        n_written = sum(len(x) for x in found)
        n_pdfs = sum(1 for x in found if x)
        for x in found:
            pages.extend(x)
        sources[pkg] = {"licences": licences(pkg), "pdfs": n_pdfs, "pages": n_written,
                        "pages_per_pdf": per_pdf,
                        "copyright": f"/usr/share/doc/{pkg}/copyright"}  # fmt: skip
        logger.info("%s: %d pages from %d PDFs", pkg, n_written, n_pdfs)
    manifest = {"kind": "real-pdf-pages", "renderer": "pdftoppm", "long_side": long_side,
                "pages_per_pdf": pages_per_pdf, "seed": seed, "sources": sources,
                "pages": pages}  # fmt: skip
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, root / MANIFEST)
    return manifest


def load_manifest(root: Union[str, Path]) -> Dict[str, Any]:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise DocedgeError(f"{path} not found: build the page set first (samples/build_demo_data.py)")
    data: Dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def check_disjoint(a: Iterable[str], b: Iterable[str]) -> None:
    """Raise when two package lists share a package, or either uses a reserved one."""
    a, b = set(a), set(b)
    for p in a | b:
        check_package(p)
    if a & b:
        raise DocedgeError(f"packages in both training and evaluation: {sorted(a & b)}")
