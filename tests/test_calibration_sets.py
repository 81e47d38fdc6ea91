"""Synthetic calibration sets (docedge.calibration.pipeline.SyntheticSet): seeded, and with
real-font text pages beside the document types when asked."""

from __future__ import annotations

import cv2

from docedge.calibration.pipeline import SyntheticSet
from docedge.runtime.preprocess import list_images


def test_pages_are_written_beside_the_types_and_are_seeded(tmp_path):
    s = SyntheticSet(types=2, per_type=1, first_type_id=5000, pages=3)
    a, b = s.write(tmp_path / "a"), s.write(tmp_path / "b")
    pages = sorted((a / "pages").glob("*.jpg"))
    assert [p.name for p in pages] == ["page060000.jpg", "page060001.jpg", "page060002.jpg"]
    assert len(list_images(a)) == 2 + 3
    for p in pages:
        img = cv2.imread(str(p))
        assert img is not None and max(img.shape[:2]) >= 480
        assert p.read_bytes() == (b / "pages" / p.name).read_bytes()


def test_without_fonts_the_pages_are_left_out_with_a_warning(tmp_path, monkeypatch, caplog):
    from docedge.synth import layouts
    from docedge.synth.fonts import FontsNotFoundError

    def no_fonts(*a, **k):
        raise FontsNotFoundError("no fonts: apt install fonts-dejavu")

    monkeypatch.setattr(layouts, "render_page", no_fonts)
    out = SyntheticSet(types=1, per_type=1, first_type_id=5000, pages=2).write(tmp_path / "c")
    assert list((out / "pages").glob("*.jpg")) == []
    assert len(list_images(out)) == 1
    assert "without text pages" in caplog.text
