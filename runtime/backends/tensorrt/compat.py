"""Compatibility layer over TensorRT 8.5 (JetPack 5), 10.x (JetPack 6/7, desktop) and 11.x.

Everything version-dependent goes through this module, and every choice is made by feature
detection (``hasattr`` on the ``tensorrt`` module, its classes or the objects at hand), never
by parsing version strings:

======================================  =====================================================
runtime I/O                             named tensors (``num_io_tensors``, ``set_input_shape``,
                                        ``set_tensor_address``, ``execute_async_v3``; 8.5+)
                                        else bindings (``get_binding_name``,
                                        ``binding_is_input``, ``set_binding_shape``,
                                        ``execute_async_v2``; 8.x only)
workspace                               ``set_memory_pool_limit`` else ``max_workspace_size``
build                                   ``build_serialized_network`` else ``build_engine``
network flags                           ``EXPLICIT_BATCH`` while implicit batch still exists
                                        (``Builder.max_batch_size``: 8.x/9.x), never on 10+;
                                        ``STRONGLY_TYPED`` where it exists (9.1+, required 11)
precision                               ``BuilderFlag.FP16/INT8`` only where present (8.5/10)
INT8 calibration                        ``IInt8*Calibrator`` only where present (8.5/10)
parser errors                           ``node_name``/``node_operator`` where present (10+)
version-compatible plans                ``BuilderFlag.VERSION_COMPATIBLE`` (8.6+) and
                                        ``Runtime.engine_host_code_allowed``
======================================  =====================================================

:mod:`.trt_api_table` records which names exist in which line (from NVIDIA's API reference).
Attributes that the ``tensorrt-stubs`` (10.13) used for type checking do not model (the 8.x
bindings API) are reached through the small typed ``getattr`` wrappers below, so mypy stays
strict without pretending they exist on 10.x.

Nothing here imports TensorRT or pycuda at module import time.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...errors import BackendUnavailableError, DocedgeError

if TYPE_CHECKING:  # checked against tensorrt-stubs; never imported at run time here
    import tensorrt

logger = logging.getLogger(__name__)

#: The network's input without its batch axis: BGR, 128x128.
INPUT_CHW = (3, 128, 128)


class TensorRTExecutionError(DocedgeError):
    """TensorRT refused an input shape or failed to enqueue an inference."""


# --- imports and install hints ---------------------------------------------------------------
def on_jetson() -> bool:
    """True on NVIDIA Jetson (L4T) systems."""
    try:
        with open("/etc/nv_tegra_release", encoding="utf-8"):
            return True
    except OSError:
        return False


def install_hint(what: str) -> str:
    """What to install for ``what`` (``"tensorrt"`` or ``"pycuda"``) on this platform."""
    jetson = on_jetson() or platform.machine() == "aarch64"
    if what == "tensorrt":
        if jetson:
            return ("On Jetson, TensorRT's Python bindings come with JetPack, not pip: "
                    "`sudo apt install python3-libnvinfer python3-libnvinfer-dev`, then create "
                    "the venv with `python3 -m venv --system-site-packages` so it sees them "
                    "(docs/jetson.md). Do not pip-install tensorrt on Jetson.")  # fmt: skip
        return ("On x86 with an NVIDIA GPU and driver, install NVIDIA's TensorRT wheels for your "
                "CUDA major version (e.g. `pip install tensorrt-cu12`) and pycuda "
                "(`pip install 'docedge[tensorrt]'`); see docs/jetson.md.")  # fmt: skip
    if jetson:
        return ("On Jetson, build pycuda from source inside the venv with the JetPack CUDA "
                "toolkit on PATH: `export PATH=/usr/local/cuda/bin:$PATH "
                "CPATH=/usr/local/cuda/include LIBRARY_PATH=/usr/local/cuda/lib64; "
                "pip install pycuda` (docs/jetson.md).")  # fmt: skip
    return ("Install pycuda (`pip install 'docedge[tensorrt]'`; it compiles against the CUDA "
            "toolkit, so put nvcc on PATH) and an NVIDIA driver.")  # fmt: skip


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def import_tensorrt() -> Any:
    """``import tensorrt``, or :class:`BackendUnavailableError` saying what to install."""
    try:
        import tensorrt
    except Exception as e:  # ImportError, or OSError when libnvinfer cannot be loaded
        raise BackendUnavailableError(f"TensorRT is not available ({_first_line(e)}). "
                                      + install_hint("tensorrt")) from None  # fmt: skip
    if not hasattr(tensorrt, "Builder") or not hasattr(tensorrt, "Runtime"):
        raise BackendUnavailableError("TensorRT is not available (the `tensorrt` module found "
                                      "has no library: only type stubs?). "
                                      + install_hint("tensorrt"))  # fmt: skip
    return tensorrt


def import_pycuda() -> Any:
    """``pycuda.driver``, initialized (``cuInit``), or a clear error. Creates no context: the
    backend retains the device's primary context itself (the one TensorRT uses too)."""
    try:
        import pycuda.driver as cuda
    except Exception as e:
        raise BackendUnavailableError(f"pycuda is not available ({_first_line(e)}). "
                                      + install_hint("pycuda")) from None  # fmt: skip
    try:
        cuda.init()
        count = int(cuda.Device.count())
    except Exception as e:  # cuInit failure: no GPU, no driver, or no permission
        raise BackendUnavailableError(f"CUDA could not be initialized ({_first_line(e)}); is "
                                      "there an NVIDIA GPU and driver?") from None  # fmt: skip
    if count < 1:
        raise BackendUnavailableError("CUDA found no GPU (check the driver and "
                                      "CUDA_VISIBLE_DEVICES)")  # fmt: skip
    return cuda


@dataclass(frozen=True)
class DeviceInfo:
    """The GPU an engine is built for or runs on."""

    index: int
    name: str
    compute_capability: str  # "8.7"


def device_info(cuda: Any, index: int = 0) -> DeviceInfo:
    """Name and compute capability of CUDA device ``index`` (needs no context)."""
    count = int(cuda.Device.count())
    if not 0 <= index < count:
        raise BackendUnavailableError(f"CUDA device {index} does not exist ({count} visible)")
    dev = cuda.Device(index)
    major, minor = dev.compute_capability()
    return DeviceInfo(index, str(dev.name()), f"{int(major)}.{int(minor)}")


# --- versions ---------------------------------------------------------------------------------
def version_tuple(version: str) -> Tuple[int, ...]:
    """``"8.5.2.2"`` -> ``(8, 5, 2, 2)`` (stops at the first non-numeric part)."""
    out = []
    for part in version.split("."):
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def calibration_version_code(version: str) -> str:
    """TensorRT's integer version as written in calibration cache headers: 8.5.2 -> ``8502``,
    8.6.1 -> ``8601``, 10.3.0 -> ``100300`` (major*10000 + minor*100 + patch from 10 on)."""
    v = (*version_tuple(version), 0, 0, 0)[:3]
    if v[0] < 10:
        return str(v[0] * 1000 + v[1] * 100 + v[2])
    return str(v[0] * 10000 + v[1] * 100 + v[2])


# --- feature detection ------------------------------------------------------------------------
def _has(owner: object, name: str) -> bool:
    return owner is not None and hasattr(owner, name)


@dataclass(frozen=True)
class TrtFeatures:
    """What the loaded ``tensorrt`` offers (each field one ``hasattr`` test)."""

    version: str
    strongly_typed: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED (9.1+)
    precision_flags: bool  # BuilderFlag.FP16 and .INT8 (8.5/10; removed in 11)
    calibrators: bool  # IInt8EntropyCalibrator2 (8.5/10; removed in 11)
    implicit_batch: bool  # Builder.max_batch_size: implicit-batch networks exist (8.x/9.x)
    explicit_batch_flag: bool  # NetworkDefinitionCreationFlag.EXPLICIT_BATCH (8.5/10)
    memory_pools: bool  # IBuilderConfig.set_memory_pool_limit (8.3+)
    serialized_build: bool  # Builder.build_serialized_network (8.0+)
    named_tensors: bool  # ICudaEngine.num_io_tensors + IExecutionContext.execute_async_v3
    bindings: bool  # IExecutionContext.execute_async_v2 (8.x)
    version_compatible: bool  # BuilderFlag.VERSION_COMPATIBLE (8.6+)
    host_code_runtime: bool  # Runtime.engine_host_code_allowed (8.6+)
    tf32_flag: bool  # BuilderFlag.TF32
    parser_node_names: bool  # ParserError.node_name/node_operator (10+)

    @property
    def line(self) -> str:
        """The line these features look like (for logs and describe(); never for choices)."""
        if self.strongly_typed and not self.precision_flags:
            return "11"
        if self.strongly_typed and not self.implicit_batch:
            return "10"
        if self.strongly_typed:
            return "9"
        return "8.6" if self.version_compatible else "8.5"

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["line"] = self.line
        return d


def detect_features(trt: Any) -> TrtFeatures:
    """Probe the ``tensorrt`` module (real, or a fake shaped like one line)."""
    flag = getattr(trt, "BuilderFlag", None)
    netflag = getattr(trt, "NetworkDefinitionCreationFlag", None)
    builder = getattr(trt, "Builder", None)
    config = getattr(trt, "IBuilderConfig", None)
    engine = getattr(trt, "ICudaEngine", None)
    ctx = getattr(trt, "IExecutionContext", None)
    perr = getattr(trt, "ParserError", None)
    return TrtFeatures(
        version=str(getattr(trt, "__version__", "unknown")),
        strongly_typed=_has(netflag, "STRONGLY_TYPED"),
        precision_flags=_has(flag, "FP16") and _has(flag, "INT8"),
        calibrators=_has(trt, "IInt8EntropyCalibrator2"),
        implicit_batch=_has(builder, "max_batch_size"),
        explicit_batch_flag=_has(netflag, "EXPLICIT_BATCH"),
        memory_pools=_has(config, "set_memory_pool_limit"),
        serialized_build=_has(builder, "build_serialized_network"),
        named_tensors=_has(engine, "num_io_tensors") and _has(ctx, "execute_async_v3"),
        bindings=_has(ctx, "execute_async_v2"),
        version_compatible=_has(flag, "VERSION_COMPATIBLE"),
        host_code_runtime=_has(getattr(trt, "Runtime", None), "engine_host_code_allowed"),
        tf32_flag=_has(flag, "TF32"),
        parser_node_names=_has(perr, "node_name"),
    )  # fmt: skip


def supports_strongly_typed(trt: Any) -> bool:
    """``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` exists (9.1+; the only mode of 11)."""
    return _has(getattr(trt, "NetworkDefinitionCreationFlag", None), "STRONGLY_TYPED")


def has_precision_flags(trt: Any) -> bool:
    """FP16/INT8 builder flags (weak typing): present in 8.5/10, removed in 11."""
    flag = getattr(trt, "BuilderFlag", None)
    return _has(flag, "FP16") and _has(flag, "INT8")


def has_calibrators(trt: Any) -> bool:
    """Implicit INT8 calibrators: present in 8.5/10 (deprecated from 10.1), removed in 11."""
    return _has(trt, "IInt8EntropyCalibrator2")


def needs_explicit_batch_flag(trt: Any) -> bool:
    """Whether ``create_network`` needs ``EXPLICIT_BATCH``: while implicit-batch networks still
    exist (``Builder.max_batch_size``, 8.x/9.x) or, failing that test, before strong typing
    (< 9). Never on 10+ (where the flag is deprecated and ignored) nor 11 (removed)."""
    netflag = getattr(trt, "NetworkDefinitionCreationFlag", None)
    if not _has(netflag, "EXPLICIT_BATCH"):
        return False
    return _has(getattr(trt, "Builder", None), "max_batch_size") or not supports_strongly_typed(trt)


def network_flags(trt: Any, strongly_typed: bool) -> int:
    """Flags for ``builder.create_network``."""
    members = trt.NetworkDefinitionCreationFlag
    flags = 0
    if needs_explicit_batch_flag(trt):
        flags |= 1 << int(members.EXPLICIT_BATCH)  # 8.x: the ONNX parser needs it
    if strongly_typed:
        if not supports_strongly_typed(trt):
            raise BackendUnavailableError("this TensorRT has no strongly typed networks (< 9.1); "
                                          "build with --implicit (FP16/INT8 builder flags)")
        flags |= 1 << int(members.STRONGLY_TYPED)
    return flags


# --- typed wrappers for names absent from the 10.x stubs --------------------------------------
def _attr(obj: object, name: str) -> Any:
    """``getattr`` for TensorRT 8.x names that tensorrt-stubs (10.13) does not model."""
    return getattr(obj, name)


def _num_bindings(engine: tensorrt.ICudaEngine) -> int:
    return int(_attr(engine, "num_bindings"))


def _binding_name(engine: tensorrt.ICudaEngine, index: int) -> str:
    return str(_attr(engine, "get_binding_name")(index))


def _binding_is_input(engine: tensorrt.ICudaEngine, index: int) -> bool:
    return bool(_attr(engine, "binding_is_input")(index))


def _binding_dtype(engine: tensorrt.ICudaEngine, index: int) -> object:
    getter = getattr(engine, "get_binding_dtype", None)
    return None if getter is None else getter(index)


def _binding_shape(engine: tensorrt.ICudaEngine, index: int) -> Tuple[int, ...]:
    return dims(_attr(engine, "get_binding_shape")(index))


def _profile_shapes(engine: tensorrt.ICudaEngine, binding: int) -> List[Tuple[int, ...]]:
    return [dims(s) for s in _attr(engine, "get_profile_shape")(0, binding)]


def _set_binding_shape(context: tensorrt.IExecutionContext, index: int,
                       shape: Tuple[int, ...]) -> bool:  # fmt: skip
    return bool(_attr(context, "set_binding_shape")(index, shape))


def _execute_async_v2(context: tensorrt.IExecutionContext, bindings: List[int],
                      stream_handle: int) -> bool:  # fmt: skip
    return bool(_attr(context, "execute_async_v2")(bindings=bindings, stream_handle=stream_handle))


def _set_max_workspace_size(config: tensorrt.IBuilderConfig, size: int) -> None:
    setattr(config, "max_workspace_size", size)  # noqa: B010 - TensorRT < 8.4 only


def _build_engine_legacy(builder: tensorrt.Builder, network: tensorrt.INetworkDefinition,
                         config: tensorrt.IBuilderConfig) -> Optional[bytes]:  # fmt: skip
    engine = _attr(builder, "build_engine")(network, config)
    return None if engine is None else bytes(memoryview(engine.serialize()))


# --- builder ----------------------------------------------------------------------------------
def set_workspace(trt: Any, config: tensorrt.IBuilderConfig, megabytes: int) -> str:
    """Limit the builder's workspace; returns the API used."""
    size = int(megabytes) << 20
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, size)
        return "set_memory_pool_limit"
    _set_max_workspace_size(config, size)
    return "max_workspace_size"


def build_serialized(builder: tensorrt.Builder, network: tensorrt.INetworkDefinition,
                     config: tensorrt.IBuilderConfig) -> Optional[bytes]:  # fmt: skip
    """Serialized engine bytes, or None when the build failed (TensorRT logs why)."""
    if hasattr(builder, "build_serialized_network"):
        mem = builder.build_serialized_network(network, config)
        return None if mem is None else bytes(memoryview(mem))
    return _build_engine_legacy(builder, network, config)


def builder_precision_flags(trt: Any, precision: str, mode: str) -> List[str]:
    """The BuilderFlag names a build sets for ``precision`` in ``mode``.

    ``strongly-typed``: none (the ONNX carries the precision). ``implicit`` (fp32 ONNX) and
    ``explicit-qdq`` (QDQ ONNX on TensorRT without strong typing): FP16 for fp16; INT8 and
    FP16 for int8 (layers without INT8 scales may then run in FP16, measured lossless here).
    """
    if mode == "strongly-typed" or precision == "fp32":
        return []
    if not has_precision_flags(trt):
        raise BackendUnavailableError("this TensorRT (11+) has no FP16/INT8 builder flags; "
                                      "build strongly typed from the bundle's fp16/int8 ONNX")
    return ["FP16"] if precision == "fp16" else ["INT8", "FP16"]


def parser_errors(parser: tensorrt.OnnxParser) -> List[str]:
    """Every ONNX parser error as ``node <i> (<name>, <op>): <desc> [<code>]`` (name and
    operator on TensorRT 10+, whose ParserError has ``node_name``/``node_operator``)."""
    out = []
    for i in range(int(parser.num_errors)):
        err = parser.get_error(i)
        node = int(err.node())
        where = "model" if node < 0 else f"node {node}"
        if hasattr(err, "node_name"):
            name, op = str(err.node_name()), str(err.node_operator())
            if name or op:
                where += f" ({name or '?'}, {op or '?'})"
        out.append(f"{where}: {err.desc()} [{err.code()}]")
    return out


#: Calibration cache header algorithm -> TensorRT calibrator class name.
CALIBRATOR_CLASSES: Dict[str, str] = {
    "EntropyCalibration2": "IInt8EntropyCalibrator2",
    "EntropyCalibration": "IInt8EntropyCalibrator",
    "MinMaxCalibration": "IInt8MinMaxCalibrator",
}


def make_cache_calibrator(trt: Any, cache: bytes, algorithm: str = "EntropyCalibration2") -> Any:
    """An implicit-INT8 calibrator that only replays ``cache``: ``read_calibration_cache``
    returns the bytes, ``get_batch`` returns None (there are no images on the device).

    Its ``batches_requested`` counter tells whether TensorRT rejected the cache and tried to
    calibrate (then the build has no data and fails; the caller says why). The base class
    matches the cache header's algorithm. Not available on TensorRT 11 (no calibrators).
    """
    if not has_calibrators(trt):
        raise BackendUnavailableError("this TensorRT (11+) has no INT8 calibrators: build "
                                      "strongly typed from the QDQ ONNX instead of --implicit")
    cls_name = CALIBRATOR_CLASSES.get(algorithm)
    if cls_name is None or not hasattr(trt, cls_name):
        raise BackendUnavailableError(f"calibration cache algorithm {algorithm!r} has no "
                                      f"calibrator here (supported: {sorted(CALIBRATOR_CLASSES)})")
    base = getattr(trt, cls_name)
    blob = bytes(cache)

    def __init__(self: Any) -> None:
        base.__init__(self)
        self.batches_requested = 0

    def get_batch_size(self: Any) -> int:
        return 1

    def get_batch(self: Any, names: Any) -> None:
        self.batches_requested += 1
        return None  # no data: only the cache is offered

    def read_calibration_cache(self: Any) -> bytes:
        return blob

    def write_calibration_cache(self: Any, data: Any) -> None:
        return None  # the bundle's cache stays the source of truth

    cls = type("DocedgeCacheCalibrator", (base,), {
        "__init__": __init__, "get_batch_size": get_batch_size, "get_batch": get_batch,
        "read_calibration_cache": read_calibration_cache,
        "write_calibration_cache": write_calibration_cache,
    })  # fmt: skip
    return cls()


def pin_layers_float(trt: Any, network: tensorrt.INetworkDefinition,
                     node_names: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Ask for FP32 in the layers named like ``node_names`` (the ONNX parser names layers
    after their nodes), for weakly typed builds; the caller sets PREFER_PRECISION_CONSTRAINTS.
    Returns ``(pinned layer names, node names that matched no layer)``."""
    wanted = set(node_names)
    pinned = []
    for i in range(int(network.num_layers)):
        layer = network.get_layer(i)
        if layer.name in wanted:
            layer.precision = trt.DataType.FLOAT
            for k in range(int(layer.num_outputs)):
                layer.set_output_type(k, trt.DataType.FLOAT)
            pinned.append(str(layer.name))
    return pinned, sorted(wanted - set(pinned))


def allow_host_code(runtime: tensorrt.Runtime) -> bool:
    """Let ``runtime`` deserialize version-compatible plans (they embed the lean runtime).
    Only for engines docedge built itself. Returns False where the attribute is absent."""
    if not hasattr(runtime, "engine_host_code_allowed"):
        return False
    runtime.engine_host_code_allowed = True
    return True


# --- runtime I/O ------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineIO:
    """An engine's single input and output and the batch range of its first profile."""

    named: bool  # named-tensor API (8.5+) vs bindings (8.x)
    input_name: str
    output_name: str
    input_index: int
    output_index: int
    min_batch: int
    opt_batch: int
    max_batch: int
    output_dim: int
    input_dtype: str = "float32"
    output_dtype: str = "float32"
    num_bindings: int = 2
    notes: Tuple[str, ...] = field(default=())

    @property
    def api(self) -> str:
        return "named-tensors (execute_async_v3)" if self.named else "bindings (execute_async_v2)"


def numpy_dtype(trt: Any, trt_dtype: object) -> str:
    """The numpy dtype name of a TensorRT DataType (float32 when unknown, e.g. on fakes)."""
    if trt_dtype is None:
        return "float32"
    if isinstance(trt_dtype, str):
        return np.dtype(trt_dtype).name
    nptype = getattr(trt, "nptype", None)
    if nptype is None:
        return "float32"
    return str(np.dtype(nptype(trt_dtype)).name)


def dims(d: Any) -> Tuple[int, ...]:
    """A TensorRT ``Dims`` (or any sequence) as a tuple of ints."""
    return tuple(int(d[i]) for i in range(len(d)))


def _check_io(kind: str, ins: Sequence[str], outs: Sequence[str]) -> None:
    if len(ins) != 1 or len(outs) != 1:
        raise BackendUnavailableError(f"engine must have one input and one output ({kind}), "
                                      f"has inputs {list(ins)} and outputs {list(outs)}")


def _check_profile(mn: Tuple[int, ...], op: Tuple[int, ...], mx: Tuple[int, ...]) -> None:
    for s in (mn, op, mx):
        if len(s) == 4 and tuple(s[1:]) != INPUT_CHW:
            raise BackendUnavailableError(f"engine input profile {list(s)} is not "
                                          f"[N, {', '.join(map(str, INPUT_CHW))}]")  # fmt: skip
    if not 1 <= mn[0] <= op[0] <= mx[0]:
        raise BackendUnavailableError(f"engine batch profile {mn[0]}/{op[0]}/{mx[0]} is invalid")


def _check_dtypes(in_dt: str, out_dt: str) -> None:
    for what, dt in (("input", in_dt), ("output", out_dt)):
        if dt not in ("float32", "float16"):
            raise BackendUnavailableError(f"engine {what} is {dt}; docedge feeds and reads "
                                          "float32 (or float16) tensors")  # fmt: skip


def engine_io(trt: Any, engine: tensorrt.ICudaEngine, api: str = "auto") -> EngineIO:
    """Find the single input and output of ``engine``, their dtypes and the batch range of its
    first optimization profile. ``api``: ``auto`` (named tensors where the engine has them),
    ``named`` or ``bindings`` (8.x only)."""
    if api not in ("auto", "named", "bindings"):
        raise ValueError(f"api must be auto, named or bindings, not {api!r}")
    named = hasattr(engine, "num_io_tensors") if api == "auto" else api == "named"
    if named and not hasattr(engine, "num_io_tensors"):
        raise BackendUnavailableError("this TensorRT has no named-tensor API (< 8.5)")
    if not named and not hasattr(engine, "num_bindings"):
        raise BackendUnavailableError("this TensorRT has no bindings API (10+): use api='auto'")
    if named:
        names = [str(engine.get_tensor_name(i)) for i in range(int(engine.num_io_tensors))]
        ins = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if n not in ins]
        _check_io("named tensors", ins, outs)
        mn, op, mx = (dims(s) for s in engine.get_tensor_profile_shape(ins[0], 0))
        out_shape = dims(engine.get_tensor_shape(outs[0]))
        get_dtype = getattr(engine, "get_tensor_dtype", None)
        in_dt = numpy_dtype(trt, None if get_dtype is None else get_dtype(ins[0]))
        out_dt = numpy_dtype(trt, None if get_dtype is None else get_dtype(outs[0]))
        in_idx, out_idx, n_bind = names.index(ins[0]), names.index(outs[0]), len(names)
        in_name, out_name = ins[0], outs[0]
    else:
        n_bind = _num_bindings(engine)
        names = [_binding_name(engine, i) for i in range(n_bind)]
        in_ids = [i for i in range(n_bind) if _binding_is_input(engine, i)]
        out_ids = [i for i in range(n_bind) if not _binding_is_input(engine, i)]
        _check_io("bindings", [names[i] for i in in_ids], [names[i] for i in out_ids])
        in_idx, out_idx = in_ids[0], out_ids[0]
        mn, op, mx = _profile_shapes(engine, in_idx)
        out_shape = _binding_shape(engine, out_idx)
        in_dt = numpy_dtype(trt, _binding_dtype(engine, in_idx))
        out_dt = numpy_dtype(trt, _binding_dtype(engine, out_idx))
        in_name, out_name = names[in_idx], names[out_idx]
    _check_profile(mn, op, mx)
    _check_dtypes(in_dt, out_dt)
    if not out_shape or out_shape[-1] < 1:
        raise BackendUnavailableError(f"engine output {out_name} has shape {list(out_shape)}; "
                                      "expected [N, D] with a fixed D")  # fmt: skip
    return EngineIO(named, in_name, out_name, in_idx, out_idx, mn[0], op[0], mx[0],
                    out_shape[-1], in_dt, out_dt, n_bind)  # fmt: skip


def execute(context: tensorrt.IExecutionContext, io: EngineIO, batch: int, d_in: int, d_out: int,
            stream_handle: int) -> None:  # fmt: skip
    """Set the input shape to ``batch`` and enqueue one inference on ``stream_handle``."""
    shape = (int(batch), *INPUT_CHW)
    if io.named:
        if not context.set_input_shape(io.input_name, shape):
            raise TensorRTExecutionError(f"TensorRT refused input shape {list(shape)} (profile "
                                         f"batch {io.min_batch}..{io.max_batch})")  # fmt: skip
        context.set_tensor_address(io.input_name, int(d_in))
        context.set_tensor_address(io.output_name, int(d_out))
        ok = context.execute_async_v3(stream_handle)
    else:
        if not _set_binding_shape(context, io.input_index, shape):
            raise TensorRTExecutionError(f"TensorRT refused input shape {list(shape)} (profile "
                                         f"batch {io.min_batch}..{io.max_batch})")  # fmt: skip
        bindings = [0] * io.num_bindings
        bindings[io.input_index] = int(d_in)
        bindings[io.output_index] = int(d_out)
        ok = _execute_async_v2(context, bindings, stream_handle)
    if ok is False:
        raise TensorRTExecutionError(f"TensorRT failed to enqueue a batch of {batch} "
                                     "(see TensorRT's log)")  # fmt: skip
