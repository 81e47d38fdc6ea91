"""Synthetic document types: a type id fixes a layout, an instance seed fills it in; the same
arguments give identical bytes; types are distinct and cover every family; sets on disk have a
folder per type, the asked-for counts, and are marked synthetic."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from docedge.synth.dataset import MANIFEST, write_documents
from docedge.synth.documents import (
    ASPECT,
    FAMILIES,
    GENERATOR_VERSION,
    DocumentType,
    render,
    type_name,
)


def small(img: np.ndarray) -> np.ndarray:
    """What the network sees: 128x128 float."""
    return cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA).astype(np.float32)


def test_a_type_is_a_pure_function_of_its_id_and_seed():
    assert DocumentType.from_id(123) == DocumentType.from_id(123)
    assert DocumentType.from_id(123) != DocumentType.from_id(124)
    assert DocumentType.from_id(123, seed=1) != DocumentType.from_id(123, seed=0)


def test_same_type_and_instance_give_identical_bytes():
    t = DocumentType.from_id(31)
    a, b = render(t, 5), render(DocumentType.from_id(31), 5)
    assert a.dtype == np.uint8 and a.shape[2] == 3
    assert a.tobytes() == b.tobytes()


def test_instances_of_a_type_differ_in_content_but_keep_the_layout():
    t = DocumentType.from_id(64)
    a, b = small(render(t, 0)), small(render(t, 1))
    within = float(np.abs(a - b).mean())
    between = [float(np.abs(a - small(render(DocumentType.from_id(k), 0))).mean())
               for k in range(65, 75) if DocumentType.from_id(k).family == t.family]  # fmt: skip
    assert within > 0
    assert not between or within < min(between)


def test_hundreds_of_types_are_distinct_and_cover_every_family():
    types = [DocumentType.from_id(i) for i in range(400)]
    assert {t.family for t in types} == set(FAMILIES)
    assert len({t.name for t in types}) == 400
    # Distinct layouts, not just distinct names: renders of different types all differ.
    thumbs = [small(render(t, 0)) for t in types[:40]]
    for i in range(len(thumbs)):
        for j in range(i + 1, len(thumbs)):
            assert np.abs(thumbs[i] - thumbs[j]).mean() > 1.0, (i, j)


def test_size_follows_long_side_and_family_aspect():
    for tid in range(60):
        t = DocumentType.from_id(tid)
        img = render(t, 0, long_side=320)
        h, w = img.shape[:2]
        assert max(h, w) == 320
        assert w / h == pytest.approx(ASPECT[t.family], rel=0.08)


def test_type_name_is_the_folder_name():
    t = DocumentType.from_id(42)
    assert type_name(42) == t.name == f"t00042_{t.family}"
    assert type_name(42, seed=3) == DocumentType.from_id(42, seed=3).name


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError):
        DocumentType.from_id(-1)
    with pytest.raises(ValueError):
        render(DocumentType.from_id(1), 0, long_side=8)


def test_document_set_has_a_folder_per_type_with_the_asked_counts(tmp_path):
    rep = write_documents(tmp_path / "set", types=4, per_type=3, first_type_id=10, seed=2)
    root = tmp_path / "set"
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    assert [p.name for p in folders] == sorted(type_name(i, seed=2) for i in range(10, 14))
    assert rep.labels == [type_name(i, seed=2) for i in range(10, 14)] and rep.files == 12
    for folder in folders:
        files = sorted(folder.iterdir())
        assert len(files) == 3
        assert all(f.name.startswith(folder.name) and "_synthetic" in f.name for f in files)
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["synthetic"] is True and manifest["kind"] == "documents"
    assert manifest["generator"] == GENERATOR_VERSION and manifest["files"] == 12
    assert manifest["parameters"]["seed"] == 2 and manifest["parameters"]["first_type_id"] == 10
    assert manifest["parameters"]["overlaps_demo_training_ids"] is False


def test_document_sets_are_reproducible_byte_for_byte(tmp_path):
    write_documents(tmp_path / "a", types=2, per_type=2, first_type_id=5, capture_strength=0.8)
    write_documents(tmp_path / "b", types=2, per_type=2, first_type_id=5, capture_strength=0.8)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.jpg"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.jpg"))
    assert files_a == files_b and len(files_a) == 4
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_synth_documents_command(tmp_path, capsys):
    from docedge.tools.cli import main

    out = tmp_path / "docs"
    assert main(["synth", "documents", "--types", "3", "--per-type", "2", "--out", str(out),
                 "--first-type-id", "998", "--json"]) == 0  # fmt: skip
    rep = json.loads(capsys.readouterr().out)
    assert rep["ok"] and rep["files"] == 6 and rep["labels"] == 3
    assert json.loads((out / MANIFEST).read_text())["parameters"]["overlaps_demo_training_ids"]
    assert main(["synth", "documents", "--types", "1", "--out", str(tmp_path / "h")]) == 0
    assert "wrote 1 synthetic images of 1 types" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["synth", "documents", "--types", "0", "--out", str(tmp_path / "z")])
