"""Writing TensorRT INT8 calibration caches (the format and its validator live in the runtime:
:mod:`docedge.runtime.backends.tensorrt.calibration_cache`).

The file is written for :data:`DEFAULT_TRT_VERSION`; the loader rewrites the header for the
TensorRT that builds (the scales do not depend on the version).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Dict, Union

from docedge.runtime.atomic import atomic_write_bytes
from docedge.runtime.backends.tensorrt.calibration_cache import (
    CACHE_FORMAT,
    INT8_MAX,
    CalibrationCache,
    CalibrationCacheError,
    decode_scale,
    encode_scale,
    load_calibration_cache,
    parse_cache,
    read_cache,
    scales_digest,
    trt_version_number,
)

__all__ = ["ALGORITHM", "CACHE_FILE", "CACHE_FORMAT", "DEFAULT_TRT_VERSION", "INT8_MAX",
           "CalibrationCache", "CalibrationCacheError", "cache_text", "decode_scale",
           "encode_scale", "load_calibration_cache", "parse_cache", "read_cache",
           "scales_digest", "scales_from_amax", "trt_version_number", "write_cache"]

#: JetPack 5.1.x ships TensorRT 8.5.2 (the implicit-INT8 platform most users have).
DEFAULT_TRT_VERSION = "8502"
ALGORITHM = "EntropyCalibration2"
CACHE_FILE = "int8_calibration.cache"


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
