"""TensorRT's native INT8 calibration cache: write, read, verify.

Format (text): first line ``TRT-<version>-EntropyCalibration2``, then one line per tensor,
``<tensor name>: <8 hex digits>``, the digits being the big-endian IEEE-754 bits of the float32
scale = amax / 127. TensorRT 8.5/10 read it through an implicit-INT8 calibrator whose
``read_calibration_cache`` returns these bytes. ``<version>`` is TensorRT's integer version
(8.5.2 -> 8502, 8.6.1 -> 8601; 10.x: major*10000 + minor*100 + patch).

A cache is only valid for the model and data it was made from: the manifest records both
hashes, and :func:`load_calibration_cache` refuses a cache whose hashes differ from the
caller's expectations.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

from docedge.runtime.bundle import Bundle
from docedge.runtime.errors import BundleError

#: JetPack 5.1 ships TensorRT 8.5.2; TensorRT 10 reads 8.x caches of the same algorithm.
DEFAULT_TRT_VERSION = "8502"
ALGORITHM = "EntropyCalibration2"
CACHE_FILE = "int8_calibration.cache"
CACHE_FORMAT = "trt-calibration-cache"


class CalibrationCacheError(BundleError):
    """A calibration cache is malformed or was made for another model or data set."""


def encode_scale(scale: float) -> str:
    """float32 scale -> 8 hex digits (big-endian IEEE-754 bits), as TensorRT writes them."""
    return struct.pack(">f", scale).hex()


def decode_scale(text: str) -> float:
    """8 hex digits -> float32 scale."""
    value: float = struct.unpack(">f", bytes.fromhex(text.strip()))[0]
    return value


def cache_text(scales: Dict[str, float], version: str = DEFAULT_TRT_VERSION,
               algorithm: str = ALGORITHM) -> str:  # fmt: skip
    """The cache file's text for ``scales`` (tensor name -> scale = amax / 127)."""
    lines = [f"TRT-{version}-{algorithm}"]
    lines += [f"{name}: {encode_scale(scale)}" for name, scale in scales.items()]
    return "\n".join(lines) + "\n"


def write_cache(path: Union[str, Path], scales: Dict[str, float],
                version: str = DEFAULT_TRT_VERSION) -> None:  # fmt: skip
    Path(path).write_text(cache_text(scales, version), encoding="ascii")


def read_cache(path: Union[str, Path]) -> Tuple[str, Dict[str, float]]:
    """Parse a cache: ``(header line, {tensor: scale})``."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CalibrationCacheError(f"{p}: cannot read calibration cache ({e})") from None
    if not lines or not lines[0].startswith("TRT-"):
        raise CalibrationCacheError(f"{p}: not a TensorRT calibration cache (no TRT- header)")
    scales: Dict[str, float] = {}
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, sep, value = line.rpartition(":")
        if not sep or len(value.strip()) != 8:
            raise CalibrationCacheError(f"{p}: line {n} is not 'tensor: <8 hex digits>'")
        try:
            scales[name] = decode_scale(value)
        except ValueError:
            raise CalibrationCacheError(f"{p}: line {n} has bad hex {value.strip()!r}") from None
    return lines[0], scales


def load_calibration_cache(bundle: Bundle, expect_model_sha256: Optional[str] = None,
                           expect_data_sha256: Optional[str] = None) -> bytes:  # fmt: skip
    """The bundle's cache bytes after checking they belong to its fp32 model (and, when given,
    to the expected model and calibration data). Refuses mismatches with a clear message."""
    art = bundle.artifact("int8", CACHE_FORMAT)
    rec = art.record
    fp32_sha = bundle.artifact("fp32", "onnx").sha256
    wanted = {"model_sha256": expect_model_sha256 or fp32_sha, "data_sha256": expect_data_sha256}
    for key, want in wanted.items():
        if want is not None and rec.get(key) != want:
            raise CalibrationCacheError(
                f"{bundle.path / art.file}: made for {key} {str(rec.get(key))[:16]}..., "
                f"expected {want[:16]}...; recalibrate (docedge calibrate int8) rather than "
                "reuse a cache from other weights or data"
            )
    return (bundle.path / art.file).read_bytes()
