"""Build TensorRT engines from a bundle, on the target device (needs only TensorRT + pycuda).

Modes:
- ``strongly-typed`` (TensorRT 10+, the only mode on 11): the precision comes from the ONNX
  artifact itself (fp16 ONNX; QDQ INT8 ONNX; fp32 ONNX).
- ``explicit-qdq`` (TensorRT 8.5): the QDQ INT8 ONNX with the INT8 builder flag.
- ``implicit`` (TensorRT 8.5/10, on request): the fp32 ONNX with FP16/INT8 builder flags; INT8
  reads the bundle's TensorRT calibration cache (checked to belong to the fp32 model).
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from pathlib import Path
from typing import Any, Optional, Tuple, Union

from ..bundle import Bundle
from ..engine_cache import EngineKey, Profile, default_cache_dir, find_engine, write_engine
from ..errors import BackendUnavailableError, BundleError
from ..hashing import sha256_file
from . import trt_compat as compat

logger = logging.getLogger(__name__)

CACHE_FORMAT = "trt-calibration-cache"


class EngineBuildError(BackendUnavailableError):
    """TensorRT could not parse the ONNX file or build the engine (details in the message)."""


def device_info() -> Tuple[str, str]:
    """``(GPU name, compute capability "8.7")`` of device 0."""
    cuda = compat.import_pycuda()
    dev = cuda.Device(0)
    major, minor = dev.compute_capability()
    return str(dev.name()), f"{major}.{minor}"


def choose_mode(trt: Any, precision: str, implicit: bool) -> str:
    """The build mode for this TensorRT and request (see module docstring)."""
    if implicit:
        if not compat.has_precision_flags(trt):
            raise EngineBuildError("this TensorRT (11+) has no FP16/INT8 builder flags: implicit "
                                   "builds are impossible; drop --implicit")  # fmt: skip
        return "implicit"
    if compat.supports_strongly_typed(trt):
        return "strongly-typed"
    return "explicit-qdq" if precision == "int8" else "implicit"


def source_onnx(bundle: Bundle, precision: str, mode: str) -> Path:
    return bundle.artifact_path("fp32" if mode == "implicit" else precision, "onnx")


def calibration_cache(bundle: Bundle) -> Tuple[bytes, str]:
    """The bundle's TensorRT calibration cache, refused if made for another fp32 model."""
    art = bundle.artifact("int8", CACHE_FORMAT)
    fp32 = bundle.artifact("fp32", "onnx").sha256
    if art.record.get("model_sha256") != fp32:
        raise BundleError(f"{bundle.path / art.file}: calibration cache was made for model "
                          f"{str(art.record.get('model_sha256'))[:16]}..., the bundle's fp32 model "
                          f"is {fp32[:16]}...; recalibrate (docedge calibrate int8)")  # fmt: skip
    return (bundle.path / art.file).read_bytes(), art.sha256


def engine_key(trt: Any, bundle: Bundle, precision: str, profile: Profile, implicit: bool = False,
               dla_core: Optional[int] = None, version_compatible: bool = False) -> EngineKey:  # fmt: skip
    """The cache key for building/finding this engine on this device."""
    mode = choose_mode(trt, precision, implicit)
    onnx_path = source_onnx(bundle, precision, mode)
    cal_sha = None
    if mode == "implicit" and precision == "int8":
        cal_sha = bundle.artifact("int8", CACHE_FORMAT).sha256
    _, cc = device_info()
    return EngineKey(sha256_file(onnx_path), precision, mode, str(trt.__version__), cc, profile,
                     dla_core, version_compatible, cal_sha)  # fmt: skip


def build_engine(
    bundle: Bundle,
    precision: str = "fp16",
    profile: Profile = Profile(),  # noqa: B008 - frozen dataclass
    workspace_mb: int = 1024,
    timing_cache: Optional[Union[str, Path]] = None,
    dla_core: Optional[int] = None,
    version_compatible: bool = False,
    implicit: bool = False,
    cache_dir: Optional[Union[str, Path]] = None,
    force: bool = False,
) -> Tuple[Path, bool]:
    """Build (or find in the cache) the engine; returns ``(engine path, built_now)``."""
    compat.import_tensorrt()  # clear error when missing
    import tensorrt as trt  # typed against tensorrt-stubs from here on

    key = engine_key(trt, bundle, precision, profile, implicit, dla_core, version_compatible)
    cdir = Path(cache_dir) if cache_dir else default_cache_dir()
    if not force:
        found = find_engine(cdir, key)
        if found is not None:
            return found, False
    onnx_path = source_onnx(bundle, precision, key.mode)
    log = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(log)
    network = builder.create_network(compat.network_flags(trt, key.mode == "strongly-typed"))
    parser = trt.OnnxParser(network, log)
    if not parser.parse(onnx_path.read_bytes()):
        raise EngineBuildError(f"{onnx_path}: TensorRT's ONNX parser failed: "
                               + "; ".join(compat.parser_errors(parser)))  # fmt: skip
    config = builder.create_builder_config()
    compat.set_workspace(trt, config, workspace_mb)
    opt = builder.create_optimization_profile()
    name = network.get_input(0).name
    shape = (3, 128, 128)
    opt.set_shape(name, trt.Dims([profile.min_batch, *shape]), trt.Dims([profile.opt_batch, *shape]),
                  trt.Dims([profile.max_batch, *shape]))  # fmt: skip
    config.add_optimization_profile(opt)
    calibrator = None
    if key.mode in ("implicit", "explicit-qdq") and precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    if key.mode == "implicit" and precision == "int8":
        cache_bytes, _ = calibration_cache(bundle)
        calibrator = make_cache_calibrator(trt, cache_bytes)
        config.int8_calibrator = calibrator
    if dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if version_compatible:
        if not hasattr(trt.BuilderFlag, "VERSION_COMPATIBLE"):
            raise EngineBuildError("this TensorRT has no version-compatible engines (needs 8.6+)")
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    tc_path = Path(timing_cache) if timing_cache else None
    if tc_path is not None:
        blob = tc_path.read_bytes() if tc_path.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(blob), False)
    t0 = time.perf_counter()
    built = compat.build_serialized(builder, network, config)
    if built is None:
        raise EngineBuildError(f"{onnx_path}: TensorRT could not build a {precision} engine "
                               f"({key.mode}); see TensorRT's log above")  # fmt: skip
    if tc_path is not None:
        tc_path.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
    gpu, _ = device_info()
    paths = write_engine(cdir, key, built, {
        "trt_version": str(trt.__version__), "gpu_name": gpu,
        "compute_capability": key.compute_capability, "precision": precision, "mode": key.mode,
        "profile": {"min": profile.min_batch, "opt": profile.opt_batch, "max": profile.max_batch},
        "source_onnx": onnx_path.name, "source_onnx_sha256": key.onnx_sha256,
        "calibration_cache_sha256": key.calibration_cache_sha256,
        "options": {"workspace_mb": workspace_mb, "dla_core": dla_core,
                    "version_compatible": version_compatible, "implicit": implicit,
                    "timing_cache": str(tc_path) if tc_path else None},
        "build_seconds": round(time.perf_counter() - t0, 2),
        "built": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "bundle_model": bundle.model.get("name"),
    })  # fmt: skip
    del calibrator
    return paths["engine"], True


def make_cache_calibrator(trt: Any, cache: bytes) -> Any:
    """An entropy calibrator that only replays a calibration cache (no images on device)."""

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: Any) -> None:
            return None  # never called when the cache is accepted

        def read_calibration_cache(self) -> bytes:
            return cache

        def write_calibration_cache(self, data: Any) -> None:
            return None

    if not compat.has_calibrators(trt):
        raise EngineBuildError("this TensorRT has no INT8 calibrators (11+): use the QDQ ONNX "
                               "(strongly typed build) instead of --implicit")  # fmt: skip
    return CacheCalibrator()


