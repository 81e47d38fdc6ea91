"""Engine builds, calibration cache selection and the TensorRT backend, on fake TensorRT lines
(8.5, 10, 11) and a fake pycuda (tests/fake_tensorrt.py), plus the clear errors this machine
(no TensorRT, no GPU) gives for real."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from fake_tensorrt import FakeCuda, fake_embed, make_fake_trt

from docedge.runtime.backends import Backend, create_backend
from docedge.runtime.backends.tensorrt import compat
from docedge.runtime.backends.tensorrt.builder import (
    EngineBuildError,
    build_engine,
    choose_mode,
    gpu_device,
    parse_cache_header,
    select_calibration_cache,
)
from docedge.runtime.backends.tensorrt.engine_cache import (
    EngineCacheMismatch,
    EngineNotFoundError,
    InvalidProfileError,
    Profile,
    read_sidecar,
    sidecar_path,
)
from docedge.runtime.backends.tensorrt.runner import TensorRTBackend, plan_batches
from docedge.runtime.bundle import (
    MANIFEST_NAME,
    artifact_record,
    load_bundle,
    write_manifest,
)
from docedge.runtime.errors import BackendUnavailableError, BundleError
from docedge.runtime.hashing import sha256_file

CACHE_TEXT = "TRT-8502-EntropyCalibration2\nimg: 3c010204\n/stem/conv/Conv_output_0: 3c8b4396\n"


def make_bundle(root: Path, onnx: Optional[dict] = None, cache: Optional[str] = CACHE_TEXT,
                cache_record: Optional[dict] = None, precisions=("fp32", "fp16", "int8")) -> Path:
    """A hand-made bundle: small bytes stand in for the ONNX files (TensorRT never runs here)."""
    root.mkdir(parents=True, exist_ok=True)
    contents = {"fp32": b"ONNX fp32 model", "fp16": b"ONNX fp16 model", "int8": b"ONNX qdq model"}
    contents.update(onnx or {})
    from docedge.export.manifest import base_manifest

    manifest = base_manifest({"name": "fake-model", "source": {"kind": "test", "sha256": "f" * 64}})
    for p in precisions:
        (root / f"model_{p}.onnx").write_bytes(contents[p])
        manifest["artifacts"].append(artifact_record(root, f"model_{p}.onnx", "onnx", p))
    if cache is not None:
        (root / "int8_calibration.cache").write_text(cache)
        extra = {"trt_version_line": cache.split("-Entropy")[0] if cache.startswith("TRT-") else "",
                 "model_sha256": sha256_file(root / "model_fp32.onnx"), "data_sha256": "d" * 64}
        extra.update(cache_record or {})
        manifest["artifacts"].append(artifact_record(root, "int8_calibration.cache",
                                                     "trt-calibration-cache", "int8", **extra))
    write_manifest(root, manifest)
    return root


@pytest.fixture()
def bundle(tmp_path):
    return load_bundle(make_bundle(tmp_path / "bundle"))


class FakeEnv:
    """Installs a fake TensorRT line and fake pycuda in place of the real imports."""

    def __init__(self, monkeypatch):
        self.monkeypatch = monkeypatch

    def use(self, line: str, gpu: str = "Fake Orin", cc=(8, 7), **trt_options):
        self.trt = make_fake_trt(line, **trt_options)
        self.cuda = FakeCuda(gpu, cc)
        self.trt.cuda = self.cuda
        self.monkeypatch.setattr(compat, "import_tensorrt", lambda: self.trt)
        self.monkeypatch.setattr(compat, "import_pycuda", lambda: self.cuda)
        return self


@pytest.fixture()
def env(monkeypatch):
    return FakeEnv(monkeypatch)


# --- modes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("line, precision, implicit, mode", [
    ("8.5", "fp32", False, "implicit"), ("8.5", "fp16", False, "implicit"),
    ("8.5", "int8", False, "explicit-qdq"), ("8.5", "int8", True, "implicit"),
    ("10", "fp32", False, "strongly-typed"), ("10", "fp16", False, "strongly-typed"),
    ("10", "int8", False, "strongly-typed"), ("10", "int8", True, "implicit"),
    ("11", "fp16", False, "strongly-typed"), ("11", "int8", False, "strongly-typed"),
])
def test_build_mode_per_line(line, precision, implicit, mode):
    assert choose_mode(make_fake_trt(line), precision, implicit) == mode


def test_implicit_builds_are_impossible_on_11():
    with pytest.raises(EngineBuildError, match="no FP16/INT8 builder flags"):
        choose_mode(make_fake_trt("11"), "fp16", True)
    with pytest.raises(ValueError, match="precision"):
        choose_mode(make_fake_trt("10"), "bf16", False)


# --- calibration cache ------------------------------------------------------------------------
def test_calibration_cache_selected_and_checked(bundle):
    cal = select_calibration_cache(bundle)
    assert cal.header == "TRT-8502-EntropyCalibration2"
    assert (cal.version_code, cal.algorithm) == ("8502", "EntropyCalibration2")
    assert cal.data == CACHE_TEXT.encode() and cal.sha256 == sha256_file(
        bundle.path / "int8_calibration.cache")
    assert cal.model_sha256 == bundle.artifact("fp32").sha256 and cal.data_sha256 == "d" * 64
    assert "data" not in cal.to_dict()


def test_full_header_in_the_record_is_accepted(tmp_path):
    rec = {"trt_version_line": "TRT-8502-EntropyCalibration2", "float_nodes": ["/head/ReduceL2"]}
    b = load_bundle(make_bundle(tmp_path / "b", cache_record=rec))
    assert select_calibration_cache(b).float_nodes == ("/head/ReduceL2",)


def test_missing_calibration_cache_is_a_clear_error(tmp_path):
    b = load_bundle(make_bundle(tmp_path / "b", cache=None))
    with pytest.raises(BundleError, match=r"trt-calibration-cache.*docedge calibrate int8"):
        select_calibration_cache(b)


def test_cache_for_other_weights_is_refused(tmp_path):
    b = load_bundle(make_bundle(tmp_path / "b", cache_record={"model_sha256": "0" * 64}))
    with pytest.raises(BundleError, match="made for model 0000"):
        select_calibration_cache(b)


def test_modified_cache_is_refused(tmp_path):
    b = load_bundle(make_bundle(tmp_path / "b"))
    (b.path / "int8_calibration.cache").write_text(CACHE_TEXT.replace("3c01", "3c02"))
    with pytest.raises(BundleError, match="modified after calibration"):
        select_calibration_cache(b)


@pytest.mark.parametrize("cache, record, match", [
    ("not a cache\n", {}, "not a TensorRT calibration cache header"),
    (CACHE_TEXT, {"trt_version_line": "TRT-100300"}, "disagrees with the manifest"),
])
def test_inconsistent_cache_headers_are_refused(tmp_path, cache, record, match):
    b = load_bundle(make_bundle(tmp_path / "b", cache=cache, cache_record=record))
    with pytest.raises(BundleError, match=match):
        select_calibration_cache(b)


@pytest.mark.parametrize("version, header", [("8.5.2.2", b"TRT-8502-EntropyCalibration2\n"),
                                             ("10.3.0.26", b"TRT-100300-EntropyCalibration2\n"),
                                             ("10.13.0", b"TRT-101300-EntropyCalibration2\n")])
def test_cache_header_is_rewritten_for_the_running_tensorrt(bundle, version, header):
    replay = select_calibration_cache(bundle).for_tensorrt(version)
    assert replay.startswith(header)
    assert replay.split(b"\n", 1)[1] == CACHE_TEXT.encode().split(b"\n", 1)[1]  # same scales


def test_parse_cache_header():
    assert parse_cache_header("TRT-100300-MinMaxCalibration\n") == ("100300", "MinMaxCalibration")
    for bad in ("TRT-x-Entropy", "TRT-8502", "trt-8502-Entropy"):
        with pytest.raises(ValueError):
            parse_cache_header(bad)


# --- builds on each line ----------------------------------------------------------------------
BUILDS = [
    # line, precision, implicit -> mode, source, builder flags set, network flags, calibrated
    ("8.5", "fp32", False, "implicit", "fp32", [], 1, False),
    ("8.5", "fp16", False, "implicit", "fp32", ["FP16", "TF32"], 1, False),
    ("8.5", "int8", False, "explicit-qdq", "qdq", ["FP16", "INT8", "TF32"], 1, False),
    ("8.5", "int8", True, "implicit", "fp32", ["FP16", "INT8", "TF32"], 1, True),
    ("10", "fp32", False, "strongly-typed", "fp32", [], 32, False),
    ("10", "fp16", False, "strongly-typed", "fp16", ["TF32"], 32, False),
    ("10", "int8", False, "strongly-typed", "qdq", ["TF32"], 32, False),
    ("10", "fp16", True, "implicit", "fp32", ["FP16", "TF32"], 0, False),
    ("10", "int8", True, "implicit", "fp32", ["FP16", "INT8", "TF32"], 0, True),
    ("11", "fp32", False, "strongly-typed", "fp32", [], 32, False),
    ("11", "fp16", False, "strongly-typed", "fp16", ["TF32"], 32, False),
    ("11", "int8", False, "strongly-typed", "qdq", ["TF32"], 32, False),
]


@pytest.mark.parametrize("line, precision, implicit, mode, source, flags, netflags, calibrated",
                         BUILDS)
def test_build_per_line(env, bundle, tmp_path, line, precision, implicit, mode, source, flags,
                        netflags, calibrated):
    env.use(line)
    path, built = build_engine(bundle, precision, implicit=implicit, cache_dir=tmp_path / "c")
    assert built and path.parent == tmp_path / "c"
    payload = env.trt.built[-1]
    assert payload["source"] == f"ONNX {source} model"
    assert payload["builder_flags"] == flags and payload["network_flags"] == netflags
    assert payload["calibrated"] is calibrated and payload["profile"] == [1, 32, 64]
    if calibrated:
        assert env.trt.calibrators and env.trt.calibrators[-1].batches_requested == 0
    assert path.read_bytes().startswith(b"FAKEENGINE")  # as TensorRT serialized it
    side = read_sidecar(sidecar_path(path))
    assert side["trt_version"] == env.trt.__version__ and side["mode"] == mode
    assert (side["gpu_name"], side["compute_capability"]) == ("Fake Orin", "8.7")
    assert side["precision"] == precision and side["profile"] == {"min": 1, "opt": 32, "max": 64}
    src_precision = {"fp32": "fp32", "fp16": "fp16", "qdq": "int8"}[source]
    assert side["source_onnx"] == f"model_{src_precision}.onnx"
    assert side["source_onnx_sha256"] == bundle.artifact(src_precision).sha256
    cal_sha = side["calibration_cache_sha256"]
    assert (cal_sha == bundle.artifact("int8", "trt-calibration-cache").sha256) is calibrated
    assert side["options"]["tf32"] is (precision != "fp32")
    assert side["trt_features"]["line"] == line and side["build_seconds"] >= 0
    assert side["bundle"]["path"] == str(bundle.path.resolve()) and side["built_at"]
    assert f"-trt{env.trt.__version__}-sm87-fakeorin-{mode}-b1_32_64" in path.name
    # the same request again is served from the cache; force rebuilds
    assert build_engine(bundle, precision, implicit=implicit, cache_dir=tmp_path / "c") == (
        path, False)
    n = len(env.trt.built)
    assert build_engine(bundle, precision, implicit=implicit, cache_dir=tmp_path / "c",
                        force=True) == (path, True)
    assert len(env.trt.built) == n + 1


def test_tf32_can_be_forced_either_way(env, bundle, tmp_path):
    env.use("10")
    build_engine(bundle, "fp32", tf32=True, cache_dir=tmp_path)
    assert env.trt.built[-1]["builder_flags"] == ["TF32"]
    build_engine(bundle, "fp16", tf32=False, cache_dir=tmp_path, force=True)
    assert env.trt.built[-1]["builder_flags"] == []


def test_parse_errors_name_the_node(env, tmp_path):
    env.use("10")
    b = load_bundle(make_bundle(tmp_path / "b", onnx={"fp16": b"BAD graph"}))
    with pytest.raises(EngineBuildError, match=r"node 3 \(/head/Conv_3, Conv\): Unsupported "
                                               r"operator FancyOp"):
        build_engine(b, "fp16", cache_dir=tmp_path / "c")
    env.use("8.5")  # fp16 on 8.5 builds from the fp32 ONNX
    b2 = load_bundle(make_bundle(tmp_path / "b2", onnx={"fp32": b"BAD"}))
    with pytest.raises(EngineBuildError, match=r"ONNX parser failed: node 3: Unsupported"):
        build_engine(b2, "fp16", cache_dir=tmp_path / "c")


def test_fixed_batch_onnx_needs_a_static_profile(env, tmp_path):
    env.use("10")
    b = load_bundle(make_bundle(tmp_path / "b", onnx={"fp16": b"STATIC4 model"}))
    with pytest.raises(EngineBuildError, match="--min-batch 4 --opt-batch 4 --max-batch 4"):
        build_engine(b, "fp16", cache_dir=tmp_path / "c")
    _, built = build_engine(b, "fp16", Profile(4, 4, 4), cache_dir=tmp_path / "c")
    assert built and env.trt.built[-1]["profile"] == [4, 4, 4]


def test_build_failure_reports_tensorrt_errors(env, bundle, tmp_path):
    env.use("10", fail_build=True)
    with pytest.raises(EngineBuildError, match="no implementation obeys"):
        build_engine(bundle, "fp16", cache_dir=tmp_path)
    assert not list(tmp_path.glob("*.engine"))


@pytest.mark.parametrize("line", ["8.5", "10"])
def test_implicit_int8_replays_the_cache_for_this_tensorrt(env, bundle, tmp_path, line):
    env.use(line)  # the bundle's cache says TRT-8502; the fake refuses other versions' headers
    path, _ = build_engine(bundle, "int8", implicit=True, cache_dir=tmp_path)
    code = {"8.5": "8502", "10": "100300"}[line]
    assert env.trt.calibrators[-1].replayed.startswith(f"TRT-{code}-EntropyCalibration2".encode())
    cal = read_sidecar(sidecar_path(path))["calibration_cache"]
    assert cal["header"] == "TRT-8502-EntropyCalibration2"
    assert cal["replayed_header"] == f"TRT-{code}-EntropyCalibration2"
    assert cal["data_sha256"] == "d" * 64 and cal["float_layers_pinned"] == []


def test_float_nodes_of_the_qdq_model_stay_fp32_in_implicit_builds(env, tmp_path, caplog):
    env.use("10")
    record = {"float_nodes": ["/blocks.1/dw/Conv", "/head/ReduceL2", "/gone/Conv"]}
    b = load_bundle(make_bundle(tmp_path / "b", cache_record=record))
    path, _ = build_engine(b, "int8", implicit=True, cache_dir=tmp_path / "c")
    payload = env.trt.built[-1]
    assert payload["float_layers"] == ["/blocks.1/dw/Conv", "/head/ReduceL2"]
    assert "PREFER_PRECISION_CONSTRAINTS" in payload["builder_flags"]
    cal = read_sidecar(sidecar_path(path))["calibration_cache"]
    assert cal["float_nodes_unmatched"] == ["/gone/Conv"]
    assert "match no TensorRT layer" in caplog.text
    build_engine(b, "int8", cache_dir=tmp_path / "c")  # strongly typed: the QDQ ONNX decides
    assert env.trt.built[-1]["float_layers"] == []
    assert "PREFER_PRECISION_CONSTRAINTS" not in env.trt.built[-1]["builder_flags"]


def test_rejected_calibration_cache_is_explained(env, bundle, tmp_path):
    env.use("10", reject_calibration_cache=True)
    with pytest.raises(EngineBuildError, match=r"did not accept.*TRT-8502.*replayed as TRT-100300"):
        build_engine(bundle, "int8", implicit=True, cache_dir=tmp_path)


def test_implicit_int8_without_cache_fails_before_building(env, tmp_path):
    env.use("8.5")
    b = load_bundle(make_bundle(tmp_path / "b", cache=None))
    with pytest.raises(BundleError, match="no TensorRT calibration cache"):
        build_engine(b, "int8", implicit=True, cache_dir=tmp_path / "c")
    assert env.trt.built == []


def test_version_compatible(env, bundle, tmp_path):
    env.use("8.5")
    with pytest.raises(EngineBuildError, match=r"8\.6\+"):
        build_engine(bundle, "fp16", version_compatible=True, cache_dir=tmp_path)
    env.use("10")
    path, _ = build_engine(bundle, "fp16", version_compatible=True, cache_dir=tmp_path)
    assert "-vc" in path.name and "VERSION_COMPATIBLE" in env.trt.built[-1]["builder_flags"]
    assert read_sidecar(sidecar_path(path))["key"]["version_compatible"] is True


def test_dla_builds(env, bundle, tmp_path, caplog):
    env.use("8.5")
    path, _ = build_engine(bundle, "fp16", Profile(4, 4, 4), dla_core=1, cache_dir=tmp_path)
    payload = env.trt.built[-1]
    assert payload["dla"] == 1 and payload["device_type"] == "dla"
    assert "GPU_FALLBACK" in payload["builder_flags"] and "-dla1" in path.name
    build_engine(bundle, "fp16", dla_core=0, cache_dir=tmp_path)
    assert "static shapes" in caplog.text
    with pytest.raises(EngineBuildError, match="DLA core 5 does not exist"):
        build_engine(bundle, "fp16", dla_core=5, cache_dir=tmp_path)


def test_timing_cache_is_read_and_updated(env, bundle, tmp_path):
    env.use("10")
    tc = tmp_path / "timing.cache"
    build_engine(bundle, "fp16", timing_cache=tc, cache_dir=tmp_path / "c")
    assert tc.read_bytes() == b"+timing"
    build_engine(bundle, "fp32", timing_cache=tc, cache_dir=tmp_path / "c")
    assert tc.read_bytes() == b"+timing+timing"


def test_workspace_and_profile_recorded(env, bundle, tmp_path):
    env.use("10")
    path, _ = build_engine(bundle, "fp16", Profile(2, 8, 16), workspace_mb=256, cache_dir=tmp_path)
    side = read_sidecar(sidecar_path(path))
    assert side["options"]["workspace_mb"] == 256
    assert side["options"]["workspace_api"] == "set_memory_pool_limit"
    assert env.trt.built[-1]["profile"] == [2, 8, 16] and env.trt.built[-1]["input"] == "img"


def test_tampered_cache_entry_is_rebuilt(env, bundle, tmp_path, caplog):
    env.use("10")
    path, _ = build_engine(bundle, "fp16", cache_dir=tmp_path)
    path.write_bytes(b"FAKEENGINE garbage")
    assert build_engine(bundle, "fp16", cache_dir=tmp_path) == (path, True)
    assert "rebuilding" in caplog.text


def test_gpu_device_through_pycuda(env):
    env.use("10", gpu="Jetson AGX Thor", cc=(11, 0))
    d = gpu_device(0)
    assert (d.name, d.compute_capability) == ("Jetson AGX Thor", "11.0")


# --- batching ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n, mn, mx, plan", [
    (1, 1, 64, [(0, 1, 1)]),
    (64, 1, 64, [(0, 64, 64)]),
    (70, 1, 64, [(0, 64, 64), (64, 70, 6)]),
    (3, 4, 16, [(0, 3, 4)]),
    (35, 4, 16, [(0, 16, 16), (16, 32, 16), (32, 35, 4)]),
    (0, 1, 8, []),
])
def test_plan_batches(n, mn, mx, plan):
    assert plan_batches(n, mn, mx) == plan


def test_plan_batches_rejects_bad_ranges():
    with pytest.raises(ValueError):
        plan_batches(4, 8, 4)


# --- the backend on each line -----------------------------------------------------------------
def _batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, 128, 128), dtype=np.float32)


@pytest.mark.parametrize("line, api", [("8.5", "auto"), ("8.5", "bindings"), ("10", "auto"),
                                       ("11", "auto")])
def test_backend_runs_real_sizes_splits_and_pads(env, bundle, tmp_path, line, api):
    env.use(line)
    path, _ = build_engine(bundle, "fp16", Profile(2, 8, 16), cache_dir=tmp_path)
    be = TensorRTBackend(path, "fp16", api=api)
    assert isinstance(be, Backend) and be.max_batch == 16 and be.name == "tensorrt"
    ctx = env.trt_context = be._context
    for n in (1, 2, 5, 16, 40):
        x = _batch(n, n)
        y = be.run(x)
        assert y.shape == (n, 256) and y.dtype == np.float32
        np.testing.assert_allclose(y, fake_embed(x), rtol=1e-5, atol=1e-6)
    assert be.run(np.zeros((0, 3, 128, 128), np.float32)).shape == (0, 256)
    shapes = [c[2][0] for c in ctx.calls if c[0] in ("set_input_shape", "set_binding_shape")]
    assert shapes == [2, 2, 5, 16, 16, 16, 8]  # real sizes; 1 padded to the min 2; 40 split
    executes = {c[0] for c in ctx.calls if c[0].startswith("execute")}
    assert executes == ({"execute_async_v2"} if api == "bindings" else {"execute_async_v3"})
    d = be.describe()
    assert d["backend"] == "tensorrt" and d["line"] == line and d["profile"] == [2, 8, 16]
    assert d["gpu"] == "Fake Orin" and d["mode"] and "lock" in d["threading"]
    assert env.cuda.stack == []  # the primary context is popped after every call
    be.close()
    assert all(a.freed for a in env.cuda.allocations) and env.cuda.contexts[-1].detached
    be.close()  # idempotent
    with pytest.raises(BackendUnavailableError, match="closed"):
        be.run(_batch(1))


def test_backend_rejects_wrong_shapes(env, bundle, tmp_path):
    env.use("10")
    path, _ = build_engine(bundle, "fp16", cache_dir=tmp_path)
    with TensorRTBackend(path) as be:
        for bad in (np.zeros((2, 3, 64, 64), np.float32), np.zeros((3, 128, 128), np.float32)):
            with pytest.raises(ValueError, match="expected"):
                be.run(bad)


def test_backend_is_safe_from_many_threads(env, bundle, tmp_path):
    env.use("10")
    path, _ = build_engine(bundle, "fp16", Profile(1, 4, 8), cache_dir=tmp_path)
    be = TensorRTBackend(path)
    errors, results = [], {}

    def work(i: int) -> None:
        try:
            for k in range(5):
                x = _batch(3 + (i + k) % 9, seed=100 * i + k)
                results[(i, k)] = np.abs(be.run(x) - fake_embed(x)).max()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 30 and max(results.values()) < 1e-5
    be.close()


def test_float16_engine_io(env, tmp_path):
    env.use("10")
    payload = {"line": "10", "profile": [1, 4, 8], "in_dtype": "float16"}
    path = tmp_path / "trtexec.engine"  # no sidecar: loaded as is, with a warning
    path.write_bytes(b"FAKEENGINE" + json.dumps(payload).encode())
    with TensorRTBackend(path) as be:
        x = _batch(5)
        assert be.describe()["io_dtypes"] == ["float16", "float32"]
        np.testing.assert_allclose(be.run(x), fake_embed(x.astype(np.float16)), atol=1e-6)


@pytest.mark.parametrize("other, match", [
    ({"line": "8.5"}, "trt_version: built with TensorRT 10.3.0.26, this is TensorRT 8.5.2.2"),
    ({"line": "10", "cc": (7, 2)}, "compute_capability: built for sm 8.7, this GPU is sm 7.2"),
    ({"line": "10", "gpu": "Jetson AGX Xavier"}, "gpu_name"),
])
def test_engine_for_another_environment_never_reaches_tensorrt(env, bundle, tmp_path, other,
                                                               match):
    env.use("10")
    path, _ = build_engine(bundle, "fp16", cache_dir=tmp_path)
    env.use(other["line"], gpu=other.get("gpu", "Fake Orin"), cc=other.get("cc", (8, 7)))
    with pytest.raises(EngineCacheMismatch, match=match):
        TensorRTBackend(path)
    assert env.cuda.contexts == []  # refused before any CUDA context or deserialization


def test_modified_engine_is_refused_and_unknown_engines_fail_cleanly(env, bundle, tmp_path):
    env.use("10")
    path, _ = build_engine(bundle, "fp16", cache_dir=tmp_path)
    path.write_bytes(path.read_bytes() + b" ")
    with pytest.raises(EngineCacheMismatch, match="truncated or replaced"):
        TensorRTBackend(path)
    foreign = tmp_path / "foreign.engine"  # no sidecar, made by another TensorRT
    foreign.write_bytes(b"FAKEENGINE" + json.dumps({"line": "8.5", "profile": [1, 1, 1]}).encode())
    with pytest.raises(EngineCacheMismatch, match="could not deserialize"):
        TensorRTBackend(foreign)
    assert env.cuda.contexts[-1].detached and env.cuda.stack == []


def test_version_compatible_engine_allows_host_code(env, bundle, tmp_path, monkeypatch):
    env.use("10")
    path, _ = build_engine(bundle, "fp16", version_compatible=True, cache_dir=tmp_path)
    seen = []
    monkeypatch.setattr(compat, "allow_host_code", lambda rt: seen.append(rt) or True)
    TensorRTBackend(path).close()
    assert len(seen) == 1
    plain, _ = build_engine(bundle, "fp32", cache_dir=tmp_path)
    TensorRTBackend(plain).close()
    assert len(seen) == 1


# --- from_bundle ------------------------------------------------------------------------------
def test_from_bundle_not_built_names_the_command(env, bundle, tmp_path):
    env.use("10")
    with pytest.raises(EngineNotFoundError, match=r"docedge build-engine .* --precision fp16"):
        TensorRTBackend.from_bundle(bundle, "fp16", cache_dir=tmp_path)


def test_from_bundle_builds_on_request_then_reuses(env, bundle, tmp_path):
    env.use("10")
    be = TensorRTBackend.from_bundle(bundle, "fp16", cache_dir=tmp_path, build_if_missing=True)
    assert be.max_batch == 64 and len(env.trt.built) == 1
    be.close()
    be = TensorRTBackend.from_bundle(bundle, "fp16", cache_dir=tmp_path)
    assert len(env.trt.built) == 1
    x = _batch(3)
    np.testing.assert_allclose(be.run(x), fake_embed(x), atol=1e-6)
    be.close()


def test_from_bundle_accepts_any_cached_profile_unless_asked(env, bundle, tmp_path):
    env.use("8.5")
    build_engine(bundle, "fp16", Profile(1, 8, 32), cache_dir=tmp_path)  # samples/jetson_device.py
    with TensorRTBackend.from_bundle(bundle, "fp16", cache_dir=tmp_path) as be:
        assert be.max_batch == 32
    with pytest.raises(EngineCacheMismatch, match=r"(?s)profile: engine has.*--max-batch 16"):
        TensorRTBackend.from_bundle(bundle, "fp16", cache_dir=tmp_path, max_batch=16)
    with TensorRTBackend.from_bundle(bundle, "fp16", cache_dir=tmp_path, max_batch=16,
                                     build_if_missing=True) as be:
        assert be.max_batch == 16 and env.trt.built[-1]["profile"] == [1, 16, 16]


def test_from_bundle_finds_an_implicit_int8_build(env, bundle, tmp_path):
    env.use("8.5")
    build_engine(bundle, "int8", implicit=True, cache_dir=tmp_path)
    with TensorRTBackend.from_bundle(bundle, "int8", cache_dir=tmp_path) as be:
        assert be.describe()["mode"] == "implicit"
    mode_msg = "mode: engine has 'implicit', need 'explicit-qdq'"
    with pytest.raises(EngineCacheMismatch, match=mode_msg):
        TensorRTBackend.from_bundle(bundle, "int8", cache_dir=tmp_path, implicit=False)


def test_from_bundle_after_a_tensorrt_upgrade(env, bundle, tmp_path):
    env.use("8.5")
    build_engine(bundle, "fp16", cache_dir=tmp_path)
    env.use("10")  # JetPack upgraded: the cached engine is for TensorRT 8.5
    msg = r"(?s)cannot be used here.*trt_version.*8\.5\.2\.2"
    with pytest.raises(EngineCacheMismatch, match=msg):
        TensorRTBackend.from_bundle(bundle, "fp16", cache_dir=tmp_path)
    with TensorRTBackend.from_bundle(bundle, "fp16", cache_dir=tmp_path,
                                     build_if_missing=True) as be:
        assert be.describe()["version"] == "10.3.0.26"


def test_from_bundle_after_the_bundle_changed(env, tmp_path):
    env.use("10")
    root = make_bundle(tmp_path / "b")
    build_engine(load_bundle(root), "fp16", cache_dir=tmp_path / "c")
    make_bundle(root, onnx={"fp16": b"ONNX fp16 model, re-exported"})
    with pytest.raises(EngineCacheMismatch, match="onnx_sha256"):
        TensorRTBackend.from_bundle(load_bundle(root), "fp16", cache_dir=tmp_path / "c")


def test_from_bundle_rejects_unknown_options(env, bundle, tmp_path):
    env.use("10")
    with pytest.raises(TypeError, match="providers"):
        TensorRTBackend.from_bundle(bundle, "fp16", cache_dir=tmp_path, providers=["cuda"])
    with pytest.raises(InvalidProfileError):
        TensorRTBackend.from_bundle(bundle, "fp16", cache_dir=tmp_path, min_batch=8, max_batch=4)


def test_embedder_uses_the_tensorrt_backend(env, bundle, tmp_path):
    from docedge.runtime import Embedder

    env.use("11")
    build_engine(bundle, "int8", Profile(1, 8, 16), cache_dir=tmp_path)
    with Embedder(bundle, "int8", backend="tensorrt", cache_dir=tmp_path) as emb:
        assert emb.batch_size == 16
        x = _batch(40)
        np.testing.assert_allclose(emb.run_tensor(x), fake_embed(x), atol=1e-6)
        assert emb.describe()["backend"] == "tensorrt"


# --- the command ------------------------------------------------------------------------------
def test_build_engine_command(env, bundle, tmp_path, capsys):
    from docedge.tools.cli import main

    env.use("10")
    args = ["build-engine", str(bundle.path), "--precision", "fp16", "--max-batch", "16",
            "--cache-dir", str(tmp_path)]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["built"] and Path(out["engine"]).is_file()
    assert out["record"]["profile"] == {"min": 1, "opt": 16, "max": 16}
    assert main(args) == 0
    text = capsys.readouterr().out
    assert text.startswith("cached: ") and "TensorRT 10.3.0.26 on Fake Orin (sm 8.7)" in text
    assert "fp16 strongly-typed from model_fp16.onnx" in text


@pytest.mark.parametrize("extra, message", [
    (["--min-batch", "8", "--max-batch", "4"], "need 1 <= min <= opt <= max"),
    (["--workspace", "0"], "--workspace must be >= 1"),
    (["--implicit"], "no FP16/INT8 builder flags"),
])
def test_build_engine_command_errors(env, bundle, tmp_path, capsys, extra, message):
    from docedge.tools.cli import main

    env.use("11")
    assert main(["build-engine", str(bundle.path), "--cache-dir", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err


# --- this machine: no TensorRT, no GPU --------------------------------------------------------
def _real_tensorrt_present() -> bool:
    try:
        import tensorrt
    except Exception:
        return False
    return hasattr(tensorrt, "Builder")


needs_no_tensorrt = pytest.mark.skipif(_real_tensorrt_present(), reason="TensorRT is installed")


@needs_no_tensorrt
def test_tensorrt_backend_here_is_a_clear_error(bundle):
    with pytest.raises(BackendUnavailableError, match=r"TensorRT is not available.*install"):
        create_backend(bundle, "fp16", "tensorrt")


@needs_no_tensorrt
def test_build_engine_command_here_says_what_to_install(bundle, capsys):
    from docedge.tools.cli import main

    assert main(["build-engine", str(bundle.path), "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out == {"ok": False, "error": "BackendUnavailableError", "message": out["message"]}
    assert "TensorRT is not available" in out["message"] and "docs/jetson.md" in out["message"]


def test_tensorrt_modules_import_neither_tensorrt_nor_pycuda():
    code = (
        "import sys\n"
        "import docedge.runtime.backends.tensorrt.runner, docedge.runtime.backends.tensorrt.builder\n"
        "import docedge.runtime.backends.tensorrt.compat\n"
        "import docedge.runtime.backends.tensorrt.engine_cache, docedge.runtime.backends.tensorrt.builder\n"
        "import docedge.tools.commands.build_engine\n"
        "print(','.join(m for m in ('tensorrt', 'pycuda', 'torch', 'onnx', 'onnxruntime')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_manifest_helper_makes_a_verifiable_bundle(tmp_path):
    root = make_bundle(tmp_path / "b")
    assert (root / MANIFEST_NAME).is_file()
    b = load_bundle(root)  # verify=True: sizes and hashes check out
    assert sorted(b.precisions) == ["fp16", "fp32", "int8"]
