"""Register folders and loose images become galleries (DocClassifier's label rule, duplicates
kept and reported, corrupt images isolated), incrementally (nothing re-embedded that did not
change), and galleries are re-embedded from their recorded sources. A fake embedder keeps
these tests fast; tests/test_classifier.py repeats the essentials with a real model."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from gallery_helpers import FakeEmbedder, write_image

from docedge.runtime.errors import FingerprintMismatchError, GalleryError
from docedge.runtime.gallery import Gallery
from docedge.runtime.gallery_sync import add_images, rebuild, sync_register
from docedge.runtime.register import register_label


@pytest.fixture()
def register(tmp_path):
    root = tmp_path / "register"
    write_image(root / "passport" / "front.png", 1)
    write_image(root / "passport" / "damaged" / "scan.JPG", 2)
    write_image(root / "id" / "card.jpeg", 3)
    write_image(root / "visa.png", 4)
    write_image(root / "id_card.png", 5)  # same label as id/card.jpeg
    (root / "notes.txt").write_text("not an image")
    write_image(root / "ignored.bmp", 6)
    (root / "broken.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    return root


def test_label_rule_matches_docclassifier(tmp_path):
    root = tmp_path / "r"
    assert register_label(root, root / "a" / "b" / "c.png") == "a_b_c"
    assert register_label(root, root / "x.jpg") == "x"
    assert register_label(root, root / "a" / "x.y.jpeg") == "a_x.y"


def test_build_labels_duplicates_and_corrupt_images(tmp_path, register):
    emb = FakeEmbedder()
    rep = sync_register(tmp_path / "g.gal", emb, register)
    g = Gallery.open(tmp_path / "g.gal", verify=True)
    assert sorted(g.row_labels) == sorted(["passport_front", "passport_damaged_scan", "id_card",
                                           "id_card", "visa"])  # fmt: skip
    assert rep.duplicates == {"id_card": 2}  # kept as two exemplars, and reported
    assert list(rep.failed) == [str(register / "broken.jpg")] and len(rep.added) == 5
    e = next(e for e in g.entries if e.label == "visa")
    assert e.source == str((register / "visa.png").resolve()) and len(e.sha256) == 64
    assert e.meta["origin"].startswith("register:")


def test_sync_is_incremental(tmp_path, register):
    emb = FakeEmbedder()
    gal = tmp_path / "g.gal"
    sync_register(gal, emb, register)
    ids_before = {e.label: e.id for e in Gallery.open(gal).entries if e.label != "id_card"}
    emb.embedded.clear()
    again = sync_register(gal, emb, register)
    assert emb.embedded == [] and again.added == [] and len(again.unchanged) == 5

    write_image(register / "visa.png", 40)  # changed content
    (register / "passport" / "front.png").unlink()  # removed
    shutil.move(register / "id_card.png", register / "id_card2.png")  # renamed: same content
    shutil.copy(register / "passport" / "damaged" / "scan.JPG", register / "copy.jpg")  # copied
    write_image(register / "new" / "doc.png", 41)  # new
    rep = sync_register(gal, emb, register)
    assert sorted(emb.embedded) == sorted([str(register / "visa.png"),
                                           str(register / "new" / "doc.png")])  # fmt: skip
    assert rep.changed == [str(register / "visa.png")]
    assert sorted(rep.removed) == sorted([str((register / "passport" / "front.png").resolve()),
                                          str((register / "id_card.png").resolve())])  # fmt: skip
    assert sorted(rep.reused) == sorted(
        [str(register / "id_card2.png"), str(register / "copy.jpg")]
    )
    g = Gallery.open(gal, verify=True)
    assert sorted(g.row_labels) == sorted(["passport_damaged_scan", "id_card", "visa",
                                           "id_card2", "copy", "new_doc"])  # fmt: skip
    # untouched entries keep their ids; the reused embedding is the identical file's
    assert {e.label: e.id for e in g.entries}["passport_damaged_scan"] == \
        ids_before["passport_damaged_scan"]  # fmt: skip
    rows = {e.label: e.row for e in g.entries}
    np.testing.assert_array_equal(g.embeddings[rows["copy"]],
                                  g.embeddings[rows["passport_damaged_scan"]])  # fmt: skip


def test_entries_from_elsewhere_survive_a_sync(tmp_path, register):
    emb = FakeEmbedder()
    gal = tmp_path / "g.gal"
    extra = write_image(tmp_path / "loose" / "passport_photo.png", 9)
    add_images(gal, emb, [extra], labels=["passport/photo"])
    sync_register(gal, emb, register)
    shutil.rmtree(register)
    register.mkdir()
    rep = sync_register(gal, emb, register)
    assert len(rep.removed) == 5
    g = Gallery.open(gal)
    assert g.row_labels == ["passport/photo"] and g.row_parents == ["passport"]


def test_add_files_and_folders(tmp_path, register):
    emb = FakeEmbedder()
    gal = tmp_path / "g.gal"
    rep = add_images(gal, emb, [register / "passport", register / "visa.png"])
    assert sorted(Gallery.open(gal).row_labels) == ["damaged_scan", "front", "visa"]
    rep = add_images(gal, emb, [register / "visa.png"], labels=["visa"])
    assert rep.duplicates == {"visa": 2}
    with pytest.raises(GalleryError, match="labels for"):
        add_images(gal, emb, [register / "visa.png"], labels=["a", "b"])
    rep = add_images(gal, emb, [register / "broken.jpg", tmp_path / "missing.png"])
    assert len(rep.failed) == 2 and rep.added == []


def test_another_model_is_refused_and_rebuild_re_embeds(tmp_path, register):
    gal = tmp_path / "g.gal"
    sync_register(gal, FakeEmbedder(), register)
    before = Gallery.open(gal)
    new_model = FakeEmbedder(model="n")
    with pytest.raises(FingerprintMismatchError, match="model hash"):
        sync_register(gal, new_model, register)
    rep = rebuild(gal, new_model)
    assert len(rep.added) == 5 and not rep.failed
    g = Gallery.open(gal, verify=True, expect_fingerprint=new_model.bundle.fingerprint("fp32"))
    assert g.ids == before.ids and g.row_labels == before.row_labels
    assert not np.allclose(np.asarray(g.embeddings, np.float32),
                           np.asarray(before.embeddings, np.float32), atol=1e-2)  # fmt: skip
    assert sync_register(gal, new_model, register).added == []  # in sync with the new model


def test_rebuild_refuses_when_sources_are_gone_unless_told(tmp_path, register):
    gal = tmp_path / "g.gal"
    sync_register(gal, FakeEmbedder(), register)
    (register / "visa.png").unlink()
    write_image(register / "id_card.png", 77)  # changed since registration
    other = FakeEmbedder(precision="fp16")
    with pytest.raises(GalleryError, match="2 of 5 entries cannot be re-embedded"):
        rebuild(gal, other)
    assert Gallery.open(gal).fingerprint["precision"] == "fp32"  # untouched
    rep = rebuild(gal, other, out_path=tmp_path / "new.gal", drop_missing=True)
    assert len(rep.added) == 3 and len(rep.failed) == 2
    assert len(Gallery.open(tmp_path / "new.gal", verify=True)) == 3
    assert len(Gallery.open(gal)) == 5  # --out leaves the original alone
