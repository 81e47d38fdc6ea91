"""TensorRT calibration cache: encoding, versions, round trip, refusal of a cache made for other
weights or data, and scale consistency with the QDQ model (same tensors, same bits)."""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import onnx
import pytest

from docedge.calibration.int8 import calibrate_int8, qdq_activation_scales
from docedge.calibration.ranges import activation_tensors
from docedge.calibration.trt_cache import (
    CalibrationCacheError,
    cache_text,
    decode_scale,
    encode_scale,
    load_calibration_cache,
    parse_cache,
    read_cache,
    scales_from_amax,
    trt_version_number,
    write_cache,
)
from docedge.export.check_images import write_check_images
from docedge.runtime import load_bundle
from docedge.runtime.bundle import write_manifest


@pytest.fixture(scope="module")
def int8_bundle(seeded_bundle, tmp_path_factory):
    """A seeded bundle with INT8 artifacts (gate off: the seeded network is chaotic)."""
    calib = tmp_path_factory.mktemp("calib_cache")
    write_check_images(calib, count=8, seed=41)
    dst = tmp_path_factory.mktemp("int8_cache") / "bundle"
    shutil.copytree(seeded_bundle, dst)
    calibrate_int8(dst, calib, method="percentile", enforce_gate=False, progress=False,
                   batch_size=4, gate_sets=("check",))  # fmt: skip
    return dst


def test_scale_encoding_is_tensorrts():
    assert encode_scale(1.0) == "3f800000"
    assert encode_scale(1 / 127) == "3c010204"
    assert decode_scale("3c010204") == struct.unpack(">f", bytes.fromhex("3c010204"))[0]
    # TensorRT prints the bits as an integer without leading zeros: 1e-30 -> "d9a2426" region
    tiny = struct.unpack(">I", struct.pack(">f", 1e-30))[0]
    assert decode_scale(f"{tiny:x}") == pytest.approx(1e-30, rel=1e-6)


@pytest.mark.parametrize(("given", "number"), [("8.5.2.2", "8502"), ("8.6.1", "8601"),
                                               ("10.3.0", "100300"), ("10.13.2.6", "101302"),
                                               ("8502", "8502")])  # fmt: skip
def test_trt_version_numbers(given, number):
    assert trt_version_number(given) == number


def test_cache_text_round_trip(tmp_path):
    scales = {"img": 1 / 127, "/backbone/conv_stem/Conv_output_0": 0.0421, "a:b": 2.5}
    text = cache_text(scales, version="8.6.1")
    lines = text.splitlines()
    assert lines[0] == "TRT-8601-EntropyCalibration2"
    assert lines[1] == "img: 3c010204" and lines[3] == "a:b: 40200000"
    p = tmp_path / "c.cache"
    write_cache(p, scales, "8502")
    cache = read_cache(p)
    assert (cache.version, cache.algorithm, cache.header) == ("8502", "EntropyCalibration2",
                                                              "TRT-8502-EntropyCalibration2")  # fmt: skip
    assert cache.scales == {k: struct.unpack(">f", struct.pack(">f", v))[0] for k, v in scales.items()}
    assert cache.amax()["img"] == pytest.approx(1.0)


def test_malformed_caches_are_refused(tmp_path):
    with pytest.raises(CalibrationCacheError, match="not a TensorRT calibration cache"):
        parse_cache("hello\nx: 3f800000\n")
    with pytest.raises(CalibrationCacheError, match="line 2"):
        parse_cache("TRT-8502-EntropyCalibration2\nx: zz\n")
    with pytest.raises(CalibrationCacheError, match="line 3"):
        parse_cache("TRT-8502-EntropyCalibration2\nx: 3f800000\nno colon here\n")
    with pytest.raises(CalibrationCacheError, match="cannot read"):
        read_cache(tmp_path / "missing.cache")


def test_cache_scales_are_the_qdq_scales(int8_bundle):
    """Same tensors, same float32 bits; the cache covers every float activation of the fp32
    graph (names as TensorRT's ONNX parser sees them)."""
    cache = read_cache(int8_bundle / "int8_calibration.cache")
    assert cache.header == "TRT-8502-EntropyCalibration2"
    qdq = qdq_activation_scales(onnx.load(str(int8_bundle / "model_int8.onnx")))
    assert "img" not in qdq and len(qdq) > 10  # the stem reads the image in float (int8.input_convs)
    for name, s in qdq.items():
        assert struct.pack(">f", cache.scales[name]) == struct.pack(">f", s), name
    fp32 = onnx.load(str(int8_bundle / "model_fp32.onnx"))
    fp32_tensors = set(activation_tensors(fp32))
    assert set(cache.scales) <= fp32_tensors
    assert {"img", "feats"} <= set(cache.scales)
    assert len(cache.scales) > len(qdq)  # outputs too: implicit INT8 needs both sides of a layer


def test_scales_from_amax_match_onnxruntime():
    from onnxruntime.quantization.quant_utils import compute_scale_zp

    for a in (1.0, 0.123456789, 37.5, 1e-6):
        _, scale = compute_scale_zp(np.float32(-a), np.float32(a), np.int8(-127), np.int8(127),
                                    symmetric=True)  # fmt: skip
        assert struct.pack(">f", scales_from_amax({"t": a})["t"]) == struct.pack(">f", float(scale))


def test_cache_record_and_verified_load(int8_bundle):
    b = load_bundle(int8_bundle)
    rec = b.artifact("int8", "trt-calibration-cache").record
    assert {"file", "format", "precision", "sha256", "size", "trt_version_line", "model_sha256",
            "data_sha256", "method"} <= set(rec)  # fmt: skip
    assert rec["format"] == "trt-calibration-cache" and rec["precision"] == "int8"
    assert rec["model_sha256"] == b.artifact("fp32").sha256
    assert rec["data_sha256"] == b.artifact("int8").record["calibration"]["data_sha256"]
    blob = load_calibration_cache(b, expect_model_sha256=rec["model_sha256"],
                                  expect_data_sha256=rec["data_sha256"])  # fmt: skip
    assert blob == (int8_bundle / "int8_calibration.cache").read_bytes()
    for_trt10 = load_calibration_cache(b, trt_version="10.3.0")
    assert for_trt10.startswith(b"TRT-100300-EntropyCalibration2\n")
    assert for_trt10.split(b"\n", 1)[1] == blob.split(b"\n", 1)[1]


def test_cache_for_other_model_or_data_is_refused(int8_bundle, tmp_path):
    b = load_bundle(int8_bundle)
    with pytest.raises(CalibrationCacheError, match=r"model_sha256.*expected model"):
        load_calibration_cache(b, expect_model_sha256="0" * 64)
    with pytest.raises(CalibrationCacheError, match=r"data_sha256.*calibration data"):
        load_calibration_cache(b, expect_data_sha256="1" * 64)
    # The bundle's fp32 model was replaced after calibration (the cache record still names the
    # old one): refused even without expectations.
    dst = tmp_path / "b"
    shutil.copytree(int8_bundle, dst)
    m = json.loads((dst / "manifest.json").read_text())
    for a in m["artifacts"]:
        if a["format"] == "trt-calibration-cache":
            a["model_sha256"] = "f" * 64
    write_manifest(dst, m)
    with pytest.raises(CalibrationCacheError, match="bundle's fp32 model"):
        load_calibration_cache(load_bundle(dst))
    # A cache file edited after the manifest was written.
    dst2 = tmp_path / "b2"
    shutil.copytree(int8_bundle, dst2)
    with open(dst2 / "int8_calibration.cache", "a") as f:
        f.write("extra: 3f800000\n")
    with pytest.raises(CalibrationCacheError, match="sha256"):
        load_calibration_cache(load_bundle(dst2, verify=False))
