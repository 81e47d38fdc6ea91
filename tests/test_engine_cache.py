"""Engine cache: profiles, keys, sidecars, lookup and invalidation (no TensorRT needed)."""

from __future__ import annotations

import json
import re

import pytest

from docedge.runtime.backends.tensorrt.engine_cache import (
    MAX_BATCH_LIMIT,
    EngineCacheMismatch,
    EngineKey,
    InvalidProfileError,
    Profile,
    check_engine_file,
    default_cache_dir,
    engine_paths,
    environment_problems,
    find_engine,
    lookup,
    make_profile,
    read_sidecar,
    scan,
    sidecar_path,
    verify_engine_file,
    write_engine,
)
from docedge.runtime.errors import BackendUnavailableError, DocedgeError


# --- profiles ---------------------------------------------------------------------------------
@pytest.mark.parametrize("given, expected", [
    ({}, (1, 32, 64)),
    ({"max_batch": 16}, (1, 16, 16)),
    ({"max_batch": 1}, (1, 1, 1)),
    ({"opt_batch": 8}, (1, 8, 64)),
    ({"opt_batch": 1}, (1, 1, 64)),
    ({"opt_batch": 128}, (1, 128, 128)),
    ({"min_batch": 4, "max_batch": 4}, (4, 4, 4)),
    ({"min_batch": 48}, (48, 48, 64)),
    ({"min_batch": 100}, (100, 100, 100)),
    ({"min_batch": 2, "opt_batch": 16, "max_batch": 256}, (2, 16, 256)),
])
def test_make_profile_defaults_for_throughput(given, expected):
    p = make_profile(**given)
    assert (p.min_batch, p.opt_batch, p.max_batch) == expected


def test_default_profile_is_not_tuned_for_batch_one():
    assert Profile() == make_profile() == Profile(1, 32, 64)
    assert make_profile(max_batch=64).opt_batch == 32


@pytest.mark.parametrize("given", [
    {"min_batch": 0}, {"opt_batch": -1}, {"min_batch": 8, "max_batch": 4},
    {"min_batch": 8, "opt_batch": 4}, {"opt_batch": 32, "max_batch": 16},
    {"max_batch": MAX_BATCH_LIMIT + 1}, {"max_batch": 2.5}, {"max_batch": True},
])
def test_invalid_profiles_are_clear_errors(given):
    with pytest.raises(InvalidProfileError) as e:
        make_profile(**given)
    assert isinstance(e.value, DocedgeError) and isinstance(e.value, ValueError)


def test_profile_round_trip_and_text():
    p = Profile(2, 8, 16)
    assert str(p) == "2/8/16" and p.to_dict() == {"min": 2, "opt": 8, "max": 16}
    assert Profile.from_dict(p.to_dict()) == p
    assert Profile.from_dict({"min_batch": 2, "opt_batch": 8, "max_batch": 16}) == p


# --- keys -------------------------------------------------------------------------------------
def key(**kw) -> EngineKey:
    base = dict(onnx_sha256="ab" * 32, precision="fp16", mode="strongly-typed",
                trt_version="10.3.0.26", compute_capability="8.7", profile=Profile(),
                gpu_name="Orin")
    base.update(kw)
    return EngineKey(**base)


def test_key_name_spells_out_what_the_engine_depends_on():
    name = key().name()
    assert name == "abababababababab-fp16-trt10.3.0.26-sm87-orin-strongly-typed-b1_32_64"
    full = key(mode="implicit", precision="int8", dla_core=0, version_compatible=True,
               calibration_cache_sha256="cd" * 32, gpu_name="NVIDIA GeForce RTX 3090").name()
    assert full.endswith("-dla0-vc-calcdcdcdcd") and "-nvidiageforcertx3090-" in full
    assert re.fullmatch(r"[A-Za-z0-9._-]+", full)
    assert "-sm87-strongly" in key(gpu_name=None).name()


@pytest.mark.parametrize("change", [
    {"trt_version": "10.3.0.30"}, {"trt_version": "8.5.2.2"}, {"compute_capability": "7.2"},
    {"gpu_name": "Jetson AGX Xavier"}, {"onnx_sha256": "cd" * 32}, {"precision": "int8"},
    {"mode": "implicit"}, {"profile": Profile(1, 8, 16)}, {"dla_core": 1},
    {"version_compatible": True}, {"calibration_cache_sha256": "ef" * 32},
])
def test_every_key_field_changes_the_name(change):
    assert key(**change).name() != key().name()


def test_key_dict_round_trip():
    k = key(dla_core=1, calibration_cache_sha256="cd" * 32)
    assert EngineKey.from_dict(json.loads(json.dumps(k.to_dict()))) == k


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCEDGE_ENGINE_CACHE", str(tmp_path / "e"))
    assert default_cache_dir() == tmp_path / "e"
    monkeypatch.delenv("DOCEDGE_ENGINE_CACHE")
    assert default_cache_dir().parts[-3:] == (".cache", "docedge", "engines")


def test_sidecar_path():
    assert sidecar_path("/c/x-fp16.engine").name == "x-fp16.json"
    assert sidecar_path("/c/model.plan").name == "model.plan.json"


# --- sidecars ---------------------------------------------------------------------------------
def test_engine_written_as_is_with_a_sidecar(tmp_path):
    k = key()
    engine = b"\x00\x01ENGINE BYTES\xff" * 100
    paths = write_engine(tmp_path, k, engine, {"gpu_name": "Orin", "build_seconds": 1.5})
    assert paths == engine_paths(tmp_path, k)
    assert paths["engine"].read_bytes() == engine  # nothing prepended
    side = read_sidecar(paths["sidecar"])
    assert side["schema"] == "docedge.engine" and side["schema_version"] == 1
    assert side["key"] == k.to_dict() and side["name"] == k.name()
    assert side["engine_bytes"] == len(engine) and len(side["engine_sha256"]) == 64
    assert side["gpu_name"] == "Orin" and side["build_seconds"] == 1.5
    assert find_engine(tmp_path, k) == paths["engine"]
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


@pytest.mark.parametrize("content, match", [
    ("{not json", "unreadable"), ('{"schema": "other"}', "not a docedge engine sidecar"),
    ('{"schema": "docedge.engine", "schema_version": 99, "key": {}}', "schema_version"),
])
def test_bad_sidecars_are_mismatches(tmp_path, content, match):
    p = tmp_path / "x.json"
    p.write_text(content)
    with pytest.raises(EngineCacheMismatch, match=match):
        read_sidecar(p)


def test_cache_errors_are_backend_unavailable_errors():
    assert issubclass(EngineCacheMismatch, BackendUnavailableError)


def test_other_keys_miss_and_tampering_is_caught(tmp_path):
    k = key()
    paths = write_engine(tmp_path, k, b"ENGINE", {})
    for other in (key(trt_version="10.4.0"), key(compute_capability="8.6"),
                  key(onnx_sha256="cd" * 32), key(profile=Profile(1, 8, 16))):
        assert find_engine(tmp_path, other) is None
    side = json.loads(paths["sidecar"].read_text())
    side["key"]["trt_version"] = "8.5.2.2"
    paths["sidecar"].write_text(json.dumps(side))
    with pytest.raises(EngineCacheMismatch, match="trt_version"):
        find_engine(tmp_path, k)


def test_modified_or_truncated_engine_is_caught(tmp_path):
    k = key()
    paths = write_engine(tmp_path, k, b"ENGINE-BYTES", {})
    paths["engine"].write_bytes(b"ENGINE-BYTEZ")
    with pytest.raises(EngineCacheMismatch, match="sha256"):
        find_engine(tmp_path, k)
    paths["engine"].write_bytes(b"ENGINE")
    with pytest.raises(EngineCacheMismatch, match="truncated"):
        verify_engine_file(paths["engine"], read_sidecar(paths["sidecar"]))
    paths["engine"].unlink()
    assert find_engine(tmp_path, k) is None


# --- environment checks -----------------------------------------------------------------------
def test_environment_problems():
    rec = key().to_dict()
    assert environment_problems(rec, "10.3.0.26", "8.7", "Orin") == []
    assert environment_problems(rec, "10.3.0.26", "8.7", None) == []
    probs = environment_problems(rec, "10.13.0", "8.6", "RTX 3090")
    assert [p.split(":")[0] for p in probs] == ["trt_version", "compute_capability", "gpu_name"]


def test_version_compatible_engines_run_on_newer_tensorrt_only():
    rec = key(version_compatible=True).to_dict()
    assert environment_problems(rec, "10.13.0", "8.7") == []
    assert environment_problems(rec, "11.1.0", "8.7") == []
    assert "needs a runtime >=" in environment_problems(rec, "10.1.0", "8.7")[0]
    assert environment_problems(key().to_dict(), "10.13.0", "8.7")  # not version-compatible


def test_user_engine_checked_before_tensorrt_sees_it(tmp_path):
    paths = write_engine(tmp_path, key(compute_capability="7.2", gpu_name="Xavier"), b"E", {})
    with pytest.raises(EngineCacheMismatch, match=r"compute_capability.*Rebuild it on this device"):
        check_engine_file(paths["engine"], key())
    ok = write_engine(tmp_path / "ok", key(), b"E", {"x": 1})
    assert check_engine_file(ok["engine"], key())["x"] == 1
    with pytest.raises(EngineCacheMismatch, match="onnx_sha256"):
        check_engine_file(ok["engine"], key(onnx_sha256="cd" * 32))


# --- lookup -----------------------------------------------------------------------------------
def _put(cache, k, bundle="/b", built_at="2026-01-01T00:00:00+00:00"):
    return write_engine(cache, k, k.name().encode(), {"bundle": {"path": bundle},
                                                      "built_at": built_at})["engine"]


def test_lookup_exact_and_any_profile(tmp_path):
    small = _put(tmp_path, key(profile=Profile(1, 8, 16)))
    big = _put(tmp_path, key(profile=Profile(1, 64, 128)))
    wanted = [key()]
    assert lookup(tmp_path, wanted, match_options=True).found is None
    assert lookup(tmp_path, wanted, match_options=False).found.engine == big  # largest max
    exact = _put(tmp_path, key())
    assert lookup(tmp_path, wanted, match_options=True).found.engine == exact
    assert lookup(tmp_path, wanted, match_options=False).found.engine == exact  # exact first
    assert small.is_file()


def test_lookup_prefers_plain_gpu_engines_and_the_default_mode(tmp_path):
    dla = _put(tmp_path, key(dla_core=0, profile=Profile(4, 4, 4)))
    assert lookup(tmp_path, [key()], match_options=False).found.engine == dla
    implicit = _put(tmp_path, key(mode="implicit", onnx_sha256="99" * 32, profile=Profile(1, 4, 8)))
    wanted = [key(profile=Profile(1, 8, 16)), key(mode="implicit", onnx_sha256="99" * 32)]
    assert lookup(tmp_path, wanted, match_options=False).found.engine == implicit
    strong = _put(tmp_path, key(profile=Profile(1, 2, 2)))
    assert lookup(tmp_path, wanted, match_options=False).found.engine == strong


def test_lookup_reports_near_misses_with_reasons(tmp_path):
    _put(tmp_path, key(trt_version="8.5.2.2", compute_capability="7.2", gpu_name="Xavier"))
    _put(tmp_path, key(onnx_sha256="cd" * 32))  # the bundle was re-exported since
    _put(tmp_path, key(onnx_sha256="ef" * 32, precision="int8"), bundle="/other")  # unrelated
    result = lookup(tmp_path, [key()], match_options=False, bundle_path="/b")
    assert result.found is None and len(result.near_misses) == 2
    text = result.explain()
    assert "trt_version: built with TensorRT 8.5.2.2, this is TensorRT 10.3.0.26" in text
    assert "compute_capability" in text and "onnx_sha256" in text
    assert "int8" not in text


def test_lookup_skips_broken_sidecars_and_orphans(tmp_path, caplog):
    good = _put(tmp_path, key())
    (tmp_path / "junk.json").write_text("{")
    orphan = _put(tmp_path, key(profile=Profile(1, 2, 4)))
    orphan.unlink()  # sidecar without engine
    (tmp_path / "lonely.engine").write_bytes(b"x")  # engine without sidecar
    assert [c.engine for c in scan(tmp_path)] == [good]
    assert "skipping" in caplog.text
    assert scan(tmp_path / "missing") == []


def test_lookup_does_not_hand_out_a_modified_engine(tmp_path):
    path = _put(tmp_path, key())
    path.write_bytes(b"corrupted")
    result = lookup(tmp_path, [key()])
    assert result.found is None and "sidecar" in result.explain()
