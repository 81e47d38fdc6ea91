"""Helpers for the gallery tests: unit vectors, a fake fingerprint, and a fast fake embedder
(no model: an image's embedding is a fixed random projection of its 16x16 thumbnail), so that
register sync, rebuild and the CLI plumbing can be tested in milliseconds."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np

from docedge.runtime.embedder import EmbedResult
from docedge.runtime.errors import ImageError

FP = {
    "model_sha256": "m" * 64,
    "artifact_sha256": "a" * 64,
    "precision": "fp32",
    "preprocess": "{}",
}


def unit(n: int, dim: int = 256, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class FakeBundle:
    def __init__(self, model: str = "m", precision_tag: str = "") -> None:
        self.model = model
        self.tag = precision_tag

    def fingerprint(self, precision: str = "fp32") -> Dict[str, str]:
        return {
            "model_sha256": self.model * 64,
            "artifact_sha256": (precision + self.tag) * 8,
            "precision": precision,
            "preprocess": '{"color_order": "BGR"}',
        }


class FakeEmbedder:
    """Deterministic, content-dependent unit embeddings; counts what it embedded."""

    def __init__(self, model: str = "m", precision: str = "fp32", dim: int = 256) -> None:
        self.bundle = FakeBundle(model)
        self.precision = precision
        self.dim = dim
        self.embedded: List[str] = []
        seed = int(hashlib.sha256(f"{model}/{precision}".encode()).hexdigest()[:8], 16)
        rng = np.random.default_rng(seed)
        self._proj = rng.standard_normal((16 * 16 * 3, dim)).astype(np.float32)

    def embed_many(self, images: List[str]) -> EmbedResult:
        emb = np.full((len(images), self.dim), np.nan, np.float32)
        ok = np.zeros(len(images), bool)
        errors: Dict[int, ImageError] = {}
        for i, path in enumerate(images):
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                errors[i] = ImageError(str(path), "cannot decode image")
                continue
            self.embedded.append(str(path))
            x = cv2.resize(img, (16, 16)).astype(np.float32).reshape(-1) / 255.0 - 0.5
            v = x @ self._proj
            emb[i] = v / np.linalg.norm(v)
            ok[i] = True
        return EmbedResult(emb, ok, errors)


def write_image(path: Path, seed: int, size: int = 64) -> Path:
    """A random colour image (PNG/JPEG by suffix), different per seed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), (size, size),
                     interpolation=cv2.INTER_NEAREST)  # fmt: skip
    assert cv2.imwrite(str(path), img)
    return path
