"""Runtime options that matter on shared CPUs: threads and spinning reach ONNX Runtime, and the
decode/inference pipeline gives exactly the results of the sequential path."""

from __future__ import annotations

import numpy as np
import pytest

from docedge.runtime import Embedder


def test_threads_and_spinning_reach_the_session(bundle_copy):
    emb = Embedder(bundle_copy, intra_op_threads=1, allow_spinning=False)
    d = emb.describe()
    assert d["intra_op_threads"] == 1 and d["allow_spinning"] is False
    assert Embedder(bundle_copy, allow_spinning=True).describe()["allow_spinning"] is True


def test_spinning_is_off_by_default_and_the_environment_restores_it(bundle_copy, monkeypatch):
    assert Embedder(bundle_copy).describe()["allow_spinning"] is False
    monkeypatch.setenv("DOCEDGE_ORT_SPINNING", "1")
    assert Embedder(bundle_copy).describe()["allow_spinning"] is True


def test_the_prefetch_pipeline_equals_the_sequential_path(bundle_copy, check_image_files):
    emb = Embedder(bundle_copy, batch_size=4)
    items = [str(p) for p in check_image_files[:13]] + [b"not an image", str(check_image_files[0])]
    a = emb.embed_many(items, prefetch=True)
    b = emb.embed_many(items, prefetch=False)
    assert a.ok.tolist() == b.ok.tolist() and sorted(a.errors) == sorted(b.errors) == [13]
    np.testing.assert_array_equal(a.embeddings[a.ok], b.embeddings[b.ok])


@pytest.mark.parametrize("workers", [1, 3])
def test_parallel_decoding_gives_the_same_result_with_bad_images_anywhere(
    bundle_copy, check_image_files, workers
):
    emb = Embedder(bundle_copy, batch_size=4)
    files = [str(p) for p in check_image_files[:10]]
    items = [*files[:2], b"broken", *files[2:5], b"", b"also broken", *files[5:]]
    a = emb.embed_many(items, workers=workers)
    b = emb.embed_many(items, prefetch=False)
    assert sorted(a.errors) == sorted(b.errors) == [2, 6, 7]
    assert a.ok.tolist() == b.ok.tolist()
    np.testing.assert_array_equal(a.embeddings[a.ok], b.embeddings[b.ok])
    np.testing.assert_array_equal(a.embeddings[a.ok], emb.embed(files))


def test_images_of_one_batch_are_decoded_on_several_threads(bundle_copy, check_image_files,
                                                            monkeypatch):  # fmt: skip
    import threading
    import time

    emb = Embedder(bundle_copy, batch_size=8)
    seen = set()
    original = emb.preprocess_one

    def slow(item, index=0):
        seen.add(threading.current_thread().name)
        time.sleep(0.02)  # long enough that one worker cannot take every item
        return original(item, index)

    monkeypatch.setattr(emb, "preprocess_one", slow)
    emb.embed_many([str(p) for p in check_image_files[:16]], workers=3)
    assert len({t for t in seen if t.startswith("docedge-prep")}) >= 2, seen


def test_cli_backend_flags_are_shared(tmp_path):
    from docedge.tools.cli import build_parser

    for argv in (["embed", "B", "x.jpg"], ["classify", "B", "G", "x.jpg"],
                 ["gallery", "build", "B", "G", "R"]):  # fmt: skip
        args = build_parser().parse_args([*argv, "--threads", "1", "--spinning"])
        from docedge.tools.backend_flags import backend_options

        assert backend_options(args) == {"providers": ["cpu"], "intra_op_threads": 1,
                                         "allow_spinning": True}  # fmt: skip
