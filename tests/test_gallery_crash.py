"""Crash safety and concurrency with real processes: a writer killed (deterministically, at
every commit stage of every kind of change, or by SIGKILL at random moments during add /
remove / compact / re-embed loops) leaves the previous or the new state; concurrent writers
never lose an update; a reader running beside a writer always sees a complete gallery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from gallery_helpers import FP, unit

from docedge.runtime.errors import GalleryError
from docedge.runtime.gallery import CRASH_ENV, Gallery, write_gallery

STAGES = ["begin", "header", "table", "data", "before-rename", "after-rename"]
OPS = {
    "add": "g.add(np.eye(2, 256, dtype=np.float32), ['x', 'y'])",
    "remove": "g.remove(labels=['a'])",
    "compact": "g.compact('float32')",
    "reembed": "g.reembed([1, 2], np.eye(2, 256, dtype=np.float32), "
    "dict(g.fingerprint, precision='int8'))",
}


def _state(path: Path):
    g = Gallery.open(path, verify=True)
    return (g.ids, g.row_labels, g.dtype, g.fingerprint.get("precision"))


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("stage", STAGES)
def test_a_crash_at_any_commit_stage_leaves_the_old_or_the_new_state(tmp_path, op, stage):
    path = tmp_path / "g.gal"
    write_gallery(path, FP, unit(3), ["a", "b", "c"])
    before = _state(path)
    code = f"import sys, numpy as np; from docedge.runtime.gallery import Gallery; " \
           f"g = Gallery.open(sys.argv[1]); {OPS[op]}"  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, str(path)],
                          env=dict(os.environ, **{CRASH_ENV: stage}))  # fmt: skip
    assert proc.returncode == 86
    after = _state(path)
    if stage == "after-rename":
        assert after != before  # committed: the new state, complete
    else:
        assert after == before
    assert Gallery.open(path).embeddings.shape[0] == len(after[0])


WRITER = textwrap.dedent("""
    import json, sys, numpy as np
    from docedge.runtime.gallery import Gallery
    g = Gallery.open(sys.argv[1])
    rng = np.random.default_rng(int(sys.argv[2]))
    for i in range(10_000):
        op = ("add", "add", "remove", "compact", "reembed")[i % 5]
        if op == "add":
            v = rng.standard_normal((3, 256)).astype(np.float32)
            g.add(v / np.linalg.norm(v, axis=1, keepdims=True), [f"l{i}"] * 3)
        elif op == "remove" and len(g):
            g.remove(ids=g.ids[:2])
        elif op == "compact":
            g.compact("float32" if g.dtype == "float16" else "float16")
        elif op == "reembed" and len(g):
            v = rng.standard_normal((len(g), 256)).astype(np.float32)
            g.reembed(g.ids, v / np.linalg.norm(v, axis=1, keepdims=True),
                      dict(g.fingerprint, precision=f"p{i}"))
        print(json.dumps([g.ids, g.dtype, g.fingerprint["precision"]]), flush=True)
""")


def test_sigkill_during_mixed_changes_never_corrupts(tmp_path):
    """10 SIGKILLs at random moments of add/remove/compact/re-embed loops (the plain add/remove
    loop is killed 24 more times in test_gallery.py)."""
    path = tmp_path / "g.gal"
    write_gallery(path, FP, unit(2), ["a", "b"])
    rng = np.random.default_rng(1)
    kills = 0
    for round_ in range(10):
        g0 = Gallery.open(path)
        states = [[g0.ids, g0.dtype, g0.fingerprint["precision"]]]
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(round_)],
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
        time.sleep(float(rng.uniform(0.3, 0.9)))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        states += [json.loads(line) for line in out.splitlines() if line.strip()]
        g = Gallery.open(path, verify=True)
        now = [g.ids, g.dtype, g.fingerprint["precision"]]
        # a printed state, or the state one complete change after the last printed one
        # (committed, killed before printing); never anything partial
        assert now in states or _one_change_after(states[-1], now), (states[-1], now)
        assert len(g.entries) == g.embeddings.shape[0] == len(set(g.ids))
        kills += 1
    assert kills == 10


def _one_change_after(last, now):
    (ids, dtype, prec), (ids2, dtype2, prec2) = last, now
    added = ids2[: len(ids)] == ids and len(ids2) == len(ids) + 3
    removed = ids2 == ids[2:] and dtype2 == dtype and prec2 == prec
    compacted = ids2 == ids and dtype2 != dtype and prec2 == prec
    reembedded = ids2 == ids and dtype2 == dtype and prec2 != prec
    return added or removed or compacted or reembedded


ADDER = textwrap.dedent("""
    import sys, numpy as np
    from docedge.runtime.gallery import Gallery
    g = Gallery.open(sys.argv[1])
    for i in range(8):
        g.add(np.eye(1, 256, k=i, dtype=np.float32), [f"{sys.argv[2]}-{i}"])
""")


def test_concurrent_writers_never_lose_an_update(tmp_path):
    path = tmp_path / "g.gal"
    Gallery.create(path, FP)
    procs = [subprocess.Popen([sys.executable, "-c", ADDER, str(path), f"w{w}"])
             for w in range(3)]  # fmt: skip
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    g = Gallery.open(path, verify=True)
    assert len(g) == 24 and sorted(g.ids) == list(range(24))
    assert sorted(g.row_labels) == sorted(f"w{w}-{i}" for w in range(3) for i in range(8))


READER = textwrap.dedent("""
    import sys, time
    from docedge.runtime.gallery import Gallery
    end, n = time.time() + float(sys.argv[2]), 0
    while time.time() < end:
        g = Gallery.open(sys.argv[1], verify=True)
        assert len(g.entries) == g.embeddings.shape[0]
        n += 1
    print(n)
""")


def test_readers_beside_a_writer_always_see_a_complete_gallery(tmp_path):
    path = tmp_path / "g.gal"
    write_gallery(path, FP, unit(4), ["a", "b", "c", "d"])
    reader = subprocess.Popen([sys.executable, "-c", READER, str(path), "2.0"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    g = Gallery.open(path)
    end = time.time() + 2.0
    i = 0
    while time.time() < end:
        g.add(unit(2, seed=i), [f"n{i}", f"n{i}"])
        g.remove(ids=g.ids[:1])
        i += 1
    out, _ = reader.communicate(timeout=30)
    assert reader.returncode == 0 and int(out) > 5 and i > 5


def test_a_second_writer_waits_for_the_first(tmp_path, monkeypatch):
    g = Gallery.create(tmp_path / "g.gal", FP)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, time
        fd = os.open({str(g.path) + '.lock'!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)  # as a real writer does: no digits of an older pid left
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        print('locked', flush=True)
        time.sleep(0.6)
    """)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setenv("DOCEDGE_GALLERY_LOCK_TIMEOUT", "0.1")
        with pytest.raises(
            GalleryError, match=rf"locked by another writer \(process {holder.pid}\)"
        ):
            g.add(unit(1), ["x"])
        monkeypatch.setenv("DOCEDGE_GALLERY_LOCK_TIMEOUT", "20")
        t0 = time.monotonic()
        assert g.add(unit(1), ["x"]) == [0]  # waits until the holder exits
        assert time.monotonic() - t0 > 0.1
    finally:
        holder.kill()
        holder.wait()
