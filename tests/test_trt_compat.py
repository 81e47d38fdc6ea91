"""TensorRT compatibility layer, tested on fake ``tensorrt`` modules shaped like each line.

The fakes come from :mod:`fake_tensorrt` (one fake, shared by every TensorRT test).

The table itself is checked against the installed ``tensorrt-stubs`` (10.13) for line "10".
"""

from __future__ import annotations

import importlib.util
import re
import types
from pathlib import Path
from typing import Dict, Optional, Set

import numpy as np
import pytest
from fake_tensorrt import FAKE_LAYERS, VERSIONS, FakeCuda, make_fake_trt
from trt_api_table import (
    API,
    DEPRECATED,
    LINES,
    PREFIXES,
    names_for,
    table_markdown,
)

from docedge.runtime.backends.tensorrt import compat
from docedge.runtime.errors import BackendUnavailableError


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
