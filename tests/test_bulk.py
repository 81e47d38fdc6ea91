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
