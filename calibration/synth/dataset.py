"""Write labelled synthetic image sets to disk (one folder per label, a manifest beside).

Every file name carries ``_synthetic_`` and every set has ``synth_manifest.json`` with
``"synthetic": true``, the generator version, seeds and parameters, so synthetic data is never
mistaken for real captures.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

import cv2
import numpy as np

from docedge.runtime.errors import ImageError
from docedge.runtime.preprocess import load_image
from docedge.runtime.register import scan_register

from .captures import CaptureConditions, simulate_capture
from .documents import GENERATOR_VERSION, DocumentType, render

logger = logging.getLogger(__name__)

MANIFEST = "synth_manifest.json"


@dataclass
class SynthReport:
    """What a synthesis run wrote (and what it skipped)."""

    out: Path
    labels: List[str]
    files: int
    skipped: Dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"out": str(self.out), "labels": len(self.labels), "files": self.files,
                "skipped": self.skipped}  # fmt: skip


def _write(path: Path, img: np.ndarray) -> None:
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix == ".jpg" else []
    ok, buf = cv2.imencode(path.suffix, img, params)
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode the image")
    path.write_bytes(buf.tobytes())


def _progress(items: Iterable[Any], total: int, desc: str, show: bool) -> Iterable[Any]:
    if not show:
        return items
    from tqdm import tqdm

    bar: Iterable[Any] = tqdm(items, total=total, desc=desc, unit="type")
    return bar


def write_documents(
    out: Union[str, Path],
    types: int,
    per_type: int,
    first_type_id: int = 0,
    seed: int = 0,
    capture_strength: float = 0.0,
    long_side: int = 256,
    progress: bool = False,
) -> SynthReport:
    """``types`` document types x ``per_type`` instances into ``out/<type_name>/``.

    ``capture_strength`` > 0 passes each instance through the capture simulator (seeded).
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    labels: List[str] = []
    count = 0
    ids = range(first_type_id, first_type_id + types)
    for tid in _progress(ids, types, "documents", progress):
        t = DocumentType.from_id(tid, seed)
        folder = root / t.name
        folder.mkdir(exist_ok=True)
        rng = np.random.default_rng([seed, tid, 5])
        for k in range(per_type):
            img = render(t, k, long_side)
            if capture_strength > 0:
                img = simulate_capture(img, rng, capture_strength).image
            _write(folder / f"{t.name}_{k:03d}_synthetic.jpg", img)
            count += 1
        labels.append(t.name)
    _manifest(root, "documents", {"types": types, "per_type": per_type,
              "first_type_id": first_type_id, "seed": seed, "capture_strength": capture_strength,
              "long_side": long_side}, count)  # fmt: skip
    return SynthReport(root, labels, count)


def write_captures(
    register_dir: Union[str, Path],
    out: Union[str, Path],
    per_image: int,
    seed: int = 0,
    strength: float = 1.0,
    conditions: Optional[CaptureConditions] = None,
    progress: bool = False,
) -> SynthReport:
    """Simulated captures of each register image into ``out/<label>/`` (DocClassifier labels).

    A corrupt or unreadable register image is skipped and reported; the others are written.
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    items = scan_register(register_dir)
    labels: List[str] = []
    skipped: Dict[str, str] = {}
    count = 0
    cond = conditions or CaptureConditions()
    for i, (label, path) in enumerate(_progress(items, len(items), "captures", progress)):
        try:
            img = load_image(str(path), i)
        except ImageError as e:
            logger.warning("skipping %s", e)
            skipped[str(path)] = e.problem
            continue
        folder = root / label
        folder.mkdir(exist_ok=True)
        rng = np.random.default_rng([seed, i, 11])
        for k in range(per_image):
            cap = simulate_capture(img, rng, strength, cond).image
            _write(folder / f"{label}_capture{k:03d}_synthetic.jpg", cap)
            count += 1
        labels.append(label)
    _manifest(root, "captures", {"register_dir": str(register_dir), "per_image": per_image,
              "seed": seed, "strength": strength, "conditions": cond.to_dict(),
              "skipped": skipped}, count)  # fmt: skip
    return SynthReport(root, labels, count, skipped)


def _manifest(root: Path, kind: str, params: Dict[str, Any], files: int) -> None:
    data = {"synthetic": True, "kind": kind, "generator": GENERATOR_VERSION,
            "parameters": params, "files": files}  # fmt: skip
    (root / MANIFEST).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
