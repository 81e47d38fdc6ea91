"""The manifest is validated field by field and protects its own content (issue 15, §3).

Every case here was accepted by c7066f8: a flipped bit, unsupported pre-processing, thresholds
outside the score space, malformed values; each is now a BundleError naming the field.
"""

from __future__ import annotations

import json
import os

import pytest

from docedge.runtime import BundleError, load_bundle
from docedge.runtime.bundle import read_manifest, write_manifest
from docedge.runtime.manifest_schema import manifest_digest


def _manifest(bundle):
    return json.loads((bundle / "manifest.json").read_text())


def _rewrite_sealed(bundle, edit):
    """Apply ``edit`` and write the manifest correctly sealed: the field check must refuse it."""
    m = _manifest(bundle)
    edit(m)
    write_manifest(bundle, m)


def test_a_flipped_bit_anywhere_in_the_manifest_is_detected(bundle_copy):
    path = bundle_copy / "manifest.json"
    text = path.read_bytes()
    pos = text.index(b'"color_order"')  # a byte inside the content, not the digest
    for offset in (2, 5):
        data = bytearray(text)
        data[pos + offset] ^= 0x01
        path.write_bytes(bytes(data))
        with pytest.raises(BundleError):
            load_bundle(bundle_copy)
    path.write_bytes(text)
    load_bundle(bundle_copy)


def test_a_changed_threshold_with_the_old_digest_is_refused(bundle_copy):
    m = _manifest(bundle_copy)
    m["thresholds"] = {"fp32": {"rows": [{"fpr": 0.01, "threshold": 0.3906, "tpr": 0.9}]}}
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match=r"content digest .* does not match"):
        load_bundle(bundle_copy)


def test_the_digest_is_of_parsed_values_not_of_the_text(bundle_copy):
    """A manifest re-encoded by another JSON writer (compact, other key order) still loads."""
    m = _manifest(bundle_copy)
    (bundle_copy / "manifest.json").write_text(json.dumps(m, separators=(",", ":"))[::1])
    load_bundle(bundle_copy)
    rev = {k: m[k] for k in reversed(list(m))}
    (bundle_copy / "manifest.json").write_text(json.dumps(rev, indent=4))
    assert manifest_digest(read_manifest(bundle_copy)) == m["integrity"]["sha256"]


def test_a_manifest_without_integrity_is_refused(bundle_copy):
    m = _manifest(bundle_copy)
    del m["integrity"]
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="integrity"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda m: m["preprocess"].update(color_order="RGB"), "preprocess.color_order"),
        (lambda m: m["preprocess"].update(layout="NHWC"), "preprocess.layout"),
        (lambda m: m["preprocess"].update(keep_aspect=True), "preprocess.keep_aspect"),
        (lambda m: m["preprocess"].update(std=[0, 0, 0]), "preprocess.std"),
        (lambda m: m["preprocess"].update(std=[1, 1]), "preprocess.std"),
        (lambda m: m["preprocess"].update(interpolation="INTER_AREA"), "preprocess.interpolation"),
        (lambda m: m["preprocess"].update(antialias=True), "preprocess"),
        (lambda m: m["preprocess"].pop("scale"), "preprocess.scale"),
        (lambda m: m["preprocess"].update(height=64), "io.input.shape"),
        (lambda m: m.update(artifacts=None), "artifacts"),
        (lambda m: m["artifacts"][0].update(size="12"), "artifacts[0].size"),
        (lambda m: m["artifacts"][0].update(size=True), "artifacts[0].size"),
        (lambda m: m["artifacts"][0].update(sha256="zz"), "artifacts[0].sha256"),
        (lambda m: m["artifacts"][0].update(format="pickle"), "artifacts[0].format"),
        (lambda m: m["artifacts"].append(dict(m["artifacts"][0])), "artifacts[1].file"),
        (lambda m: m["io"]["input"].update(dtype="float16"), "io.input.dtype"),
        (lambda m: m["score"].update(space="cos"), "score.space"),
        (lambda m: m.update(model=[]), "model"),
    ],
)
def test_unsupported_or_malformed_fields_are_refused_by_name(bundle_copy, edit, field):
    _rewrite_sealed(bundle_copy, edit)
    with pytest.raises(BundleError, match=field.replace("[", r"\[").replace("]", r"\]")):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("threshold", [-1, 5, None, "0.7"])
def test_thresholds_outside_the_score_space_are_refused(bundle_copy, threshold):
    table = {"rows": [{"fpr": 0.01, "tpr": 0.9, "threshold": threshold, "supported": True}]}
    _rewrite_sealed(bundle_copy, lambda m: m.update(thresholds={"fp32": table}))
    with pytest.raises(BundleError, match="threshold"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize(
    "text",
    [
        '{"schema": "docedge.bundle", "schema_version": 2, "size": NaN}',
        '{"schema": "docedge.bundle", "schema_version": 2, "x": Infinity}',
        "[" * 100_000 + "]" * 100_000,
        '{"schema": "docedge.bundle", "schema_version": 2, "artifacts": [{"size": 1e400}]}',
        "\xff\xfe",
    ],
)
def test_hostile_json_is_a_bundle_error_not_a_traceback(bundle_copy, text):
    (bundle_copy / "manifest.json").write_bytes(text.encode("utf-8", "surrogateescape")
                                                if isinstance(text, str) else text)  # fmt: skip
    with pytest.raises(BundleError):
        load_bundle(bundle_copy)


def test_symlinked_manifest_or_artifact_is_refused(bundle_copy, tmp_path):
    outside = tmp_path / "outside.onnx"
    art = bundle_copy / "model_fp32.onnx"
    outside.write_bytes(art.read_bytes())
    art.unlink()
    os.symlink(outside, art)
    with pytest.raises(BundleError, match="symbolic link"):
        load_bundle(bundle_copy)
    man = bundle_copy / "manifest.json"
    (tmp_path / "m.json").write_bytes(man.read_bytes())
    man.unlink()
    os.symlink(tmp_path / "m.json", man)
    with pytest.raises(BundleError, match="symbolic link"):
        load_bundle(bundle_copy)


def test_every_extra_file_an_artifact_lists_is_verified(bundle_copy):
    (bundle_copy / "weights.bin").write_bytes(b"\x00" * 64)
    from docedge.runtime.hashing import sha256_file

    extra = {"file": "weights.bin", "size": 64, "sha256": sha256_file(bundle_copy / "weights.bin")}
    _rewrite_sealed(bundle_copy, lambda m: m["artifacts"][0].update(files=[extra]))
    load_bundle(bundle_copy)
    (bundle_copy / "weights.bin").write_bytes(b"\x01" + b"\x00" * 63)
    with pytest.raises(BundleError, match=r"weights\.bin: sha256"):
        load_bundle(bundle_copy)


def test_onnx_external_data_is_refused_even_when_the_onnx_file_verifies(bundle_copy):
    """A weights.bin the manifest does not list could be swapped unnoticed: refuse the file."""
    import onnx

    from docedge.runtime import Embedder
    from docedge.runtime.hashing import sha256_file

    path = bundle_copy / "model_fp32.onnx"
    model = onnx.load(str(path))
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)  # fmt: skip
    _rewrite_sealed(bundle_copy, lambda m: m["artifacts"][0].update(
        sha256=sha256_file(path), size=path.stat().st_size))  # fmt: skip
    with pytest.raises(BundleError, match="external data"):
        Embedder(bundle_copy)
