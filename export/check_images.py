"""Deterministic, varied test images for export checks and seeded initialization.

These are real encoded files (PNG and JPEG of different sizes and aspect ratios) that go
through the runtime's own decoding and pre-processing, so export parity covers that path.
They are simple document-like drawings; the synthetic document generator in
``docedge.synth`` makes realistic ones for accuracy work.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Tuple

import cv2
import numpy as np

#: (height, width) of the generated images: portrait, landscape, square, tiny and large.
SIZES: Sequence[Tuple[int, int]] = (
    (96, 160),
    (480, 320),
    (128, 128),
    (300, 620),
    (720, 512),
    (64, 200),
    (1000, 700),
    (250, 250),
    (200, 90),
    (540, 860),
    (33, 47),
    (1024, 640),
)


def make_image(seed: int, height: int, width: int) -> np.ndarray:
    """A document-like BGR uint8 ``(height, width, 3)`` drawing determined by ``seed``."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 256, size=3)
    img = np.empty((height, width, 3), np.uint8)
    ramp = np.linspace(0.7, 1.0, width, dtype=np.float32)[None, :, None]
    img[:] = np.clip(base[None, None, :] * ramp, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 9))):
        x0, x1 = sorted(rng.integers(0, width, 2).tolist())
        y0, y1 = sorted(rng.integers(0, height, 2).tolist())
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.rectangle(img, (x0, y0), (x1, y1), color, int(rng.choice([-1, 1, 2, 3])))
    for _ in range(int(rng.integers(2, 6))):
        c = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        r = int(rng.integers(2, max(3, min(height, width) // 3)))
        cv2.circle(img, c, r, tuple(int(v) for v in rng.integers(0, 256, 3)), -1)
    scale = max(0.3, min(height, width) / 300.0)
    for row in range(int(rng.integers(2, 7))):
        text = "".join(rng.choice(list("ABCDEFGHKLMNPRSTUVXYZ0123456789 "), 12))
        y = int((row + 1) * height / 8)
        cv2.putText(
            img,
            text,
            (int(width * 0.05), y),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (20, 20, 20),
            max(1, int(scale * 2)),
            cv2.LINE_AA,
        )
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def write_check_images(folder: Path, count: int = 36, seed: int = 1234) -> List[Path]:
    """Write ``count`` encoded images (alternating PNG/JPEG, varied sizes) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        h, w = SIZES[i % len(SIZES)]
        img = make_image(seed + i, h, w)
        ext = ".png" if i % 2 == 0 else ".jpg"
        p = folder / f"check_{i:03d}{ext}"
        params = [cv2.IMWRITE_JPEG_QUALITY, 90] if ext == ".jpg" else []
        ok, buf = cv2.imencode(ext, img, params)
        if not ok:
            raise RuntimeError(f"cv2 could not encode {p}")
        p.write_bytes(buf.tobytes())
        paths.append(p)
    return paths


def check_batch(count: int = 36, seed: int = 1234) -> np.ndarray:
    """Pre-processed check images, float32 ``(count, 3, 128, 128)``, via encode/decode."""
    from docedge.runtime.preprocess import preprocess

    blobs = []
    for i in range(count):
        h, w = SIZES[i % len(SIZES)]
        ext = ".png" if i % 2 == 0 else ".jpg"
        ok, buf = cv2.imencode(ext, make_image(seed + i, h, w))
        assert ok
        blobs.append(buf.tobytes())
    batch: np.ndarray = preprocess(blobs)
    return batch


def document_check_batch(count: int = 64, seed: int = 4321) -> np.ndarray:
    """Pre-processed captures of synthetic documents, float32 ``(count, 3, 128, 128)``.

    Reduced-precision gates use these: a document model's INT8 ranges are calibrated on
    documents, and random drawings (:func:`check_batch`) are out of its input distribution.
    Type ids 900.. are held out from training (>= 1000) and from the model card's evaluation
    (0..199); every image goes through JPEG encode/decode and the runtime's pre-processing.
    """
    from docedge.runtime.preprocess import preprocess
    from docedge.synth.captures import capture
    from docedge.synth.documents import DocumentType, render

    rng = np.random.default_rng(seed)
    blobs = []
    for i in range(count):
        img = capture(render(DocumentType.from_id(900 + i % 100), 50 + i), rng, 0.6)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        assert ok
        blobs.append(buf.tobytes())
    batch: np.ndarray = preprocess(blobs)
    return batch
