"""One fake TensorRT for every TensorRT test (shared fixture module, not a test file).

A fake of line L ("8.5", "10", "11") has exactly the attributes :mod:`trt_api_table` records for
L (plus the ones every line shares). It behaves enough like TensorRT (parse, build,
deserialize, execute a deterministic "embedding" through fake pycuda device memory) for the
compat, builder, engine-cache and runner tests.
"""

from __future__ import annotations

import itertools
import json
import types
from typing import Any, Dict, List, Optional, Set

import numpy as np
from trt_api_table import API, names_for

VERSIONS = {"8.5": "8.5.2.2", "10": "10.3.0.26", "11": "11.1.0.5"}
CAL_CODES = {"8.5": "8502", "10": "100300", "11": "110100"}


# --- fake pycuda ------------------------------------------------------------------------------
class FakeDeviceMemory:
    """Device allocations by address (bytes), shared by fake pycuda and fake contexts."""

    def __init__(self) -> None:
        self.blocks: Dict[int, np.ndarray] = {}
        self._next = itertools.count(0x1000, 0x100000)

    def alloc(self, nbytes: int) -> int:
        addr = next(self._next)
        self.blocks[addr] = np.zeros(int(nbytes), np.uint8)
        return addr

    def view(self, addr: int, dtype: str, shape: tuple) -> np.ndarray:
        count = int(np.prod(shape))
        return self.blocks[addr].view(np.dtype(dtype))[:count].reshape(shape)


class FakeAllocation:
    def __init__(self, mem: FakeDeviceMemory, nbytes: int) -> None:
        self.mem, self.addr, self.freed = mem, mem.alloc(nbytes), False

    def __int__(self) -> int:
        return self.addr

    def free(self) -> None:
        assert not self.freed, "double free"
        self.freed = True
        del self.mem.blocks[self.addr]


class FakeCudaContext:
    def __init__(self, cuda: FakeCuda) -> None:
        self.cuda, self.detached = cuda, False

    def push(self) -> None:
        assert not self.detached
        self.cuda.stack.append(self)

    def detach(self) -> None:
        self.detached = True


class FakeCuda:
    """Just enough of ``pycuda.driver``."""

    def __init__(self, name: str = "Fake Orin", cc: tuple = (8, 7), count: int = 1) -> None:
        self.mem = FakeDeviceMemory()
        self.stack: List[FakeCudaContext] = []
        self.allocations: List[FakeAllocation] = []
        self.contexts: List[FakeCudaContext] = []
        cuda = self

        class Device:
            @staticmethod
            def count() -> int:
                return count

            def __init__(self, index: int) -> None:
                self.index = index

            def name(self) -> str:
                return name

            def compute_capability(self) -> tuple:
                return cc

            def retain_primary_context(self) -> FakeCudaContext:
                ctx = FakeCudaContext(cuda)
                cuda.contexts.append(ctx)
                return ctx

        class Context:
            @staticmethod
            def pop() -> None:
                cuda.stack.pop()

        class Stream:
            _handles = itertools.count(7)

            def __init__(self) -> None:
                cuda.require_context()
                self.handle = next(Stream._handles)

            def synchronize(self) -> None:
                cuda.require_context()

        self.Device, self.Context, self.Stream = Device, Context, Stream

    def require_context(self) -> None:
        assert self.stack, "CUDA call without a current context"

    def init(self) -> None:
        pass

    def pagelocked_empty(self, shape: tuple, dtype: Any) -> np.ndarray:
        self.require_context()
        return np.full(shape, np.nan, dtype)

    def mem_alloc(self, nbytes: int) -> FakeAllocation:
        self.require_context()
        a = FakeAllocation(self.mem, nbytes)
        self.allocations.append(a)
        return a

    def memcpy_htod_async(self, dest: Any, src: np.ndarray, stream: Any) -> None:
        self.require_context()
        raw = np.ascontiguousarray(src).view(np.uint8).reshape(-1)
        self.mem.blocks[int(dest)][: raw.size] = raw

    def memcpy_dtoh_async(self, dest: np.ndarray, src: Any, stream: Any) -> None:
        self.require_context()
        flat = dest.reshape(-1)
        flat[:] = self.mem.blocks[int(src)][: dest.nbytes].view(dest.dtype)


# --- fake TensorRT ----------------------------------------------------------------------------
#: Layer names the fake ONNX parser creates (named after ONNX nodes, as TensorRT's parser does).
FAKE_LAYERS = ("/stem/conv/Conv", "/blocks.1/dw/Conv", "/blocks.1/pw/Conv", "/head/ReduceL2")
_W = np.random.default_rng(0).standard_normal((192, 256)).astype(np.float32)


def fake_embed(x: np.ndarray) -> np.ndarray:
    """The fake engine's network: 8x8 average pooling, a fixed projection, L2 normalization."""
    n = x.shape[0]
    pooled = x.astype(np.float32).reshape(n, 3, 8, 16, 8, 16).mean(axis=(3, 5)).reshape(n, 192)
    y = pooled @ _W
    norm = np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    return (y / norm).astype(np.float32)


def _only(line: str, prefix: str, members: Dict[str, Any]) -> Dict[str, Any]:
    """Keep the members the table gives ``line`` (names the table does not list are kept)."""
    listed = {k.split(".", 1)[1] for k in API if k.startswith(prefix + ".")}
    have = names_for(line, prefix)
    return {k: v for k, v in members.items() if k not in listed or k in have}


def _enum(name: str, line: str, prefix: str, values: Dict[str, int]) -> type:
    return type(name, (), _only(line, prefix, values))


def make_fake_trt(line: str, reject_calibration_cache: bool = False,
                  fail_build: bool = False, dla_cores: int = 2) -> types.SimpleNamespace:
    """A stand-in ``tensorrt`` module of TensorRT line ``line`` ("8.5", "10" or "11")."""
    trt = types.SimpleNamespace(__version__=VERSIONS[line], line=line, built=[], calibrators=[])
    trt.BuilderFlag = _enum("BuilderFlag", line, "flag", {
        "FP16": 0, "INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3, "STRICT_TYPES": 4, "TF32": 7,
        "OBEY_PRECISION_CONSTRAINTS": 10, "PREFER_PRECISION_CONSTRAINTS": 11,
        "VERSION_COMPATIBLE": 13})
    trt.NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag", line, "netflag", {
        "EXPLICIT_BATCH": 0, "EXPLICIT_PRECISION": 1, "STRONGLY_TYPED": 5})
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.TensorIOMode = types.SimpleNamespace(INPUT="input", OUTPUT="output")
    trt.DeviceType = types.SimpleNamespace(GPU="gpu", DLA="dla")
    trt.DataType = types.SimpleNamespace(FLOAT="float32", HALF="float16")
    trt.nptype = lambda dt: {"float32": np.float32, "float16": np.float16}[dt]
    trt.Dims = lambda values: tuple(int(v) for v in values)

    class ILogger:
        def __init__(self) -> None:
            self.initialized = True

    class Logger(ILogger):
        WARNING = 2

        def __init__(self, severity: int = 2) -> None:
            super().__init__()
            self.severity = severity

        def log(self, severity: int, msg: str) -> None:
            pass

    trt.ILogger, trt.Logger = ILogger, Logger

    class ParserError:
        def __init__(self, node: int, desc: str) -> None:
            self._node, self._desc = node, desc

        def code(self) -> str:
            return "ErrorCode.UNSUPPORTED_NODE"

        def desc(self) -> str:
            return self._desc

        def node(self) -> int:
            return self._node

    class ParserError10(ParserError):  # 10+: the node's name and operator
        def node_name(self) -> str:
            return f"/head/Conv_{self._node}" if self._node >= 0 else ""

        def node_operator(self) -> str:
            return "Conv" if self._node >= 0 else ""

    trt.ParserError = ParserError10 if "node_name" in names_for(line, "perr") else ParserError

    class Tensor:
        def __init__(self, name: str, shape: tuple) -> None:
            self.name, self.shape = name, shape

    class Layer:
        def __init__(self, name: str) -> None:
            self.name, self.precision, self.num_outputs, self.output_types = name, None, 1, {}

        def set_output_type(self, index: int, dtype: Any) -> None:
            self.output_types[index] = dtype

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.inputs: List[Tensor] = []
            self.outputs: List[Tensor] = []
            self.layers: List[Layer] = []

        @property
        def num_layers(self) -> int:
            return len(self.layers)

        def get_layer(self, i: int) -> Layer:
            return self.layers[i]

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        @property
        def num_outputs(self) -> int:
            return len(self.outputs)

        def get_input(self, i: int) -> Tensor:
            return self.inputs[i]

    class OnnxParser:
        def __init__(self, network: Network, logger: Any) -> None:
            self.network, self.errors = network, []

        def parse(self, data: bytes, path: Optional[str] = None) -> bool:
            if data.startswith(b"BAD"):
                self.errors = [trt.ParserError(3, "Unsupported operator FancyOp"),
                               trt.ParserError(-1, "model has no graph")]
                return False
            batch = 4 if data.startswith(b"STATIC4") else -1
            self.network.inputs.append(Tensor("img", (batch, 3, 128, 128)))
            self.network.outputs.append(Tensor("feats", (batch, 256)))
            self.network.layers = [Layer(n) for n in FAKE_LAYERS]
            self.network.source = data
            return True

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> Any:
            return self.errors[i]

    class OptimizationProfile:
        def set_shape(self, name: str, mn: tuple, op: tuple, mx: tuple) -> None:
            self.shapes = {"name": name, "min": mn, "opt": op, "max": mx}

    class TimingCache:
        def __init__(self, blob: bytes) -> None:
            self.blob = bytes(blob)

        def serialize(self) -> bytes:
            return self.blob + b"+timing"

    config_members = {
        "set_memory_pool_limit": lambda self, pool, size: self.pools.__setitem__(pool, size),
        "set_flag": lambda self, flag: self.flags.add(flag),
        "clear_flag": lambda self, flag: self.flags.discard(flag),
        "add_optimization_profile": lambda self, p: self.profiles.append(p),
        "create_timing_cache": lambda self, blob: TimingCache(blob),
        "set_timing_cache": lambda self, cache, ignore: setattr(self, "timing", cache) or True,
        "get_timing_cache": lambda self: self.timing,
        "int8_calibrator": None,
        "DLA_core": -1,
        "default_device_type": "gpu",
    }

    def config_init(self: Any) -> None:
        self.flags = {trt.BuilderFlag.TF32} if hasattr(trt.BuilderFlag, "TF32") else set()
        self.pools, self.profiles, self.timing = {}, [], None

    IBuilderConfig = type("IBuilderConfig", (), {"__init__": config_init,
                                                  **_only(line, "config", config_members)})
    trt.IBuilderConfig = IBuilderConfig

    def flag_names(cls: type, values: Set[int]) -> List[str]:
        return sorted(k for k, v in vars(cls).items() if not k.startswith("_") and v in values)

    def build_serialized_network(self: Any, network: Network, config: Any) -> Optional[bytes]:
        cal = getattr(config, "int8_calibrator", None)
        if cal is not None:
            blob = bytes(cal.read_calibration_cache())
            cal.replayed = blob
            own = f"TRT-{CAL_CODES[line]}-".encode()  # TensorRT ignores other versions' caches
            if reject_calibration_cache or not blob.startswith(own):
                if cal.get_batch(["img"]) is None:
                    return None
        if fail_build:
            self.logger.log(1, "no implementation obeys the reformatting constraints")
            return None
        p = config.profiles[0].shapes
        payload = {"line": line, "network_flags": network.flags,
                   "builder_flags": flag_names(trt.BuilderFlag, config.flags),
                   "profile": [p["min"][0], p["opt"][0], p["max"][0]], "input": p["name"],
                   "source": network.source[:20].decode(errors="replace"),
                   "calibrated": cal is not None, "dla": config.DLA_core,
                   "float_layers": [x.name for x in network.layers if x.precision == "float32"
                                    and x.output_types.get(0) == "float32"],
                   "device_type": config.default_device_type}
        trt.built.append(payload)
        return b"FAKEENGINE" + json.dumps(payload).encode()

    builder_members = {
        "create_network": lambda self, flags=0: Network(flags),
        "create_builder_config": lambda self: IBuilderConfig(),
        "create_optimization_profile": lambda self: OptimizationProfile(),
        "build_serialized_network": build_serialized_network,
        "build_engine": lambda self, network, config: None,
        "max_batch_size": 1,
        "num_DLA_cores": dla_cores,
        "platform_has_fast_fp16": True,
    }

    def builder_init(self: Any, logger: Any) -> None:
        assert getattr(logger, "initialized", False), "logger base class not initialized"
        self.logger = logger

    trt.Builder = type("Builder", (), {"__init__": builder_init,
                                       **_only(line, "builder", builder_members)})
    trt.OnnxParser = OnnxParser

    # runtime side
    class ExecutionContextBase:
        def __init__(self, engine: Any) -> None:
            self.engine, self.calls, self.shape, self.addresses = engine, [], None, {}

        def _run(self, d_in: int, d_out: int) -> bool:
            n = self.shape[0]
            mem = trt.cuda.mem
            x = mem.view(d_in, self.engine.in_dtype, (n, 3, 128, 128))
            mem.view(d_out, self.engine.out_dtype, (n, 256))[:] = fake_embed(x)
            return True

        def _shape_ok(self, shape: tuple) -> bool:
            mn, _, mx = self.engine.profile
            return len(shape) == 4 and mn <= shape[0] <= mx

    ctx_members = {
        "set_input_shape": lambda self, name, shape: (
            self.calls.append(("set_input_shape", name, tuple(shape)))
            or setattr(self, "shape", tuple(shape)) or self._shape_ok(shape)),
        "set_tensor_address": lambda self, name, addr: (
            self.calls.append(("set_tensor_address", name, addr))
            or self.addresses.__setitem__(name, addr) or True),
        "execute_async_v3": lambda self, stream_handle: (
            self.calls.append(("execute_async_v3", stream_handle))
            or self._run(self.addresses["img"], self.addresses["feats"])),
        "set_binding_shape": lambda self, index, shape: (
            self.calls.append(("set_binding_shape", index, tuple(shape)))
            or setattr(self, "shape", tuple(shape)) or self._shape_ok(shape)),
        "execute_async_v2": lambda self, bindings, stream_handle: (
            self.calls.append(("execute_async_v2", tuple(bindings), stream_handle))
            or self._run(bindings[self.engine.binding_order.index("img")],
                         bindings[self.engine.binding_order.index("feats")])),
        "set_optimization_profile_async": lambda self, index, stream: True,
    }
    trt.IExecutionContext = type("IExecutionContext", (ExecutionContextBase,),
                                 _only(line, "ctx", ctx_members))

    class EngineBase:
        binding_order = ("feats", "img")  # bindings: output first, to catch index mix-ups

        def __init__(self, payload: Dict[str, Any], in_dtype: str = "float32") -> None:
            self.payload, self.profile = payload, tuple(payload["profile"])
            self.in_dtype, self.out_dtype = in_dtype, "float32"
            self.contexts: List[Any] = []

        def create_execution_context(self) -> Any:
            ctx = trt.IExecutionContext(self)
            self.contexts.append(ctx)
            return ctx

    def _profile_shapes(self: Any) -> List[tuple]:
        return [(b, 3, 128, 128) for b in self.profile]

    engine_members = {
        "num_io_tensors": 2,
        "get_tensor_name": lambda self, i: ("img", "feats")[i],
        "get_tensor_mode": lambda self, name: "input" if name == "img" else "output",
        "get_tensor_shape": lambda self, name: (-1, 3, 128, 128) if name == "img" else (-1, 256),
        "get_tensor_dtype": lambda self, name: self.in_dtype if name == "img" else self.out_dtype,
        "get_tensor_profile_shape": lambda self, name, index: _profile_shapes(self),
        "num_optimization_profiles": 1,
        "num_bindings": 2,
        "get_binding_name": lambda self, i: self.binding_order[i],
        "get_binding_index": lambda self, name: self.binding_order.index(name),
        "binding_is_input": lambda self, i: self.binding_order[i] == "img",
        "get_binding_shape": lambda self, i: ((-1, 3, 128, 128) if self.binding_order[i] == "img"
                                              else (-1, 256)),
        "get_binding_dtype": lambda self, i: (self.in_dtype if self.binding_order[i] == "img"
                                              else self.out_dtype),
        "get_profile_shape": lambda self, profile, binding: _profile_shapes(self),
        "max_batch_size": 1,
        "has_implicit_batch_dimension": False,
    }
    trt.ICudaEngine = type("ICudaEngine", (EngineBase,), _only(line, "engine", engine_members))

    class RuntimeBase:
        def __init__(self, logger: Any) -> None:
            self.deserialized = 0

        def deserialize_cuda_engine(self, data: bytes) -> Any:
            trt.cuda.require_context()
            if not bytes(data).startswith(b"FAKEENGINE"):
                return None
            payload = json.loads(bytes(data)[len(b"FAKEENGINE"):])
            if payload["line"] != line:
                return None  # another TensorRT version: TensorRT refuses it
            self.deserialized += 1
            return trt.ICudaEngine(payload, payload.get("in_dtype", "float32"))

    trt.Runtime = type("Runtime", (RuntimeBase,), _only(line, "runtime", {
        "engine_host_code_allowed": False}))

    class CalibratorBase:
        def __init__(self) -> None:
            self.base_initialized = True
            trt.calibrators.append(self)

    for cls in ("IInt8EntropyCalibrator2", "IInt8EntropyCalibrator", "IInt8MinMaxCalibrator",
                "IInt8LegacyCalibrator"):
        if cls in names_for(line, "trt"):
            setattr(trt, cls, type(cls, (CalibratorBase,), {}))
    trt.cuda = None  # set by tests that run engines (the fake pycuda holding device memory)
    return trt
