"""The shipped demo model on real documents (issue 13), through ``docedge export``'s own bundle:
pages of the EVAL packages' PDFs (never trained on, never used to choose a checkpoint or an INT8
option), registered as clean renders and queried with camera-like captures.

Needs poppler and the EVAL package ``texlive-science-doc`` (``samples/build_demo_data.py
--install``); skips naming what is missing. The full evaluation (150 pages, the thumbnail
baseline, the CALIB package, synthetic types) is ``samples/evaluate_real_documents.py``.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

pytestmark = pytest.mark.slow

PACKAGE = "texlive-science-doc"


def _installed(pkg: str) -> bool:
    try:
        return subprocess.run(["dpkg", "-s", pkg], capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.fixture(scope="module")
def real_pages(tmp_path_factory):
    """100 registered pages, 2 mixed captures each, 30 unknown pages (their captures)."""
    if shutil.which("pdftoppm") is None:
        pytest.skip("poppler-utils not installed")
    if not _installed(PACKAGE):
        pytest.skip(f"{PACKAGE} not installed (samples/build_demo_data.py --install)")
    from docedge.calibration.real_eval import build_eval_set
    from docedge.synth.real_pages import build_page_set

    root = tmp_path_factory.mktemp("real_pages")
    build_page_set([PACKAGE], root, pages_per_pdf=3, long_side=640, seed=1, max_pdfs=70,
                   workers=2)  # fmt: skip
    return build_eval_set(root, [PACKAGE], 100, 30, captures=2, seed=0)


@pytest.fixture(scope="module")
def embeddings(demo_release, real_pages):
    from docedge.runtime.embedder import Embedder

    out = {}
    for prec in ("fp32", "int8"):
        with Embedder(demo_release, precision=prec, batch_size=64) as emb:
            out[prec] = {k: emb.embed(getattr(real_pages, k)) for k in ("register", "queries", "unknown")}
    return out


def test_the_demo_model_finds_real_pages_among_100_registered(embeddings, real_pages):
    from docedge.calibration.real_eval import metrics

    e = embeddings["fp32"]
    top1 = metrics(e["queries"], e["register"], real_pages.query_labels)["top1"]
    assert top1 >= 0.90, f"real-page top-1 {top1:.3f}"


def test_int8_makes_fp32s_decisions_on_real_page_captures(demo_release, embeddings):
    from docedge.calibration.real_eval import decisions
    from docedge.export.verify import cosine_rows
    from docedge.runtime.bundle import load_bundle
    from docedge.runtime.thresholds import bundle_operating_point

    bundle = load_bundle(demo_release)
    a, b = embeddings["fp32"], embeddings["int8"]
    cos = np.concatenate([cosine_rows(a[k], b[k]) for k in a])
    assert cos.mean() >= 0.99, f"INT8 cosine mean {cos.mean():.4f}"
    for fpr in (1e-3, 1e-2):
        t = bundle_operating_point(bundle, "fp32", fpr).threshold  # the shipped fp32 table
        agree = float((decisions(a, t) == decisions(b, t)).mean())
        assert agree >= 0.97, f"INT8 vs fp32 decisions agree {agree:.3f} at FPR {fpr:g} (thr {t:.4f})"
