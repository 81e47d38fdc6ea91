"""Hostile inputs fail alone, with an ImageError naming the item (issue 15, §4).

On c7066f8 a 74-byte PNG claiming 100000 x 100000 pixels, empty arrays and FIFOs aborted whole
batches with cv2.error or hung; a 3 GB file was read whole.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib

import cv2
import numpy as np
import pytest

from docedge.runtime import Embedder
from docedge.runtime.errors import ImageError
from docedge.runtime.preprocess import header_size, load_image
from docedge.runtime.register import scan_register


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (its data is one empty chunk)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))
            + chunk(b"IEND", b""))  # fmt: skip


@pytest.fixture()
def good_jpg(tmp_path):
    p = tmp_path / "good.jpg"
    cv2.imwrite(str(p), np.full((200, 150, 3), 180, np.uint8))
    return p


def test_header_probe_reads_png_and_jpeg_sizes(good_jpg):
    assert header_size(_png_claiming(100000, 100000)) == (100000, 100000)
    assert header_size(good_jpg.read_bytes()) == (150, 200)
    assert header_size(b"GIF89a....") is None


@pytest.mark.parametrize("item, problem", [
    (_png_claiming(100000, 100000), "pixel cap"),
    (_png_claiming(20000, 20000), "pixel cap"),
    (np.zeros((0, 0), np.uint8), "empty image"),
    (np.zeros((10, 0), np.uint8), "empty image"),
    (np.zeros((0, 0, 4), np.uint8), "empty image"),
    (b"", "empty image data"),
    (b"\x89PNG\r\n\x1a\ngarbage", "decod"),
])  # fmt: skip
def test_hostile_items_raise_a_typed_error(item, problem):
    with pytest.raises(ImageError, match=problem):
        load_image(item, 3)


def test_a_bad_item_fails_alone_in_a_batch(bundle_copy, good_jpg, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_claiming(100000, 100000))
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    items = [str(good_jpg), str(bomb), np.zeros((0, 0, 4), np.uint8), str(fifo), "/dev/zero",
             str(tmp_path), str(good_jpg)]  # fmt: skip
    done = {}

    def work():
        done["res"] = Embedder(bundle_copy).embed_many(items)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "a FIFO or /dev/zero hung the batch"
    res = done["res"]
    assert res.ok.tolist() == [True, False, False, False, False, False, True]
    assert "pixel cap" in str(res.errors[1]) and "bomb.png" in str(res.errors[1])
    assert "regular file" in str(res.errors[3]) and "regular file" in str(res.errors[4])
    assert "directory" in str(res.errors[5])


def test_byte_and_pixel_caps_are_configurable(good_jpg, monkeypatch):
    monkeypatch.setenv("DOCEDGE_MAX_IMAGE_BYTES", "100")
    with pytest.raises(ImageError, match="byte cap"):
        load_image(str(good_jpg))
    monkeypatch.delenv("DOCEDGE_MAX_IMAGE_BYTES")
    monkeypatch.setenv("DOCEDGE_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageError, match="pixel cap"):
        load_image(str(good_jpg))
    monkeypatch.delenv("DOCEDGE_MAX_IMAGE_PIXELS")
    assert load_image(str(good_jpg)).shape == (200, 150, 3)


def test_a_large_file_is_refused_without_being_read(tmp_path):
    big = tmp_path / "huge.jpg"
    with open(big, "wb") as f:
        f.truncate(3 << 30)  # sparse: 3 GB claimed, nothing to read
    with pytest.raises(ImageError, match="byte cap"):
        load_image(str(big))


def test_a_symlinked_register_file_gets_the_label_of_its_place(tmp_path, good_jpg):
    reg = tmp_path / "register" / "passport"
    reg.mkdir(parents=True)
    os.symlink(good_jpg, reg / "front.jpg")
    assert scan_register(tmp_path / "register") == [("passport_front", reg / "front.jpg")]
