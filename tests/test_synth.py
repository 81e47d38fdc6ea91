"""Synthetic documents are deterministic and distinct per type; captures apply each condition;
sets on disk are labelled (folder per label) and marked synthetic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from docedge.runtime.register import register_label, scan_register
from docedge.synth.captures import CONDITIONS, CaptureConditions, simulate_capture
from docedge.synth.dataset import write_captures, write_documents
from docedge.synth.documents import FAMILIES, DocumentType, render


def test_same_type_and_instance_render_identical_bytes():
    a = render(DocumentType.from_id(7), 3)
    b = render(DocumentType.from_id(7), 3)
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
    assert np.array_equal(a, b)


def test_instances_of_a_type_differ_less_than_types_differ():
    def diff(x, y):
        import cv2

        x, y = (cv2.resize(i, (128, 128)).astype(np.float32) for i in (x, y))
        return float(np.abs(x - y).mean())

    t = DocumentType.from_id(11)
    same_type = diff(render(t, 0), render(t, 1))
    other = [diff(render(t, 0), render(DocumentType.from_id(k), 0)) for k in range(12, 20)]
    assert 0 < same_type < min(other)


def test_many_distinct_types_cover_every_family():
    families = {DocumentType.from_id(i).family for i in range(300)}
    assert families == set(FAMILIES)
    assert len({DocumentType.from_id(i).name for i in range(300)}) == 300


def test_each_capture_condition_changes_the_image_only_when_enabled():
    img = render(DocumentType.from_id(3), 0)
    for name in CONDITIONS:
        hits = 0
        for k in range(40):  # stochastic conditions fire with a probability
            res = simulate_capture(img, np.random.default_rng(k), 1.0, CaptureConditions.only(name))
            assert set(res.applied) <= {name}
            if name in res.applied:
                hits += 1
                assert not np.array_equal(res.image, img), name
        assert hits > 0, f"{name} never applied"
    off = simulate_capture(img, np.random.default_rng(0), 1.0, CaptureConditions.only())
    assert off.applied == [] and np.array_equal(off.image, img)


def test_capture_is_seeded():
    img = render(DocumentType.from_id(5), 1)
    a = simulate_capture(img, np.random.default_rng(9)).image
    b = simulate_capture(img, np.random.default_rng(9)).image
    assert np.array_equal(a, b) and a.shape == img.shape


def test_unknown_condition_is_refused():
    with pytest.raises(ValueError, match="unknown capture conditions"):
        CaptureConditions.only("fog")


def test_documents_on_disk_are_labelled_and_marked_synthetic(tmp_path):
    rep = write_documents(tmp_path / "docs", types=3, per_type=2, first_type_id=40)
    folders = sorted(p.name for p in (tmp_path / "docs").iterdir() if p.is_dir())
    assert folders == sorted(rep.labels) and len(folders) == 3
    files = sorted((tmp_path / "docs").rglob("*.jpg"))
    assert len(files) == 6 and all("_synthetic" in f.name for f in files)
    manifest = json.loads((tmp_path / "docs" / "synth_manifest.json").read_text())
    assert manifest["synthetic"] is True and manifest["files"] == 6


def test_captures_follow_the_register_label_rule_and_skip_corrupt_images(tmp_path):
    reg = tmp_path / "register"
    write_documents(reg / "passport", types=1, per_type=1, first_type_id=1)
    (reg / "broken.png").write_bytes(b"not a png")
    rep = write_captures(reg, tmp_path / "caps", per_image=2)
    assert str(reg / "broken.png") in rep.skipped
    (label,) = rep.labels
    assert label.startswith("passport_t00001_") and label.endswith("_000_synthetic")
    assert len(list((tmp_path / "caps" / label).glob("*_synthetic.jpg"))) == 2


def test_register_label_rule(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert register_label(tmp_path, tmp_path / "a" / "b" / "front.JPG") == "a_b_front"
    assert register_label(tmp_path, tmp_path / "root.png") == "root"
    (tmp_path / "x.png").write_bytes(b"")
    (tmp_path / "a" / "y.jpeg").write_bytes(b"")
    (tmp_path / "a" / "notes.txt").write_text("")
    assert [lbl for lbl, _ in scan_register(tmp_path)] == ["a_y", "x"]


def test_synth_cli_documents_and_captures(tmp_path, capsys):
    import json

    from docedge.tools.cli import main

    assert main(["synth", "documents", "--types", "2", "--per-type", "1", "--out",
                 str(tmp_path / "reg"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files"] == 2
    assert main(["synth", "captures", str(tmp_path / "reg"), "--per-image", "2", "--glare", "0",
                 "--out", str(tmp_path / "caps"), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["files"] == 4 and rep["labels"] == 2
