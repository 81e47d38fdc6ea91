"""Loading a bundle verifies schema and every checksum, and names the offending file."""

from __future__ import annotations

import json

import pytest

from docedge.runtime import BundleError, load_bundle
from docedge.runtime.bundle import write_manifest


def test_intact_bundle_loads_and_lists_its_artifacts(bundle_copy):
    b = load_bundle(bundle_copy)
    assert b.precisions == ["fp32"]
    assert b.artifact("fp32").size == (bundle_copy / "model_fp32.onnx").stat().st_size
    assert b.preprocess.height == 128 and b.preprocess.color_order == "BGR"


def test_tampered_artifact_is_refused(bundle_copy):
    p = bundle_copy / "model_fp32.onnx"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model_fp32\.onnx: sha256 .* does not match"):
        load_bundle(bundle_copy)


def test_truncated_artifact_is_refused(bundle_copy):
    p = bundle_copy / "model_fp32.onnx"
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(BundleError, match=r"model_fp32\.onnx: size 1000 bytes.*truncated"):
        load_bundle(bundle_copy)


def test_missing_artifact_is_refused(bundle_copy):
    (bundle_copy / "model_fp32.onnx").unlink()
    with pytest.raises(BundleError, match=r"model_fp32\.onnx: listed in manifest.json but missing"):
        load_bundle(bundle_copy)


def test_unknown_schema_version_is_refused(bundle_copy):
    m = json.loads((bundle_copy / "manifest.json").read_text())
    m["schema_version"] = 99
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="unknown schema_version 99"):
        load_bundle(bundle_copy)


def test_foreign_or_broken_manifest_is_refused(bundle_copy, tmp_path):
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_copy)
    (bundle_copy / "manifest.json").write_text(json.dumps({"schema": "other"}))
    with pytest.raises(BundleError, match="not a docedge bundle manifest"):
        load_bundle(bundle_copy)
    with pytest.raises(BundleError, match=r"manifest\.json: missing"):
        load_bundle(tmp_path)


def test_missing_precision_names_what_the_bundle_has(bundle_copy):
    with pytest.raises(
        BundleError, match=r"no onnx artifact of precision 'int8' \(bundle has: onnx/fp32\)"
    ):
        load_bundle(bundle_copy).artifact("int8")


def test_artifact_paths_cannot_escape_the_bundle(bundle_copy):
    m = json.loads((bundle_copy / "manifest.json").read_text())
    m["artifacts"][0]["file"] = "../model_fp32.onnx"
    write_manifest(bundle_copy, m)  # correctly sealed: the path itself must be refused
    with pytest.raises(BundleError, match="plain file name"):
        load_bundle(bundle_copy)
