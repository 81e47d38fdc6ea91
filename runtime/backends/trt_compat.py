"""A small compatibility layer over TensorRT 8.5 (JetPack 5), 10.x (JetPack 6/7, desktop) and
11.x, selected by feature detection (``hasattr``) rather than version strings.

- I/O: the named-tensor API (``num_io_tensors``, ``set_input_shape``, ``set_tensor_address``,
  ``execute_async_v3``) when the engine has it (8.5+), else bindings (``execute_async_v2``).
- Builder: ``set_memory_pool_limit`` else ``max_workspace_size``; ``build_serialized_network``
  else ``build_engine``; strongly typed networks when the flag exists (10+, required on 11);
  FP16/INT8 builder flags and calibrators only where they still exist (8.5/10).

Nothing here imports TensorRT or pycuda at module import time.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

from ..errors import BackendUnavailableError

if TYPE_CHECKING:  # checked against tensorrt-stubs; never imported at run time here
    import tensorrt


def _on_jetson() -> bool:
    try:
        with open("/etc/nv_tegra_release", encoding="utf-8"):
            return True
    except OSError:
        return False


def install_hint(what: str) -> str:
    """What to install for ``what`` (``tensorrt`` or ``pycuda``) on this platform."""
    if _on_jetson() or platform.machine() == "aarch64":
        if what == "tensorrt":
            return ("On Jetson, TensorRT's Python bindings come with JetPack: `sudo apt install "
                    "python3-libnvinfer python3-libnvinfer-dev`, and create the venv with "
                    "`python3 -m venv --system-site-packages .venv` (see docs/jetson.md). "
                    "Do not pip-install tensorrt on Jetson.")  # fmt: skip
        return ("On Jetson, build pycuda from source inside the venv: `export "
                "PATH=/usr/local/cuda/bin:$PATH; pip install pycuda` (see docs/jetson.md).")
    if what == "tensorrt":
        return ("Install NVIDIA's TensorRT Python package matching your CUDA "
                "(e.g. `pip install tensorrt-cu12`) and an NVIDIA driver.")
    return "Install pycuda (`pip install 'docedge[tensorrt]'`) with the CUDA toolkit on PATH."


def import_tensorrt() -> Any:
    """``import tensorrt`` or raise :class:`BackendUnavailableError` saying what to install."""
    try:
        import tensorrt
    except ImportError as e:
        raise BackendUnavailableError(f"TensorRT is not available ({e}). "
                                      + install_hint("tensorrt")) from None  # fmt: skip
    if not hasattr(tensorrt, "Builder"):  # e.g. only tensorrt-stubs: a namespace package
        raise BackendUnavailableError("TensorRT is not available (the `tensorrt` found has no "
                                      "library, only type stubs?). " + install_hint("tensorrt"))  # fmt: skip
    return tensorrt


def import_pycuda() -> Any:
    """``pycuda.driver`` with a primary context made current, or a clear error."""
    try:
        import pycuda.driver as cuda
    except ImportError as e:
        raise BackendUnavailableError(f"pycuda is not available ({e}). "
                                      + install_hint("pycuda")) from None  # fmt: skip
    try:
        try:
            import pycuda.autoprimaryctx
        except ImportError:  # pragma: no cover - older pycuda
            import pycuda.autoinit  # noqa: F401
    except Exception as e:  # cuInit failure: no GPU or driver
        raise BackendUnavailableError(f"CUDA could not be initialized ({e}); is there an NVIDIA "
                                      "GPU and driver?") from None  # fmt: skip
    return cuda


def version_tuple(version: str) -> Tuple[int, ...]:
    """``"8.5.2.2"`` -> ``(8, 5, 2, 2)``."""
    out = []
    for part in version.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def calibration_version_code(version: str) -> str:
    """TensorRT's integer version as written in calibration caches: 8.5.2 -> ``8502``,
    10.3.0 -> ``100300``."""
    v = (*version_tuple(version), 0, 0, 0)[:3]
    return str(v[0] * 1000 + v[1] * 100 + v[2]) if v[0] < 10 else str(v[0] * 10000 + v[1] * 100 + v[2])


# --- builder features -------------------------------------------------------------------------
def supports_strongly_typed(trt: Any) -> bool:
    return hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")


def has_precision_flags(trt: Any) -> bool:
    """FP16/INT8 builder flags (weak typing): present in 8.5/10, removed in 11."""
    return hasattr(trt.BuilderFlag, "FP16") and hasattr(trt.BuilderFlag, "INT8")


def has_calibrators(trt: Any) -> bool:
    """Implicit INT8 calibrators: present in 8.5/10 (deprecated from 10.1), removed in 11."""
    return hasattr(trt, "IInt8EntropyCalibrator2")


def network_flags(trt: Any, strongly_typed: bool) -> int:
    """Flags for ``builder.create_network``: explicit batch where it is still a flag."""
    flags = 0
    members = trt.NetworkDefinitionCreationFlag
    if hasattr(members, "EXPLICIT_BATCH") and not supports_strongly_typed(trt):
        flags |= 1 << int(members.EXPLICIT_BATCH)  # 8.x: required for ONNX
    if strongly_typed:
        if not supports_strongly_typed(trt):
            raise BackendUnavailableError("this TensorRT has no strongly typed networks (< 9); "
                                          "build with --implicit (FP16/INT8 builder flags)")  # fmt: skip
        flags |= 1 << int(members.STRONGLY_TYPED)
    return flags


def set_workspace(trt: Any, config: tensorrt.IBuilderConfig, megabytes: int) -> None:
    size = int(megabytes) << 20
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, size)
    else:  # pragma: no cover - TensorRT < 8.4
        setattr(config, "max_workspace_size", size)  # noqa: B010 - absent from 10.x stubs


def build_serialized(builder: tensorrt.Builder, network: tensorrt.INetworkDefinition,
                     config: tensorrt.IBuilderConfig) -> Optional[bytes]:
    """Serialized engine bytes, or None when the build failed (TensorRT logs why)."""
    if hasattr(builder, "build_serialized_network"):
        mem = builder.build_serialized_network(network, config)
        return None if mem is None else bytes(memoryview(mem))
    engine = getattr(builder, "build_engine")(network, config)  # noqa: B009 - TensorRT < 8
    return None if engine is None else bytes(memoryview(engine.serialize()))


def parser_errors(parser: tensorrt.OnnxParser) -> List[str]:
    """Every ONNX parser error as ``node <i> (<name>, <op>): <desc> [code]``."""
    out = []
    for i in range(int(parser.num_errors)):
        err = parser.get_error(i)
        node = err.node()
        where = f"node {node}"
        if hasattr(err, "node_name"):  # 10.x adds the node's name and operator
            where += f" ({err.node_name()}, {err.node_operator()})"
        out.append(f"{where}: {err.desc()} [{err.code()}]")
    return out


# --- runtime I/O ------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineIO:
    """An engine's input/output and the dynamic-batch range of its (first) profile."""

    named: bool  # named-tensor API (8.5+) vs bindings
    input_name: str
    output_name: str
    input_index: int
    output_index: int
    min_batch: int
    opt_batch: int
    max_batch: int
    output_dim: int


def engine_io(trt: Any, engine: tensorrt.ICudaEngine) -> EngineIO:
    """Find the single input and output of ``engine`` and its batch profile."""
    if hasattr(engine, "num_io_tensors"):
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        ins = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if n not in ins]
        if len(ins) != 1 or len(outs) != 1:
            raise BackendUnavailableError(f"engine must have one input and one output, has {names}")
        mn, op, mx = engine.get_tensor_profile_shape(ins[0], 0)
        out_shape = engine.get_tensor_shape(outs[0])
        return EngineIO(True, ins[0], outs[0], names.index(ins[0]), names.index(outs[0]),
                        int(mn[0]), int(op[0]), int(mx[0]), int(out_shape[-1]))  # fmt: skip
    # TensorRT < 8.5 bindings API (absent from the 10.x stubs: reached through getattr).
    eng: Any = engine
    n = int(eng.num_bindings)
    binding_names = [str(eng.get_binding_name(i)) for i in range(n)]
    in_idx = [i for i in range(n) if eng.binding_is_input(i)]
    out_idx = [i for i in range(n) if not eng.binding_is_input(i)]
    if len(in_idx) != 1 or len(out_idx) != 1:
        raise BackendUnavailableError(f"engine must have one input and one output, has {binding_names}")
    mn, op, mx = eng.get_profile_shape(0, in_idx[0])
    out_shape = eng.get_binding_shape(out_idx[0])
    return EngineIO(False, binding_names[in_idx[0]], binding_names[out_idx[0]], in_idx[0], out_idx[0],
                    int(mn[0]), int(op[0]), int(mx[0]), int(out_shape[-1]))  # fmt: skip


def execute(context: tensorrt.IExecutionContext, io: EngineIO, batch: int, d_in: int, d_out: int,
            stream_handle: int) -> None:
    """Set the input shape and enqueue one inference on ``stream_handle``."""
    shape = (batch, 3, 128, 128)
    if io.named:
        ok = context.set_input_shape(io.input_name, shape)
        context.set_tensor_address(io.input_name, int(d_in))
        context.set_tensor_address(io.output_name, int(d_out))
        ok = ok and context.execute_async_v3(stream_handle)
    else:
        legacy: Any = context  # bindings API of TensorRT 8.x (absent from the 10.x stubs)
        ok = legacy.set_binding_shape(io.input_index, shape)
        bindings = [0, 0]
        bindings[io.input_index] = int(d_in)
        bindings[io.output_index] = int(d_out)
        ok = ok and legacy.execute_async_v2(bindings=bindings, stream_handle=stream_handle)
    if ok is False:
        raise BackendUnavailableError(f"TensorRT refused to run a batch of {batch} "
                                      f"(profile {io.min_batch}..{io.max_batch})")  # fmt: skip
