"""Make a release bundle in one call: fp32 export, FP16, INT8, threshold tables, other formats.

This is the one place that sequences the stages; ``docedge export``, ``docedge demo``, the
samples and the tests call :func:`make_bundle` instead of repeating the order and constants.
Each stage commits through its own :class:`~docedge.runtime.bundle_commit.BundleTransaction`,
so a failure leaves the bundle as the last completed stage left it.

Threshold tables per precision:
- with ``threshold_images`` (labelled ``DIR/<class>/*``): measured for every precision shipped;
- otherwise fp32 keeps the model card's (or a user-named) table; fp16 inherits fp32's table
  only when its measured agreement with fp32 justifies it (cosine min >= 0.9995 on the gate
  images; recorded as ``inherited_from``); INT8 gets no table and the result says what to run.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from docedge.runtime.bundle import PRECISIONS, Bundle, load_bundle
from docedge.runtime.errors import DocedgeError
from docedge.runtime.thresholds import BORROW_TABLE_MIN_COSINE, commit_tables

logger = logging.getLogger(__name__)

#: fp16 may reuse fp32's threshold table when its worst cosine to fp32's reference is above this
#: (the runtime's rule for borrowing fp32's table, which the OpenVINO bf16 IR follows too).
FP16_INHERIT_MIN_COSINE = BORROW_TABLE_MIN_COSINE


@dataclass(frozen=True)
class SyntheticSet:
    """A seeded synthetic set: ``types`` document types x ``per_type`` captures, and ``pages``
    captures of text pages set in real fonts (``docedge.synth.layouts``: articles, tables,
    forms, letters...; ids from ``first_page_id``, never trained on), photographed on a desk or
    through the flat simulator, at 480-1280 px: pages that look like what users scan."""

    types: int
    per_type: int
    first_type_id: int
    capture_strength: float = 0.7
    pages: int = 0
    first_page_id: int = 60_000

    def write(self, folder: Union[str, Path], progress: bool = False) -> Path:
        """Write it as ``folder/<type>/*.jpg`` (+ ``folder/pages/*.jpg``) and return ``folder``.
        Without fonts on the machine the pages are left out with a warning (types only)."""
        from docedge.synth.dataset import write_documents

        write_documents(folder, types=self.types, per_type=self.per_type,
                        first_type_id=self.first_type_id, capture_strength=self.capture_strength,
                        progress=progress)  # fmt: skip
        if self.pages:
            self._write_pages(Path(folder) / "pages")
        return Path(folder)

    def _write_pages(self, out: Path) -> None:
        import cv2
        import numpy as np

        from docedge.synth.backgrounds import capture_mix
        from docedge.synth.fonts import FontsNotFoundError
        from docedge.synth.layouts import render_page

        out.mkdir(parents=True, exist_ok=True)
        for k in range(self.pages):
            pid = self.first_page_id + k
            rng = np.random.default_rng([pid, 77])
            long_side = int(rng.choice([480, 640, 960, 1280]))
            try:
                page = render_page(pid, 0, long_side)
            except FontsNotFoundError as e:
                logger.warning("calibration set without text pages: %s", e)
                return
            img = capture_mix(page, rng)
            cv2.imwrite(str(out / f"page{pid:06d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])


#: INT8 calibration data of the demo model when the user gives none: document types and text
#: pages never trained on (real-looking pages keep INT8 faithful on real scans, issue 13;
#: measured on the demo model with the stem float: gate cosine mean 0.9968, min 0.9744).
DEMO_CALIBRATION = SyntheticSet(types=100, per_type=3, first_type_id=5000, pages=150)
#: Labelled data the demo model's per-precision threshold tables are measured on.
DEMO_THRESHOLDS = SyntheticSet(types=40, per_type=5, first_type_id=400)


@dataclass
class BundleResult:
    """What :func:`make_bundle` did: the bundle, and one line per decision taken."""

    bundle: Bundle
    notes: List[str] = field(default_factory=list)
    tables: Dict[str, str] = field(default_factory=dict)  # precision -> how its table was made


def parse_precisions(text: Union[str, Sequence[str]]) -> List[str]:
    """``"fp16,int8"`` -> ``["fp32", "fp16", "int8"]`` (fp32 always first); unknown names are
    a :class:`DocedgeError` listing the valid ones."""
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    bad = [t for t in items if t not in PRECISIONS]
    if bad:
        raise DocedgeError(f"unknown precision(s) {bad}; choose from {list(PRECISIONS)}")
    return ["fp32"] + [t for t in PRECISIONS[1:] if t in items]


def make_bundle(
    out_dir: Union[str, Path],
    reference: Any,
    precisions: Sequence[str] = ("fp32",),
    formats: Sequence[str] = ("onnx",),
    calib_images: Optional[Union[str, Path]] = None,
    calib_method: Optional[str] = None,
    threshold_images: Optional[Union[str, Path]] = None,
    opset: Optional[int] = None,
    overwrite: bool = False,
    progress: bool = True,
) -> BundleResult:
    """Export ``reference`` (a :class:`~docedge.export.reference.ReferenceModel`) to a bundle with
    every precision in ``precisions`` and every extra format in ``formats``, each gated.

    INT8 needs ``calib_images`` (images like the ones the device will see) except for the demo
    model, which calibrates on :data:`DEMO_CALIBRATION`.
    """
    from docedge.export.bundle_writer import export_bundle
    from docedge.export.onnx_export import DEFAULT_OPSET  # torch: export runs here anyway

    precs = parse_precisions(precisions)
    is_demo = reference.source.get("kind") == "demo-weights"
    if "int8" in precs and calib_images is None and not is_demo:
        raise DocedgeError("INT8 needs calibration images (calib_images / --calib-images DIR): "
                           "images like the ones the device will see")  # fmt: skip
    out = Path(out_dir)
    export_bundle(out, reference=reference, opset=opset or DEFAULT_OPSET, overwrite=overwrite)
    result = BundleResult(load_bundle(out))
    if "fp16" in precs:
        from docedge.export.fp16 import add_fp16_artifact

        add_fp16_artifact(out, reference)
    if "int8" in precs:
        from .int8 import calibrate_int8

        options: Dict[str, Any] = {"method": calib_method} if calib_method else {}
        with tempfile.TemporaryDirectory(prefix="docedge-calib-") as tmp:
            calib = calib_images
            if calib is None:
                calib = DEMO_CALIBRATION.write(Path(tmp) / "synthetic_calibration", progress)
                result.notes.append(f"int8 calibrated on the demo's synthetic set {DEMO_CALIBRATION}")
            calibrate_int8(out, calib, reference=reference, progress=progress, **options)
    _tables(out, precs, threshold_images, result, progress)
    extra = [f for f in formats if f != "onnx"]
    if extra:
        from docedge.export.formats import convert_bundle

        from .int8 import default_float_nodes

        convert_bundle(out, extra, reference=reference, calib_images=calib_images,
                       int8_float_nodes=default_float_nodes)  # fmt: skip
    result.bundle = load_bundle(out)
    return result


def _tables(out: Path, precs: Sequence[str], images: Optional[Union[str, Path]],
            result: BundleResult, progress: bool) -> None:  # fmt: skip
    from .thresholds import calibrate_thresholds

    if images is not None:
        calibrate_thresholds(out, images, precs, replace=True)
        result.tables.update({p: f"measured on {images}" for p in precs})
        return
    bundle = load_bundle(out)
    fp32 = bundle.thresholds("fp32")
    if fp32 is None:
        result.notes.append("no threshold table: run `docedge calibrate thresholds "
                            f"{out} --images LABELLED` (or classify with --threshold)")  # fmt: skip
        return
    result.tables["fp32"] = str((fp32.get("source") or {}).get("origin", "model card"))
    if "fp16" in precs:
        v = bundle.artifact("fp16").record.get("verification") or {}
        cos_min = float(v.get("cos_min", 0.0))
        if cos_min >= FP16_INHERIT_MIN_COSINE:
            table = dict(fp32, precision="fp16")
            table["source"] = dict(fp32.get("source") or {}, inherited_from="fp32",
                                   inherited_because=f"fp16 cosine min {cos_min:.6f} to the "
                                   f"reference >= {FP16_INHERIT_MIN_COSINE}")  # fmt: skip
            commit_tables(out, {"fp16": table})
            result.tables["fp16"] = "inherited from fp32"
        else:
            result.notes.append(f"fp16 has no table (cosine min {cos_min:.6f} < "
                                f"{FP16_INHERIT_MIN_COSINE}): run `docedge calibrate thresholds "
                                f"{out} --images LABELLED --precision fp16`")  # fmt: skip
    if "int8" in precs:
        result.notes.append("int8 has no table of its own: run `docedge calibrate thresholds "
                            f"{out} --images LABELLED --precision int8` on images like the "
                            "device's (INT8 moves scores; it never borrows fp32's table)")  # fmt: skip
