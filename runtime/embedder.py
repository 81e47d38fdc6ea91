"""Embed images with a bundle: pre-processing + a backend + batching + per-item errors."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .backends import Backend, create_backend
from .bundle import Artifact, Bundle, load_bundle
from .errors import BundleError, ImageError
from .preprocess import ImageInput, describe_source, load_image, preprocess_bgr

logger = logging.getLogger(__name__)


@dataclass
class EmbedResult:
    """Outcome of :meth:`Embedder.embed_many` for N inputs.

    ``embeddings``: float32 ``(N, D)``; rows of failed items are NaN.
    ``ok``: bool ``(N,)``. ``errors``: item index -> :class:`ImageError` for failed items.
    """

    embeddings: np.ndarray[Any, Any]
    ok: np.ndarray[Any, Any]
    errors: Dict[int, ImageError] = field(default_factory=dict)

    @property
    def valid(self) -> np.ndarray[Any, Any]:
        """Embeddings of the successful items only, ``(n_ok, D)``, in input order."""
        valid: np.ndarray[Any, Any] = self.embeddings[self.ok]
        return valid


class Embedder:
    """Turns images into unit 256-d embeddings with one artifact of a bundle.

    ``bundle``: a :class:`Bundle` or a bundle directory. ``precision``: which artifact
    (``fp32``, ``fp16``, ``int8``; ``bf16`` with OpenVINO). ``backend``: ``onnxruntime``,
    ``openvino``, ``tensorrt`` or ``auto`` (OpenVINO where the bundle's OpenVINO artifact was
    measured faster, else ONNX Runtime; the choice and its reason are logged and in
    :meth:`describe`); extra keyword ``backend_options`` go to the backend (e.g.
    ``providers=["cuda"]``). ``batch_size`` caps
    the batches sent to the backend (larger inputs are split). Thread-safe when the backend is.
    """

    def __init__(
        self,
        bundle: Union[Bundle, str, Path],
        precision: str = "fp32",
        backend: str = "onnxruntime",
        batch_size: int = 32,
        **backend_options: Any,
    ) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.precision = precision
        self.spec = self.bundle.preprocess
        if backend == "auto":  # the speed measured at this batch size decides
            backend_options.setdefault("batch_size", batch_size)
        self.backend: Backend = create_backend(self.bundle, precision, backend, **backend_options)
        choice = getattr(self.backend, "backend_choice", None)  # backend="auto": what it chose
        #: The engine that runs (``auto`` resolved) and the artifact whose embeddings it makes
        #: (an OpenVINO IR for ``bf16``, and for ``int8`` with OpenVINO when the bundle has one).
        self.engine = str(choice.backend) if choice is not None else backend
        self.artifact: Optional[Artifact] = None
        self._no_artifact = ""
        try:
            self.artifact = self.bundle.embedding_artifact(precision, self.engine)
        except (BundleError, ValueError) as e:  # an engine outside the bundle's records
            self._no_artifact = str(e)
        cap = self.backend.max_batch
        self.batch_size = max(1, min(batch_size, cap) if cap else batch_size)
        self.dim = self.bundle.embedding_dim

    def fingerprint(self) -> Dict[str, str]:
        """The gallery fingerprint of this embedder's artifact (:meth:`Bundle.fingerprint`)."""
        if self.artifact is None:
            raise BundleError(f"cannot tell which artifact made these embeddings: {self._no_artifact}")
        return self.bundle.fingerprint(artifact=self.artifact)

    # --- pre-processing -------------------------------------------------------------------
    def preprocess_one(self, item: ImageInput, index: int = 0) -> np.ndarray[Any, Any]:
        """One input -> float32 ``(3, 128, 128)``; raises :class:`ImageError`."""
        return preprocess_bgr(load_image(item, index), self.spec)

    # --- inference --------------------------------------------------------------------------
    def run_tensor(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Pre-processed float32 ``(N, 3, 128, 128)`` -> float32 ``(N, D)``, split in batches."""
        if x.ndim != 4 or x.shape[1:] != (3, self.spec.height, self.spec.width):
            raise ValueError(
                f"expected (N, 3, {self.spec.height}, {self.spec.width}), got {x.shape}"
            )
        out = np.empty((x.shape[0], self.dim), dtype=np.float32)
        for start in range(0, x.shape[0], self.batch_size):
            chunk = x[start : start + self.batch_size]
            out[start : start + len(chunk)] = self.backend.run(chunk)
        return out

    def embed(self, images: Sequence[ImageInput]) -> np.ndarray[Any, Any]:
        """Embed images (paths, encoded bytes or BGR/gray/BGRA uint8 arrays).

        Returns float32 ``(N, D)`` unit vectors. Strict: the first unreadable image raises
        :class:`ImageError` naming it. Use :meth:`embed_many` to keep going past bad items.
        """
        if isinstance(images, (str, bytes, Path, np.ndarray)):
            images = [images]
        result = self.embed_many(images)
        if result.errors:
            first = min(result.errors)
            raise result.errors[first]
        return result.embeddings

    def embed_many(self, images: Sequence[ImageInput], prefetch: bool = True,
                   workers: Optional[int] = None) -> EmbedResult:  # fmt: skip
        """Embed images, isolating failures: a corrupt image fails that item only.

        Batches stream through a pipeline: while the backend runs batch ``i``, ``workers``
        threads (default: one per CPU, at most 4) decode and pre-process the images of batch
        ``i + 1`` in parallel (OpenCV and ONNX Runtime release the GIL), so decoding, the
        dominant stage for large JPEGs, spreads over the cores and overlaps inference; memory
        stays bounded by two batches. Results do not depend on ``workers``. ``prefetch=False``
        runs the stages one after the other on the calling thread.
        """
        n = len(images)
        emb = np.full((n, self.dim), np.nan, dtype=np.float32)
        ok = np.zeros(n, dtype=bool)
        errors: Dict[int, ImageError] = {}
        starts = list(range(0, n, self.batch_size))
        shape = (self.batch_size, 3, self.spec.height, self.spec.width)

        def load_into(buf: np.ndarray[Any, Any], slot: int, i: int) -> Optional[ImageError]:
            try:
                buf[slot] = self.preprocess_one(images[i], i)
            except ImageError as e:
                return e
            except (cv2.error, MemoryError, ValueError) as e:  # never abort the whole batch
                return ImageError(describe_source(images[i], i), f"cannot pre-process ({e})")
            return None

        def finish(buf: np.ndarray[Any, Any], start: int,
                   failed: List[Optional[ImageError]]) -> None:  # fmt: skip
            for slot, err in enumerate(failed):
                if err is not None:
                    logger.warning("skipping image: %s", err)
                    errors[start + slot] = err
            slots = [slot for slot, err in enumerate(failed) if err is None]
            if not slots:
                return
            # the loaded rows, copied together only when a failed image left a gap
            x = buf[: len(slots)] if slots[-1] == len(slots) - 1 else buf[slots]
            out = self.backend.run(x)
            finite = np.all(np.isfinite(out), axis=1)
            for r, slot in enumerate(slots):
                i = start + slot
                if finite[r]:
                    emb[i], ok[i] = out[r], True
                else:
                    errors[i] = ImageError(describe_source(images[i], i),
                                           "the model produced a non-finite embedding")  # fmt: skip

        if not prefetch or n < 2:
            for start in starts:
                buf = np.empty(shape, np.float32)
                stop = min(n, start + self.batch_size)
                finish(buf, start, [load_into(buf, i - start, i) for i in range(start, stop)])
            return EmbedResult(emb, ok, errors)
        w = workers if workers is not None else min(4, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=max(1, w), thread_name_prefix="docedge-prep") as pool:

            def submit(start: int) -> Tuple[np.ndarray[Any, Any], int, List[Any]]:
                buf = np.empty(shape, np.float32)
                stop = min(n, start + self.batch_size)
                return buf, start, [pool.submit(load_into, buf, i - start, i)
                                    for i in range(start, stop)]  # fmt: skip

            pending = submit(starts[0])
            for nxt in [*starts[1:], None]:
                buf, start, futures = pending
                failed = [f.result() for f in futures]
                if nxt is not None:
                    pending = submit(nxt)  # decoded while this batch runs
                finish(buf, start, failed)
        return EmbedResult(emb, ok, errors)

    def describe(self) -> Dict[str, Any]:
        d = dict(self.backend.describe())
        d["batch_size"] = self.batch_size
        choice = getattr(self.backend, "backend_choice", None)
        if choice is not None:
            d["backend_choice"] = choice.to_dict()
        return d

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def embed_images(
    bundle: Union[Bundle, str, Path],
    images: Sequence[ImageInput],
    precision: str = "fp32",
    **options: Any,
) -> np.ndarray[Any, Any]:
    """One-shot helper: embed ``images`` with the bundle's ``precision`` artifact."""
    with Embedder(bundle, precision=precision, **options) as e:
        return e.embed(images)
