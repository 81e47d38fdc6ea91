"""The runtime accepts paths, bytes and arrays, pre-processes exactly like DocClassifier,
and isolates bad images."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from docedge.runtime import Embedder, ImageError, load_image, preprocess_bgr


@pytest.fixture(scope="module")
def embedder(seeded_bundle):
    return Embedder(seeded_bundle, batch_size=8)


@pytest.fixture(scope="module")
def bgr():
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (150, 220, 3), dtype=np.uint8)
    cv2.rectangle(img, (20, 20), (120, 90), (0, 0, 255), -1)
    return img


def test_preprocessing_is_bgr_bilinear_resize_div255_nchw(bgr):
    x = preprocess_bgr(bgr)
    expected = cv2.resize(bgr, (128, 128), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    assert x.shape == (3, 128, 128) and x.dtype == np.float32
    np.testing.assert_allclose(x, expected.transpose(2, 0, 1), rtol=0, atol=1e-7)
    assert x[2].mean() > x[0].mean()  # red rectangle lands in channel 2: no RGB swap


def test_path_bytes_and_array_give_the_same_embedding(embedder, bgr, tmp_path):
    path = tmp_path / "doc.png"
    cv2.imwrite(str(path), bgr)
    out = embedder.embed([str(path), path.read_bytes(), bgr])
    assert out.shape == (3, 256) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)
    np.testing.assert_allclose(out[0], out[2], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_gray_and_bgra_arrays_are_converted(bgr):
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    assert load_image(gray).shape == (150, 220, 3)
    assert load_image(gray[:, :, None]).shape == (150, 220, 3)
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    np.testing.assert_array_equal(load_image(bgra), bgr)
    assert load_image(bgr.astype(np.uint16) << 8).dtype == np.uint8


@pytest.mark.parametrize(
    "bad, problem",
    [
        (np.zeros((10, 10, 3), np.float32), "unsupported dtype float32"),
        (np.zeros((10, 10, 2), np.uint8), "unsupported shape"),
        (np.zeros((0, 10, 3), np.uint8), "empty image"),
        (b"not an image at all", "not a decodable image"),
        (b"", "empty image data"),
        (12345, "unsupported input type int"),
    ],
)
def test_bad_inputs_raise_typed_errors_naming_the_item(bad, problem):
    with pytest.raises(ImageError, match=problem):
        load_image(bad, index=4)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ImageError, match=r"nope\.jpg: file not found"):
        load_image(str(tmp_path / "nope.jpg"))


def test_corrupt_image_fails_only_that_item(embedder, bgr, tmp_path):
    good = tmp_path / "good.jpg"
    cv2.imwrite(str(good), bgr)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(good.read_bytes()[:40])
    result = embedder.embed_many([str(good), str(corrupt), bgr])
    assert result.ok.tolist() == [True, False, True]
    assert set(result.errors) == {1}
    assert "corrupt.jpg" in str(result.errors[1])
    assert np.isnan(result.embeddings[1]).all()
    assert result.valid.shape == (2, 256)
    with pytest.raises(ImageError, match=r"corrupt\.jpg"):
        embedder.embed([str(good), str(corrupt)])


def test_large_inputs_are_split_into_batches(embedder, bgr):
    imgs = [np.roll(bgr, i, axis=1) for i in range(19)]  # batch_size is 8: 8 + 8 + 3
    out = embedder.embed(imgs)
    single = np.stack([embedder.embed([im])[0] for im in imgs[:3]])
    assert out.shape == (19, 256)
    np.testing.assert_allclose(out[:3], single, atol=1e-5)


def test_embedder_is_safe_to_share_between_threads(embedder, bgr):
    imgs = [np.roll(bgr, 7 * i, axis=0) for i in range(12)]
    expected = embedder.embed(imgs)
    results = {}

    def worker(k):
        results[k] = embedder.embed(imgs)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for out in results.values():
        np.testing.assert_allclose(out, expected, atol=1e-6)
