"""The gallery file format (schema 2): an independent reader written from docs/gallery-format.md
agrees with docedge; every corruption of the header, the JSON sections or the embeddings is
refused; schema 1 files are still read; snapshots, sub-labels, validation and re-embedding."""

from __future__ import annotations

import hashlib
import json
import string
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from gallery_helpers import FP, unit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from docedge.runtime.errors import FingerprintMismatchError, GalleryError
from docedge.runtime.gallery import HEADER_SIZE, SCHEMA_VERSION, Gallery, write_gallery


def read_per_docs(path: Path):
    """A reader that knows only docs/gallery-format.md (what a C++/Kotlin port would do)."""
    data = path.read_bytes()
    magic, version, header_size, dim, code, count, fp_sha = struct.unpack_from("<8sIIIIQ32s", data)
    assert magic == b"DEDGEGAL" and version == 2 and header_size == 320
    assert hashlib.sha256(data[:288]).digest() == data[288:320]
    sections = {}
    for i, name in enumerate(("meta", "labels", "records", "embeddings")):
        off, length, sha = struct.unpack_from("<QQ32s", data, 64 + 48 * i)
        blob = data[off : off + length]
        assert hashlib.sha256(blob).digest() == sha, name
        sections[name] = (off, blob)
    meta = json.loads(sections["meta"][1])
    canon = json.dumps(meta["fingerprint"], sort_keys=True, separators=(",", ":"))
    assert hashlib.sha256(canon.encode("ascii")).digest() == fp_sha
    e_off, e_blob = sections["embeddings"]
    assert e_off % 64 == 0
    dtype = {1: "<f2", 2: "<f4"}[code]
    emb = np.frombuffer(e_blob, dtype).reshape(count, dim)
    return meta, json.loads(sections["labels"][1]), json.loads(sections["records"][1]), emb


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_independent_reader_agrees_with_docedge(tmp_path, dtype):
    g = Gallery.create(tmp_path / "g.gal", FP, dtype=dtype)
    emb = unit(5)
    g.add(emb, ["passport", "passport/damaged", "id", "id", "visa/é"],
          sources=["a.jpg", "b.jpg", None, "d.png", "e.png"], sha256s=["1" * 64] * 5,
          metas=[{"k": 1}, None, None, {"x": [1, 2]}, None])  # fmt: skip
    g.remove(ids=[2])
    meta, labels, records, raw = read_per_docs(g.path)
    assert meta["fingerprint"] == FP and meta["next_id"] == 5
    assert labels == {"id": [0, 1, 3, 4], "label": ["passport", "passport/damaged", "id", "visa/é"],
                      "parent": [None, "passport", None, "visa"]}  # fmt: skip
    assert records["source"] == ["a.jpg", "b.jpg", "d.png", "e.png"]
    assert records["meta"] == [{"k": 1}, {}, {"x": [1, 2]}, {}]
    assert all(len(t) == 20 and t.endswith("Z") for t in records["added"])
    np.testing.assert_array_equal(raw, np.asarray(Gallery.open(g.path).embeddings))
    np.testing.assert_allclose(raw.astype(np.float32), emb[[0, 1, 3, 4]],
                               atol=1e-3 if dtype == "float16" else 0)  # fmt: skip


def test_every_header_byte_is_protected(tmp_path):
    g = write_gallery(tmp_path / "g.gal", FP, unit(3), ["a", "b", "c"])
    good = g.path.read_bytes()
    bad = tmp_path / "bad.gal"
    for i in range(HEADER_SIZE):
        data = bytearray(good)
        data[i] ^= 0x01
        bad.write_bytes(bytes(data))
        with pytest.raises(GalleryError):
            Gallery.open(bad, lazy=True)


def _section(path, name):
    i = ("meta", "labels", "records", "embeddings").index(name)
    off, length, _ = struct.unpack_from("<QQ32s", path.read_bytes(), 64 + 48 * i)
    return off, length


@pytest.mark.parametrize("name", ["meta", "labels", "records", "embeddings"])
def test_a_flipped_bit_in_any_section_is_refused(tmp_path, name):
    g = write_gallery(tmp_path / "g.gal", FP, unit(4), ["a", "b", "c", "d"],
                      sources=["s"] * 4)  # fmt: skip
    off, length = _section(g.path, name)
    data = bytearray(g.path.read_bytes())
    data[off + length // 2] ^= 0x10
    g.path.write_bytes(bytes(data))
    with pytest.raises(GalleryError, match="checksum"):
        Gallery.open(g.path, verify=True)
    if name in ("meta", "labels"):
        with pytest.raises(GalleryError, match="label table checksum"):
            Gallery.open(g.path)  # the default open checks them
    lazy = Gallery.open(g.path, lazy=True)  # header only
    assert len(lazy) == 4


def test_truncated_files_are_refused_at_any_length(tmp_path):
    g = write_gallery(tmp_path / "g.gal", FP, unit(3), ["a", "b", "c"])
    data = g.path.read_bytes()
    cut = tmp_path / "cut.gal"
    for n in sorted({0, 1, 7, 8, 12, 100, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 10,
                     len(data) // 2, len(data) - 64, len(data) - 1}):  # fmt: skip
        cut.write_bytes(data[:n])
        with pytest.raises(GalleryError):
            Gallery.open(cut)


def test_not_a_gallery_and_missing_file(tmp_path):
    (tmp_path / "x.gal").write_text("hello, this is not a gallery at all" * 20)
    with pytest.raises(GalleryError, match="bad magic"):
        Gallery.open(tmp_path / "x.gal")
    with pytest.raises(GalleryError, match="not found"):
        Gallery.open(tmp_path / "missing.gal")
    with pytest.raises(GalleryError, match="directory"):
        Gallery.open(tmp_path)


def _write_v1(path, fp, emb, labels):
    """A schema-1 file, written the way docedge 0.1 wrote them (one JSON table)."""
    t0 = "2026-01-01T00:00:00Z"
    table = {"fingerprint": fp, "created": t0, "updated": t0, "next_id": len(labels),
             "entries": [{"id": i, "label": lbl, "parent": None, "source": None, "sha256": None,
                          "added": "2026-01-01T00:00:00Z", "meta": {}}
                         for i, lbl in enumerate(labels)]}  # fmt: skip
    raw = json.dumps(table).encode()
    e = np.ascontiguousarray(emb, np.float16)
    e_off = (128 + len(raw) + 63) // 64 * 64
    head = struct.pack("<8sIIII QQQQQ 32s", b"DEDGEGAL", 1, e.shape[1], 1, 0, e.shape[0], 128,
                       len(raw), e_off, e.nbytes, hashlib.sha256(raw).digest())  # fmt: skip
    head += hashlib.sha256(e.tobytes()).digest()
    path.write_bytes(head + raw + b"\0" * (e_off - 128 - len(raw)) + e.tobytes())


def test_schema_1_files_are_read_and_rewritten_as_2_on_change(tmp_path):
    path = tmp_path / "old.gal"
    emb = unit(3)
    _write_v1(path, FP, emb, ["a", "b", "a"])
    g = Gallery.open(path, verify=True, expect_fingerprint=FP)
    assert g.schema_version == 1 and g.labels == ["a", "b"] and g.ids == [0, 1, 2]
    np.testing.assert_allclose(np.asarray(g.embeddings, np.float32), emb, atol=1e-3)
    assert g.add(unit(1, seed=5), ["c"]) == [3]
    g2 = Gallery.open(path, verify=True)
    assert g2.schema_version == SCHEMA_VERSION and g2.row_labels == ["a", "b", "a", "c"]


def test_unknown_future_schema_is_refused(tmp_path):
    g = write_gallery(tmp_path / "g.gal", FP, unit(1), ["a"])
    data = bytearray(g.path.read_bytes())
    data[8:12] = struct.pack("<I", 3)
    g.path.write_bytes(bytes(data))
    with pytest.raises(GalleryError, match="unknown gallery schema version 3"):
        Gallery.open(g.path)


def test_sub_labels_get_parents_and_are_listed(tmp_path):
    g = Gallery.create(tmp_path / "g.gal", FP)
    g.add(unit(4), ["passport/damaged", "passport/front", "id", "a/b/c"],
          parents=[None, None, None, "custom"])  # fmt: skip
    assert g.row_parents == ["passport", "passport", None, "custom"]
    assert g.label_parents() == ["passport", "passport", None, "custom"]
    assert g.info()["sub_labels"] == 3


def test_vectors_are_validated(tmp_path):
    g = Gallery.create(tmp_path / "g.gal", FP)
    with pytest.raises(GalleryError, match="L2-normalized"):
        g.add(2 * unit(1), ["a"])
    with pytest.raises(GalleryError, match="NaN"):
        g.add(np.full((1, 256), np.nan), ["a"])
    with pytest.raises(GalleryError, match="shape"):
        g.add(unit(2, dim=128), ["a", "b"])
    with pytest.raises(GalleryError, match="non-empty"):
        g.add(unit(1), [""])
    with pytest.raises(GalleryError, match="sources"):
        g.add(unit(2), ["a", "b"], sources=["x"])
    assert g.add(3 * unit(1), ["a"], normalize=True) == [0]
    assert np.linalg.norm(np.asarray(g.embeddings[0], np.float32)) == pytest.approx(1, abs=1e-3)
    assert len(Gallery.open(g.path)) == 1


def test_create_refuses_to_overwrite_unless_asked(tmp_path):
    Gallery.create(tmp_path / "g.gal", FP).add(unit(1), ["a"])
    with pytest.raises(GalleryError, match="exists already"):
        Gallery.create(tmp_path / "g.gal", FP)
    assert len(Gallery.create(tmp_path / "g.gal", FP, overwrite=True)) == 0
    with pytest.raises(GalleryError, match="dtype"):
        Gallery.create(tmp_path / "h.gal", FP, dtype="int8")


def test_an_open_gallery_is_a_snapshot(tmp_path):
    g = write_gallery(tmp_path / "g.gal", FP, unit(3), ["a", "b", "c"], dtype="float32")
    reader = Gallery.open(g.path)
    before = np.array(reader.embeddings)
    writer = Gallery.open(g.path)
    writer.remove(labels=["a", "b"])
    writer.add(unit(2, seed=9), ["x", "y"])
    assert len(reader) == 3 and reader.row_labels == ["a", "b", "c"]
    np.testing.assert_array_equal(np.asarray(reader.embeddings), before)  # old file still mapped
    reader.verify()
    assert Gallery.open(g.path).row_labels == ["c", "x", "y"]


def test_lazy_open_reads_only_the_header(tmp_path):
    g = write_gallery(tmp_path / "g.gal", FP, unit(50), [f"l{i}" for i in range(50)])
    lazy = Gallery.open(g.path, lazy=True)
    assert lazy._parsed == {} and len(lazy) == 50 and lazy.embeddings.shape == (50, 256)
    default = Gallery.open(g.path)
    assert set(default._parsed) == {"meta", "labels"}  # records parsed on first use
    assert default.entries[3].label == "l3" and "records" in default._parsed


def test_fingerprint_mismatch_names_every_difference_in_words(tmp_path):
    Gallery.create(tmp_path / "g.gal", dict(FP, preprocess='{"interpolation": "INTER_LINEAR"}'))
    other = dict(FP, model_sha256="z" * 64, precision="int8",
                 preprocess='{"interpolation": "INTER_AREA"}')  # fmt: skip
    with pytest.raises(FingerprintMismatchError) as e:
        Gallery.open(tmp_path / "g.gal", expect_fingerprint=other)
    msg = str(e.value)
    assert "model hash [model_sha256] differs (gallery mmmmmmmmmmmmmmmm..., bundle zzzz" in msg
    assert "precision [precision] differs (gallery 'fp32', bundle 'int8')" in msg
    assert "pre-processing [preprocess] differs (interpolation: gallery 'INTER_LINEAR' vs bundle " \
           "'INTER_AREA')" in msg  # fmt: skip
    assert "artifact" not in msg and "docedge gallery rebuild" in msg


def test_reembed_keeps_ids_labels_and_records_and_replaces_the_fingerprint(tmp_path):
    g = write_gallery(tmp_path / "g.gal", FP, unit(3), ["a", "b/c", "d"],
                      sources=["1.png", "2.png", "3.png"])  # fmt: skip
    new_fp = dict(FP, precision="fp16", artifact_sha256="f" * 64)
    fresh = unit(2, seed=7)
    kept, dropped = g.reembed([2, 0], fresh, new_fp)
    assert kept == [0, 2] and dropped == [1]
    g2 = Gallery.open(g.path, verify=True, expect_fingerprint=new_fp)
    assert g2.ids == [0, 2] and g2.row_labels == ["a", "d"] and g2.meta["next_id"] == 3
    assert [e.source for e in g2.entries] == ["1.png", "3.png"]
    np.testing.assert_allclose(np.asarray(g2.embeddings, np.float32), fresh[[1, 0]], atol=1e-3)


def test_compact_converts_dtype_and_removes_stale_temp_files(tmp_path):
    g = write_gallery(tmp_path / "g.gal", FP, unit(3), ["a", "b", "c"], dtype="float32")
    stale = tmp_path / ".g.gal.abc123.tmp"
    stale.write_bytes(b"half-written by a crashed writer")
    done = g.compact("float16")
    assert done["stale_temp_files_removed"] == 1 and not stale.exists()
    assert done["size_after"] < done["size_before"]
    assert Gallery.open(g.path, verify=True).dtype == "float16"


_labels = st.text(alphabet=string.ascii_letters + "/_-é中 ", min_size=1, max_size=12).filter(
    lambda s: s.strip("/") == s and "//" not in s
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    labels=st.lists(_labels, min_size=0, max_size=12),
    dtype=st.sampled_from(["float16", "float32"]),
    meta=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
)
def test_round_trip_property(labels, dtype, meta):
    with tempfile.TemporaryDirectory() as tmp:
        emb = unit(len(labels), seed=len(labels))
        g = Gallery.create(Path(tmp) / "g.gal", FP, dtype=dtype)
        if labels:
            g.add(emb, labels, metas=[meta] * len(labels))
        g2 = Gallery.open(g.path, verify=True, expect_fingerprint=FP)
        assert g2.row_labels == labels and g2.ids == list(range(len(labels)))
        assert all(e.meta == meta for e in g2.entries)
        assert g2.labels == list(dict.fromkeys(labels))
        np.testing.assert_allclose(np.asarray(g2.embeddings, np.float32).reshape(-1, 256), emb,
                                   atol=1e-3 if dtype == "float16" else 0)  # fmt: skip
