"""Write labelled synthetic image sets to disk (one folder per label, a manifest beside).

Every file name carries ``_synthetic_`` and every set has ``synth_manifest.json`` with
``"synthetic": true``, the generator version, seeds and parameters, so synthetic data is never
mistaken for real captures.
"""

from __future__ import annotations

import json
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

import cv2
import numpy as np

from docedge.runtime.errors import DocedgeError, ImageError
from docedge.runtime.preprocess import load_image
from docedge.runtime.register import scan_register

from .captures import CaptureConditions, simulate_capture
from .documents import FIRST_TRAIN_TYPE_ID, GENERATOR_VERSION, DocumentType, render

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


def _progress(items: Iterable[Any], total: int, desc: str, show: bool, unit: str) -> Iterable[Any]:
    if not show:
        return items
    from tqdm import tqdm

    bar: Iterable[Any] = tqdm(items, total=total, desc=desc, unit=unit)
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

    Files are ``<type_name>_<instance, 3 digits>_synthetic.jpg`` (JPEG quality 95), identical
    bytes for identical arguments. ``capture_strength`` > 0 passes each instance through the
    capture simulator (seeded). The manifest notes when the ids overlap the demo model's
    training ids (>= 1000): such a set is not zero-shot for the demo model.
    """
    if types < 0 or per_type < 0 or first_type_id < 0:
        raise ValueError("types, per_type and first_type_id must be >= 0")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    labels: List[str] = []
    count = 0
    ids = range(first_type_id, first_type_id + types)
    for tid in _progress(ids, types, "documents", progress, "type"):
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
              "long_side": long_side,
              "overlaps_demo_training_ids": first_type_id + types > FIRST_TRAIN_TYPE_ID},
              count)  # fmt: skip
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
    """Simulated captures of each register image into ``out/<label>/`` (DocClassifier labels:
    sub-folder names and file stem joined by ``_``), ``per_image`` files named
    ``<label>_capture<k, 3 digits>_synthetic.jpg``.

    A corrupt or unreadable register image is skipped, logged and reported in
    ``SynthReport.skipped`` (path -> problem); so is an image whose label another image already
    took (``a/b_c.png`` and ``a_b/c.png`` are both ``a_b_c``), which would mix two classes.
    Each image's captures are seeded by ``(seed, label)``, so adding files changes nothing else.
    """
    if not Path(register_dir).is_dir():
        raise DocedgeError(f"{register_dir}: register folder not found")
    items = scan_register(register_dir)
    if not items:
        raise DocedgeError(f"{register_dir}: no .jpg/.jpeg/.png images in the register folder")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    labels: List[str] = []
    skipped: Dict[str, str] = {}
    count = 0
    cond = conditions or CaptureConditions()
    owner: Dict[str, Path] = {}
    for i, (label, path) in enumerate(_progress(items, len(items), "captures", progress, "image")):
        if label in owner:
            problem = f"label {label!r} is already taken by {owner[label]}"
            logger.warning("skipping %s: %s", path, problem)
            skipped[str(path)] = problem
            continue
        try:
            img = load_image(str(path), i)
        except ImageError as e:
            logger.warning("skipping %s", e)
            skipped[str(path)] = e.problem
            continue
        owner[label] = path
        folder = root / label
        folder.mkdir(exist_ok=True)
        rng = np.random.default_rng([seed, zlib.crc32(label.encode("utf-8")), 11])
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
