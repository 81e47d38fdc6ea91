"""Bulk embedding on Ray Data: local actors, Parquet shards, the same embeddings as a direct
call, bad images as rows with their error, and a gallery built from the shards."""

from __future__ import annotations

import numpy as np
import pytest

from docedge.runtime import Embedder
from docedge.runtime.gallery import Gallery


@pytest.mark.slow
def test_an_archive_is_embedded_into_shards_matching_direct_calls(bundle_copy, check_image_files,
                                                                  tmp_path):  # fmt: skip
    ray = pytest.importorskip("ray", reason="Ray is not installed (docedge[serve])")
    pytest.importorskip("pyarrow", reason="Ray Data needs pyarrow (docedge[serve])")
    from docedge.runtime.bulk import embed_archive, gallery_from_shards, read_shards

    archive = tmp_path / "archive"
    archive.mkdir()
    for p in check_image_files[:6]:
        (archive / p.name).write_bytes(p.read_bytes())
    (archive / "broken.jpg").write_bytes(b"not a jpeg")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        res = embed_archive(bundle_copy, archive, tmp_path / "shards", num_actors=1, batch_size=4,
                            num_cpus_per_actor=0.5)  # fmt: skip
    finally:
        ray.shutdown()
    assert res == {"images": 7, "embedded": 6, "failed": 1, "out": str(tmp_path / "shards")}
    paths, emb, errors = read_shards(tmp_path / "shards")
    direct = Embedder(bundle_copy).embed([p for p in paths])
    assert float(np.min(np.sum(direct * emb, axis=1))) > 0.999999
    assert list(errors) and "broken.jpg" in next(iter(errors))
    assert gallery_from_shards(tmp_path / "g.gal", bundle_copy, tmp_path / "shards") == 6
    assert len(Gallery.open(tmp_path / "g.gal", verify=True)) == 6


def test_parity_from_shards_matches_images_by_path_and_fails_on_gaps(tmp_path):
    pytest.importorskip("pyarrow", reason="Ray Data needs pyarrow (docedge[serve])")
    import pyarrow as pa
    import pyarrow.parquet as pq

    from docedge.calibration.shard_parity import shard_parity

    rng = np.random.default_rng(0)
    e = rng.standard_normal((5, 8)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)

    def shard(folder, rows):
        folder.mkdir()
        t = pa.table({"path": [r[0] for r in rows], "ok": [r[1] for r in rows],
                      "error": ["" if r[1] else "bad" for r in rows],
                      "embedding": [list(map(float, r[2])) for r in rows]})  # fmt: skip
        pq.write_table(t, folder / "part-0.parquet")

    shard(tmp_path / "a", [(f"img{i}", True, e[i]) for i in range(5)])
    noisy = e + 0.01 * rng.standard_normal(e.shape).astype(np.float32)
    shard(tmp_path / "b", [(f"img{i}", True, noisy[i]) for i in reversed(range(5))])
    res = shard_parity(tmp_path / "a", tmp_path / "b", min_cosine=0.99, mean_cosine=0.99)
    assert res["passed"] and res["compared"] == 5 and len(res["worst"]) == 5
    shard(tmp_path / "c", [(f"img{i}", i != 2, noisy[i]) for i in range(4)])
    res = shard_parity(tmp_path / "a", tmp_path / "c", min_cosine=0.99, mean_cosine=0.99)
    assert not res["passed"] and res["failed_candidate"] == ["img2"]
    assert res["only_reference"] == ["img4"]
