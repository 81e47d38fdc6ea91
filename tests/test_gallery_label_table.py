"""The labels section opens as columns: the same ids, labels, parents, distinct labels (in
first-registration order) and per-row label ids as parsing its JSON, for any labels; sections
the column reader does not recognise go through json and its validation unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docedge.runtime.errors import GalleryError
from docedge.runtime.gallery import Gallery, _commit, _json_bytes
from docedge.runtime.label_table import LabelTable, scan_label_section

FP = {"model_sha256": "m" * 64, "artifact_sha256": "a" * 64, "precision": "fp32",
      "preprocess": "{}"}  # fmt: skip

label_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


def _section(ids, labels, parents) -> bytes:
    return _json_bytes({"id": ids, "label": labels, "parent": parents})


def _same_as_json(table: LabelTable, raw: bytes) -> None:
    obj = json.loads(raw)
    ref = LabelTable.from_columns(obj["id"], obj["label"], obj["parent"])
    assert table.label_parents() == ref.label_parents()  # before the parent column is grouped
    for col in ("id", "label", "parent"):
        assert table[col] == obj[col]
    assert table.labels == list(dict.fromkeys(obj["label"])) == ref.labels
    assert table.parents == ref.parents
    np.testing.assert_array_equal(table.label_codes, ref.label_codes)
    np.testing.assert_array_equal(table.parent_codes, ref.parent_codes)
    assert table.label_parents() == ref.label_parents()
    assert table.ids.dtype == np.int64 and table.label_codes.dtype == np.int64


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(0, 2**62), st.sampled_from(range(6)),
                               st.one_of(st.none(), label_text)), min_size=1, max_size=40),
       names=st.lists(label_text, min_size=6, max_size=6))  # fmt: skip
def test_columns_equal_the_parsed_json(rows, names):
    ids = list(dict.fromkeys(r[0] for r in rows))
    n = len(ids)
    labels = [names[r[1]] for r in rows][:n]
    parents = [r[2] for r in rows][:n]
    raw = _section(ids, labels, parents)
    fast = scan_label_section(raw, n)
    text = "".join(labels + [p or "" for p in parents])
    plain = all(ord(c) >= 0x20 and c not in '"\\' for c in text) and max(ids) < 10**18
    if plain:  # docedge's own layout, no escapes, ids below 10**18: the column scanner reads it
        assert fast is not None
    if fast is not None:
        _same_as_json(fast, raw)


@pytest.mark.parametrize("raw, count", [
    (b'{"id":[1,1],"label":["a","b"],"parent":[null,null]}', 2),  # duplicate ids
    (b'{"id":[1,-2],"label":["a","b"],"parent":[null,null]}', 2),
    (b'{"id":[01,2],"label":["a","b"],"parent":[null,null]}', 2),  # not JSON
    (b'{"id":[1.0,2],"label":["a","b"],"parent":[null,null]}', 2),
    (b'{"id":[1,2],"label":["a",""],"parent":[null,null]}', 2),  # empty label
    (b'{"id":[1,2],"label":["a",null],"parent":[null,null]}', 2),
    (b'{"id":[1,2],"label":["a",7],"parent":[null,null]}', 2),
    (b'{"id":[1,2],"label":["a""b"],"parent":[null,null]}', 2),
    (b'{"id":[1,2],"label":["a","b"],"parent":[nul,null]}', 2),
    (b'{"id":[1,2],"label":["a","b"],"parent":[null,3]}', 2),
    (b'{"id":[1,2],"label":["a","b"],"parent":[null]}', 2),  # column too short
    (b'{"id":[1,2],"label":["a","b\\"c"],"parent":[null,null]}', 2),  # escape: json path
    (b'{"id": [1, 2], "label": ["a", "b"], "parent": [null, null]}', 2),  # spaced: json path
    (b'{"label":["a","b"],"id":[1,2],"parent":[null,null]}', 2),  # other key order
    (b'{"id":[1,2],"label":["a","\xff"],"parent":[null,null]}', 2),  # invalid UTF-8
    (b'{"id":[1,2],"label":["a","b"],"parent":[null,null],"x":1}', 2),
])  # fmt: skip
def test_anything_else_is_left_to_json(raw, count):
    assert scan_label_section(raw, count) is None


def test_a_gallery_opens_with_columns_and_lists_on_demand(tmp_path):
    n = 1000
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((n, 256)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = [f"t{i % 37}/é{i % 3}" for i in range(n)]
    cols = {"id": [3 * i + 1 for i in range(n)], "label": labels,
            "parent": [None if i % 4 == 0 else f"t{i % 37}" for i in range(n)],
            "source": [None] * n, "sha256": [None] * n, "added": [None] * n,
            "meta": [{}] * n}  # fmt: skip
    meta = {"fingerprint": dict(FP), "created": None, "updated": None, "next_id": 3 * n}
    _commit(tmp_path / "g.gal", meta, cols, [emb], n, 256, "float16")
    g = Gallery.open(tmp_path / "g.gal")
    table = g.label_table()
    assert isinstance(table, LabelTable) and table._lists == {}  # no per-row lists yet
    assert g.labels == list(dict.fromkeys(labels))
    np.testing.assert_array_equal(g.entry_ids(), cols["id"])
    assert [g.labels[i] for i in g.label_ids()] == labels
    assert g.label_parents()[:2] == [None, "t1"]  # a label's parent is its first row's
    assert table._lists == {}
    assert g.row_labels == labels and g.row_parents == cols["parent"] and g.ids == cols["id"]


def test_a_crafted_section_is_still_refused_by_name(tmp_path):
    """Values the column reader rejects reach the json path's validation (its messages)."""
    emb = np.eye(2, 256, dtype=np.float32)
    cols = {"id": [1, 1], "label": ["a", "b"], "parent": [None, None], "source": [None] * 2,
            "sha256": [None] * 2, "added": [None] * 2, "meta": [{}] * 2}  # fmt: skip
    meta = {"fingerprint": dict(FP), "created": None, "updated": None, "next_id": 2}
    _commit(tmp_path / "g.gal", meta, cols, [emb], 2, 256, "float32")
    with pytest.raises(GalleryError, match="duplicate entry ids"):
        Gallery.open(tmp_path / "g.gal")
