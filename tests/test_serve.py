"""``docedge serve`` on Ray Serve: a real HTTP client on 127.0.0.1 against a deployment this
test starts and stops itself (bounded: a few dozen requests, loopback only)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from docedge.runtime import Embedder, load_bundle
from docedge.runtime.gallery import Gallery
from docedge.runtime.serve import DocedgeService


def _jpeg(seed: int) -> bytes:
    from docedge.synth.documents import DocumentType, render

    ok, buf = cv2.imencode(".jpg", render(DocumentType.from_id(seed), 0))
    assert ok
    return buf.tobytes()


@pytest.fixture()
def gallery(bundle_copy, tmp_path):
    emb = Embedder(bundle_copy)
    g = Gallery.create(tmp_path / "g.gal", load_bundle(bundle_copy).fingerprint("fp32"))
    g.add(emb.embed([_jpeg(i) for i in range(3)]), ["a", "b", "c"])
    return g.path


def test_the_service_answers_typed_errors_per_item(bundle_copy, gallery):
    svc = DocedgeService(str(bundle_copy), str(gallery), threshold=0.5)
    out = svc.classify_batch([_jpeg(1), b"not an image"])
    assert out[0]["ok"] and out[0]["label"] == "b" and {"score", "threshold", "margin",
                                                        "top_k"} <= set(out[0])  # fmt: skip
    assert out[1] == {"ok": False, "error": "ImageError", "status": 400,
                      "message": out[1]["message"]} and "decod" in out[1]["message"]  # fmt: skip
    assert DocedgeService(str(bundle_copy)).classify_batch([_jpeg(1)])[0]["status"] == 409


def test_a_gallery_committed_while_serving_is_picked_up_whole(bundle_copy, gallery):
    svc = DocedgeService(str(bundle_copy), str(gallery), threshold=0.5)
    assert svc.classify_batch([_jpeg(5)])[0]["label"] != "new"
    Gallery.open(gallery).add(Embedder(bundle_copy).embed([_jpeg(5)]), ["new"])
    assert svc.classify_batch([_jpeg(5)])[0]["label"] == "new"
    assert svc.ready()["gallery"]["entries"] == 4


def _free_port() -> int:
    """A free port below Linux's ephemeral range (32768-60999): a port the kernel hands out
    (bind to 0) can be taken by one of the many processes Ray starts before Serve binds it
    (seen in CI: "Failed to bind to address 127.0.0.1:39739")."""
    import random

    for port in random.Random().sample(range(20000, 32000), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


def _post(url: str, body: bytes):
    req = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.slow
def test_docedge_serve_answers_a_real_http_client(bundle_copy, gallery):
    ray = pytest.importorskip("ray", reason="Ray Serve is not installed (docedge[serve])")
    from ray import serve

    from docedge.runtime.serve import build_app

    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             ignore_reinit_error=True)  # fmt: skip
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(str(bundle_copy), str(gallery), threshold=0.5, num_cpus=0.5,
                            max_request_bytes=1 << 20), route_prefix="/")  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(base + "/healthz", timeout=30) as r:
            assert json.loads(r.read()) == {"ok": True}
        with urllib.request.urlopen(base + "/readyz", timeout=30) as r:
            assert json.loads(r.read())["gallery"]["entries"] == 3
        status, res = _post(base + "/embed", _jpeg(2))
        direct = Embedder(bundle_copy).embed([_jpeg(2)])[0]
        assert status == 200 and res["dim"] == 256
        assert float(np.dot(direct, np.asarray(res["embedding"], np.float32))) > 0.999999
        status, res = _post(base + "/classify", _jpeg(2))
        assert status == 200 and res["label"] == "c"
        assert _post(base + "/classify", b"\x89PNG broken")[0] == 400
        status, res = _post(base + "/embed", b"\0" * ((1 << 20) + 1))
        assert status == 413 and res["error"] == "RequestTooLarge"
    finally:
        serve.shutdown()
        ray.shutdown()
