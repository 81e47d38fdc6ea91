"""Image decoding and pre-processing, exactly as DocClassifier does it.

BGR colour order (as OpenCV decodes), ``cv2.resize`` straight to 128x128 with INTER_LINEAR
(no aspect keeping, no padding, no crop), float32 divided by 255 (no mean/std), HWC -> CHW,
batch axis first. Any change here breaks parity with the PyTorch reference, so the export,
calibration and QA stages all call these functions rather than their own copies.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .errors import ImageError

#: An image given to the runtime: a file path, encoded bytes, or a decoded numpy array
#: (BGR uint8 ``(H, W, 3)``; grayscale ``(H, W)`` / ``(H, W, 1)`` and BGRA ``(H, W, 4)`` accepted).
ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, np.ndarray]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

#: Default caps on one input image (environment: ``DOCEDGE_MAX_IMAGE_BYTES``,
#: ``DOCEDGE_MAX_IMAGE_PIXELS``). A document photo of 50 megapixels is far above any phone
#: camera's; a 100000 x 100000 PNG header in 74 bytes is refused before any pixel is decoded.
DEFAULT_MAX_IMAGE_BYTES = 64 << 20
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000


def max_image_bytes() -> int:
    """The byte cap on one encoded image (``DOCEDGE_MAX_IMAGE_BYTES`` or 64 MiB)."""
    return int(os.environ.get("DOCEDGE_MAX_IMAGE_BYTES", DEFAULT_MAX_IMAGE_BYTES))


def max_image_pixels() -> int:
    """The pixel cap on one decoded image (``DOCEDGE_MAX_IMAGE_PIXELS`` or 50 megapixels)."""
    return int(os.environ.get("DOCEDGE_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS))


def header_size(data: bytes) -> Optional[Tuple[int, int]]:
    """``(width, height)`` from a PNG or JPEG header without decoding, or None (other formats).

    Written here because OpenCV has no header-only probe and the runtime takes no other image
    library; it only needs the PNG IHDR chunk and the JPEG SOFn marker."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if data[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        seg = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > n:
                return None
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        i += 2 + seg
    return None


@dataclass(frozen=True)
class PreprocessSpec:
    """What the model expects; recorded in every bundle, gallery and artifact."""

    height: int = 128
    width: int = 128
    color_order: str = "BGR"
    interpolation: str = "INTER_LINEAR"
    scale: float = 1.0 / 255.0
    mean: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    layout: str = "NCHW"
    keep_aspect: bool = False

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> PreprocessSpec:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if "mean" in known:
            known["mean"] = tuple(known["mean"])
        if "std" in known:
            known["std"] = tuple(known["std"])
        return cls(**known)


DEFAULT_SPEC = PreprocessSpec()

_INTERPOLATIONS = {"INTER_LINEAR": cv2.INTER_LINEAR}


def describe_source(item: object, index: int) -> str:
    """A short human name for an input item, used in error messages."""
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return f"<bytes #{index}>"
    if isinstance(item, np.ndarray):
        return f"<array #{index}>"
    return f"<{type(item).__name__} #{index}>"


def _decode(data: Union[bytes, bytearray, memoryview], source: str) -> np.ndarray[Any, Any]:
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        raise ImageError(source, "empty image data")
    if buf.size > max_image_bytes():
        raise ImageError(source, f"{buf.size} bytes, more than the {max_image_bytes()} byte cap "
                         "(DOCEDGE_MAX_IMAGE_BYTES)")  # fmt: skip
    dims = header_size(bytes(buf[:65536]))
    if dims is not None:
        _check_pixels(source, dims[0], dims[1])
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as e:  # OpenCV's own size validation, unsupported variants
        raise ImageError(source, f"cannot decode ({str(e).strip().splitlines()[-1][:200]})") from None
    except MemoryError:
        raise ImageError(source, "not enough memory to decode it") from None
    if img is not None:
        _check_pixels(source, img.shape[1], img.shape[0])
    if img is None:
        raise ImageError(source, "not a decodable image (corrupt or unsupported format)")
    return img


def _check_pixels(source: str, width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ImageError(source, f"empty image ({width} x {height})")
    if width * height > max_image_pixels():
        raise ImageError(source, f"{width} x {height} pixels, more than the {max_image_pixels():,} "
                         "pixel cap (DOCEDGE_MAX_IMAGE_PIXELS)")  # fmt: skip


def to_bgr(img: np.ndarray[Any, Any], source: str = "<array>") -> np.ndarray[Any, Any]:
    """Convert a decoded image to BGR uint8 ``(H, W, 3)``.

    Accepts uint8 BGR, grayscale ``(H, W)``/``(H, W, 1)`` and BGRA ``(H, W, 4)``;
    16-bit images (PNG) are scaled to 8 bit. Anything else raises :class:`ImageError`.
    """
    if not isinstance(img, np.ndarray):
        raise ImageError(source, f"expected a numpy array, got {type(img).__name__}")
    if img.ndim in (2, 3) and (img.shape[0] < 1 or img.shape[1] < 1):
        raise ImageError(source, f"empty image of shape {img.shape}")
    if img.ndim in (2, 3):
        _check_pixels(source, img.shape[1], img.shape[0])
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.dtype != np.uint8:
        raise ImageError(
            source, f"unsupported dtype {img.dtype}; give uint8 BGR (H, W, 3), gray or BGRA"
        )
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    elif not (img.ndim == 3 and img.shape[2] == 3):
        raise ImageError(
            source, f"unsupported shape {img.shape}; give (H, W, 3) BGR, (H, W) gray or BGRA"
        )
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ImageError(source, f"empty image of shape {img.shape}")
    return img


def read_image_file(path: Path, source: str) -> bytes:
    """The bytes of a regular image file within the byte cap; FIFOs, devices and oversized
    files are refused without reading them (a FIFO would block, /dev/zero never ends)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageError(source, "file not found") from None
    except OSError as e:
        raise ImageError(source, f"cannot read file ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(source, "is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(source, "not a regular file (a FIFO, socket or device)")
    cap = max_image_bytes()
    if st.st_size > cap:
        raise ImageError(source, f"{st.st_size} bytes, more than the {cap} byte cap "
                         "(DOCEDGE_MAX_IMAGE_BYTES)")  # fmt: skip
    try:
        with open(path, "rb") as f:
            data = f.read(cap + 1)
    except OSError as e:
        raise ImageError(source, f"cannot read file ({e.strerror or e})") from None
    if len(data) > cap:
        raise ImageError(source, f"grew past the {cap} byte cap while being read")
    return data


def load_image(item: ImageInput, index: int = 0) -> np.ndarray[Any, Any]:
    """Read one input (path, encoded bytes or array) as BGR uint8 ``(H, W, 3)``.

    Raises :class:`ImageError` naming the file (or item index) and the problem.
    """
    source = describe_source(item, index)
    if isinstance(item, (str, os.PathLike)):
        return to_bgr(_decode(read_image_file(Path(item), source), source), source)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return to_bgr(_decode(item, source), source)
    if isinstance(item, np.ndarray):
        return to_bgr(item, source)
    raise ImageError(source, f"unsupported input type {type(item).__name__}")


def preprocess_bgr(
    img: np.ndarray[Any, Any], spec: PreprocessSpec = DEFAULT_SPEC
) -> np.ndarray[Any, Any]:
    """BGR uint8 ``(H, W, 3)`` -> float32 ``(3, height, width)`` in [0, 1]."""
    interp = _INTERPOLATIONS[spec.interpolation]
    resized = cv2.resize(img, (spec.width, spec.height), interpolation=interp)
    x: np.ndarray[Any, Any] = resized.astype(np.float32) * np.float32(spec.scale)
    if spec.mean != (0.0, 0.0, 0.0) or spec.std != (1.0, 1.0, 1.0):
        mean = np.asarray(spec.mean, np.float32)
        x = ((x - mean) / np.asarray(spec.std, np.float32)).astype(np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess(
    images: Sequence[ImageInput], spec: PreprocessSpec = DEFAULT_SPEC
) -> np.ndarray[Any, Any]:
    """Load and pre-process a batch: returns float32 ``(N, 3, 128, 128)``.

    Raises :class:`ImageError` on the first bad item; see ``Embedder.embed_many`` for
    per-item error handling.
    """
    out = np.empty((len(images), 3, spec.height, spec.width), dtype=np.float32)
    for i, item in enumerate(images):
        out[i] = preprocess_bgr(load_image(item, i), spec)
    return out


def list_images(folder: Union[str, Path]) -> list[Path]:
    """Image files (.jpg/.jpeg/.png, any case) under ``folder``, recursively, sorted."""
    root = Path(folder)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
