"""A TensorRT calibration cache is checked against the QDQ model it claims to match, even when
someone re-hashes an edited file into the manifest (issue 15, §3: c7066f8 accepted garbage, a
header only, a NaN scale, 4 of 42 tensors, and scales from other data)."""

from __future__ import annotations

import shutil

import pytest

from docedge.runtime.backends.tensorrt.builder import select_calibration_cache
from docedge.runtime.backends.tensorrt.calibration_cache import (
    CalibrationCacheError,
    encode_scale,
    load_calibration_cache,
    parse_cache,
)
from docedge.runtime.bundle import load_bundle, read_manifest, write_manifest
from docedge.runtime.errors import BundleError
from docedge.runtime.hashing import sha256_file


@pytest.fixture()
def int8_bundle(demo_release, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(demo_release, dst)
    return dst


def _rehash(bundle, text: str) -> None:
    """Write ``text`` as the cache and re-record its hash and size: only content checks remain."""
    m = read_manifest(bundle)
    rec = next(a for a in m["artifacts"] if a["format"] == "trt-calibration-cache")
    path = bundle / rec["file"]
    path.write_text(text)
    rec["sha256"], rec["size"] = sha256_file(path), path.stat().st_size
    write_manifest(bundle, m)


def _cache_text(bundle) -> str:
    b = load_bundle(bundle)
    return (b.path / b.artifact("int8", "trt-calibration-cache").file).read_text()


def test_the_intact_cache_loads_through_both_loaders(int8_bundle):
    b = load_bundle(int8_bundle)
    assert load_calibration_cache(b).startswith(b"TRT-8502-")
    assert select_calibration_cache(b).header.startswith("TRT-8502-")
    rec = b.artifact("int8", "trt-calibration-cache").record
    assert rec["qdq_tensors"] and len(rec["qdq_scales_sha256"]) == 64


def _edits(text: str, qdq_tensors):
    lines = text.splitlines()
    header, body = lines[0], lines[1:]
    name0 = body[0].rsplit(":", 1)[0]
    # a tensor the QDQ model quantizes (the image is not: the stem convolution stays float)
    qdq_line = next(i for i, ln in enumerate(body) if ln.rsplit(":", 1)[0] in qdq_tensors)
    name = body[qdq_line].rsplit(":", 1)[0]
    other = list(body)
    scale = parse_cache(text).scales[name]
    other[qdq_line] = f"{name}: {encode_scale(scale * 1.5)}"
    return {
        "garbage": "\x00\x01 not a cache at all\n",
        "header only": header + "\n",
        "NaN scale": "\n".join([header, f"{name0}: 7fc00000", *body[1:]]) + "\n",
        "4 tensors": "\n".join([header, *body[:4]]) + "\n",
        "other data": "\n".join([header, *other]) + "\n",
        "repeated tensor": "\n".join([header, *body, body[0]]) + "\n",
    }


@pytest.mark.parametrize("case", ["garbage", "header only", "NaN scale", "4 tensors",
                                  "other data", "repeated tensor"])  # fmt: skip
def test_a_rehashed_bad_cache_is_refused_by_every_loader(int8_bundle, case):
    import onnx

    from docedge.calibration.int8 import qdq_activation_scales

    qdq = qdq_activation_scales(onnx.load(str(int8_bundle / "model_int8.onnx")))
    _rehash(int8_bundle, _edits(_cache_text(int8_bundle), set(qdq))[case])
    b = load_bundle(int8_bundle)  # the manifest itself is consistent (re-hashed, re-sealed)
    with pytest.raises(CalibrationCacheError):
        load_calibration_cache(b)
    with pytest.raises(BundleError):
        select_calibration_cache(b)
