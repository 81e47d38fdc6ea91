"""Pre-processing test vectors: written from the reference, checked by the torch-free runtime."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from docedge.runtime.preprocess import load_image, preprocess_bgr
from docedge.runtime.test_vectors import TENSOR_MAX_ABS, TestVectorError, load_test_vectors


@pytest.fixture(scope="module")
def vectors(tmp_path_factory, seeded_reference):
    from docedge.export.bundle_writer import torch_embed
    from docedge.export.test_vectors import write_test_vectors

    folder = tmp_path_factory.mktemp("tv") / "test_vectors"
    write_test_vectors(folder, lambda x: torch_embed(seeded_reference.net, x), "pytorch-reference")
    return folder


@pytest.fixture(scope="module")
def archive(tmp_path_factory, seeded_reference):
    from docedge.export.bundle_writer import torch_embed
    from docedge.export.test_vectors import write_test_vector_archive

    z = tmp_path_factory.mktemp("tvz") / "test_vectors.zip"
    write_test_vector_archive(z, lambda x: torch_embed(seeded_reference.net, x), "pytorch-reference")
    return z


def _embed(ref, x):
    from docedge.export.bundle_writer import torch_embed

    return torch_embed(ref.net, x)


def test_index_and_files(vectors):
    idx = json.loads((vectors / "index.json").read_text())
    assert idx["schema"] == "docedge.test_vectors" and idx["tensor"]["layout"] == "NCHW"
    sizes = {(v["height"], v["width"]) for v in idx["vectors"]}
    assert len(sizes) >= 5 and any(h > w for h, w in sizes) and any(w > h for h, w in sizes)
    tv = load_test_vectors(vectors)
    for name in tv.names:
        img = cv2.imdecode(np.frombuffer(tv.image_bytes(name), np.uint8), cv2.IMREAD_UNCHANGED)
        entry = next(v for v in idx["vectors"] if v["name"] == name)
        assert img.shape[:2] == (entry["height"], entry["width"])
        assert tv.tensor(name).shape == (1, 3, 128, 128) and tv.tensor(name).dtype == np.float32
        assert tv.tensor(name, "NHWC").shape == (1, 128, 128, 3)
        assert abs(np.linalg.norm(tv.embedding(name)) - 1) < 1e-5


@pytest.mark.parametrize("source", ["vectors", "archive"])
def test_docedge_own_pipeline_passes(request, source, seeded_reference):
    tv = load_test_vectors(request.getfixturevalue(source))
    tensors = {n: preprocess_bgr(load_image(tv.image_bytes(n)))[None] for n in tv.names}
    embs = {n: _embed(seeded_reference, t)[0] for n, t in tensors.items()}
    checks = tv.check(tensors, embs)
    assert len(checks) == len(tv.names) and all(c.passed for c in checks)
    assert max(c.tensor_max_abs for c in checks) == 0.0


def test_float_bilinear_without_rounding_passes_but_antialiasing_and_rgb_fail(vectors):
    tv = load_test_vectors(vectors)
    big = next(n for n in tv.names if n.startswith("portrait"))
    img = load_image(tv.image_bytes(big))
    # a float bilinear with half-pixel centres (what a GPU shader or vImage-free code does)
    f = cv2.resize(img.astype(np.float32), (128, 128), interpolation=cv2.INTER_LINEAR) / 255.0
    assert tv.check_tensor(big, f.transpose(2, 0, 1)[None]).tensor_passed
    area = cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    c = tv.check_tensor(big, area.transpose(2, 0, 1)[None])
    assert not c.tensor_passed and c.tensor_max_abs > TENSOR_MAX_ABS
    rgb = tv.tensor(big)[:, ::-1]
    assert not tv.check_tensor(big, rgb).tensor_passed
    # an NHWC tensor checked as NHWC
    assert tv.check_tensor(big, tv.tensor(big, "NHWC"), layout="NHWC").tensor_passed


def test_embedding_tolerance_per_precision(vectors):
    tv = load_test_vectors(vectors)
    n = tv.names[0]
    e = tv.embedding(n).astype(np.float64)
    noise = np.random.default_rng(0).normal(size=e.shape)
    noise -= (noise @ e) * e
    noise /= np.linalg.norm(noise)
    at = lambda c: c * e + np.sqrt(1 - c * c) * noise  # noqa: E731 - a vector at cosine c
    assert tv.check_embedding(n, 5.0 * at(0.99995)).embedding_passed  # scale does not matter
    assert not tv.check_embedding(n, at(0.9995), "fp32").embedding_passed
    assert tv.check_embedding(n, at(0.9995), "fp16").embedding_passed
    assert tv.check_embedding(n, at(0.98), "int8").embedding_passed
    with pytest.raises(TestVectorError, match="unknown precision"):
        tv.check_embedding(n, e, "int4")


def test_errors_name_the_problem(vectors, tmp_path):
    with pytest.raises(TestVectorError, match="missing"):
        load_test_vectors(tmp_path)
    (tmp_path / "index.json").write_text("{}")
    with pytest.raises(TestVectorError, match="schema"):
        load_test_vectors(tmp_path)
    tv = load_test_vectors(vectors)
    with pytest.raises(TestVectorError, match="unknown vector"):
        tv.check(tensors={"nope": np.zeros(3)})
    with pytest.raises(TestVectorError, match="values, expected"):
        tv.check_tensor(tv.names[0], np.zeros(10))


def test_archive_extracts_to_the_same_files(archive, vectors, tmp_path):
    tv = load_test_vectors(archive)
    out = tv.extract(tmp_path)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in vectors.iterdir())
    assert load_test_vectors(out).names == tv.names


def test_drift_is_recorded(vectors):
    idx = json.loads((vectors / "index.json").read_text())
    for v in idx["vectors"]:
        d = v["drift"]
        assert d["rgb_instead_of_bgr"]["cos"] < 0.999
        if v["name"] != "exact_128":
            assert d["antialiased_resize"]["tensor_max_abs"] > TENSOR_MAX_ABS


def test_runtime_module_imports_no_torch_or_onnx():
    code = (
        "import sys, docedge.runtime.test_vectors, docedge.runtime.bundle; "
        "bad = [m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
