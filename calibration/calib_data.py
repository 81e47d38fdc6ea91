"""Calibration image sets: listing, hashing (names and contents) and streaming batches through
the runtime's exact pre-processing."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Union

import numpy as np

from docedge.runtime.errors import ImageError
from docedge.runtime.preprocess import list_images, load_image, preprocess_bgr

logger = logging.getLogger(__name__)


@dataclass
class ImageSet:
    """A folder of images, its SHA-256 (sorted relative names + contents) and failures."""

    root: Path
    files: List[Path]
    sha256: str
    skipped: Dict[str, str] = field(default_factory=dict)

    @classmethod
    def scan(cls, root: Union[str, Path], max_images: Optional[int] = None, seed: int = 0
             ) -> ImageSet:  # fmt: skip
        """List images under ``root`` (a seeded uniform subset when over ``max_images``)."""
        base = Path(root)
        files = list_images(base)
        if not files:
            raise ImageError(str(base), "no .jpg/.jpeg/.png images found")
        if max_images is not None and len(files) > max_images:
            idx = np.random.default_rng(seed).choice(len(files), max_images, replace=False)
            files = [files[i] for i in sorted(idx)]
        h = hashlib.sha256()
        for f in files:
            h.update(f.relative_to(base).as_posix().encode("utf-8") + b"\0")
            h.update(hashlib.sha256(f.read_bytes()).digest())
        return cls(base, files, h.hexdigest())

    def batches(self, batch_size: int = 16) -> Iterator[np.ndarray]:
        """Pre-processed float32 ``(n, 3, 128, 128)`` batches; unreadable files are skipped
        (recorded in ``skipped``). Streams: memory is bounded by ``batch_size``."""
        buf: List[np.ndarray] = []
        for i, f in enumerate(self.files):
            try:
                buf.append(preprocess_bgr(load_image(str(f), i)))
            except ImageError as e:
                if str(f) not in self.skipped:
                    logger.warning("calibration: skipping %s", e)
                self.skipped[str(f)] = e.problem
                continue
            if len(buf) == batch_size:
                yield np.stack(buf)
                buf = []
        if buf:
            yield np.stack(buf)
