"""The gallery file: round trip, labels and duplicates, sub-labels, integrity checks,
fingerprint refusal, writer lock, and survival of real process kills at any point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from docedge.runtime.errors import FingerprintMismatchError, GalleryError
from docedge.runtime.gallery import CRASH_ENV, HEADER_SIZE, Gallery

FP = {"model_sha256": "m" * 64, "artifact_sha256": "a" * 64, "precision": "fp32", "preprocess": "{}"}


def unit(n, dim=256, seed=0):
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_round_trip_keeps_labels_metadata_and_embeddings(tmp_path, dtype):
    g = Gallery.create(tmp_path / "g.gal", FP, dtype=dtype)
    emb = unit(3)
    ids = g.add(emb, ["passport", "passport/damaged", "id_card"], sources=["a.jpg", "b.jpg", None],
                sha256s=["1" * 64, "2" * 64, None], metas=[{"k": 1}, None, None])
    g2 = Gallery.open(tmp_path / "g.gal", verify=True)
    assert ids == [0, 1, 2] and len(g2) == 3
    assert [e.label for e in g2.entries] == ["passport", "passport/damaged", "id_card"]
    assert [e.parent for e in g2.entries] == [None, "passport", None]
    assert g2.entries[0].meta == {"k": 1} and g2.entries[0].source == "a.jpg"
    assert g2.dtype == dtype and isinstance(g2.embeddings, np.memmap)
    atol = 1e-3 if dtype == "float16" else 0
    np.testing.assert_allclose(np.asarray(g2.embeddings, np.float32), emb, atol=atol)
    assert g2.fingerprint == FP


def test_duplicate_labels_are_kept_as_extra_exemplars(tmp_path):
    g = Gallery.create(tmp_path / "g.gal", FP)
    g.add(unit(2), ["a", "b"])
    g.add(unit(1, seed=1), ["a"])
    assert [e.label for e in g.entries] == ["a", "b", "a"]
    assert g.labels == ["a", "b"] and g.label_ids().tolist() == [0, 1, 0]


def test_remove_by_label_and_id_and_compact_dtype(tmp_path):
    g = Gallery.create(tmp_path / "g.gal", FP, dtype="float32")
    g.add(unit(4), ["a", "b", "a", "c"])
    assert g.remove(labels=["a"]) == 2
    assert g.remove(ids=[3]) == 1
    assert [e.label for e in g.entries] == ["b"]
    g.compact("float16")
    assert Gallery.open(g.path).dtype == "float16" and len(Gallery.open(g.path)) == 1


def test_ids_stay_unique_after_removals(tmp_path):
    g = Gallery.create(tmp_path / "g.gal", FP)
    g.add(unit(2), ["a", "b"])
    g.remove(ids=[1])
    assert g.add(unit(1), ["c"]) == [2]


def test_mismatched_fingerprint_is_refused_saying_what_differs(tmp_path):
    Gallery.create(tmp_path / "g.gal", FP)
    other = dict(FP, precision="int8", artifact_sha256="b" * 64)
    with pytest.raises(FingerprintMismatchError) as e:
        Gallery.open(tmp_path / "g.gal", expect_fingerprint=other)
    assert "precision" in str(e.value) and "artifact_sha256" in str(e.value)
    assert "model_sha256" not in str(e.value)


@pytest.mark.parametrize("where, message", [
    (0, "bad magic"),
    (HEADER_SIZE + 5, "label table checksum mismatch"),
])
def test_corrupted_header_or_table_is_refused(tmp_path, where, message):
    g = Gallery.create(tmp_path / "g.gal", FP)
    g.add(unit(2), ["a", "b"])
    data = bytearray(g.path.read_bytes())
    data[where] ^= 0xFF
    g.path.write_bytes(bytes(data))
    with pytest.raises(GalleryError, match=message):
        Gallery.open(g.path)


def test_corrupted_embeddings_and_truncation_are_detected(tmp_path):
    g = Gallery.create(tmp_path / "g.gal", FP)
    g.add(unit(2), ["a", "b"])
    data = bytearray(g.path.read_bytes())
    data[-3] ^= 0xFF
    g.path.write_bytes(bytes(data))
    with pytest.raises(GalleryError, match="embedding data checksum"):
        Gallery.open(g.path, verify=True)
    g.path.write_bytes(bytes(data[:-100]))
    with pytest.raises(GalleryError, match="truncated or corrupt"):
        Gallery.open(g.path)


def test_unknown_schema_version_is_refused(tmp_path):
    g = Gallery.create(tmp_path / "g.gal", FP)
    data = bytearray(g.path.read_bytes())
    data[8] = 9
    g.path.write_bytes(bytes(data))
    with pytest.raises(GalleryError, match="unknown gallery schema version 9"):
        Gallery.open(g.path)


def test_second_writer_waits_then_fails_clearly(tmp_path, monkeypatch):
    g = Gallery.create(tmp_path / "g.gal", FP)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, time
        fd = os.open({str(g.path) + '.lock'!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print('locked', flush=True)
        time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setenv("DOCEDGE_GALLERY_LOCK_TIMEOUT", "0.3")
        t0 = time.monotonic()
        with pytest.raises(GalleryError, match="locked by another writer"):
            g.add(unit(1), ["x"])
        assert time.monotonic() - t0 >= 0.3
        assert len(Gallery.open(g.path)) == 0
    finally:
        holder.kill()
        holder.wait()


WRITER = textwrap.dedent("""
    import sys, numpy as np
    from docedge.runtime.gallery import Gallery
    g = Gallery.open(sys.argv[1])
    rng = np.random.default_rng(int(sys.argv[2]))
    for i in range(1000):
        if i % 3 == 2 and len(g):
            g.remove(ids=[g.entries[0].id])
        else:
            v = rng.standard_normal((5, 256)).astype(np.float32)
            g.add(v / np.linalg.norm(v, axis=1, keepdims=True), [f"l{i}"] * 5)
        print(len(g), flush=True)
""")


@pytest.mark.slow
def test_gallery_survives_sigkill_at_random_moments(tmp_path):
    path = tmp_path / "g.gal"
    Gallery.create(path, FP)
    rng = np.random.default_rng(0)
    kills = 0
    for round_ in range(24):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(round_)],
                                stdout=subprocess.PIPE, text=True)
        committed = {len(Gallery.open(path))}
        time.sleep(float(rng.uniform(0.25, 0.8)))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        kills += 1
        committed |= {int(x) for x in out.split()}
        g = Gallery.open(path, verify=True)  # never partial, never corrupt
        # printed states, or the one op committed but not yet printed (+5 added / -1 removed)
        assert len(g) in committed | {n + 5 for n in committed} | {n - 1 for n in committed}
        assert len(g.entries) == g.embeddings.shape[0]
    assert kills >= 20
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) <= kills  # stale temp files only, never the gallery itself


@pytest.mark.parametrize("stage", ["header", "table", "data", "before-rename", "after-rename"])
def test_crash_at_each_commit_stage_leaves_old_or_new_state(tmp_path, stage):
    path = tmp_path / "g.gal"
    g = Gallery.create(path, FP)
    g.add(unit(2), ["a", "b"])
    code = ("import sys, numpy as np; from docedge.runtime.gallery import Gallery; "
            "Gallery.open(sys.argv[1]).add(np.eye(1, 256, dtype=np.float32), ['c'])")
    env = dict(os.environ, **{CRASH_ENV: stage})
    proc = subprocess.run([sys.executable, "-c", code, str(path)], env=env)
    assert proc.returncode == 86
    after = Gallery.open(path, verify=True)
    expected = 3 if stage == "after-rename" else 2
    assert len(after) == expected


def test_lazy_open_defers_the_label_table_but_still_refuses_corruption(tmp_path):
    g = Gallery.create(tmp_path / "g.gal", FP)
    g.add(unit(3), ["a", "b", "c"])
    data = bytearray(g.path.read_bytes())
    data[HEADER_SIZE + 5] ^= 0xFF
    g.path.write_bytes(bytes(data))
    lazy = Gallery.open(g.path, lazy=True)  # header + memory map only
    assert len(lazy) == 3
    with pytest.raises(GalleryError, match="label table checksum mismatch"):
        _ = lazy.labels
    with pytest.raises(GalleryError, match="label table checksum mismatch"):
        Gallery.open(g.path, lazy=True, expect_fingerprint=FP)
