"""Build TensorRT engines from a bundle on the target device.

Needs only TensorRT and the bundle's ONNX files (pycuda, when present, names the GPU; otherwise
the CUDA driver library does), so the device runtime can build on request without the
``export`` stage. No torch, no onnx.

Build modes (chosen by :func:`choose_mode` from the features of the TensorRT at hand):

``strongly-typed``
    TensorRT 9.1+/10/11 (the only mode of 11): the bundle's ONNX of the requested precision
    (fp32; fp16 with fp32 I/O; QDQ INT8) parsed into a strongly typed network. The precision
    is exactly what the ONNX says; no builder precision flags.
``explicit-qdq``
    int8 on TensorRT without strong typing (8.5/8.6): the QDQ ONNX with the INT8 (and FP16)
    builder flags: explicit quantization, same scales as the ONNX.
``implicit``
    On request (``implicit=True``, TensorRT 8.5/10), and for fp32/fp16 on 8.5/8.6: the fp32 ONNX
    with FP16/INT8 builder flags; INT8 takes the bundle's TensorRT calibration cache through a
    calibrator that only replays the cache. Impossible on 11 (no flags, no calibrators).
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

from ...atomic import atomic_write_bytes
from ...bundle import PRECISIONS, Bundle, load_bundle
from ...errors import BackendUnavailableError, BundleError
from ...hashing import sha256_bytes
from . import compat
from .calibration_cache import CACHE_FORMAT, CalibrationCacheError, check_cache_content, parse_cache
from .engine_cache import (
    EngineCacheMismatch,
    EngineKey,
    Profile,
    default_cache_dir,
    find_engine,
    make_profile,
    read_sidecar,
    sidecar_path,
    write_engine,
)

if TYPE_CHECKING:  # checked against tensorrt-stubs
    import tensorrt

logger = logging.getLogger(__name__)

#: Manifest format of the bundle's TensorRT INT8 calibration cache (precision "int8").


class EngineBuildError(BackendUnavailableError):
    """TensorRT could not parse the ONNX file or build the engine (details in the message)."""


# --- GPU --------------------------------------------------------------------------------------
def _libcuda_device(index: int) -> compat.DeviceInfo:
    """Name and compute capability through the CUDA driver library (no pycuda needed)."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError as e:
        raise BackendUnavailableError(f"no CUDA driver library ({e}); is there an NVIDIA GPU "
                                      "and driver?") from None  # fmt: skip
    count, dev, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    name = ctypes.create_string_buffer(256)
    if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        raise BackendUnavailableError("CUDA could not be initialized (cuInit failed)")
    if not 0 <= index < count.value:
        raise BackendUnavailableError(f"CUDA device {index} does not exist ({count.value} visible)")
    if (lib.cuDeviceGet(ctypes.byref(dev), index) != 0
            or lib.cuDeviceGetName(name, 256, dev) != 0
            or lib.cuDeviceGetAttribute(ctypes.byref(major), 75, dev) != 0  # CC major
            or lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev) != 0):  # CC minor
        raise BackendUnavailableError(f"CUDA could not describe device {index}")  # fmt: skip
    return compat.DeviceInfo(index, name.value.decode(errors="replace"),
                             f"{major.value}.{minor.value}")  # fmt: skip


def gpu_device(index: int = 0) -> compat.DeviceInfo:
    """The GPU engines are built for: through pycuda when installed, else the CUDA driver."""
    try:
        cuda = compat.import_pycuda()
    except BackendUnavailableError as e:
        try:
            return _libcuda_device(index)
        except BackendUnavailableError:
            raise e from None
    return compat.device_info(cuda, index)


# --- calibration cache ------------------------------------------------------------------------
@dataclass(frozen=True)
class CalibrationCache:
    """The bundle's TensorRT calibration cache, checked to belong to its fp32 model."""

    file: str
    data: bytes = field(repr=False)
    sha256: str
    header: str  # "TRT-8502-EntropyCalibration2"
    version_code: str  # "8502"
    algorithm: str  # "EntropyCalibration2"
    model_sha256: str
    data_sha256: Optional[str]
    float_nodes: Tuple[str, ...] = ()  # ONNX nodes the QDQ model keeps in float

    def to_dict(self) -> Dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "header": self.header,
                "model_sha256": self.model_sha256, "data_sha256": self.data_sha256,
                "float_nodes": list(self.float_nodes)}  # fmt: skip

    def for_tensorrt(self, trt_version: str) -> bytes:
        """The cache with its header rewritten for ``trt_version``: TensorRT ignores a cache
        whose header names another version (then asks for images), and the scales do not
        depend on the version."""
        body = self.data.split(b"\n", 1)[1] if b"\n" in self.data else b""
        code = compat.calibration_version_code(trt_version)
        return f"TRT-{code}-{self.algorithm}\n".encode("ascii") + body


def parse_cache_header(line: str) -> Tuple[str, str]:
    """``"TRT-8502-EntropyCalibration2"`` -> ``("8502", "EntropyCalibration2")``."""
    parts = line.strip().split("-", 2)
    if len(parts) != 3 or parts[0] != "TRT" or not parts[1].isdigit() or not parts[2]:
        raise ValueError(f"not a TensorRT calibration cache header: {line.strip()[:60]!r}")
    return parts[1], parts[2]


def select_calibration_cache(bundle: Bundle) -> CalibrationCache:
    """The bundle's INT8 calibration cache (artifact format ``trt-calibration-cache``,
    precision ``int8``), refused with :class:`BundleError` when it is absent, modified, made
    for another fp32 model, or its header disagrees with its manifest record."""
    try:
        art = bundle.artifact("int8", CACHE_FORMAT)
    except BundleError:
        raise BundleError(f"{bundle.path}: no TensorRT calibration cache (an artifact of format "
                          f"{CACHE_FORMAT!r}, precision 'int8'); implicit INT8 builds need one. "
                          "Create it on a workstation with `docedge calibrate int8 BUNDLE "
                          "--images DIR`, or build from the QDQ ONNX without --implicit"
                          ) from None  # fmt: skip
    path = bundle.path / art.file
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BundleError(f"{path}: calibration cache listed in the manifest but unreadable "
                          f"({e})") from None  # fmt: skip
    sha = sha256_bytes(data)
    if sha != art.sha256:
        raise BundleError(f"{path}: sha256 {sha[:16]}... differs from the manifest's "
                          f"{art.sha256[:16]}... (modified after calibration)")  # fmt: skip
    fp32_sha = bundle.artifact("fp32", "onnx").sha256
    model_sha = art.record.get("model_sha256")
    if model_sha != fp32_sha:
        raise BundleError(f"{path}: calibration cache was made for model "
                          f"{str(model_sha)[:16]}..., the bundle's fp32 model is {fp32_sha[:16]}..."
                          "; a cache from other weights silently ruins INT8 accuracy: "
                          "recalibrate (docedge calibrate int8)")  # fmt: skip
    first = data.split(b"\n", 1)[0].decode("ascii", errors="replace")
    try:
        code, algorithm = parse_cache_header(first)
    except ValueError as e:
        raise BundleError(f"{path}: {e}") from None
    line = art.record.get("trt_version_line")
    if line and not first.startswith(str(line)):
        raise BundleError(f"{path}: header {first!r} disagrees with the manifest's "
                          f"trt_version_line {line!r}")  # fmt: skip
    try:
        parsed = parse_cache(data.decode("ascii"), str(path))
        qdq = bundle.artifact("int8", "onnx").record if "int8" in bundle.precisions else None
        check_cache_content(parsed, art.record, qdq, str(path))
    except UnicodeDecodeError:
        raise BundleError(f"{path}: not an ASCII calibration cache") from None
    except CalibrationCacheError as e:
        raise BundleError(str(e)) from None
    data_sha = art.record.get("data_sha256")
    float_nodes = tuple(str(n) for n in art.record.get("float_nodes") or ())
    return CalibrationCache(art.file, data, sha, first.strip(), code, algorithm, fp32_sha,
                            None if data_sha is None else str(data_sha), float_nodes)  # fmt: skip


# --- modes and keys ---------------------------------------------------------------------------
def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")


def choose_mode(trt: Any, precision: str, implicit: bool) -> str:
    """The build mode for this TensorRT and request (see the module docstring)."""
    _check_precision(precision)
    if implicit:
        if not compat.has_precision_flags(trt):
            raise EngineBuildError("this TensorRT (11+) has no FP16/INT8 builder flags: implicit "
                                   "builds are impossible; drop --implicit (the bundle's "
                                   "fp16/QDQ ONNX builds strongly typed)")  # fmt: skip
        return "implicit"
    if compat.supports_strongly_typed(trt):
        return "strongly-typed"
    return "explicit-qdq" if precision == "int8" else "implicit"


def source_onnx(bundle: Bundle, precision: str, mode: str) -> Path:
    """The ONNX file a build in ``mode`` parses: the fp32 one for implicit builds."""
    return bundle.artifact_path("fp32" if mode == "implicit" else precision, "onnx")


def _source_sha(bundle: Bundle, precision: str, mode: str) -> str:
    return bundle.artifact("fp32" if mode == "implicit" else precision, "onnx").sha256


def _key(trt: Any, bundle: Bundle, precision: str, mode: str, profile: Profile,
         device: compat.DeviceInfo, dla_core: Optional[int], version_compatible: bool,
         cal_sha: Optional[str]) -> EngineKey:  # fmt: skip
    return EngineKey(_source_sha(bundle, precision, mode), precision, mode,
                     str(trt.__version__), device.compute_capability, profile, dla_core,
                     version_compatible, cal_sha, device.name)  # fmt: skip


def candidate_keys(trt: Any, bundle: Bundle, precision: str, device: compat.DeviceInfo,
                   profile: Profile, implicit: Optional[bool] = None,
                   dla_core: Optional[int] = None,
                   version_compatible: bool = False) -> List[EngineKey]:  # fmt: skip
    """Keys of every engine that would serve ``precision`` here, the default mode first. With
    ``implicit=None`` an implicit build (where this TensorRT can make one) is acceptable too."""
    modes = [choose_mode(trt, precision, bool(implicit))]
    if implicit is None and compat.has_precision_flags(trt) and "implicit" not in modes:
        modes.append("implicit")
    keys = []
    for mode in modes:
        cal_sha = None
        if mode == "implicit" and precision == "int8":
            try:
                cal_sha = select_calibration_cache(bundle).sha256
            except BundleError as e:
                if implicit:
                    raise
                logger.debug("no implicit int8 candidate: %s", e)
                continue
        try:
            keys.append(_key(trt, bundle, precision, mode, profile, device, dla_core,
                             version_compatible, cal_sha))  # fmt: skip
        except BundleError as e:  # the bundle lacks that precision's ONNX
            logger.debug("no %s candidate: %s", mode, e)
    if not keys:
        bundle.artifact(precision, "onnx")  # raises the clear "no such artifact" error
    return keys


# --- build ------------------------------------------------------------------------------------
def make_logger(trt: Any, records: List[str]) -> Any:
    """A TensorRT logger that forwards to Python logging and keeps errors in ``records`` (so
    that build failures can say why). Falls back to ``trt.Logger`` without ``ILogger``."""
    base = getattr(trt, "ILogger", None)
    if base is None:
        return trt.Logger(trt.Logger.WARNING)
    levels = {0: logging.CRITICAL, 1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO}
    trt_log = logging.getLogger("docedge.tensorrt")

    def __init__(self: Any) -> None:
        base.__init__(self)

    def log(self: Any, severity: Any, msg: str) -> None:
        level = levels.get(int(severity), logging.DEBUG)
        if level >= logging.ERROR:
            records.append(str(msg))
        trt_log.log(level, "%s", msg)

    return type("DocedgeTrtLogger", (base,), {"__init__": __init__, "log": log})()


def _flag_names(trt: Any, value: int) -> List[str]:
    members = trt.NetworkDefinitionCreationFlag
    return [n for n in ("EXPLICIT_BATCH", "STRONGLY_TYPED")
            if hasattr(members, n) and value & (1 << int(getattr(members, n)))]  # fmt: skip


def _check_network(network: tensorrt.INetworkDefinition, bundle: Bundle, profile: Profile,
                   onnx_path: Path) -> str:  # fmt: skip
    if int(network.num_inputs) != 1 or int(network.num_outputs) != 1:
        raise EngineBuildError(f"{onnx_path}: expected one input and one output, the network "
                               f"has {network.num_inputs} and {network.num_outputs}")  # fmt: skip
    inp = network.get_input(0)
    shape = compat.dims(inp.shape)
    if len(shape) != 4 or shape[1:] != compat.INPUT_CHW:
        raise EngineBuildError(f"{onnx_path}: input {inp.name} has shape {list(shape)}, expected "
                               f"[N, {', '.join(map(str, compat.INPUT_CHW))}]")  # fmt: skip
    if shape[0] > 0 and not profile.min_batch == profile.max_batch == shape[0]:
        raise EngineBuildError(f"{onnx_path}: the ONNX has a fixed batch of {shape[0]}; build "
                               f"with --min-batch {shape[0]} --opt-batch {shape[0]} "
                               f"--max-batch {shape[0]} or re-export with a dynamic batch")
    if inp.name != bundle.input_name:
        logger.warning("%s: input is named %r, the bundle says %r", onnx_path, inp.name,
                       bundle.input_name)  # fmt: skip
    return str(inp.name)


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
    tf32: Optional[bool] = None,
    device: int = 0,
) -> Tuple[Path, bool]:
    """Build (or find in the cache) the engine; returns ``(engine path, built_now)``.

    ``tf32``: allow TF32 math for fp32 layers (default: off for fp32 engines, whose parity gate
    is cosine >= 0.99999; TensorRT's default elsewhere). ``force``: rebuild even when cached.
    A cached pair whose files disagree (modified engine or sidecar) is rebuilt.
    """
    _check_precision(precision)
    if workspace_mb < 1:
        raise ValueError(f"workspace must be >= 1 MB, got {workspace_mb}")
    trt = compat.import_tensorrt()
    features = compat.detect_features(trt)
    dev = gpu_device(device)
    mode = choose_mode(trt, precision, implicit)
    cal = select_calibration_cache(bundle) if mode == "implicit" and precision == "int8" else None
    if cal is not None and cal.version_code != compat.calibration_version_code(trt.__version__):
        logger.info("calibration cache %s: header %s rewritten for TensorRT %s", cal.file,
                    cal.header, trt.__version__)  # fmt: skip
    if version_compatible and not features.version_compatible:
        raise EngineBuildError("this TensorRT has no version-compatible engines (needs 8.6+)")
    key = _key(trt, bundle, precision, mode, profile, dev, dla_core, version_compatible,
               None if cal is None else cal.sha256)  # fmt: skip
    cdir = Path(cache_dir) if cache_dir else default_cache_dir()
    if not force:
        try:
            found = find_engine(cdir, key)
        except EngineCacheMismatch as e:
            logger.warning("rebuilding: %s", e)
            found = None
        if found is not None:
            logger.info("cached engine %s", found)
            return found, False
    onnx_path = source_onnx(bundle, precision, mode)
    errors: List[str] = []
    log = make_logger(trt, errors)
    builder: tensorrt.Builder = trt.Builder(log)
    if builder is None:
        raise EngineBuildError("TensorRT could not create a builder: " + "; ".join(errors))
    net_flags = compat.network_flags(trt, mode == "strongly-typed")
    network: tensorrt.INetworkDefinition = builder.create_network(net_flags)
    parser: tensorrt.OnnxParser = trt.OnnxParser(network, log)
    if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
        details = compat.parser_errors(parser) or errors or ["no details"]
        raise EngineBuildError(f"{onnx_path}: TensorRT's ONNX parser failed: " + "; ".join(details))
    input_name = _check_network(network, bundle, profile, onnx_path)

    config: tensorrt.IBuilderConfig = builder.create_builder_config()
    workspace_api = compat.set_workspace(trt, config, workspace_mb)
    opt: tensorrt.IOptimizationProfile = builder.create_optimization_profile()
    chw = compat.INPUT_CHW
    opt.set_shape(input_name, trt.Dims([profile.min_batch, *chw]),
                  trt.Dims([profile.opt_batch, *chw]), trt.Dims([profile.max_batch, *chw]))
    config.add_optimization_profile(opt)
    flags = compat.builder_precision_flags(trt, precision, mode)
    for name in flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    use_tf32 = tf32 if tf32 is not None else precision != "fp32"
    if not use_tf32 and features.tf32_flag:
        config.clear_flag(trt.BuilderFlag.TF32)
    calibrator = None
    replay = b""
    pinned: List[str] = []
    unmatched: List[str] = []
    if cal is not None:
        replay = cal.for_tensorrt(str(trt.__version__))
        calibrator = compat.make_cache_calibrator(trt, replay, cal.algorithm)
        setattr(config, "int8_calibrator", calibrator)  # noqa: B010 - absent from TensorRT 11
        if cal.float_nodes:  # keep the layers the QDQ model keeps in float in fp32 here too
            pinned, unmatched = compat.pin_layers_float(trt, network, cal.float_nodes)
            if pinned:
                config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
                flags.append("PREFER_PRECISION_CONSTRAINTS")
            if unmatched:
                logger.warning("%d float node(s) of the calibration record match no TensorRT "
                               "layer (left to TensorRT): %s", len(unmatched),
                               ", ".join(unmatched[:5]))  # fmt: skip
    if dla_core is not None:
        flags.append(_use_dla(trt, builder, config, dla_core, precision, profile))
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        flags.append("VERSION_COMPATIBLE")
    tc_path = Path(timing_cache) if timing_cache else None
    if tc_path is not None:
        blob = tc_path.read_bytes() if tc_path.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(blob), False)

    logger.info("building %s %s engine (%s) from %s, batch %s", precision, mode,
                features.line, onnx_path.name, profile)  # fmt: skip
    t0 = time.perf_counter()
    built = compat.build_serialized(builder, network, config)
    seconds = time.perf_counter() - t0
    if calibrator is not None and int(getattr(calibrator, "batches_requested", 0)) > 0:
        raise EngineBuildError(_cache_rejected(cal, str(trt.__version__)))
    if built is None:
        raise EngineBuildError(f"{onnx_path}: TensorRT could not build a {precision} engine "
                               f"({mode}): " + ("; ".join(errors[-5:]) or "see TensorRT's log"))
    if tc_path is not None:
        atomic_write_bytes(tc_path, bytes(memoryview(config.get_timing_cache().serialize())))
    record = {
        "trt_version": str(trt.__version__), "trt_features": features.to_dict(),
        "gpu_name": dev.name, "compute_capability": dev.compute_capability,
        "device_index": dev.index, "precision": precision, "mode": mode,
        "profile": profile.to_dict(), "source_onnx": onnx_path.name,
        "source_onnx_sha256": key.onnx_sha256,
        "calibration_cache_sha256": key.calibration_cache_sha256,
        "calibration_cache": None if cal is None else {
            **cal.to_dict(), "replayed_header": replay.split(b"\n", 1)[0].decode("ascii"),
            "float_layers_pinned": pinned, "float_nodes_unmatched": unmatched},
        "builder_flags": flags if use_tf32 or not features.tf32_flag else [*flags, "-TF32"],
        "network_flags": _flag_names(trt, net_flags),
        "options": {"workspace_mb": workspace_mb, "workspace_api": workspace_api,
                    "timing_cache": None if tc_path is None else str(tc_path),
                    "dla_core": dla_core, "version_compatible": version_compatible,
                    "implicit": implicit, "tf32": use_tf32},
        "build_seconds": round(seconds, 3),
        "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "bundle": {"path": str(bundle.path.resolve()), "model": bundle.model.get("name"),
                   "model_sha256": (bundle.model.get("source") or {}).get("sha256")},
    }  # fmt: skip
    paths = write_engine(cdir, key, built, record)
    logger.info("engine written to %s (%.1f s)", paths["engine"], seconds)
    del calibrator
    return paths["engine"], True


def _use_dla(trt: Any, builder: tensorrt.Builder, config: tensorrt.IBuilderConfig, core: int,
             precision: str, profile: Profile) -> str:  # fmt: skip
    cores = int(builder.num_DLA_cores)
    if not 0 <= core < cores:
        raise EngineBuildError(f"DLA core {core} does not exist on this device ({cores} DLA "
                               "cores; DLA exists on Jetson Xavier/Orin AGX and NX)")  # fmt: skip
    if precision == "fp32":
        logger.warning("DLA runs FP16/INT8 only: an fp32 engine falls back to the GPU entirely")
    if profile.min_batch != profile.max_batch:
        logger.warning("DLA needs static shapes: layers with the dynamic batch %s may fall back "
                       "to the GPU; give equal --min/--opt/--max-batch for DLA", profile)
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    return "GPU_FALLBACK"


def _cache_rejected(cal: Optional[CalibrationCache], trt_version: str) -> str:
    header = "?" if cal is None else cal.header
    code = compat.calibration_version_code(trt_version)
    return (f"TensorRT {trt_version} did not accept the bundle's calibration cache ({header}, "
            f"replayed as TRT-{code}) and asked for calibration images, which a device build "
            "does not have (tensor names that do not match this network, or an algorithm "
            "TensorRT will not replay?). Build from the QDQ ONNX without --implicit, or "
            f"recalibrate: docedge calibrate int8 BUNDLE --images DIR --trt-version {code}")


@dataclass(frozen=True)
class EngineBuild:
    """Outcome of :func:`build`: the engine, its sidecar, whether it was built now (or found in
    the cache), and the sidecar's content."""

    engine: Path
    sidecar: Path
    built: bool
    record: Dict[str, Any]


def build(bundle: Union[str, Path, Bundle], precision: str = "fp16",
          min_batch: Optional[int] = None, opt_batch: Optional[int] = None,
          max_batch: Optional[int] = None, **options: Any) -> EngineBuild:  # fmt: skip
    """Build (or find cached) the TensorRT engine of ``bundle`` for ``precision`` on this GPU.

    Unset batch sizes default for throughput (:func:`make_profile`: 1/32/64); ``options`` are
    :func:`build_engine`'s (``workspace_mb``, ``timing_cache``, ``dla_core``,
    ``version_compatible``, ``implicit``, ``cache_dir``, ``force``, ``tf32``, ``device``).
    """
    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    path, built = build_engine(b, precision, make_profile(min_batch, opt_batch, max_batch),
                               **options)  # fmt: skip
    side = sidecar_path(path)
    return EngineBuild(path, side, built, read_sidecar(side))
