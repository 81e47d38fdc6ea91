"""TensorRT code that can be tested without a GPU: feature detection on fakes shaped like each
TensorRT line, engine cache keys and sidecars, profiles, and clear errors when it is absent."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from docedge.runtime.backends import trt_compat as compat
from docedge.runtime.backends.trt_api_table import API, LINES, names_for
from docedge.runtime.backends.trt_builder import EngineBuildError, choose_mode
from docedge.runtime.engine_cache import (
    EngineCacheMismatch,
    EngineKey,
    Profile,
    check_engine_file,
    find_engine,
    read_sidecar,
    write_engine,
)
from docedge.runtime.errors import BackendUnavailableError


def fake_trt(line: str):
    """A stand-in tensorrt module with exactly the attributes the table lists for ``line``."""
    flags = types.SimpleNamespace(**{n: i for i, n in enumerate(sorted(names_for(line, "flag")))})
    netflags = types.SimpleNamespace(**{n: i for i, n in enumerate(sorted(names_for(line, "netflag")))})
    mod = types.SimpleNamespace(BuilderFlag=flags, NetworkDefinitionCreationFlag=netflags,
                                __version__={"8.5": "8.5.2.2", "10": "10.3.0", "11": "11.0.0"}[line],
                                TensorIOMode=types.SimpleNamespace(INPUT="in", OUTPUT="out"))
    if "8.5" in API["trt.IInt8EntropyCalibrator2"] and line in API["trt.IInt8EntropyCalibrator2"]:
        mod.IInt8EntropyCalibrator2 = object
    return mod


class FakeNamedEngine:
    num_io_tensors = 2

    def get_tensor_name(self, i):
        return ["img", "feats"][i]

    def get_tensor_mode(self, name):
        return "in" if name == "img" else "out"

    def get_tensor_profile_shape(self, name, profile):
        return [(1, 3, 128, 128), (32, 3, 128, 128), (64, 3, 128, 128)]

    def get_tensor_shape(self, name):
        return (-1, 256)


class FakeBindingEngine:
    num_bindings = 2

    def get_binding_name(self, i):
        return ["feats", "img"][i]

    def binding_is_input(self, i):
        return i == 1

    def get_profile_shape(self, profile, binding):
        return [(1, 3, 128, 128), (8, 3, 128, 128), (16, 3, 128, 128)]

    def get_binding_shape(self, i):
        return (-1, 256)


class RecordingContext:
    def __init__(self, named):
        self.calls = []
        if named:
            self.set_input_shape = lambda n, s: self.calls.append(("shape", n, s)) or True
            self.set_tensor_address = lambda n, p: self.calls.append(("addr", n, p)) or True
            self.execute_async_v3 = lambda h: self.calls.append(("v3", h)) or True
        else:
            self.set_binding_shape = lambda i, s: self.calls.append(("shape", i, s)) or True
            self.execute_async_v2 = lambda bindings, stream_handle: self.calls.append(
                ("v2", tuple(bindings), stream_handle)) or True


def test_api_table_covers_every_line():
    assert LINES == ("8.5", "10", "11")
    assert all(v <= set(LINES) for v in API.values())
    assert "FP16" not in names_for("11", "flag") and "FP16" in names_for("8.5", "flag")


@pytest.mark.parametrize("line, strongly, flags, calibrators", [
    ("8.5", False, True, True), ("10", True, True, True), ("11", True, False, False),
])
def test_feature_detection_per_line(line, strongly, flags, calibrators):
    trt = fake_trt(line)
    assert compat.supports_strongly_typed(trt) is strongly
    assert compat.has_precision_flags(trt) is flags
    assert compat.has_calibrators(trt) is calibrators


def test_build_mode_follows_the_tensorrt_line():
    assert choose_mode(fake_trt("8.5"), "fp16", False) == "implicit"
    assert choose_mode(fake_trt("8.5"), "int8", False) == "explicit-qdq"
    assert choose_mode(fake_trt("10"), "int8", False) == "strongly-typed"
    assert choose_mode(fake_trt("10"), "int8", True) == "implicit"
    with pytest.raises(EngineBuildError, match="no FP16/INT8 builder flags"):
        choose_mode(fake_trt("11"), "fp16", True)


def test_network_flags():
    t85 = fake_trt("8.5")
    assert compat.network_flags(t85, False) == 1 << t85.NetworkDefinitionCreationFlag.EXPLICIT_BATCH
    t10 = fake_trt("10")
    assert compat.network_flags(t10, True) == 1 << t10.NetworkDefinitionCreationFlag.STRONGLY_TYPED
    with pytest.raises(BackendUnavailableError, match="strongly typed"):
        compat.network_flags(fake_trt("8.5"), True)


def test_engine_io_named_and_bindings():
    named = compat.engine_io(fake_trt("10"), FakeNamedEngine())
    assert named.named and (named.input_name, named.output_name) == ("img", "feats")
    assert (named.min_batch, named.opt_batch, named.max_batch, named.output_dim) == (1, 32, 64, 256)
    legacy = compat.engine_io(fake_trt("8.5"), types.SimpleNamespace(**{
        k: getattr(FakeBindingEngine(), k) for k in dir(FakeBindingEngine) if not k.startswith("_")}))
    assert not legacy.named and (legacy.input_index, legacy.output_index) == (1, 0)
    assert legacy.max_batch == 16


def test_execute_uses_v3_or_v2_with_bindings_in_engine_order():
    io3 = compat.engine_io(fake_trt("10"), FakeNamedEngine())
    ctx3 = RecordingContext(named=True)
    compat.execute(ctx3, io3, 5, 111, 222, 7)
    assert ctx3.calls == [("shape", "img", (5, 3, 128, 128)), ("addr", "img", 111),
                          ("addr", "feats", 222), ("v3", 7)]
    eng = types.SimpleNamespace(**{k: getattr(FakeBindingEngine(), k)
                                   for k in dir(FakeBindingEngine) if not k.startswith("_")})
    io2 = compat.engine_io(fake_trt("8.5"), eng)
    ctx2 = RecordingContext(named=False)
    compat.execute(ctx2, io2, 3, 111, 222, 7)
    assert ctx2.calls == [("shape", 1, (3, 3, 128, 128)), ("v2", (222, 111), 7)]


def test_calibration_version_codes():
    assert compat.calibration_version_code("8.5.2.2") == "8502"
    assert compat.calibration_version_code("8.6.1") == "8601"
    assert compat.calibration_version_code("10.3.0.26") == "100300"


def test_profile_validation():
    assert Profile().opt_batch == 32
    with pytest.raises(ValueError):
        Profile(4, 2, 8)


def key(**kw):
    base = dict(onnx_sha256="ab" * 32, precision="fp16", mode="strongly-typed", trt_version="10.3.0",
                compute_capability="8.7", profile=Profile(1, 32, 64))
    base.update(kw)
    return EngineKey(**base)


def test_engine_cache_round_trip_and_invalidation(tmp_path):
    k = key()
    paths = write_engine(tmp_path, k, b"ENGINE-BYTES", {"gpu_name": "Orin", "trt_version": "10.3.0"})
    assert paths["engine"].read_bytes() == b"ENGINE-BYTES"  # written as-is, nothing prepended
    side = read_sidecar(paths["sidecar"])
    assert side["gpu_name"] == "Orin" and side["key"]["precision"] == "fp16"
    assert find_engine(tmp_path, k) == paths["engine"]
    for other in (key(trt_version="10.4.0"), key(compute_capability="8.6"), key(onnx_sha256="cd" * 32),
                  key(profile=Profile(1, 8, 16)), key(precision="int8")):
        assert other.name() != k.name()
        assert find_engine(tmp_path, other) is None  # a different key is simply another engine


def test_tampered_sidecar_is_a_clear_mismatch(tmp_path):
    k = key()
    paths = write_engine(tmp_path, k, b"E", {})
    side = json.loads(paths["sidecar"].read_text())
    side["key"]["trt_version"] = "8.5.2"
    paths["sidecar"].write_text(json.dumps(side))
    with pytest.raises(EngineCacheMismatch, match="trt_version"):
        find_engine(tmp_path, k)


def test_user_engine_from_another_gpu_is_refused(tmp_path):
    paths = write_engine(tmp_path, key(compute_capability="7.2"), b"E", {})
    with pytest.raises(EngineCacheMismatch, match="compute_capability"):
        check_engine_file(paths["engine"], key())


def test_missing_tensorrt_says_what_to_install(seeded_bundle):
    pytest.importorskip("numpy")
    try:
        import tensorrt
    except ImportError:
        tensorrt = None
    if tensorrt is not None and hasattr(tensorrt, "Builder"):
        pytest.skip("TensorRT is installed here")
    from docedge.runtime import Embedder

    with pytest.raises(BackendUnavailableError, match=r"TensorRT is not available.*install"):
        Embedder(seeded_bundle, backend="tensorrt")
    assert np.__name__  # keep numpy import used
