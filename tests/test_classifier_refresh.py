"""A Classifier sees another process's committed change after refresh(): the new snapshot is
one index swapped in one assignment, float16 stays memory-mapped (no float32 copy)."""

from __future__ import annotations

import numpy as np

from docedge.runtime.bundle import load_bundle
from docedge.runtime.classifier import Classifier
from docedge.runtime.gallery import Gallery


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((1, 256)).astype(np.float32)
    return v / np.linalg.norm(v)


def test_refresh_loads_a_committed_change_as_one_new_index(bundle_copy, tmp_path):
    fp = load_bundle(bundle_copy).fingerprint("fp32")
    path = tmp_path / "g.gal"
    g = Gallery.create(path, fp, dtype="float16")
    g.add(np.concatenate([_unit(1), _unit(2)]), ["a/x", "b"])
    clf = Classifier(bundle_copy, path, threshold=0.9, top_k=3)
    before = clf._index
    assert before.matrix.dtype == np.float16 and isinstance(before.matrix, np.memmap)
    assert clf.refresh() is False  # nothing committed since it opened
    q = _unit(3)
    (d,) = clf.decide(q)
    assert d.label is None and [c.label for c in d.top_k] == ["a/x", "b"]

    writer = Gallery.open(path)  # another writer commits a new exemplar equal to the query
    writer.add(q, ["c/new"])
    assert clf.refresh() is True
    assert clf._index is not before and before.labels == ["a/x", "b"]  # old index untouched
    (d,) = clf.decide(q)
    assert (d.label, d.parent, d.best.entry_id) == ("c/new", "c", 2)
    assert d.margin is not None and d.margin > 0.1
    assert clf.refresh() is False
    writer.remove(labels=["a/x"])
    assert clf.refresh() is True
    assert clf._index.labels == ["b", "c/new"] and clf.gallery.ids == [1, 2]
