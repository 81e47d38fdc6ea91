"""Text pages in real fonts, photographed captures, real PDF pages and the training mix:
seeded generators give identical bytes, missing fonts or poppler give clear errors, the PDF
renderer reads a PDF made here, reserved packages are refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from docedge.runtime.errors import DocedgeError
from docedge.synth import fonts as fonts_mod
from docedge.synth.fonts import FontsNotFoundError, find_fonts

HAVE_FONTS = bool(find_fonts(require=False))
HAVE_POPPLER = shutil.which("pdftoppm") is not None and shutil.which("pdfinfo") is not None
needs_fonts = pytest.mark.skipif(
    not HAVE_FONTS, reason="no system fonts (apt-get install fonts-dejavu fonts-liberation)"
)
needs_poppler = pytest.mark.skipif(not HAVE_POPPLER, reason="poppler-utils not installed")


def test_no_fonts_is_a_clear_error(tmp_path):
    with pytest.raises(FontsNotFoundError, match="fonts-dejavu"):
        find_fonts([tmp_path])
    assert find_fonts([tmp_path], require=False) == []


def test_fonts_are_found_in_a_folder_sorted_and_filtered(tmp_path):
    src = find_fonts(require=False)
    if not src:
        pytest.skip("no system fonts to copy")
    (tmp_path / "b").mkdir()
    shutil.copy(src[0], tmp_path / "b" / "DejaVuSans-Test.ttf")
    shutil.copy(src[0], tmp_path / "Liberation-Test.ttf")
    (tmp_path / "NotoColorEmoji.ttf").write_bytes(b"x")  # filtered out by name
    (tmp_path / "DejaVu-readme.txt").write_text("x")
    got = find_fonts([tmp_path])
    assert [p.name for p in got] == ["DejaVuSans-Test.ttf", "Liberation-Test.ttf"]
    assert fonts_mod.load_font(got[0], 12).getlength("abc") > 0


@needs_fonts
def test_pages_are_deterministic_and_differ():
    from docedge.synth.layouts import KINDS, render_page

    for i, kind in enumerate(KINDS):
        a = render_page(10 + i, kind=kind)
        b = render_page(10 + i, kind=kind)
        assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
        assert max(a.shape[:2]) == 320
        assert a.tobytes() == b.tobytes(), kind
        assert a.std() > 5, f"{kind} page is blank"
    x, y = render_page(1), render_page(2)
    assert x.shape != y.shape or np.abs(x.astype(int) - y.astype(int)).mean() > 1


@needs_fonts
def test_page_arguments_are_checked():
    from docedge.synth.layouts import render_page

    with pytest.raises(ValueError):
        render_page(-1)
    with pytest.raises(ValueError, match="kind"):
        render_page(1, kind="poster")
    with pytest.raises(ValueError):
        render_page(1, long_side=10)


def _doc() -> np.ndarray:
    img = np.full((200, 150, 3), 245, np.uint8)
    for y in range(20, 180, 8):
        cv2.line(img, (15, y), (135, y), (30, 30, 30), 2)
    return img


def test_photograph_is_deterministic_same_size_and_changes_the_image():
    from docedge.synth.backgrounds import BACKGROUNDS, capture_mix, desk, photograph

    img = _doc()
    a = photograph(img, np.random.default_rng(3), 1.0, hand=1.0, partial=1.0)
    b = photograph(img, np.random.default_rng(3), 1.0, hand=1.0, partial=1.0)
    assert a.shape == img.shape and a.dtype == np.uint8
    assert a.tobytes() == b.tobytes()
    assert np.abs(a.astype(int) - img.astype(int)).mean() > 3
    for k in BACKGROUNDS:
        d = desk(np.random.default_rng(0), 40, 60, k)
        assert d.shape == (40, 60, 3) and d.dtype == np.uint8
    c = capture_mix(img, np.random.default_rng(1))
    assert c.shape == img.shape
    with pytest.raises(ValueError):
        photograph(img[:, :, 0], np.random.default_rng(0))


def _tiny_pdf(path: Path, pages: int = 3) -> None:
    from PIL import Image, ImageDraw

    ims = []
    for k in range(pages):
        im = Image.new("RGB", (300, 400), "white")
        d = ImageDraw.Draw(im)
        d.rectangle([20, 20 + 30 * k, 280, 60 + 30 * k], fill="black")
        for y in range(120, 380, 12):
            d.line([(20, y), (280 - 20 * k, y)], fill="black", width=3)
        ims.append(im)
    ims[0].save(path, save_all=True, append_images=ims[1:])


@needs_poppler
def test_pdf_pages_render_and_count(tmp_path):
    from docedge.synth.real_pages import is_blank, page_count, render_pdf_page, render_pdf_pages

    pdf = tmp_path / "tiny.pdf"
    _tiny_pdf(pdf)
    assert page_count(pdf) == 3
    pages = render_pdf_pages(pdf, 1, 3, 160)
    assert sorted(pages) == [1, 2, 3]
    for img in pages.values():
        assert img.dtype == np.uint8 and max(img.shape[:2]) == 160 and not is_blank(img)
    assert render_pdf_page(pdf, 2, 160).tobytes() == pages[2].tobytes()
    with pytest.raises(DocedgeError):
        render_pdf_page(pdf, 9, 160)
    assert is_blank(np.full((50, 40, 3), 255, np.uint8))


@needs_poppler
def test_gzipped_pdf_renders(tmp_path):
    import gzip

    from docedge.synth.real_pages import page_count, render_pdf_page

    pdf = tmp_path / "tiny.pdf"
    _tiny_pdf(pdf, 2)
    gz = tmp_path / "tiny.pdf.gz"
    gz.write_bytes(gzip.compress(pdf.read_bytes()))
    assert page_count(gz) == 2
    assert render_pdf_page(gz, 1, 100).shape[2] == 3


@needs_poppler
def test_a_page_set_built_one_package_at_a_time_equals_one_built_at_once(tmp_path, monkeypatch):
    from docedge.synth import real_pages

    pdfs = {}
    for pkg, n in (("a-doc", 3), ("b-doc", 5)):
        (tmp_path / pkg).mkdir()
        pdfs[pkg] = [tmp_path / pkg / f"{pkg}{k}.pdf" for k in range(2)]
        for f in pdfs[pkg]:
            _tiny_pdf(f, n)
    monkeypatch.setattr(real_pages, "package_pdfs", lambda pkg: pdfs[pkg])

    def files(root):
        return {p.relative_to(root): p.read_bytes() for p in root.rglob("*.png")}

    whole = real_pages.build_page_set(["a-doc", "b-doc"], tmp_path / "whole", 3, 120,
                                      per_package={"b-doc": 2}, workers=2)  # fmt: skip
    part = tmp_path / "parts"
    real_pages.build_page_set(["a-doc"], part, 3, 120)
    real_pages.build_page_set(["b-doc"], part, 3, 120, per_package={"b-doc": 2},
                              keep_other_packages=True)  # fmt: skip
    assert files(part) == files(tmp_path / "whole") and files(part)
    assert real_pages.load_manifest(part)["sources"] == whole["sources"]
    assert whole["sources"]["b-doc"]["pages_per_pdf"] == 2
    # a rebuilt package replaces its pages, the other package's are kept
    real_pages.build_page_set(["a-doc"], part, 2, 120, keep_other_packages=True)
    assert {e["package"] for e in real_pages.load_manifest(part)["pages"]} == {"a-doc", "b-doc"}
    assert len(list((part / "a-doc").glob("*.png"))) == 4
    with pytest.raises(DocedgeError, match="long side"):
        real_pages.build_page_set(["a-doc"], part, 3, 160, keep_other_packages=True)


def test_missing_poppler_is_a_clear_error(monkeypatch, tmp_path):
    from docedge.synth import real_pages

    monkeypatch.setattr(real_pages.shutil, "which", lambda name: None)
    with pytest.raises(real_pages.PopplerNotFoundError, match="poppler-utils"):
        real_pages.page_count(tmp_path / "x.pdf")


def test_reserved_and_overlapping_packages_are_refused():
    from docedge.synth.real_pages import (
        EVAL_PACKAGES,
        RESERVED_PACKAGES,
        TRAIN_PACKAGES,
        check_disjoint,
        package_pdfs,
    )

    assert "texlive-latex-base-doc" in RESERVED_PACKAGES
    check_disjoint(TRAIN_PACKAGES, EVAL_PACKAGES)
    assert not set(RESERVED_PACKAGES) & (set(TRAIN_PACKAGES) | set(EVAL_PACKAGES))
    with pytest.raises(DocedgeError, match="reserved"):
        package_pdfs("texlive-latex-base-doc")
    with pytest.raises(DocedgeError, match="both"):
        check_disjoint(["a-doc"], ["a-doc", "b-doc"])


def test_choose_pages_takes_the_first_page_and_a_run():
    from docedge.synth.real_pages import choose_pages

    rng = np.random.default_rng(0)
    assert choose_pages(0, 8, rng) == []
    assert choose_pages(5, 8, rng) == [(1, 5)]
    runs = choose_pages(100, 8, rng)
    assert runs[0] == (1, 1) and runs[1][1] - runs[1][0] == 6 and runs[1][1] <= 100


def _pool(root: Path, n: int, pdfs: int = 1) -> None:
    root.mkdir(parents=True)
    for i in range(n):
        img = _doc()
        cv2.putText(img, str(i), (40, 100), 0, 1.5, (0, 0, 200), 3)
        cv2.imwrite(str(root / f"doc{i % pdfs}-abc_p{i:04d}.png"), img)


def test_training_mix_is_a_pure_function_of_seed_and_step(tmp_path):
    from docedge.synth.mix import MixSpec, TrainingMix, _groups, list_pool

    _pool(tmp_path / "pages", 6)
    _pool(tmp_path / "real", 8, pdfs=2)
    spec = MixSpec(types=2, pages=2, real=4, group=2)
    mix = TrainingMix(spec, tmp_path / "pages", tmp_path / "real")
    A, B, src = mix.batch(0, 5)
    A2, B2, _ = TrainingMix(spec, tmp_path / "pages", tmp_path / "real").batch(0, 5)
    assert len(A) == len(B) == spec.classes == 8
    assert src == ["type"] * 2 + ["page"] * 2 + ["real"] * 4
    assert all(a.tobytes() == b.tobytes() for a, b in zip(A + B, A2 + B2))
    A3, _, _ = mix.batch(0, 6)
    assert any(a.shape != b.shape or a.tobytes() != b.tobytes() for a, b in zip(A, A3))
    assert len(_groups(list_pool(tmp_path / "real"))) == 2
    d = mix.describe()
    assert d["real_n"] == 8 and d["pages_n"] == 6 and d["real"] == 4
    with pytest.raises(ValueError, match="real pages"):
        TrainingMix(spec, tmp_path / "pages", tmp_path / "none")


def test_resample_brings_the_long_side_into_range_and_never_enlarges():
    from docedge.synth.mix import resample

    img = np.random.default_rng(0).integers(0, 255, (800, 600, 3)).astype(np.uint8)
    for seed in range(20):
        out = resample(img, np.random.default_rng(seed), 128, 480)
        assert 127 <= max(out.shape[:2]) <= 481 and out.dtype == np.uint8
    small = img[:100, :80]
    assert resample(small, np.random.default_rng(0), 128, 480).shape == small.shape
    a = resample(img, np.random.default_rng(5))
    assert a.tobytes() == resample(img, np.random.default_rng(5)).tobytes()
