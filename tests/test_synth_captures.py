"""The capture simulator: each condition changes the image when enabled and never when disabled,
the result says which conditions were applied, captures are seeded; a register folder becomes a
labelled evaluation set (DocClassifier's label rule, files marked synthetic, a manifest), and a
corrupt register image is skipped with a clear message instead of crashing the run."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from docedge.runtime.errors import DocedgeError
from docedge.synth.captures import (
    CONDITIONS,
    CaptureConditions,
    capture,
    simulate_capture,
)
from docedge.synth.dataset import MANIFEST, write_captures, write_documents
from docedge.synth.documents import DocumentType, render


@pytest.fixture(scope="module")
def doc() -> np.ndarray:
    return render(DocumentType.from_id(21), 0)


@pytest.mark.parametrize("name", CONDITIONS)
def test_an_enabled_condition_changes_the_image_whenever_it_is_applied(doc, name):
    fired = 0
    for k in range(30):  # stochastic conditions fire with a probability
        res = simulate_capture(doc, np.random.default_rng(k), 1.0, CaptureConditions.only(name))
        assert set(res.applied) <= {name}
        assert res.image.shape == doc.shape and res.image.dtype == np.uint8
        if res.applied:
            fired += 1
            assert not np.array_equal(res.image, doc)
        else:
            assert np.array_equal(res.image, doc)
    assert fired > 0, f"{name} never fired in 30 captures"


@pytest.mark.parametrize("name", CONDITIONS)
def test_a_disabled_condition_is_never_applied(doc, name):
    off = CaptureConditions(**{name: 0.0})
    for k in range(15):
        assert name not in simulate_capture(doc, np.random.default_rng(k), 1.0, off).applied


def test_nothing_enabled_or_zero_strength_returns_the_image_unchanged(doc):
    for res in (
        simulate_capture(doc, np.random.default_rng(0), 1.0, CaptureConditions.only()),
        simulate_capture(doc, np.random.default_rng(0), 0.0),
    ):
        assert res.applied == [] and np.array_equal(res.image, doc)


def test_corner_errors_show_background_or_cut_the_edges(doc):
    res = simulate_capture(doc, np.random.default_rng(3), 1.0, CaptureConditions.only("crop"))
    assert res.applied == ["crop"]
    # The document's border rows/columns move: at least one image edge no longer matches.
    edges = lambda im: [im[0], im[-1], im[:, 0], im[:, -1]]  # noqa: E731
    assert any(not np.array_equal(a, b) for a, b in zip(edges(res.image), edges(doc)))


def test_stronger_captures_move_the_image_further(doc):
    def mean_change(strength: float) -> float:
        return float(np.mean([
            np.abs(capture(doc, np.random.default_rng(k), strength).astype(np.float32) - doc).mean()
            for k in range(12)
        ]))  # fmt: skip

    assert 0 < mean_change(0.2) < mean_change(1.0)


def test_captures_are_seeded(doc):
    a = simulate_capture(doc, np.random.default_rng(9), 0.7)
    b = simulate_capture(doc, np.random.default_rng(9), 0.7)
    c = simulate_capture(doc, np.random.default_rng(10), 0.7)
    assert a.image.tobytes() == b.image.tobytes() and a.applied == b.applied
    assert not np.array_equal(a.image, c.image)


def test_bad_arguments_are_refused(doc):
    with pytest.raises(ValueError, match="unknown capture conditions"):
        CaptureConditions.only("fog")
    with pytest.raises(ValueError, match=">= 0"):
        CaptureConditions(blur=-1)
    with pytest.raises(ValueError, match=">= 0"):
        simulate_capture(doc, np.random.default_rng(0), -0.5)
    with pytest.raises(ValueError, match="uint8"):
        simulate_capture(doc.astype(np.float32), np.random.default_rng(0))


@pytest.fixture()
def register(tmp_path):
    """A register folder: a nested type folder with 2 documents, a root file, a corrupt file."""
    reg = tmp_path / "register"
    write_documents(reg / "cards" / "eu", types=1, per_type=2, first_type_id=3)
    write_documents(reg, types=1, per_type=1, first_type_id=4)
    (reg / "cards" / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    return reg


def test_register_images_become_a_labelled_set_and_corrupt_ones_are_skipped(
    register, tmp_path, caplog
):
    name3, name4 = DocumentType.from_id(3).name, DocumentType.from_id(4).name
    with caplog.at_level(logging.WARNING):
        rep = write_captures(register, tmp_path / "eval", per_image=3, seed=1)
    want = sorted([f"cards_eu_{name3}_{name3}_000_synthetic", f"cards_eu_{name3}_{name3}_001_synthetic",
                   f"{name4}_{name4}_000_synthetic"])  # fmt: skip
    assert sorted(rep.labels) == want and rep.files == 9
    for label in want:
        files = sorted((tmp_path / "eval" / label).iterdir())
        assert len(files) == 3 and all("_synthetic" in f.name for f in files)
    broken = str(register / "cards" / "broken.jpg")
    assert list(rep.skipped) == [broken] and "not a decodable image" in rep.skipped[broken]
    assert "broken.jpg" in caplog.text
    manifest = json.loads((tmp_path / "eval" / MANIFEST).read_text())
    assert manifest["synthetic"] is True and manifest["kind"] == "captures"
    assert manifest["files"] == 9 and manifest["parameters"]["skipped"] == rep.skipped


def test_captures_are_reproducible_and_independent_of_other_files(register, tmp_path):
    write_captures(register, tmp_path / "a", per_image=1, seed=5)
    write_documents(register / "zz", types=1, per_type=1, first_type_id=9)  # a new image
    write_captures(register, tmp_path / "b", per_image=1, seed=5)
    for f in (tmp_path / "a").rglob("*.jpg"):
        assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes()


def test_colliding_labels_are_not_merged(tmp_path):
    reg = tmp_path / "reg"
    img = render(DocumentType.from_id(1), 0)
    import cv2

    (reg / "a").mkdir(parents=True)
    (reg / "a_b").mkdir()
    cv2.imwrite(str(reg / "a" / "b_c.png"), img)
    cv2.imwrite(str(reg / "a_b" / "c.png"), img)
    rep = write_captures(reg, tmp_path / "out", per_image=1)
    assert rep.labels == ["a_b_c"] and rep.files == 1
    assert "already taken" in rep.skipped[str(reg / "a_b" / "c.png")]


def test_missing_or_empty_register_is_an_error(tmp_path):
    with pytest.raises(DocedgeError, match="not found"):
        write_captures(tmp_path / "nope", tmp_path / "out", per_image=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DocedgeError, match=r"no \.jpg"):
        write_captures(tmp_path / "empty", tmp_path / "out", per_image=1)


def test_synth_captures_command_reports_skipped_images(register, tmp_path, capsys):
    from docedge.tools.cli import main

    rc = main(["synth", "captures", str(register), "--per-image", "2", "--blur", "0",
               "--out", str(tmp_path / "caps")])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 1  # the set is incomplete
    assert "wrote 6 synthetic captures of 3 labels" in out
    assert "broken.jpg: not a decodable image" in out
    rc = main(["synth", "captures", str(register), "--per-image", "1", "--json",
               "--out", str(tmp_path / "caps2")])  # fmt: skip
    rep = json.loads(capsys.readouterr().out)
    assert rc == 1 and rep["ok"] is False and rep["files"] == 3 and len(rep["skipped"]) == 1
    manifest = json.loads((tmp_path / "caps" / MANIFEST).read_text())
    assert manifest["parameters"]["conditions"]["blur"] == 0.0
