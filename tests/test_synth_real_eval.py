"""Real-document evaluation: the set is a pure function of the page set and the seed,
registered and unknown pages never overlap, reserved packages are refused, and the metrics
(top-1, TPR@FPR, unknown rejection at a threshold, thumbnail baseline) compute what they say."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from docedge.calibration.real_eval import build_eval_set, metrics, threshold_at, thumbnails, tpr_at
from docedge.runtime.errors import DocedgeError
from docedge.synth.real_pages import MANIFEST


def _page_set(root: Path, n: int = 12) -> None:
    pages = []
    (root / "pkg-a").mkdir(parents=True)
    for i in range(n):
        img = np.full((160, 120, 3), 240, np.uint8)
        for k in range(i % 5 + 2):
            cv2.rectangle(img, (10, 10 + 25 * k), (110 - 7 * (i % 4), 25 + 25 * k), (20, 20, 20), -1)
        name = f"pkg-a/doc{i // 3}_p{i:04d}.png"
        cv2.imwrite(str(root / name), img)
        pages.append({"file": name, "package": "pkg-a", "pdf": f"/x/doc{i // 3}.pdf", "page": i})
    (root / MANIFEST).write_text(json.dumps({"pages": pages, "sources": {}}))


def test_eval_set_is_deterministic_and_disjoint(tmp_path):
    _page_set(tmp_path)
    a = build_eval_set(tmp_path, ["pkg-a"], 8, 3, captures=2, seed=0)
    b = build_eval_set(tmp_path, ["pkg-a"], 8, 3, captures=2, seed=0)
    assert len(a.register) == 8 and len(a.queries) == 16 and len(a.unknown) == 6
    assert not set(a.register_ids) & set(a.unknown_ids)
    assert a.query_labels == [k for k in range(8) for _ in range(2)]
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a.queries, b.queries))
    c = build_eval_set(tmp_path, ["pkg-a"], 8, 3, captures=2, seed=1)
    assert c.register_ids != a.register_ids
    assert a.info["registered_pages"] == 8 and a.info["unknown_queries"] == 6
    with pytest.raises(ValueError, match="need"):
        build_eval_set(tmp_path, ["pkg-a"], 10, 5)
    with pytest.raises(DocedgeError, match="reserved"):
        build_eval_set(tmp_path, ["texlive-latex-base-doc"], 1, 1)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_metrics_on_a_known_geometry():
    rng = np.random.default_rng(0)
    gallery = _unit(rng.normal(size=(20, 32)))
    labels = list(range(20)) * 2
    queries = _unit(gallery[labels] + rng.normal(0, 0.05, (40, 32)))
    unknown = _unit(rng.normal(size=(10, 32)))
    m = metrics(queries, gallery, labels, unknown, {"t": 0.9, "t0": 0.0})
    assert m["top1"] == 1.0 and m["genuine_pairs"] == 40 and m["impostor_pairs"] == 40 * 19
    assert tpr_at(m["rows"], 1e-2) == 1.0 and threshold_at(m["rows"], 1e-2) is not None
    assert m["at_thresholds"]["t"]["unknown_rejected"] == 1.0  # random vectors: cos ~ 0
    assert m["at_thresholds"]["t0"]["unknown_rejected"] == 0.0  # everything is above 0
    assert m["at_thresholds"]["t"]["open_set_accuracy"] == 1.0
    swapped = metrics(queries, gallery, [(k + 1) % 20 for k in labels])
    assert swapped["top1"] == 0.0


def test_thumbnails_are_unit_centred_and_ignore_size():
    img = np.zeros((64, 48, 3), np.uint8)
    img[:32] = 255
    t = thumbnails([img, cv2.resize(img, (96, 128))])
    assert t.shape == (2, 256)
    assert np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)
    assert abs(float(t[0].sum())) < 1e-3
    assert float(t[0] @ t[1]) > 0.99


def test_flat_queries_are_another_kind_of_capture(tmp_path):
    _page_set(tmp_path)
    a = build_eval_set(tmp_path, ["pkg-a"], 4, 2, captures=1, seed=0, kind="flat")
    b = build_eval_set(tmp_path, ["pkg-a"], 4, 2, captures=1, seed=0, kind="mix")
    assert a.register_ids == b.register_ids and a.info["query_kind"] == "flat"
    assert any(x.tobytes() != y.tobytes() for x, y in zip(a.queries, b.queries))
    with pytest.raises(ValueError, match="kind"):
        build_eval_set(tmp_path, ["pkg-a"], 4, 2, kind="scan")
