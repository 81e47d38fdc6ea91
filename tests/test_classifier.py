"""Register folders become galleries (incrementally); images are classified against them with
thresholds from the bundle's table for the running precision."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from docedge.runtime import Embedder, ThresholdError
from docedge.runtime.bundle import load_bundle, read_manifest, write_manifest
from docedge.runtime.classifier import Classifier
from docedge.runtime.errors import FingerprintMismatchError
from docedge.runtime.gallery import Gallery
from docedge.runtime.gallery_sync import rebuild, sync_register
from docedge.runtime.thresholds import (
    attach_table,
    operating_point,
    published_table,
    published_table_for,
)
from docedge.tools.cli import main


@pytest.fixture()
def register(tmp_path):
    from docedge.export.check_images import make_image

    root = tmp_path / "register"
    (root / "passport").mkdir(parents=True)
    (root / "id").mkdir()
    cv2.imwrite(str(root / "passport" / "front.png"), make_image(1, 200, 300))
    cv2.imwrite(str(root / "id" / "front.png"), make_image(2, 200, 300))
    cv2.imwrite(str(root / "id_front.png"), make_image(3, 200, 300))  # same label: id_front
    (root / "broken.jpg").write_bytes(b"garbage")
    return root


def test_register_build_labels_duplicates_failures_and_incremental_sync(
    bundle_copy, register, tmp_path
):
    emb = Embedder(bundle_copy)
    gal = tmp_path / "g.gal"
    rep = sync_register(gal, emb, register)
    assert len(rep.added) == 3 and str(register / "broken.jpg") in rep.failed
    assert rep.duplicates == {"id_front": 2}
    g = Gallery.open(gal)
    assert sorted(g.labels) == ["id_front", "passport_front"]
    again = sync_register(gal, emb, register)
    assert again.added == [] and len(again.unchanged) == 3
    from docedge.export.check_images import make_image

    cv2.imwrite(str(register / "passport" / "front.png"), make_image(9, 200, 300))
    (register / "id_front.png").unlink()
    third = sync_register(gal, emb, register)
    assert len(third.changed) == 1 and len(third.removed) == 1 and len(third.added) == 1
    assert len(Gallery.open(gal)) == 2


def test_classifier_needs_a_threshold_when_the_bundle_has_no_table(bundle_copy, register, tmp_path):
    sync_register(tmp_path / "g.gal", Embedder(bundle_copy), register)
    with pytest.raises(ThresholdError, match="explicit threshold"):
        Classifier(bundle_copy, tmp_path / "g.gal")


def test_classify_matches_known_and_rejects_unknown(bundle_copy, register, tmp_path):
    sync_register(tmp_path / "g.gal", Embedder(bundle_copy), register)
    clf = Classifier(bundle_copy, tmp_path / "g.gal", threshold=0.9, top_k=3)
    img = cv2.imread(str(register / "passport" / "front.png"))
    from docedge.export.check_images import make_image

    d_known, d_unknown, d_bad = clf.classify([img, make_image(77, 150, 150), b"junk"])
    assert d_known.label == "passport_front" and d_known.score > 0.99
    assert d_known.margin is not None and d_known.margin > 0
    assert d_unknown.label is None and d_unknown.best is not None  # best candidate still shown
    assert d_unknown.score <= 0.9 and d_unknown.threshold == 0.9 and d_unknown.fpr is None
    assert d_bad.error and d_bad.label is None
    assert [c.label for c in d_known.top_k][:1] == ["passport_front"]


def test_threshold_is_taken_from_the_table_of_the_running_precision(
    bundle_copy, register, tmp_path
):
    table = {
        "rows": [
            {"fpr": 0.01, "tpr": 0.9, "threshold": 0.8, "supported": True},
            {"fpr": 1e-5, "tpr": None, "threshold": None, "supported": False},
        ]
    }
    attach_table(bundle_copy, "fp32", table)
    sync_register(tmp_path / "g.gal", Embedder(bundle_copy), register)
    clf = Classifier(bundle_copy, tmp_path / "g.gal")
    assert clf.operating_point.threshold == 0.8 and clf.operating_point.fpr == 0.01
    with pytest.raises(ThresholdError, match=r"cannot support FPR 1e-05"):
        Classifier(bundle_copy, tmp_path / "g.gal", fpr=1e-5)
    with pytest.raises(ThresholdError, match=r"no table row for FPR 0\.1"):
        Classifier(bundle_copy, tmp_path / "g.gal", fpr=0.1)
    assert "fp32" in read_manifest(bundle_copy)["thresholds"]


def test_match_is_strictly_greater_than_threshold(bundle_copy, tmp_path):
    """A query scoring exactly the threshold is unknown (DocClassifier's ``score > t``)."""
    assert operating_point(None, threshold=0.5).threshold == 0.5
    from docedge.runtime.gallery import Gallery

    fp = load_bundle(bundle_copy).fingerprint("fp32")
    g = Gallery.create(tmp_path / "g.gal", fp, dtype="float32")
    g.add(np.eye(2, 256, dtype=np.float32), ["a", "b"])
    clf = Classifier(bundle_copy, g.path, threshold=0.75, top_k=2)
    q = np.zeros((1, 256), np.float32)
    q[0, 0], q[0, 2] = 0.5, np.sqrt(0.75)  # cos 0.5 -> score exactly 0.75
    (d,) = clf.decide(q)
    assert d.score == pytest.approx(0.75) and d.label is None
    assert d.best.label == "a" and d.margin == pytest.approx(0.25)
    q[0, 0], q[0, 2] = 0.52, np.sqrt(1 - 0.52**2)  # just above
    (d,) = clf.decide(q)
    assert d.label == "a" and d.best.entry_id == g.ids[0]


def test_gallery_made_with_another_precision_or_model_is_refused(bundle_copy, register, tmp_path):
    sync_register(tmp_path / "g.gal", Embedder(bundle_copy), register)
    m = read_manifest(bundle_copy)
    m["model"]["source"]["sha256"] = "0" * 64
    write_manifest(bundle_copy, m)
    with pytest.raises(FingerprintMismatchError, match="model_sha256"):
        Classifier(bundle_copy, tmp_path / "g.gal", threshold=0.5)


def test_rebuild_re_embeds_from_recorded_sources(bundle_copy, register, tmp_path):
    sync_register(tmp_path / "g.gal", Embedder(bundle_copy), register)
    rep = rebuild(tmp_path / "g.gal", Embedder(bundle_copy), tmp_path / "new.gal")
    assert len(rep.added) == 3
    assert len(Gallery.open(tmp_path / "new.gal")) == 3


def test_published_20240326_table_ships_and_is_recognized():
    t = published_table()
    assert [r["threshold"] for r in t["rows"]] == [0.705, 0.682, 0.657, 0.626, 0.581, 0.359]
    assert t["auroc"] == 0.9984
    found = published_table_for({"model_cfg": "20240326"})
    assert found["rows"] == t["rows"] and found["source"]["recognized_by"] == "model_cfg"
    assert published_table_for({"model_cfg": None, "source": {"file": "other.onnx"}}) is None
    assert operating_point(t).threshold == 0.626


def test_gallery_and_classify_cli(bundle_copy, register, tmp_path, capsys):
    gal = str(tmp_path / "g.gal")
    assert (
        main(["gallery", "build", str(bundle_copy), gal, str(register), "--json"]) == 1
    )  # broken.jpg
    out = json.loads(capsys.readouterr().out)
    assert out["added"] == 3 and out["duplicates"] == {"id_front": 2}
    assert main(["gallery", "info", gal, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 3
    assert (
        main(
            [
                "classify",
                str(bundle_copy),
                gal,
                str(register / "passport" / "front.png"),
                "--threshold",
                "0.9",
                "--json",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)["results"][0]
    assert res["label"] == "passport_front"
    assert main(["gallery", "remove", gal, "--label", "id_front", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == 2
    assert main(["gallery", "list", gal, "--json"]) == 0
    assert [e["label"] for e in json.loads(capsys.readouterr().out)["entries"]] == [
        "passport_front"
    ]
    assert main(["gallery", "compact", gal, "--dtype", "float32", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dtype"] == "float32"
    assert main(["gallery", "rebuild", str(bundle_copy), gal, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["added"] == 1


def test_a_sync_is_one_atomic_change(bundle_copy, register, tmp_path):
    """Changed and deleted register files are applied in a single commit: a crash before the
    rename leaves the previous gallery entirely (no half-applied sync)."""
    import os
    import subprocess
    import sys

    from docedge.export.check_images import make_image
    from docedge.runtime.gallery import CRASH_ENV

    gal = tmp_path / "g.gal"
    sync_register(gal, Embedder(bundle_copy), register)
    before = [(e.id, e.label, e.sha256) for e in Gallery.open(gal).entries]
    cv2.imwrite(str(register / "passport" / "front.png"), make_image(55, 200, 300))
    (register / "id_front.png").unlink()
    code = (
        "import sys; from docedge.runtime import Embedder; "
        "from docedge.runtime.gallery_sync import sync_register; "
        "sync_register(sys.argv[1], Embedder(sys.argv[2]), sys.argv[3])"
    )
    env = dict(os.environ, **{CRASH_ENV: "before-rename"})
    proc = subprocess.run(
        [sys.executable, "-c", code, str(gal), str(bundle_copy), str(register)],
        env=env,
        capture_output=True,
    )
    assert proc.returncode == 86
    assert [(e.id, e.label, e.sha256) for e in Gallery.open(gal, verify=True).entries] == before


def test_sub_labels_are_reported_with_their_parent(bundle_copy, register, tmp_path):
    from docedge.runtime.gallery_sync import add_images

    emb = Embedder(bundle_copy)
    gal = tmp_path / "g.gal"
    add_images(gal, emb, [register / "passport" / "front.png", register / "id" / "front.png"],
               labels=["passport/front", "passport/damaged"])  # fmt: skip
    clf = Classifier(bundle_copy, gal, threshold=0.9, top_k=5)
    (d,) = clf.classify(str(register / "id" / "front.png"))  # a single path is one image
    assert (d.label, d.parent) == ("passport/damaged", "passport")
    assert [(c.label, c.parent) for c in d.top_k] == [("passport/damaged", "passport"),
                                                      ("passport/front", "passport")]  # fmt: skip
    assert d.top_k[0].entry_id == 1 and d.margin == pytest.approx(d.score - d.top_k[1].score)
    assert d.to_dict()["matched"] is True and d.to_dict()["best"]["parent"] == "passport"


def test_an_empty_gallery_answers_unknown(bundle_copy, tmp_path):
    from docedge.runtime.bundle import load_bundle

    Gallery.create(tmp_path / "g.gal", load_bundle(bundle_copy).fingerprint("fp32"))
    clf = Classifier(bundle_copy, tmp_path / "g.gal", threshold=0.5)
    (d,) = clf.decide(np.eye(1, 256, dtype=np.float32))
    assert d.label is None and d.best is None and d.error is None


def test_a_gallery_of_another_precision_is_refused_naming_it(bundle_copy, tmp_path):
    from docedge.runtime.bundle import load_bundle

    fp = load_bundle(bundle_copy).fingerprint("fp32")
    g = Gallery.create(tmp_path / "g.gal", dict(fp, precision="fp16", artifact_sha256="f" * 64))
    msg = r"precision \[precision\] differs \(gallery 'fp16', bundle 'fp32'\)"
    with pytest.raises(FingerprintMismatchError, match=msg):
        Classifier(bundle_copy, g, threshold=0.5)


def test_the_published_table_drives_the_default_operating_point(bundle_copy, register, tmp_path):
    attach_table(bundle_copy, "fp32", published_table())
    sync_register(tmp_path / "g.gal", Embedder(bundle_copy), register)
    clf = Classifier(bundle_copy, tmp_path / "g.gal")
    assert (clf.operating_point.threshold, clf.operating_point.fpr) == (0.626, 0.01)
    assert Classifier(bundle_copy, tmp_path / "g.gal", fpr=1e-4).operating_point.threshold == 0.682


def test_cli_human_output_and_bundle_check(bundle_copy, register, tmp_path, capsys):
    from docedge.export.check_images import make_image

    gal = tmp_path / "g.gal"
    assert main(["gallery", "build", str(bundle_copy), str(gal), str(register)]) == 1
    out = capsys.readouterr().out
    assert (
        "3 embedded" in out
        and "failed:" in out
        and "duplicate label kept as 2 exemplars: id_front" in out
    )
    unknown = tmp_path / "unknown.png"
    cv2.imwrite(str(unknown), make_image(123, 160, 220))
    assert main(["classify", str(bundle_copy), str(gal), str(register / "passport" / "front.png"),
                 str(unknown), "--threshold", "0.99"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "threshold 0.990 (explicit, fp32)" in out
    assert "front.png: passport_front" in out and "unknown.png: unknown  (best " in out
    assert main(["classify", str(bundle_copy), str(gal), str(unknown)]) == 2  # no table, no -t
    assert "give an explicit threshold" in capsys.readouterr().err
    assert main(["gallery", "info", str(gal), "--bundle", str(bundle_copy)]) == 0
    out = capsys.readouterr().out
    assert "bundle:" in out and "compatible" in out
    assert all(": " in line or not line.strip() for line in out.splitlines())  # separators
    assert main(["gallery", "remove", str(gal), "--label", "nope"]) == 1
    assert "nothing matched" in capsys.readouterr().out
