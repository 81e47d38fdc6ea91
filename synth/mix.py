"""The demo model's training mix: each step's classes and their two views, a pure function of
``(seed, step)`` and the (sorted) page pools.

Three sources of classes per batch:

- ``types``: synthetic document *types* (:mod:`.documents`: ID cards, passports, receipts,
  certificates...): two different instances of a type are one class (type-level identity);
- ``pages``: synthetic text pages set in real fonts (:mod:`.layouts`, a pre-rendered pool):
  one page is one class (instance-level identity: a clean scan and a photo of one paper);
- ``real``: real PDF pages (:mod:`.real_pages`, a pre-rendered pool of the TRAIN packages),
  drawn in groups of consecutive pages of one PDF (the hardest negatives), one page a class.

View A of a page class is clean (as a registered scan) with probability ``p_clean_a``; every
other view goes through :func:`.backgrounds.capture_mix` (photographed on a desk or the flat
capture simulator).

Resolution matters: the runtime resizes every input straight to 128x128 with plain bilinear
interpolation (no antialiasing), so a large image is point-sampled and its thin text strokes
alias; a model trained only on small renders fails on large ones (measured: real-page top-1
0.62 on 640 px captures vs 0.92 on the same captures antialiased to 128 px). Pools are stored
large (real pages 800 px, synthetic pages 640 px) and each view is first brought to a random
long side (:func:`resample`: log-uniform in [160, 480] px, bilinear (aliasing) or area), a
clean view is also kept at full size with probability ``p_full``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .backgrounds import capture_mix
from .captures import capture
from .documents import FIRST_TRAIN_TYPE_ID, DocumentType, render

#: Training type ids are drawn from [FIRST_TRAIN_TYPE_ID, LAST_TRAIN_TYPE_ID).
LAST_TRAIN_TYPE_ID = 2_000_000


def list_pool(root: Union[str, Path, None]) -> List[Path]:
    """Sorted ``.png`` files under ``root`` (empty for None)."""
    if root is None:
        return []
    return sorted(Path(root).rglob("*.png"))


def pool_digest(files: Sequence[Path], root: Union[str, Path, None]) -> str:
    """sha256 of the pool's relative file names (a changed pool changes the batches)."""
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root) if root else f).encode() + b"\n")
    return h.hexdigest()[:16]


def _groups(files: Sequence[Path]) -> List[List[int]]:
    """Indices of ``files`` grouped by source PDF (name up to ``_p<page>``), in file order."""
    groups: Dict[str, List[int]] = {}
    for i, f in enumerate(files):
        key = str(f.parent / f.name.rsplit("_p", 1)[0])
        groups.setdefault(key, []).append(i)
    return list(groups.values())


@dataclass
class MixSpec:
    types: int = 12
    pages: int = 12
    real: int = 16
    group: int = 4
    type_long_side: int = 256
    strength: Tuple[float, float] = (0.3, 1.0)
    p_photo: float = 0.6
    p_clean_a: float = 0.3
    resample_range: Tuple[int, int] = (160, 480)
    p_alias: float = 0.6
    p_full: float = 0.3
    p_tint: float = 0.0

    @property
    def classes(self) -> int:
        return self.types + self.pages + self.real


def resample(img: np.ndarray, rng: np.random.Generator, lo: int = 128, hi: int = 480,
             p_alias: float = 0.6) -> np.ndarray:  # fmt: skip
    """``img`` with its long side brought to a log-uniform size in [lo, hi] (never enlarged):
    plain bilinear (aliasing, as the runtime and many camera pipelines resize) with probability
    ``p_alias``, else area averaging."""
    L = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    alias = rng.random() < p_alias
    h, w = img.shape[:2]
    f = L / max(h, w)
    if f >= 1:
        return img
    size = (max(8, round(w * f)), max(8, round(h * f)))
    return cv2.resize(img, size, interpolation=cv2.INTER_LINEAR if alias else cv2.INTER_AREA)


def tint_paper(img: np.ndarray, rng: np.random.Generator, depth: float = 0.3) -> np.ndarray:
    """``img`` printed on coloured paper: each BGR channel multiplied by a factor in
    ``[1 - depth, 1]`` with the largest set to 1 (pink, green, cyan, cream... paper; ink stays
    dark because the tint multiplies)."""
    f = 1.0 - rng.uniform(0.0, depth, 3)
    f = f / f.max()
    out: np.ndarray = np.clip(img.astype(np.float32) * f.astype(np.float32), 0, 255)
    return out.astype(np.uint8)


class TrainingMix:
    """Batches of ``(2 * classes)`` BGR views: view A of every class, then view B, same order."""

    def __init__(self, spec: MixSpec, pages_root: Optional[Union[str, Path]] = None,
                 real_root: Optional[Union[str, Path]] = None) -> None:  # fmt: skip
        self.spec = spec
        self.pages = list_pool(pages_root)
        self.real = list_pool(real_root)
        self.real_groups = _groups(self.real)
        if spec.pages and not self.pages:
            raise ValueError(f"MixSpec asks for {spec.pages} synthetic pages but {pages_root} "
                             "has no .png pages (samples/build_demo_data.py)")  # fmt: skip
        if spec.real and not self.real:
            raise ValueError(f"MixSpec asks for {spec.real} real pages but {real_root} has no "
                             ".png pages (samples/build_demo_data.py)")  # fmt: skip
        self.digest = {"pages_digest": pool_digest(self.pages, pages_root),
                       "pages_n": len(self.pages), "real_digest": pool_digest(self.real, real_root),
                       "real_n": len(self.real)}  # fmt: skip

    def _load(self, path: Path) -> np.ndarray:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise OSError(f"{path}: cannot read")
        return img

    def _rs(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s = self.spec
        return resample(img, rng, s.resample_range[0], s.resample_range[1], s.p_alias)

    def _real_indices(self, rng: np.random.Generator, n: int) -> List[int]:
        out: List[int] = []
        seen = set()
        while len(out) < n:
            g = self.real_groups[int(rng.integers(len(self.real_groups)))]
            k = min(len(g), self.spec.group, n - len(out))
            start = int(rng.integers(0, len(g) - k + 1))
            for i in g[start : start + k]:
                if i not in seen:
                    seen.add(i)
                    out.append(i)
        return out

    def _tint(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # No draw at all when off, so recipes without tint keep their exact batches.
        if self.spec.p_tint > 0 and rng.random() < self.spec.p_tint:
            return tint_paper(img, rng)
        return img

    def _page_views(self, img: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, ...]:
        s = self.spec
        if rng.random() < s.p_clean_a:  # a registered scan: full size or resampled
            a = img.copy() if rng.random() < s.p_full else self._rs(img, rng)
        else:
            a = capture_mix(self._tint(self._rs(img, rng), rng), rng, s.strength, s.p_photo)
        b = capture_mix(self._tint(self._rs(img, rng), rng), rng, s.strength, s.p_photo)
        return a, b

    def batch(self, seed: int, step: int) -> Tuple[List[np.ndarray], List[np.ndarray], List[str]]:
        """(views A, views B, class source per class) of batch ``step``."""
        s = self.spec
        rng = np.random.default_rng([seed, step, 31])
        A: List[np.ndarray] = []
        B: List[np.ndarray] = []
        src: List[str] = []
        tids = rng.choice(np.arange(FIRST_TRAIN_TYPE_ID, LAST_TRAIN_TYPE_ID), s.types,
                          replace=False)  # fmt: skip
        for tid in tids:
            t = DocumentType.from_id(int(tid))
            inst = rng.choice(10**9, 2, replace=False)
            views = []
            for v in range(2):
                big = rng.random() < 0.4
                img = render(t, int(inst[v]), s.type_long_side * (2 if big else 1))
                if big:
                    img = self._rs(img, rng)
                img = self._tint(img, rng)
                if rng.random() < 0.3:
                    views.append(capture_mix(img, rng, s.strength, 1.0))
                else:
                    views.append(capture(img, rng, float(rng.uniform(*s.strength))))
            A.append(views[0])
            B.append(views[1])
            src.append("type")
        if s.pages:
            for i in rng.choice(len(self.pages), s.pages, replace=False):
                a, b = self._page_views(self._load(self.pages[int(i)]), rng)
                A.append(a)
                B.append(b)
                src.append("page")
        if s.real:
            for i in self._real_indices(rng, s.real):
                a, b = self._page_views(self._load(self.real[i]), rng)
                A.append(a)
                B.append(b)
                src.append("real")
        return A, B, src

    def describe(self) -> Dict[str, object]:
        d = dict(self.spec.__dict__)
        d["strength"] = list(self.spec.strength)
        d["resample_range"] = list(self.spec.resample_range)
        d.update(self.digest)
        out: Dict[str, object] = json.loads(json.dumps(d))
        return out
