"""A gallery never loses an acknowledged change, never serves corrupt data silently, and refuses
crafted contents (issue 15, §2 and §3). Each case reproduces a defect measured on c7066f8."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from gallery_helpers import FP, FakeEmbedder, unit, write_image

from docedge.runtime.errors import GalleryError
from docedge.runtime.gallery import Gallery, _commit
from docedge.runtime.gallery_sync import rebuild, sync_register


def _flip(path, offset, bit=0):
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_every_flipped_bit_in_the_embedding_area_is_found_before_a_search(tmp_path, dtype):
    path = tmp_path / "g.gal"
    g = Gallery.create(path, FP, dtype=dtype)
    g.add(unit(50), [f"t{i}" for i in range(50)])
    good = path.read_bytes()
    start = path.stat().st_size - g.embeddings.nbytes
    rng = random.Random(0)
    for _ in range(60):
        path.write_bytes(good)
        _flip(path, rng.randrange(start, len(good)), rng.randrange(8))
        opened = Gallery.open(path)  # the default open: header and label table
        with pytest.raises(GalleryError, match="embedding data checksum"):
            opened.check_embeddings()


def test_the_classifier_refuses_a_corrupt_gallery(bundle_copy, tmp_path):
    from docedge.runtime import load_bundle
    from docedge.runtime.classifier import Classifier

    fp = load_bundle(bundle_copy).fingerprint("fp32")
    g = Gallery.create(tmp_path / "g.gal", fp)
    g.add(unit(20), [f"t{i}" for i in range(20)])
    _flip(g.path, g.path.stat().st_size - 7, 3)
    with pytest.raises(GalleryError, match="checksum"):
        Classifier(bundle_copy, g.path, threshold=0.8)


def test_changes_never_re_checksum_corrupt_data(tmp_path):
    path = tmp_path / "g.gal"
    g = Gallery.create(path, FP)
    g.add(unit(10), [f"t{i}" for i in range(10)])
    _flip(path, path.stat().st_size - 100, 5)
    corrupt = path.read_bytes()
    for change in (lambda: Gallery.open(path).add(unit(1, seed=9), ["new"]),
                   lambda: Gallery.open(path).remove(labels=["t0"]),
                   lambda: Gallery.open(path).compact()):  # fmt: skip
        with pytest.raises(GalleryError, match="checksum"):
            change()
        assert path.read_bytes() == corrupt  # still detectably corrupt, never "repaired"


@pytest.mark.parametrize("vectors, labels, problem", [
    (unit(1) * 3, ["x"], "L2-normalized"),
    (np.zeros((1, 256), np.float32), ["x"], "L2-normalized"),
    (np.full((1, 256), np.nan, np.float32), ["x"], "NaN"),
    (unit(1), [""], "non-empty"),
])  # fmt: skip
def test_add_refuses_non_unit_vectors_and_empty_labels(tmp_path, vectors, labels, problem):
    g = Gallery.create(tmp_path / "g.gal", FP)
    with pytest.raises(GalleryError, match=problem):
        g.add(vectors, labels)
    assert len(Gallery.open(g.path)) == 0


def _crafted(tmp_path, ids, labels, parents=None, metas=None, next_id=10):
    """A gallery whose sections have valid checksums but crafted contents."""
    n = len(ids)
    cols = {"id": ids, "label": labels, "parent": parents or [None] * n,
            "source": [None] * n, "sha256": [None] * n, "added": [None] * n,
            "meta": metas or [{}] * n}  # fmt: skip
    meta = {"fingerprint": dict(FP), "created": None, "updated": None, "next_id": next_id}
    path = tmp_path / "crafted.gal"
    _commit(path, meta, cols, [unit(n)], n, 256, "float32")
    return path


@pytest.mark.parametrize("ids, labels, parents, metas, problem", [
    ([1, 1], ["a", "b"], None, None, "duplicate entry ids"),
    (["x", 2], ["a", "b"], None, None, "entry ids"),
    ([1, 2], ["a", 7], None, None, "labels must be non-empty strings"),
    ([1, 2], ["a", ""], None, None, "labels must be non-empty strings"),
    ([1, 2], ["a", "b"], [None, 3], None, "parents"),
    ([1, 2], ["a", "b"], None, [{}, "not an object"], "'meta' values"),
])  # fmt: skip
def test_crafted_label_tables_with_valid_checksums_are_refused(tmp_path, ids, labels, parents,
                                                               metas, problem):  # fmt: skip
    path = _crafted(tmp_path, ids, labels, parents, metas)
    with pytest.raises(GalleryError, match=problem):
        g = Gallery.open(path)
        _ = g.entries  # records are parsed on first use


def test_a_non_unit_vector_that_slipped_in_makes_the_search_raise(bundle_copy, tmp_path):
    """Scores outside [0, 1] are impossible: a norm-3 exemplar must not win with 1.97."""
    from docedge.runtime import load_bundle
    from docedge.runtime.classifier import Classifier

    fp = load_bundle(bundle_copy).fingerprint("fp32")
    v = unit(3)
    v[1] *= 3.0
    cols = {"id": [0, 1, 2], "label": ["a", "b", "c"], "parent": [None] * 3,
            "source": [None] * 3, "sha256": [None] * 3, "added": [None] * 3, "meta": [{}] * 3}
    meta = {"fingerprint": fp, "created": None, "updated": None, "next_id": 3}
    _commit(tmp_path / "g.gal", meta, cols, [v], 3, 256, "float32")
    clf = Classifier(bundle_copy, tmp_path / "g.gal", threshold=0.5)
    with pytest.raises(GalleryError, match="outside"):
        clf.decide(v[1:2] / 3.0)


def test_a_fingerprint_written_by_another_json_encoder_matches(tmp_path):
    compact = dict(FP, preprocess='{"color_order":"BGR","height":128}')
    spaced = dict(FP, preprocess='{"height": 128, "color_order": "BGR"}')
    g = Gallery.create(tmp_path / "g.gal", compact)
    g.check_fingerprint(spaced)  # same values: accepted
    with pytest.raises(GalleryError, match="preprocess"):
        g.check_fingerprint(dict(FP, preprocess='{"height": 64, "color_order": "BGR"}'))


def test_rebuild_with_the_register_moved_away_keeps_every_entry(tmp_path):
    reg = tmp_path / "register"
    for i in range(4):
        write_image(reg / f"doc{i}.png", seed=i)
    path = tmp_path / "g.gal"
    sync_register(path, FakeEmbedder(), reg)
    before = path.read_bytes()
    reg.rename(tmp_path / "moved")
    with pytest.raises(GalleryError, match="cannot be re-embedded"):
        rebuild(path, FakeEmbedder(precision="fp16"))
    assert path.read_bytes() == before


class _SlowEmbedder(FakeEmbedder):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.started = threading.Event()

    def embed_many(self, images):
        self.started.set()
        time.sleep(0.5)
        return super().embed_many(images)


def test_an_add_acknowledged_during_a_rebuild_is_not_lost(tmp_path):
    reg = tmp_path / "register"
    for i in range(3):
        write_image(reg / f"doc{i}.png", seed=i)
    path = tmp_path / "g.gal"
    sync_register(path, FakeEmbedder(), reg)
    slow = _SlowEmbedder()  # same model: the rebuild re-embeds with the same fingerprint
    t = threading.Thread(target=rebuild, args=(path, slow))
    t.start()
    slow.started.wait(5)
    Gallery.open(path).add(unit(1, seed=42), ["added-during-rebuild"])  # waits for the lock
    t.join(10)
    assert "added-during-rebuild" in Gallery.open(path, verify=True).labels


SYNCER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[3])
    from gallery_helpers import FakeEmbedder
    from docedge.runtime.gallery_sync import sync_register
    sync_register(sys.argv[1], FakeEmbedder(), sys.argv[2])
""")


@pytest.mark.parametrize("trial", range(3))
def test_concurrent_register_syncs_never_duplicate_entries(tmp_path, trial):
    from pathlib import Path

    reg = tmp_path / "register"
    for i in range(12):
        write_image(reg / f"doc{i}.png", seed=100 * trial + i)
    path = tmp_path / "g.gal"
    root = str(Path(__file__).resolve().parent)
    procs = [subprocess.Popen([sys.executable, "-c", SYNCER, str(path), str(reg), root])
             for _ in range(3)]  # fmt: skip
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    g = Gallery.open(path, verify=True)
    assert len(g) == 12 and len(set(g.row_labels)) == 12


def test_add_and_build_give_a_file_the_same_label(tmp_path):
    """c7066f8: build labelled register/passport/front.png 'passport_front', add said 'front'."""
    from docedge.runtime.gallery_sync import add_images

    reg = tmp_path / "register"
    write_image(reg / "passport" / "front.png", seed=1)
    write_image(reg / "visa.png", seed=2)
    path = tmp_path / "g.gal"
    sync_register(path, FakeEmbedder(), reg)
    write_image(reg / "passport" / "back.png", seed=3)
    write_image(reg / "ids" / "card.png", seed=4)
    add_images(path, FakeEmbedder(), [reg / "passport" / "back.png", reg / "ids"])
    labels = sorted(Gallery.open(path).labels)
    assert labels == ["ids_card", "passport_back", "passport_front", "visa"]
    outside = write_image(tmp_path / "elsewhere" / "memo.png", seed=5)
    add_images(path, FakeEmbedder(), [outside])
    assert "memo" in Gallery.open(path).labels
