"""The TensorRT INT8 calibration cache: its format and the one validator every loader uses.

Format (text, what TensorRT's calibrators write and read back through
``read_calibration_cache``): a header line ``TRT-<version>-<algorithm>``, then one line per
tensor, ``<tensor name>: <hex>``, the hex being the IEEE-754 bits of the float32 scale read as a
big-endian 32-bit integer; scale = amax / 127. TensorRT prints the integer without leading
zeros, so the reader takes 1 to 8 digits. ``<version>`` is TensorRT's integer version (8.5.2 ->
8502, 10.3.0 -> 100300); TensorRT ignores a cache from another version, so
:func:`load_calibration_cache` rewrites the header for the TensorRT that builds.

A cache is valid only for the model, the data and the QDQ model it was made with. The
validator (:func:`load_calibration_cache`) refuses a cache whose file hash, fp32-model hash or data hash
differ from its manifest record, that does not parse strictly (garbage, a header only, a
non-finite or non-positive scale, a repeated tensor), that holds another number of tensors
than calibrated, or whose scales for the tensors the QDQ model quantizes differ from the QDQ
model's own (their digest is recorded with both artifacts at calibration): a cache re-hashed
into the manifest after an edit is still refused. Writing caches is calibration's job
(:mod:`docedge.calibration.trt_cache`).
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Union

from ...bundle import Bundle
from ...errors import BundleError
from ...hashing import sha256_file

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
        scale = decode_scale(value)
        if not (math.isfinite(scale) and scale > 0):
            raise CalibrationCacheError(f"{where}: line {n}: scale {scale!r} of {name!r} is not a "
                                        "finite positive number")  # fmt: skip
        if name in scales:
            raise CalibrationCacheError(f"{where}: line {n}: tensor {name!r} appears twice")
        scales[name] = scale
    if not scales:
        raise CalibrationCacheError(f"{where}: holds a header but no tensor scales")
    return CalibrationCache(m.group(1), m.group(2), scales)


def read_cache(path: Union[str, Path]) -> CalibrationCache:
    """Read and parse a cache file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as e:
        raise CalibrationCacheError(f"{p}: cannot read calibration cache ({e})") from None
    return parse_cache(text, str(p))


def scales_digest(scales: Dict[str, float], names: Iterable[str]) -> str:
    """SHA-256 of ``name:hex`` lines (sorted by name) of the given tensors' scales: recorded with
    the QDQ model and the cache at calibration, compared whenever the cache is loaded."""
    lines = [f"{n}:{encode_scale(scales[n])}" for n in sorted(names) if n in scales]
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def check_cache_content(cache: CalibrationCache, record: Dict[str, Any],
                        qdq_record: Optional[Dict[str, Any]], where: str) -> None:  # fmt: skip
    """The parsed cache against what calibration recorded (tensor count, QDQ-scale digest)."""
    want = record.get("tensors")
    if isinstance(want, int) and len(cache.scales) != want:
        raise CalibrationCacheError(f"{where}: {len(cache.scales)} tensor scales, calibration "
                                    f"wrote {want}: the cache was edited or truncated")  # fmt: skip
    names = record.get("qdq_tensors")
    digest = record.get("qdq_scales_sha256")
    if isinstance(names, list) and isinstance(digest, str):
        missing = [n for n in names if n not in cache.scales]
        if missing:
            raise CalibrationCacheError(f"{where}: no scale for {len(missing)} tensor(s) the QDQ "
                                        f"model quantizes (e.g. {missing[0]!r})")  # fmt: skip
        if scales_digest(cache.scales, names) != digest:
            raise CalibrationCacheError(f"{where}: its scales differ from the QDQ model's: the "
                                        "cache comes from other data or was edited")  # fmt: skip
        if qdq_record is not None:
            q = (qdq_record.get("quantization") or {}).get("activation_scales_sha256")
            if isinstance(q, str) and q != digest:
                raise CalibrationCacheError(f"{where}: made for another QDQ model than the "
                                            "bundle's INT8 ONNX (activation scales differ)")  # fmt: skip


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
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise CalibrationCacheError(f"{path}: not an ASCII calibration cache") from None
    cache = parse_cache(text, str(path))
    qdq = None
    try:
        qdq = bundle.artifact("int8", "onnx").record
    except BundleError:
        pass
    check_cache_content(cache, rec, qdq, str(path))
    if trt_version is None:
        return text.encode("ascii")
    body = text.split("\n", 1)[1] if "\n" in text else ""
    header = f"TRT-{trt_version_number(trt_version)}-{cache.algorithm}"
    return (header + "\n" + body).encode("ascii")
