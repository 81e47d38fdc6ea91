"""Calibration image sets: listing, hashing (names and contents), and streaming batches through
the runtime's exact pre-processing (``docedge.runtime.preprocess``)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

import numpy as np

from docedge.runtime.errors import ImageError
from docedge.runtime.preprocess import list_images, load_image, preprocess_bgr

logger = logging.getLogger(__name__)


def image_set_sha256(root: Path, files: List[Path]) -> str:
    """SHA-256 over the sorted relative file names (POSIX form) and each file's contents."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        h.update(f.relative_to(root).as_posix().encode("utf-8") + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


@dataclass
class ImageSet:
    """Calibration images under ``root``: the files used, their hash, how many the folder held,
    and files that could not be decoded (path -> problem)."""

    root: Path
    files: List[Path]
    sha256: str
    files_total: int = 0
    skipped: Dict[str, str] = field(default_factory=dict)

    @classmethod
    def scan(cls, root: Union[str, Path], max_images: Optional[int] = None, seed: int = 0
             ) -> ImageSet:  # fmt: skip
        """List ``.jpg/.jpeg/.png`` images under ``root`` (recursively). Over ``max_images``, a
        seeded uniform subset is used; the hash covers exactly the files used."""
        base = Path(root)
        files = list_images(base)
        if not files:
            raise ImageError(str(base), "no .jpg/.jpeg/.png images found")
        total = len(files)
        if max_images is not None and total > max_images:
            idx = np.random.default_rng(seed).choice(total, max_images, replace=False)
            files = [files[i] for i in sorted(idx)]
        return cls(base, files, image_set_sha256(base, files), total)

    def __len__(self) -> int:
        return len(self.files)

    def num_batches(self, batch_size: int) -> int:
        return -(-len(self.files) // batch_size)

    def batches(self, batch_size: int = 16) -> Iterator[np.ndarray]:
        """Pre-processed float32 ``(n <= batch_size, 3, 128, 128)`` BGR batches in [0, 1].

        Streams (memory bounded by ``batch_size``); unreadable files are skipped with a
        warning and listed in ``skipped``.
        """
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

    def record(self) -> Dict[str, Any]:
        """Provenance for the manifest."""
        return {"data_sha256": self.sha256, "images": len(self.files),
                "images_in_folder": self.files_total, "images_dir": str(self.root),
                "skipped_images": dict(self.skipped)}  # fmt: skip


def _reader_base() -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    return CalibrationDataReader


class ImageSetReader(_reader_base()):  # type: ignore[misc]
    """ONNX Runtime ``CalibrationDataReader`` streaming an :class:`ImageSet` in batches
    (``{input_name: float32 (n, 3, 128, 128)}``), with an optional tqdm bar; ``rewind()``
    starts over. For ONNX Runtime's own calibrators and ``quantize_static``."""

    def __init__(self, images: ImageSet, input_name: str = "img", batch_size: int = 16,
                 max_batches: Optional[int] = None, progress: bool = False) -> None:  # fmt: skip
        self.images = images
        self.input_name = input_name
        self.batch_size = batch_size
        self.max_batches = max_batches
        self.progress = progress
        self._it: Optional[Iterator[np.ndarray]] = None
        self.rewind()

    def rewind(self) -> None:
        it: Iterator[np.ndarray] = self.images.batches(self.batch_size)
        n = self.images.num_batches(self.batch_size)
        if self.max_batches is not None:
            import itertools

            it = itertools.islice(it, self.max_batches)
            n = min(n, self.max_batches)
        if self.progress:
            from tqdm import tqdm

            it = iter(tqdm(it, total=n, desc="calibration", unit="batch"))
        self._it = it

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        assert self._it is not None
        x = next(self._it, None)
        return None if x is None else {self.input_name: x}
