"""Bulk embedding on Ray Data (``pip install 'docedge[serve]'``, which brings ``ray[data]``):
an image archive (a folder or a list of paths/URIs Ray can read) embedded by one docedge actor
per worker, written as Parquet shards of ``(path, ok, error, embedding)``.

    from docedge.runtime.bulk import embed_archive, read_shards
    embed_archive("bundle/", "captures/", "shards/", num_actors=4)
    paths, emb, errors = read_shards("shards/")          # (N,) ids, (N, 256) float32, {path: error}

On one machine it runs the same code path with local actors. The shards feed a gallery
(:func:`gallery_from_shards`) or any offline analysis; a bad image is a row with ``ok=False``
and its error, never a failed job.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import BackendUnavailableError, GalleryError
from .preprocess import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)


def _import_ray_data() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise BackendUnavailableError("bulk jobs need Ray Data: pip install 'docedge[serve]'") from None
    return ray


class _EmbedActor:
    """One Embedder per Ray worker; embeds a batch of encoded images."""

    def __init__(self, bundle: str, precision: str, options: Dict[str, Any]) -> None:
        from .embedder import Embedder

        self.embedder = Embedder(bundle, precision=precision, **options)

    def __call__(self, batch: Dict[str, np.ndarray[Any, Any]]) -> Dict[str, Any]:
        data = [bytes(b) for b in batch["bytes"]]
        res = self.embedder.embed_many(data)
        errors = [str(res.errors[i]) if i in res.errors else "" for i in range(len(data))]
        emb = np.where(res.ok[:, None], res.embeddings, 0.0).astype(np.float32)
        return {"path": batch["path"], "ok": res.ok, "error": np.asarray(errors, dtype=object),
                "embedding": list(emb)}  # fmt: skip


def embed_archive(bundle: Union[str, Path], inputs: Union[str, Path, Sequence[str]],
                  out_dir: Union[str, Path], precision: str = "fp32", num_actors: int = 1,
                  batch_size: int = 32, num_cpus_per_actor: float = 1.0,
                  **backend_options: Any) -> Dict[str, Any]:  # fmt: skip
    """Embed every image of ``inputs`` into Parquet shards in ``out_dir``; returns counts."""
    ray = _import_ray_data()
    from .bundle import load_bundle

    load_bundle(bundle)  # verified once here; each actor verifies again when it starts
    if isinstance(inputs, (str, Path)):
        paths: Any = str(inputs)
        suffixes = [s.lstrip(".") for s in IMAGE_SUFFIXES] + [s.lstrip(".").upper() for s in IMAGE_SUFFIXES]
        ds = ray.data.read_binary_files(paths, include_paths=True, file_extensions=suffixes)
    else:
        ds = ray.data.read_binary_files(list(inputs), include_paths=True)
    out = ds.map_batches(_EmbedActor, fn_constructor_args=(str(bundle), precision, backend_options),
                         concurrency=num_actors, batch_size=batch_size, batch_format="numpy",
                         num_cpus=num_cpus_per_actor)  # fmt: skip
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    out.write_parquet(str(out_dir))
    _, emb, errors = read_shards(out_dir)
    return {"images": int(emb.shape[0]) + len(errors), "embedded": int(emb.shape[0]),
            "failed": len(errors), "out": str(out_dir)}  # fmt: skip


def read_shards(folder: Union[str, Path]) -> Tuple[List[str], np.ndarray[Any, Any], Dict[str, str]]:
    """The embedded images' paths and float32 ``(N, D)`` embeddings, and the failed ones'
    errors, from the Parquet shards of :func:`embed_archive` (sorted by path)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise BackendUnavailableError("reading shards needs pyarrow: pip install 'docedge[serve]'") from None
    files = sorted(Path(folder).glob("*.parquet"))
    if not files:
        raise GalleryError(f"{folder}: no Parquet shards")
    rows: List[Tuple[str, bool, str, Any]] = []
    for f in files:
        t = pq.read_table(f).to_pydict()
        rows += list(zip(t["path"], t["ok"], t["error"], t["embedding"]))
    rows.sort(key=lambda r: r[0])
    ok = [r for r in rows if r[1]]
    emb = np.asarray([r[3] for r in ok], np.float32).reshape(len(ok), -1)
    return [r[0] for r in ok], emb, {r[0]: r[2] for r in rows if not r[1]}


def gallery_from_shards(gallery: Union[str, Path], bundle: Union[str, Path], shards: Union[str, Path],
                        precision: str = "fp32", labels: Optional[Sequence[str]] = None,
                        backend: str = "onnxruntime") -> int:  # fmt: skip
    """Add the shards' embeddings to a gallery (labels: the file stems unless given), in one
    atomic commit; returns how many were added. ``precision`` and ``backend`` name the artifact
    that embedded the shards (``backend="openvino"``: the bundle's OpenVINO IR of the
    precision), recorded in the gallery's fingerprint."""
    from .bundle import load_bundle
    from .gallery import Gallery

    paths, emb, _ = read_shards(shards)
    names = list(labels) if labels is not None else [Path(p).stem for p in paths]
    fp = load_bundle(bundle).fingerprint(precision, backend)
    exists = Path(gallery).exists()
    g = Gallery.open(gallery, expect_fingerprint=fp) if exists else Gallery.create(gallery, fp)
    g.add(emb, names, sources=paths)
    return len(paths)
