"""TensorRT compatibility layer, tested on fake ``tensorrt`` modules shaped like each line.

The fakes below are built from :mod:`docedge.runtime.backends.trt_api_table`: a fake of line L
has exactly the attributes the table records for L (plus the ones every line shares and the
table does not list). They also behave enough like TensorRT (parse, build, deserialize,
execute a deterministic "embedding" through fake pycuda device memory) for the builder and
backend tests in test_tensorrt_backend.py, which import them from here.

The table itself is checked against the installed ``tensorrt-stubs`` (10.13) for line "10".
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
import types
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

import numpy as np
import pytest

from docedge.runtime.backends import trt_compat as compat
from docedge.runtime.backends.trt_api_table import (
    API,
    DEPRECATED,
    LINES,
    PREFIXES,
    names_for,
    table_markdown,
)
from docedge.runtime.errors import BackendUnavailableError

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


# --- the table --------------------------------------------------------------------------------
def test_table_covers_three_lines_with_known_prefixes():
    assert LINES == ("8.5", "10", "11")
    assert all(v and v <= set(LINES) for v in API.values())
    assert {k.split(".")[0] for k in API} <= set(PREFIXES)
    assert set(DEPRECATED) <= set(API)
    assert "FP16" in names_for("8.5", "flag") and "FP16" not in names_for("11", "flag")
    assert "execute_async_v2" in names_for("8.5", "ctx")
    assert "execute_async_v2" not in names_for("10", "ctx")
    assert "STRONGLY_TYPED" in names_for("11", "netflag")
    assert "EXPLICIT_BATCH" not in names_for("11", "netflag")
    with pytest.raises(ValueError):
        names_for("9", "flag")
    md = table_markdown()
    assert md.count("\n") == len(API) + 2 and "| `BuilderFlag.FP16` | yes | yes | - |" in md


def _stub_members() -> Optional[Dict[str, Set[str]]]:
    spec = importlib.util.find_spec("tensorrt_bindings")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        stub = Path(loc) / "tensorrt.pyi"
        if stub.is_file():
            break
    else:
        return None
    classes: Dict[str, Set[str]] = {}
    current: Optional[Set[str]] = None
    for line in stub.read_text(encoding="utf-8").splitlines():
        m = re.match(r"class (\w+)\b", line)
        if m:
            current = classes.setdefault(m.group(1), set())
            continue
        m = re.match(r"    (?:def )?(\w+)\s*[:(]", line)
        if m and current is not None:
            current.add(m.group(1))
    return classes


def test_table_column_10_agrees_with_tensorrt_stubs():
    """tensorrt-stubs models TensorRT 10.13: every name the table gives "10" exists there and
    every name it denies "10" does not."""
    classes = _stub_members()
    if classes is None:
        pytest.skip("tensorrt-stubs is not installed (make setup installs it)")
    wrong = []
    for key, lines in API.items():
        prefix, name = key.split(".", 1)
        if prefix == "trt":
            present = name in classes
        else:
            present = name in classes.get(PREFIXES[prefix], set())
        if present != ("10" in lines):
            wrong.append(f"{key}: stubs {'have' if present else 'lack'} it")
    assert not wrong, wrong


# --- feature detection on fakes ---------------------------------------------------------------
EXPECTED = {
    #        strongly precision calib  implicit_batch named bindings vc    host  nodenames line
    "8.5": (False, True, True, True, True, True, False, False, False, "8.5"),
    "10": (True, True, True, False, True, False, True, True, True, "10"),
    "11": (True, False, False, False, True, False, True, True, True, "11"),
}


@pytest.mark.parametrize("line", LINES)
def test_detect_features_per_line(line):
    f = compat.detect_features(make_fake_trt(line))
    got = (f.strongly_typed, f.precision_flags, f.calibrators, f.implicit_batch, f.named_tensors,
           f.bindings, f.version_compatible, f.host_code_runtime, f.parser_node_names, f.line)
    assert got == EXPECTED[line]
    assert f.memory_pools and f.serialized_build and f.tf32_flag
    assert f.version == VERSIONS[line] and f.to_dict()["line"] == line


@pytest.mark.parametrize("line", LINES)
def test_module_level_feature_tests(line):
    trt = make_fake_trt(line)
    assert compat.supports_strongly_typed(trt) is (line != "8.5")
    assert compat.has_precision_flags(trt) is (line != "11")
    assert compat.has_calibrators(trt) is (line != "11")


def test_detection_tolerates_a_bare_module():
    f = compat.detect_features(types.SimpleNamespace())
    assert not any([f.strongly_typed, f.precision_flags, f.named_tensors, f.bindings])
    assert f.version == "unknown" and f.line == "8.5"


def test_network_flags_per_line():
    t85, t10, t11 = (make_fake_trt(x) for x in LINES)
    nf = "NetworkDefinitionCreationFlag"
    assert compat.network_flags(t85, False) == 1 << getattr(t85, nf).EXPLICIT_BATCH
    with pytest.raises(BackendUnavailableError, match="no strongly typed"):
        compat.network_flags(t85, True)
    # 10: EXPLICIT_BATCH exists but is deprecated and ignored: not set
    assert compat.network_flags(t10, True) == 1 << getattr(t10, nf).STRONGLY_TYPED
    assert compat.network_flags(t10, False) == 0
    assert compat.network_flags(t11, True) == 1 << getattr(t11, nf).STRONGLY_TYPED


def test_explicit_batch_follows_implicit_batch_support_not_the_version():
    """A 9.x-like TensorRT: strongly typed networks exist, but so does implicit batch
    (Builder.max_batch_size), so ONNX networks still need EXPLICIT_BATCH."""
    t9 = make_fake_trt("10")
    t9.Builder.max_batch_size = 1
    assert compat.needs_explicit_batch_flag(t9)
    nf = t9.NetworkDefinitionCreationFlag
    assert compat.network_flags(t9, True) == (1 << nf.EXPLICIT_BATCH) | (1 << nf.STRONGLY_TYPED)
    assert not compat.needs_explicit_batch_flag(make_fake_trt("11"))


def test_workspace_uses_memory_pools_else_max_workspace_size():
    trt = make_fake_trt("8.5")
    config = trt.IBuilderConfig()
    assert compat.set_workspace(trt, config, 256) == "set_memory_pool_limit"
    assert config.pools == {"workspace": 256 << 20}
    old = types.SimpleNamespace(max_workspace_size=0)  # TensorRT < 8.4
    assert compat.set_workspace(trt, old, 64) == "max_workspace_size"
    assert old.max_workspace_size == 64 << 20


def test_build_serialized_prefers_build_serialized_network():
    new = types.SimpleNamespace(build_serialized_network=lambda n, c: b"PLAN")
    assert compat.build_serialized(new, None, None) == b"PLAN"
    assert compat.build_serialized(types.SimpleNamespace(
        build_serialized_network=lambda n, c: None), None, None) is None
    legacy_engine = types.SimpleNamespace(serialize=lambda: b"OLDPLAN")
    old = types.SimpleNamespace(build_engine=lambda n, c: legacy_engine)
    assert compat.build_serialized(old, None, None) == b"OLDPLAN"


@pytest.mark.parametrize("line, mode, precision, flags", [
    ("8.5", "implicit", "fp32", []), ("8.5", "implicit", "fp16", ["FP16"]),
    ("8.5", "implicit", "int8", ["INT8", "FP16"]),
    ("8.5", "explicit-qdq", "int8", ["INT8", "FP16"]),
    ("10", "strongly-typed", "fp16", []), ("10", "strongly-typed", "int8", []),
    ("11", "strongly-typed", "int8", []), ("11", "strongly-typed", "fp32", []),
])
def test_builder_precision_flags(line, mode, precision, flags):
    assert compat.builder_precision_flags(make_fake_trt(line), precision, mode) == flags


def test_no_precision_flags_on_11():
    with pytest.raises(BackendUnavailableError, match="no FP16/INT8 builder flags"):
        compat.builder_precision_flags(make_fake_trt("11"), "fp16", "implicit")


@pytest.mark.parametrize("line", LINES)
def test_parser_errors_name_node_and_reason(line):
    trt = make_fake_trt(line)
    parser = trt.OnnxParser(None, None)
    assert not parser.parse(b"BAD model")
    errors = compat.parser_errors(parser)
    assert len(errors) == 2
    assert errors[0].startswith("node 3") and "Unsupported operator FancyOp" in errors[0]
    assert "[ErrorCode.UNSUPPORTED_NODE]" in errors[0] and errors[1].startswith("model: ")
    if line == "8.5":
        assert "(" not in errors[0].split(":")[0]
    else:  # 10+: ParserError.node_name / node_operator
        assert errors[0].startswith("node 3 (/head/Conv_3, Conv): ")


@pytest.mark.parametrize("line", ["8.5", "10"])
@pytest.mark.parametrize("algorithm, base", [
    ("EntropyCalibration2", "IInt8EntropyCalibrator2"),
    ("MinMaxCalibration", "IInt8MinMaxCalibrator"),
    ("EntropyCalibration", "IInt8EntropyCalibrator"),
])
def test_cache_calibrator_replays_the_cache(line, algorithm, base):
    trt = make_fake_trt(line)
    cal = compat.make_cache_calibrator(trt, b"TRT-8502-X\nimg: 3c010204\n", algorithm)
    assert isinstance(cal, getattr(trt, base)) and cal.base_initialized
    assert cal.read_calibration_cache() == b"TRT-8502-X\nimg: 3c010204\n"
    assert cal.get_batch_size() == 1 and cal.batches_requested == 0
    assert cal.get_batch(["img"]) is None and cal.batches_requested == 1
    assert cal.write_calibration_cache(b"ignored") is None


def test_cache_calibrator_refusals():
    with pytest.raises(BackendUnavailableError, match="no INT8 calibrators"):
        compat.make_cache_calibrator(make_fake_trt("11"), b"TRT-")
    with pytest.raises(BackendUnavailableError, match="LegacyCalibration"):
        compat.make_cache_calibrator(make_fake_trt("8.5"), b"TRT-", "LegacyCalibration")


def test_pin_layers_float():
    trt = make_fake_trt("8.5")
    net = trt.Builder(trt.Logger()).create_network(0)
    trt.OnnxParser(net, None).parse(b"ONNX")
    pinned, unmatched = compat.pin_layers_float(trt, net, ["/head/ReduceL2", "/nope"])
    assert pinned == ["/head/ReduceL2"] and unmatched == ["/nope"]
    layer = net.layers[FAKE_LAYERS.index("/head/ReduceL2")]
    assert layer.precision == "float32" and layer.output_types == {0: "float32"}
    assert all(x.precision is None for x in net.layers if x is not layer)


@pytest.mark.parametrize("line, allowed", [("8.5", False), ("10", True), ("11", True)])
def test_host_code_for_version_compatible_engines(line, allowed):
    runtime = make_fake_trt(line).Runtime(None)
    assert compat.allow_host_code(runtime) is allowed
    assert getattr(runtime, "engine_host_code_allowed", False) is allowed


# --- engine I/O -------------------------------------------------------------------------------
def _engine(line: str, profile=(1, 32, 64), in_dtype="float32"):
    trt = make_fake_trt(line)
    return trt, trt.ICudaEngine({"profile": list(profile), "line": line}, in_dtype)


@pytest.mark.parametrize("line", LINES)
def test_engine_io_auto_uses_named_tensors_everywhere(line):
    trt, engine = _engine(line)
    io = compat.engine_io(trt, engine)
    assert io.named and (io.input_name, io.output_name) == ("img", "feats")
    assert (io.min_batch, io.opt_batch, io.max_batch, io.output_dim) == (1, 32, 64, 256)
    assert (io.input_dtype, io.output_dtype) == ("float32", "float32")
    assert "execute_async_v3" in io.api


def test_engine_io_bindings_on_85_in_engine_order():
    trt, engine = _engine("8.5", (2, 8, 16), "float16")
    io = compat.engine_io(trt, engine, api="bindings")
    assert not io.named and (io.input_index, io.output_index) == (1, 0)
    assert (io.min_batch, io.opt_batch, io.max_batch) == (2, 8, 16)
    assert io.input_dtype == "float16" and "execute_async_v2" in io.api


def test_engine_io_refusals():
    trt, engine = _engine("10")
    with pytest.raises(BackendUnavailableError, match="no bindings API"):
        compat.engine_io(trt, engine, api="bindings")
    with pytest.raises(ValueError):
        compat.engine_io(trt, engine, api="v2")
    two_inputs = types.SimpleNamespace(
        num_io_tensors=3, get_tensor_name=lambda i: ["a", "b", "c"][i],
        get_tensor_mode=lambda n: "input" if n != "c" else "output")
    with pytest.raises(BackendUnavailableError, match="one input and one output"):
        compat.engine_io(trt, two_inputs)
    trt, wrong = _engine("10")
    wrong.get_tensor_profile_shape = lambda name, i: [(1, 3, 224, 224)] * 3
    with pytest.raises(BackendUnavailableError, match="is not"):
        compat.engine_io(trt, wrong)
    trt, int8_io = _engine("10", in_dtype="int8")
    with pytest.raises(BackendUnavailableError, match="int8"):
        compat.engine_io(trt, int8_io)


class Recorder:
    def __init__(self, named: bool, ok: bool = True):
        self.calls = []
        if named:
            self.set_input_shape = lambda n, s: self.calls.append(("shape", n, s)) or ok
            self.set_tensor_address = lambda n, p: self.calls.append(("addr", n, p))
            self.execute_async_v3 = lambda h: self.calls.append(("v3", h)) or True
        else:
            self.set_binding_shape = lambda i, s: self.calls.append(("shape", i, s)) or ok
            self.execute_async_v2 = lambda bindings, stream_handle: self.calls.append(
                ("v2", tuple(bindings), stream_handle)) or True


def test_execute_sets_the_real_batch_and_enqueues():
    trt, engine = _engine("10")
    io = compat.engine_io(trt, engine)
    ctx = Recorder(named=True)
    compat.execute(ctx, io, 5, 111, 222, 9)
    assert ctx.calls == [("shape", "img", (5, 3, 128, 128)), ("addr", "img", 111),
                         ("addr", "feats", 222), ("v3", 9)]
    trt, engine = _engine("8.5")
    io = compat.engine_io(trt, engine, api="bindings")
    ctx = Recorder(named=False)
    compat.execute(ctx, io, 3, 111, 222, 9)
    assert ctx.calls == [("shape", 1, (3, 3, 128, 128)), ("v2", (222, 111), 9)]


def test_execute_reports_a_refused_shape():
    trt, engine = _engine("10")
    io = compat.engine_io(trt, engine)
    with pytest.raises(compat.TensorRTExecutionError, match="refused input shape"):
        compat.execute(Recorder(named=True, ok=False), io, 65, 1, 2, 3)


# --- versions, imports, hints -----------------------------------------------------------------
@pytest.mark.parametrize("version, code", [("8.5.2.2", "8502"), ("8.6.1", "8601"),
                                           ("10.3.0.26", "100300"), ("10.13.0", "101300"),
                                           ("11.1.0.5", "110100"), ("10.3", "100300")])
def test_calibration_version_codes(version, code):
    assert compat.calibration_version_code(version) == code


def test_version_tuple():
    assert compat.version_tuple("10.3.0.26") == (10, 3, 0, 26)
    assert compat.version_tuple("8.5.2.post1") == (8, 5, 2)
    assert compat.version_tuple("11.0rc1") == (11, 0)


def test_dims():
    assert compat.dims((4, 3, 128, 128)) == (4, 3, 128, 128)
    assert compat.dims([np.int64(-1), 256]) == (-1, 256)


def test_install_hints_per_platform(monkeypatch):
    monkeypatch.setattr(compat, "on_jetson", lambda: True)
    jetson = compat.install_hint("tensorrt")
    assert "python3-libnvinfer" in jetson and "--system-site-packages" in jetson
    assert "not pip" in jetson
    assert "from source" in compat.install_hint("pycuda")
    monkeypatch.setattr(compat, "on_jetson", lambda: False)
    monkeypatch.setattr(compat.platform, "machine", lambda: "x86_64")
    x86 = compat.install_hint("tensorrt")
    assert "tensorrt-cu12" in x86 and "pycuda" in x86
    assert "nvcc" in compat.install_hint("pycuda")


def test_import_tensorrt_missing_or_stub_only(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import raises ImportError
    with pytest.raises(BackendUnavailableError, match=r"TensorRT is not available.*install"):
        compat.import_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))  # stubs only
    with pytest.raises(BackendUnavailableError, match="only type stubs"):
        compat.import_tensorrt()
    fake = make_fake_trt("10")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    assert compat.import_tensorrt() is fake


def test_import_pycuda_missing_or_without_gpu(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    with pytest.raises(BackendUnavailableError, match="pycuda is not available"):
        compat.import_pycuda()

    def broken_init():
        raise RuntimeError("cuInit failed: no CUDA-capable device is detected")

    driver = types.ModuleType("pycuda.driver")
    driver.init = broken_init
    pkg = types.ModuleType("pycuda")
    pkg.driver = driver
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    with pytest.raises(BackendUnavailableError, match="CUDA could not be initialized"):
        compat.import_pycuda()
    fake = FakeCuda(count=0)
    driver.init, driver.Device = fake.init, fake.Device
    with pytest.raises(BackendUnavailableError, match="found no GPU"):
        compat.import_pycuda()


def test_device_info():
    d = compat.device_info(FakeCuda("Orin", (8, 7)), 0)
    assert (d.index, d.name, d.compute_capability) == (0, "Orin", "8.7")
    with pytest.raises(BackendUnavailableError, match="device 1 does not exist"):
        compat.device_info(FakeCuda(), 1)
