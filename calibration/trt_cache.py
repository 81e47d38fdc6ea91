"""TensorRT's native INT8 calibration cache: write, read, verify.

Format (text, what TensorRT's calibrators write and read back through
``read_calibration_cache``): a header line ``TRT-<version>-<algorithm>``, then one line per
tensor, ``<tensor name>: <hex>``, the hex being the IEEE-754 bits of the float32 scale read as a
big-endian 32-bit integer (``struct.pack(">f", scale).hex()``); scale = amax / 127. docedge
writes 8 digits; TensorRT itself prints the integer without leading zeros, so the reader takes
1 to 8 digits.

``<version>`` is TensorRT's integer version: 8.x is ``major*1000 + minor*100 + patch`` (8.5.2 ->
8502, 8.6.1 -> 8601), 10.x is ``major*10000 + minor*100 + patch`` (10.3.0 -> 100300).
TensorRT compares the header with its own and ignores (then tries to recalibrate) a cache from
another version, so the header must match the TensorRT that builds the engine: the file is
written for :data:`DEFAULT_TRT_VERSION` and :func:`load_calibration_cache` rewrites the header
for the caller's TensorRT (the scales do not depend on the version).

A cache is valid only for the model and data it was made from: the manifest records both
hashes, and :func:`load_calibration_cache` refuses a cache whose hashes differ.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

from docedge.runtime.atomic import atomic_write_bytes
from docedge.runtime.bundle import Bundle
from docedge.runtime.errors import BundleError
from docedge.runtime.hashing import sha256_file

#: JetPack 5.1.x ships TensorRT 8.5.2 (the implicit-INT8 platform most users have); pass
#: ``trt_version`` to :func:`load_calibration_cache` for others (JetPack 6: 10.3.0 -> 100300).
DEFAULT_TRT_VERSION = "8502"
ALGORITHM = "EntropyCalibration2"
CACHE_FILE = "int8_calibration.cache"
CACHE_FORMAT = "trt-calibration-cache"
INT8_MAX = 127.0

_HEADER = re.compile(r"^TRT-(\d+)-([A-Za-z0-9]+)$")


class CalibrationCacheError(BundleError):
    """A calibration cache is malformed or was made for another model or data set."""


@dataclass
class CalibrationCache:
    """A parsed cache: header parts and ``scales`` (tensor name -> float32 scale)."""

    version: str
    algorithm: str
    scales: Dict[str, float]

    @property
    def header(self) -> str:
        return f"TRT-{self.version}-{self.algorithm}"

    def amax(self) -> Dict[str, float]:
        """tensor name -> amax = scale * 127."""
        return {k: v * INT8_MAX for k, v in self.scales.items()}


def trt_version_number(version: str) -> str:
    """TensorRT version string -> the cache header number: ``"8.5.2.2"`` -> ``"8502"``,
    ``"10.3.0"`` -> ``"100300"``; an all-digit string is returned unchanged."""
    v = str(version).strip()
    if v.isdigit():
        return v
    m = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", v)
    if not m:
        raise ValueError(f"not a TensorRT version: {version!r}")
    major, minor, patch = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if major >= 10:
        return str(major * 10000 + minor * 100 + patch)
    return str(major * 1000 + minor * 100 + patch)


def encode_scale(scale: float) -> str:
    """float32 scale -> 8 hex digits (big-endian IEEE-754 bits)."""
    return struct.pack(">f", scale).hex()


def decode_scale(text: str) -> float:
    """1 to 8 hex digits (TensorRT drops leading zeros) -> float32 scale."""
    bits = int(text.strip(), 16)
    if not 0 <= bits <= 0xFFFFFFFF:
        raise ValueError(text)
    value: float = struct.unpack(">f", bits.to_bytes(4, "big"))[0]
    return value


def _f32(x: float) -> float:
    value: float = struct.unpack(">f", struct.pack(">f", x))[0]
    return value


def scales_from_amax(amax: Dict[str, float]) -> Dict[str, float]:
    """tensor -> float32(float32(amax) / 127): the scale TensorRT stores, computed exactly as
    ONNX Runtime does for symmetric INT8 in [-127, 127] (float32 range, float64 division)."""
    return {t: _f32(_f32(a) / INT8_MAX) for t, a in amax.items()}


def cache_text(scales: Dict[str, float], version: str = DEFAULT_TRT_VERSION,
               algorithm: str = ALGORITHM) -> str:  # fmt: skip
    """The cache file's text for ``scales`` (tensor name -> scale = amax / 127)."""
    lines = [f"TRT-{trt_version_number(version)}-{algorithm}"]
    for name, scale in scales.items():
        if "\n" in name or not name:
            raise ValueError(f"tensor name {name!r} cannot be written to a calibration cache")
        lines.append(f"{name}: {encode_scale(scale)}")
    return "\n".join(lines) + "\n"


def write_cache(path: Union[str, Path], scales: Dict[str, float],
                version: str = DEFAULT_TRT_VERSION) -> None:  # fmt: skip
    """Write the cache atomically."""
    atomic_write_bytes(path, cache_text(scales, version).encode("ascii"))


def parse_cache(text: str, where: str = "calibration cache") -> CalibrationCache:
    """Parse cache text (see the module docstring); raises :class:`CalibrationCacheError`."""
    lines = text.splitlines()
    m = _HEADER.match(lines[0].strip()) if lines else None
    if m is None:
        raise CalibrationCacheError(f"{where}: not a TensorRT calibration cache "
                                    "(first line is not TRT-<version>-<algorithm>)")  # fmt: skip
    scales: Dict[str, float] = {}
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, sep, value = line.rpartition(":")
        value = value.strip()
        if not sep or not name or not re.fullmatch(r"[0-9a-fA-F]{1,8}", value):
            raise CalibrationCacheError(f"{where}: line {n} is not 'tensor: <hex scale>'")
        scales[name] = decode_scale(value)
    return CalibrationCache(m.group(1), m.group(2), scales)


def read_cache(path: Union[str, Path]) -> CalibrationCache:
    """Read and parse a cache file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as e:
        raise CalibrationCacheError(f"{p}: cannot read calibration cache ({e})") from None
    return parse_cache(text, str(p))


def load_calibration_cache(
    bundle: Bundle,
    expect_model_sha256: Optional[str] = None,
    expect_data_sha256: Optional[str] = None,
    trt_version: Optional[str] = None,
) -> bytes:
    """The bundle's cache bytes, for an implicit-INT8 calibrator's ``read_calibration_cache``.

    Refused (:class:`CalibrationCacheError`) when the file's sha256 differs from its manifest
    record, when the recorded fp32 model hash differs from the bundle's fp32 ONNX or from
    ``expect_model_sha256``, or the recorded calibration-data hash from ``expect_data_sha256``.
    ``trt_version`` (e.g. ``tensorrt.__version__``) rewrites the header for that TensorRT.
    """
    try:
        art = bundle.artifact("int8", CACHE_FORMAT)
    except BundleError:
        raise CalibrationCacheError(f"{bundle.path}: no INT8 calibration cache in this bundle "
                                    "(docedge calibrate int8)") from None  # fmt: skip
    path = bundle.path / art.file
    rec = art.record
    if not path.is_file():
        raise CalibrationCacheError(f"{path}: calibration cache listed in the manifest is missing")
    actual = sha256_file(path)
    if actual != art.sha256:
        raise CalibrationCacheError(f"{path}: sha256 {actual[:16]}... differs from the manifest "
                                    f"({str(art.sha256)[:16]}...); the file was changed")  # fmt: skip
    fp32_sha = bundle.artifact("fp32", "onnx").sha256
    checks = [("model_sha256", fp32_sha, "the bundle's fp32 model"),
              ("model_sha256", expect_model_sha256, "the expected model"),
              ("data_sha256", expect_data_sha256, "the expected calibration data")]  # fmt: skip
    for key, want, what in checks:
        if want is not None and rec.get(key) != want:
            raise CalibrationCacheError(
                f"{path}: made for {key} {str(rec.get(key))[:16]}..., but {what} is "
                f"{want[:16]}...; a cache from other weights or data silently ruins INT8 "
                "accuracy: recalibrate (docedge calibrate int8)"
            )
    text = path.read_text(encoding="ascii")
    cache = parse_cache(text, str(path))
    if trt_version is None:
        return text.encode("ascii")
    body = text.split("\n", 1)[1] if "\n" in text else ""
    header = f"TRT-{trt_version_number(trt_version)}-{cache.algorithm}"
    return (header + "\n" + body).encode("ascii")
