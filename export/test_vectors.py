"""Pre-processing test vectors for device integrators.

A handful of input images of different sizes and aspect ratios (PNG: lossless, decoded the
same on every platform), the exact float32 NCHW tensors docedge feeds the model for each
(``cv2.imread`` BGR, ``cv2.resize`` INTER_LINEAR to 128x128, /255, HWC -> CHW), and the
PyTorch reference's embeddings of those tensors; plus ``index.json`` describing them, the
tolerances (:mod:`docedge.runtime.test_vectors`) and how far the common mistakes
(antialiased resize, RGB order) move each embedding. An integrator runs their own decode +
resize + colour handling on the PNGs and compares with one call.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple, Union

import cv2
import numpy as np

from docedge.runtime.preprocess import DEFAULT_SPEC, load_image, preprocess_bgr
from docedge.runtime.test_vectors import (
    ARCHIVE_NAME,
    EMBEDDING_COS_MIN,
    INDEX_NAME,
    SCHEMA,
    TENSOR_MAX_ABS,
    TENSOR_MEAN_ABS,
    VECTOR_DIR,
)

logger = logging.getLogger(__name__)

#: (name, height, width, document type id): portrait phone photo, landscape scan, receipt strip,
#: square, tiny crop, exactly the model size.
VECTORS: Sequence[Tuple[str, int, int, int]] = (
    ("portrait_1600x1200", 1600, 1200, 901),
    ("landscape_620x300", 300, 620, 902),
    ("receipt_900x240", 900, 240, 903),
    ("square_250", 250, 250, 904),
    ("tiny_47x33", 33, 47, 905),
    ("exact_128", 128, 128, 906),
)

Embed = Callable[[np.ndarray], np.ndarray]


def vector_image(height: int, width: int, type_id: int, seed: int = 0) -> np.ndarray:
    """A captured synthetic document scaled to ``(height, width)``: BGR uint8."""
    from docedge.synth.captures import capture
    from docedge.synth.documents import DocumentType, render

    doc = render(DocumentType.from_id(type_id), 70 + seed, long_side=max(256, max(height, width)))
    img = capture(doc, np.random.default_rng([type_id, seed]), 0.4)
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)


def _antialiased(img: np.ndarray) -> np.ndarray:
    """What platform bitmap scalers often do: an area-averaging (antialiased) downscale."""
    s = DEFAULT_SPEC
    resized = cv2.resize(img, (s.width, s.height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray((resized.astype(np.float32) / 255.0).transpose(2, 0, 1))


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a64 @ b64) / max(float(np.linalg.norm(a64)) * float(np.linalg.norm(b64)), 1e-30)


def write_test_vectors(out_dir: Union[str, Path], embed: Embed, reference: str,
                       vectors: Sequence[Tuple[str, int, int, int]] = VECTORS) -> Dict[str, Any]:  # fmt: skip
    """Write the vectors into ``out_dir`` (created; normally ``<bundle>/test_vectors``).

    ``embed`` maps float32 NCHW batches to unit embeddings (the PyTorch reference);
    ``reference`` says what it is. Returns the index written to ``index.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries: List[Dict[str, Any]] = []
    tensors, aa, rgb = [], [], []
    for name, h, w, type_id in vectors:
        img = vector_image(h, w, type_id)
        png = out / f"{name}.png"
        ok, buf = cv2.imencode(".png", img)
        if not ok:
            raise RuntimeError(f"{png}: OpenCV could not encode the image")
        png.write_bytes(buf.tobytes())
        decoded = load_image(png)  # the runtime's own decode of the file just written
        x = preprocess_bgr(decoded, DEFAULT_SPEC)[None]
        np.save(out / f"{name}.tensor.npy", x.astype(np.float32), allow_pickle=False)
        tensors.append(x)
        aa.append(_antialiased(decoded)[None])
        rgb.append(x[:, ::-1].copy())
        entries.append({"name": name, "image": png.name, "height": h, "width": w,
                        "tensor": f"{name}.tensor.npy", "embedding": f"{name}.embedding.npy"})  # fmt: skip
    x_all = np.concatenate(tensors)
    emb = np.asarray(embed(x_all), np.float32)
    emb_aa = np.asarray(embed(np.concatenate(aa)), np.float32)
    emb_rgb = np.asarray(embed(np.concatenate(rgb)), np.float32)
    for i, e in enumerate(entries):
        np.save(out / e["embedding"], emb[i], allow_pickle=False)
        aa_tensor = np.abs(np.concatenate(aa)[i] - x_all[i])
        e["drift"] = {
            "antialiased_resize": {"cos": _cos(emb[i], emb_aa[i]), "tensor_max_abs": float(aa_tensor.max()),
                                   "tensor_mean_abs": float(aa_tensor.mean())},
            "rgb_instead_of_bgr": {"cos": _cos(emb[i], emb_rgb[i])},
        }  # fmt: skip
    index: Dict[str, Any] = {
        "schema": SCHEMA,
        "schema_version": 1,
        "preprocess": DEFAULT_SPEC.to_dict(),
        "decode": "cv2.imread / cv2.imdecode (IMREAD_UNCHANGED then BGR), 8-bit PNG without colour profile",
        "tensor": {
            "dtype": "float32",
            "layout": "NCHW",
            "shape": [1, 3, DEFAULT_SPEC.height, DEFAULT_SPEC.width],
            "format": "NumPy .npy (version 1, little-endian, no pickle)",
            "nhwc": "transpose (0, 2, 3, 1) for NHWC artifacts (LiteRT, the _nhwc ONNX)",
        },
        "embedding": {"dtype": "float32", "shape": [256], "l2_normalized": True, "reference": reference},
        "tolerance": {
            "tensor_max_abs": TENSOR_MAX_ABS,
            "tensor_mean_abs": TENSOR_MEAN_ABS,
            "embedding_cos_min": dict(EMBEDDING_COS_MIN),
        },
        "vectors": entries,
    }
    (out / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    logger.info("test vectors: %d images written to %s", len(entries), out)
    return index


def write_test_vector_archive(zip_path: Union[str, Path], embed: Embed, reference: str) -> Dict[str, Any]:
    """Write the vectors as ``test_vectors.zip`` (what a bundle ships); returns the index plus
    ``contents`` (every archived file with its hash)."""
    import tempfile

    from .archive import zip_tree

    with tempfile.TemporaryDirectory(prefix="docedge-vectors-") as tmp:
        folder = Path(tmp) / VECTOR_DIR
        index = write_test_vectors(folder, embed, reference)
        contents = zip_tree(folder, Path(zip_path))
    return dict(index, contents=contents)


__all__ = ["ARCHIVE_NAME", "VECTORS", "write_test_vector_archive", "write_test_vectors"]
